/* memtracker_web/_engine/capture.c: the CaptureCore type
 * (memtracker_web._tracker.CaptureCore): tracked types and their slots, the
 * per-object table, queued events, call trees' pruning and reading, at safe
 * points.
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* ------------------------------------------------------------------ */
/* CaptureCore methods                                                 */
/* ------------------------------------------------------------------ */

static int
mt_slot_type_alive(MtSlot *slot)
{
    if (slot->type == NULL) {
        return 0;
    }
    if (slot->weakref != NULL) {
        PyObject *obj = NULL;
        /* PyWeakref_GetRef is 3.13+; the borrowed getter is fine before. */
#if MT_HAVE_WEAKREF_GETREF
        if (PyWeakref_GetRef(slot->weakref, &obj) <= 0) {
            PyErr_Clear();
            slot->type = NULL;
            slot->active = 0;
            return 0;
        }
        Py_DECREF(obj);
#else
        obj = PyWeakref_GetObject(slot->weakref);
        if (obj == NULL || obj == Py_None) {
            PyErr_Clear();
            slot->type = NULL;
            slot->active = 0;
            return 0;
        }
#endif
    }
    return 1;
}

/* Look up the slot of a live tracked type; -1 if not tracked. */
static int64_t
mt_capture_find(MtCaptureCore *c, PyTypeObject *tp)
{
    uint32_t s;
    if (!mt_pm_get(&c->types, (uintptr_t)tp, &s)) {
        return -1;
    }
    if (!mt_slot_type_alive(&c->slots[s]) || c->slots[s].type != tp) {
        mt_pm_pop(&c->types, (uintptr_t)tp, NULL);
        return -1;
    }
    return s;
}

/* The slot of `tp` for a method called `what`: -1 if not tracked, -2 with a
 * TypeError set when `tp` is not a class. */
static int64_t
mt_slot_arg(MtCaptureCore *c, PyObject *tp, const char *what)
{
    if (!PyType_Check(tp)) {
        PyErr_Format(PyExc_TypeError, "%s() needs a class, got %.100s object", what, Py_TYPE(tp)->tp_name);
        return -2;
    }
    return mt_capture_find(c, (PyTypeObject *)tp);
}

/* Whether `op` has an entry in the capture's object table under slot `s` (its value,
 * slot and leaf, in *val): an object of the slot's table, made since it began. */
static inline int
mt_slot_entry(MtCaptureCore *c, int64_t s, PyObject *op, uint32_t *val)
{
    return c->objects.mask != 0 && mt_pm_get(&c->objects, (uintptr_t)op, val) && (int64_t)(*val >> MT_LEAF_BITS) == s;
}

/* Remove every object entry of one slot, or all of them (slot < 0). With
 * `keep_clear_leaf`, entries stay but lose their call-tree leaf. */
static void
mt_capture_purge_objects(MtCaptureCore *c, int64_t slot, int clear_leaf_only)
{
    MtPtrMap *m = &c->objects;
    if (m->used == 0) {
        return;
    }
    if (clear_leaf_only) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->keys[i] && (int64_t)(m->vals[i] >> MT_LEAF_BITS) == slot) {
                m->vals[i] |= MT_NO_LEAF;
            }
        }
        return;
    }
    /* Rebuild without the slot's entries (deleting while scanning would
     * move entries across the scan position). */
    MtPtrMap fresh = {0};
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->keys[i] && (int64_t)(m->vals[i] >> MT_LEAF_BITS) != slot) {
            if (mt_pm_put(&fresh, m->keys[i], m->vals[i], NULL) < 0) {
                break;  /* out of memory: the rest is forgotten, like objects never seen */
            }
        }
        else if (m->keys[i]) {
            mt_pm_pop(&c->cb_seqs, m->keys[i], NULL);     /* its callback sequence goes too */
        }
    }
    mt_pm_free(m);
    *m = fresh;
}

/* Queued events of a slot: forget them (kill) or only their call-tree leaf. */
static void
mt_capture_forget_events(MtCaptureCore *c, uint32_t slot, int leaf_only)
{
    for (uint32_t k = 0; k < c->q_len; k++) {
        MtEvent *ev = &c->queue[(c->q_head + k) % c->q_cap];
        if (ev->slot == slot) {
            if (leaf_only) {
                ev->leaf = MT_NO_LEAF;
            }
            else {
                ev->slot = UINT32_MAX;     /* the Python side knows no such slot: dropped */
            }
        }
    }
}

/* Sampling by address only where the death of an object is nothing more:
 * not a metaclass (a class's death must always be seen), not a module type,
 * not with a callback (it is for every object). Elsewhere every object
 * counts. A class whose __class__ can be assigned may sample: an object
 * keeps its address whatever its class, and one that was sampled is in the
 * table, where its death is found under any class (see retargets). */
static int
mt_counts_every_object(PyObject *tp, int callback)
{
    return callback || PyType_IsSubtype((PyTypeObject *)tp, &PyModule_Type)
           || PyType_IsSubtype((PyTypeObject *)tp, &PyType_Type);
}

/* Count every object of a slot (n = 1), or one in about n by address (see
 * MtSlot.object_sample). A change starts the type's counting over: the
 * objects tabled under the old rule, its counts and its tree's counts go. */
static void
mt_capture_set_object_sample(MtCaptureCore *c, uint32_t s, uint32_t n)
{
    MtSlot *slot = &c->slots[s];
    if (slot->object_sample == n) {
        return;
    }
    mt_capture_purge_objects(c, s, 0);
    mt_capture_forget_events(c, s, 0);
    slot->new_count = slot->free_count = slot->lost = 0;
    if (slot->tree != NULL) {
        for (uint32_t i = 0; i < slot->tree->n_nodes; i++) {
            slot->tree->nodes[i].total = slot->tree->nodes[i].retained = 0;
        }
    }
    slot->object_sample = n;
    /* the hash is below the limit for about 2**32 / n of the addresses */
    slot->addr_limit = n > 1 ? (uint32_t)((UINT64_C(1) << 32) / n) : 0;
    if (slot->tree != NULL) {
        slot->path_every = slot->tree->sample_every / n;    /* (n divides it: checked by the callers) */
    }
    if (c->running) {
        mt_engine_rebuild_bindings();   /* the shortcut that skips unsampled objects */
    }
}

static PyObject *
MtCaptureCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    static char *kwlist[] = {"queue_size", NULL};
    Py_ssize_t queue_size = MT_DEFAULT_QUEUE;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:CaptureCore", kwlist, &queue_size)) {
        return NULL;
    }
    if (queue_size < 1 || queue_size > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "queue_size must be between 1 and 16777216");
        return NULL;
    }
    MtCaptureCore *c = (MtCaptureCore *)type->tp_alloc(type, 0);
    if (c == NULL) {
        return NULL;
    }
    c->q_cap = (uint32_t)queue_size;
    return (PyObject *)c;
}

static void
mt_capture_stop_impl(MtCaptureCore *c)
{
    if (!c->running) {
        return;
    }
    int j = 0;
    for (int i = 0; i < mt_engine.n_running; i++) {
        if (mt_engine.running[i] != c) {
            mt_engine.running[j++] = mt_engine.running[i];
        }
    }
    mt_engine.n_running = j;
    c->running = 0;
    mt_engine_rebuild_bindings();
    /* Frees can no longer be seen: the per-object table goes, counts stay frozen. */
    mt_pm_free(&c->objects);
    mt_pm_free(&c->cb_seqs);
    mt_engine_uninstall_if_idle();
}

static void
mt_capture_release_slots(MtCaptureCore *c)
{
    for (uint32_t s = 0; s < c->n_slots; s++) {
        MtTree *t = c->slots[s].tree;
        c->slots[s].tree = NULL;
        mt_tree_free(t);
        Py_CLEAR(c->slots[s].weakref);
        Py_CLEAR(c->slots[s].name);
    }
}

