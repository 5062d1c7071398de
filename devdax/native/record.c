/*
 * _replace and __new__ for the spec's records (spec/state.py), in C: the compiled checker's
 * hottest calls.
 *
 * A search replaces fields of a record about 30 times per state it stores. Interpreted, each call
 * is a Python frame (spec/state.py generates the method; the stock namedtuple one is slower
 * still), which was a sixth of a compiled run; here it is a copy of the tuple's items. The meaning
 * is the generated method's: a new record of the same class with the named fields replaced, the
 * fields as keywords only, an unknown name a TypeError. Construction (Vma(), Transition(...): 17
 * per stored state) ran the class's __new__, an interpreted function namedtuple generates;
 * record_new takes the same arguments with the same defaults. It is installed as the class's
 * __new__ attribute, not in its tp_new slot: CPython refuses tuple.__new__(cls, ...), which _make
 * uses, for a class whose slot is not its own wrapper. spec/state.py installs both when this
 * module is built (devdax/compiled.py, beside the mypyc modules) and keeps the Python ones
 * otherwise; tests/model/test_compiled.py compares them with the stock namedtuple methods.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *fields_name;   /* "_fields" */
static PyObject *defaults_name; /* "_field_defaults" */

/* The _fields of each class seen, so that a call costs no attribute lookup: the spec has eight
 * record classes. A class and its tuple stay referenced for the life of the process. */
#define KNOWN 32
static PyTypeObject *known_type[KNOWN];
static PyObject *known_fields[KNOWN];
/* The default of each field by position (no_default where it has none): a construction fills the
 * fields it is not given without a dict lookup each. */
static PyObject *known_default_at[KNOWN];
static PyObject *no_default;

/* The slot of tp in the tables, filled on first sight; -1 with an exception set. */
static int known(PyTypeObject *tp)
{
    int i;
    for (i = 0; i < KNOWN && known_type[i] != NULL; i++)
        if (known_type[i] == tp)
            return i;
    if (i == KNOWN) {
        PyErr_SetString(PyExc_RuntimeError, "devdax.spec._record: more record classes than it keeps");
        return -1;
    }
    PyObject *fields = PyObject_GetAttr((PyObject *)tp, fields_name);
    if (fields == NULL)
        return -1;
    PyObject *defaults = PyObject_GetAttr((PyObject *)tp, defaults_name);
    if (defaults == NULL || !PyTuple_Check(fields) || !PyDict_Check(defaults)) {
        if (defaults != NULL)
            PyErr_SetString(PyExc_TypeError, "not a NamedTuple class: _fields or _field_defaults");
        Py_DECREF(fields);
        Py_XDECREF(defaults);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    PyObject *at = PyTuple_New(n);
    if (at == NULL) {
        Py_DECREF(fields);
        Py_DECREF(defaults);
        return -1;
    }
    for (Py_ssize_t f = 0; f < n; f++) {
        PyObject *dflt = PyDict_GetItemWithError(defaults, PyTuple_GET_ITEM(fields, f));
        if (dflt == NULL && PyErr_Occurred()) {
            Py_DECREF(at);
            Py_DECREF(fields);
            Py_DECREF(defaults);
            return -1;
        }
        dflt = dflt == NULL ? no_default : dflt;
        Py_INCREF(dflt);
        PyTuple_SET_ITEM(at, f, dflt);
    }
    Py_DECREF(defaults);
    Py_INCREF(tp);
    known_type[i] = tp;
    known_fields[i] = fields;
    known_default_at[i] = at;
    return i;
}

/* A new reference to the _fields of tp, or NULL with an exception set. */
static PyObject *fields_of(PyTypeObject *tp)
{
    int i = known(tp);
    if (i < 0)
        return NULL;
    Py_INCREF(known_fields[i]);
    return known_fields[i];
}

/* The position of field `name` in `fields`, or -1. Field names and keywords are interned
 * identifiers, so the pointer test nearly always decides; the comparison covers the rest. */
static Py_ssize_t field_index(PyObject *fields, PyObject *name)
{
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(fields, i) == name)
            return i;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyUnicode_Compare(PyTuple_GET_ITEM(fields, i), name) == 0)
            return i;
    return -1;
}

