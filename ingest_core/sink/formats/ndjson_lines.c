/* NDJSON lines made from a batch's Arrow buffers in one pass: the metadata fields, then each body
   from after its "{", then a newline.

   lines(prefix, offsets, stamps, keys, headers, bodies, count) -> bytes | None

   - prefix: b'{"_topic":"...","_partition":N,"_offset":' (the same for every row of a batch).
   - offsets, stamps: (buffer of int64, first index); stamps are microseconds since the epoch, UTC.
   - keys, bodies: (validity buffer or None, int32 offsets buffer, data buffer, first index) of an
     Arrow string / binary array. A null key is written as null; bodies must have no null.
   - headers: None, or a list of `count` bytes objects: each row's `_headers` value as JSON text.

   Each line is {"_topic":..,"_partition":..,"_offset":N,"_timestamp":"YYYY-MM-DDTHH:MM:SS.mmmZ",
   "_key":<key as json.dumps writes it>[,"_headers":..] then "," (none when the body has no field)
   and the body from after its "{". The bytes are those of ndjson.py's per-row splice. Returns None
   when a row needs that per-row way: a body that is not "{" ... "}" as it is, or a timestamp before
   1970 or after 9999. The lines are written with the GIL released. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char TIMESTAMP[] = ",\"_timestamp\":\"";
static const char KEY[] = "Z\",\"_key\":";
static const char HEADERS[] = ",\"_headers\":";
#define STAMP_DIGITS 23 /* YYYY-MM-DDTHH:MM:SS.mmm */
#define LAST_MICROS 253402300800000000LL /* 10000-01-01T00:00:00Z */

typedef struct {
    Py_buffer validity, offsets, data;
    int has_validity;
    Py_ssize_t first;
} BinaryColumn;

typedef struct {
    Py_buffer values;
    Py_ssize_t first;
} Int64Column;

static int valid(const BinaryColumn *column, Py_ssize_t row) {
    if (!column->has_validity) return 1;
    Py_ssize_t bit = column->first + row;
    return (((const uint8_t *)column->validity.buf)[bit >> 3] >> (bit & 7)) & 1;
}

static void value(const BinaryColumn *column, Py_ssize_t row, const uint8_t **text, size_t *length) {
    const int32_t *offsets = (const int32_t *)column->offsets.buf + column->first + row;
    *text = (const uint8_t *)column->data.buf + offsets[0];
    *length = (size_t)(offsets[1] - offsets[0]);
}

static int64_t int64_at(const Int64Column *column, Py_ssize_t row) {
    int64_t number;
    memcpy(&number, (const uint8_t *)column->values.buf + 8 * (size_t)(column->first + row), 8);
    return number;
}

/* ---- the key, as json.dumps writes a str (ensure_ascii: only ' '..'~' as they are) ---- */

static size_t utf8_point(const uint8_t *s, size_t n, size_t i, unsigned *point) {
    uint8_t c = s[i];
    size_t length = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i + length > n) length = n - i; /* (a string column's text is valid UTF-8) */
    unsigned p = c & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < length; k++) p = (p << 6) | (s[i + k] & 0x3F);
    *point = p;
    return length;
}

/* Writes the JSON string of s[0..n) at out (when out is not NULL); returns its length. */
static size_t json_string(const uint8_t *s, size_t n, uint8_t *out) {
    static const char hex[] = "0123456789abcdef";
    size_t written = 0;
#define PUT(c)                                   \
    do {                                         \
        if (out) out[written] = (uint8_t)(c);    \
        written++;                               \
    } while (0)
#define PUT_U(unit)                              \
    do {                                         \
        PUT('\\');                               \
        PUT('u');                                \
        PUT(hex[((unit) >> 12) & 0xF]);          \
        PUT(hex[((unit) >> 8) & 0xF]);           \
        PUT(hex[((unit) >> 4) & 0xF]);           \
        PUT(hex[(unit)&0xF]);                    \
    } while (0)
    PUT('"');
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c >= 0x20 && c <= 0x7E && c != '"' && c != '\\') {
            PUT(c);
            i++;
            continue;
        }
        if (c < 0x80) {
            const char *short_form = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                                   : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (short_form) {
                PUT(short_form[0]);
                PUT(short_form[1]);
            } else {
                PUT_U((unsigned)c);
            }
            i++;
            continue;
        }
        unsigned point;
        i += utf8_point(s, n, i, &point);
        if (point >= 0x10000) {
            point -= 0x10000;
            PUT_U(0xD800 | (point >> 10));
            PUT_U(0xDC00 | (point & 0x3FF));
        } else {
            PUT_U(point);
        }
    }
    PUT('"');
#undef PUT_U
#undef PUT
    return written;
}

/* ---- numbers and times ---- */

