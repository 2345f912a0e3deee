/* Lines of JSON objects parsed straight into the Arrow columns of a schema known beforehand: the
   parse of Parquet output's later slices, whose schema is the first slice's (decode.py,
   _checked_slices).

   parse(plan, data, offsets, start, count) -> tuple | None
   has_line_break(data) -> bool

   `data` and `offsets` are an Arrow binary array's buffers (int32 offsets); rows start..start+count-1
   are parsed, each one JSON object, into the root of `plan`. A plan node is a tuple
   (kind, names, children): kind 0 null, 1 bool, 2 int64, 3 double, 4 string, 5 list, 6 struct;
   names is a tuple of the struct's field names as UTF-8 bytes (None for other kinds); children is a
   tuple of the plans of the struct's fields or the list's item (empty for other kinds). The root is
   a struct: a row's fields.

   The result mirrors the plan: per node (length, null_count, validity, buffers, children), where
   validity is the validity bitmap as bytes or None when no slot is null, buffers the node's other
   Arrow buffers as bytes (bool: the value bits; int64 and double: the values; string: the int32
   offsets and the text; list: the int32 offsets; null and struct: none), children the results of the
   child nodes. `pa.Array.from_buffers` takes them as they are.

   The parse accepts only what pyarrow.json, given the same schema as explicit and refusing
   unexpected fields, turns into the same values; for anything else it returns None and the caller
   hands the slice to pyarrow.json. What it accepts: strict JSON (no NaN or Infinity), a field
   missing or null is null, integers in an int64 field (no fraction or exponent, within int64), any
   number in a double field (correctly rounded, as pyarrow's conversion), true/false in a bool field,
   strings in a string field (escapes decoded, a \u escape of an unpaired surrogate refused), arrays
   in a list field, objects in a struct field with no key it does not name, no key twice and no
   escape in a key. Anything else (a number in a string field, a key the schema does not have, ...)
   gives None. The text is not checked for UTF-8 here: the caller checks it first.
   The parse holds no Python object and runs with the GIL released.

   has_line_break tells whether the bytes hold a "\n" or "\r" (memchr, the GIL released): values
   that do are not lines pyarrow.json can read as they are. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum { K_NULL = 0, K_BOOL = 1, K_INT64 = 2, K_DOUBLE = 3, K_STRING = 4, K_LIST = 5, K_STRUCT = 6 };
enum { OK = 0, REFUSED = 1, NO_MEMORY = 2 };
#define DEEPEST_PLAN 500 /* json_table.plan_of gives no plan deeper than this */

typedef struct {
    uint8_t *bytes;
    size_t length, capacity;
} Bytes;

typedef struct Node {
    int kind;
    size_t length, nulls;
    Bytes validity; /* one bit per slot */
    Bytes values;   /* bool: bits; int64 and double: 8 bytes a slot; string: the text */
    Bytes offsets;  /* string and list: int32, length + 1 of them */
    struct Node *children;
    size_t child_count;
    /* struct only */
    const char **names;
    size_t *name_lengths;
    uint64_t *seen_in; /* per field: the serial of the last object that had it */
    uint64_t serial;
    size_t hint; /* the field after the last one seen: fields usually come in the same order */
} Node;

static int reserve(Bytes *b, size_t more) {
    size_t needed = b->length + more;
    if (needed <= b->capacity) return 0;
    size_t capacity = b->capacity ? b->capacity : 64;
    while (capacity < needed) capacity *= 2;
    uint8_t *grown = realloc(b->bytes, capacity);
    if (!grown) return -1;
    b->bytes = grown;
    b->capacity = capacity;
    return 0;
}

static int put_bit(Bytes *b, size_t index, int bit) {
    size_t byte = index >> 3;
    if (byte >= b->length) {
        if (reserve(b, byte + 1 - b->length)) return -1;
        memset(b->bytes + b->length, 0, byte + 1 - b->length);
        b->length = byte + 1;
    }
    if (bit) b->bytes[byte] |= (uint8_t)(1u << (index & 7));
    return 0;
}

