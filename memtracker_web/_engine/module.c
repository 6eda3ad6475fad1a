/* memtracker_web/_engine/module.c: the module memtracker_web._tracker:
 * engine_state and the other module functions, test and benchmark helpers,
 * PyInit__tracker.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* ------------------------------------------------------------------ */
/* Module functions                                                    */
/* ------------------------------------------------------------------ */

/* The hook our slot holds (or would hold) for the current mode. */
static const char *
mt_engine_hook_name(void)
{
#if MT_HAVE_TRACER
    if (mt_engine.installed) {
        for (size_t i = 0; i < sizeof(mt_hooks) / sizeof(mt_hooks[0]); i++) {
            if (mt_hooks[i].fn == mt_engine.inner) {
                return mt_hooks[i].name;
            }
        }
    }
#endif
    return "none";
}

static PyObject *
mt_engine_state(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (!mt_main_interp()) {
        /* clang-format off */ /* one key and its value a line */
        return Py_BuildValue("{s:O,s:s,s:O,s:O,s:i,s:O,s:s}",
                             "available", Py_False, "reason", mt_subinterp_reason,
                             "installed", Py_False, "displaced", Py_False, "running_captures", 0,
                             "watching", Py_False, "filter", "none");
        /* clang-format on */
    }
    mt_selftest_if_needed(0, 0);
    mt_engine_check_displaced();
    /* which test picks the slow path's events: see mt_engine_setup_precise */
    const char *filter = !mt_engine.installed ? "none" : mt_engine.precise ? "type-marks" : "byte-filter";
    const char *prior = "none";
    const char *selftest = "not run";
    const char *slot = "empty";     /* who holds CPython's tracer slot */
#if MT_HAVE_TRACER
    void *slot_data = NULL;
    PyRefTracer in_slot = PyRefTracer_GetTracer(&slot_data);
    slot = in_slot == NULL ? "empty" : mt_is_our_hook(in_slot) ? "ours" : "other";
    prior = mt_engine.prior == MT_PRIOR_CHAINED    ? "chained"
            : mt_engine.prior == MT_PRIOR_REPLACED ? "replaced"
                                                   : "none";
    selftest = mt_selftest_name();
#endif
    /* clang-format off */ /* one key and its value a line */
    return Py_BuildValue("{s:O,s:s,s:O,s:O,s:i,s:O,s:s,s:I,s:I,s:s,s:s,s:s,s:s}",
                         "available", mt_unavailable_reason ? Py_False : Py_True,
                         "reason", mt_unavailable_reason ? mt_unavailable_reason : "",
                         "installed", mt_engine.installed ? Py_True : Py_False,
                         "displaced", (mt_engine.installed && mt_engine.displaced) ? Py_True : Py_False,
                         "running_captures", mt_engine.n_running,
                         "watching", mt_engine.watch_on ? Py_True : Py_False,
                         "filter", filter,
                         "marked_types", (unsigned int)mt_engine.n_marks,
                         "reassignment_targets", (unsigned int)mt_engine.n_retargets,
                         "hook", mt_engine_hook_name(),
                         "prior_tracer", prior,
                         "selftest", selftest,
                         "tracer_slot", slot);
    /* clang-format on */
}

/* Tests and benchmarks: use the byte filter instead of type marks (from the
 * next installation of the tracer on). */
static PyObject *
mt_use_type_marks(PyObject *Py_UNUSED(self), PyObject *on)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    int enable = PyObject_IsTrue(on);
    if (enable < 0) {
        return NULL;
    }
    if (mt_engine.installed) {
        PyErr_SetString(PyExc_RuntimeError, "the tracer is installed: stop captures and watch-all first");
        return NULL;
    }
    mt_engine.precise_off = !enable;
    Py_RETURN_NONE;
}

/* Cheap check for count queries: creates no object (bools are immortal). */
static PyObject *
mt_displaced(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (!mt_main_interp()) {
        Py_RETURN_FALSE;
    }
    mt_engine_check_displaced();
    return PyBool_FromLong(mt_engine.installed && mt_engine.displaced);
}

