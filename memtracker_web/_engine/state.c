/* memtracker_web/_engine/state.c: the engine's tables, rebuilt from the
 * running captures at safe points: bindings (type => captures), type marks,
 * the shortcut table of plain classes, the byte filter.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* ---------------- engine management (safe points) ---------------- */

/* Rebuild the type => subscribers map from the running captures. Built
 * aside and swapped in, so a re-entrant hook never sees half a table. */
static void
mt_engine_rebuild_bindings(void)
{
    if (!mt_engine.busy) {
        /* A safe point: a type that died while our tracer was displaced
         * must leave the slots before its pointer is used (marks read it). */
        mt_engine_validate_slots();
    }
    MtPtrMap map = {0};
    uint32_t n_subs = 0;
    int any_mutable = 0;
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        for (uint32_t s = 0; s < c->n_slots; s++) {
            if (c->slots[s].active && c->slots[s].type) {
                n_subs++;
                any_mutable |= c->slots[s].mutable_type;
            }
        }
    }
    MtBind *binds = (MtBind *)calloc(n_subs ? n_subs : 1, sizeof(MtBind));
    MtSub *subs = (MtSub *)calloc(n_subs ? n_subs : 1, sizeof(MtSub));
    if (binds == NULL || subs == NULL) {
        free(binds);
        free(subs);
        return;     /* keep the old map: stale but consistent */
    }
    /* Group subscriptions by type: count first, then place. */
    uint32_t n_binds = 0;
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        for (uint32_t s = 0; s < c->n_slots; s++) {
            MtSlot *slot = &c->slots[s];
            if (!slot->active || !slot->type) {
                continue;
            }
            uint32_t b;
            if (!mt_pm_get(&map, (uintptr_t)slot->type, &b)) {
                b = n_binds++;
                if (mt_pm_put(&map, (uintptr_t)slot->type, b, NULL) < 0) {
                    mt_pm_free(&map);
                    free(binds);
                    free(subs);
                    return;
                }
            }
            binds[b].count++;
        }
    }
    uint32_t at = 0;
    for (uint32_t b = 0; b < n_binds; b++) {
        binds[b].first = at;
        at += binds[b].count;
        binds[b].count = 0;
    }
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        for (uint32_t s = 0; s < c->n_slots; s++) {
            MtSlot *slot = &c->slots[s];
            if (!slot->active || !slot->type) {
                continue;
            }
            uint32_t b = 0;
            mt_pm_get(&map, (uintptr_t)slot->type, &b);
            subs[binds[b].first + binds[b].count].capture = c;
            subs[binds[b].first + binds[b].count].slot = s;
            binds[b].count++;
            binds[b].own_class =
                (slot->type->tp_flags & (Py_TPFLAGS_HEAPTYPE | Py_TPFLAGS_TYPE_SUBCLASS)) == Py_TPFLAGS_HEAPTYPE;
        }
    }
    MtPtrMap old_map = mt_engine.bindings;
    MtBind *old_binds = mt_engine.binds;
    MtSub *old_subs = mt_engine.subs;
    mt_engine.bindings = map;
    mt_engine.binds = binds;
    mt_engine.subs = subs;
    memset(mt_engine.bind_cache, 0, sizeof(mt_engine.bind_cache));
    for (size_t i = 0; i <= map.mask && map.keys != NULL; i++) {
        PyTypeObject *tp = (PyTypeObject *)map.keys[i];
        if (tp != NULL) {
            MtBindCache *entry = &mt_engine.bind_cache[mt_bind_cache_index(tp)];
            entry->type = entry->type == NULL ? tp : MT_BIND_COLLIDED;
            entry->bind = map.vals[i];
        }
    }
    mt_engine.any_mutable = any_mutable;
    mt_engine_rebuild_filter();
    mt_pm_free(&old_map);
    free(old_binds);
    free(old_subs);
}

#if MT_HAVE_TRACER
/* Is `tp` among the types the running captures need marked? */
static int
mt_engine_wants_mark(MtPtrMap *wanted, PyTypeObject *tp)
{
    uint32_t v;
    return tp != NULL && mt_pm_get(wanted, (uintptr_t)tp, &v);
}

