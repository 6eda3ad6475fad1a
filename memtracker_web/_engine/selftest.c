/* memtracker_web/_engine/selftest.c: the interpreter's self-test: does this
 * CPython report every destruction (the trashcan's deferred ones included)?
 *
 * Part of the one translation unit memtracker_web/_tracker.c (which includes
 * every unit in order; see there why): not compiled on its own.
 */
/* ---------------- the interpreter's self-test ---------------- */

/* Some CPython releases lose destruction events on a path of their own
 * (3.13.0-3.13.2, refused by version; gh-156371 in early 3.14 releases: an
 * object whose deallocation the trashcan deferred, as in a deep chain of
 * containers, got no DESTROY). Counts of such objects would climb forever. The
 * engine checks the interpreter it runs on instead of a list of versions:
 * once, before it first takes the tracer slot, a thread of its own builds a
 * chain of lists deeper than the trashcan lets a deallocation recurse, and
 * frees it under a counting tracer, which chains whatever tracer was there.
 * Every list created must be seen destroyed. Where the trashcan goes by the
 * stack left (3.14+), the thread's stack is small, so that most of the chain
 * is deferred; where it counts nesting (3.13: at most 10000 levels), the depth
 * is twice that, on a stack that holds it. */
#define MT_SELFTEST_DEPTH 20000
#if MT_TRASHCAN_BY_STACK
#  define MT_SELFTEST_STACK (256 * 1024)
#else
#  define MT_SELFTEST_STACK (16 * 1024 * 1024)
#endif

#if MT_HAVE_TRACER
typedef struct {
    PyRefTracer prev_fn;        /* chained while the test runs */
    void *prev_data;
    PyRefTracer restore_fn;     /* what the slot gets back */
    void *restore_data;
    PyThreadState *ts;          /* the self-test's thread: only its lists are counted */
    Py_ssize_t depth;
    uint64_t created, destroyed;
    uint64_t drop;              /* tests: destruction events to lose on purpose */
    int forget_prior;           /* 3.15+: the tracer found is being replaced: not chained, not given back */
    int completed;              /* the chain was built and freed */
    int threaded;               /* on a thread of its own with MT_SELFTEST_STACK */
    int displaced;              /* another tool took the slot meanwhile: counts incomplete */
} MtSelftest;

#  define MT_SELFTEST_NOT_RUN 0
#  define MT_SELFTEST_PASSED 1
#  define MT_SELFTEST_FAILED (-1)
#  define MT_SELFTEST_RUNNING 2
#  define MT_SELFTEST_INCONCLUSIVE 3

static int mt_selftest_state = MT_SELFTEST_NOT_RUN;
static int mt_selftest_busy = 0;        /* a self-test holds the slot (the GIL may be released) */
/* The running test's state. Its hook reads it here, not from the data CPython
 * passes: a thread of an interpreter with a GIL of its own may read the hook
 * and its data half switched (see mt_hook_watch), and a static never goes away. */
static MtSelftest mt_selftest_live;
static char mt_selftest_reason[512];

static int
mt_selftest_hook(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    MtSelftest *st = &mt_selftest_live;
    if (op == NULL) {
        return 0;       /* 3.15+: replaced (by us, restoring the slot) */
    }
    if (st->prev_fn != NULL) {
        st->prev_fn(op, event, st->prev_data);
    }
    if (Py_IS_TYPE(op, &PyList_Type) && st->ts != NULL && PyThreadState_GetUnchecked() == st->ts) {
        if (event == PyRefTracer_CREATE) {
            st->created++;
        }
        else if (event == PyRefTracer_DESTROY) {
            if (st->drop > 0) {
                st->drop--;
            }
            else {
                st->destroyed++;
            }
        }
    }
    return 0;
}

static void
mt_selftest_body(MtSelftest *st)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *exc = PyErr_GetRaisedException();
    st->ts = PyThreadState_Get();
    PyObject *head = PyList_New(0);
    Py_ssize_t n = 0;
    while (head != NULL && n < st->depth) {
        PyObject *outer = PyList_New(1);
        if (outer == NULL) {
            Py_CLEAR(head);
            break;
        }
        PyList_SET_ITEM(outer, 0, head);
        head = outer;
        n++;
    }
    st->completed = head != NULL;
    Py_XDECREF(head);       /* the whole chain goes here */
    st->ts = NULL;
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    PyGILState_Release(gil);
}

#  if MT_HAVE_PTHREAD
static void *
mt_selftest_thread(void *arg)
{
    mt_selftest_body((MtSelftest *)arg);
    return NULL;
}
#  endif

/* Run the self-test (the GIL held; a safe point). Returns -1 when it could
 * not run (another self-test holds the slot). */
