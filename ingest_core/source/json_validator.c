/* The JSON check NDJSON output makes before a value lands, in one pass over a batch's text.

   suspect_rows(data, offsets, start, count, max_depth) -> list[int]

   `data` and `offsets` are an Arrow binary array's buffers (int32 offsets); rows start..start+count-1
   are checked. A row passes when it is one NDJSON line as it is ("{" its first byte, "}" its last,
   no line break) and one JSON object that Python's json module parses (the same grammar: NaN,
   Infinity and -Infinity are values), in valid UTF-8, with no key twice in one object
   (keys compared as decoded text, escapes included), no \u escape of an unpaired UTF-16 surrogate,
   and objects/arrays nested no deeper than max_depth (the top-level object is depth 1). The rows
   returned are those that may break a rule; the caller gives each of them a look of its own
   (ingest_core/source/json_message.py), which makes it one line or gives the reason it is not
   landed. The scan holds no Python object and runs with the GIL released. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct {
    const uint8_t *text;
    size_t length;
} Key;

/* Memory reused from row to row: the keys of the objects still open, the decoded text of keys
   that hold escapes, the open containers, a hash table for objects with many keys. */
typedef struct {
    Key *keys;
    size_t key_count, key_capacity;
    uint8_t *decoded;
    size_t decoded_length, decoded_capacity;
    size_t *object_first_key; /* per open container: index of its first key in `keys` */
    char *container;          /* per open container: '{' or '[' */
    uint32_t *slots;
    size_t slot_capacity;
} Scratch;

enum { PASS = 0, SUSPECT = 1, NO_MEMORY = -1 };

static int grow(void **buffer, size_t *capacity, size_t needed, size_t item_size) {
    if (needed <= *capacity) return 0;
    size_t capacity_new = *capacity ? *capacity : 16;
    while (capacity_new < needed) capacity_new *= 2;
    void *grown = realloc(*buffer, capacity_new * item_size);
    if (!grown) return -1;
    *buffer = grown;
    *capacity = capacity_new;
    return 0;
}

/* JSON's whitespace but for line breaks: a row that holds one is not one NDJSON line as it is. */
static inline int is_space(uint8_t c) { return c == ' ' || c == '\t'; }

static inline int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const uint8_t *s, size_t n, size_t at, unsigned *unit) {
    if (at + 4 > n) return -1;
    unsigned value = 0;
    for (size_t i = 0; i < 4; i++) {
        int digit = hex_value(s[at + i]);
        if (digit < 0) return -1;
        value = (value << 4) | (unsigned)digit;
    }
    *unit = value;
    return 0;
}

/* Length of the valid UTF-8 sequence of two or more bytes at s[at], or 0 (overlong forms,
   encoded surrogates and code points past U+10FFFF are invalid, as Python's decoder says). */
static size_t utf8_sequence(const uint8_t *s, size_t n, size_t at) {
    uint8_t c = s[at];
#define CONT(i) (at + (i) < n && (s[at + (i)] & 0xC0) == 0x80)
    if (c >= 0xC2 && c <= 0xDF) return CONT(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (at + 1 >= n) return 0;
        uint8_t d = s[at + 1];
        if (c == 0xE0 && (d < 0xA0 || d > 0xBF)) return 0;
        if (c == 0xED && (d < 0x80 || d > 0x9F)) return 0;
        return CONT(1) && CONT(2) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (at + 1 >= n) return 0;
        uint8_t d = s[at + 1];
        if (c == 0xF0 && (d < 0x90 || d > 0xBF)) return 0;
        if (c == 0xF4 && (d < 0x80 || d > 0x8F)) return 0;
        return CONT(1) && CONT(2) && CONT(3) ? 4 : 0;
    }
    return 0;
#undef CONT
}

/* Eight plain bytes at once: none is '"', '\\', below 0x20 or above 0x7F. */
static inline int plain8(const uint8_t *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t zero_quote = (quote - ones) & ~quote & highs;
    uint64_t zero_backslash = (backslash - ones) & ~backslash & highs;
    uint64_t control = (x - ones * 0x20) & ~x & highs;
    return ((zero_quote | zero_backslash | control | (x & highs)) == 0);
}

