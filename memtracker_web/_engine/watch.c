/* memtracker_web/_engine/watch.c: watch-all: net allocations of every type.
 * The slow path's counting (its cache, rows, finalizable classes) and the
 * module functions watch_start, watch_stop, watch_counts, watch_statistics.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* Whether nothing but watch-all's count needs to see a type's events: not
 * when the slow path must see them too (tracked or marked types, and
 * metatypes, whose instances' deaths must be seen). Under sampled watch-all
 * with marks, a marked type may hold an entry: its events reach the cache only
 * through mt_hook_slow_sampled, which goes on to the capture. */
static inline int
mt_watch_alone(PyTypeObject *tp)
{
    if (PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS)) {
        return 0;
    }
#if MT_HAVE_TRACER
    if (mt_engine.precise) {
        return mt_engine.watch_sample > 1 || (tp->tp_watched & mt_engine.mark_bit) == 0;
    }
#endif
    return !mt_engine.filter[MT_FILTER_INDEX(tp)]
           && !(mt_engine.any_mutable && (!PyType_HasFeature(tp, Py_TPFLAGS_IMMUTABLETYPE) || tp == &PyModule_Type));
}

/* Whether a type's events may be counted in the cache's first half alone (a
 * finalizable type's deaths must pass mt_watch_first_death: the third part). */
MT_HOOK_ONLY int
mt_watch_cacheable(PyTypeObject *tp)
{
    return !MT_WATCH_FINALIZABLE(tp) && mt_watch_alone(tp);
}

/* Move a cache entry's counts into its row; clear the entry if asked. */
MT_HOOK_ONLY void
mt_watch_cache_flush(MtWatchCache *entry, int clear)
{
    uint32_t row;
    if (entry->type != NULL && (entry->count[0] || entry->count[1])
        && mt_pm_get(&mt_engine.watch, (uintptr_t)entry->type, &row)) {
        mt_engine.watch_rows[row].new_count += entry->count[0];
        mt_engine.watch_rows[row].free_count += entry->count[1];
    }
    entry->count[0] = entry->count[1] = 0;
    if (clear) {
        entry->type = NULL;
    }
}

/* Give a cache entry to `tp`: what another type counted there goes to that
 * type's row first. An entry that holds `tp` already keeps its counts. */
static inline void
mt_watch_cache_take(MtWatchCache *entry, PyTypeObject *tp)
{
    if (entry->type != tp) {
        mt_watch_cache_flush(entry, 0);
        entry->type = tp;
    }
}

static void
mt_watch_cache_flush_all(int clear)
{
    for (size_t i = 0; i < MT_WATCH_CACHE_ENTRIES; i++) {
        mt_watch_cache_flush(&mt_engine.watch_cache[i], clear);
    }
}

/* Where a type goes in the cache's first half: the way that holds it already,
 * else an empty one, else the one with fewer counts since the last read (a type
 * seen once long ago gives way to one counted now). */
static inline MtWatchCache *
mt_watch_way_for(PyTypeObject *tp)
{
    MtWatchCache *first = &mt_engine.watch_cache[MT_FILTER_INDEX(tp)];
    MtWatchCache *second = MT_WATCH_OTHER_WAY(tp);
    if (first->type == tp) {
        return first;
    }
    if (second->type == tp) {
        return second;
    }
    if (first->type == NULL) {
        return first;
    }
    if (second->type == NULL) {
        return second;
    }
    return first->count[0] + first->count[1] <= second->count[0] + second->count[1] ? first : second;
}

/* The slow path's count: into the type's row (made on first sight), and the
 * type takes the cache entry when nothing else needs to see its events. */