static int
mt_marks_append(MtMark **arr, uint32_t *n, uint32_t *cap, PyTypeObject *tp)
{
    if (*n == *cap) {
        uint32_t bigger = *cap ? *cap * 2 : 16;
        MtMark *grown = (MtMark *)realloc(*arr, (size_t)bigger * sizeof(MtMark));
        if (grown == NULL) {
            return -1;
        }
        *arr = grown;
        *cap = bigger;
    }
    PyObject *ref = PyWeakref_NewRef((PyObject *)tp, NULL);
    if (ref == NULL) {
        return -1;
    }
    (*arr)[*n].type = tp;
    (*arr)[*n].weakref = ref;
    (*n)++;
    return 0;
}

/* Whether a mark's type is alive (its weak reference answers). */
static int
mt_mark_alive(MtMark *m)
{
    if (m->type == NULL) {
        return 0;
    }
    PyObject *obj = NULL;
    if (PyWeakref_GetRef(m->weakref, &obj) <= 0) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(obj);
    return 1;
}

/* Drop retargets whose type died, and keep the others. */
static void
mt_retargets_prune(void)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < mt_engine.n_retargets; i++) {
        if (mt_mark_alive(&mt_engine.retargets[i])) {
            mt_engine.retargets[kept++] = mt_engine.retargets[i];
        }
        else {
            Py_CLEAR(mt_engine.retargets[i].weakref);
        }
    }
    mt_engine.n_retargets = kept;
}

/* Make tp_watched bits match what the running captures need: tracked types,
 * their metaclasses (to see a tracked type's own death), reassignment
 * targets and theirs. Safe points only (weak references, PyType_Watch). */
static void
mt_engine_sync_marks(void)
{
    MtPtrMap wanted = {0};
    int failed = 0;
    if (mt_engine.precise) {
        if (mt_engine.n_running == 0) {
            /* nothing runs: a reassignment seen earlier no longer matters */
            for (uint32_t i = 0; i < mt_engine.n_retargets; i++) {
                Py_CLEAR(mt_engine.retargets[i].weakref);
            }
            mt_engine.n_retargets = 0;
        }
        mt_retargets_prune();
        for (int i = 0; i < mt_engine.n_running && !failed; i++) {
            MtCaptureCore *c = mt_engine.running[i];
            for (uint32_t s = 0; s < c->n_slots && !failed; s++) {
                MtSlot *slot = &c->slots[s];
                if (slot->active && slot->type) {
                    failed |= mt_pm_put(&wanted, (uintptr_t)slot->type, 1, NULL) < 0
                              || mt_pm_put(&wanted, (uintptr_t)Py_TYPE(slot->type), 1, NULL) < 0;
                }
            }
        }
        for (uint32_t i = 0; i < mt_engine.n_retargets && !failed; i++) {
            PyTypeObject *tp = mt_engine.retargets[i].type;
            failed |= mt_pm_put(&wanted, (uintptr_t)tp, 1, NULL) < 0
                      || mt_pm_put(&wanted, (uintptr_t)Py_TYPE(tp), 1, NULL) < 0;
        }
    }
    if (failed) {
        PyErr_Clear();      /* (what failed is handled below; no call may see it set) */
    }
    /* Unmark what is no longer wanted (all of it without marks). */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < mt_engine.n_marks; i++) {
        MtMark *m = &mt_engine.marks[i];
        int alive = mt_mark_alive(m);
        if (alive && !failed && mt_engine_wants_mark(&wanted, m->type)) {
            mt_pm_pop(&wanted, (uintptr_t)m->type, NULL);      /* marked already */
            mt_engine.marks[kept++] = *m;
            continue;
        }
        if (alive && PyType_Unwatch(mt_engine.watcher_id, (PyObject *)m->type) < 0) {
            PyErr_Clear();      /* nothing to undo: the type stays marked, which only costs a lookup */
        }
        Py_CLEAR(m->weakref);
    }
    mt_engine.n_marks = kept;
    if (mt_engine.precise && !failed) {
        /* Mark what is wanted and not marked yet. */
        for (size_t i = 0; i <= wanted.mask && wanted.keys != NULL; i++) {
            PyTypeObject *tp = (PyTypeObject *)wanted.keys[i];
            if (tp == NULL) {
                continue;
            }
            if (mt_marks_append(&mt_engine.marks, &mt_engine.n_marks, &mt_engine.cap_marks, tp) < 0
                || PyType_Watch(mt_engine.watcher_id, (PyObject *)tp) < 0) {
                failed = 1;
                break;
            }
        }
    }
    mt_pm_free(&wanted);
    if (failed) {
        PyErr_Clear();
        mt_engine_precise_failed();
    }
}

