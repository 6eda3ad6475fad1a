/* memtracker_web._passthrough: the per-request test of the ASGI middleware, in C.
 *
 * Every request of the host app goes through MemoryTrackerMiddleware, and all
 * but a few are not ours: an http scope whose path contains none of our
 * routes. For those the middleware only has to hand the call to the wrapped
 * app. Written in Python, that hand-off costs a call through the instance's
 * __call__ (a new interpreter frame and a coroutine) and the test itself:
 * 3,060 machine instructions over a bare request of a trivial Starlette app
 * (bench/asgi_requests.py), 2.8% of it. Here it is a vectorcall that looks up
 * two dict keys, searches the path for each route and calls the app with the
 * same arguments, so the caller awaits the app's own coroutine and our layer
 * adds no frame: 455 and 586 instructions in two runs.
 *
 * Anything else (another scope type, a path that may be ours, a scope that is
 * not an exact dict or whose values are not exact str, keyword arguments, a
 * middleware not yet started) goes to the instance's Python method
 * _dispatch(scope, receive, send), which does the full, authoritative work.
 * The C test only ever decides "certainly not ours"; every doubt goes to
 * Python.
 *
 * The module holds no state of its own and never keeps an error set: a
 * failed lookup or search is cleared and the call goes to _dispatch, which
 * raises it again in Python where it belongs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MT_COMPAT_NO_INTERNALS    /* version guards only: no frame internals here */
#include "_compat.h"

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *app;      /* the wrapped ASGI app */
    PyObject *routes;   /* tuple of str, or NULL/None: every call goes to _dispatch */
} MtPassthrough;

static PyObject *mt_str_type;      /* "type" */
static PyObject *mt_str_http;      /* "http" */
static PyObject *mt_str_path;      /* "path" */
static PyObject *mt_str_dispatch;  /* "_dispatch" */

/* New reference to scope[key], or NULL (no error set) when absent or on error. */
static PyObject *
mt_dict_get(PyObject *dict, PyObject *key)
{
    PyObject *value = NULL;
#if MT_HAVE_DICT_GETITEMREF
    if (PyDict_GetItemRef(dict, key, &value) < 0) {
        PyErr_Clear();
        return NULL;
    }
#else
    value = PyDict_GetItemWithError(dict, key);
    if (value == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(value);
#endif
    return value;
}

/* 1: an http scope whose path contains none of `routes`: the app's, certainly.
 * 0: anything else, or any doubt (decided by _dispatch). Never leaves an error. */
static int
mt_certainly_not_ours(PyObject *scope, PyObject *routes)
{
    if (!PyDict_CheckExact(scope)) {
        return 0;
    }
    PyObject *kind = mt_dict_get(scope, mt_str_type);
    if (kind == NULL) {
        return 0;
    }
    int http = kind == mt_str_http || (PyUnicode_CheckExact(kind) && PyUnicode_Compare(kind, mt_str_http) == 0);
    Py_DECREF(kind);
    if (!http) {
        return 0;
    }
    PyObject *path = mt_dict_get(scope, mt_str_path);
    if (path == NULL) {
        return 0;   /* _dispatch reads a missing path as "" */
    }
    int verdict = 0;
    if (PyUnicode_CheckExact(path)) {
        verdict = 1;
        Py_ssize_t n = PyTuple_GET_SIZE(routes);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t at = PyUnicode_Find(path, PyTuple_GET_ITEM(routes, i), 0, PY_SSIZE_T_MAX, 1);
            if (at != -1) {     /* found (>= 0) or an error (-2): not certain */
                PyErr_Clear();
                verdict = 0;
                break;
            }
        }
    }
    Py_DECREF(path);
    return verdict;
}