/* The first byte at or after s[i] that a string cannot take as it is ('"', '\\', below 0x20, above
   0x7F), or where fewer than 8 bytes are left: 16 bytes at a time with SSE2 (every x86-64 CPU has
   it), then 8 at a time. */
static inline size_t skip_plain(const uint8_t *s, size_t i, size_t n) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
        /* signed compare: below 0x20, and every byte above 0x7F (negative as signed) */
        __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                       _mm_cmplt_epi8(v, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    while (i + 8 <= n && plain8(s + i)) i += 8;
    return i;
}

/* Scans the string whose opening quote is at s[*at]; on return *at is past its closing quote.
   *escaped says whether it held a backslash. */
static int scan_string(const uint8_t *s, size_t n, size_t *at, int *escaped) {
    size_t i = *at + 1;
    *escaped = 0;
    for (;;) {
        i = skip_plain(s, i, n);
        if (i >= n) return SUSPECT;
        uint8_t c = s[i];
        if (c == '"') {
            *at = i + 1;
            return PASS;
        }
        if (c < 0x20) return SUSPECT;
        if (c < 0x80 && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t length = utf8_sequence(s, n, i);
            if (!length) return SUSPECT;
            i += length;
            continue;
        }
        *escaped = 1;
        if (i + 1 >= n) return SUSPECT;
        uint8_t e = s[i + 1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            i += 2;
            continue;
        }
        if (e != 'u') return SUSPECT;
        unsigned unit;
        if (hex4(s, n, i + 2, &unit)) return SUSPECT;
        i += 6;
        if (unit >= 0xDC00 && unit <= 0xDFFF) return SUSPECT; /* a low surrogate alone */
        if (unit >= 0xD800 && unit <= 0xDBFF) {
            unsigned low;
            if (i + 1 >= n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s, n, i + 2, &low)) return SUSPECT;
            if (low < 0xDC00 || low > 0xDFFF) return SUSPECT;
            i += 6;
        }
    }
}