MT_HOOK_ONLY void
mt_watch_count(PyTypeObject *tp, int is_free)
{
    uint32_t row;
    if (!mt_pm_get(&mt_engine.watch, (uintptr_t)tp, &row)) {
        if (mt_engine.watch_free_head && mt_engine.watch_free_head < mt_engine.watch_n) {
            row = mt_engine.watch_free_head;
            mt_engine.watch_free_head = mt_engine.watch_rows[row].next_free;
        }
        else {
            if (mt_engine.watch_n == mt_engine.watch_cap) {
                uint32_t cap = mt_engine.watch_cap ? mt_engine.watch_cap * 2 : 256;
                MtWatchRow *rows = (MtWatchRow *)realloc(mt_engine.watch_rows, (size_t)cap * sizeof(MtWatchRow));
                if (rows == NULL) {
                    mt_engine.watch_lost++;
                    return;
                }
                mt_engine.watch_rows = rows;
                mt_engine.watch_cap = cap;
            }
            row = mt_engine.watch_n++;
        }
        if (mt_pm_put(&mt_engine.watch, (uintptr_t)tp, row, NULL) < 0) {
            /* give the row back (a row just appended holds whatever realloc left) */
            mt_engine.watch_rows[row].type = NULL;
            mt_engine.watch_rows[row].ref = NULL;
            mt_engine.watch_rows[row].is_static = 0;
            mt_engine.watch_rows[row].next_free = mt_engine.watch_free_head;
            mt_engine.watch_free_head = row;
            mt_engine.watch_lost++;
            return;
        }
        mt_engine.watch_rows[row].type = tp;
        mt_engine.watch_rows[row].new_count = 0;
        mt_engine.watch_rows[row].free_count = 0;
        mt_engine.watch_rows[row].ref = NULL;
        mt_engine.watch_rows[row].is_static = !PyType_HasFeature(tp, Py_TPFLAGS_HEAPTYPE);
    }
    if (is_free) {
        mt_engine.watch_rows[row].free_count++;
    }
    else {
        mt_engine.watch_rows[row].new_count++;
    }
    if (mt_watch_cacheable(tp)) {
        mt_watch_cache_take(mt_watch_way_for(tp), tp);
    }
#if MT_HAVE_TRACER
    else if (MT_WATCH_FINALIZABLE(tp) && mt_watch_alone(tp)) {
        /* (a hook's event passed mt_watch_first_death already; the __class__
         * audit hook's count needs no such check) */
        mt_watch_cache_take(MT_WATCH_FINAL_ENTRY(tp), tp);
    }
    else if (mt_engine.precise && mt_engine.watch_sample == 1 && (tp->tp_watched & mt_engine.mark_bit)
             && !PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS) && !MT_WATCH_FINALIZABLE(tp)) {
        /* a tracked class under exact watch-all: see mt_hook_watch_miss */
        mt_watch_cache_take(MT_WATCH_MARKED_ENTRY(tp), tp);
    }
#endif
}

#if MT_HAVE_TRACER
/* Whether an event of a finalizable class's object (MT_WATCH_FINALIZABLE) is
 * counted: a death is, unless the object already died since its creation
 * (its finaliser resurrected it), so watch-all counts it freed once, as a
 * capture does. A death whose finaliser is about to run keeps the address
 * (a collected object was finalised already and cannot come back); the next
 * creation at that address drops it, and so does a __class__ assignment that
 * moves an object there. Ordinary deaths leave their addresses too, until a
 * new object takes them: past MT_WATCH_DYING_MAX addresses the table starts
 * over (dying_resets), and an object resurrected before that is counted freed
 * twice; without memory for an address, likewise (counted as lost). */
MT_HOOK_ONLY int
mt_watch_first_death(PyObject *op, PyTypeObject *tp, PyRefTracerEvent event)
{
    MtPtrMap *dying = &mt_engine.watch_dying;
    uintptr_t key = (uintptr_t)op;
    if (event == PyRefTracer_CREATE) {
        mt_pm_pop(dying, key, NULL);
        return 1;
    }
    uint32_t seen;
    if (mt_pm_get(dying, key, &seen)) {
        mt_engine.watch_resurrected++;
        return 0;
    }
    if (!PyType_IS_GC(tp) || !PyObject_GC_IsFinalized(op)) {
        if (dying->used >= MT_WATCH_DYING_MAX) {
            /* addresses that no new object took again: start over */
            mt_pm_free(dying);
            mt_engine.watch_dying_resets++;
        }
        if (mt_pm_put(dying, key, 1, NULL) < 0) {
            mt_engine.watch_lost++;
        }
    }
    return 1;
}
#endif

/* A type's row goes (the type died, or may have). Its pointer is only a key
 * here, never read. A row holding a weak reference waits for the next safe
 * point to drop it (mt_watch_release): releasing an object in the hook would
 * run a deallocation inside someone else's. */