static void
MtCaptureCore_dealloc(MtCaptureCore *c)
{
    mt_capture_stop_impl(c);
    if (c->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)c);
    }
    mt_capture_release_slots(c);
    free(c->slots);
    mt_pm_free(&c->types);
    mt_pm_free(&c->objects);
    mt_pm_free(&c->cb_seqs);
    free(c->queue);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

/* getattr(obj, name) with `name` interned once in `*cache`: a fresh name
 * string per call would be kept by CPython's type attribute cache (keyed by
 * the name's address), one more string per call, which the monitor, calling
 * this every sample, would then see growing. */
static PyObject *
mt_getattr_interned(PyObject *obj, PyObject **cache, const char *name)
{
    if (*cache == NULL && (*cache = PyUnicode_InternFromString(name)) == NULL) {
        return NULL;
    }
    return PyObject_GetAttr(obj, *cache);
}

static PyObject *mt_str_module, *mt_str_qualname, *mt_str_co_qualname;

static PyObject *
mt_type_display_name(PyTypeObject *tp)
{
    PyObject *module = mt_getattr_interned((PyObject *)tp, &mt_str_module, "__module__");
    if (module == NULL) {
        PyErr_Clear();
    }
    PyObject *qual = mt_getattr_interned((PyObject *)tp, &mt_str_qualname, "__qualname__");
    if (qual == NULL) {
        PyErr_Clear();
        qual = PyUnicode_FromString(tp->tp_name);
        if (qual == NULL) {
            Py_XDECREF(module);
            return NULL;
        }
    }
    PyObject *res;
    if (module != NULL && PyUnicode_Check(module)) {
        res = PyUnicode_FromFormat("%U.%S", module, qual);
    }
    else {
        res = PyUnicode_FromFormat("builtins.%S", qual);
    }
    Py_XDECREF(module);
    Py_DECREF(qual);
    return res;
}

static PyObject *
MtCaptureCore_track(MtCaptureCore *c, PyObject *args, PyObject *kwds)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    static char *kwlist[] = {"type", "callback", "object_sample", NULL};
    PyObject *tp;
    int callback = 0;
    unsigned long object_sample = 0;    /* 0: as it is (every object, for a type not tracked yet) */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|pk:track", kwlist, &tp, &callback, &object_sample)) {
        return NULL;
    }
    if (!PyType_Check(tp)) {
        PyErr_Format(PyExc_TypeError, "track() needs a class, got %.100s object", Py_TYPE(tp)->tp_name);
        return NULL;
    }
    if (object_sample > 65536) {
        PyErr_Format(PyExc_ValueError, "object_sample must be between 1 and 65536, got %lu", object_sample);
        return NULL;
    }
    if (object_sample > 1 && mt_counts_every_object(tp, callback)) {
        object_sample = 1;
    }
    int64_t found = mt_capture_find(c, (PyTypeObject *)tp);
    if (found >= 0) {
        MtSlot *slot = &c->slots[found];
        if (callback) {
            object_sample = 1;     /* a callback is for every object */
        }
        if (object_sample && slot->tree != NULL && slot->tree->sample_every % object_sample != 0) {
            PyErr_Format(PyExc_ValueError, "object_sample must divide the type's sample_every (%lu), got %lu",
                         (unsigned long)slot->tree->sample_every, object_sample);
            return NULL;
        }
        if (object_sample) {
            mt_capture_set_object_sample(c, (uint32_t)found, (uint32_t)object_sample);
        }
        slot->callback = (uint8_t)callback;
        if (callback && c->queue == NULL) {
            c->queue = (MtEvent *)malloc((size_t)c->q_cap * sizeof(MtEvent));
            if (c->queue == NULL) {
                return PyErr_NoMemory();
            }
        }
        return PyLong_FromLongLong(found);
    }
    /* Python work first (it can re-enter this capture); then pick and fill the
     * slot with no Python call in between. */
    PyObject *wr = PyWeakref_NewRef(tp, NULL);
    if (wr == NULL) {
        return NULL;
    }
    PyObject *name = mt_type_display_name((PyTypeObject *)tp);
    if (name == NULL) {
        Py_DECREF(wr);
        return NULL;
    }
    if (mt_capture_find(c, (PyTypeObject *)tp) >= 0) {
        /* tracked meanwhile by a re-entrant call: nothing more to do */
        Py_DECREF(wr);
        Py_DECREF(name);
        return MtCaptureCore_track(c, args, kwds);
    }
    if (callback && c->queue == NULL) {
        c->queue = (MtEvent *)malloc((size_t)c->q_cap * sizeof(MtEvent));
        if (c->queue == NULL) {
            Py_DECREF(wr);
            Py_DECREF(name);
            return PyErr_NoMemory();
        }
    }
    /* A new slot, or reuse of one whose type is gone and whose tree was freed. */
    uint32_t s = c->n_slots;
    for (uint32_t k = 0; k < c->n_slots; k++) {
        if (!c->slots[k].active && c->slots[k].type == NULL && c->slots[k].tree == NULL) {
            s = k;
            break;
        }
    }
    if (s == c->n_slots) {
        if (c->n_slots >= MT_MAX_SLOTS) {
            Py_DECREF(wr);
            Py_DECREF(name);
            PyErr_Format(PyExc_OverflowError, "a capture tracks at most %u types", MT_MAX_SLOTS);
            return NULL;
        }
        if (c->n_slots == c->cap_slots) {
            uint32_t cap = c->cap_slots ? c->cap_slots * 2 : 8;
            MtSlot *slots = (MtSlot *)realloc(c->slots, (size_t)cap * sizeof(MtSlot));
            if (slots == NULL) {
                Py_DECREF(wr);
                Py_DECREF(name);
                return PyErr_NoMemory();
            }
            c->slots = slots;
            c->cap_slots = cap;
        }
        memset(&c->slots[s], 0, sizeof(MtSlot));
        c->n_slots++;
    }
    else {
        /* whatever the dead type left: its objects, their callback data, its queued events */
        mt_capture_purge_objects(c, s, 0);
        mt_capture_forget_events(c, s, 0);
    }
    if (mt_pm_put(&c->types, (uintptr_t)tp, s, NULL) < 0) {
        Py_DECREF(wr);
        Py_DECREF(name);
        return PyErr_NoMemory();
    }
    MtSlot *slot = &c->slots[s];
    PyObject *old_wr = slot->weakref, *old_name = slot->name;
    slot->weakref = wr;
    slot->name = name;
    slot->new_count = slot->free_count = slot->lost = 0;
    slot->object_sample = object_sample ? (uint32_t)object_sample : 1;
    slot->addr_limit = slot->object_sample > 1 ? (uint32_t)((UINT64_C(1) << 32) / slot->object_sample) : 0;
    slot->callback = (uint8_t)callback;
    /* __class__ assignment works between mutable types, and between module types */
    slot->mutable_type = !PyType_HasFeature((PyTypeObject *)tp, Py_TPFLAGS_IMMUTABLETYPE)
                         || PyType_IsSubtype((PyTypeObject *)tp, &PyModule_Type);
    slot->filter_index = (uint16_t)MT_FILTER_INDEX(tp);
    slot->meta_index = (uint16_t)MT_FILTER_INDEX(Py_TYPE(tp));
    slot->type = (PyTypeObject *)tp;
    slot->active = 1;
    if (c->running) {
        mt_engine_rebuild_bindings();
    }
    Py_XDECREF(old_wr);
    Py_XDECREF(old_name);
    return PyLong_FromUnsignedLong(s);
}

static PyObject *
MtCaptureCore_untrack(MtCaptureCore *c, PyObject *tp)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "untrack");
    if (s == -2) {
        return NULL;
    }
    if (s < 0) {
        Py_RETURN_FALSE;
    }
    MtSlot *slot = &c->slots[s];
    mt_pm_pop(&c->types, (uintptr_t)tp, NULL);
    slot->active = 0;
    slot->type = NULL;
    if (c->running) {
        mt_engine_rebuild_bindings();
    }
    mt_capture_purge_objects(c, s, 0);
    mt_capture_forget_events(c, (uint32_t)s, 0);
    MtTree *t = slot->tree;
    slot->tree = NULL;
    PyObject *old_wr = slot->weakref, *old_name = slot->name;
    slot->weakref = NULL;
    slot->name = NULL;
    slot->new_count = slot->free_count = slot->lost = 0;
    slot->object_sample = 1;
    slot->addr_limit = 0;
    /* releases last: they can run arbitrary code */
    Py_XDECREF(old_wr);
    Py_XDECREF(old_name);
    mt_tree_free(t);
    Py_RETURN_TRUE;
}