static PyObject *
mt_set_pending_callable(PyObject *Py_UNUSED(self), PyObject *fn)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "expected a callable or None");
        return NULL;
    }
    Py_XSETREF(mt_engine.pending_callable, fn == Py_None ? NULL : Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* Tests only: "another tool's" tracer that counts what it is called with, so a
 * test can see whether it is still called after CPython told it it was removed. */
#if MT_HAVE_TRACER
static struct {
    uint64_t events, removed, after_removed;
} mt_probe;

static int
mt_probe_hook(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (op == NULL) {
        mt_probe.removed++;
    }
    else {
        mt_probe.events++;
        if (mt_probe.removed) {
            mt_probe.after_removed++;
        }
    }
    (void)event;
    return 0;
}
#endif

static PyObject *
mt_probe_tracer(PyObject *Py_UNUSED(self), PyObject *on)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
#if MT_HAVE_TRACER
    int enable = on == Py_None ? -1 : PyObject_IsTrue(on);
    if (enable == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (enable == 1) {
        memset(&mt_probe, 0, sizeof(mt_probe));
        PyRefTracer_SetTracer(mt_probe_hook, &mt_probe);
    }
    else if (enable == 0) {
        void *data = NULL;
        if (PyRefTracer_GetTracer(&data) == mt_probe_hook) {
            PyRefTracer_SetTracer(NULL, NULL);
        }
    }
    void *data = NULL;
    /* clang-format off */ /* one key and its value a line */
    return Py_BuildValue("{s:K,s:K,s:K,s:O}", "events", (unsigned long long)mt_probe.events,
                         "removed", (unsigned long long)mt_probe.removed,
                         "after_removed", (unsigned long long)mt_probe.after_removed,
                         "installed", PyRefTracer_GetTracer(&data) == mt_probe_hook ? Py_True : Py_False);
    /* clang-format on */
#else
    (void)on;
    if (mt_engine_check_runtime() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
#endif
}

/* Benchmarks only: a tracer that does nothing, to measure what CPython's hook
 * itself costs (the floor under any tracer). Refuses while ours runs. */
#if MT_HAVE_TRACER
static int
mt_noop_hook(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)op;
    (void)event;
    (void)data;
    return 0;
}
#endif

static PyObject *
mt_noop_tracer(PyObject *Py_UNUSED(self), PyObject *on)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
#if MT_HAVE_TRACER
    if (mt_engine.installed) {
        PyErr_SetString(PyExc_RuntimeError, "memtracker_web's tracer is installed: stop captures first");
        return NULL;
    }
    int enable = PyObject_IsTrue(on);
    if (enable < 0) {
        return NULL;
    }
    PyRefTracer_SetTracer(enable ? mt_noop_hook : NULL, NULL);
    Py_RETURN_NONE;
#else
    (void)on;
    if (mt_engine_check_runtime() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
#endif
}

/* Tests: run the destruction self-test now, as the engine runs it once.
 * drop: destruction events the test's tracer loses on purpose. apply: take
 * its verdict (refuse the engine if events were lost), as the first start does. */
static PyObject *
mt_destruction_selftest(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    static char *kwlist[] = {"depth", "drop", "apply", NULL};
    Py_ssize_t depth = MT_SELFTEST_DEPTH;
    unsigned long long drop = 0;
    int apply = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nKp:_destruction_selftest", kwlist, &depth, &drop, &apply)) {
        return NULL;
    }
#if MT_HAVE_TRACER
    if (mt_engine.installed) {
        PyErr_SetString(PyExc_RuntimeError, "memtracker_web's tracer is installed: stop captures first");
        return NULL;
    }
    if (depth < 1) {
        PyErr_SetString(PyExc_ValueError, "depth must be at least 1");
        return NULL;
    }
    MtSelftest st = {0};
    st.depth = depth;
    st.drop = drop;
    if (mt_selftest_run(&st) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "a self-test is running in another thread");
        return NULL;
    }
    if (apply) {
        mt_selftest_apply(&st);
    }
    /* clang-format off */ /* one key and its value a line */
    return Py_BuildValue("{s:K,s:K,s:O,s:O,s:O}",
                         "created", (unsigned long long)st.created,
                         "destroyed", (unsigned long long)st.destroyed,
                         "completed", st.completed ? Py_True : Py_False,
                         "threaded", st.threaded ? Py_True : Py_False,
                         "displaced", st.displaced ? Py_True : Py_False);
    /* clang-format on */
