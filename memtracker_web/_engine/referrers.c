/* memtracker_web/_engine/referrers.c: referrers(objects), gc.get_referrers for
 * many objects at once; clear_type_cache(), for what a search must not take
 * for a hidden holder.
 *
 * A retention search (memtracker_web/monitor/retention.py) asks, level by level,
 * which objects refer to any of a frontier of up to a few thousand objects.
 * gc.get_referrers(*objects) compares every reference of every object the
 * collector tracks with each of its arguments in turn: a level of n objects costs
 * n times a pass over the heap (1,000 objects on a heap of 46,000: 59 ms where
 * one object takes 1.2). Here the objects looked for are in a pointer table, and
 * a level costs one pass whatever its size.
 *
 * A second pass finds the containers the collector stopped tracking: CPython
 * untracks a tuple (and before 3.14 a dict) holding only objects that can be in no
 * cycle, and no pass over what it tracks meets them. A request id kept as a key of
 * SEEN = {} with a float as its value (3.13), a str in a tuple of strs, an
 * lru_cache's links in its cache's dict (3.13): each has such a holder and no
 * other. When an object looked for has no holder after the first pass and could be
 * in one (it is not tracked itself), every tracked object's untracked referents are
 * looked into (and theirs, to MT_UNTRACKED_DEPTH), each once; one holding such an
 * object is an answer too. The first pass reads no referent's memory, this one
 * reads each referent's type: it runs only when needed.
 *
 * The pass: PyUnstable_GC_VisitObjects (3.12+), which makes no list of the heap;
 * before 3.12, gc.get_objects(). The referrers met are kept in a raw array while
 * the pass runs (the visit must not create objects, which it might or might not
 * visit) and become a list after it. Unlike gc.get_referrers, what gc.freeze()
 * set aside is visited too where the running CPython's PyUnstable_GC_VisitObjects
 * does (REFERRERS_SEE_FROZEN).
 *
 * Runs from Python code only, never from the hook; it needs the GIL and holds it.
 */

/* Objects found, kept as strong references in raw memory: a pass over the heap or a
 * holder's tp_traverse must make no object (it might or might not visit it). */
typedef struct {
    PyObject **items;
    size_t count, capacity;
} MtFound;

/* Keeps op (a new reference); 0 when out of memory. */
static int
mt_found_keep(MtFound *found, PyObject *op)
{
    if (found->count == found->capacity) {
        size_t capacity = found->capacity ? found->capacity * 2 : 64;
        PyObject **grown = (PyObject **)realloc(found->items, capacity * sizeof(PyObject *));
        if (grown == NULL) {
            return 0;
        }
        found->items = grown;
        found->capacity = capacity;
    }
    found->items[found->count++] = Py_NewRef(op);
    return 1;
}

/* A list of them, the references moving into it (released if it cannot be made);
 * found is left empty. Before 3.12 making the list may run a collection, and
 * finalisers: the references taken keep the objects. */
static PyObject *
mt_found_to_list(MtFound *found)
{
    PyObject *list = PyList_New((Py_ssize_t)found->count);
    for (size_t i = 0; i < found->count; i++) {
        if (list != NULL) {
            PyList_SET_ITEM(list, (Py_ssize_t)i, found->items[i]);
        }
        else {
            Py_DECREF(found->items[i]);
        }
    }
    free(found->items);
    memset(found, 0, sizeof(*found));
    return list;
}

static void
mt_found_clear(MtFound *found)
{
    for (size_t i = 0; i < found->count; i++) {
        Py_DECREF(found->items[i]);
    }
    free(found->items);
    memset(found, 0, sizeof(*found));
}

typedef struct {
    MtPtrMap wanted;         /* the objects looked for (values unused) */
    PyObject *skip;          /* the caller's container of them: a referrer of each, never an answer */
    MtPtrMap ignored;        /* the caller's other containers (by id): never answers either */
    int strings;             /* some of them are strs: dicts' keys are looked at too */
    MtFound found;           /* the answers */
    int out_of_memory;
    /* the second pass (see above) */
    MtPtrMap unheld;         /* the objects looked for that no tracked object holds */
    MtPtrMap looked_into;    /* the untracked containers looked into */
    int unheld_strings;      /* some of them are strs */
    /* referrers_until: the caller's deadline, and whether a pass stopped at it */
    int has_deadline;
    int64_t deadline_ns;     /* on the clock of time.monotonic() */
    uint32_t visits;
    int cut;
} MtReferrers;

/* The clock costs more than a visit: read at every MT_DEADLINE_EVERY-th object
 * of a pass (a few microseconds apart). */