static void
mt_watch_forget(PyTypeObject *tp)
{
    uint32_t row;
    MtWatchCache *entries[4] = {&mt_engine.watch_cache[MT_FILTER_INDEX(tp)], MT_WATCH_OTHER_WAY(tp),
                                MT_WATCH_MARKED_ENTRY(tp), MT_WATCH_FINAL_ENTRY(tp)};
    for (int i = 0; i < 4; i++) {
        if (entries[i]->type == tp) {
            entries[i]->type = NULL;
            entries[i]->count[0] = entries[i]->count[1] = 0;
        }
    }
    if (mt_pm_pop(&mt_engine.watch, (uintptr_t)tp, &row)) {
        mt_engine.watch_rows[row].type = NULL;
        if (mt_engine.watch_rows[row].ref == NULL) {
            mt_engine.watch_rows[row].next_free = mt_engine.watch_free_head;
            mt_engine.watch_free_head = row;
        }
    }
}

/* (Safe points.) A forgotten row's weak reference is dropped and the row
 * freed. Dropping it runs our hook, which may add rows and move the table:
 * the row is read and freed first. */
static void
mt_watch_release(uint32_t row)
{
    PyObject *ref = mt_engine.watch_rows[row].ref;
    mt_engine.watch_rows[row].ref = NULL;
    mt_engine.watch_rows[row].next_free = mt_engine.watch_free_head;
    mt_engine.watch_free_head = row;
    Py_XDECREF(ref);
}

/* (Safe points, before the rows are reset.) Every row's weak reference dropped. */
static void
mt_watch_release_all(void)
{
    for (uint32_t i = 1; i < mt_engine.watch_n; i++) {
        PyObject *ref = mt_engine.watch_rows[i].ref;
        mt_engine.watch_rows[i].ref = NULL;
        Py_XDECREF(ref);
    }
}

/* ---------------- watch-all's module functions (safe points) ---------------- */

/* watch_start(sample=1): count every type's net allocations, of every
 * object (sample=1) or of about one object in `sample` (by address). */
static PyObject *
mt_watch_start(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"sample", NULL};
    long sample = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|l:watch_start", kwlist, &sample)) {
        return NULL;
    }
    if (sample < 1 || sample > 65536) {
        PyErr_Format(PyExc_ValueError, "sample must be between 1 and 65536 (one object in sample), got %ld", sample);
        return NULL;
    }
    /* first: the self-test it may run releases the GIL, so what follows is read after it */
    if (mt_engine_check_runtime() < 0) {
        return NULL;
    }
    if (mt_engine.watch_on) {
        if ((uint32_t)sample != mt_engine.watch_sample) {
            PyErr_Format(PyExc_RuntimeError, "watch-all already runs with sample=%u: stop it first",
                         (unsigned)mt_engine.watch_sample);
            return NULL;
        }
        Py_RETURN_NONE;
    }
    mt_engine.watch_sample = (uint32_t)sample;
    /* about 2**32 / sample hashes fall below the limit (sample 1 never tests it) */
    mt_engine.watch_limit = (uint32_t)((UINT64_C(1) << 32) / (uint64_t)sample);
    mt_pm_free(&mt_engine.watch);
    memset(mt_engine.watch_cache, 0, sizeof(mt_engine.watch_cache));
    mt_engine.watch_n = 0;
    mt_engine.watch_free_head = 0;
    mt_engine.watch_lost = 0;
    mt_pm_free(&mt_engine.watch_dying);
    mt_engine.watch_resurrected = mt_engine.watch_dying_resets = 0;
    if (mt_engine.watch_cap == 0) {
        mt_engine.watch_rows = (MtWatchRow *)calloc(256, sizeof(MtWatchRow));
        if (mt_engine.watch_rows == NULL) {
            return PyErr_NoMemory();
        }
        mt_engine.watch_cap = 256;
    }
    mt_engine.watch_n = 1;          /* row 0 is never used: 0 ends the free list */
    mt_engine.watch_stale = 0;
    if (mt_engine_install_if_needed() < 0) {
        return NULL;
    }
    mt_engine.watch_on = 1;
    mt_engine_update_plain();
#if MT_HAVE_TRACER
    mt_engine_select_hook();
#endif
    Py_RETURN_NONE;
}

static PyObject *
mt_watch_stop(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    mt_engine_check_displaced();
    if (!mt_engine.watch_on) {
        Py_RETURN_NONE;
    }
    mt_engine.watch_on = 0;
    mt_engine_update_plain();
#if MT_HAVE_TRACER
    mt_engine_select_hook();
#endif
    mt_watch_release_all();
    mt_pm_free(&mt_engine.watch);
    mt_pm_free(&mt_engine.watch_dying);
    memset(mt_engine.watch_cache, 0, sizeof(mt_engine.watch_cache));
    mt_engine.watch_n = 0;
    mt_engine.watch_free_head = 0;
    mt_engine_uninstall_if_idle();
    Py_RETURN_NONE;
}