/* Zero every count and swap in fresh trees. The old trees are handed back
 * in *old (malloc'd array, *n_old entries) for the caller to free once its own
 * state is consistent: freeing drops code objects, which can run any code. */
static void
mt_capture_reset_counts(MtCaptureCore *c, MtTree ***old, uint32_t *n_old)
{
    *old = (MtTree **)calloc(c->n_slots ? c->n_slots : 1, sizeof(MtTree *));
    *n_old = 0;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        MtSlot *slot = &c->slots[s];
        slot->new_count = slot->free_count = slot->lost = 0;
        MtTree *t = slot->tree;
        if (t != NULL) {
            /* Same shape of analysis, fresh tree. */
            MtTree *fresh = mt_tree_new(t->depth, t->sample_every, t->max_nodes);
            if (*old == NULL) {
                /* out of memory for the list: keep the old tree, zeroed in place */
                mt_tree_free(fresh);
                for (uint32_t i = 0; i < t->n_nodes; i++) {
                    t->nodes[i].total = t->nodes[i].retained = 0;
                }
                continue;
            }
            slot->tree = fresh;     /* NULL on OOM: analysis silently ends; stats say so */
            (*old)[(*n_old)++] = t;
        }
    }
    c->seq = 0;
    c->dropped_events = 0;
    c->q_head = c->q_len = 0;
}

static void
mt_free_trees(MtTree **trees, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        mt_tree_free(trees[i]);
    }
    free(trees);
}

static PyObject *
MtCaptureCore_start(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    if (c->running) {
        Py_RETURN_NONE;
    }
    if (mt_engine_check_runtime() < 0) {
        return NULL;
    }
    if (c->running) {
        Py_RETURN_NONE;     /* started by another thread while the self-test ran */
    }
    if (mt_engine.n_running >= MT_MAX_RUNNING) {
        PyErr_Format(PyExc_RuntimeError, "at most %d captures can run at once", MT_MAX_RUNNING);
        return NULL;
    }
    /* Drop types that died while we were not looking. */
    for (uint32_t s = 0; s < c->n_slots; s++) {
        MtSlot *slot = &c->slots[s];
        PyTypeObject *tp = slot->type;
        if (tp != NULL && !mt_slot_type_alive(slot)) {
            mt_pm_pop(&c->types, (uintptr_t)tp, NULL);
        }
    }
    if (mt_engine_install_if_needed() < 0) {
        return NULL;
    }
    /* Each start is a new counting period: frees of objects from an earlier
     * period were not seen, so their counts cannot carry over. */
    MtTree **old;
    uint32_t n_old;
    mt_capture_reset_counts(c, &old, &n_old);
    c->missed = 0;
    mt_engine.running[mt_engine.n_running++] = c;
    c->running = 1;
    mt_engine_rebuild_bindings();
    mt_free_trees(old, n_old);     /* last: may run code that calls back into us */
    Py_RETURN_NONE;
}

static PyObject *
MtCaptureCore_stop(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    mt_engine_check_displaced();
    mt_capture_stop_impl(c);
    Py_RETURN_NONE;
}

static PyObject *
MtCaptureCore_clear(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    if (c->running) {
        PyErr_SetString(PyExc_RuntimeError, "clear() needs a stopped capture: call stop() first");
        return NULL;
    }
    MtTree **old;
    uint32_t n_old;
    mt_capture_reset_counts(c, &old, &n_old);
    mt_free_trees(old, n_old);
    Py_RETURN_NONE;
}

/* Prune a tree that overflowed or grew past 90% of its cap: keep the nodes
 * with the largest (retained, total) including descendants, fold the rest
 * into their nearest kept ancestor, and remap live objects' leaves. */
