/* memtracker_web/_engine/hooks.c: the hook functions CPython's tracer slot
 * calls, and the slow path behind them (no Python calls, no Python objects
 * made). The hot path: the hooks, mt_hook_slow's shortcut, the capture's plain
 * create/destroy and the PtrMap lookups are static inline or in this
 * translation unit, so the compiler inlines them as in one file.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* ---------------- hook helpers (no Python calls) ---------------- */

#if MT_HAVE_TRACER
static uint32_t
mt_capture_stack(MtTree *t)
{
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts == NULL) {
        return MT_NO_LEAF;
    }
    PyCodeObject *codes[MT_MAX_DEPTH];
    int32_t lastis[MT_MAX_DEPTH];
    int n = 0;
    _PyInterpreterFrame *f = _PyFrame_GetFirstComplete(ts->current_frame);
    while (f != NULL && n < t->depth) {
        PyCodeObject *code = _PyFrame_GetCode(f);
        codes[n] = code;
        lastis[n] = (int32_t)(_PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
        n++;
        f = _PyFrame_GetFirstComplete(f->previous);
    }
    if (n == 0) {
        return MT_NO_LEAF;
    }
    /* Insert outermost first so the innermost frame is the leaf. A tree full
     * at the first level leaves the allocation on the root (node 0). */
    uint32_t node = 0;
    for (int k = n - 1; k >= 0; k--) {
        uint32_t child = mt_tree_child(t, node, codes[k], lastis[k]);
        if (child == 0) {
            /* Full: keep the shorter path, say so, and prune at the next safe point. */
            t->overflow++;
            t->wants_prune = 1;
            t->nodes[node].flags |= MT_NODE_TRUNCATED;
            break;
        }
        node = child;
    }
    return node;
}
#endif

MT_HOOK_ONLY void
mt_slot_free_object(MtCaptureCore *c, uint32_t val)
{
    uint32_t s = val >> MT_LEAF_BITS;
    uint32_t leaf = val & MT_MAX_NODES;
    if (s >= c->n_slots) {
        return;
    }
    MtSlot *slot = &c->slots[s];
    slot->free_count++;
    if (leaf != MT_NO_LEAF && slot->tree && leaf < slot->tree->n_nodes && slot->tree->nodes[leaf].retained) {
        slot->tree->nodes[leaf].retained--;
    }
}

MT_HOOK_ONLY void
mt_capture_on_create(MtCaptureCore *c, uint32_t s, PyObject *op)
{
    MtSlot *slot = &c->slots[s];
    if (slot->addr_limit && !MT_WATCH_SAMPLED(op, slot->addr_limit)) {
        return;     /* not one of the objects this slot samples */
    }
    uint32_t leaf = MT_NO_LEAF;
#if MT_HAVE_TRACER
    MtTree *t = slot->tree;
    if (t != NULL) {
        if (t->countdown == 0) {
            t->countdown = mt_tree_next_gap(t, slot->path_every);
            leaf = mt_capture_stack(t);
            if (leaf != MT_NO_LEAF) {
                t->nodes[leaf].total++;
                t->nodes[leaf].retained++;
            }
            else {
                t->unattributed++;      /* no Python frame on this thread */
            }
        }
        else {
            t->countdown--;
        }
    }
#endif
    uint32_t old;
    int r = mt_pm_put(&c->objects, (uintptr_t)op, (s << MT_LEAF_BITS) | leaf, &old);
    if (r < 0) {
        slot->lost++;
#if MT_HAVE_TRACER
        if (t != NULL && leaf != MT_NO_LEAF) {
            t->nodes[leaf].total--;
            t->nodes[leaf].retained--;
        }
#endif
        return;
    }
    if (r == 1) {
        /* A stale entry: the object that lived here died unseen. */
        mt_slot_free_object(c, old);
    }
    slot->new_count++;
    if (slot->callback) {
        uint64_t seq = ++c->seq;
        if (mt_pm_put(&c->cb_seqs, (uintptr_t)op, (uint32_t)seq, NULL) < 0) {
            c->dropped_events++;
        }
        mt_queue_push(c, s, 0, seq, leaf);
    }
}