static int put_int32(Bytes *b, size_t value) {
    if (value > INT32_MAX || reserve(b, 4)) return -1;
    int32_t v = (int32_t)value;
    memcpy(b->bytes + b->length, &v, 4);
    b->length += 4;
    return 0;
}

static int put_bytes(Bytes *b, const void *source, size_t length) {
    if (reserve(b, length)) return -1;
    memcpy(b->bytes + b->length, source, length);
    b->length += length;
    return 0;
}

/* The end of a slot: its validity bit, and the offset after it for strings and lists (past int32's
   reach: refused, and pyarrow.json makes chunks). */
static int close_slot(Node *node, int valid) {
    size_t end = node->kind == K_STRING ? node->values.length : node->kind == K_LIST ? node->children[0].length : 0;
    if (end > INT32_MAX) return REFUSED;
    if (put_bit(&node->validity, node->length, valid)) return NO_MEMORY;
    node->length++;
    if (!valid) node->nulls++;
    if ((node->kind == K_STRING || node->kind == K_LIST) && put_int32(&node->offsets, end)) return NO_MEMORY;
    return OK;
}

static int append_null(Node *node) {
    static const uint8_t zero[8] = {0};
    switch (node->kind) {
    case K_BOOL:
        if (put_bit(&node->values, node->length, 0)) return NO_MEMORY;
        break;
    case K_INT64:
    case K_DOUBLE:
        if (put_bytes(&node->values, zero, 8)) return NO_MEMORY;
        break;
    case K_STRUCT:
        for (size_t i = 0; i < node->child_count; i++) {
            int status = append_null(&node->children[i]);
            if (status) return status;
        }
        break;
    default:
        break;
    }
    return close_slot(node, 0);
}

static inline int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline const uint8_t *skip_space(const uint8_t *p, const uint8_t *end) {
    while (p < end && is_space(*p)) p++;
    return p;
}

static inline int starts(const uint8_t *p, const uint8_t *end, const char *word, size_t length) {
    return (size_t)(end - p) >= length && memcmp(p, word, length) == 0;
}

static inline int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const uint8_t *p, const uint8_t *end, uint32_t *unit) {
    if (end - p < 4) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0) return -1;
        v = (v << 4) | (uint32_t)h;
    }
    *unit = v;
    return 0;
}

/* How many bytes from p hold none of '"', '\\' or a control byte (below 0x20). */
static inline size_t plain_run(const uint8_t *p, const uint8_t *end) {
    const uint8_t *start = p;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), low = _mm_set1_epi8(0x1F);
    while (end - p >= 16) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)p);
        __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(chunk, low), low);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)), control);
        int mask = _mm_movemask_epi8(hit);
        if (mask) return (size_t)(p - start) + (size_t)__builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) p++;
    return (size_t)(p - start);
}

/* A string's text, escapes decoded, appended to `out`; *pp is just after the opening quote and is
   left just after the closing one. */
