/* memtracker_web/_engine/install.c: taking and giving back CPython's tracer
 * slot: the main interpreter check, which hook the current mode needs, type
 * marks' watcher and audit hook, a prior tracer kept (chained) or replaced,
 * displacement.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* The engine is process-wide (one tracer slot) and its type watcher id and
 * audit hook belong to the interpreter that set them up: it runs in the main
 * interpreter only. A subinterpreter (mod_wsgi runs each app in one) that
 * loaded this module gets a RuntimeError from every call that could change
 * the engine (a built-in exception: the module's own objects belong to the
 * main interpreter), and memtracker_web's Python side counts in census mode. */
static const char mt_subinterp_reason[] =
    "memtracker_web's exact engine runs in the main interpreter only, and this is a subinterpreter "
    "(mod_wsgi runs each app in one unless WSGIApplicationGroup %{GLOBAL} is set): "
    "memtracker_web counts in census mode here";

static int
mt_main_interp(void)
{
    return PyInterpreterState_Get() == PyInterpreterState_Main();
}

static int
mt_require_main_interp(void)
{
    if (!mt_main_interp()) {
        PyErr_SetString(PyExc_RuntimeError, mt_subinterp_reason);
        return -1;
    }
    return 0;
}

static int
mt_engine_check_runtime(void)
{
    if (mt_require_main_interp() < 0) {
        return -1;
    }
    mt_selftest_if_needed(1, 1);
    if (mt_unavailable_reason != NULL) {
        PyErr_SetString(mt_EngineUnavailable, mt_unavailable_reason);
        return -1;
    }
    return 0;
}

/* Our tracer is gone: every running capture (and watch-all) missed events. */
MT_HOOK_ONLY void
mt_engine_mark_displaced(void)
{
    mt_engine.displaced = 1;
    for (int i = 0; i < mt_engine.n_running; i++) {
        mt_engine.running[i]->missed = 1;
    }
    if (mt_engine.watch_on) {
        mt_engine.watch_stale = 1;
    }
}

/* Notice, at a safe point, that someone else's tracer replaced ours. */
static void
mt_engine_check_displaced(void)
{
#if MT_HAVE_TRACER
    if (mt_engine.installed && !mt_engine.displaced) {
        /* Exactly the hook of the current mode (or the chaining one, which
         * calls it): a tool that saved a hook of ours in an earlier mode and
         * put it back counts as having displaced us. */
        void *data = NULL;
        PyRefTracer now = PyRefTracer_GetTracer(&data);
        int current = (now == mt_engine.inner && data == mt_engine.inner_data) || now == mt_hook_chained;
        if (!current) {
            mt_engine_mark_displaced();
        }
    }
#endif
}

/* Drop running captures' slots whose type died unseen (its weak reference is
 * dead): their pointers must leave every table before anything reads them. */
MT_HOOK_ONLY void
mt_engine_validate_slots(void)
{
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        for (uint32_t s = 0; s < c->n_slots; s++) {
            MtSlot *slot = &c->slots[s];
            PyTypeObject *tp = slot->type;
            if (tp != NULL && !mt_slot_type_alive(slot)) {
                mt_pm_pop(&c->types, (uintptr_t)tp, NULL);
                mt_capture_purge_objects(c, s, 0);
            }
        }
    }
}

#if MT_HAVE_TRACER
/* Our own change of the tracer slot: the hook being replaced is not displaced. */
static int
mt_engine_set_tracer(PyRefTracer fn, void *data)
{
    mt_engine.switching = 1;
    int rc = PyRefTracer_SetTracer(fn, data);
    mt_engine.switching = 0;
    return rc;
}

/* The hook for the current mode, and what it is passed. */
static void
mt_engine_pick_hook(MtHook *fn, void **data)
{
    if (mt_engine.watch_on && mt_engine.watch_sample > 1) {
        *fn = mt_engine.multi_interp ? mt_hook_sampled_checked
              : !mt_engine.precise   ? mt_hook_sampled_filtered
              : mt_engine.n_marks    ? mt_hook_sampled
                                     : mt_hook_sampled_unmarked;
        *data = (void *)(uintptr_t)mt_engine.mark_bit;
    }
    else if (mt_engine.watch_on) {
        *fn = mt_engine.multi_interp ? mt_hook_watch_checked : mt_hook_watch;
        *data = mt_engine.watch_cache;
    }
    else if (mt_engine.precise) {
        *fn = mt_hook;
        *data = (void *)(uintptr_t)mt_engine.mark_bit;
    }
    else {
        *fn = mt_hook_filtered;
        *data = NULL;
    }
}