/* The field keyword k of a call names, or -1 with a TypeError naming the call (who). */
static Py_ssize_t keyword_field(PyObject *fields, PyObject *kwnames, Py_ssize_t k, const char *who)
{
    PyObject *name = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = field_index(fields, name);
    if (i < 0 && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", who, name);
    return i;
}

static PyObject *replace(PyObject *self, PyTypeObject *defining, PyObject *const *args, size_t nargsf,
                         PyObject *kwnames)
{
    (void)defining;
    if (PyVectorcall_NARGS(nargsf) != 0) {
        PyErr_SetString(PyExc_TypeError, "_replace() takes keyword arguments only");
        return NULL;
    }
    PyTypeObject *tp = Py_TYPE(self);
    PyObject *fields = fields_of(tp);
    if (fields == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(self);
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != n) {
        PyErr_SetString(PyExc_TypeError, "_replace(): not a record of its class's _fields");
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *out = tp->tp_alloc(tp, n);
    if (out == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(self, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(out, i, item);
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        Py_ssize_t i = keyword_field(fields, kwnames, k, "_replace");
        if (i < 0) {
            Py_DECREF(out);
            Py_DECREF(fields);
            return NULL;
        }
        PyObject *value = args[k];
        Py_INCREF(value);
        Py_SETREF(((PyTupleObject *)out)->ob_item[i], value);
    }
    Py_DECREF(fields);
    return out;
}

static PyMethodDef replace_def = {
    .ml_name = "_replace",
    .ml_meth = (PyCFunction)(void (*)(void))replace,
    .ml_flags = METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
    .ml_doc = "Return a new record with the given fields replaced (devdax/native/record.c).",
};

/* A record of tp from the call's positional items args[0..npos) and keywords (their values
 * after the positional ones), the missing fields from _field_defaults: as the class's namedtuple
 * __new__ builds it. */
static PyObject *build(PyTypeObject *tp, PyObject *const *args, Py_ssize_t npos, PyObject *kwnames)
{
    int slot = known(tp);
    if (slot < 0)
        return NULL;
    PyObject *fields = known_fields[slot], *default_at = known_default_at[slot];
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (npos > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments but %zd were given", tp->tp_name, n,
                     npos);
        return NULL;
    }
    PyObject *out = tp->tp_alloc(tp, n); /* items NULL until set: dealloc skips them */
    if (out == NULL)
        return NULL;
    PyObject **item = ((PyTupleObject *)out)->ob_item;
    for (Py_ssize_t i = 0; i < npos; i++) {
        item[i] = args[i];
        Py_INCREF(item[i]);
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        Py_ssize_t i = keyword_field(fields, kwnames, k, tp->tp_name);
        if (i < 0)
            goto fail;
        if (item[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%U'", tp->tp_name,
                         PyTuple_GET_ITEM(kwnames, k));
            goto fail;
        }
        item[i] = args[npos + k];
        Py_INCREF(item[i]);
    }
    for (Py_ssize_t i = npos; i < n; i++) {
        if (item[i] != NULL)
            continue;
        PyObject *dflt = PyTuple_GET_ITEM(default_at, i);
        if (dflt == no_default) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument: '%U'", tp->tp_name,
                         PyTuple_GET_ITEM(fields, i));
            goto fail;
        }
        Py_INCREF(dflt);
        item[i] = dflt;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* cls as a record class (a tuple subclass), or NULL with a TypeError naming the call (who). */
static PyTypeObject *record_class(PyObject *cls, const char *who)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a record class (a tuple subclass)", who);
        return NULL;
    }
    return (PyTypeObject *)cls;
}

/* new(cls, *args, **kwds): the class's __new__ attribute, for cls.__new__(cls, ...) (pickling,
 * copy). */
static PyObject *record_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)module;
    PyTypeObject *tp = nargs < 1 ? NULL : record_class(args[0], "__new__(cls, ...)");
    if (tp == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "__new__(cls, ...): missing cls");
        return NULL;
    }
    return build(tp, args + 1, nargs - 1, kwnames);
}

/* The class call itself, Vma(...): CPython calls a type's tp_vectorcall, when it has one, instead
 * of type_call, which would look __new__ up in the class and call it with a tuple and a dict of
 * the arguments (half of what building a record cost). A record class has no __init__ of its own
 * (tuple's does nothing), so this is what the call does. */
static PyObject *record_call(PyObject *cls, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return build((PyTypeObject *)cls, args, PyVectorcall_NARGS(nargsf), kwnames);
}

/* The hash a record keeps once computed. A state is hashed as a dict key several times per
 * successor (the duplicate test, the store, the memo tables), and a tuple hashes every item every
 * time: a state is about 150 ints deep, and hashing was a quarter of a compiled run. A record is
 * immutable and so are its items, so the first hash is the hash for good. It lives in one word
 * after the items: cache_hash() widens the class's basicsize by that word before the class has
 * any instance, and every allocation of a tuple subclass (PyType_GenericAlloc, through tp_alloc,
 * also for tuple.__new__(cls, ...), unpickling and record_new) zeroes it. 0 means "not yet"; a
 * record whose hash is 0 is simply hashed again each time. The value is tuple's own hash, so a
 * record still equals, and hashes as, the plain tuple of its items. */