#else
    (void)depth;
    (void)drop;
    (void)apply;
    if (mt_engine_check_runtime() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
#endif
}

/* In a forked child the pending call we asked for went to a parent's thread
 * (when the fork happened off the main thread): ask again when needed. */
static PyObject *
mt_after_fork_child(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    mt_engine.pending_scheduled = 0;
    Py_RETURN_NONE;
}

/* main_interpreter() -> bool: whether the engine can run here (see mt_subinterp_reason). */
static PyObject *
mt_main_interpreter(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(mt_main_interp());
}

/* running_frames() -> [frame]: the innermost frame of every thread of this
 * interpreter that is running Python code. sys._current_frames() walks every
 * interpreter instead and makes frame objects of other interpreters' frames
 * with this interpreter's allocator: a subinterpreter with a GIL of its own
 * later frees one with its own allocator, and the process aborts. Nothing
 * here runs Python code, so the GIL is held throughout: a thread of this
 * interpreter ends (unlinks its state) only holding the GIL, and one that
 * starts is put at the head, before where the walk began. (CPython's own walk
 * also takes the runtime's lock of the list, which is not public: C code that
 * deletes another thread's state without the GIL, which the C API allows after
 * PyThreadState_Clear, could still race with this walk.) */
static PyObject *
mt_running_frames(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL; ts = PyThreadState_Next(ts)) {
        PyFrameObject *frame = PyThreadState_GetFrame(ts);
        if (frame == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(frames);
                return NULL;
            }
            continue;       /* runs no Python code now */
        }
        int rc = PyList_Append(frames, (PyObject *)frame);
        Py_DECREF(frame);
        if (rc < 0) {
            Py_DECREF(frames);
            return NULL;
        }
    }
    return frames;
}