static void
mt_capture_prune_tree(MtCaptureCore *c, uint32_t s, PyCodeObject ***drop_out, uint32_t *n_drop_out)
{
    *drop_out = NULL;
    *n_drop_out = 0;
    MtTree *t = c->slots[s].tree;
    if (t == NULL) {
        return;
    }
    if (!t->wants_prune && (uint64_t)t->n_nodes * 10 < (uint64_t)t->max_nodes * 9) {
        return;
    }
    uint32_t n = t->n_nodes;
    uint64_t *inc_ret = (uint64_t *)calloc(n, sizeof(uint64_t));
    uint64_t *inc_tot = (uint64_t *)calloc(n, sizeof(uint64_t));
    uint32_t *remap = (uint32_t *)calloc(n, sizeof(uint32_t));
    uint32_t *order = (uint32_t *)malloc((size_t)n * sizeof(uint32_t));
    if (!inc_ret || !inc_tot || !remap || !order) {
        free(inc_ret);
        free(inc_tot);
        free(remap);
        free(order);
        return;
    }
    /* Children always have larger indices than parents: one backward pass sums subtrees. */
    for (uint32_t i = 0; i < n; i++) {
        inc_ret[i] = t->nodes[i].retained;
        inc_tot[i] = t->nodes[i].total;
    }
    for (uint32_t i = n - 1; i > 0; i--) {
        inc_ret[t->nodes[i].parent] += inc_ret[i];
        inc_tot[t->nodes[i].parent] += inc_tot[i];
    }
    /* Threshold: keep the target count of nodes with the largest keys. The key
     * is monotone toward the root, so the kept set is closed under ancestors. */
    uint32_t target = t->max_nodes / 2;
    if (target < 1) {
        target = 1;
    }
    uint32_t m = 0;
    for (uint32_t i = 1; i < n; i++) {
        order[m++] = i;
    }
    /* partial selection by sorting (n <= max_nodes; rare, at a safe point) */
    for (uint32_t gap = m / 2; gap > 0; gap /= 2) {     /* shell sort, descending */
        for (uint32_t i = gap; i < m; i++) {
            uint32_t v = order[i];
            uint32_t j = i;
            while (j >= gap
                   && (inc_ret[order[j - gap]] < inc_ret[v]
                       || (inc_ret[order[j - gap]] == inc_ret[v] && inc_tot[order[j - gap]] < inc_tot[v]))) {
                order[j] = order[j - gap];
                j -= gap;
            }
            order[j] = v;
        }
    }
    uint8_t *keep = (uint8_t *)calloc(n, 1);
    if (keep == NULL) {
        free(inc_ret);
        free(inc_tot);
        free(remap);
        free(order);
        return;
    }
    keep[0] = 1;
    if (m > target) {
        uint32_t last = order[target - 1];
        for (uint32_t k = 0; k < m; k++) {
            uint32_t i = order[k];
            if (inc_ret[i] > inc_ret[last] || (inc_ret[i] == inc_ret[last] && inc_tot[i] > inc_tot[last])
                || k < target) {
                keep[i] = 1;
            }
        }
        /* ancestors of kept nodes are kept (ties could break closure) */
        for (uint32_t i = n - 1; i > 0; i--) {
            if (keep[i]) {
                keep[t->nodes[i].parent] = 1;
            }
        }
    }
    else {
        for (uint32_t i = 0; i < n; i++) {
            keep[i] = 1;
        }
    }
    /* New indices in the same order (parents before children). */
    uint32_t next = 0;
    PyCodeObject **drop = (PyCodeObject **)malloc((size_t)n * sizeof(PyCodeObject *));
    uint32_t n_drop = 0;
    if (drop == NULL) {
        free(inc_ret);
        free(inc_tot);
        free(remap);
        free(order);
        free(keep);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (keep[i]) {
            remap[i] = next++;
        }
        else {
            remap[i] = remap[t->nodes[i].parent];   /* nearest kept ancestor (already mapped) */
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        MtNode node = t->nodes[i];
        if (keep[i]) {
            uint32_t ni = remap[i];
            if (i) {
                node.parent = remap[node.parent];
            }
            t->nodes[ni] = node;
        }
        else {
            MtNode *into = &t->nodes[remap[i]];
            into->total += node.total;
            into->retained += node.retained;
            into->flags |= MT_NODE_TRUNCATED;
            t->pruned_total += node.total;
            t->pruned_nodes++;
            drop[n_drop++] = node.code;
        }
    }
    t->n_nodes = next;
    mt_tree_rebuild_children(t);
    t->wants_prune = 0;
    t->layout = ++mt_tree_layouts;     /* the nodes were numbered again */
    /* Live objects of this slot point at old leaves. */
    MtPtrMap *om = &c->objects;
    if (om->used) {
        for (size_t i = 0; i <= om->mask; i++) {
            if (om->keys[i] && (om->vals[i] >> MT_LEAF_BITS) == s) {
                uint32_t leaf = om->vals[i] & MT_MAX_NODES;
                if (leaf != MT_NO_LEAF && leaf < n) {
                    om->vals[i] = (s << MT_LEAF_BITS) | remap[leaf];
                }
            }
        }
    }
    for (uint32_t k = 0; k < c->q_len; k++) {
        MtEvent *ev = &c->queue[(c->q_head + k) % c->q_cap];
        if (ev->slot == s && ev->leaf != MT_NO_LEAF && ev->leaf < n) {
            ev->leaf = remap[ev->leaf];
        }
    }
    free(inc_ret);
    free(inc_tot);
    free(remap);
    free(order);
    free(keep);
    /* The caller drops these references once it is done with the tree:
     * releasing a code object can run any code (weakref callbacks). */
    *drop_out = drop;
    *n_drop_out = n_drop;
}

static PyObject *
MtCaptureCore_analyse(MtCaptureCore *c, PyObject *args, PyObject *kwds)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    static char *kwlist[] = {"type", "depth", "sample_every", "max_nodes", "object_sample", NULL};
    PyObject *tp;
    int depth = 10;
    unsigned long sample_every = 1, max_nodes = 10000, object_sample = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|ikkk:analyse", kwlist, &tp, &depth, &sample_every, &max_nodes,
                                     &object_sample)) {
        return NULL;
    }
    if (!PyType_Check(tp)) {
        PyErr_Format(PyExc_TypeError, "analyse() needs a class, got %.100s object", Py_TYPE(tp)->tp_name);
        return NULL;
    }
    if (depth < 1 || depth > MT_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "depth must be between 1 and %d, got %d", MT_MAX_DEPTH, depth);
        return NULL;
    }
    if (sample_every < 1 || sample_every > 1000000000UL) {
        PyErr_SetString(PyExc_ValueError, "sample_every must be between 1 and 1000000000");
        return NULL;
    }
    if (max_nodes < 16 || max_nodes >= MT_MAX_NODES - 1) {
        PyErr_Format(PyExc_ValueError, "max_nodes must be between 16 and %u", MT_MAX_NODES - 2);
        return NULL;
    }
    if (object_sample > 65536) { /* (as in track: the address limit is 2^32 / object_sample) */
        PyErr_Format(PyExc_ValueError, "object_sample must be between 1 and 65536, got %lu", object_sample);
        return NULL;
    }
    if (object_sample < 1 || object_sample > sample_every || sample_every % object_sample != 0) {
        PyErr_Format(PyExc_ValueError, "object_sample must divide sample_every (%lu), got %lu", sample_every,
                     object_sample);
        return NULL;
    }
    int64_t s = mt_capture_find(c, (PyTypeObject *)tp);
    if (s < 0) {
        PyErr_SetString(PyExc_KeyError, "type is not tracked by this capture");
        return NULL;
    }
    MtSlot *slot = &c->slots[s];
    if (mt_counts_every_object(tp, slot->callback)) {
        object_sample = 1;
    }
    MtTree *t = mt_tree_new(depth, (uint32_t)sample_every, (uint32_t)max_nodes);
    if (t == NULL) {
        return PyErr_NoMemory();
    }
    MtTree *old = slot->tree;
    if (old != NULL) {
        /* leaves of the old tree mean nothing in the new one */
        mt_capture_purge_objects(c, s, 1);
        mt_capture_forget_events(c, (uint32_t)s, 1);
    }
    slot->path_every = (uint32_t)(sample_every / object_sample);    /* before the tree: the hook reads both */
    slot->tree = t;
    mt_capture_set_object_sample(c, (uint32_t)s, (uint32_t)object_sample);
    mt_tree_free(old);
    Py_RETURN_NONE;
}

static PyObject *
MtCaptureCore_unanalyse(MtCaptureCore *c, PyObject *tp)
{
    if (mt_require_main_interp() < 0) {
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "unanalyse");
    if (s == -2) {
        return NULL;
    }
    if (s < 0 || c->slots[s].tree == NULL) {
        Py_RETURN_FALSE;
    }
    MtTree *t = c->slots[s].tree;
    c->slots[s].tree = NULL;
    mt_capture_purge_objects(c, s, 1);
    mt_capture_forget_events(c, (uint32_t)s, 1);
    mt_tree_free(t);
    Py_RETURN_TRUE;
}

static PyObject *
MtCaptureCore_counts(MtCaptureCore *c, PyObject *tp)
{
    int64_t s = mt_slot_arg(c, tp, "counts");
    if (s == -2) {
        return NULL;
    }
    if (s < 0) {
        Py_RETURN_NONE;
    }
    MtSlot *slot = &c->slots[s];
    return Py_BuildValue("(KKK)", (unsigned long long)slot->new_count, (unsigned long long)slot->free_count,
                         (unsigned long long)slot->lost);
}

static PyObject *
MtCaptureCore_live(MtCaptureCore *c, PyObject *tp)
{
    /* The fastest query: live count only, 0 when not tracked. */
    int64_t s = mt_slot_arg(c, tp, "live");
    if (s == -2) {
        return NULL;
    }
    if (s < 0) {
        return PyLong_FromLong(0);
    }
    MtSlot *slot = &c->slots[s];
    uint64_t live = slot->new_count > slot->free_count ? slot->new_count - slot->free_count : 0;
    return PyLong_FromUnsignedLongLong(live);
}