static int
mt_selftest_run(MtSelftest *test)
{
    if (mt_selftest_busy) {
        return -1;
    }
    MtSelftest *st = &mt_selftest_live;
    *st = *test;
    void *data = NULL;
    PyRefTracer prev = PyRefTracer_GetTracer(&data);
    int ours = mt_is_our_hook(prev);        /* a hook of ours left by an earlier install */
    st->prev_fn = ours || st->forget_prior ? NULL : prev;
    st->prev_data = ours || st->forget_prior ? NULL : data;
    st->restore_fn = st->forget_prior ? NULL : prev;
    st->restore_data = st->forget_prior ? NULL : data;
    mt_selftest_busy = 1;
    mt_engine.switching = 1;
    int rc = PyRefTracer_SetTracer(mt_selftest_hook, st);
    mt_engine.switching = 0;
    if (rc < 0) {
        PyErr_Clear();
        mt_selftest_busy = 0;
        *test = *st;
        return 0;
    }
#  if MT_HAVE_PTHREAD
    pthread_attr_t attr;
    int started = 0;
    if (pthread_attr_init(&attr) == 0) {
        if (pthread_attr_setstacksize(&attr, MT_SELFTEST_STACK) == 0) {
            pthread_t thread;
            Py_BEGIN_ALLOW_THREADS
            if (pthread_create(&thread, &attr, mt_selftest_thread, st) == 0) {
                pthread_join(thread, NULL);
                started = 1;
            }
            Py_END_ALLOW_THREADS
        }
        pthread_attr_destroy(&attr);
    }
    st->threaded = started;
    if (!started) {
        mt_selftest_body(st);
    }
#  else
    mt_selftest_body(st);
#  endif
    void *now_data = NULL;
    if (PyRefTracer_GetTracer(&now_data) == mt_selftest_hook && now_data == st) {
        mt_engine.switching = 1;
        PyRefTracer_SetTracer(st->restore_fn, st->restore_data);
        mt_engine.switching = 0;
    }
    else {
        st->displaced = 1;      /* a tool took the slot meanwhile; it keeps it */
    }
    mt_selftest_busy = 0;
    *test = *st;
    return 0;
}

/* The verdict: refuse the engine when destructions were lost. */
static void
mt_selftest_apply(const MtSelftest *st)
{
    /* Inconclusive, and not held against the interpreter: memory ran out, a
     * tool took the slot meanwhile, or (3.14+) no thread with a small stack
     * could be had, so the trashcan may have deferred nothing. */
    if (!st->completed || st->created == 0 || st->displaced || (MT_TRASHCAN_BY_STACK && !st->threaded)) {
        mt_selftest_state = MT_SELFTEST_INCONCLUSIVE;
        return;
    }
    if (st->destroyed == st->created) {
        mt_selftest_state = MT_SELFTEST_PASSED;
        return;
    }
    mt_selftest_state = MT_SELFTEST_FAILED;
    PyOS_snprintf(mt_selftest_reason, sizeof(mt_selftest_reason),
                  "this CPython loses object destruction events: of %llu lists in a chain freed "
                  "through the trashcan, %llu were reported destroyed (CPython gh-156371, in "
                  "early 3.14 releases), so counts would climb forever; upgrade CPython to a "
                  "release with the fix (3.14.10 and 3.15.2 were tested and lose nothing)",
                  (unsigned long long)st->created, (unsigned long long)st->destroyed);
    mt_unavailable_reason = mt_selftest_reason;
}

static const char *
mt_selftest_name(void)
{
    switch (mt_selftest_state) {
    case MT_SELFTEST_PASSED: return "passed";
    case MT_SELFTEST_FAILED: return "failed";
    case MT_SELFTEST_RUNNING: return "running";
    case MT_SELFTEST_INCONCLUSIVE: return "inconclusive";
    default: return "not run";
    }
}
#endif

/* Once per process, before the engine first takes the slot. `may_replace`:
 * whether a tracer of another tool may be swapped out for the test's moment
 * (from 3.15 on that tells it it was removed, so only where we take the slot
 * anyway). A caller that is about to take the slot (`wait`) waits for a test
 * another thread runs; the GIL is released meanwhile, so it must look again
 * at whatever it checked before. */
static void
mt_selftest_if_needed(int may_replace, int wait)
{
#if MT_HAVE_TRACER
    while (wait && mt_selftest_state == MT_SELFTEST_RUNNING) {
        Py_BEGIN_ALLOW_THREADS
#  if MT_HAVE_PTHREAD
        sched_yield();
#  endif
        Py_END_ALLOW_THREADS
    }
    if (mt_selftest_state != MT_SELFTEST_NOT_RUN || mt_unavailable_reason != NULL || mt_engine.installed
        || mt_selftest_busy || Py_IsFinalizing()) {
        return;     /* (at exit a new thread could not take the GIL: no test) */
    }
    void *data = NULL;
    PyRefTracer now = PyRefTracer_GetTracer(&data);
    int foreign = now != NULL && !mt_is_our_hook(now);
    MtSelftest st = {0};
    st.depth = MT_SELFTEST_DEPTH;
#  if MT_TRACER_TOLD_REMOVED
    if (foreign && !may_replace) {
        return;
    }
    /* The tool is told it was removed when the test takes the slot: unless it
     * is one we keep, it is neither called after that nor given the slot back
     * (our install replaces it anyway). */
    st.forget_prior = foreign && !mt_engine_keeps_prior(now, data);
#  endif
    (void)may_replace;
    (void)foreign;
    mt_selftest_state = MT_SELFTEST_RUNNING;
    if (mt_selftest_run(&st) < 0) {
        mt_selftest_state = MT_SELFTEST_NOT_RUN;
        return;
    }
    mt_selftest_apply(&st);
#else
    (void)may_replace;
    (void)wait;
#endif
}