static size_t decimal_digits(int64_t number, uint8_t *out) {
    uint8_t reversed[24];
    size_t count = 0, written = 0;
    uint64_t magnitude = number < 0 ? (uint64_t)0 - (uint64_t)number : (uint64_t)number;
    do {
        reversed[count++] = (uint8_t)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (number < 0) {
        if (out) out[written] = '-';
        written++;
    }
    while (count) {
        if (out) out[written] = reversed[count - 1];
        written++;
        count--;
    }
    return written;
}

static void two_digits(uint8_t *out, unsigned number) {
    out[0] = (uint8_t)('0' + number / 10);
    out[1] = (uint8_t)('0' + number % 10);
}

/* YYYY-MM-DDTHH:MM:SS.mmm of a time in microseconds since the epoch, 0 <= micros < LAST_MICROS
   (days to a civil date: Howard Hinnant's algorithm). */
static void timestamp_text(int64_t micros, uint8_t *out) {
    int64_t millis = micros / 1000;
    int64_t days = millis / 86400000, in_day = millis % 86400000;
    int64_t z = days + 719468, era = z / 146097;
    int64_t day_of_era = z - era * 146097;
    int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t mp = (5 * day_of_year + 2) / 153;
    unsigned day = (unsigned)(day_of_year - (153 * mp + 2) / 5 + 1);
    unsigned month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    unsigned year = (unsigned)(year_of_era + era * 400 + (month <= 2));
    two_digits(out, year / 100);
    two_digits(out + 2, year % 100);
    out[4] = '-';
    two_digits(out + 5, month);
    out[7] = '-';
    two_digits(out + 8, day);
    out[10] = 'T';
    two_digits(out + 11, (unsigned)(in_day / 3600000));
    out[13] = ':';
    two_digits(out + 14, (unsigned)(in_day / 60000 % 60));
    out[16] = ':';
    two_digits(out + 17, (unsigned)(in_day / 1000 % 60));
    out[19] = '.';
    unsigned fraction = (unsigned)(in_day % 1000);
    out[20] = (uint8_t)('0' + fraction / 100);
    two_digits(out + 21, fraction % 100);
}

/* ---- the lines ---- */

static int is_blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Whether the body has a field: anything but blanks between its braces. */
static int has_field(const uint8_t *body, size_t length) {
    for (size_t i = 1; i + 1 < length; i++)
        if (!is_blank(body[i])) return 1;
    return 0;
}

typedef struct {
    const uint8_t *prefix;
    size_t prefix_length;
    Int64Column *offsets, *stamps;
    BinaryColumn *keys, *bodies;
    const uint8_t **header_text;
    size_t *header_length;
} Columns;

/* Writes row's line at out (or only measures it when out is NULL); returns its length. */
static size_t line(const Columns *c, Py_ssize_t row, uint8_t *out) {
    size_t at = 0;
#define COPY(text, length)                                  \
    do {                                                    \
        if (out) memcpy(out + at, (text), (length));        \
        at += (length);                                     \
    } while (0)
    COPY(c->prefix, c->prefix_length);
    at += decimal_digits(int64_at(c->offsets, row), out ? out + at : NULL);
    COPY(TIMESTAMP, sizeof TIMESTAMP - 1);
    if (out) timestamp_text(int64_at(c->stamps, row), out + at);
    at += STAMP_DIGITS;
    COPY(KEY, sizeof KEY - 1);
    if (valid(c->keys, row)) {
        const uint8_t *key;
        size_t key_length;
        value(c->keys, row, &key, &key_length);
        at += json_string(key, key_length, out ? out + at : NULL);
    } else {
        COPY("null", 4);
    }
    if (c->header_text) {
        COPY(HEADERS, sizeof HEADERS - 1);
        COPY(c->header_text[row], c->header_length[row]);
    }
    const uint8_t *body;
    size_t body_length;
    value(c->bodies, row, &body, &body_length);
    if (has_field(body, body_length)) COPY(",", 1);
    COPY(body + 1, body_length - 1);
    COPY("\n", 1);
#undef COPY
    return at;
}

static int binary_column(PyObject *spec, BinaryColumn *column) {
    PyObject *validity, *offsets, *data;
    memset(column, 0, sizeof *column);
    if (!PyArg_ParseTuple(spec, "OOOn", &validity, &offsets, &data, &column->first)) return -1;
    column->has_validity = validity != Py_None;
    if (column->has_validity && PyObject_GetBuffer(validity, &column->validity, PyBUF_SIMPLE) < 0) return -1;
    if (PyObject_GetBuffer(offsets, &column->offsets, PyBUF_SIMPLE) < 0) goto fail_validity;
    if (PyObject_GetBuffer(data, &column->data, PyBUF_SIMPLE) < 0) goto fail_offsets;
    return 0;
fail_offsets:
    PyBuffer_Release(&column->offsets);
fail_validity:
    if (column->has_validity) PyBuffer_Release(&column->validity);
    return -1;
}

static void release_binary(BinaryColumn *column) {
    if (column->has_validity) PyBuffer_Release(&column->validity);
    PyBuffer_Release(&column->offsets);
    PyBuffer_Release(&column->data);
}

/* The rows [0, count) of a binary column lie within its buffers, and its values are in order. */
static int binary_fits(const BinaryColumn *column, Py_ssize_t count) {
    if (column->first < 0 || (size_t)column->offsets.len < 4 * (size_t)(column->first + count + 1)) return 0;
    if (column->has_validity && (size_t)column->validity.len * 8 < (size_t)(column->first + count)) return 0;
    const int32_t *offsets = (const int32_t *)column->offsets.buf + column->first;
    for (Py_ssize_t i = 0; i < count; i++)
        if (offsets[i] < 0 || offsets[i + 1] < offsets[i]) return 0;
    return count == 0 || (Py_ssize_t)offsets[count] <= column->data.len;
}

static int int64_column(PyObject *spec, Int64Column *column, Py_ssize_t count) {
    PyObject *values;
    if (!PyArg_ParseTuple(spec, "On", &values, &column->first)) return -1;
    if (PyObject_GetBuffer(values, &column->values, PyBUF_SIMPLE) < 0) return -1;
    if (column->first < 0 || (size_t)column->values.len < 8 * (size_t)(column->first + count)) {
        PyBuffer_Release(&column->values);
        PyErr_SetString(PyExc_ValueError, "an int64 column is shorter than the rows asked for");
        return -1;
    }
    return 0;
}

static PyObject *lines(PyObject *module, PyObject *args) {
    Py_buffer prefix;
    PyObject *offsets_spec, *stamps_spec, *keys_spec, *headers, *bodies_spec, *result = NULL;
    Py_ssize_t count;
    Int64Column offsets, stamps;
    BinaryColumn keys, bodies;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*OOOOOn", &prefix, &offsets_spec, &stamps_spec, &keys_spec, &headers, &bodies_spec,
                          &count))
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "count must not be negative");
        goto no_columns;
    }
    if (int64_column(offsets_spec, &offsets, count) < 0) goto no_columns;
    if (int64_column(stamps_spec, &stamps, count) < 0) goto no_stamps;
    if (binary_column(keys_spec, &keys) < 0) goto no_keys;
    if (binary_column(bodies_spec, &bodies) < 0) goto no_bodies;
    const uint8_t **header_text = NULL;
    size_t *header_length = NULL;
    if (!binary_fits(&keys, count) || !binary_fits(&bodies, count)) {
        PyErr_SetString(PyExc_ValueError, "a binary column is shorter than the rows asked for");
        goto done;
    }
    if (headers != Py_None) {
        if (!PyList_Check(headers) || PyList_GET_SIZE(headers) != count) {
            PyErr_SetString(PyExc_ValueError, "headers must be None or a list of one bytes object per row");
            goto done;
        }
        header_text = PyMem_Malloc(sizeof *header_text * (size_t)(count ? count : 1));
        header_length = PyMem_Malloc(sizeof *header_length * (size_t)(count ? count : 1));
        if (!header_text || !header_length) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *item = PyList_GET_ITEM(headers, i);
            if (!PyBytes_Check(item)) {
                PyErr_SetString(PyExc_TypeError, "each row's headers must be bytes");
                goto done;
            }
            header_text[i] = (const uint8_t *)PyBytes_AS_STRING(item);
            header_length[i] = (size_t)PyBytes_GET_SIZE(item);
        }
    }
    if (bodies.has_validity) {
        for (Py_ssize_t i = 0; i < count; i++)
            if (!valid(&bodies, i)) {
                PyErr_SetString(PyExc_ValueError, "bodies must have no null");
                goto done;
            }
    }
    Columns columns = {prefix.buf, (size_t)prefix.len, &offsets, &stamps, &keys, &bodies, header_text, header_length};
    size_t total = 0;
    int per_row = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count && !per_row; i++) {
        const uint8_t *body;
        size_t body_length;
        value(&bodies, i, &body, &body_length);
        int64_t micros = int64_at(&stamps, i);
        if (body_length < 2 || body[0] != '{' || body[body_length - 1] != '}' || micros < 0 || micros >= LAST_MICROS)
            per_row = 1;
        else
            total += line(&columns, i, NULL);
    }
    Py_END_ALLOW_THREADS
    if (per_row) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!result) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) out += line(&columns, i, out);
    Py_END_ALLOW_THREADS
done:
    PyMem_Free(header_text);
    PyMem_Free(header_length);
    release_binary(&bodies);
no_bodies:
    release_binary(&keys);
no_keys:
    PyBuffer_Release(&stamps.values);
no_stamps:
    PyBuffer_Release(&offsets.values);
no_columns:
    PyBuffer_Release(&prefix);
    return result;
}

static PyMethodDef METHODS[] = {
    {"lines", lines, METH_VARARGS,
     "lines(prefix, offsets, stamps, keys, headers, bodies, count) -> bytes | None: the NDJSON lines of count rows "
     "(None: a row needs the per-row splice)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "ndjson_lines", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit_ndjson_lines(void) { return PyModule_Create(&MODULE); }
