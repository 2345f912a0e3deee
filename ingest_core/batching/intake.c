/* What the consume loop does with each message, in C: one pass over a consume() batch to group it by
   partition, and one pass over a partition's group to take it apart into the buffer's columns. The
   messages are read through their methods (confluent_kafka.Message, or any object with the same
   methods: the tests' fakes), so nothing here depends on how confluent-kafka lays out a Message;
   for the type named to use_methods_of (confluent_kafka.Message) the methods' C functions are
   called directly.

   use_methods_of(type) -> bool
       call the seven methods below of messages of exactly this type through their C functions, if
       each is a C method without arguments (METH_NOARGS); False (and no change) otherwise. None:
       method calls again for every message.

   by_partition(messages) -> (groups, reports)
       groups: {partition: [message, ...]} of the messages whose error() is None, in order;
       reports: [(message, count), ...] of the others (a partition's end, an error), each with how
       many messages of its partition came before it in this batch.

   columns(messages, with_headers, start, reserve) -> (offsets, stamps, keys, headers, ends, nulls, key_bytes, value_bytes)
       offsets, stamps: bytes of native int64 (offset(), timestamp()[1]);
       keys: [key(), ...]; headers: [headers(), ...], or None without with_headers;
       the values are copied back to back into the writable buffer `reserve(value_bytes)` returns
       (the buffer's memory map: no copy in between; from COPY_UNLOCKED_FROM bytes on, without
       Python's lock); ends: bytes of native int64, where each value
       ends, counted from `start` (the bytes the column held before); nulls: positions of the
       messages whose value() is None (they take no byte); key_bytes: the bytes of the keys. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject *error, *partition, *offset, *timestamp, *key, *value, *headers;
} Names;

static Names names;

/* A method without arguments written in C (METH_NOARGS), called straight through its function. */
typedef PyObject *(*NoArgs)(PyObject *, PyObject *);

/* The C functions behind the methods of one message type (confluent_kafka.Message): each call then
   skips the method lookup and the call protocol. On 5,000 real messages of 200 B, columns() took
   0.073 instead of 0.122 us a message and by_partition() 0.013 instead of 0.053. Filled by
   `use_methods_of`, for a type whose seven methods are all METH_NOARGS C methods; a message of any
   other type (the tests' fakes, a subclass) goes through call(). One per process, as the type is. */
typedef struct {
    PyTypeObject *type;
    NoArgs error, partition, offset, timestamp, key, value, headers;
} Direct;

static Direct direct;

/* From this many bytes of values in one call on, they are copied without Python's lock. */
#define COPY_UNLOCKED_FROM (1 << 20)

static PyObject *call(PyObject *message, PyObject *name) { return PyObject_CallMethodNoArgs(message, name); }

/* message.<name>(), through its C function when the message is of the type `direct` holds. */
#define CALL(message, name) \
    (Py_TYPE(message) == direct.type ? direct.name((message), NULL) : call((message), names.name))

/* The C function of `type`'s method `name` if it is a METH_NOARGS method written in C, else NULL. */
static NoArgs no_args_function(PyTypeObject *type, PyObject *name) {
    PyObject *found = PyObject_GetAttr((PyObject *)type, name);
    if (!found) {
        PyErr_Clear();
        return NULL;
    }
    NoArgs function = NULL;
    if (Py_IS_TYPE(found, &PyMethodDescr_Type)) {
        PyMethodDescrObject *descriptor = (PyMethodDescrObject *)found;
        PyMethodDef *definition = descriptor->d_method;
        if (descriptor->d_common.d_type == type && definition->ml_flags == METH_NOARGS)
            function = (NoArgs)(void (*)(void))definition->ml_meth;
    }
    Py_DECREF(found);
    return function;
}

static PyObject *use_methods_of(PyObject *module, PyObject *type) {
    (void)module;
    if (type == Py_None) { /* back to method calls for every message */
        Py_XDECREF((PyObject *)direct.type);
        direct = (Direct){0};
        Py_RETURN_FALSE;
    }
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "use_methods_of takes a type or None");
        return NULL;
    }
    PyTypeObject *message_type = (PyTypeObject *)type;
    Direct found = {message_type,
                    no_args_function(message_type, names.error),
                    no_args_function(message_type, names.partition),
                    no_args_function(message_type, names.offset),
                    no_args_function(message_type, names.timestamp),
                    no_args_function(message_type, names.key),
                    no_args_function(message_type, names.value),
                    no_args_function(message_type, names.headers)};
    if (!found.error || !found.partition || !found.offset || !found.timestamp || !found.key || !found.value ||
        !found.headers)
        Py_RETURN_FALSE;
    Py_INCREF(type); /* kept for as long as the module: `direct.type` is compared by address */
    Py_XDECREF((PyObject *)direct.type);
    direct = found;
    Py_RETURN_TRUE;
}