#define MT_DEADLINE_EVERY 1024

/* Whether a pass must stop here: the caller's deadline has passed (then `cut`,
 * which stays). Read at each object a pass meets and each untracked container
 * looked into. */
static inline int
mt_referrers_past_deadline(MtReferrers *search)
{
    if (!search->has_deadline || search->cut) {
        return search->cut;
    }
    if (search->visits++ % MT_DEADLINE_EVERY == 0 && mt_monotonic_ns() > search->deadline_ns) {
        search->cut = 1;
    }
    return search->cut;
}

/* How deep untracked containers are looked into below a tracked object (a tuple of
 * tuples of strs is two): the recursion's bound. */
#define MT_UNTRACKED_DEPTH 16

static int
mt_referrers_match(PyObject *referent, void *arg)
{
    const MtReferrers *search = (const MtReferrers *)arg;
    uint32_t unused;
    return referent != NULL && mt_pm_get(&search->wanted, (uintptr_t)referent, &unused);
}

/* visit(key, arg) for each key of a dict (or a frozendict), until one returns nonzero (returned).
 * A dict whose keys are all strs does not visit them in its tp_traverse (a str
 * refers to nothing, so it can be in no cycle): a leak of strs kept as the keys of
 * a module's dict (CACHE[f"session-{n}"] = value) had no referrer a search could
 * find. PyDict_Next makes no object and lends its references. */
static int
mt_visit_dict_keys(PyObject *op, visitproc visit, void *arg)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(op, &pos, &key, &value)) {
        int stop = visit(key, arg);
        if (stop) {
            return stop;
        }
    }
    return 0;
}

/* Whether a tracked object other than the caller's is one the passes skip. */
static int
mt_referrers_skips(const MtReferrers *search, PyObject *op)
{
    uint32_t unused;
    return op == search->skip || Py_TYPE(op)->tp_traverse == NULL
           || mt_pm_get(&search->ignored, (uintptr_t)op, &unused);
}

/* Keeps op (a new reference) among the answers; 0 when out of memory. */
static int
mt_referrers_keep(MtReferrers *search, PyObject *op)
{
    if (!mt_found_keep(&search->found, op)) {
        search->out_of_memory = 1;
        return 0;
    }
    return 1;
}

/* One object of the heap: kept when it refers to one of the objects looked for.
 * Returns 1 to go on, 0 to stop (out of memory, or past the deadline). */
static int
mt_referrers_visit(PyObject *op, void *arg)
{
    MtReferrers *search = (MtReferrers *)arg;
    if (mt_referrers_past_deadline(search)) {
        return 0;
    }
    if (mt_referrers_skips(search, op)) {
        return 1;
    }
    if (!Py_TYPE(op)->tp_traverse(op, mt_referrers_match, search)
        && !(search->strings && MT_ANY_DICT_CHECK(op) && mt_visit_dict_keys(op, mt_referrers_match, search))) {
        return 1;
    }
    return mt_referrers_keep(search, op);
}

/* ---- the second pass: containers the collector does not track ---- */

/* The containers CPython stops tracking by itself (exact tuples and dicts, and
 * frozensets it never tracks from 3.15), when untracked: no other untracked object
 * is traversed, such as one an extension has made but not filled in yet. */
static int
mt_is_untracked_container(PyObject *op)
{
    return (PyTuple_CheckExact(op) || PyDict_CheckExact(op) || PyFrozenSet_CheckExact(op))
           && !PyObject_GC_IsTracked(op);
}

/* Marks an object looked for as held (by one of the first pass's answers). */
static int
mt_referrers_mark(PyObject *referent, void *arg)
{
    MtReferrers *search = (MtReferrers *)arg;
    if (referent != NULL) {
        mt_pm_pop(&search->unheld, (uintptr_t)referent, NULL);
    }
    return 0;
}

typedef struct {
    MtReferrers *search;
    int depth;
    int holds;
} MtInside;

static void mt_referrers_look_into(MtReferrers *search, PyObject *container, int depth);

static int
mt_referrers_inside_visit(PyObject *referent, void *arg)
{
    MtInside *inside = (MtInside *)arg;
    MtReferrers *search = inside->search;
    if (referent == NULL) {
        return 0;
    }
    uint32_t unused;
    if (mt_pm_get(&search->unheld, (uintptr_t)referent, &unused)) {
        inside->holds = 1;
    }
    /* (an untracked container asked about may hold another: looked into too) */
    if (inside->depth < MT_UNTRACKED_DEPTH && mt_is_untracked_container(referent)) {
        mt_referrers_look_into(search, referent, inside->depth + 1);
    }
    return search->out_of_memory || search->cut;
}