static PyObject *
MtCaptureCore_items(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (uint32_t s = 0; s < c->n_slots; s++) {
        MtSlot *slot = &c->slots[s];
        if (!slot->active || !mt_slot_type_alive(slot)) {
            continue;
        }
        PyObject *item = Py_BuildValue("(OKKKO)", (PyObject *)slot->type, (unsigned long long)slot->new_count,
                                       (unsigned long long)slot->free_count, (unsigned long long)slot->lost,
                                       slot->tree ? Py_True : Py_False);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

/* object_sample(type) -> 1 (every object counted) or N (one in about N, by
 * address: counts(), live() and the tree are of those alone); None if untracked. */
static PyObject *
MtCaptureCore_object_sample(MtCaptureCore *c, PyObject *tp)
{
    int64_t s = mt_slot_arg(c, tp, "object_sample");
    if (s == -2) {
        return NULL;
    }
    if (s < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(c->slots[s].object_sample);
}

static PyObject *
MtCaptureCore_slot_of(MtCaptureCore *c, PyObject *tp)
{
    int64_t s = mt_slot_arg(c, tp, "slot_of");
    if (s == -2) {
        return NULL;
    }
    if (s < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLongLong(s);
}

static PyObject *
MtCaptureCore_drain(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    /* Events are copied out first: callbacks run by the caller may allocate
     * tracked objects, which push new events. */
    uint32_t n = c->q_len;
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (uint32_t k = 0; k < n; k++) {
        MtEvent *ev = &c->queue[(c->q_head + k) % c->q_cap];
        PyObject *item = Py_BuildValue("(IIKI)", ev->slot, ev->kind, (unsigned long long)ev->seq, ev->leaf);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, item);
    }
    /* Building the list may have pushed events (tuples are not tracked
     * types unless the user tracks tuple; then they wait for the next drain). */
    c->q_head = (c->q_head + n) % (c->q_cap ? c->q_cap : 1);
    c->q_len -= n;
    return list;
}

static PyObject *
MtCaptureCore_pending(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(c->q_len);
}

static PyObject *
mt_resolve_frame(PyCodeObject *code, int32_t lasti)
{
    int line = PyCode_Addr2Line(code, lasti);
    PyObject *qual = mt_getattr_interned((PyObject *)code, &mt_str_co_qualname, "co_qualname");
    if (qual == NULL) {
        return NULL;
    }
    PyObject *res = Py_BuildValue("(OiO)", code->co_filename, line, qual);
    Py_DECREF(qual);
    return res;
}

/* The places (code, instruction) of one tree read, each resolved once: a table
 * from a hash of the place to its entry, checked against the entry (two places
 * with one hash: the second is resolved each time, uncached). Memory is raw; when
 * it runs out, every place is resolved each time. */
typedef struct {
    PyCodeObject *code;     /* borrowed: the tree's copy holds it */
    int32_t lasti;
    PyObject *frame;        /* (filename, lineno, qualname) */
} MtPlace;

typedef struct {
    MtPtrMap index;         /* hash of (code, lasti) | 1 => entry */
    MtPlace *entries;
    uint32_t used, cap;
} MtPlaces;

static void
mt_places_init(MtPlaces *places, uint32_t most)
{
    memset(places, 0, sizeof(*places));
    places->entries = (MtPlace *)malloc((size_t)(most ? most : 1) * sizeof(MtPlace));
    places->cap = places->entries != NULL ? most : 0;
}

static void
mt_places_free(MtPlaces *places)
{
    for (uint32_t k = 0; k < places->used; k++) {
        Py_DECREF(places->entries[k].frame);
    }
    free(places->entries);
    mt_pm_free(&places->index);
}

/* A new reference to the place's (filename, lineno, qualname), or NULL with an exception. */
static PyObject *
mt_places_resolve(MtPlaces *places, PyCodeObject *code, int32_t lasti)
{
    uintptr_t key = (((uintptr_t)code >> 4) * (uintptr_t)UINT64_C(0x9E3779B97F4A7C15)) ^ (uintptr_t)(uint32_t)lasti;
    key |= 1;
    uint32_t k;
    if (mt_pm_get(&places->index, key, &k)) {
        if (places->entries[k].code == code && places->entries[k].lasti == lasti) {
            return Py_NewRef(places->entries[k].frame);
        }
        return mt_resolve_frame(code, lasti); /* (another place with this hash) */
    }
    PyObject *frame = mt_resolve_frame(code, lasti);
    if (frame != NULL && places->used < places->cap && mt_pm_put(&places->index, key, places->used, NULL) >= 0) {
        places->entries[places->used++] = (MtPlace){code, lasti, Py_NewRef(frame)};
    }
    return frame;
}

static void
mt_release_codes(PyCodeObject **codes, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        Py_XDECREF(codes[k]);
    }
    free(codes);
}

/* A tree's nodes copied, their code objects held (see mt_tree_copy_free), after
 * pruning it if it asked to be: reading builds Python objects, and allocations of
 * the very type being read grow the tree meanwhile. */
typedef struct {
    MtNode *nodes;
    uint32_t n;
    PyObject *meta;
    uint64_t layout;
    PyCodeObject **drop;    /* codes pruning let go of: released after the read */
    uint32_t n_drop;
} MtTreeCopy;

/* 1 with the copy made, 0 for a type without a tree, -1 with an exception. */
static int
mt_tree_copy(MtCaptureCore *c, PyObject *tp, const char *what, MtTreeCopy *out)
{
    memset(out, 0, sizeof(*out));
    int64_t s = mt_slot_arg(c, tp, what);
    if (s == -2) {
        return -1;
    }
    if (s < 0 || c->slots[s].tree == NULL) {
        return 0;
    }
    mt_capture_prune_tree(c, (uint32_t)s, &out->drop, &out->n_drop);
    MtTree *t = c->slots[s].tree;
    out->n = t->n_nodes;
    out->layout = t->layout;
    out->nodes = (MtNode *)malloc((size_t)out->n * sizeof(MtNode));
    if (out->nodes == NULL) {
        mt_release_codes(out->drop, out->n_drop);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(out->nodes, t->nodes, (size_t)out->n * sizeof(MtNode));
    for (uint32_t i = 1; i < out->n; i++) {
        Py_INCREF(out->nodes[i].code);
    }
    /* clang-format off */ /* one key and its value a line */
    out->meta = Py_BuildValue("{s:i,s:k,s:k,s:K,s:K,s:K,s:K}",
                              "depth", t->depth, "sample_every", (unsigned long)t->sample_every,
                              "max_nodes", (unsigned long)t->max_nodes,
                              "overflow", (unsigned long long)t->overflow,
                              "pruned_nodes", (unsigned long long)t->pruned_nodes,
                              "pruned_allocations", (unsigned long long)t->pruned_total,
                              "unattributed", (unsigned long long)t->unattributed);
    /* clang-format on */
    return 1;
}

static void
mt_tree_copy_free(MtTreeCopy *copy)
{
    for (uint32_t i = 1; i < copy->n; i++) {
        Py_DECREF(copy->nodes[i].code);
    }
    free(copy->nodes);
    mt_release_codes(copy->drop, copy->n_drop);
    Py_XDECREF(copy->meta);
    memset(copy, 0, sizeof(*copy));
}

/* The nodes start .. n-1 of a copy as a list, each node its place (parent,
 * filename, lineno, function) and, with `counts`, its (total, retained,
 * truncated) after it. */
static PyObject *
mt_tree_copy_nodes(const MtTreeCopy *copy, uint32_t start, int counts)
{
    PyObject *nodes = PyList_New(copy->n - start);
    /* Many nodes are the same place reached by other paths (8,826 nodes, 1,342
     * places in a dict tree of the stdlib's): each place is resolved once a call. */
    MtPlaces places;
    mt_places_init(&places, copy->n - start);
    for (uint32_t i = start; nodes != NULL && i < copy->n; i++) {
        const MtNode *node = &copy->nodes[i];
        PyObject *item = NULL;
        PyObject *truncated = (node->flags & MT_NODE_TRUNCATED) ? Py_True : Py_False;
        unsigned long long total = node->total, retained = node->retained;
        if (i == 0) {
            item = counts ? Py_BuildValue("(isisKKO)", -1, "", 0, "", total, retained, truncated)
                          : Py_BuildValue("(isis)", -1, "", 0, "");
        }
        else {
            PyObject *frame = mt_places_resolve(&places, node->code, node->lasti);
            if (frame != NULL) {
                PyObject *filename = PyTuple_GET_ITEM(frame, 0), *lineno = PyTuple_GET_ITEM(frame, 1),
                         *function = PyTuple_GET_ITEM(frame, 2);
                item = counts ? Py_BuildValue("(IOOOKKO)", node->parent, filename, lineno, function, total, retained,
                                              truncated)
                              : Py_BuildValue("(IOOO)", node->parent, filename, lineno, function);
                Py_DECREF(frame);
            }
        }
        if (item == NULL) {
            Py_CLEAR(nodes);
            break;
        }
        PyList_SET_ITEM(nodes, i - start, item);
    }
    mt_places_free(&places);
    return nodes;
}

/* The tree as a list of (parent, filename, lineno, function, total, retained, truncated). */
static PyObject *
MtCaptureCore_tree(MtCaptureCore *c, PyObject *tp)
{
    MtTreeCopy copy;
    int got = mt_tree_copy(c, tp, "tree", &copy);
    if (got <= 0) {
        return got < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *nodes = copy.meta != NULL ? mt_tree_copy_nodes(&copy, 0, 1) : NULL;
    PyObject *res = nodes != NULL ? PyTuple_Pack(2, nodes, copy.meta) : NULL;
    Py_XDECREF(nodes);
    mt_tree_copy_free(&copy);
    return res;
}

/* tree_update(type, layout, known) -> (layout, start, places, counts, meta) or None.
 * A reader that keeps the places of a tree's first `known` nodes, read under
 * `layout`, gets the places of the nodes after them, from `start`: `known`
 * while the tree keeps that layout, else 0 (pruning numbered the nodes again, or
 * the tree is another). `counts` has every node's total, retained and flags
 * (MT_NODE_TRUNCATED, 1), three native unsigned 64-bit ints a node: each read
 * builds a few objects, not a tuple and two ints a node. */
static PyObject *
MtCaptureCore_tree_update(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp, *layout_arg, *known_arg;
    if (!PyArg_ParseTuple(args, "OO!O!:tree_update", &tp, &PyLong_Type, &layout_arg, &PyLong_Type, &known_arg)) {
        return NULL;
    }
    /* (checked: a negative layout or count is an error, not a huge one) */
    unsigned long long layout = PyLong_AsUnsignedLongLong(layout_arg);
    unsigned long long known =
        layout == (unsigned long long)-1 && PyErr_Occurred() ? 0 : PyLong_AsUnsignedLongLong(known_arg);
    if (PyErr_Occurred()) {
        return NULL;
    }
    MtTreeCopy copy;
    int got = mt_tree_copy(c, tp, "tree_update", &copy);
    if (got <= 0) {
        return got < 0 ? NULL : Py_NewRef(Py_None);
    }
    uint32_t start = copy.layout == layout && known <= copy.n ? (uint32_t)known : 0;
    PyObject *places = copy.meta != NULL ? mt_tree_copy_nodes(&copy, start, 0) : NULL;
    PyObject *counts =
        places != NULL ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)copy.n * 3 * sizeof(uint64_t)) : NULL;
    PyObject *res = NULL;
    if (counts != NULL) {
        uint64_t *out = (uint64_t *)PyBytes_AS_STRING(counts);
        for (uint32_t i = 0; i < copy.n; i++) {
            out[3 * i] = copy.nodes[i].total;
            out[3 * i + 1] = copy.nodes[i].retained;
            out[3 * i + 2] = copy.nodes[i].flags & MT_NODE_TRUNCATED;
        }
        res = Py_BuildValue("(KIOOO)", (unsigned long long)copy.layout, start, places, counts, copy.meta);
    }
    Py_XDECREF(places);
    Py_XDECREF(counts);
    mt_tree_copy_free(&copy);
    return res;
}

/* The frames of `leaf` in slot `s`'s tree, innermost first: a new list, or
 * None (no frames recorded: the root holds allocations of a full tree). The
 * codes are taken before any frame is made: making one allocates, and the hook
 * may then add nodes (and move the nodes' array), though never number them
 * again (pruning runs at safe points only). */
static PyObject *
mt_leaf_frames(MtCaptureCore *c, int64_t s, uint32_t leaf)
{
    if (s < 0 || c->slots[s].tree == NULL || leaf == 0 || leaf == MT_NO_LEAF || leaf >= c->slots[s].tree->n_nodes) {
        Py_RETURN_NONE;
    }
    MtTree *t = c->slots[s].tree;
    PyCodeObject *codes[MT_MAX_DEPTH];
    int32_t lastis[MT_MAX_DEPTH];
    int n = 0;
    for (uint32_t i = leaf; i != 0 && n < MT_MAX_DEPTH; i = t->nodes[i].parent) {
        codes[n] = t->nodes[i].code;
        lastis[n] = t->nodes[i].lasti;
        Py_INCREF(codes[n]);
        n++;
    }
    PyObject *list = PyList_New(0);
    for (int k = 0; k < n; k++) {
        if (list != NULL) {
            PyObject *frame = mt_resolve_frame(codes[k], lastis[k]);
            if (frame == NULL || PyList_Append(list, frame) < 0) {
                Py_CLEAR(list);
            }
            Py_XDECREF(frame);
        }
    }
    for (int k = 0; k < n; k++) {
        Py_DECREF(codes[k]);
    }
    return list;
}

/* path_of(type, leaf) -> [(filename, lineno, function)] innermost first. */
static PyObject *
MtCaptureCore_path_of(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp;
    unsigned int leaf;
    if (!PyArg_ParseTuple(args, "OI:path_of", &tp, &leaf)) {
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "path_of");
    if (s == -2) {
        return NULL;
    }
    return mt_leaf_frames(c, s, leaf);
}

static PyObject *
MtCaptureCore_statistics(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    size_t tree_total = 0, nodes = 0;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        tree_total += mt_tree_bytes(c->slots[s].tree);
        if (c->slots[s].tree) {
            nodes += c->slots[s].tree->n_nodes;
        }
    }
    size_t obj_bytes = mt_pm_bytes(&c->objects);
    size_t other = mt_pm_bytes(&c->types) + mt_pm_bytes(&c->cb_seqs)
                   + (c->queue ? (size_t)c->q_cap * sizeof(MtEvent) : 0) + (size_t)c->cap_slots * sizeof(MtSlot);
    /* clang-format off */ /* one key and its value a line */
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:I,s:I,s:K,s:n}",
                         "tracked_objects", (Py_ssize_t)c->objects.used,
                         "object_table_capacity", (Py_ssize_t)(c->objects.mask ? c->objects.mask + 1 : 0),
                         "object_table_bytes", (Py_ssize_t)obj_bytes,
                         "call_tree_nodes", (Py_ssize_t)nodes,
                         "call_tree_bytes", (Py_ssize_t)tree_total,
                         "other_bytes", (Py_ssize_t)other,
                         "queue_length", c->q_len,
                         "queue_capacity", c->q_cap,
                         "dropped_events", (unsigned long long)c->dropped_events,
                         "total_bytes", (Py_ssize_t)(obj_bytes + tree_total + other));
    /* clang-format on */
}