static size_t put_utf8(uint8_t *out, unsigned point) {
    if (point < 0x80) {
        out[0] = (uint8_t)point;
        return 1;
    }
    if (point < 0x800) {
        out[0] = (uint8_t)(0xC0 | (point >> 6));
        out[1] = (uint8_t)(0x80 | (point & 0x3F));
        return 2;
    }
    if (point < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (point >> 12));
        out[1] = (uint8_t)(0x80 | ((point >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (point & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (point >> 18));
    out[1] = (uint8_t)(0x80 | ((point >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((point >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (point & 0x3F));
    return 4;
}

/* The decoded text of a scanned string s[from..to) (quotes excluded), appended to scratch->decoded
   (which check_row sized to hold the row: a key's decoded text is never longer than its escaped
   text). The string is known valid, so every escape is complete and every surrogate paired. */
static void decode_key(Scratch *scratch, const uint8_t *s, size_t from, size_t to, Key *key) {
    uint8_t *out = scratch->decoded + scratch->decoded_length;
    size_t written = 0, i = from;
    while (i < to) {
        if (s[i] != '\\') {
            out[written++] = s[i++];
            continue;
        }
        uint8_t e = s[i + 1];
        if (e != 'u') {
            static const char plain[] = "\"\\/bfnrt", value[] = "\"\\/\b\f\n\r\t";
            out[written++] = (uint8_t)value[strchr(plain, e) - plain];
            i += 2;
            continue;
        }
        unsigned unit, low;
        hex4(s, to, i + 2, &unit);
        i += 6;
        if (unit >= 0xD800 && unit <= 0xDBFF) {
            hex4(s, to, i + 2, &low);
            i += 6;
            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        }
        written += put_utf8(out + written, unit);
    }
    key->text = out;
    key->length = written;
    scratch->decoded_length += written;
}

static inline uint64_t key_hash(const Key *key) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < key->length; i++) h = (h ^ key->text[i]) * 1099511628211ULL;
    return h;
}

static inline int same_key(const Key *a, const Key *b) {
    return a->length == b->length && memcmp(a->text, b->text, a->length) == 0;
}

/* PASS when no key of keys[0..count) appears twice. */
static int keys_unique(Scratch *scratch, Key *keys, size_t count) {
    if (count <= 16) {
        for (size_t i = 1; i < count; i++)
            for (size_t j = 0; j < i; j++)
                if (same_key(&keys[i], &keys[j])) return SUSPECT;
        return PASS;
    }
    size_t size = 32;
    while (size < 2 * count) size *= 2;
    if (grow((void **)&scratch->slots, &scratch->slot_capacity, size, sizeof(uint32_t))) return NO_MEMORY;
    uint32_t *slots = scratch->slots;
    memset(slots, 0xFF, size * sizeof(uint32_t));
    for (size_t i = 0; i < count; i++) {
        size_t slot = (size_t)key_hash(&keys[i]) & (size - 1);
        while (slots[slot] != UINT32_MAX) {
            if (same_key(&keys[i], &keys[slots[slot]])) return SUSPECT;
            slot = (slot + 1) & (size - 1);
        }
        slots[slot] = (uint32_t)i;
    }
    return PASS;
}

/* PASS, SUSPECT or NO_MEMORY for the row s[0..n). scratch->container and object_first_key hold
   max_depth entries. */
static int check_row(Scratch *scratch, const uint8_t *s, size_t n, size_t max_depth) {
    size_t i = 0, depth = 0;
    scratch->key_count = 0;
    scratch->decoded_length = 0;
    if (grow((void **)&scratch->decoded, &scratch->decoded_capacity, n, 1)) return NO_MEMORY;
    if (n < 2 || s[0] != '{' || s[n - 1] != '}') return SUSPECT;
    for (;;) {
        /* A value starts at s[i] (after whitespace). */
        while (i < n && is_space(s[i])) i++;
        if (i >= n) return SUSPECT;
        uint8_t c = s[i];
        if (c == '{' || c == '[') {
            if (depth + 1 > max_depth) return SUSPECT;
            scratch->container[depth] = (char)c;
            scratch->object_first_key[depth] = scratch->key_count;
            depth++;
            i++;
            while (i < n && is_space(s[i])) i++;
            if (i < n && s[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '[') continue;
            goto object_key;
        }
        if (c == '"') {
            int escaped;
            if (scan_string(s, n, &i, &escaped)) return SUSPECT;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (c == '-') {
                i++;
                if (i + 8 <= n && memcmp(s + i, "Infinity", 8) == 0) {
                    i += 8;
                    goto after_value;
                }
                if (i >= n || s[i] < '0' || s[i] > '9') return SUSPECT;
            }
            if (s[i] == '0')
                i++;
            else
                while (i < n && s[i] >= '0' && s[i] <= '9') i++;
            if (i < n && s[i] == '.' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') {
                i += 2;
                while (i < n && s[i] >= '0' && s[i] <= '9') i++;
            }
            if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < n && (s[j] == '+' || s[j] == '-')) j++;
                if (j < n && s[j] >= '0' && s[j] <= '9') {
                    while (j < n && s[j] >= '0' && s[j] <= '9') j++;
                    i = j;
                }
            }
        } else {
            static const char *const words[] = {"true", "false", "null", "NaN", "Infinity"};
            size_t w = 0;
            for (; w < 5; w++) {
                size_t length = strlen(words[w]);
                if (i + length <= n && memcmp(s + i, words[w], length) == 0) {
                    i += length;
                    break;
                }
            }
            if (w == 5) return SUSPECT;
        }
    after_value:
        while (i < n && is_space(s[i])) i++;
        if (depth == 0) return i == n ? PASS : SUSPECT;
        if (i >= n) return SUSPECT;
        c = s[i++];
        if (scratch->container[depth - 1] == '[') {
            if (c == ',') continue;
            if (c != ']') return SUSPECT;
            depth--;
            goto after_value;
        }
        if (c == '}') {
            size_t first = scratch->object_first_key[depth - 1];
            int unique = keys_unique(scratch, scratch->keys + first, scratch->key_count - first);
            if (unique != PASS) return unique;
            scratch->key_count = first;
            depth--;
            goto after_value;
        }
        if (c != ',') return SUSPECT;
    object_key:
        while (i < n && is_space(s[i])) i++;
        if (i >= n || s[i] != '"') return SUSPECT;
        {
            size_t from = i + 1;
            int escaped;
            if (scan_string(s, n, &i, &escaped)) return SUSPECT;
            if (grow((void **)&scratch->keys, &scratch->key_capacity, scratch->key_count + 1, sizeof(Key)))
                return NO_MEMORY;
            Key *key = &scratch->keys[scratch->key_count++];
            if (escaped) {
                decode_key(scratch, s, from, i - 1, key);
            } else {
                key->text = s + from;
                key->length = i - 1 - from;
            }
        }
        while (i < n && is_space(s[i])) i++;
        if (i >= n || s[i] != ':') return SUSPECT;
        i++;
    }
}

/* Python's json module gives up on nesting past its recursion limit (1000 by default), whatever
   decode.max_depth says: rows nested deeper than this always get a look of their own. */
#define DEEPEST_CHECKED 500

static void release(Scratch *scratch) {
    free(scratch->keys);
    free(scratch->decoded);
    free(scratch->object_first_key);
    free(scratch->container);
    free(scratch->slots);
}

static PyObject *suspect_rows(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer data, offsets;
    Py_ssize_t start, count, max_depth;
    if (!PyArg_ParseTuple(args, "y*y*nnn", &data, &offsets, &start, &count, &max_depth)) return NULL;
    PyObject *result = NULL;
    Scratch scratch = {0};
    size_t *found = NULL, found_count = 0, found_capacity = 0;
    int failure = 0; /* 1: out of memory, 2: offsets outside the data */
    if (start < 0 || count < 0 || offsets.len / 4 < start + count + 1) {
        PyErr_SetString(PyExc_ValueError, "offsets hold fewer than start + count + 1 int32 values");
        goto done;
    }
    size_t depth_limit = max_depth < 0 ? 0 : (size_t)max_depth;
    if (depth_limit > DEEPEST_CHECKED) depth_limit = DEEPEST_CHECKED;
    scratch.container = malloc(depth_limit + 1);
    scratch.object_first_key = malloc((depth_limit + 1) * sizeof(size_t));
    if (!scratch.container || !scratch.object_first_key) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *text = data.buf;
    const uint8_t *offset_bytes = offsets.buf;
    Py_BEGIN_ALLOW_THREADS
    int32_t first, last;
    memcpy(&first, offset_bytes + 4 * start, 4);
    for (Py_ssize_t row = 0; row < count; row++) {
        memcpy(&last, offset_bytes + 4 * (start + row + 1), 4);
        if (first < 0 || last < first || last > data.len) {
            failure = 2;
            break;
        }
        int verdict = check_row(&scratch, text + first, (size_t)(last - first), depth_limit);
        if (verdict == NO_MEMORY || (verdict == SUSPECT && grow((void **)&found, &found_capacity,
                                                                found_count + 1, sizeof(size_t)))) {
            failure = 1;
            break;
        }
        if (verdict == SUSPECT) found[found_count++] = (size_t)row;
        first = last;
    }
    Py_END_ALLOW_THREADS
    if (failure == 1) {
        PyErr_NoMemory();
        goto done;
    }
    if (failure == 2) {
        PyErr_SetString(PyExc_ValueError, "an offset points outside the data");
        goto done;
    }
    result = PyList_New((Py_ssize_t)found_count);
    for (size_t i = 0; result && i < found_count; i++) {
        PyObject *index = PyLong_FromSize_t(found[i]);
        if (!index) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, index);
    }
done:
    free(found);
    release(&scratch);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"suspect_rows", suspect_rows, METH_VARARGS,
     "suspect_rows(data, offsets, start, count, max_depth) -> list[int]: the rows (0-based, from start) "
     "that may not be one valid JSON object within the rules; every other row is."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "json_validator", "The JSON check of NDJSON output, in C (see json_validator.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_json_validator(void) { return PyModule_Create(&module_definition); }