/* An untracked container met below a tracked object, looked into once: kept when
 * it holds an object looked for that no tracked object holds. */
static void
mt_referrers_look_into(MtReferrers *search, PyObject *container, int depth)
{
    uint32_t unused;
    /* (one tracked object may hold millions: a list of records, dicts untracked before 3.14) */
    if (search->out_of_memory || mt_referrers_past_deadline(search)
        || mt_pm_get(&search->looked_into, (uintptr_t)container, &unused)
        || mt_pm_get(&search->ignored, (uintptr_t)container, &unused)) {
        return;
    }
    if (mt_pm_put(&search->looked_into, (uintptr_t)container, 0, NULL) < 0) {
        search->out_of_memory = 1;
        return;
    }
    MtInside inside = {search, depth, 0};
    Py_TYPE(container)->tp_traverse(container, mt_referrers_inside_visit, &inside);
    if (!inside.holds && search->unheld_strings && MT_ANY_DICT_CHECK(container)) {
        mt_visit_dict_keys(container, mt_referrers_inside_visit, &inside);
    }
    if (inside.holds && !search->out_of_memory && !mt_referrers_keep(search, container)) {
        search->out_of_memory = 1;
    }
}

static int
mt_referrers_untracked_visit(PyObject *referent, void *arg)
{
    MtReferrers *search = (MtReferrers *)arg;
    if (referent != NULL && mt_is_untracked_container(referent)) {
        mt_referrers_look_into(search, referent, 1);
    }
    return search->out_of_memory || search->cut;
}

/* One tracked object of the heap in the second pass: its untracked referents looked into. */
static int
mt_referrers_untracked_pass_visit(PyObject *op, void *arg)
{
    MtReferrers *search = (MtReferrers *)arg;
    if (mt_referrers_past_deadline(search)) {
        return 0;
    }
    if (!mt_referrers_skips(search, op)) {
        Py_TYPE(op)->tp_traverse(op, mt_referrers_untracked_visit, search);
    }
    return !search->out_of_memory;
}

static void
mt_referrers_clear(MtReferrers *search)
{
    mt_found_clear(&search->found);
    mt_pm_free(&search->wanted);
    mt_pm_free(&search->unheld);
    mt_pm_free(&search->looked_into);
    mt_pm_free(&search->ignored);
}

typedef int (*mt_object_visitor)(PyObject *, void *);

#if MT_HAVE_GC_VISIT
#  define MT_REFERRERS_SEE_FROZEN MT_RUNTIME_GC_VISITS_FROZEN(Py_Version)
#else
#  define MT_REFERRERS_SEE_FROZEN 0
#endif

#if !MT_HAVE_GC_VISIT
/* Before 3.12: every object from gc.get_objects(); the list is its own referrer
 * of nothing we look for (it is made after the objects it lists). */
static int
mt_referrers_pass(MtReferrers *search, mt_object_visitor visit)
{
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL) {
        return -1;
    }
    PyObject *everything = PyObject_CallMethod(gc, "get_objects", NULL);
    Py_DECREF(gc);
    if (everything == NULL) {
        return -1;
    }
    if (!PyList_Check(everything)) {
        Py_DECREF(everything);
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() did not return a list");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(everything); i++) {
        if (!visit(PyList_GET_ITEM(everything, i), search)) {
            break;
        }
    }
    Py_DECREF(everything);
    return 0;
}
#else
static int
mt_referrers_pass(MtReferrers *search, mt_object_visitor visit)
{
    PyUnstable_GC_VisitObjects(visit, search);
    return 0;
}
#endif

/* The ids of `ignored` (an iterable of ints, or None) into search->ignored; -1
 * with an exception set when one is not an int. */
static int
mt_referrers_ignore(MtReferrers *search, PyObject *ignored)
{
    if (ignored == NULL || ignored == Py_None) {
        return 0;
    }
    PyObject *iterator = PyObject_GetIter(ignored);
    if (iterator == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "referrers()'s ignored holds ids (ints), not %.200s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            break;
        }
        void *address = PyLong_AsVoidPtr(item);
        Py_DECREF(item);
        if (address == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "referrers()'s ignored holds 0, which is no object's id");
            }
            break;
        }
        if (mt_pm_put(&search->ignored, (uintptr_t)address, 0, NULL) < 0) {
            PyErr_NoMemory();
            break;
        }
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* The search both entry points run: the list of answers, or NULL with an
 * exception. `deadline`: NULL, or a time.monotonic() value at which the passes
 * stop (*cut then says so; the answers found before are answers). */