static int
mt_compare_pointers(const void *a, const void *b)
{
    PyCodeObject *const *first = (PyCodeObject *const *)a;
    PyCodeObject *const *second = (PyCodeObject *const *)b;
    uintptr_t x = (uintptr_t)*first, y = (uintptr_t)*second;
    return (x > y) - (x < y);
}

/* The code objects the call trees hold, each once, and those of them every reference
 * to which is a node's (the app let go of them). A type analysed while the app
 * compiles code per request (a template rendered from a string, exec) keeps those
 * codes, and what they hold, until the tree prunes their nodes: the monitor leaves
 * that growth of ours out of its verifications. */
static PyObject *
MtCaptureCore_tree_codes(MtCaptureCore *c, PyObject *Py_UNUSED(ignored))
{
    size_t n = 0;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        if (c->slots[s].tree) {
            n += c->slots[s].tree->n_nodes;
        }
    }
    PyCodeObject **codes = (PyCodeObject **)malloc((n ? n : 1) * sizeof(PyCodeObject *));
    unsigned char *alone = (unsigned char *)malloc(n ? n : 1);
    if (codes == NULL || alone == NULL) {
        free(codes);
        free(alone);
        return PyErr_NoMemory();
    }
    size_t used = 0;
    for (uint32_t s = 0; s < c->n_slots; s++) {
        MtTree *t = c->slots[s].tree;
        for (uint32_t i = 1; t != NULL && i < t->n_nodes; i++) {
            codes[used++] = t->nodes[i].code;
        }
    }
    qsort(codes, used, sizeof(PyCodeObject *), mt_compare_pointers);
    /* (counted and held before any Python object is made: a new one of an analysed
     * type adds a node, and may make the tree ask for pruning; a reference of ours
     * would make none of them alone) */
    size_t kept = 0, n_alone = 0;
    for (size_t i = 0; i < used;) {
        size_t j = i;
        while (j < used && codes[j] == codes[i]) {
            j++;
        }
        alone[kept] = (size_t)Py_REFCNT(codes[i]) <= j - i;
        n_alone += alone[kept];
        codes[kept++] = (PyCodeObject *)Py_NewRef((PyObject *)codes[i]);
        i = j;
    }
    PyObject *all = PyList_New((Py_ssize_t)kept);
    PyObject *only_ours = PyList_New((Py_ssize_t)n_alone);
    for (size_t k = 0, a = 0; k < kept; k++) {
        if (all != NULL && only_ours != NULL) {
            PyList_SET_ITEM(all, (Py_ssize_t)k, Py_NewRef((PyObject *)codes[k]));
            if (alone[k]) {
                PyList_SET_ITEM(only_ours, (Py_ssize_t)a++, Py_NewRef((PyObject *)codes[k]));
            }
        }
        Py_DECREF(codes[k]);
    }
    free(codes);
    free(alone);
    PyObject *result = (all != NULL && only_ours != NULL) ? PyTuple_Pack(2, all, only_ours) : NULL;
    Py_XDECREF(all);
    Py_XDECREF(only_ours);
    return result;
}