static int read_string(Bytes *out, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    for (;;) {
        size_t run = plain_run(p, end);
        if (run && put_bytes(out, p, run)) return NO_MEMORY;
        p += run;
        if (p >= end || *p < 0x20) return REFUSED;
        if (*p == '"') break;
        p++; /* a backslash */
        if (p >= end) return REFUSED;
        uint8_t c = *p++, single;
        switch (c) {
        case '"': single = '"'; break;
        case '\\': single = '\\'; break;
        case '/': single = '/'; break;
        case 'b': single = '\b'; break;
        case 'f': single = '\f'; break;
        case 'n': single = '\n'; break;
        case 'r': single = '\r'; break;
        case 't': single = '\t'; break;
        case 'u': {
            uint32_t code;
            if (hex4(p, end, &code)) return REFUSED;
            p += 4;
            if (code >= 0xDC00 && code <= 0xDFFF) return REFUSED;
            if (code >= 0xD800 && code <= 0xDBFF) {
                uint32_t low;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &low)) return REFUSED;
                if (low < 0xDC00 || low > 0xDFFF) return REFUSED;
                p += 6;
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            }
            uint8_t utf8[4];
            size_t n;
            if (code < 0x80) {
                utf8[0] = (uint8_t)code;
                n = 1;
            } else if (code < 0x800) {
                utf8[0] = (uint8_t)(0xC0 | (code >> 6));
                utf8[1] = (uint8_t)(0x80 | (code & 0x3F));
                n = 2;
            } else if (code < 0x10000) {
                utf8[0] = (uint8_t)(0xE0 | (code >> 12));
                utf8[1] = (uint8_t)(0x80 | ((code >> 6) & 0x3F));
                utf8[2] = (uint8_t)(0x80 | (code & 0x3F));
                n = 3;
            } else {
                utf8[0] = (uint8_t)(0xF0 | (code >> 18));
                utf8[1] = (uint8_t)(0x80 | ((code >> 12) & 0x3F));
                utf8[2] = (uint8_t)(0x80 | ((code >> 6) & 0x3F));
                utf8[3] = (uint8_t)(0x80 | (code & 0x3F));
                n = 4;
            }
            if (put_bytes(out, utf8, n)) return NO_MEMORY;
            continue;
        }
        default:
            return REFUSED;
        }
        if (put_bytes(out, &single, 1)) return NO_MEMORY;
    }
    *pp = p + 1;
    return OK;
}

/* A JSON number at p: its length (0: not a number), its sign, and whether it has neither fraction
   nor exponent. */
typedef struct {
    size_t length;
    int negative, whole; /* whole: no fraction, no exponent */
} Number;