/* Put the current mode's hook in the tracer slot we hold (safe points). */
static void
mt_engine_select_hook(void)
{
    mt_engine_check_displaced();       /* never overwrite a tool that took the slot unnoticed */
    mt_engine_pick_hook(&mt_engine.inner, &mt_engine.inner_data);
    if (!mt_engine.installed || mt_engine.displaced) {
        return;
    }
    void *data = NULL;
    PyRefTracer now = PyRefTracer_GetTracer(&data);
    if (now == mt_hook_chained) {
        return;     /* it calls mt_engine.inner */
    }
    if (now != mt_engine.inner || data != mt_engine.inner_data) {
        mt_engine_set_tracer(mt_engine.inner, mt_engine.inner_data);
    }
}

static int
mt_type_watcher(PyTypeObject *tp)
{
    (void)tp;   /* a marked type was modified: nothing to do, the mark stays valid */
    return 0;
}

/* Sees `obj.__class__ = T` (CPython audits it before assigning): when obj's
 * type is marked, T is marked too, so the object's death is seen whatever
 * its type then. Runs as ordinary C code under the GIL, not in the tracer. */
static int
mt_audit_hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    if (event[0] == 'm' && strcmp(event, "memtracker_web.probe") == 0) {
        mt_engine.audit_seen = 1;
        return 0;
    }
    if (!(mt_engine.watch_on || (mt_engine.precise && mt_engine.n_running > 0)) || event[0] != 'o'
        || strcmp(event, "object.__setattr__") != 0 || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) != 3) {
        return 0;
    }
    PyObject *obj = PyTuple_GET_ITEM(args, 0);
    PyObject *name = PyTuple_GET_ITEM(args, 1);
    PyObject *value = PyTuple_GET_ITEM(args, 2);
    if (!PyType_Check(value) || !PyUnicode_Check(name) || !PyUnicode_EqualToUTF8(name, "__class__")) {
        return 0;
    }
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts == NULL || ts->interp != mt_engine.interp) {
        return 0;
    }
    PyTypeObject *target = (PyTypeObject *)value;
    /* Watch-all counts an object under its type at creation and at death:
     * moving it (Django's `obj = Empty(); obj.__class__ = Query`) would leave
     * +1 on one type and -1 on the other for ever. Move its count with it, as
     * a death of the old type and a birth of the new, each where it is
     * counted (sampled: by address, or every object of a Python class).
     * (Should the assignment then fail its layout check, the move stays: rare.) */
    if (mt_engine.watch_on && !mt_engine.watch_stale && Py_TYPE(obj) != target) {
        int every = mt_engine.watch_sample == 1;
        /* An object its finaliser resurrected was counted freed already: its
         * old type is not counted again. (Its address is kept, and as a
         * collected object it is marked finalised; an address kept from an
         * earlier object's ordinary death is not its own.) Either way the
         * address leaves the table, so that its death under the new type counts. */
        PyTypeObject *old = Py_TYPE(obj);
        int kept = mt_pm_pop(&mt_engine.watch_dying, (uintptr_t)obj, NULL);
        int counted_freed = kept && MT_WATCH_FINALIZABLE(old) && (!PyType_IS_GC(old) || PyObject_GC_IsFinalized(obj));
        if ((every || MT_WATCH_COUNTED(obj, Py_TYPE(obj), mt_engine.watch_limit)) && !counted_freed) {
            mt_watch_count(Py_TYPE(obj), 1);
        }
        if (every || MT_WATCH_COUNTED(obj, target, mt_engine.watch_limit)) {
            mt_watch_count(target, 0);
        }
    }
    if (!mt_engine.precise || mt_engine.n_running == 0 || !(Py_TYPE(obj)->tp_watched & mt_engine.mark_bit)) {
        return 0;
    }
    for (uint32_t i = 0; i < mt_engine.n_retargets; i++) {
        if (mt_engine.retargets[i].type == target) {
            return 0;
        }
    }
    /* The assignment may still fail its layout check: a needless mark is harmless. */
    PyObject *exc = PyErr_GetRaisedException();
    if (mt_marks_append(&mt_engine.retargets, &mt_engine.n_retargets, &mt_engine.cap_retargets, target) < 0) {
        PyErr_Clear();
        mt_engine_precise_failed();
    }
    else {
        mt_engine_rebuild_filter();
    }
    PyErr_SetRaisedException(exc);
    return 0;
}