static PyObject *mt_str_subclasses;

/* Every class alive now (pointer => 1), walking type.__subclasses__ from
 * object (the descriptor of `type` itself, so no metaclass can override it). */
static int
mt_collect_live_types(MtPtrMap *out)
{
    PyObject *subclasses = mt_getattr_interned((PyObject *)&PyType_Type, &mt_str_subclasses, "__subclasses__");
    PyObject *stack = subclasses ? PyList_New(0) : NULL;
    if (stack == NULL || PyList_Append(stack, (PyObject *)&PyBaseObject_Type) < 0) {
        Py_XDECREF(subclasses);
        Py_XDECREF(stack);
        return -1;
    }
    int rc = 0;
    while (PyList_GET_SIZE(stack) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(stack) - 1;
        PyObject *tp = Py_NewRef(PyList_GET_ITEM(stack, last));
        if (PyList_SetSlice(stack, last, last + 1, NULL) < 0) {
            Py_DECREF(tp);
            rc = -1;
            break;
        }
        uint32_t seen;
        if (mt_pm_get(out, (uintptr_t)tp, &seen)) {
            Py_DECREF(tp);
            continue;
        }
        if (mt_pm_put(out, (uintptr_t)tp, 1, NULL) < 0) {
            Py_DECREF(tp);
            PyErr_NoMemory();
            rc = -1;
            break;
        }
        PyObject *subs = PyObject_CallOneArg(subclasses, tp);
        Py_DECREF(tp);
        if (subs == NULL || PyList_SetSlice(stack, PyList_GET_SIZE(stack), PyList_GET_SIZE(stack), subs) < 0) {
            Py_XDECREF(subs);
            rc = -1;
            break;
        }
        Py_DECREF(subs);
    }
    Py_DECREF(stack);
    Py_DECREF(subclasses);
    return rc;
}

/* Whether the class a weak reference points to is still alive. */
static int
mt_watch_ref_alive(PyObject *ref)
{
#if MT_HAVE_WEAKREF_GETREF
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(ref, &obj) <= 0) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(obj);         /* a live class: not its last reference */
    return 1;
#else
    return PyWeakref_GetObject(ref) != Py_None;
#endif
}

/* (Safe point.) Make every row's type pointer safe to read, so no row
 * outlives its class unseen. Sampled watch-all does not see every class die
 * (a class object is sampled by its address like any other), and exact
 * watch-all misses the deaths while another tool replaced our tracer and
 * before it put it back, which CPython tells us from 3.15 only (the rows are
 * then stale as a whole: nothing to check). So a class's row holds a weak
 * reference, which CPython clears at its death whoever traces; a row made
 * since the last call is checked once against every class alive now, then
 * given its reference. Rows are read by index: releasing and making
 * references runs our hook, which may add rows and move the table. */
static int
mt_watch_verify_rows(void)
{
    for (uint32_t i = 1; i < mt_engine.watch_n; i++) {
        if (mt_engine.watch_rows[i].type == NULL && mt_engine.watch_rows[i].ref != NULL) {
            mt_watch_release(i);        /* forgotten in the hook: its class died */
        }
    }
    if (MT_TRACER_TOLD_REMOVED && mt_engine.watch_sample == 1) {
        return 0;
    }
    int unchecked = 0;
    uint32_t n = mt_engine.watch_n;
    for (uint32_t i = 1; i < n; i++) {
        MtWatchRow *row = &mt_engine.watch_rows[i];
        if (row->type == NULL || row->is_static) {
            continue;
        }
        if (row->ref == NULL) {
            unchecked = 1;
        }
        else if (!mt_watch_ref_alive(row->ref)) {
            /* Its class died unseen. Another may have been made at its address
             * since, whose events this row has been counting (the dead class
             * had no objects left): checked against the classes alive like a
             * new row, below. Dropping the reference runs our hook, which may
             * move the table: the row is re-read by index. */
            PyObject *ref = row->ref;
            row->ref = NULL;
            unchecked = 1;
            Py_DECREF(ref);
        }
    }
    if (!unchecked) {
        return 0;
    }
    MtPtrMap live = {0};
    if (mt_collect_live_types(&live) < 0) {
        mt_pm_free(&live);
        return -1;
    }
    for (uint32_t i = 1; i < n; i++) {
        PyTypeObject *tp = mt_engine.watch_rows[i].type;
        uint32_t seen;
        if (tp == NULL || mt_engine.watch_rows[i].is_static || mt_engine.watch_rows[i].ref != NULL) {
            continue;
        }
        if (!mt_pm_get(&live, (uintptr_t)tp, &seen)) {
            mt_watch_forget(tp);                /* died unseen */
            continue;
        }
        /* Held while the reference is made: making it allocates, and a
         * collection then may free the class (our hook sees that death). */
        Py_INCREF(tp);
        PyObject *ref = PyWeakref_NewRef((PyObject *)tp, NULL);
        if (ref == NULL) {
            PyErr_Clear();                      /* checked again next time */
        }
        else {
            mt_engine.watch_rows[i].ref = ref;  /* (its row cannot go while the class is held) */
        }
        Py_DECREF(tp);                          /* if that was the last reference, its row is forgotten here */
    }
    mt_pm_free(&live);
    return 0;
}