MT_HOOK_ONLY void
mt_capture_on_destroy(MtCaptureCore *c, PyObject *op)
{
    uint32_t val;
    if (!mt_pm_pop(&c->objects, (uintptr_t)op, &val)) {
        return;
    }
    mt_slot_free_object(c, val);
    uint32_t s = val >> MT_LEAF_BITS;
    if (s < c->n_slots && c->slots[s].callback) {
        uint32_t seq32 = 0;
        mt_pm_pop(&c->cb_seqs, (uintptr_t)op, &seq32);
        mt_queue_push(c, s, 1, seq32, MT_NO_LEAF);
    }
}

/* The common case of mt_capture_on_create, inline and without a call: an
 * object that gets no call path (a count-only slot, or one whose paths are
 * sampled and this allocation is not the one in path_every), no callback and
 * a table with room. Returns 0, having changed nothing, for anything else (a
 * stale entry at this address included): the caller then takes the full path.
 * A slot that samples its objects by address: the caller passes only objects
 * it samples (MT_PLAIN_SKIPS). */
static inline int
mt_capture_on_create_plain(MtCaptureCore *c, uint32_t s, uint32_t val, PyObject *op)
{
    MtSlot *slot = &c->slots[s];
    MtPtrMap *m = &c->objects;
    if (slot->callback || m->used >= m->limit) {
        return 0;
    }
#if MT_HAVE_TRACER
    MtTree *t = slot->tree;
    if (t != NULL && t->countdown == 0) {
        return 0;   /* its path is taken: the full path counts it */
    }
#endif
    size_t i = mt_pm_hash(m, (uintptr_t)op);
    uintptr_t k;
    while ((k = m->keys[i]) != 0) {
        if (k == (uintptr_t)op) {
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    m->keys[i] = (uintptr_t)op;
    m->vals[i] = val;
    m->used++;
    slot->new_count++;
#if MT_HAVE_TRACER
    if (t != NULL) {
        t->countdown--;
    }
#endif
    return 1;
}

/* The common case of mt_capture_on_destroy: no entry, or the entry `val` (no
 * call-tree leaf) of a slot without callbacks. Returns 0, having changed
 * nothing, for anything else. */
static inline int
mt_capture_on_destroy_plain(MtCaptureCore *c, uint32_t s, uint32_t val, PyObject *op)
{
    MtPtrMap *m = &c->objects;
    if (m->used == 0) {
        return 1;
    }
    size_t i = mt_pm_hash(m, (uintptr_t)op);
    uintptr_t k;
    while ((k = m->keys[i]) != 0) {
        if (k == (uintptr_t)op) {
            MtSlot *slot = &c->slots[s];
            if (m->vals[i] != val || slot->callback) {
                return 0;
            }
            mt_pm_delete_at(m, i);
            slot->free_count++;
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 1;
}

MT_HOOK_ONLY void
mt_queue_push(MtCaptureCore *c, uint32_t slot, uint32_t kind, uint64_t seq, uint32_t leaf)
{
    if (c->queue == NULL || c->q_len == c->q_cap) {
        c->dropped_events++;
        return;
    }
    MtEvent *ev = &c->queue[(c->q_head + c->q_len) % c->q_cap];
    ev->slot = slot;
    ev->kind = kind;
    ev->seq = seq;
    ev->leaf = leaf;
    c->q_len++;
    /* Ask the main thread to run the callbacks at its next safe point.
     * Py_AddPendingCall only queues a C function pointer: no Python object. */
    if (!mt_engine.pending_scheduled && mt_engine.pending_callable != NULL) {
        if (Py_AddPendingCall(mt_run_pending, NULL) == 0) {
            mt_engine.pending_scheduled = 1;
        }
    }
}

/* A type object is being destroyed: no capture may keep its pointer. */
MT_HOOK_ONLY void
mt_on_type_destroy(PyTypeObject *tp)
{
    if (mt_engine.watch_on) {
        mt_watch_forget(tp);
    }
    /* Its mark goes with it (no unwatching: the memory is going). */
    for (uint32_t i = 0; i < mt_engine.n_marks; i++) {
        if (mt_engine.marks[i].type == tp) {
            mt_engine.marks[i].type = NULL;
        }
    }
    for (uint32_t i = 0; i < mt_engine.n_retargets; i++) {
        if (mt_engine.retargets[i].type == tp) {
            mt_engine.retargets[i].type = NULL;
        }
    }
    int changed = 0;
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        uint32_t s;
        if (mt_pm_pop(&c->types, (uintptr_t)tp, &s)) {
            c->slots[s].type = NULL;
            c->slots[s].active = 0;
            changed = 1;
        }
    }
    if (changed) {
        mt_engine_rebuild_bindings();
    }
}

#if MT_HAVE_TRACER
/* Events of marked (or byte-filtered) types: tracked types, their metaclasses
 * (so a tracked type's own death is seen), __class__ reassignment targets, and
 * everything watch-all's cache cannot count alone. */
/* The running captures that track exactly `tp`, or NULL. */
static inline MtBind *
mt_engine_bind_of(PyTypeObject *tp)
{
    MtBindCache *entry = &mt_engine.bind_cache[mt_bind_cache_index(tp)];
    if (entry->type == tp) {
        return &mt_engine.binds[entry->bind];
    }
    uint32_t b;
    if (entry->type == MT_BIND_COLLIDED && mt_pm_get(&mt_engine.bindings, (uintptr_t)tp, &b)) {
        return &mt_engine.binds[b];
    }
    return NULL;
}

/* Everything the slow path may have to do: watch-all's count, several
 * captures on one type, reassignment targets, a type's own death. */
static MT_NOINLINE void
mt_slow_general(PyObject *op, PyRefTracerEvent event, PyTypeObject *tp)
{
    if (mt_engine.watch_on && (mt_engine.watch_sample == 1 || MT_WATCH_COUNTED(op, tp, mt_engine.watch_limit))
        && (!MT_WATCH_FINALIZABLE(tp) || mt_watch_first_death(op, tp, event))) {
        mt_watch_count(tp, event == PyRefTracer_DESTROY);
    }
    if (event == PyRefTracer_CREATE) {
        MtBind *bind = mt_engine_bind_of(tp);
        if (bind != NULL) {
            for (uint32_t k = 0; k < bind->count; k++) {
                MtSub *sub = &mt_engine.subs[bind->first + k];
                mt_capture_on_create(sub->capture, sub->slot, op);
            }
        }
    }
    else if (event == PyRefTracer_DESTROY) {
        if (mt_engine.precise
                ? mt_engine.n_retargets > 0
                : mt_engine.any_mutable && (!PyType_HasFeature(tp, Py_TPFLAGS_IMMUTABLETYPE) || tp == &PyModule_Type)) {
            /* __class__ may have been reassigned since creation: ask every capture. */
            for (int i = 0; i < mt_engine.n_running; i++) {
                if (mt_engine.running[i]->objects.used) {
                    mt_capture_on_destroy(mt_engine.running[i], op);
                }
            }
        }
        else {
            MtBind *bind = mt_engine_bind_of(tp);
            if (bind != NULL) {
                for (uint32_t k = 0; k < bind->count; k++) {
                    mt_capture_on_destroy(mt_engine.subs[bind->first + k].capture, op);
                }
            }
        }
        if (PyType_Check(op)) {
            mt_on_type_destroy((PyTypeObject *)op);
        }
    }
}

/* Objects of marked (or byte-filtered) types: tracked types, their
 * metaclasses (so a tracked type's own death is seen), __class__
 * reassignment targets, and whatever watch-all's cache cannot count alone.
 * The common case, one capture tracking a plain class, goes straight to it. */
/* The slow path's full form: which interpreter, then everything. */
static MT_NOINLINE int
mt_hook_full(PyObject *op, PyRefTracerEvent event)
{
    if (mt_engine.busy) {
        /* MT_BUSY_PREV: a tracer we chain to called a hook of ours back: seen once already */
        return 0;
    }
    /* Another interpreter may run under its own GIL: hands off our tables. */
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts == NULL || ts->interp != mt_engine.interp) {
        return 0;
    }
    mt_engine.busy = MT_BUSY_HOOK;
    mt_slow_general(op, event, Py_TYPE(op));
    mt_engine.busy = 0;
    return 0;
}

static MT_NOINLINE int
mt_hook_slow(PyObject *op, PyRefTracerEvent event)
{
    /* (the type is read again here rather than passed: passing it costs the
     * fast paths a register move on every event) */
    PyTypeObject *tp = Py_TYPE(op);
    /* One of our own classes (another interpreter cannot have objects of it:
     * PEP 684 isolation), tracked by one capture, nothing else to do: handled
     * right here, with no call and no need to ask which interpreter this is.
     * Nothing here can re-enter the hook, and the table is empty while we
     * chain a prior tracer, so the guard is neither tested nor set. */
    MtPlainEntry *plain = &mt_engine.plain_types[mt_bind_cache_index(tp)];
    if (plain->type == tp && (MT_PLAIN_SKIPS(plain, op) || MT_PLAIN_TAKES(plain, op, event))) {
        return 0;
    }
    return mt_hook_full(op, event);
}

/* The slow path under sampled watch-all: an object that watch-all counts
 * needs the full path; any other may take mt_hook_slow's shortcut. */
static MT_NOINLINE int
mt_hook_slow_sampled(PyObject *op, PyRefTracerEvent event)
{
    if (MT_WATCH_SAMPLED(op, mt_engine.watch_limit)) {
        return mt_hook_full(op, event);
    }
    PyTypeObject *tp = Py_TYPE(op);
    if (MT_WATCH_EXACT_TYPE(tp)) {
        /* A tracked class: watch-all counts its every object too. When the
         * type holds its watch cache entry (sampled watch-all lets marked types
         * hold one: see mt_watch_cacheable) and its one capture's shortcut
         * takes the event, one add counts it; anything else takes the full
         * path, which counts it (and caches the type). So does a class given a
         * finaliser after it took its entry: a resurrected object's deaths
         * must pass mt_watch_first_death. */
        MtWatchCache *entry = &mt_engine.watch_cache[MT_FILTER_INDEX(tp)];
        if (entry->type != tp) {
            entry = MT_WATCH_OTHER_WAY(tp);
        }
        MtPlainEntry *plain = &mt_engine.plain_types[mt_bind_cache_index(tp)];
        if (entry->type == tp && plain->type == tp && !MT_WATCH_FINALIZABLE(tp)
            && (MT_PLAIN_SKIPS(plain, op) || MT_PLAIN_TAKES(plain, op, event))) {
            entry->count[(unsigned)event]++;
            return 0;
        }
        return mt_hook_full(op, event);
    }
    return mt_hook_slow(op, event);
}

/* 3.15 tells a replaced tracer it was removed: a NULL object (with the event
 * PyRefTracer_TRACKER_REMOVED, which is never sent with an object, so the one
 * test of the object serves). Before 3.15 CPython never passes NULL: the test
 * would cost every event. */
#  if MT_TRACER_TOLD_REMOVED
#    define MT_HOOK_REMOVED_GUARD(op, event) \
        if (MT_UNLIKELY((op) == NULL)) { \
            if (!mt_engine.switching) { \
                mt_engine_mark_displaced(); \
            } \
            return 0; \
        }
#  else
#    define MT_HOOK_REMOVED_GUARD(op, event)
#  endif

/* The hook with type marks: one test of a byte the type object already has
 * in cache. `data` is our bit, so nothing else is loaded. */
static int
mt_hook(PyObject *op, PyRefTracerEvent event, void *data)
{
    MT_HOOK_REMOVED_GUARD(op, event)
    PyTypeObject *tp = Py_TYPE(op);
    if (tp->tp_watched & (unsigned char)(uintptr_t)data) {
        return mt_hook_slow(op, event);
    }
    return 0;
}

/* Without marks (no type watcher id or audit hook was to be had): a byte
 * filter indexed by the type pointer's bits, and every mutable type's
 * destruction while a mutable type is tracked. */
static inline int
mt_filter_wants(PyTypeObject *tp, PyRefTracerEvent event)
{
    return mt_engine.filter[MT_FILTER_INDEX(tp)]
           || (event == PyRefTracer_DESTROY && mt_engine.any_mutable
               && !PyType_HasFeature(tp, Py_TPFLAGS_IMMUTABLETYPE));
}

static int
mt_hook_filtered(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    MT_HOOK_REMOVED_GUARD(op, event)
    if (mt_filter_wants(Py_TYPE(op), event)) {
        return mt_hook_slow(op, event);
    }
    return 0;
}

/* Watch-all: a cached type is counted right here (`data` is the cache);
 * anything else takes the slow path, which counts it and may cache it. */
_Static_assert(PyRefTracer_CREATE == 0 && PyRefTracer_DESTROY == 1, "the watch cache indexes its counts by event");

/* An event watch-all's cache missed: a finalizable type that holds its entry
 * in the third part is counted there when mt_watch_first_death says so (which
 * neither calls Python nor re-enters the hook); anything else takes the full
 * slow path. The interpreter is checked as mt_hook_full checks it: until the
 * next safe point sees a new subinterpreter (mt_engine_refresh_interps), the
 * unchecked hooks run in it too, and its generators (a static type, shared)
 * must not reach the table of addresses, which another GIL may be changing. */
static MT_NOINLINE int
mt_watch_final_or_full(PyObject *op, PyRefTracerEvent event)
{
    PyTypeObject *tp = Py_TYPE(op);
    MtWatchCache *final = MT_WATCH_FINAL_ENTRY(tp);
    if (final->type == tp && !mt_engine.busy) {
        PyThreadState *ts = PyThreadState_GetUnchecked();
        if (ts == NULL || ts->interp != mt_engine.interp) {
            return 0;
        }
        if (mt_watch_first_death(op, tp, event)) {
            final->count[(unsigned)event]++;
        }
        return 0;
    }
    return mt_hook_full(op, event);
}

/* A sampled watch-all's counted event: one add in the cache when its type is
 * there (either way), else the full slow path, which counts it and may cache
 * the type (it never takes the slow path's shortcut, which does not count). */
static inline int
mt_watch_cached_event(PyObject *op, PyRefTracerEvent event, MtWatchCache *cache)
{
    uintptr_t tp = (uintptr_t)Py_TYPE(op);
    size_t index = (tp >> 4) & (MT_FILTER_SIZE - 1);
    MtWatchCache *entry = &cache[index];
    if ((uintptr_t)entry->type != tp) {
        entry = &cache[index ^ 1];
    }
    if ((uintptr_t)entry->type == tp && !mt_engine.busy) {
        entry->count[(unsigned)event]++;
        return 0;
    }
    return mt_watch_final_or_full(op, event);
}

/* Exact watch-all, a type not in the cache's first half. A tracked class
 * whose one capture's shortcut takes the event (see mt_engine_update_plain),
 * when the class holds its entry in the second half (mt_watch_count puts it
 * there): counted there with one add. Anything else: the full slow path,
 * which counts it (and caches the type). A class given a finaliser after it
 * took its entry leaves the shortcut here, at once, not at the next read: an
 * object its finaliser resurrects must be counted freed once
 * (mt_watch_first_death), which only the full path does. */
static MT_NOINLINE int
mt_hook_watch_miss(PyObject *op, PyRefTracerEvent event)
{
    PyTypeObject *tp = Py_TYPE(op);
    MtWatchCache *other = MT_WATCH_OTHER_WAY(tp);
    if (other->type == tp && !mt_engine.busy) {
        other->count[(unsigned)event]++;
        return 0;
    }
    MtPlainEntry *plain = &mt_engine.plain_types[mt_bind_cache_index(tp)];
    MtWatchCache *entry = MT_WATCH_MARKED_ENTRY(tp);
    if (plain->type == tp && entry->type == tp && !mt_engine.busy && !MT_WATCH_FINALIZABLE(tp)
        && (MT_PLAIN_SKIPS(plain, op) || MT_PLAIN_TAKES(plain, op, event))) {
        entry->count[(unsigned)event]++;
        return 0;
    }
    return mt_watch_final_or_full(op, event);
}

static int
mt_hook_watch(PyObject *op, PyRefTracerEvent event, void *data)
{
    /* `data` is not read: CPython stores the hook and its data one after the
     * other, and a thread of an interpreter with a GIL of its own may call us
     * between the two stores with another hook's data (a mark bit, not this
     * cache's address). */
    (void)data;
    MT_HOOK_REMOVED_GUARD(op, event)
    uintptr_t tp = (uintptr_t)Py_TYPE(op);
    MtWatchCache *entry = &mt_engine.watch_cache[(tp >> 4) & (MT_FILTER_SIZE - 1)];
    if ((uintptr_t)entry->type == tp && !mt_engine.busy) {
        entry->count[(unsigned)event]++;
        return 0;
    }
    return mt_hook_watch_miss(op, event);
}

/* With several interpreters: another one may run under its own GIL, hands
 * off our cache (the slow path checks always). */
static MT_NOINLINE int
mt_hook_watch_checked(PyObject *op, PyRefTracerEvent event, void *data)
{
    MT_HOOK_REMOVED_GUARD(op, event)
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts == NULL || ts->interp != mt_engine.interp) {
        return 0;
    }
    return mt_hook_watch(op, event, data);
}

/* Sampled watch-all, an object that is sampled (out of line: the sampled
 * hooks' common case then needs no stack frame). */
static MT_NOINLINE int
mt_watch_sampled_event(PyObject *op, PyRefTracerEvent event)
{
    return mt_watch_cached_event(op, event, mt_engine.watch_cache);
}

/* Sampled watch-all with type marks (`data` is our bit): marked types take
 * the slow path for every event, as in mt_hook; of the rest, only sampled
 * objects are counted. An unsampled object costs the hash and a compare. */
static int
mt_hook_sampled(PyObject *op, PyRefTracerEvent event, void *data)
{
    MT_HOOK_REMOVED_GUARD(op, event)
    PyTypeObject *tp = Py_TYPE(op);
    if (tp->tp_watched & (unsigned char)(uintptr_t)data) {
        return mt_hook_slow_sampled(op, event);
    }
    if (MT_WATCH_COUNTED(op, tp, mt_engine.watch_limit)) {
        return mt_watch_sampled_event(op, event);
    }
    return 0;
}

/* Sampled watch-all while no type carries a mark (no capture runs): the
 * sample test alone. */
static int
mt_hook_sampled_unmarked(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    MT_HOOK_REMOVED_GUARD(op, event)
    if (MT_WATCH_COUNTED(op, Py_TYPE(op), mt_engine.watch_limit)) {
        return mt_watch_sampled_event(op, event);
    }
    return 0;
}

/* Sampled watch-all with the byte filter (marks unavailable). */
static int
mt_hook_sampled_filtered(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    MT_HOOK_REMOVED_GUARD(op, event)
    PyTypeObject *tp = Py_TYPE(op);
    if (mt_filter_wants(tp, event)) {
        return mt_hook_slow(op, event);
    }
    if (MT_WATCH_COUNTED(op, tp, mt_engine.watch_limit)) {
        return mt_watch_sampled_event(op, event);
    }
    return 0;
}

/* Sampled watch-all with several interpreters: hands off our cache for the
 * others' events, as mt_hook_watch_checked. */
static MT_NOINLINE int
mt_hook_sampled_checked(PyObject *op, PyRefTracerEvent event, void *data)
{
    MT_HOOK_REMOVED_GUARD(op, event)
    PyThreadState *ts = PyThreadState_GetUnchecked();
    if (ts == NULL || ts->interp != mt_engine.interp) {
        return 0;
    }
    return mt_engine.precise ? mt_hook_sampled(op, event, data) : mt_hook_sampled_filtered(op, event, data);
}

/* Installed when a tracer was there before us and is kept (see
 * mt_engine_install_if_needed): it is called first, then our hook for the
 * current mode. */
static MT_NOINLINE int
mt_hook_chained(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (op == NULL) {
#  if MT_TRACER_TOLD_REMOVED
        /* we are being replaced; the chained tracer was told so already when
         * we took the slot, and is not told twice */
        if (!mt_engine.switching) {
            mt_engine_mark_displaced();
        }
#  endif
        return 0;
    }
    if (mt_engine.busy) {
        return 0;
    }
    PyRefTracer prev = mt_engine.prev_fn;
    if (prev != NULL) {
        mt_engine.busy = MT_BUSY_PREV;
        prev(op, event, mt_engine.prev_data);
        mt_engine.busy = 0;
    }
    return mt_engine.inner(op, event, mt_engine.inner_data);
}

/* Every hook mt_engine_pick_hook may choose, by the name engine_state() gives it. */
static const struct {
    MtHook fn;
    const char *name;
} mt_hooks[] = {
    {mt_hook, "marks"},
    {mt_hook_filtered, "byte-filter"},
    {mt_hook_watch, "watch"},
    {mt_hook_watch_checked, "watch-checked"},
    {mt_hook_sampled, "sampled"},
    {mt_hook_sampled_unmarked, "sampled-unmarked"},
    {mt_hook_sampled_filtered, "sampled-byte-filter"},
    {mt_hook_sampled_checked, "sampled-checked"},
};

/* Ours: nothing chains it, nothing calls it displaced. */
static int
mt_is_our_hook(PyRefTracer fn)
{
    if (fn == mt_selftest_hook) {
        return 1;
    }
    if (fn == mt_hook_chained) {
        return 1;
    }
    for (size_t i = 0; i < sizeof(mt_hooks) / sizeof(mt_hooks[0]); i++) {
        if (mt_hooks[i].fn == fn) {
            return 1;
        }
    }
    return 0;
}
#endif

/* Python calls the drain (the drainer, flush, a callback and what it calls)
 * may make beyond the recursion limit, and the C stack it needs (bytes). */
#define MT_DRAIN_DEPTH 100
#define MT_DRAIN_C_STACK (8 * 1024)

#if MT_C_STACK_BY_ADDRESS
/* Whether Py_EnterRecursiveCall, asked from below `pad` on the C stack, still
 * has room (3.14+ limit the C stack by its address). */
static MT_NOINLINE int
mt_c_stack_probe(volatile char *pad)
{
    if (pad != NULL) {
        pad[0] = 0;
    }
    if (Py_EnterRecursiveCall(" in memtracker_web's callback drain")) {
        PyErr_Clear();
        return 0;
    }
    Py_LeaveRecursiveCall();
    return 1;
}

/* Room here first: CPython aborts the process when a check is made past the
 * hard limit, which lies at least 16 KiB below the soft one, so the deeper
 * probe is made only from above the soft limit. */
static MT_NOINLINE int
mt_c_stack_room(PyThreadState *ts)
{
    (void)ts;
    if (!mt_c_stack_probe(NULL)) {
        return 0;
    }
    volatile char pad[MT_DRAIN_C_STACK];
    return mt_c_stack_probe(pad);
}
#else
static int
mt_c_stack_room(PyThreadState *ts)
{
    return MT_C_DEPTH_LEFT(ts) >= MT_DRAIN_DEPTH;
}
#endif

/* Runs from the eval loop of the main thread: a safe point for callbacks. */
static int
mt_run_pending(void *arg)
{
    (void)arg;
    if (mt_engine.pending_callable == NULL) {
        mt_engine.pending_scheduled = 0;
        return 0;
    }
    /* While the drainer runs, this call stays scheduled: the drain allocates
     * (dicts, lists, tuples), and with such a type tracked with a callback,
     * its own events would arm the next drain, and that one the next, for
     * ever (interpreter exit, which runs pending calls until none is left,
     * would never return). Events that callbacks cause are delivered by the
     * drainer's own rounds; any left over wait for the next event from the
     * program, or a query. Tracing and profiling are suspended meanwhile: the
     * drain interrupts whatever code was running, and sys.settrace, profilers
     * and sys.monitoring must not see it as that code's calls. */
    PyThreadState *ts = PyThreadState_Get();
    /* The drain runs at whatever depth the interrupted code reached. Near the
     * recursion limit it gets MT_DRAIN_DEPTH more Python calls for itself
     * (Python-to-Python calls take no C stack); without room on the C stack
     * (deep recursion through C code) it waits for shallower code: the next
     * event, or a query, asks again. Either way no RecursionError of ours
     * reaches the program. */
    if (!mt_c_stack_room(ts)) {
        mt_engine.pending_scheduled = 0;
        return 0;
    }
    int granted = MT_PY_DEPTH_LEFT(ts) < MT_DRAIN_DEPTH;
    if (granted) {
        MT_PY_DEPTH_LEFT(ts) += MT_DRAIN_DEPTH;
    }
    PyThreadState_EnterTracing(ts);
    PyObject *res = PyObject_CallNoArgs(mt_engine.pending_callable);
    PyThreadState_LeaveTracing(ts);
    if (granted) {
        MT_PY_DEPTH_LEFT(ts) -= MT_DRAIN_DEPTH;
    }
    mt_engine.pending_scheduled = 0;
    if (res == NULL) {
        /* the drainer reports callback errors itself; an error here must not
           surface in unrelated user code */
        PyErr_WriteUnraisable(mt_engine.pending_callable);
        return 0;
    }
    Py_DECREF(res);
    return 0;
}