static int as_int64(PyObject *number, int64_t *out) {
    if (!number) return -1;
    long long value = PyLong_AsLongLong(number);
    Py_DECREF(number);
    if (value == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)value;
    return 0;
}

static PyObject *by_partition(PyObject *module, PyObject *messages) {
    (void)module;
    if (!PyList_Check(messages)) {
        PyErr_SetString(PyExc_TypeError, "messages must be a list");
        return NULL;
    }
    PyObject *groups = PyDict_New(), *reports = PyList_New(0);
    if (!groups || !reports) goto fail;
    Py_ssize_t count = PyList_GET_SIZE(messages);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *message = PyList_GET_ITEM(messages, i);
        PyObject *error = CALL(message, error);
        if (!error) goto fail;
        int is_message = error == Py_None;
        Py_DECREF(error);
        PyObject *partition = CALL(message, partition);
        if (!partition) goto fail;
        PyObject *group = PyDict_GetItemWithError(groups, partition); /* borrowed */
        if (!group && PyErr_Occurred()) {
            Py_DECREF(partition);
            goto fail;
        }
        if (is_message) {
            if (!group) {
                group = PyList_New(0);
                if (!group || PyDict_SetItem(groups, partition, group) < 0) {
                    Py_XDECREF(group);
                    Py_DECREF(partition);
                    goto fail;
                }
                Py_DECREF(group); /* the dict holds it */
            }
            Py_DECREF(partition);
            if (PyList_Append(group, message) < 0) goto fail;
        } else {
            Py_DECREF(partition);
            PyObject *report = Py_BuildValue("(On)", message, group ? PyList_GET_SIZE(group) : (Py_ssize_t)0);
            if (!report) goto fail;
            int appended = PyList_Append(reports, report);
            Py_DECREF(report);
            if (appended < 0) goto fail;
        }
    }
    return Py_BuildValue("(NN)", groups, reports);
fail:
    Py_XDECREF(groups);
    Py_XDECREF(reports);
    return NULL;
}

