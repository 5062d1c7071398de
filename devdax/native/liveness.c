/*
 * model/checker.py's _cannot_reach_idle in C: teardown_finishes decided over the whole graph.
 *
 * The Python function (kept, and used by the interpreted checker) groups each state's
 * predecessors by counting sort and walks backwards from the idle states. Compiled by mypyc it
 * still boxes every int it reads from the arrays: a twentieth of a compiled run of the v4.10
 * default, for 400,000 edges. This is the same algorithm over the same buffers, with the same
 * answer (the first state, in discovery order, from which no idle state can be reached; None when
 * there is none); tests/model/test_compiled.py compares the two on random graphs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* cannot_reach_idle(n, idle, src, dst): idle a bytes-like of n flags, src and dst int32 arrays of
 * one edge each (src[k] -> dst[k]), every number below n. */
static PyObject *cannot_reach_idle(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "cannot_reach_idle(n, idle, src, dst) takes 4 arguments");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer idle = {0}, src = {0}, dst = {0};
    PyObject *result = NULL;
    int32_t *start = NULL, *fill = NULL, *preds = NULL, *stack = NULL;
    unsigned char *good = NULL;
    if (PyObject_GetBuffer(args[1], &idle, PyBUF_SIMPLE) < 0 || PyObject_GetBuffer(args[2], &src, PyBUF_FORMAT) < 0 ||
        PyObject_GetBuffer(args[3], &dst, PyBUF_FORMAT) < 0)
        goto done;
    if (n < 0 || n > INT32_MAX || idle.len != n || src.itemsize != 4 || dst.itemsize != 4 || src.len != dst.len ||
        src.format == NULL || dst.format == NULL || strcmp(src.format, "i") != 0 || strcmp(dst.format, "i") != 0) {
        PyErr_SetString(PyExc_ValueError, "cannot_reach_idle: idle must hold n flags, src and dst one int32 per edge");
        goto done;
    }
    Py_ssize_t m = src.len / 4;
    const int32_t *a = src.buf, *b = dst.buf;
    const unsigned char *is_idle = idle.buf;
    for (Py_ssize_t k = 0; k < m; k++)
        if (a[k] < 0 || a[k] >= n || b[k] < 0 || b[k] >= n) {
            PyErr_Format(PyExc_ValueError, "cannot_reach_idle: edge %zd (%d -> %d) leaves the %zd states", k, a[k],
                         b[k], n);
            goto done;
        }
    start = PyMem_Calloc((size_t)n + 1, sizeof(int32_t));
    fill = PyMem_Malloc(((size_t)n + 1) * sizeof(int32_t));
    preds = PyMem_Malloc(((size_t)m + 1) * sizeof(int32_t));
    stack = PyMem_Malloc(((size_t)n + 1) * sizeof(int32_t));
    good = PyMem_Calloc((size_t)n + 1, 1);
    if (start == NULL || fill == NULL || preds == NULL || stack == NULL || good == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* start[j]..start[j + 1]: where j's predecessors sit in preds */
    for (Py_ssize_t k = 0; k < m; k++)
        start[b[k] + 1]++;
    for (Py_ssize_t j = 0; j < n; j++)
        start[j + 1] += start[j];
    memcpy(fill, start, ((size_t)n + 1) * sizeof(int32_t));
    for (Py_ssize_t k = 0; k < m; k++)
        preds[fill[b[k]]++] = a[k];
    /* every state marked good is pushed once, so the stack never holds more than n */
    Py_ssize_t top = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (is_idle[i]) {
            good[i] = 1;
            stack[top++] = (int32_t)i;
        }
    while (top > 0) {
        int32_t j = stack[--top];
        for (int32_t k = start[j]; k < start[j + 1]; k++) {
            int32_t p = preds[k];
            if (!good[p]) {
                good[p] = 1;
                stack[top++] = p;
            }
        }
    }
    result = Py_None;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!good[i]) {
            result = PyLong_FromSsize_t(i);
            break;
        }
    if (result == Py_None)
        Py_INCREF(result);
done:
    PyMem_Free(start);
    PyMem_Free(fill);
    PyMem_Free(preds);
    PyMem_Free(stack);
    PyMem_Free(good);
    if (idle.obj != NULL)
        PyBuffer_Release(&idle);
    if (src.obj != NULL)
        PyBuffer_Release(&src);
    if (dst.obj != NULL)
        PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef functions[] = {
    {"cannot_reach_idle", (PyCFunction)(void (*)(void))cannot_reach_idle, METH_FASTCALL,
     "The first state from which no idle state is reachable, or None (model/checker.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_liveness",
    .m_doc = "model/checker.py's backward reachability in C (devdax/native/liveness.c).",
    .m_size = -1,
    .m_methods = functions,
};

PyMODINIT_FUNC PyInit__liveness(void)
{
    return PyModule_Create(&module_def);
}