#endif

/* Whether the slow path may take its shortcut for our tracked classes, and
 * for which: classes (heap types, not metaclasses: other interpreters cannot
 * have their objects, and their objects are not types) that exactly one
 * running capture tracks. Types hashing to one entry share none of it. */
static void
mt_engine_update_plain(void)
{
    /* (sampled watch-all: the sampled objects' events skip the shortcut; exact
     * watch-all takes it only for a type in its marked cache entry, which counts
     * the event: see mt_hook_watch_miss) */
    int plain = mt_engine.precise && mt_engine.n_retargets == 0 && !mt_engine.multi_interp;
#if MT_HAVE_TRACER
    /* chained: the prior tracer may call a hook of ours back (mt_engine.busy says so),
     * and the shortcut does not look at mt_engine.busy */
    plain = plain && mt_engine.prev_fn == NULL;
#endif
    memset(mt_engine.plain_types, 0, sizeof(mt_engine.plain_types));
    if (!plain) {
        return;
    }
    for (size_t i = 0; i <= mt_engine.bindings.mask && mt_engine.bindings.keys != NULL; i++) {
        PyTypeObject *tp = (PyTypeObject *)mt_engine.bindings.keys[i];
        if (tp == NULL) {
            continue;
        }
        MtPlainEntry *entry = &mt_engine.plain_types[mt_bind_cache_index(tp)];
        MtBind *bind = &mt_engine.binds[mt_engine.bindings.vals[i]];
        /* (no type is dereferenced here: one may have died while we were displaced) */
        MtSub *sub = &mt_engine.subs[bind->first];
        /* a type sampled by address (never a metaclass: see analyse) skips its
         * unsampled objects whatever its kind */
        uint32_t limit = bind->count == 1 ? sub->capture->slots[sub->slot].addr_limit : 0;
        int eligible = bind->count == 1 && (bind->own_class || limit);
        if (entry->type != NULL || !eligible) {
            entry->type = entry->type != NULL ? MT_BIND_COLLIDED : entry->type;
            continue;
        }
        entry->type = tp;
        entry->capture = sub->capture;
        entry->slot = sub->slot;
        entry->val = (entry->slot << MT_LEAF_BITS) | MT_NO_LEAF;
        entry->limit = limit;
        entry->own = bind->own_class;
    }
}

/* The byte filter may only say "maybe": a stale 1 costs a lookup, a missing 1
 * loses events. Marks are synced too, except inside the hook (a type died):
 * a stale mark only costs slow-path calls until the next safe point. */
static void
mt_engine_rebuild_filter(void)
{
    memset(mt_engine.filter, 0, sizeof(mt_engine.filter));
    for (int i = 0; i < mt_engine.n_running; i++) {
        MtCaptureCore *c = mt_engine.running[i];
        for (uint32_t s = 0; s < c->n_slots; s++) {
            MtSlot *slot = &c->slots[s];
            if (slot->active && slot->type) {
                /* indexes taken at track(): a type that died unseen is never dereferenced */
                mt_engine.filter[slot->filter_index] = 1;
                mt_engine.filter[slot->meta_index] = 1;   /* its metaclass: to see the type's own death */
            }
        }
    }
    if (mt_engine.any_mutable) {
        /* a module's __class__ can be set to plain ModuleType, an immutable type */
        mt_engine.filter[MT_FILTER_INDEX(&PyModule_Type)] = 1;
    }
#if MT_HAVE_TRACER
    if (!mt_engine.busy) {
        mt_engine_sync_marks();
        mt_engine_select_hook();       /* the hook may depend on the marks (sampled or unmarked) */
    }
#endif
    if (mt_engine.watch_on) {
        /* what may be cached changed */
        mt_watch_cache_flush_all(1);
    }
    mt_engine_update_plain();
}
