/* The writer's transpose, in C: record tuples -> int64 columns.
 *
 * tracer/recording/recorder.py's Recorder._columns turns every flushed batch
 * of record tuples (id, link, tid, start, end, kind, name, func, attrs) into
 * numpy columns. In Python that is about 650 ns a record, most of the
 * recording CPU left once the hot path appends its tuple; here it is one pass
 * over the list. The Python version stays as the fallback and as the
 * reference a test compares this with (tests/tracer/recording/test_columns.py).
 *
 * Plain CPython API, no numpy or torch headers: the columns are passed in as
 * writable buffers (numpy arrays) and filled in place, so it builds in a
 * second with the system compiler (native_columns.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define NCOLS 9

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t n) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->itemsize != 8 || view->len < n * 8) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "columns must be int64 buffers of len(records)");
        return -1;
    }
    return 0;
}

/* The id of a string in `strings`, or -1 after adding it to `missing`. */
static int64_t string_id(PyObject *strings, PyObject *text, PyObject *missing, int *failed) {
    PyObject *found = PyDict_GetItemWithError(strings, text); /* borrowed */
    if (found != NULL)
        return PyLong_AsLongLong(found);
    if (PyErr_Occurred() || PySet_Add(missing, text) < 0)
        *failed = 1;
    return -1;
}

/* fill(records, strings, ids, links, tids, starts, durs, kinds, names, funcs, attr_keys)
 * -> set of the kind/name/func strings not in `strings` (their rows hold -1).
 * attr_keys gets id(attrs), exactly what Python's id() gives (None included). */
static PyObject *fill(PyObject *self, PyObject *args) {
    PyObject *records, *strings, *outs[NCOLS];
    if (!PyArg_ParseTuple(args, "O!O!OOOOOOOOO", &PyList_Type, &records, &PyDict_Type, &strings,
                          &outs[0], &outs[1], &outs[2], &outs[3], &outs[4], &outs[5], &outs[6],
                          &outs[7], &outs[8]))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(records);
    Py_buffer views[NCOLS];
    int got = 0;
    for (; got < NCOLS; got++)
        if (get_buffer(outs[got], &views[got], n) < 0)
            goto release;
    int64_t *col[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        col[c] = (int64_t *)views[c].buf;
    PyObject *missing = PySet_New(NULL);
    if (missing == NULL)
        goto release;
    int failed = 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyTuple_CheckExact(rec) || PyTuple_GET_SIZE(rec) != NCOLS) {
            PyErr_Format(PyExc_TypeError, "record %zd is not a 9-tuple", i);
            failed = 1;
            break;
        }
        int64_t v[5];
        for (int c = 0; c < 5; c++) {
            v[c] = PyLong_AsLongLong(PyTuple_GET_ITEM(rec, c));
            if (v[c] == -1 && PyErr_Occurred()) {
                failed = 1;
                break;
            }
        }
        if (failed)
            break;
        col[0][i] = v[0];        /* id */
        col[1][i] = v[1];        /* link */
        col[2][i] = v[2];        /* tid */
        col[3][i] = v[3];        /* start */
        col[4][i] = v[4] - v[3]; /* duration */
        for (int c = 5; c < 8 && !failed; c++)
            col[c][i] = string_id(strings, PyTuple_GET_ITEM(rec, c), missing, &failed);
        col[8][i] = (int64_t)(intptr_t)PyTuple_GET_ITEM(rec, 8);
    }
    for (int c = 0; c < got; c++)
        PyBuffer_Release(&views[c]);
    if (failed) {
        Py_DECREF(missing);
        return NULL;
    }
    return missing;
release:
    for (int c = 0; c < got; c++)
        PyBuffer_Release(&views[c]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "Fills int64 columns from record tuples; returns unknown strings."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "torchscope_columns", NULL, -1, methods};

PyMODINIT_FUNC PyInit_torchscope_columns(void) { return PyModule_Create(&module); }