/* [(type, new, free)] for every type seen since watch_start(). */
static PyObject *
mt_watch_counts(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    mt_engine_check_displaced();
    if (!mt_engine.watch_on) {
        return PyList_New(0);
    }
    if (mt_engine.displaced || mt_engine.watch_stale) {
        PyErr_SetString(PyExc_RuntimeError,
                        "watch-all counts are unavailable: another tool replaced the reference tracer");
        return NULL;
    }
    mt_engine_refresh_interps();
    if (mt_watch_verify_rows() < 0) {
        return NULL;
    }
    /* Every row's type and every cached type is alive from here: a cache
     * entry goes with its row. */
    mt_watch_cache_flush_all(0);
    for (size_t i = 0; i < MT_WATCH_CACHE_ENTRIES; i++) {
        /* a __del__ added to a class after it was cached: its events take the
         * slow path from now on (see MT_WATCH_FINALIZABLE), which caches it in
         * the third part; one removed leaves the third part (its deaths need no
         * address kept) */
        PyTypeObject *tp = mt_engine.watch_cache[i].type;
        if (tp != NULL && (i < 2 * MT_FILTER_SIZE) == (MT_WATCH_FINALIZABLE(tp) != 0)) {
            mt_engine.watch_cache[i].type = NULL;
        }
    }
    /* Rows are copied before the result list is built: building it
     * allocates, and those events move counts and may grow the rows. */
    uint32_t n = mt_engine.watch_n;
    MtWatchRow *rows = (MtWatchRow *)malloc((size_t)(n ? n : 1) * sizeof(MtWatchRow));
    if (rows == NULL) {
        return PyErr_NoMemory();
    }
    uint32_t m = 0;
    for (uint32_t i = 1; i < n; i++) {
        if (mt_engine.watch_rows[i].type == NULL) {
            continue;
        }
        rows[m] = mt_engine.watch_rows[i];
        Py_INCREF(rows[m].type);        /* keep alive while we build */
        m++;
    }
    PyObject *list = PyList_New(0);
    for (uint32_t i = 0; i < m; i++) {
        if (list != NULL) {
            PyObject *item = Py_BuildValue("(OKK)", (PyObject *)rows[i].type, (unsigned long long)rows[i].new_count,
                                           (unsigned long long)rows[i].free_count);
            if (item == NULL || PyList_Append(list, item) < 0) {
                Py_CLEAR(list);
            }
            Py_XDECREF(item);
        }
    }
    for (uint32_t i = 0; i < m; i++) {
        Py_DECREF(rows[i].type);
    }
    free(rows);
    return list;
}

static PyObject *
mt_watch_statistics(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    /* clang-format off */ /* one key and its value a line */
    return Py_BuildValue("{s:n,s:n,s:K,s:K,s:K,s:I}",
                         "types", (Py_ssize_t)mt_engine.watch.used,
                         "bytes", (Py_ssize_t)(mt_pm_bytes(&mt_engine.watch) + mt_pm_bytes(&mt_engine.watch_dying)
                                               + (size_t)mt_engine.watch_cap * sizeof(MtWatchRow)),
                         "lost", (unsigned long long)mt_engine.watch_lost,
                         "resurrected", (unsigned long long)mt_engine.watch_resurrected,
                         "dying_resets", (unsigned long long)mt_engine.watch_dying_resets,
                         "sample", (unsigned)(mt_engine.watch_on ? mt_engine.watch_sample : 0));
    /* clang-format on */
}