static Py_ssize_t tuple_basicsize;

static Py_hash_t *hash_word(PyObject *self)
{
    return (Py_hash_t *)((char *)self + tuple_basicsize + Py_SIZE(self) * (Py_ssize_t)sizeof(PyObject *));
}

static Py_hash_t cached_hash(PyObject *self)
{
    Py_hash_t *word = hash_word(self);
    if (*word != 0)
        return *word;
    Py_hash_t h = PyTuple_Type.tp_hash(self);
    if (h != -1)
        *word = h;
    return h;
}

/* cache_hash(cls): give the record class cls (a tuple subclass with no instance yet, no
 * subclass, no __dict__ and no __weakref__) the hash word above. Refuses any other class, since
 * widening a class that has instances would read past their end; a second call is a no-op. */
static PyObject *cache_hash(PyObject *module, PyObject *cls)
{
    (void)module;
    PyTypeObject *tp = record_class(cls, "cache_hash()");
    if (tp == NULL)
        return NULL;
    if (tp->tp_hash == cached_hash)
        Py_RETURN_NONE;
    PyObject *subclasses = PyObject_CallMethod(cls, "__subclasses__", NULL);
    if (subclasses == NULL)
        return NULL;
    Py_ssize_t nsub = PyList_Check(subclasses) ? PyList_GET_SIZE(subclasses) : -1;
    Py_DECREF(subclasses);
    if (tp->tp_base != &PyTuple_Type || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) ||
        tp->tp_basicsize != tuple_basicsize || tp->tp_itemsize != (Py_ssize_t)sizeof(PyObject *) ||
        tp->tp_dictoffset != 0 || tp->tp_weaklistoffset != 0 || tp->tp_hash != PyTuple_Type.tp_hash ||
        tp->tp_alloc != PyType_GenericAlloc || nsub != 0) {
        PyErr_Format(PyExc_TypeError, "cache_hash(): %s is not a plain record class", tp->tp_name);
        return NULL;
    }
    tp->tp_basicsize += (Py_ssize_t)sizeof(Py_hash_t);
    tp->tp_hash = cached_hash;
    PyType_Modified(tp);
    Py_RETURN_NONE;
}

/* fast_call(cls): make cls(...) call record_call. Only for a record class whose __init__ is
 * object's (a namedtuple's is) and whose __new__ is already new() above, so that the call means
 * what it meant. */
static PyObject *fast_call(PyObject *module, PyObject *cls)
{
    (void)module;
    PyTypeObject *tp = record_class(cls, "fast_call()");
    if (tp == NULL)
        return NULL;
    if (tp->tp_vectorcall == record_call)
        Py_RETURN_NONE;
    PyObject *ours = PyObject_GetAttrString(cls, "__new__");
    if (ours == NULL)
        return NULL;
    int is_ours = PyCFunction_Check(ours) &&
                  PyCFunction_GET_FUNCTION(ours) == (PyCFunction)(void (*)(void))record_new;
    Py_DECREF(ours);
    if (!is_ours || tp->tp_init != PyBaseObject_Type.tp_init || tp->tp_vectorcall != NULL) {
        PyErr_Format(PyExc_TypeError, "fast_call(): %s is not a record class with new() as __new__", tp->tp_name);
        return NULL;
    }
    tp->tp_vectorcall = record_call;
    Py_RETURN_NONE;
}

/* method(cls): the _replace method descriptor for the record class cls (a tuple subclass). */
static PyObject *method(PyObject *module, PyObject *cls)
{
    (void)module;
    PyTypeObject *tp = record_class(cls, "method()");
    return tp == NULL ? NULL : PyDescr_NewMethod(tp, &replace_def);
}

static PyMethodDef functions[] = {
    {"method", method, METH_O, "The C _replace method for a NamedTuple class."},
    {"fast_call", fast_call, METH_O, "Make calling the record class build the record in C (after new() is its __new__)."},
    {"cache_hash", cache_hash, METH_O, "Keep each record's hash once computed (before any instance exists)."},
    {"new", (PyCFunction)(void (*)(void))record_new, METH_FASTCALL | METH_KEYWORDS,
     "new(cls, *args, **kwds): a record of a NamedTuple class, built in C (its __new__)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_record",
    .m_doc = "The spec's records' _replace in C (devdax/native/record.c).",
    .m_size = -1,
    .m_methods = functions,
};

PyMODINIT_FUNC PyInit__record(void)
{
    fields_name = PyUnicode_InternFromString("_fields");
    defaults_name = PyUnicode_InternFromString("_field_defaults");
    if (fields_name == NULL || defaults_name == NULL)
        return NULL;
    tuple_basicsize = PyTuple_Type.tp_basicsize;
    no_default = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0);
    if (no_default == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