static Number scan_number(const uint8_t *p, const uint8_t *end) {
    Number n = {0, 0, 1};
    const uint8_t *q = p;
    if (q < end && *q == '-') {
        n.negative = 1;
        q++;
    }
    if (q >= end || *q < '0' || *q > '9') return n;
    if (*q == '0') {
        q++;
    } else {
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    if (q < end && *q == '.') {
        n.whole = 0;
        q++;
        if (q >= end || *q < '0' || *q > '9') return n;
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        n.whole = 0;
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q >= end || *q < '0' || *q > '9') return n;
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    n.length = (size_t)(q - p);
    return n;
}

static int read_int64(const uint8_t *p, Number n, int64_t *out) {
    const uint8_t *q = p + n.negative, *end = p + n.length;
    uint64_t v = 0;
    for (; q < end; q++) {
        uint64_t digit = (uint64_t)(*q - '0');
        if (v > (UINT64_MAX - digit) / 10) return REFUSED;
        v = v * 10 + digit;
    }
    if (n.negative) {
        if (v > (uint64_t)INT64_MAX + 1) return REFUSED;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return REFUSED;
        *out = (int64_t)v;
    }
    return OK;
}

static const double EXACT_POWERS[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number as the nearest double. Up to 15 significant digits and a power of ten up to 22
   (the usual case) are exact in doubles, so one multiplication or division rounds correctly
   (Clinger's fast path); other numbers go to strtod, which rounds correctly too. Refused, as
   pyarrow.json refuses them or gives infinity: a power of ten beyond 308 once the fraction's digits
   are taken off the exponent (0e309 among them), and a number too large for a double. */
static int read_double(const uint8_t *p, Number n, double *out) {
    const uint8_t *q = p + n.negative, *end = p + n.length;
    uint64_t mantissa = 0;
    int digits = 0;
    long exponent = 0, written = 0;
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        if (mantissa || *q != '0') digits++;
        if (digits <= 19) mantissa = mantissa * 10 + (uint64_t)(*q - '0');
    }
    if (q < end && *q == '.') {
        for (q++; q < end && *q >= '0' && *q <= '9'; q++) {
            if (mantissa || *q != '0') digits++;
            if (digits <= 19) mantissa = mantissa * 10 + (uint64_t)(*q - '0');
            exponent--;
        }
    }
    if (q < end) { /* the exponent */
        q++;
        int negative = 0;
        if (*q == '+' || *q == '-') negative = *q++ == '-';
        for (; q < end; q++) {
            if (written < 1000000) written = written * 10 + (*q - '0');
        }
        exponent += negative ? -written : written;
    }
    if (exponent > 308) return REFUSED;
    if (digits <= 15 && exponent >= -22 && exponent <= 22) {
        double exact = (double)mantissa;
        exact = exponent < 0 ? exact / EXACT_POWERS[-exponent] : exact * EXACT_POWERS[exponent];
        *out = n.negative ? -exact : exact;
        return OK;
    }
    char text[400];
    if (n.length >= sizeof text) return REFUSED;
    memcpy(text, p, n.length);
    text[n.length] = '\0';
    char *stop;
    double v = strtod(text, &stop);
    if (stop != text + n.length || v == HUGE_VAL || v == -HUGE_VAL) return REFUSED;
    *out = v;
    return OK;
}

static int read_value(Node *node, const uint8_t **pp, const uint8_t *end);

static int read_object(Node *node, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp + 1; /* after '{' */
    uint64_t serial = ++node->serial;
    p = skip_space(p, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"') return REFUSED;
            const uint8_t *key = ++p;
            size_t run = plain_run(p, end);
            p += run;
            if (p >= end || *p != '"') return REFUSED; /* an escape or a control byte in a key */
            p++;
            size_t field = node->child_count, hint = node->hint;
            for (size_t tried = 0; tried < node->child_count; tried++) {
                size_t i = hint + tried < node->child_count ? hint + tried : hint + tried - node->child_count;
                if (node->name_lengths[i] == run && memcmp(node->names[i], key, run) == 0) {
                    field = i;
                    break;
                }
            }
            if (field == node->child_count || node->seen_in[field] == serial) return REFUSED;
            node->seen_in[field] = serial;
            node->hint = field + 1 < node->child_count ? field + 1 : 0;
            p = skip_space(p, end);
            if (p >= end || *p != ':') return REFUSED;
            p = skip_space(p + 1, end);
            int status = read_value(&node->children[field], &p, end);
            if (status) return status;
            p = skip_space(p, end);
            if (p < end && *p == ',') {
                p = skip_space(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            return REFUSED;
        }
    }
    for (size_t i = 0; i < node->child_count; i++) {
        if (node->seen_in[i] != serial) {
            int status = append_null(&node->children[i]);
            if (status) return status;
        }
    }
    *pp = p;
    return close_slot(node, 1);
}

static int read_array(Node *node, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = skip_space(*pp + 1, end); /* after '[' */
    if (p < end && *p == ']') {
        p++;
    } else {
        for (;;) {
            int status = read_value(&node->children[0], &p, end);
            if (status) return status;
            p = skip_space(p, end);
            if (p < end && *p == ',') {
                p = skip_space(p + 1, end);
                continue;
            }
            if (p < end && *p == ']') {
                p++;
                break;
            }
            return REFUSED;
        }
    }
    *pp = p;
    return close_slot(node, 1);
}

/* One value at *pp (no space before it) into `node`; *pp is left just after it. */
static int read_value(Node *node, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    if (p >= end) return REFUSED;
    if (*p == 'n') {
        if (!starts(p, end, "null", 4)) return REFUSED;
        *pp = p + 4;
        return append_null(node);
    }
    switch (node->kind) {
    case K_BOOL: {
        int value;
        if (starts(p, end, "true", 4)) {
            value = 1;
            *pp = p + 4;
        } else if (starts(p, end, "false", 5)) {
            value = 0;
            *pp = p + 5;
        } else {
            return REFUSED;
        }
        if (put_bit(&node->values, node->length, value)) return NO_MEMORY;
        return close_slot(node, 1);
    }
    case K_INT64:
    case K_DOUBLE: {
        Number n = scan_number(p, end);
        if (!n.length) return REFUSED;
        uint8_t value[8];
        if (node->kind == K_INT64) {
            int64_t v;
            if (!n.whole || read_int64(p, n, &v)) return REFUSED;
            memcpy(value, &v, 8);
        } else {
            double v;
            if (read_double(p, n, &v)) return REFUSED;
            memcpy(value, &v, 8);
        }
        if (put_bytes(&node->values, value, 8)) return NO_MEMORY;
        *pp = p + n.length;
        return close_slot(node, 1);
    }
    case K_STRING: {
        if (*p != '"') return REFUSED;
        *pp = p + 1;
        int status = read_string(&node->values, pp, end);
        return status ? status : close_slot(node, 1);
    }
    case K_LIST:
        return *p == '[' ? read_array(node, pp, end) : REFUSED;
    case K_STRUCT:
        return *p == '{' ? read_object(node, pp, end) : REFUSED;
    default: /* K_NULL: only null */
        return REFUSED;
    }
}

static void free_node(Node *node) {
    for (size_t i = 0; i < node->child_count; i++) free_node(&node->children[i]);
    free(node->children);
    free(node->validity.bytes);
    free(node->values.bytes);
    free(node->offsets.bytes);
    free(node->names);
    free(node->name_lengths);
    free(node->seen_in);
}

/* The node of a plan (see the top of the file); -1 with a Python error set when it is not one. The
   names point into the plan's bytes objects, which the caller holds for the whole call. */
static int build_node(Node *node, PyObject *plan, int depth) {
    long kind;
    PyObject *names, *children;
    if (depth > DEEPEST_PLAN) {
        PyErr_SetString(PyExc_ValueError, "plan nested too deeply");
        return -1;
    }
    if (!PyTuple_Check(plan) || !PyArg_ParseTuple(plan, "lOO!", &kind, &names, &PyTuple_Type, &children)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a plan node is (kind, names, children)");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(children);
    int expected = kind == K_LIST ? 1 : kind == K_STRUCT ? -1 : 0;
    if (kind < K_NULL || kind > K_STRUCT || (expected >= 0 && count != expected) ||
        (kind == K_STRUCT && (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != count))) {
        PyErr_SetString(PyExc_ValueError, "a plan node's kind, names and children do not agree");
        return -1;
    }
    node->kind = (int)kind;
    if (kind == K_STRING && put_int32(&node->offsets, 0)) goto no_memory;
    if (kind == K_LIST && put_int32(&node->offsets, 0)) goto no_memory;
    if (count == 0) return 0;
    node->children = calloc((size_t)count, sizeof(Node));
    if (!node->children) goto no_memory;
    node->child_count = (size_t)count;
    if (kind == K_STRUCT) {
        node->names = calloc((size_t)count, sizeof(char *));
        node->name_lengths = calloc((size_t)count, sizeof(size_t));
        node->seen_in = calloc((size_t)count, sizeof(uint64_t));
        if (!node->names || !node->name_lengths || !node->seen_in) goto no_memory;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if (!PyBytes_Check(name)) {
                PyErr_SetString(PyExc_TypeError, "a struct's field names are bytes");
                return -1;
            }
            node->names[i] = PyBytes_AS_STRING(name);
            node->name_lengths[i] = (size_t)PyBytes_GET_SIZE(name);
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (build_node(&node->children[i], PyTuple_GET_ITEM(children, i), depth + 1)) return -1;
    }
    return 0;
no_memory:
    PyErr_NoMemory();
    return -1;
}

static PyObject *bytes_of(const Bytes *b) {
    return PyBytes_FromStringAndSize(b->length ? (const char *)b->bytes : "", (Py_ssize_t)b->length);
}

static PyObject *result_of(const Node *node) {
    PyObject *validity = NULL, *buffers = NULL, *children = NULL;
    if (node->nulls) {
        validity = bytes_of(&node->validity);
    } else {
        validity = Py_None;
        Py_INCREF(validity);
    }
    if (!validity) goto failed;
    switch (node->kind) {
    case K_BOOL:
    case K_INT64:
    case K_DOUBLE:
        buffers = Py_BuildValue("(N)", bytes_of(&node->values));
        break;
    case K_STRING:
        buffers = Py_BuildValue("(NN)", bytes_of(&node->offsets), bytes_of(&node->values));
        break;
    case K_LIST:
        buffers = Py_BuildValue("(N)", bytes_of(&node->offsets));
        break;
    default:
        buffers = PyTuple_New(0);
    }
    if (!buffers) goto failed;
    children = PyTuple_New((Py_ssize_t)node->child_count);
    if (!children) goto failed;
    for (size_t i = 0; i < node->child_count; i++) {
        PyObject *child = result_of(&node->children[i]);
        if (!child) goto failed;
        PyTuple_SET_ITEM(children, (Py_ssize_t)i, child);
    }
    return Py_BuildValue("(nnNNN)", (Py_ssize_t)node->length, (Py_ssize_t)node->nulls, validity, buffers, children);
failed:
    Py_XDECREF(validity);
    Py_XDECREF(buffers);
    Py_XDECREF(children);
    return NULL;
}

static PyObject *parse(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *plan;
    Py_buffer data, offsets;
    Py_ssize_t start, count;
    if (!PyArg_ParseTuple(args, "Oy*y*nn", &plan, &data, &offsets, &start, &count)) return NULL;
    PyObject *result = NULL;
    Node root = {0};
    if (start < 0 || count < 0 || offsets.len / 4 < start + count + 1) {
        PyErr_SetString(PyExc_ValueError, "offsets hold fewer than start + count + 1 int32 values");
        goto done;
    }
    if (build_node(&root, plan, 0)) goto done;
    if (root.kind != K_STRUCT) {
        PyErr_SetString(PyExc_ValueError, "the plan's root is a struct");
        goto done;
    }
    const uint8_t *text = data.buf, *offset_bytes = offsets.buf;
    int status = OK;
    Py_BEGIN_ALLOW_THREADS
    int32_t first, last;
    memcpy(&first, offset_bytes + 4 * start, 4);
    for (Py_ssize_t row = 0; row < count && status == OK; row++) {
        memcpy(&last, offset_bytes + 4 * (start + row + 1), 4);
        if (first < 0 || last < first || last > data.len) {
            status = REFUSED;
            break;
        }
        const uint8_t *p = skip_space(text + first, text + last), *end = text + last;
        if (p >= end || *p != '{') {
            status = REFUSED;
            break;
        }
        status = read_object(&root, &p, end);
        if (status == OK && skip_space(p, end) != end) status = REFUSED;
        first = last;
    }
    Py_END_ALLOW_THREADS
    if (status == NO_MEMORY) {
        PyErr_NoMemory();
    } else if (status == REFUSED) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        result = result_of(&root);
    }
done:
    free_node(&root);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

static PyObject *has_line_break(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    int found;
    Py_BEGIN_ALLOW_THREADS
    found = data.len && (memchr(data.buf, '\n', (size_t)data.len) || memchr(data.buf, '\r', (size_t)data.len));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS,
     "parse(plan, data, offsets, start, count) -> tuple | None: the rows' JSON objects as the Arrow "
     "buffers of the plan's columns, or None when a row is not one this parse takes."},
    {"has_line_break", has_line_break, METH_VARARGS, "has_line_break(data) -> bool: whether the bytes hold a \\n or \\r."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "json_columns", "JSON lines into Arrow columns of a known schema, in C (see json_columns.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_json_columns(void) { return PyModule_Create(&module_definition); }