static PyObject *
MtCaptureCore_get_running(MtCaptureCore *c, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(c->running);
}

/* Up to n live objects of one tracked type, spread evenly over its table
 * entries, each with a new reference: *picked (PyMem_Free it), *count of them;
 * NULL and 0 when there is none. -1 with an exception set on a bad argument.
 * Only while the capture runs and saw every event: otherwise an entry may name
 * an object that died unseen, and its address must not be followed. */
#define MT_SAMPLE_MAX 10000
static int
mt_capture_pick(MtCaptureCore *c, PyObject *tp, Py_ssize_t n, const char *what, PyObject ***picked_out,
                Py_ssize_t *count)
{
    *picked_out = NULL;
    *count = 0;
    if (n < 0 || n > MT_SAMPLE_MAX) {
        PyErr_Format(PyExc_ValueError, "sample size must be from 0 to %d, got %zd", MT_SAMPLE_MAX, n);
        return -1;
    }
    int64_t s = mt_slot_arg(c, tp, what);
    if (s == -2) {
        return -1;
    }
    mt_engine_check_displaced();
    if (s >= 0 && (!c->running || c->missed)) {
        PyErr_SetString(PyExc_RuntimeError,
                        c->missed
                            ? "the capture missed events (another tool took the tracer): its objects cannot be sampled"
                            : "the capture is stopped: its objects cannot be sampled");
        return -1;
    }
    MtPtrMap *m = &c->objects;
    if (s < 0 || n == 0 || m->used == 0 || c->slots[s].type == NULL) {
        return 0;
    }
    MtSlot *slot = &c->slots[s];
    uint64_t live = slot->new_count > slot->free_count ? slot->new_count - slot->free_count : 0;
    if (live == 0) {
        return 0;   /* no scan of the table for a type with nothing alive */
    }
    uint64_t step = live > (uint64_t)n ? live / (uint64_t)n : 1;
    if ((uint64_t)n > live) {
        n = (Py_ssize_t)live;   /* no more can be found: room for what there is */
    }
    PyObject **picked = PyMem_Malloc((size_t)n * sizeof(PyObject *));
    if (picked == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Collect first, allocating nothing: a Python allocation here could run the
     * garbage collector, free objects and change the table under the scan. */
    Py_ssize_t k = 0;
    uint64_t seen = 0;
    for (size_t i = 0; i <= m->mask && k < n && seen < live; i++) {
        uintptr_t key = m->keys[i];
        if (key == 0 || (int64_t)(m->vals[i] >> MT_LEAF_BITS) != s) {
            continue;
        }
        if (seen++ % step != 0) {
            continue;           /* (the loop ends once every entry of the type was passed) */
        }
        PyObject *op = (PyObject *)key;
        if (Py_TYPE(op) != slot->type || Py_REFCNT(op) <= 0) {
            continue;       /* its class was changed: not this type's object now */
        }
        picked[k++] = op;
    }
    /* Held before anything allocates: the caller's allocations may collect garbage. */
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_INCREF(picked[j]);
    }
    *picked_out = picked;
    *count = k;
    return 0;
}

static void
mt_release_picked(PyObject **picked, Py_ssize_t count)
{
    for (Py_ssize_t j = 0; j < count; j++) {
        Py_DECREF(picked[j]);
    }
    PyMem_Free(picked);
}

/* allocation_paths(type, objects) -> ([leaf], {leaf: [(filename, lineno, function)]}):
 * the call-tree node each object was allocated at, as the capture tabled it, 0 for
 * one it did not follow (not of this type's table, not sampled, or no Python
 * frame), and the frames of each leaf found (None: none recorded). One call reads
 * both: between two, another thread's read of the tree may prune it and number its
 * nodes again. Which call paths the objects a retention search looked at came from. */
static PyObject *
MtCaptureCore_allocation_paths(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp, *objects;
    if (!PyArg_ParseTuple(args, "OO!:allocation_paths", &tp, &PyList_Type, &objects)) {
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "allocation_paths");
    if (s == -2) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(objects);
    uint32_t *found = (uint32_t *)PyMem_Malloc((n > 0 ? (size_t)n : 1) * sizeof(uint32_t));
    if (found == NULL) {
        return PyErr_NoMemory();
    }
    mt_engine_check_displaced();
    /* (a capture stopped, or that missed events, may hold the entry of an object that
     * died unseen at an address a new one took: none is trusted then) */
    MtTree *tree = s >= 0 && c->running && !c->missed ? c->slots[s].tree : NULL;
    /* Every leaf is read before any object is made: making one runs the hook. */
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t val, leaf = 0;
        PyObject *op = PyList_GET_ITEM(objects, i);
        if (tree != NULL && mt_slot_entry(c, s, op, &val)) {
            leaf = val & MT_NO_LEAF;
            if (leaf == MT_NO_LEAF || leaf >= tree->n_nodes) {
                leaf = 0;
            }
        }
        found[i] = leaf;
    }
    PyObject *leaves = PyList_New(n);
    PyObject *paths = PyDict_New();
    for (Py_ssize_t i = 0; i < n && leaves != NULL && paths != NULL; i++) {
        PyObject *number = PyLong_FromUnsignedLong(found[i]);
        int known = number == NULL ? -1 : found[i] == 0 ? 1 : PyDict_Contains(paths, number);
        PyObject *frames = known == 0 ? mt_leaf_frames(c, s, found[i]) : NULL;
        if (known < 0 || (known == 0 && (frames == NULL || PyDict_SetItem(paths, number, frames) < 0))) {
            Py_XDECREF(number);
            Py_CLEAR(leaves);
        }
        else {
            PyList_SET_ITEM(leaves, i, number);
        }
        Py_XDECREF(frames);
    }
    PyMem_Free(found);
    if (leaves == NULL || paths == NULL) {
        Py_XDECREF(leaves);
        Py_XDECREF(paths);
        return NULL;
    }
    PyObject *res = PyTuple_Pack(2, leaves, paths);
    Py_DECREF(leaves);
    Py_DECREF(paths);
    return res;
}

/* tabled(type, objects): (in the table, followed) of the objects of exactly that type:
 * those the slot follows (all, or those its address sample picks) and, of them, those
 * in its table, made since it began. Reads only; allocates nothing until the result. */
static PyObject *
MtCaptureCore_tabled(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp, *objects;
    if (!PyArg_ParseTuple(args, "OO!:tabled", &tp, &PyList_Type, &objects)) {
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "tabled");
    if (s == -2) {
        return NULL;
    }
    mt_engine_check_displaced();
    Py_ssize_t tabled = 0, followed = 0;
    /* (as allocation_paths: a stopped capture's entries, or one that missed events, are
     * not trusted) */
    if (s >= 0 && c->running && !c->missed && c->slots[s].type != NULL) {
        MtSlot *slot = &c->slots[s];
        Py_ssize_t n = PyList_GET_SIZE(objects);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *op = PyList_GET_ITEM(objects, i);
            uint32_t val;
            if (Py_TYPE(op) != slot->type || (slot->addr_limit && !MT_WATCH_SAMPLED(op, slot->addr_limit))) {
                continue;
            }
            followed++;
            if (mt_slot_entry(c, s, op, &val)) {
                tabled++;
            }
        }
    }
    return Py_BuildValue("(nn)", tabled, followed);
}