/* Once: a type watcher id (our bit in tp_watched) and an audit hook that is
 * seen to run (an existing hook may veto adding it, silently). */
static void
mt_engine_setup_precise(void)
{
    if (mt_engine.precise_setup != 0) {
        return;
    }
    mt_engine.precise_setup = -1;
    PyObject *exc = PyErr_GetRaisedException();
    int id = PyType_AddWatcher(mt_type_watcher);
    if (id < 0) {
        PyErr_Clear();
    }
    else if (PySys_AddAuditHook(mt_audit_hook, NULL) < 0) {
        PyErr_Clear();
        PyType_ClearWatcher(id);
    }
    else {
        if (PySys_Audit("memtracker_web.probe", NULL) < 0) {
            PyErr_Clear();
        }
        if (mt_engine.audit_seen) {
            mt_engine.watcher_id = id;
            mt_engine.mark_bit = 1u << id;
            mt_engine.precise_setup = 1;
        }
        else {
            PyType_ClearWatcher(id);
        }
    }
    PyErr_SetRaisedException(exc);
}

/* Marks cannot go on (memory ran out): the byte filter takes over. */
static void
mt_engine_precise_failed(void)
{
    if (!mt_engine.precise) {
        return;
    }
    mt_engine.precise = 0;
    mt_engine_sync_marks();        /* unmarks everything */
    mt_engine_rebuild_filter();    /* and selects the byte filter's hook */
}
#endif

#if MT_HAVE_TRACER
#  if MT_TRACER_TOLD_REMOVED
/* Whether tracemalloc traces now (a safe point: this calls Python). */
static int
mt_tracemalloc_is_tracing(void)
{
    PyObject *exc = PyErr_GetRaisedException();
    int tracing = 0;
    PyObject *mod = PyImport_ImportModule("_tracemalloc");
    PyObject *res = mod ? PyObject_CallMethod(mod, "is_tracing", NULL) : NULL;
    if (res != NULL) {
        tracing = PyObject_IsTrue(res) == 1;
    }
    Py_XDECREF(res);
    Py_XDECREF(mod);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    return tracing;
}
#  endif

/* Whether a tracer found in the slot keeps being called (chained) while we
 * hold it, and gets the slot back when we leave. Before 3.15 CPython never
 * tells a tracer it was replaced, so any is kept. From 3.15 on, replacing a
 * tracer tells it it was removed (TRACKER_REMOVED): calling it after that
 * breaks its contract, except tracemalloc's, which ignores the notice and
 * whose state lives in tracemalloc.is_tracing(). Any other is replaced, as
 * CPython defines replacing; engine_state()["prior_tracer"] says so. */
static int
mt_engine_keeps_prior(PyRefTracer prev, void *data)
{
    if (prev == NULL) {
        return 0;
    }
#  if MT_TRACER_TOLD_REMOVED
    /* tracemalloc's tracer is not exported: it is the one installed with no
     * data, from inside the interpreter's own binary, while tracemalloc traces
     * (another tool may have replaced it, leaving is_tracing() true). */
    if (data != NULL || !mt_tracemalloc_is_tracing()) {
        return 0;
    }
#    if MT_HAVE_DLADDR
    Dl_info found, api;
    if (!dladdr((void *)(uintptr_t)prev, &found) || !dladdr((void *)(uintptr_t)PyRefTracer_SetTracer, &api)
        || found.dli_fbase != api.dli_fbase) {
        return 0;
    }
#    endif
    return 1;
#  else
    (void)data;
    return 1;
#  endif
}
#endif