static PyMethodDef mt_methods[] = {
    {"running_frames", mt_running_frames, METH_NOARGS,
     "running_frames() -> [frame]: the innermost frame of each thread of this interpreter running Python code."},
    {"main_interpreter", mt_main_interpreter, METH_NOARGS,
     "main_interpreter() -> bool: the engine runs in the main interpreter only."},
    {"_after_fork_child", mt_after_fork_child, METH_NOARGS, "Reset per-process state in a forked child."},
    {"_destruction_selftest", (PyCFunction)(void (*)(void))mt_destruction_selftest, METH_VARARGS | METH_KEYWORDS,
     "_destruction_selftest(depth=20000, drop=0, apply=False): tests; the engine's destruction self-test."},
    {"_probe_tracer", mt_probe_tracer, METH_O,
     "_probe_tracer(on): tests; a counting tracer of 'another tool' (None: read its counts)."},
    {"_noop_tracer", mt_noop_tracer, METH_O, "_noop_tracer(on): benchmarks' floor; not for production."},
    {"engine_state", mt_engine_state, METH_NOARGS, "engine_state() -> dict"},
    {"_use_type_marks", mt_use_type_marks, METH_O, "_use_type_marks(on): tests; False forces the byte filter."},
    {"displaced", mt_displaced, METH_NOARGS, "displaced() -> bool: another tracer replaced ours"},
    {"watch_start", (PyCFunction)(void (*)(void))mt_watch_start, METH_VARARGS | METH_KEYWORDS,
     "watch_start(sample=1): count net allocations of every type, of every object or of about one in sample."},
    {"watch_stop", mt_watch_stop, METH_NOARGS, "Stop watch-all and free its table."},
    {"watch_counts", mt_watch_counts, METH_NOARGS, "watch_counts() -> [(type, new, free)]"},
    {"watch_statistics", mt_watch_statistics, METH_NOARGS, "watch_statistics() -> dict"},
    {"set_pending_callable", mt_set_pending_callable, METH_O, "Register the callback drainer."},
    {"referrers", mt_referrers, METH_VARARGS,
     "referrers(objects, ignored=None) -> list: the objects the collector tracks that refer to any item of the "
     "list objects (not the list itself, nor an object whose id is in ignored), in one pass over them; and the "
     "untracked containers below them that hold an item no tracked object holds."},
    {"referrers_until", mt_referrers_until, METH_VARARGS,
     "referrers_until(objects, ignored, deadline) -> (list, complete): referrers(), its passes over the heap "
     "stopped at deadline (a time.monotonic() value); complete is False when they stopped there"},
    {"held_by", mt_held_by, METH_VARARGS,
     "held_by(holder, objects, keys) -> list: the items of the list objects that holder refers to, as its "
     "tp_traverse shows them (twice if it refers to one twice), then with keys a dict's or frozendict's keys it "
     "did not show"},
    {"code_parts", mt_code_parts, METH_O,
     "code_parts(code) -> tuple: what a code object refers to, which the collector does not show (constants, names, "
     "locals' names and kinds, file and function names, line and exception tables, and the attributes cached once "
     "read: co_code, co_varnames, co_cellvars, co_freevars)"},
    {"clear_type_cache", mt_clear_type_cache, METH_NOARGS,
     "clear_type_cache(): let go of the attribute names CPython's type attribute cache holds (PyType_ClearCache)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mt_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memtracker_web._tracker",
    .m_doc = "Reference-tracer engine of memtracker_web.",
    .m_size = -1,
    .m_methods = mt_methods,
};

static void
mt_decide_availability(void)
{
#if !MT_HAVE_TRACER
#  if MT_FREE_THREADED
    mt_unavailable_reason = "free-threaded CPython builds are not supported yet: the tracer's tables "
                            "rely on the GIL; use a default (GIL) build of CPython 3.13.3 or newer";
#  else
    mt_unavailable_reason = "this CPython has no reference tracer (PyRefTracer arrived in 3.13); "
                            "use CPython 3.13.3 or newer";
#  endif
#else
    /* Runtime version: 3.13.0-3.13.2 lose destruction events. */
    if (MT_RUNTIME_LOSES_DESTROYS(Py_Version)) {
        mt_unavailable_reason = "CPython 3.13.0-3.13.2 lose object destruction events "
                                "(gh-130382, gh-125703, gh-126076); use 3.13.3 or newer";
    }
    else if (!MT_RUNTIME_HAS_TRACER(Py_Version)) {
        mt_unavailable_reason = "this CPython has no reference tracer; use CPython 3.13.3 or newer";
    }
#endif
}

/* The fingerprint of _tracker.pyi that setup.py compiles in (see its _interface):
 * memtracker_web.core.engine refuses an extension whose stub has changed since. */
#ifndef MT_INTERFACE
#  define MT_INTERFACE "unmarked"
#endif

PyMODINIT_FUNC
PyInit__tracker(void)
{
    if (!mt_main_interp()) {
        /* loaded first by a subinterpreter: its objects must not become the process's */
        PyErr_SetString(PyExc_ImportError, mt_subinterp_reason);
        return NULL;
    }
    mt_decide_availability();
    if (PyType_Ready(&MtCaptureCoreType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&mt_module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *exc = PyErr_NewExceptionWithDoc(
        "memtracker_web.EngineUnavailable",
        "The exact engine (CPython's reference tracer) cannot run on this interpreter.", PyExc_RuntimeError, NULL);
    if (exc == NULL || PyModule_AddObject(m, "EngineUnavailable", Py_NewRef(exc)) < 0) {
        Py_XDECREF(exc);
        Py_DECREF(m);
        return NULL;
    }
    mt_EngineUnavailable = exc;     /* module lives for the process (single-phase init) */
    Py_INCREF(&MtCaptureCoreType);
    if (PyModule_AddObject(m, "CaptureCore", (PyObject *)&MtCaptureCoreType) < 0) {
        Py_DECREF(&MtCaptureCoreType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "HAVE_TRACER", MT_HAVE_TRACER) < 0
        || PyModule_AddIntConstant(m, "MAX_DEPTH", MT_MAX_DEPTH) < 0
        || PyModule_AddIntConstant(m, "MAX_SLOTS", MT_MAX_SLOTS) < 0
        || PyModule_AddIntConstant(m, "MAX_NODES", MT_MAX_NODES) < 0
        || PyModule_AddIntConstant(m, "REFERRERS_SEE_FROZEN", MT_REFERRERS_SEE_FROZEN) < 0
        || PyModule_AddStringConstant(m, "INTERFACE", MT_INTERFACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