static PyObject *columns(PyObject *module, PyObject *args) {
    PyObject *messages, *reserve;
    int with_headers;
    long long start;
    (void)module;
    if (!PyArg_ParseTuple(args, "O!pLO", &PyList_Type, &messages, &with_headers, &start, &reserve)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(messages);
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, 8 * count);
    PyObject *stamps = PyBytes_FromStringAndSize(NULL, 8 * count);
    PyObject *ends = PyBytes_FromStringAndSize(NULL, 8 * count);
    PyObject *keys = PyList_New(count);
    PyObject *headers = with_headers ? PyList_New(count) : Py_NewRef(Py_None);
    PyObject *nulls = PyList_New(0);
    PyObject **values = PyMem_Calloc((size_t)(count ? count : 1), sizeof *values);
    PyObject *target = NULL;
    Py_buffer space = {0};
    if (!offsets || !stamps || !ends || !keys || !headers || !nulls || !values) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto fail;
    }
    int64_t *offset_out = (int64_t *)PyBytes_AS_STRING(offsets), *stamp_out = (int64_t *)PyBytes_AS_STRING(stamps);
    int64_t *end_out = (int64_t *)PyBytes_AS_STRING(ends);
    size_t total = 0, key_bytes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *message = PyList_GET_ITEM(messages, i);
        if (as_int64(CALL(message, offset), &offset_out[i]) < 0) goto fail;
        PyObject *timestamp = CALL(message, timestamp);
        if (!timestamp) goto fail;
        if (!PyTuple_Check(timestamp) || PyTuple_GET_SIZE(timestamp) != 2) {
            Py_DECREF(timestamp);
            PyErr_SetString(PyExc_TypeError, "timestamp() must return a (type, milliseconds) tuple");
            goto fail;
        }
        PyObject *millis = Py_NewRef(PyTuple_GET_ITEM(timestamp, 1));
        Py_DECREF(timestamp);
        if (as_int64(millis, &stamp_out[i]) < 0) goto fail;
        PyObject *key = CALL(message, key);
        if (!key) goto fail;
        if (key != Py_None) {
            Py_ssize_t length = PyObject_Length(key);
            if (length < 0) {
                Py_DECREF(key);
                goto fail;
            }
            key_bytes += (size_t)length;
        }
        PyList_SET_ITEM(keys, i, key);
        if (with_headers) {
            PyObject *message_headers = CALL(message, headers);
            if (!message_headers) goto fail;
            PyList_SET_ITEM(headers, i, message_headers);
        }
        PyObject *value = CALL(message, value);
        if (!value) goto fail;
        if (value == Py_None) {
            Py_DECREF(value);
            PyObject *position = PyLong_FromSsize_t(i);
            if (!position || PyList_Append(nulls, position) < 0) {
                Py_XDECREF(position);
                goto fail;
            }
            Py_DECREF(position);
        } else if (!PyBytes_Check(value)) {
            Py_DECREF(value);
            PyErr_SetString(PyExc_TypeError, "value() must return bytes or None");
            goto fail;
        } else {
            values[i] = value;
            total += (size_t)PyBytes_GET_SIZE(value);
        }
        end_out[i] = (int64_t)start + (int64_t)total;
    }
    target = PyObject_CallFunction(reserve, "n", (Py_ssize_t)total);
    if (!target || PyObject_GetBuffer(target, &space, PyBUF_WRITABLE) < 0) goto fail;
    if ((size_t)space.len < total) {
        PyErr_SetString(PyExc_ValueError, "reserve() returned a buffer smaller than asked for");
        goto fail;
    }
    char *out = space.buf;
    /* The copy runs without Python's lock when it is large (the publisher threads' Python work goes
       on meanwhile): `values` holds a reference to each bytes object and `space` exports the map, so
       neither can go away or move, and only this thread writes to the map. */
    int unlocked = total >= COPY_UNLOCKED_FROM;
    PyThreadState *saved = unlocked ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!values[i]) continue;
        Py_ssize_t length = PyBytes_GET_SIZE(values[i]);
        memcpy(out, PyBytes_AS_STRING(values[i]), (size_t)length);
        out += length;
    }
    if (unlocked) PyEval_RestoreThread(saved);
    for (Py_ssize_t i = 0; i < count; i++) Py_CLEAR(values[i]);
    PyBuffer_Release(&space);
    Py_DECREF(target); /* (a memoryview of a memory map: the map can be resized again once it is gone) */
    PyMem_Free(values);
    return Py_BuildValue("(NNNNNNnn)", offsets, stamps, keys, headers, ends, nulls, (Py_ssize_t)key_bytes,
                         (Py_ssize_t)total);
fail:
    if (values)
        for (Py_ssize_t i = 0; i < count; i++) Py_XDECREF(values[i]);
    PyMem_Free(values);
    Py_XDECREF(offsets);
    Py_XDECREF(stamps);
    Py_XDECREF(ends);
    Py_XDECREF(keys);
    Py_XDECREF(headers);
    Py_XDECREF(nulls);
    if (space.obj) PyBuffer_Release(&space);
    Py_XDECREF(target);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"use_methods_of", use_methods_of, METH_O,
     "use_methods_of(type) -> bool: call the methods of messages of this type through their C functions (True), "
     "if its seven methods are METH_NOARGS C methods; None: method calls for every message again."},
    {"by_partition", by_partition, METH_O,
     "by_partition(messages) -> (groups, reports): the messages grouped by partition, and the reports among them."},
    {"columns", columns, METH_VARARGS,
     "columns(messages, with_headers, start, reserve) -> (offsets, stamps, keys, headers, ends, nulls, key_bytes, "
     "value_bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "intake", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit_intake(void) {
    names.error = PyUnicode_InternFromString("error");
    names.partition = PyUnicode_InternFromString("partition");
    names.offset = PyUnicode_InternFromString("offset");
    names.timestamp = PyUnicode_InternFromString("timestamp");
    names.key = PyUnicode_InternFromString("key");
    names.value = PyUnicode_InternFromString("value");
    names.headers = PyUnicode_InternFromString("headers");
    if (!names.error || !names.partition || !names.offset || !names.timestamp || !names.key || !names.value ||
        !names.headers)
        return NULL;
    return PyModule_Create(&MODULE);
}
