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
 * The pass: PyUnstable_GC_VisitObjects (3.12+), which makes no list of the heap;
 * before 3.12, gc.get_objects(). The referrers met are kept in a raw array while
 * the pass runs (the visit must not create objects, which it might or might not
 * visit) and become a list after it. Unlike gc.get_referrers, what gc.freeze()
 * set aside is visited too where the running CPython's PyUnstable_GC_VisitObjects
 * does (REFERRERS_SEE_FROZEN).
 *
 * Runs from Python code only, never from the hook; it needs the GIL and holds it.
 */

typedef struct {
    MtPtrMap wanted;         /* the objects looked for (values unused) */
    PyObject *skip;          /* the caller's container of them: a referrer of each, never an answer */
    int strings;             /* some of them are strs: dicts' keys are looked at too */
    PyObject **found;        /* strong references */
    size_t count;
    size_t capacity;
    int out_of_memory;
} MtReferrers;

static int
mt_referrers_match(PyObject *referent, void *arg)
{
    const MtReferrers *search = (const MtReferrers *)arg;
    uint32_t unused;
    return referent != NULL && mt_pm_get(&search->wanted, (uintptr_t)referent, &unused);
}

/* Whether a dict holds one of the objects looked for as a key. A dict whose keys
 * are all strs does not visit them in its tp_traverse (a str refers to nothing, so
 * it can be in no cycle): a leak of strs kept as the keys of a module's dict
 * (CACHE[f"session-{n}"] = value) had no referrer a search could find. PyDict_Next
 * makes no object and lends its references. */
static int
mt_referrers_dict_keys_match(PyObject *op, MtReferrers *search)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(op, &pos, &key, &value)) {
        if (mt_referrers_match(key, search)) {
            return 1;
        }
    }
    return 0;
}

/* One object of the heap: kept when it refers to one of the objects looked for.
 * Returns 1 to go on, 0 to stop (out of memory). */
static int
mt_referrers_visit(PyObject *op, void *arg)
{
    MtReferrers *search = (MtReferrers *)arg;
    traverseproc traverse = Py_TYPE(op)->tp_traverse;
    if (op == search->skip || traverse == NULL) {
        return 1;
    }
    if (!traverse(op, mt_referrers_match, search)
        && !(search->strings && PyDict_Check(op) && mt_referrers_dict_keys_match(op, search))) {
        return 1;
    }
    if (search->count == search->capacity) {
        size_t capacity = search->capacity ? search->capacity * 2 : 64;
        PyObject **grown = (PyObject **)realloc(search->found, capacity * sizeof(PyObject *));
        if (grown == NULL) {
            search->out_of_memory = 1;
            return 0;
        }
        search->found = grown;
        search->capacity = capacity;
    }
    search->found[search->count++] = Py_NewRef(op);
    return 1;
}

static void
mt_referrers_clear(MtReferrers *search)
{
    for (size_t i = 0; i < search->count; i++) {
        Py_DECREF(search->found[i]);
    }
    free(search->found);
    mt_pm_free(&search->wanted);
}

#if MT_HAVE_GC_VISIT
#  define MT_REFERRERS_SEE_FROZEN MT_RUNTIME_GC_VISITS_FROZEN(Py_Version)
#else
#  define MT_REFERRERS_SEE_FROZEN 0
#endif

#if !MT_HAVE_GC_VISIT
/* Before 3.12: every object from gc.get_objects(); the list is its own referrer
 * of nothing we look for (it is made after the objects it lists). */
static int
mt_referrers_pass(MtReferrers *search)
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
        if (!mt_referrers_visit(PyList_GET_ITEM(everything, i), search)) {
            break;
        }
    }
    Py_DECREF(everything);
    return 0;
}
#else
static int
mt_referrers_pass(MtReferrers *search)
{
    PyUnstable_GC_VisitObjects(mt_referrers_visit, search);
    return 0;
}
#endif

static PyObject *
mt_referrers(PyObject *Py_UNUSED(self), PyObject *objects)
{
    if (!PyList_Check(objects)) {
        PyErr_Format(PyExc_TypeError, "referrers() takes a list of objects, not %.200s", Py_TYPE(objects)->tp_name);
        return NULL;
    }
    MtReferrers search;
    memset(&search, 0, sizeof(search));
    search.skip = objects;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objects); i++) {
        search.strings |= PyUnicode_Check(PyList_GET_ITEM(objects, i));
        if (mt_pm_put(&search.wanted, (uintptr_t)PyList_GET_ITEM(objects, i), 0, NULL) < 0) {
            mt_referrers_clear(&search);
            return PyErr_NoMemory();
        }
    }
    int rc = search.wanted.used ? mt_referrers_pass(&search) : 0;
    if (rc < 0 || search.out_of_memory) {
        mt_referrers_clear(&search);
        return rc < 0 ? NULL : PyErr_NoMemory();
    }
    PyObject *result = PyList_New((Py_ssize_t)search.count);
    if (result == NULL) {
        mt_referrers_clear(&search);
        return NULL;
    }
    for (size_t i = 0; i < search.count; i++) {
        PyList_SET_ITEM(result, (Py_ssize_t)i, search.found[i]); /* the reference moves into the list */
    }
    search.count = 0;
    mt_referrers_clear(&search);
    return result;
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