static int
mt_engine_install_if_needed(void)
{
#if MT_HAVE_TRACER
    if (mt_engine.installed) {
        mt_engine_check_displaced();
        if (!mt_engine.displaced) {
            return 0;
        }
        /* Taking the slot back (chaining whoever holds it now): captures that
         * ran meanwhile keep their `missed` mark; watch-all starts afresh. */
        if (mt_engine.watch_on && mt_engine.watch_stale) {
            mt_watch_release_all();
            mt_pm_free(&mt_engine.watch);
            memset(mt_engine.watch_cache, 0, sizeof(mt_engine.watch_cache));
            mt_engine.watch_n = 1;
            mt_engine.watch_free_head = 0;
            mt_engine.watch_stale = 0;
        }
    }
    mt_engine_setup_precise();
    mt_engine.precise = mt_engine.precise_setup == 1 && !mt_engine.precise_off;
    mt_engine_update_plain();
    void *data = NULL;
    PyRefTracer prev = PyRefTracer_GetTracer(&data);
    mt_engine.interp = PyInterpreterState_Get();
    mt_engine_refresh_interps();
    /* Types that died while we were not called left dangling pointers. */
    mt_engine_validate_slots();
    mt_engine_pick_hook(&mt_engine.inner, &mt_engine.inner_data);
    if (!mt_is_our_hook(prev)) {
        int keep = mt_engine_keeps_prior(prev, data);
        mt_engine.prev_fn = keep ? prev : NULL;
        mt_engine.prev_data = keep ? data : NULL;
        mt_engine.prior = prev == NULL ? MT_PRIOR_NONE : keep ? MT_PRIOR_CHAINED : MT_PRIOR_REPLACED;
        if (mt_engine_set_tracer(keep ? mt_hook_chained : mt_engine.inner, keep ? NULL : mt_engine.inner_data) < 0) {
            return -1;
        }
    }
    else if (prev != mt_hook_chained && (prev != mt_engine.inner || data != mt_engine.inner_data)) {
        /* a hook of ours from an earlier mode, put back by another tool */
        if (mt_engine_set_tracer(mt_engine.inner, mt_engine.inner_data) < 0) {
            return -1;
        }
    }
    /* else: ours is there already (another tool put it back): keep its chain. */
    mt_engine.installed = 1;
    mt_engine.displaced = 0;
    mt_engine_rebuild_bindings();
    mt_engine_select_hook();
    return 0;
#else
    return mt_engine_check_runtime();
#endif
}

static void
mt_engine_uninstall_if_idle(void)
{
#if MT_HAVE_TRACER
    if (!mt_engine.installed || mt_engine.n_running > 0 || mt_engine.watch_on) {
        return;
    }
    void *data = NULL;
    if (mt_is_our_hook(PyRefTracer_GetTracer(&data))) {
        mt_engine_set_tracer(mt_engine.prev_fn, mt_engine.prev_data);     /* NULL unless chained */
        mt_engine.prev_fn = NULL;
        mt_engine.prev_data = NULL;
    }
    /* else: another tool holds the slot and may chain to us: our chain stays valid. */
    mt_engine.installed = 0;
    mt_engine_sync_marks();        /* nothing runs: every mark goes */
#endif
}

/* Whether another interpreter exists: watch-all's cached path then checks
 * which interpreter each event comes from. CPython puts every new
 * interpreter at the head of its list and the main one was first, so another
 * exists exactly when the head is not the main one; the head pointer is only
 * compared, never followed (walking the list needs the runtime's lock, which
 * is not ours to take, and another thread may be freeing an interpreter). */
static void
mt_engine_refresh_interps(void)
{
    int multi = PyInterpreterState_Head() != PyInterpreterState_Main();
    if (multi != mt_engine.multi_interp) {
        mt_engine.multi_interp = multi;
        mt_engine_update_plain();
#if MT_HAVE_TRACER
        if (mt_engine.watch_on) {
            mt_engine_select_hook();
        }
#endif
    }
}