static PyObject *
mt_passthrough_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    MtPassthrough *self = (MtPassthrough *)callable;
    if (PyVectorcall_NARGS(nargsf) == 3 && kwnames == NULL) {
        /* Owned references: the dict lookups may run a key's __eq__ or a
         * finaliser, which could replace either attribute under us. */
        PyObject *routes = Py_XNewRef(self->routes);
        int direct = routes != NULL && PyTuple_CheckExact(routes) && mt_certainly_not_ours(args[0], routes);
        Py_XDECREF(routes);
        PyObject *app = direct ? Py_XNewRef(self->app) : NULL;
        if (app != NULL) {
            PyObject *result = PyObject_Vectorcall(app, args, nargsf, NULL);
            Py_DECREF(app);
            return result;
        }
    }
    PyObject *dispatch = PyObject_GetAttr(callable, mt_str_dispatch);
    if (dispatch == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(dispatch, args, nargsf, kwnames);
    Py_DECREF(dispatch);
    return result;
}

static PyObject *
mt_passthrough_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    MtPassthrough *self = (MtPassthrough *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->vectorcall = mt_passthrough_vectorcall;
        self->routes = Py_NewRef(Py_None);
    }
    return (PyObject *)self;
}

static int
mt_passthrough_traverse(MtPassthrough *self, visitproc visit, void *arg)
{
    /* A heap subclass's traverse visits the type itself (subtype_traverse). */
    Py_VISIT(self->app);
    Py_VISIT(self->routes);
    return 0;
}

static int
mt_passthrough_clear(MtPassthrough *self)
{
    Py_CLEAR(self->app);
    Py_CLEAR(self->routes);
    return 0;
}

/* A heap subclass's dealloc (subtype_dealloc) drops the type reference. */
static void
mt_passthrough_dealloc(MtPassthrough *self)
{
    PyObject_GC_UnTrack(self);
    mt_passthrough_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef mt_passthrough_members[] = {
    {"app", T_OBJECT_EX, offsetof(MtPassthrough, app), 0, "The wrapped ASGI app."},
    {"_passthrough_routes", T_OBJECT_EX, offsetof(MtPassthrough, routes), 0,
     "Tuple of str: an http scope whose path contains none of them goes straight to app. "
     "None: every call goes to _dispatch."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject MtPassthroughType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtracker_web._passthrough.Passthrough",
    .tp_doc = "ASGI app base: calls app directly for http requests outside _passthrough_routes, "
              "and self._dispatch(scope, receive, send) for everything else.",
    .tp_basicsize = sizeof(MtPassthrough),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = mt_passthrough_new,
    .tp_traverse = (traverseproc)mt_passthrough_traverse,
    .tp_clear = (inquiry)mt_passthrough_clear,
    .tp_dealloc = (destructor)mt_passthrough_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(MtPassthrough, vectorcall),
    .tp_members = mt_passthrough_members,
};

static struct PyModuleDef mt_passthrough_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memtracker_web._passthrough",
    .m_doc = "The ASGI middleware's per-request pass-through test, in C.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__passthrough(void)
{
    if (mt_str_dispatch == NULL) {     /* set last: all four are there or none */
        mt_str_type = PyUnicode_InternFromString("type");
        mt_str_http = PyUnicode_InternFromString("http");
        mt_str_path = PyUnicode_InternFromString("path");
        PyObject *dispatch = PyUnicode_InternFromString("_dispatch");
        if (mt_str_type == NULL || mt_str_http == NULL || mt_str_path == NULL || dispatch == NULL) {
            Py_CLEAR(mt_str_type);
            Py_CLEAR(mt_str_http);
            Py_CLEAR(mt_str_path);
            Py_XDECREF(dispatch);
            return NULL;
        }
        mt_str_dispatch = dispatch;
    }
    if (PyType_Ready(&MtPassthroughType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&mt_passthrough_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&MtPassthroughType);
    if (PyModule_AddObject(m, "Passthrough", (PyObject *)&MtPassthroughType) < 0) {
        Py_DECREF(&MtPassthroughType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