/* sample(type, n): the picked objects, for estimates of what the type holds. */
static PyObject *
MtCaptureCore_sample(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:sample", &tp, &n)) {
        return NULL;
    }
    PyObject **picked;
    Py_ssize_t k;
    if (mt_capture_pick(c, tp, n, "sample", &picked, &k) < 0) {
        return NULL;
    }
    PyObject *list = PyList_New(k);
    if (list == NULL) {
        mt_release_picked(picked, k);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyList_SET_ITEM(list, j, picked[j]);    /* (the list takes the references) */
    }
    PyMem_Free(picked);
    return list;
}

/* sizes(type, n) -> (bytes, measured) or None: sys.getsizeof of the objects
 * sample() would pick, summed here, without handing them out. Nothing in it runs
 * Python code, so no other thread runs while it holds them: an object the app drops
 * meanwhile is not kept past its last reference. None when the type's __sizeof__
 * is not C code (or sys.getsizeof was replaced): the caller measures a sample then. */
static PyObject *
MtCaptureCore_sizes(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:sizes", &tp, &n)) {
        return NULL;
    }
    PyObject **picked;
    Py_ssize_t k;
    if (mt_capture_pick(c, tp, n, "sizes", &picked, &k) < 0) {
        return NULL;
    }
    if (k == 0) {
        return Py_BuildValue("(ii)", 0, 0);
    }
    PyObject *name = PyUnicode_InternFromString("__sizeof__");
    if (name == NULL) {
        mt_release_picked(picked, k);
        return NULL;
    }
    PyObject *method = _PyType_Lookup((PyTypeObject *)tp, name);    /* (borrowed; runs no code) */
    Py_DECREF(name);
    PyObject *getsizeof = PySys_GetObject("getsizeof");                /* (borrowed) */
    if (method == NULL || !Py_IS_TYPE(method, &PyMethodDescr_Type) || getsizeof == NULL
        || !PyCFunction_Check(getsizeof)) {
        mt_release_picked(picked, k);
        Py_RETURN_NONE;
    }
    Py_INCREF(getsizeof);
    long long total = 0;
    Py_ssize_t measured = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *size = PyObject_CallOneArg(getsizeof, picked[j]);
        long long bytes = size != NULL ? PyLong_AsLongLong(size) : -1;
        Py_XDECREF(size);
        if (bytes < 0) {
            PyErr_Clear();      /* one odd object must not cost the estimate */
            continue;
        }
        total += bytes;
        measured++;
    }
    Py_DECREF(getsizeof);
    mt_release_picked(picked, k);
    return Py_BuildValue("(Ln)", total, measured);
}

static PyMethodDef mt_capture_methods[] = {
    {"track", (PyCFunction)(void (*)(void))MtCaptureCore_track, METH_VARARGS | METH_KEYWORDS,
     "track(type, callback=False, object_sample=0) -> slot: count objects of exactly this type "
     "(object_sample=N: one in about N, by address; 0: as it is)."},
    {"untrack", (PyCFunction)MtCaptureCore_untrack, METH_O, "untrack(type) -> bool"},
    {"analyse", (PyCFunction)(void (*)(void))MtCaptureCore_analyse, METH_VARARGS | METH_KEYWORDS,
     "analyse(type, depth=10, sample_every=1, max_nodes=10000, object_sample=1): record allocation call paths "
     "(object_sample=N: follow one object in about N, picked by address, and count those alone)."},
    {"unanalyse", (PyCFunction)MtCaptureCore_unanalyse, METH_O, "unanalyse(type) -> bool: drop the call tree."},
    {"start", (PyCFunction)MtCaptureCore_start, METH_NOARGS, "start(): begin a new counting period."},
    {"stop", (PyCFunction)MtCaptureCore_stop, METH_NOARGS, "stop(): freeze counts."},
    {"clear", (PyCFunction)MtCaptureCore_clear, METH_NOARGS, "clear(): zero the counts of a stopped capture."},
    {"counts", (PyCFunction)MtCaptureCore_counts, METH_O, "counts(type) -> (new, free, lost) or None"},
    {"live", (PyCFunction)MtCaptureCore_live, METH_O, "live(type) -> int (0 when not tracked)"},
    {"items", (PyCFunction)MtCaptureCore_items, METH_NOARGS, "items() -> [(type, new, free, lost, analysing)]"},
    {"slot_of", (PyCFunction)MtCaptureCore_slot_of, METH_O, "slot_of(type) -> int or None"},
    {"object_sample", (PyCFunction)MtCaptureCore_object_sample, METH_O,
     "object_sample(type) -> 1 (every object counted), N (one in about N, by address) or None"},
    {"drain", (PyCFunction)MtCaptureCore_drain, METH_NOARGS, "drain() -> [(slot, kind, seq, leaf)]"},
    {"pending", (PyCFunction)MtCaptureCore_pending, METH_NOARGS, "pending() -> queued events"},
    {"tree", (PyCFunction)MtCaptureCore_tree, METH_O, "tree(type) -> (nodes, meta) or None"},
    {"tree_update", (PyCFunction)MtCaptureCore_tree_update, METH_VARARGS,
     "tree_update(type, layout, known) -> (layout, start, places, counts, meta) or None: the places of the "
     "nodes after the first `known` of a tree read under `layout` (all when it changed), every node's counts"},
    {"path_of", (PyCFunction)MtCaptureCore_path_of, METH_VARARGS,
     "path_of(type, leaf) -> [(filename, lineno, function)]"},
    {"statistics", (PyCFunction)MtCaptureCore_statistics, METH_NOARGS, "statistics() -> dict of table sizes and bytes"},
    {"tree_codes", (PyCFunction)MtCaptureCore_tree_codes, METH_NOARGS,
     "tree_codes() -> ([code], [code]): the code objects the call trees hold, each once, and those of them every "
     "reference to which is a node's"},
    {"allocation_paths", (PyCFunction)MtCaptureCore_allocation_paths, METH_VARARGS,
     "allocation_paths(type, objects) -> ([leaf], {leaf: [(filename, lineno, function)] or None}): the call-tree "
     "node each object was allocated at (0: not followed) and each node's frames, read together"},
    {"tabled", (PyCFunction)MtCaptureCore_tabled, METH_VARARGS,
     "tabled(type, objects) -> (tabled, followed): of the objects of exactly that type, those the table follows "
     "(its address sample's), and of them those in it (made since it began)"},
    {"sample", (PyCFunction)MtCaptureCore_sample, METH_VARARGS,
     "sample(type, n) -> up to n live objects of a tracked type, spread over its table (running captures only)"},
    {"sizes", (PyCFunction)MtCaptureCore_sizes, METH_VARARGS,
     "sizes(type, n) -> (bytes, measured): sys.getsizeof summed over the objects sample(type, n) would give, "
     "or None when the type's __sizeof__ is not C code"},
    {NULL, NULL, 0, NULL},
};

static PyObject *
MtCaptureCore_get_missed(MtCaptureCore *c, void *Py_UNUSED(closure))
{
    mt_engine_check_displaced();
    return PyBool_FromLong(c->missed);
}

static PyGetSetDef mt_capture_getset[] = {
    {"running", (getter)MtCaptureCore_get_running, NULL, "True while counting.", NULL},
    {"missed_events", (getter)MtCaptureCore_get_missed, NULL,
     "True when the tracer was displaced while this capture ran (counts are incomplete).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MtCaptureCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtracker_web._tracker.CaptureCore",
    .tp_basicsize = sizeof(MtCaptureCore),
    .tp_dealloc = (destructor)MtCaptureCore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One capture's tracked types, per-object table and counts (see memtracker_web.Capture).",
    .tp_methods = mt_capture_methods,
    .tp_getset = mt_capture_getset,
    .tp_new = MtCaptureCore_new,
    .tp_weaklistoffset = offsetof(MtCaptureCore, weakreflist),
};