static PyObject *
mt_referrers_search(PyObject *objects, PyObject *ignored, const double *deadline, int *cut)
{
    if (!PyList_Check(objects)) {
        PyErr_Format(PyExc_TypeError, "referrers() takes a list of objects, not %.200s", Py_TYPE(objects)->tp_name);
        return NULL;
    }
    MtReferrers search;
    memset(&search, 0, sizeof(search));
    search.skip = objects;
    if (deadline != NULL) {
        search.has_deadline = 1;
        search.deadline_ns = *deadline >= 9.2e9 ? INT64_MAX : *deadline <= 0 ? 0 : (int64_t)(*deadline * 1e9);
    }
    if (mt_referrers_ignore(&search, ignored) < 0) {
        mt_referrers_clear(&search);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
        PyObject *object = PyList_GET_ITEM(objects, i);
        search.strings |= PyUnicode_Check(object);
        int hideable = !PyObject_IS_GC(object) || !PyObject_GC_IsTracked(object);
        search.unheld_strings |= hideable && PyUnicode_Check(object);
        if (mt_pm_put(&search.wanted, (uintptr_t)object, 0, NULL) < 0
            || (hideable && mt_pm_put(&search.unheld, (uintptr_t)object, 0, NULL) < 0)) {
            mt_referrers_clear(&search);
            return PyErr_NoMemory();
        }
    }
    int rc = search.wanted.used ? mt_referrers_pass(&search, mt_referrers_visit) : 0;
    if (rc == 0 && !search.out_of_memory && !search.cut && search.unheld.used) {
        /* what the first pass's answers hold is held */
        for (size_t i = 0; i < search.found.count && search.unheld.used; i++) {
            PyObject *holder = search.found.items[i];
            Py_TYPE(holder)->tp_traverse(holder, mt_referrers_mark, &search);
            if (search.unheld_strings && MT_ANY_DICT_CHECK(holder)) {
                mt_visit_dict_keys(holder, mt_referrers_mark, &search);
            }
        }
        if (search.unheld.used) {
            rc = mt_referrers_pass(&search, mt_referrers_untracked_pass_visit);
        }
    }
    if (rc < 0 || search.out_of_memory) {
        mt_referrers_clear(&search);
        return rc < 0 ? NULL : PyErr_NoMemory();
    }
    PyObject *result = mt_found_to_list(&search.found);
    *cut = search.cut;
    mt_referrers_clear(&search);
    return result;
}

static PyObject *
mt_referrers(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objects, *ignored = NULL;
    if (!PyArg_ParseTuple(args, "O|O:referrers", &objects, &ignored)) {
        return NULL;
    }
    int cut = 0;
    return mt_referrers_search(objects, ignored, NULL, &cut);
}

/* referrers_until(objects, ignored, deadline) -> (list, complete): referrers(),
 * its passes stopped at `deadline` (a time.monotonic() value): a search's level
 * takes a pass over the heap, two where an object may be in an untracked container
 * (2-3 times one: 780 ms for a heap of 3 million untracked dicts under 3.13), and
 * it holds the GIL. complete is False when a pass stopped there. */
static PyObject *
mt_referrers_until(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objects, *ignored;
    double deadline;
    if (!PyArg_ParseTuple(args, "OOd:referrers_until", &objects, &ignored, &deadline)) {
        return NULL;
    }
    if (deadline != deadline) {
        PyErr_SetString(PyExc_ValueError, "referrers_until()'s deadline is NaN");
        return NULL;
    }
    int cut = 0;
    PyObject *found = mt_referrers_search(objects, ignored, &deadline, &cut);
    if (found == NULL) {
        return NULL;
    }
    PyObject *result = Py_BuildValue("(NO)", found, cut ? Py_False : Py_True);
    return result;
}

/* held_by(holder, objects, keys) -> list: the items of the list `objects` that
 * holder refers to, as its tp_traverse shows them (one that it refers to twice is
 * there twice: a search explains an object's reference count by its holders), then
 * with keys a dict's or frozendict's keys it did not show. A search's step from a
 * holder to what it holds: in Python, gc.get_referents(holder) and a test of each,
 * 96 ms for a list of a million (a long-running leak's), where the objects looked
 * for are a few. */
typedef struct {
    MtPtrMap wanted;        /* the objects looked for */
    MtPtrMap shown;         /* those the holder's tp_traverse showed */
    MtFound met;            /* (Py_INCREF makes nothing) */
    int out_of_memory;
} MtHeldBy;

/* Keeps referent; nonzero (stop) when out of memory. */
static int
mt_held_by_keep(MtHeldBy *held, PyObject *referent)
{
    if (!mt_found_keep(&held->met, referent)) {
        held->out_of_memory = 1;
        return 1;
    }
    return 0;
}

static int
mt_held_by_visit(PyObject *referent, void *arg)
{
    MtHeldBy *held = (MtHeldBy *)arg;
    uint32_t unused;
    if (referent == NULL || !mt_pm_get(&held->wanted, (uintptr_t)referent, &unused)) {
        return 0;
    }
    if (mt_pm_put(&held->shown, (uintptr_t)referent, 0, NULL) < 0) {
        held->out_of_memory = 1;
        return 1;
    }
    return mt_held_by_keep(held, referent);
}

static int
mt_held_by_key_visit(PyObject *key, void *arg)
{
    MtHeldBy *held = (MtHeldBy *)arg;
    uint32_t unused;
    if (key == NULL || !mt_pm_get(&held->wanted, (uintptr_t)key, &unused)
        || mt_pm_get(&held->shown, (uintptr_t)key, &unused)) {
        return 0;
    }
    return mt_held_by_keep(held, key);
}

static PyObject *
mt_held_by(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *holder, *objects;
    int keys;
    if (!PyArg_ParseTuple(args, "OO!p:held_by", &holder, &PyList_Type, &objects, &keys)) {
        return NULL;
    }
    MtHeldBy held;
    memset(&held, 0, sizeof(held));
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
        if (mt_pm_put(&held.wanted, (uintptr_t)PyList_GET_ITEM(objects, i), 0, NULL) < 0) {
            held.out_of_memory = 1;
            break;
        }
    }
    /* (nothing is made while the holder is traversed: `met` is raw memory) */
    traverseproc traverse = Py_TYPE(holder)->tp_traverse;
    if (!held.out_of_memory && held.wanted.used && traverse != NULL && PyObject_IS_GC(holder)) {
        traverse(holder, mt_held_by_visit, &held);
    }
    if (!held.out_of_memory && keys && held.wanted.used && MT_ANY_DICT_CHECK(holder)) {
        mt_visit_dict_keys(holder, mt_held_by_key_visit, &held);
    }
    mt_pm_free(&held.wanted);
    mt_pm_free(&held.shown);
    if (held.out_of_memory) {
        mt_found_clear(&held.met);
        return PyErr_NoMemory();
    }
    return mt_found_to_list(&held.met);
}

/* clear_type_cache(): let go of the attribute names CPython's type attribute
 * cache holds. Each of its 4,096 entries keeps a strong reference to the last name
 * looked up there (type_cache_entry.name), a reference no collector pass sees: a
 * str made at run time and used as an attribute name (getattr(obj, name) with a
 * name read from a request) stays alive in the cache until another lookup takes
 * its entry, and a search from it finds something hidden holding it. A search
 * calls this before it samples the objects it starts from; the cache fills again
 * as lookups miss it. PyType_ClearCache, not sys._clear_internal_caches (3.13+),
 * which also throws away every JIT trace. */
static PyObject *
mt_clear_type_cache(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    PyType_ClearCache();
    Py_RETURN_NONE;
}

/* code_parts(code): the objects a code object refers to, which the collector never
 * shows (a code object is not tracked, and has no tp_traverse): its constants, names,
 * locals' names and kinds, file and function names, line and exception tables, and
 * those of its attributes made when first read and cached (co_code, co_varnames,
 * co_cellvars, co_freevars). The monitor leaves out of a search what the codes its
 * call trees hold keep this way (see tree_codes). */
static PyObject *
mt_code_parts(PyObject *Py_UNUSED(self), PyObject *arg)
{
    if (!PyCode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "code_parts() takes a code object, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    PyCodeObject *code = (PyCodeObject *)arg;
    PyObject *parts[9 + MT_CODE_CACHED_MOST] = {code->co_consts,          code->co_names,     code->co_localsplusnames,
                                                code->co_localspluskinds, code->co_filename,  code->co_name,
                                                code->co_qualname,        code->co_linetable, code->co_exceptiontable};
    Py_ssize_t n = 9;
    PyObject *cached[MT_CODE_CACHED_MOST];
    int n_cached = MT_CODE_CACHED(code, cached);
    for (int k = 0; k < n_cached; k++) {
        if (cached[k] != NULL) {
            parts[n++] = cached[k];
        }
    }
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyTuple_SET_ITEM(tuple, k, Py_NewRef(parts[k]));
    }
    return tuple;
}
