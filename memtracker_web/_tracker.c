/* memtracker_web._tracker: exact per-type live-object counts from CPython's
 * reference tracer (PyRefTracer, CPython >= 3.13), with optional allocation
 * call trees for chosen types.
 *
 * The hook runs inside every object creation and destruction of the process.
 * It never runs Python code, never creates Python objects, never raises and
 * never touches the error indicator; its tables use raw malloc; a re-entrancy
 * guard protects them. Everything that needs Python (names, callbacks,
 * reference drops) happens later, at "safe points": calls from Python into
 * this module.
 *
 * Which events the hook looks at: a tracked type, its metaclass (so the
 * type's own death is seen) and every type a tracked object's __class__ was
 * set to carry our bit in tp_watched (a type watcher id of ours; an audit hook
 * sees __class__ assignments). The hook tests that bit, passed to it as the
 * tracer's data, and returns: five instructions for an untracked object.
 * Without a watcher id or a working audit hook, a byte filter indexed by the
 * type pointer's bits does the same job, at more cost per event.
 *
 * Watch-all counts every type's net allocations: of every object (a
 * direct-mapped cache lookup per event), or sampled, of the objects whose
 * address hashes below a limit (about one in N: a multiply and a compare per
 * unsampled event; see MT_WATCH_SAMPLED) and every object of a class defined
 * in Python code (MT_WATCH_EXACT_TYPE).
 *
 * Tables (key => value):
 *   mt_engine.bindings:   type pointer => index into mt_engine.binds
 *                      (which running captures track that exact type)
 *   mt_engine.bind_cache: hash of type pointer => (type, index into mt_engine.binds), direct-mapped
 *   mt_engine.plain_types: hash of type pointer => (type, capture, slot), direct-mapped:
 *                      classes one capture tracks, handled inline by the slow path
 *   mt_engine.marks:      types carrying our tp_watched bit (with weak references)
 *   capture.objects:   object address => slot << 20 | leaf
 *                      (slot: the tracked type in that capture; leaf: call-tree node, MT_NO_LEAF = none)
 *   capture.types:     type pointer => slot
 *   capture.cb_seqs:   object address => sequence number of its "new" event (callback types)
 *   tree.children:     (parent, code, lasti) => node index
 *   mt_engine.watch:      type pointer => index into mt_engine.watch_rows (watch-all net counts)
 *   mt_engine.watch_cache: type pointer bits => (type, counts not yet in its row), direct-mapped
 *
 * Where the tracer cannot run (CPython < 3.13, free-threaded builds), the
 * module still compiles and imports; engine_status() says why.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#  include <pthread.h>
#  include <sched.h>
#  define MT_HAVE_PTHREAD 1
#else
#  define MT_HAVE_PTHREAD 0
#endif
#if defined(__GLIBC__) || defined(__APPLE__)
#  include <dlfcn.h>        /* dladdr: which binary a tracer function lives in */
#  define MT_HAVE_DLADDR 1
#else
#  define MT_HAVE_DLADDR 0
#endif

#include "_compat.h"    /* MT_HAVE_TRACER, the frame internals, every version guard */

/* Functions only the hook calls: unused (but kept compiling) without a tracer. */
#if !MT_HAVE_TRACER && defined(__GNUC__)
#  define MT_HOOK_ONLY static __attribute__((unused))
#else
#  define MT_HOOK_ONLY static
#endif

#if defined(__GNUC__)
#  define MT_NOINLINE __attribute__((noinline))
#  define MT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define MT_NOINLINE
#  define MT_UNLIKELY(x) (x)
#endif

#define MT_SLOT_BITS 12
#define MT_LEAF_BITS 20
#define MT_MAX_SLOTS ((1u << MT_SLOT_BITS) - 1)      /* 4095 tracked types per capture */
#define MT_MAX_NODES ((1u << MT_LEAF_BITS) - 1)      /* call-tree nodes per analysed type */
#define MT_NO_LEAF MT_MAX_NODES     /* an object with no call-tree node (unsampled, no Python frame) */
#define MT_MAX_DEPTH 64
#define MT_MAX_RUNNING 64
#define MT_DEFAULT_QUEUE 65536
#define MT_BUSY_HOOK 1      /* inside the slow path */
#define MT_BUSY_PREV 2      /* inside the chained tracer's call */
#define MT_PRIOR_NONE 0     /* the slot was empty */
#define MT_PRIOR_CHAINED 1  /* another tracer was there: called before ours, given back on stop */
#define MT_PRIOR_REPLACED 2 /* another tracer was there: replaced (3.15+, not tracemalloc's) */
#define MT_BIND_CACHE_BITS 6
#define MT_FILTER_SIZE 1024
#define MT_FILTER_INDEX(tp) ((((uintptr_t)(tp)) >> 4) & (MT_FILTER_SIZE - 1))

/* ------------------------------------------------------------------ */
/* PtrMap: uintptr_t => uint32_t, open addressing, linear probing,     */
/* backward-shift deletion (no tombstones). Key 0 marks an empty slot. */
/* Two parallel arrays: 12 bytes a slot, load <= 3/4.                  */
/* ------------------------------------------------------------------ */

typedef struct {
    uintptr_t *keys;
    uint32_t *vals;
    size_t mask;        /* capacity - 1, capacity a power of two; 0 when unallocated */
    size_t used;
    size_t limit;       /* grow before used reaches this: 3/4 of capacity */
    unsigned shift;     /* 64 - log2(capacity) */
} MtPtrMap;

static inline size_t
mt_pm_hash(const MtPtrMap *m, uintptr_t key)
{
    /* Fibonacci hashing. Addresses are multiples of 16, so the multiplier is
     * 2^64 / golden ratio divided by 16: on key = 16 k the product is k times
     * (nearly) 2^64 / golden ratio, as if the alignment bits were shifted out.
     * (Multiplying by 2^64 / golden ratio itself would, in effect, multiply k
     * by 16 / golden ratio: clusters.) */
    return (size_t)(((uint64_t)key * (UINT64_C(0x9E3779B97F4A7C15) >> 4)) >> m->shift);
}

static void
mt_pm_free(MtPtrMap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static int
mt_pm_alloc(MtPtrMap *m, unsigned bits)
{
    size_t cap = (size_t)1 << bits;
    m->keys = (uintptr_t *)calloc(cap, sizeof(uintptr_t));
    m->vals = (uint32_t *)malloc(cap * sizeof(uint32_t));
    if (m->keys == NULL || m->vals == NULL) {
        free(m->keys);
        free(m->vals);
        m->keys = NULL;
        m->vals = NULL;
        m->mask = 0;
        return -1;
    }
    m->mask = cap - 1;
    m->limit = cap / 4 * 3;
    m->shift = 64 - bits;
    m->used = 0;
    return 0;
}

static void
mt_pm_put_fresh(MtPtrMap *m, uintptr_t key, uint32_t val)
{
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
}

static int
mt_pm_grow(MtPtrMap *m)
{
    unsigned bits = m->mask ? (unsigned)(64 - m->shift) + 1 : 6;
    MtPtrMap bigger;
    if (bits > 40 || mt_pm_alloc(&bigger, bits) < 0) {
        return -1;
    }
    if (m->mask) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->keys[i] != 0) {
                mt_pm_put_fresh(&bigger, m->keys[i], m->vals[i]);
            }
        }
    }
    mt_pm_free(m);
    *m = bigger;
    return 0;
}

/* Insert or replace. Returns 1 when a previous value was replaced (stored in
 * *old), 0 for a new key, -1 when memory ran out (nothing stored). One probe
 * sequence finds the key or the empty slot it goes to. */
static inline int
mt_pm_put(MtPtrMap *m, uintptr_t key, uint32_t val, uint32_t *old)
{
    if (m->used >= m->limit) {      /* also true when unallocated */
        if (mt_pm_grow(m) < 0) {
            return -1;
        }
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            if (old) {
                *old = m->vals[i];
            }
            m->vals[i] = val;
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = val;
    m->used++;
    return 0;
}

static inline int
mt_pm_get(const MtPtrMap *m, uintptr_t key, uint32_t *val)
{
    if (m->used == 0) {
        return 0;
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

static void
mt_pm_delete_shift(MtPtrMap *m, size_t i)
{
    /* Backward-shift deletion keeps every probe sequence unbroken. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->keys[j] == 0) {
            break;
        }
        size_t home = mt_pm_hash(m, m->keys[j]);
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        int in_range = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!in_range) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->used--;
}

static inline void
mt_pm_delete_at(MtPtrMap *m, size_t i)
{
    if (m->keys[(i + 1) & m->mask] == 0) {
        m->keys[i] = 0;     /* nothing probed past i: no shifting */
        m->used--;
        return;
    }
    mt_pm_delete_shift(m, i);
}

static inline int
mt_pm_pop(MtPtrMap *m, uintptr_t key, uint32_t *val)
{
    if (m->used == 0) {
        return 0;
    }
    size_t i = mt_pm_hash(m, key);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            if (val) {
                *val = m->vals[i];
            }
            mt_pm_delete_at(m, i);
            return 1;
        }
        i = (i + 1) & m->mask;
    }
    return 0;
}

static size_t
mt_pm_bytes(const MtPtrMap *m)
{
    return m->mask ? (m->mask + 1) * (sizeof(uintptr_t) + sizeof(uint32_t)) : 0;
}

/* ------------------------------------------------------------------ */
/* Call trees                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    PyCodeObject *code;     /* strong reference; NULL for the root */
    int32_t lasti;          /* byte offset of the instruction */
    uint32_t parent;
    uint32_t flags;         /* MT_NODE_TRUNCATED: absorbed pruned or overflowing children */
    uint32_t pad;
    uint64_t total;         /* allocations whose innermost captured frame is this node */
    uint64_t retained;      /* of those, still alive */
} MtNode;

#define MT_NODE_TRUNCATED 1u

typedef struct {
    MtNode *nodes;            /* nodes[0] is the root */
    uint32_t n_nodes, cap_nodes, max_nodes;
    uint32_t *children;     /* (parent, code, lasti) => node; open addressing, 0 = empty */
    uint32_t children_mask;
    int depth;
    uint32_t sample_every, sample_counter;
    uint64_t overflow;          /* allocations attributed to a shorter path: the tree was full */
    uint64_t pruned_nodes;      /* nodes removed by pruning, over the tree's life */
    uint64_t pruned_total;      /* allocations folded into ancestors by pruning */
    uint64_t unattributed;      /* sampled allocations made with no Python frame */
    int wants_prune;
} MtTree;

static inline size_t
mt_tree_child_hash(const MtTree *t, uint32_t parent, PyCodeObject *code, int32_t lasti)
{
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    h ^= (uint64_t)(uint32_t)lasti * UINT64_C(0xC2B2AE3D27D4EB4F);
    h ^= (uint64_t)parent * UINT64_C(0x165667B19E3779F9);
    h ^= h >> 29;
    return (size_t)(h & t->children_mask);
}

static MtTree *
mt_tree_new(int depth, uint32_t sample_every, uint32_t max_nodes)
{
    MtTree *t = (MtTree *)calloc(1, sizeof(MtTree));
    if (t == NULL) {
        return NULL;
    }
    uint32_t want = 64;
    while (want < max_nodes * 2u + 2u && want < (1u << 22)) {
        want <<= 1;
    }
    t->children = (uint32_t *)calloc(want, sizeof(uint32_t));
    t->cap_nodes = 64;
    t->nodes = (MtNode *)calloc(t->cap_nodes, sizeof(MtNode));
    if (t->children == NULL || t->nodes == NULL) {
        free(t->children);
        free(t->nodes);
        free(t);
        return NULL;
    }
    t->children_mask = want - 1;
    t->n_nodes = 1;             /* the root */
    t->max_nodes = max_nodes;
    t->depth = depth;
    t->sample_every = sample_every ? sample_every : 1;
    return t;
}

/* Drop the strong references a tree holds. Safe point only: it may run
 * arbitrary deallocation code. The tree must already be unreachable from
 * the hook. */
static void
mt_tree_free(MtTree *t)
{
    if (t == NULL) {
        return;
    }
    for (uint32_t i = 1; i < t->n_nodes; i++) {
        Py_XDECREF(t->nodes[i].code);
    }
    free(t->nodes);
    free(t->children);
    free(t);
}

static size_t
mt_tree_bytes(const MtTree *t)
{
    return t ? sizeof(MtTree) + (size_t)t->cap_nodes * sizeof(MtNode)
                   + ((size_t)t->children_mask + 1) * sizeof(uint32_t) : 0;
}

/* Find or create the child of `parent` for (code, lasti). Returns 0 when the
 * tree is full or memory ran out. Runs in the hook: no Python calls, only an
 * incref of a code object that the frame already keeps alive. */
MT_HOOK_ONLY uint32_t
mt_tree_child(MtTree *t, uint32_t parent, PyCodeObject *code, int32_t lasti)
{
    size_t i = mt_tree_child_hash(t, parent, code, lasti);
    for (;;) {
        uint32_t n = t->children[i];
        if (n == 0) {
            break;
        }
        MtNode *node = &t->nodes[n];
        if (node->parent == parent && node->code == code && node->lasti == lasti) {
            return n;
        }
        i = (i + 1) & t->children_mask;
    }
    if (t->n_nodes > t->max_nodes) {
        return 0;
    }
    if (t->n_nodes == t->cap_nodes) {
        uint32_t cap = t->cap_nodes * 2;
        MtNode *nodes = (MtNode *)realloc(t->nodes, (size_t)cap * sizeof(MtNode));
        if (nodes == NULL) {
            return 0;
        }
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    uint32_t n = t->n_nodes++;
    MtNode *node = &t->nodes[n];
    memset(node, 0, sizeof(*node));
    Py_INCREF(code);
    node->code = code;
    node->lasti = lasti;
    node->parent = parent;
    t->children[i] = n;
    return n;
}

static void
mt_tree_rebuild_children(MtTree *t)
{
    memset(t->children, 0, ((size_t)t->children_mask + 1) * sizeof(uint32_t));
    for (uint32_t n = 1; n < t->n_nodes; n++) {
        MtNode *node = &t->nodes[n];
        size_t i = mt_tree_child_hash(t, node->parent, node->code, node->lasti);
        while (t->children[i] != 0) {
            i = (i + 1) & t->children_mask;
        }
        t->children[i] = n;
    }
}

/* ------------------------------------------------------------------ */
/* Capture core                                                        */
/* ------------------------------------------------------------------ */

typedef struct {
    PyTypeObject *type;     /* borrowed; NULL once the type died */
    PyObject *weakref;      /* owned weak reference to the type: validity check at safe points */
    PyObject *name;         /* owned str, kept for dead types */
    uint64_t new_count, free_count;
    uint64_t lost;          /* creations not recorded: memory ran out */
    MtTree *tree;             /* call-path analysis, or NULL */
    uint8_t active;         /* tracked now */
    uint8_t callback;       /* events go to the queue */
    uint8_t mutable_type;   /* __class__ can be assigned away from it */
    uint16_t filter_index;  /* MT_FILTER_INDEX of the type and of its metaclass */
    uint16_t meta_index;
} MtSlot;

typedef struct {
    uint32_t slot;
    uint32_t kind;          /* 0 = new, 1 = free */
    uint64_t seq;
    uint32_t leaf;          /* call-tree node of a "new" event, 0 = none */
    uint32_t pad;
} MtEvent;

typedef struct {
    PyObject_HEAD
    MtSlot *slots;
    uint32_t n_slots, cap_slots;
    MtPtrMap types;           /* type pointer => slot */
    MtPtrMap objects;         /* object address => slot << 20 | leaf */
    MtPtrMap cb_seqs;         /* object address => low 32 bits of the "new" event's sequence */
    MtEvent *queue;
    uint32_t q_head, q_len, q_cap;
    uint64_t seq;
    uint64_t dropped_events;
    int running;
    int missed;             /* the tracer was displaced while this capture ran: counts missed events */
    int has_mutable;
    PyObject *weakreflist;
} MtCaptureCore;

/* ------------------------------------------------------------------ */
/* Engine: the one process-wide tracer                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    MtCaptureCore *capture;
    uint32_t slot;
} MtSub;

typedef struct {
    uint32_t first, count;  /* range in mt_engine.subs */
    uint32_t own_class;     /* a heap type and not a metaclass (read when the binds were built) */
} MtBind;

/* Direct-mapped, by a hash of the type pointer: type => index into binds.
 * MT_BIND_COLLIDED: several bound types share the entry, ask mt_engine.bindings. */
typedef struct {
    PyTypeObject *type;     /* NULL: no bound type hashes here */
    uint32_t bind;
} MtBindCache;
#define MT_BIND_COLLIDED ((PyTypeObject *)(uintptr_t)1)

/* Direct-mapped like BindCache: a type that the slow path may hand straight
 * to its one capture (see mt_engine_update_plain). Empty unless the shortcut's
 * conditions hold (marks, one interpreter, no exact watch-all, no
 * reassignment targets, nothing chained). */
typedef struct {
    PyTypeObject *type;
    MtCaptureCore *capture;
    uint32_t slot;
    uint32_t val;           /* its objects' entry: slot << MT_LEAF_BITS | MT_NO_LEAF */
} MtPlainEntry;

static inline size_t
mt_bind_cache_index(PyTypeObject *tp)
{
    return (size_t)(((uint64_t)(uintptr_t)tp * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - MT_BIND_CACHE_BITS));
}

typedef struct {
    PyTypeObject *type;
    uint64_t new_count, free_count;
    uint32_t next_free;     /* free-list link of an unused row (0 ends the list) */
    uint32_t pad;
} MtWatchRow;

/* Direct-mapped cache in front of mt_engine.watch: type pointer => counts not yet
 * added to its row (index: CREATE 0, DESTROY 1). It only ever holds types
 * whose events need nothing else (see mt_watch_cacheable), so a hit is one add. */
typedef struct {
    PyTypeObject *type;
    uint64_t count[2];
} MtWatchCache;

/* Sampled watch-all counts an object when a multiplicative hash of its
 * address falls below a limit. An object keeps its address for life, so its
 * creation and its destruction are both counted or both not, and the sampled
 * net count of a type times the rate estimates its net allocations. The
 * hash mixes the low 32 bits of the address: objects of one size class sit
 * at a fixed stride, and a plain mask of address bits would never pick some
 * strides at all. */
#define MT_WATCH_HASH_MULT 0x9E3779B1u
#define MT_WATCH_SAMPLED(op, limit) \
    ((uint32_t)((uint32_t)(uintptr_t)(op) * MT_WATCH_HASH_MULT) < (limit))

/* Sampled watch-all counts every object of a class defined in Python code
 * (a mutable heap type): such objects are few beside the built-ins', and the
 * class is what names a leak, so its count must not wait for sampling noise
 * to average out. A type's flags do not change after it is made, so an
 * object's creation and its death are counted alike. */
#define MT_WATCH_EXACT_TYPE(tp) \
    (((tp)->tp_flags & (Py_TPFLAGS_HEAPTYPE | Py_TPFLAGS_IMMUTABLETYPE)) == Py_TPFLAGS_HEAPTYPE)
#define MT_WATCH_COUNTED(op, tp, limit) (MT_WATCH_SAMPLED(op, limit) || MT_WATCH_EXACT_TYPE(tp))

/* A type with a finaliser (a class with __del__; generators, coroutines and
 * async generators, which asyncio's hooks keep alive to close): its objects
 * can be resurrected, and CPython then reports their death again later with
 * no creation in between. Its events skip watch-all's cache so that each
 * passes mt_watch_first_death. */
#define MT_WATCH_FINALIZABLE(tp) ((tp)->tp_finalize != NULL)
/* addresses kept for them before the table starts over (16 bytes each at most) */
#define MT_WATCH_DYING_MAX (1u << 16)

/* A type whose tp_watched carries our bit: its objects' events take the slow
 * path. The weak reference tells, at safe points, whether the pointer is still
 * a live type (one may die while our tracer was displaced). */
typedef struct {
    PyTypeObject *type;     /* NULL once its death was seen */
    PyObject *weakref;
} MtMark;

#if MT_HAVE_TRACER
/* Which function the tracer slot gets (mt_engine_select_hook). */
typedef int (*MtHook)(PyObject *, PyRefTracerEvent, void *);
#endif

static struct {
    int installed;
    int displaced;          /* someone replaced our tracer while captures ran */
    int busy;               /* re-entrancy guard: MT_BUSY_HOOK | MT_BUSY_PREV */
    int switching;          /* we are replacing our own hook (3.15 tells the old one) */
#if MT_HAVE_TRACER
    PyRefTracer prev_fn;    /* a tracer found in the slot and kept: chained, given back on stop */
    void *prev_data;
    int prior;              /* MT_PRIOR_*: what became of the tracer found at the last install */
    MtHook inner;           /* our hook for the current mode (called by mt_hook_chained) */
    void *inner_data;
#endif
    PyInterpreterState *interp;     /* events of other interpreters are ignored */
    MtCaptureCore *running[MT_MAX_RUNNING];
    int n_running;
    int any_mutable;        /* a running capture tracks a mutable (heap) type */
    /* Type marks (the default): a bit of tp_watched, ours through a type
     * watcher id, sends a type's events to the slow path. __class__
     * reassignment is seen by an audit hook, which marks the target type. */
    int precise;            /* marks in use; else the byte filter below */
    int precise_setup;      /* 0 not tried yet, 1 available, -1 unavailable */
    int precise_off;        /* tests: use the byte filter */
    int watcher_id;
    unsigned mark_bit;      /* 1 << watcher_id */
    int audit_seen;         /* our audit hook saw its probe event */
    MtMark *marks;            /* types carrying our bit */
    uint32_t n_marks, cap_marks;
    MtMark *retargets;        /* types a tracked object's __class__ was set to */
    uint32_t n_retargets, cap_retargets;
    /* The byte filter (when marks are unavailable): 1 = maybe tracked, or a
     * tracked type's metaclass. Costs an index computation per event, and a
     * tracked mutable type sends every mutable destruction to the slow path. */
    uint8_t filter[MT_FILTER_SIZE];
    MtPtrMap bindings;        /* type pointer => index into binds */
    MtBindCache bind_cache[1u << MT_BIND_CACHE_BITS];     /* in front of bindings */
    MtPlainEntry plain_types[1u << MT_BIND_CACHE_BITS];
    MtBind *binds;
    MtSub *subs;
    /* watch-all */
    int watch_on;
    MtPtrMap watch;           /* type pointer => index into watch_rows */
    MtWatchRow *watch_rows;
    uint32_t watch_n, watch_cap, watch_free_head;
    uint64_t watch_lost;
    MtPtrMap watch_dying;     /* addresses of objects whose finaliser ran at their death: see mt_watch_first_death */
    uint64_t watch_resurrected, watch_dying_resets;
    uint32_t watch_sample;  /* 1: every object counted; N: about one object in N (see MT_WATCH_SAMPLED) */
    uint32_t watch_limit;   /* an object is sampled when its address hash is below this */
    int watch_stale;        /* displaced while watching: type pointers may dangle */
    MtWatchCache watch_cache[MT_FILTER_SIZE];
    int multi_interp;       /* another interpreter exists (refreshed at safe points) */
    /* callbacks */
    PyObject *pending_callable;     /* called by the pending call: drains queues */
    int pending_scheduled;
} mt_engine;

static const char *mt_unavailable_reason = NULL;
static PyObject *mt_EngineUnavailable = NULL;

/* ---------------- hook helpers (no Python calls) ---------------- */

static void
mt_queue_push(MtCaptureCore *c, uint32_t slot, uint32_t kind, uint64_t seq, uint32_t leaf);
static int mt_run_pending(void *arg);

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
    uint32_t leaf = MT_NO_LEAF;
#if MT_HAVE_TRACER
    MtTree *t = slot->tree;
    if (t != NULL) {
        if (t->sample_counter++ % t->sample_every == 0) {
            leaf = mt_capture_stack(t);
            if (leaf != MT_NO_LEAF) {
                t->nodes[leaf].total++;
                t->nodes[leaf].retained++;
            }
            else {
                t->unattributed++;      /* no Python frame on this thread */
            }
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

/* The common case of mt_capture_on_create, inline and without a call: a
 * count-only slot (no call tree, no callback) and a table with room. Returns
 * 0, having changed nothing, for anything else (a stale entry at this address
 * included): the caller then takes the full path. */
static inline int
mt_capture_on_create_plain(MtCaptureCore *c, uint32_t s, uint32_t val, PyObject *op)
{
    MtSlot *slot = &c->slots[s];
    MtPtrMap *m = &c->objects;
    if (slot->tree != NULL || slot->callback || m->used >= m->limit) {
        return 0;
    }
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

/* Whether a type's events may be counted in the watch cache alone: not when
 * the slow path must see them too (tracked or marked types, and metatypes,
 * whose instances' deaths must be seen). Under sampled watch-all with marks,
 * a marked type may hold an entry: its events reach the cache only through
 * mt_hook_slow_sampled, which goes on to the capture. */
MT_HOOK_ONLY int
mt_watch_cacheable(PyTypeObject *tp)
{
    if (PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS) || MT_WATCH_FINALIZABLE(tp)) {
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

static void
mt_watch_cache_flush_all(int clear)
{
    for (size_t i = 0; i < MT_FILTER_SIZE; i++) {
        mt_watch_cache_flush(&mt_engine.watch_cache[i], clear);
    }
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
            /* give the row back */
            mt_engine.watch_rows[row].type = NULL;
            mt_engine.watch_rows[row].next_free = mt_engine.watch_free_head;
            mt_engine.watch_free_head = row;
            mt_engine.watch_lost++;
            return;
        }
        mt_engine.watch_rows[row].type = tp;
        mt_engine.watch_rows[row].new_count = 0;
        mt_engine.watch_rows[row].free_count = 0;
    }
    if (is_free) {
        mt_engine.watch_rows[row].free_count++;
    }
    else {
        mt_engine.watch_rows[row].new_count++;
    }
    if (mt_watch_cacheable(tp)) {
        MtWatchCache *entry = &mt_engine.watch_cache[MT_FILTER_INDEX(tp)];
        mt_watch_cache_flush(entry, 0);
        entry->type = tp;
    }
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

static void
mt_watch_forget(PyTypeObject *tp)
{
    uint32_t row;
    MtWatchCache *entry = &mt_engine.watch_cache[MT_FILTER_INDEX(tp)];
    if (entry->type == tp) {
        entry->type = NULL;
        entry->count[0] = entry->count[1] = 0;
    }
    if (mt_pm_pop(&mt_engine.watch, (uintptr_t)tp, &row)) {
        mt_engine.watch_rows[row].type = NULL;
        mt_engine.watch_rows[row].next_free = mt_engine.watch_free_head;
        mt_engine.watch_free_head = row;
    }
}

static void mt_engine_rebuild_bindings(void);

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
        if (mt_engine.precise ? mt_engine.n_retargets > 0
                      : mt_engine.any_mutable && (!PyType_HasFeature(tp, Py_TPFLAGS_IMMUTABLETYPE)
                                          || tp == &PyModule_Type)) {
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
    if (plain->type == tp
        && (event == PyRefTracer_CREATE
            ? mt_capture_on_create_plain(plain->capture, plain->slot, plain->val, op)
            : mt_capture_on_destroy_plain(plain->capture, plain->slot, plain->val, op))) {
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
         * path, which counts it (and caches the type). */
        MtWatchCache *entry = &mt_engine.watch_cache[MT_FILTER_INDEX(tp)];
        MtPlainEntry *plain = &mt_engine.plain_types[mt_bind_cache_index(tp)];
        if (entry->type == tp && plain->type == tp
            && (event == PyRefTracer_CREATE
                ? mt_capture_on_create_plain(plain->capture, plain->slot, plain->val, op)
                : mt_capture_on_destroy_plain(plain->capture, plain->slot, plain->val, op))) {
            entry->count[(unsigned)event]++;
            return 0;
        }
        return mt_hook_full(op, event);
    }
    return mt_hook_slow(op, event);
}

static void mt_engine_mark_displaced(void);

/* 3.15 tells a replaced tracer it was removed: a NULL object (with the event
 * PyRefTracer_TRACKER_REMOVED, which is never sent with an object, so the one
 * test of the object serves). Before 3.15 CPython never passes NULL: the test
 * would cost every event. */
#if MT_TRACER_TOLD_REMOVED
#  define MT_HOOK_REMOVED_GUARD(op, event)                                   \
    if (MT_UNLIKELY((op) == NULL)) {                                        \
        if (!mt_engine.switching) {                                                 \
            mt_engine_mark_displaced();                                        \
        }                                                                   \
        return 0;                                                           \
    }
#else
#  define MT_HOOK_REMOVED_GUARD(op, event)
#endif

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
_Static_assert(PyRefTracer_CREATE == 0 && PyRefTracer_DESTROY == 1,
               "the watch cache indexes its counts by event");

/* A counted event: one add in the cache when its type is there, else the
 * full slow path, which counts it and may cache the type. (Under watch-all
 * the slow path's shortcut table is empty, or skipped for counted objects.) */
static inline int
mt_watch_cached_event(PyObject *op, PyRefTracerEvent event, MtWatchCache *cache)
{
    uintptr_t tp = (uintptr_t)Py_TYPE(op);
    MtWatchCache *entry = &cache[(tp >> 4) & (MT_FILTER_SIZE - 1)];
    if ((uintptr_t)entry->type == tp && !mt_engine.busy) {
        entry->count[(unsigned)event]++;
        return 0;
    }
    return mt_hook_full(op, event);
}

static int
mt_hook_watch(PyObject *op, PyRefTracerEvent event, void *data)
{
    MT_HOOK_REMOVED_GUARD(op, event)
    return mt_watch_cached_event(op, event, (MtWatchCache *)data);
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
#if MT_TRACER_TOLD_REMOVED
        /* we are being replaced; the chained tracer was told so already when
         * we took the slot, and is not told twice */
        if (!mt_engine.switching) {
            mt_engine_mark_displaced();
        }
#endif
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
static const struct { MtHook fn; const char *name; } mt_hooks[] = {
    {mt_hook, "marks"}, {mt_hook_filtered, "byte-filter"}, {mt_hook_watch, "watch"},
    {mt_hook_watch_checked, "watch-checked"}, {mt_hook_sampled, "sampled"},
    {mt_hook_sampled_unmarked, "sampled-unmarked"}, {mt_hook_sampled_filtered, "sampled-byte-filter"},
    {mt_hook_sampled_checked, "sampled-checked"},
};

static int mt_selftest_hook(PyObject *op, PyRefTracerEvent event, void *data);

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

/* ---------------- engine management (safe points) ---------------- */

/* Rebuild the type => subscribers map from the running captures. Built
 * aside and swapped in, so a re-entrant hook never sees half a table. */
static void mt_engine_rebuild_filter(void);

static void mt_engine_validate_slots(void);

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
            binds[b].own_class = (slot->type->tp_flags & (Py_TPFLAGS_HEAPTYPE | Py_TPFLAGS_TYPE_SUBCLASS))
                                 == Py_TPFLAGS_HEAPTYPE;
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

static void mt_engine_precise_failed(void);
static void mt_engine_rebuild_filter(void);
static void mt_engine_select_hook(void);

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
    /* (sampled watch-all: the sampled objects' events skip the shortcut) */
    int plain = mt_engine.precise && (!mt_engine.watch_on || mt_engine.watch_sample > 1) && mt_engine.n_retargets == 0 && !mt_engine.multi_interp;
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
        int eligible = bind->count == 1 && bind->own_class;
        if (entry->type != NULL || !eligible) {
            entry->type = entry->type != NULL ? MT_BIND_COLLIDED : entry->type;
            continue;
        }
        entry->type = tp;
        entry->capture = mt_engine.subs[bind->first].capture;
        entry->slot = mt_engine.subs[bind->first].slot;
        entry->val = (entry->slot << MT_LEAF_BITS) | MT_NO_LEAF;
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

#define MT_SELFTEST_NOT_RUN 0
#define MT_SELFTEST_PASSED 1
#define MT_SELFTEST_FAILED (-1)
#define MT_SELFTEST_RUNNING 2
#define MT_SELFTEST_INCONCLUSIVE 3

static int mt_selftest_state = MT_SELFTEST_NOT_RUN;
static int mt_selftest_busy = 0;        /* a self-test holds the slot (the GIL may be released) */
static char mt_selftest_reason[512];

static int mt_engine_keeps_prior(PyRefTracer prev, void *data);

static int
mt_selftest_hook(PyObject *op, PyRefTracerEvent event, void *data)
{
    MtSelftest *st = (MtSelftest *)data;
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

#if MT_HAVE_PTHREAD
static void *
mt_selftest_thread(void *arg)
{
    mt_selftest_body((MtSelftest *)arg);
    return NULL;
}
#endif

/* Run the self-test (the GIL held; a safe point). Returns -1 when it could
 * not run (another self-test holds the slot). */
static int
mt_selftest_run(MtSelftest *st)
{
    if (mt_selftest_busy) {
        return -1;
    }
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
        return 0;
    }
#if MT_HAVE_PTHREAD
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
#else
    mt_selftest_body(st);
#endif
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
    if (mt_selftest_state != MT_SELFTEST_NOT_RUN || mt_unavailable_reason != NULL
        || mt_engine.installed || mt_selftest_busy || Py_IsFinalizing()) {
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

static int mt_slot_type_alive(MtSlot *slot);
static void mt_capture_purge_objects(MtCaptureCore *c, int64_t slot, int clear_leaf_only);
static void mt_engine_refresh_interps(void);

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
#if MT_TRACER_TOLD_REMOVED
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
#endif

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
#if MT_TRACER_TOLD_REMOVED
    /* tracemalloc's tracer is not exported: it is the one installed with no
     * data, from inside the interpreter's own binary, while tracemalloc traces
     * (another tool may have replaced it, leaving is_tracing() true). */
    if (data != NULL || !mt_tracemalloc_is_tracing()) {
        return 0;
    }
#  if MT_HAVE_DLADDR
    Dl_info found, api;
    if (!dladdr((void *)(uintptr_t)prev, &found) || !dladdr((void *)(uintptr_t)PyRefTracer_SetTracer, &api)
        || found.dli_fbase != api.dli_fbase) {
        return 0;
    }
#  endif
    return 1;
#else
    (void)data;
    return 1;
#endif
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
        if (mt_engine_set_tracer(keep ? mt_hook_chained : mt_engine.inner,
                                 keep ? NULL : mt_engine.inner_data) < 0) {
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

/* ------------------------------------------------------------------ */
/* CaptureCore methods                                                 */
/* ------------------------------------------------------------------ */

static PyTypeObject MtCaptureCoreType;

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

static PyObject *mt_str_module, *mt_str_qualname, *mt_str_co_qualname, *mt_str_subclasses;

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
    static char *kwlist[] = {"type", "callback", NULL};
    PyObject *tp;
    int callback = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:track", kwlist, &tp, &callback)) {
        return NULL;
    }
    if (!PyType_Check(tp)) {
        PyErr_Format(PyExc_TypeError, "track() needs a class, got %.100s object", Py_TYPE(tp)->tp_name);
        return NULL;
    }
    int64_t found = mt_capture_find(c, (PyTypeObject *)tp);
    if (found >= 0) {
        MtSlot *slot = &c->slots[found];
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
        free(inc_ret); free(inc_tot); free(remap); free(order);
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
            while (j >= gap && (inc_ret[order[j - gap]] < inc_ret[v]
                   || (inc_ret[order[j - gap]] == inc_ret[v] && inc_tot[order[j - gap]] < inc_tot[v]))) {
                order[j] = order[j - gap];
                j -= gap;
            }
            order[j] = v;
        }
    }
    uint8_t *keep = (uint8_t *)calloc(n, 1);
    if (keep == NULL) {
        free(inc_ret); free(inc_tot); free(remap); free(order);
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
        free(inc_ret); free(inc_tot); free(remap); free(order); free(keep);
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
    free(inc_ret); free(inc_tot); free(remap); free(order); free(keep);
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
    static char *kwlist[] = {"type", "depth", "sample_every", "max_nodes", NULL};
    PyObject *tp;
    int depth = 10;
    unsigned long sample_every = 1, max_nodes = 10000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|ikk:analyse", kwlist, &tp, &depth, &sample_every, &max_nodes)) {
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
    int64_t s = mt_capture_find(c, (PyTypeObject *)tp);
    if (s < 0) {
        PyErr_SetString(PyExc_KeyError, "type is not tracked by this capture");
        return NULL;
    }
    MtSlot *slot = &c->slots[s];
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
    slot->tree = t;
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
    return Py_BuildValue("(KKK)", (unsigned long long)slot->new_count,
                         (unsigned long long)slot->free_count, (unsigned long long)slot->lost);
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
        PyObject *item = Py_BuildValue("(OKKKO)", (PyObject *)slot->type,
                                       (unsigned long long)slot->new_count,
                                       (unsigned long long)slot->free_count,
                                       (unsigned long long)slot->lost,
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

static void
mt_release_codes(PyCodeObject **codes, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        Py_XDECREF(codes[k]);
    }
    free(codes);
}

/* The tree as a list of (parent, filename, lineno, function, total, retained, truncated).
 * Nodes are copied (with their code objects held) before any Python object is
 * built: building allocates, and allocations of this very type grow the tree. */
static PyObject *
MtCaptureCore_tree(MtCaptureCore *c, PyObject *tp)
{
    int64_t s = mt_slot_arg(c, tp, "tree");
    if (s == -2) {
        return NULL;
    }
    if (s < 0 || c->slots[s].tree == NULL) {
        Py_RETURN_NONE;
    }
    PyCodeObject **drop;
    uint32_t n_drop;
    mt_capture_prune_tree(c, (uint32_t)s, &drop, &n_drop);
    MtTree *t = c->slots[s].tree;
    uint32_t n = t->n_nodes;
    MtNode *copy = (MtNode *)malloc((size_t)n * sizeof(MtNode));
    if (copy == NULL) {
        mt_release_codes(drop, n_drop);
        return PyErr_NoMemory();
    }
    memcpy(copy, t->nodes, (size_t)n * sizeof(MtNode));
    for (uint32_t i = 1; i < n; i++) {
        Py_INCREF(copy[i].code);
    }
    PyObject *meta = Py_BuildValue("{s:i,s:k,s:k,s:K,s:K,s:K,s:K}",
                                   "depth", t->depth, "sample_every", (unsigned long)t->sample_every,
                                   "max_nodes", (unsigned long)t->max_nodes,
                                   "overflow", (unsigned long long)t->overflow,
                                   "pruned_nodes", (unsigned long long)t->pruned_nodes,
                                   "pruned_allocations", (unsigned long long)t->pruned_total,
                                   "unattributed", (unsigned long long)t->unattributed);
    PyObject *nodes = meta ? PyList_New(n) : NULL;
    for (uint32_t i = 0; nodes != NULL && i < n; i++) {
        MtNode *node = &copy[i];
        PyObject *item = NULL;
        PyObject *truncated = (node->flags & MT_NODE_TRUNCATED) ? Py_True : Py_False;
        if (i == 0) {
            item = Py_BuildValue("(isisKKO)", -1, "", 0, "", (unsigned long long)node->total,
                                 (unsigned long long)node->retained, truncated);
        }
        else {
            PyObject *frame = mt_resolve_frame(node->code, node->lasti);
            if (frame != NULL) {
                item = Py_BuildValue("(IOOOKKO)", node->parent, PyTuple_GET_ITEM(frame, 0),
                                     PyTuple_GET_ITEM(frame, 1), PyTuple_GET_ITEM(frame, 2),
                                     (unsigned long long)node->total,
                                     (unsigned long long)node->retained, truncated);
                Py_DECREF(frame);
            }
        }
        if (item == NULL) {
            Py_CLEAR(nodes);
            break;
        }
        PyList_SET_ITEM(nodes, i, item);
    }
    for (uint32_t i = 1; i < n; i++) {
        Py_DECREF(copy[i].code);
    }
    free(copy);
    mt_release_codes(drop, n_drop);
    if (nodes == NULL) {
        Py_XDECREF(meta);
        return NULL;
    }
    PyObject *res = PyTuple_Pack(2, nodes, meta);
    Py_DECREF(nodes);
    Py_DECREF(meta);
    return res;
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
    if (s < 0 || c->slots[s].tree == NULL || leaf == 0 || leaf == MT_NO_LEAF
            || leaf >= c->slots[s].tree->n_nodes) {
        Py_RETURN_NONE;     /* no frames recorded (the root holds allocations of a full tree) */
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
                   + (c->queue ? (size_t)c->q_cap * sizeof(MtEvent) : 0)
                   + (size_t)c->cap_slots * sizeof(MtSlot);
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
}

static PyObject *
MtCaptureCore_get_running(MtCaptureCore *c, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(c->running);
}

/* Up to n live objects of one tracked type, spread evenly over its table
 * entries: new references, for estimates of what the type holds (their sizes).
 * Only while the capture runs and saw every event: otherwise an entry may name
 * an object that died unseen, and its address must not be followed. */
#define MT_SAMPLE_MAX 10000
static PyObject *
MtCaptureCore_sample(MtCaptureCore *c, PyObject *args)
{
    PyObject *tp;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:sample", &tp, &n)) {
        return NULL;
    }
    if (n < 0 || n > MT_SAMPLE_MAX) {
        PyErr_Format(PyExc_ValueError, "sample size must be from 0 to %d, got %zd", MT_SAMPLE_MAX, n);
        return NULL;
    }
    int64_t s = mt_slot_arg(c, tp, "sample");
    if (s == -2) {
        return NULL;
    }
    mt_engine_check_displaced();
    if (s >= 0 && (!c->running || c->missed)) {
        PyErr_SetString(PyExc_RuntimeError, c->missed
                        ? "the capture missed events (another tool took the tracer): its objects cannot be sampled"
                        : "the capture is stopped: its objects cannot be sampled");
        return NULL;
    }
    MtPtrMap *m = &c->objects;
    if (s < 0 || n == 0 || m->used == 0 || c->slots[s].type == NULL) {
        return PyList_New(0);
    }
    MtSlot *slot = &c->slots[s];
    uint64_t live = slot->new_count > slot->free_count ? slot->new_count - slot->free_count : 0;
    if (live == 0) {
        return PyList_New(0);   /* no scan of the table for a type with nothing alive */
    }
    uint64_t step = live > (uint64_t)n ? live / (uint64_t)n : 1;
    if ((uint64_t)n > live) {
        n = (Py_ssize_t)live;   /* no more can be found: room for what there is */
    }
    PyObject **picked = PyMem_Malloc((size_t)n * sizeof(PyObject *));
    if (picked == NULL) {
        return PyErr_NoMemory();
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
    /* Held before anything allocates: the list's allocation may collect garbage. */
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_INCREF(picked[j]);
    }
    PyObject *list = PyList_New(k);
    if (list == NULL) {
        for (Py_ssize_t j = 0; j < k; j++) {
            Py_DECREF(picked[j]);
        }
        PyMem_Free(picked);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyList_SET_ITEM(list, j, picked[j]);
    }
    PyMem_Free(picked);
    return list;
}

static PyMethodDef CaptureCore_methods[] = {
    {"track", (PyCFunction)(void (*)(void))MtCaptureCore_track, METH_VARARGS | METH_KEYWORDS,
     "track(type, callback=False) -> slot: count objects of exactly this type."},
    {"untrack", (PyCFunction)MtCaptureCore_untrack, METH_O, "untrack(type) -> bool"},
    {"analyse", (PyCFunction)(void (*)(void))MtCaptureCore_analyse, METH_VARARGS | METH_KEYWORDS,
     "analyse(type, depth=10, sample_every=1, max_nodes=10000): record allocation call paths."},
    {"unanalyse", (PyCFunction)MtCaptureCore_unanalyse, METH_O, "unanalyse(type) -> bool: drop the call tree."},
    {"start", (PyCFunction)MtCaptureCore_start, METH_NOARGS, "start(): begin a new counting period."},
    {"stop", (PyCFunction)MtCaptureCore_stop, METH_NOARGS, "stop(): freeze counts."},
    {"clear", (PyCFunction)MtCaptureCore_clear, METH_NOARGS, "clear(): zero the counts of a stopped capture."},
    {"counts", (PyCFunction)MtCaptureCore_counts, METH_O, "counts(type) -> (new, free, lost) or None"},
    {"live", (PyCFunction)MtCaptureCore_live, METH_O, "live(type) -> int (0 when not tracked)"},
    {"items", (PyCFunction)MtCaptureCore_items, METH_NOARGS, "items() -> [(type, new, free, lost, analysing)]"},
    {"slot_of", (PyCFunction)MtCaptureCore_slot_of, METH_O, "slot_of(type) -> int or None"},
    {"drain", (PyCFunction)MtCaptureCore_drain, METH_NOARGS, "drain() -> [(slot, kind, seq, leaf)]"},
    {"pending", (PyCFunction)MtCaptureCore_pending, METH_NOARGS, "pending() -> queued events"},
    {"tree", (PyCFunction)MtCaptureCore_tree, METH_O, "tree(type) -> (nodes, meta) or None"},
    {"path_of", (PyCFunction)MtCaptureCore_path_of, METH_VARARGS, "path_of(type, leaf) -> [(filename, lineno, function)]"},
    {"statistics", (PyCFunction)MtCaptureCore_statistics, METH_NOARGS, "statistics() -> dict of table sizes and bytes"},
    {"sample", (PyCFunction)MtCaptureCore_sample, METH_VARARGS,
     "sample(type, n) -> up to n live objects of a tracked type, spread over its table (running captures only)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *
MtCaptureCore_get_missed(MtCaptureCore *c, void *Py_UNUSED(closure))
{
    mt_engine_check_displaced();
    return PyBool_FromLong(c->missed);
}

static PyGetSetDef CaptureCore_getset[] = {
    {"running", (getter)MtCaptureCore_get_running, NULL, "True while counting.", NULL},
    {"missed_events", (getter)MtCaptureCore_get_missed, NULL,
     "True when the tracer was displaced while this capture ran (counts are incomplete).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MtCaptureCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "memtracker_web._tracker.CaptureCore",
    .tp_basicsize = sizeof(MtCaptureCore),
    .tp_dealloc = (destructor)MtCaptureCore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One capture's tracked types, per-object table and counts (see memtracker_web.Capture).",
    .tp_methods = CaptureCore_methods,
    .tp_getset = CaptureCore_getset,
    .tp_new = MtCaptureCore_new,
    .tp_weaklistoffset = offsetof(MtCaptureCore, weakreflist),
};

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
        return Py_BuildValue("{s:O,s:s,s:O,s:O,s:i,s:O,s:s}",
                             "available", Py_False, "reason", mt_subinterp_reason,
                             "installed", Py_False, "displaced", Py_False, "running_captures", 0,
                             "watching", Py_False, "filter", "none");
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
    prior = mt_engine.prior == MT_PRIOR_CHAINED ? "chained"
            : mt_engine.prior == MT_PRIOR_REPLACED ? "replaced" : "none";
    selftest = mt_selftest_name();
#endif
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
    mt_pm_free(&mt_engine.watch);
    mt_pm_free(&mt_engine.watch_dying);
    memset(mt_engine.watch_cache, 0, sizeof(mt_engine.watch_cache));
    mt_engine.watch_n = 0;
    mt_engine.watch_free_head = 0;
    mt_engine_uninstall_if_idle();
    Py_RETURN_NONE;
}

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

/* [(type, new, free)] for every type seen since watch_start(). Type
 * pointers are only trusted while our tracer saw every type destruction;
 * a tool that replaced our tracer and later put it back cannot be noticed,
 * so rows are also checked against the classes alive now. */
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
    /* Rows are copied before the result list is built: building it
     * allocates, and those events move counts and may grow the rows. */
    mt_engine_refresh_interps();
    MtPtrMap live = {0};
    if (mt_collect_live_types(&live) < 0) {
        mt_pm_free(&live);
        return NULL;
    }
    mt_watch_cache_flush_all(0);
    for (size_t i = 0; i < MT_FILTER_SIZE; i++) {
        /* a __del__ added to a class after it was cached: its events take the
         * slow path from now on (see MT_WATCH_FINALIZABLE) */
        PyTypeObject *tp = mt_engine.watch_cache[i].type;
        uint32_t alive;
        if (tp != NULL && mt_pm_get(&live, (uintptr_t)tp, &alive) && MT_WATCH_FINALIZABLE(tp)) {
            mt_engine.watch_cache[i].type = NULL;       /* (only live types are read) */
        }
    }
    uint32_t n = mt_engine.watch_n;
    MtWatchRow *rows = (MtWatchRow *)malloc((size_t)(n ? n : 1) * sizeof(MtWatchRow));
    if (rows == NULL) {
        mt_pm_free(&live);
        return PyErr_NoMemory();
    }
    uint32_t m = 0, seen;
    for (uint32_t i = 1; i < n; i++) {
        PyTypeObject *tp = mt_engine.watch_rows[i].type;
        if (tp == NULL) {
            continue;
        }
        if (!mt_pm_get(&live, (uintptr_t)tp, &seen)) {
            mt_watch_forget(tp);           /* died unseen: never dereference it */
            continue;
        }
        rows[m] = mt_engine.watch_rows[i];
        Py_INCREF(rows[m].type);        /* keep alive while we build */
        m++;
    }
    mt_pm_free(&live);
    PyObject *list = PyList_New(0);
    for (uint32_t i = 0; i < m; i++) {
        if (list != NULL) {
            PyObject *item = Py_BuildValue("(OKK)", (PyObject *)rows[i].type,
                                           (unsigned long long)rows[i].new_count,
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
    return Py_BuildValue("{s:n,s:n,s:K,s:K,s:K,s:I}",
                         "types", (Py_ssize_t)mt_engine.watch.used,
                         "bytes", (Py_ssize_t)(mt_pm_bytes(&mt_engine.watch) + mt_pm_bytes(&mt_engine.watch_dying)
                                               + (size_t)mt_engine.watch_cap * sizeof(MtWatchRow)),
                         "lost", (unsigned long long)mt_engine.watch_lost,
                         "resurrected", (unsigned long long)mt_engine.watch_resurrected,
                         "dying_resets", (unsigned long long)mt_engine.watch_dying_resets,
                         "sample", (unsigned)(mt_engine.watch_on ? mt_engine.watch_sample : 0));
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
    return Py_BuildValue("{s:K,s:K,s:K,s:O}", "events", (unsigned long long)mt_probe.events,
                         "removed", (unsigned long long)mt_probe.removed,
                         "after_removed", (unsigned long long)mt_probe.after_removed,
                         "installed", PyRefTracer_GetTracer(&data) == mt_probe_hook ? Py_True : Py_False);
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
    (void)op; (void)event; (void)data;
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
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nKp:_destruction_selftest", kwlist,
                                     &depth, &drop, &apply)) {
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
    return Py_BuildValue("{s:K,s:K,s:O,s:O,s:O}",
                         "created", (unsigned long long)st.created,
                         "destroyed", (unsigned long long)st.destroyed,
                         "completed", st.completed ? Py_True : Py_False,
                         "threaded", st.threaded ? Py_True : Py_False,
                         "displaced", st.displaced ? Py_True : Py_False);
#else
    (void)depth; (void)drop; (void)apply;
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

static PyMethodDef mt_methods[] = {
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
#  if defined(Py_GIL_DISABLED)
    mt_unavailable_reason = "free-threaded CPython builds are not supported yet: the tracer's tables "
                            "rely on the GIL; use a default (GIL) build of CPython 3.13.3 or newer";
#  else
    mt_unavailable_reason = "this CPython has no reference tracer (PyRefTracer arrived in 3.13); "
                            "use CPython 3.13.3 or newer";
#  endif
#else
    /* Runtime version: 3.13.0-3.13.2 lose destruction events. */
    if (Py_Version < 0x030D03F0 && (Py_Version & 0xFFFF0000) == 0x030D0000) {
        mt_unavailable_reason = "CPython 3.13.0-3.13.2 lose object destruction events "
                                "(gh-130382, gh-125703, gh-126076); use 3.13.3 or newer";
    }
    else if (Py_Version < 0x030D0000) {
        mt_unavailable_reason = "this CPython has no reference tracer; use CPython 3.13.3 or newer";
    }
#endif
}

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
        "The exact engine (CPython's reference tracer) cannot run on this interpreter.",
        PyExc_RuntimeError, NULL);
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
        || PyModule_AddIntConstant(m, "MAX_NODES", MT_MAX_NODES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
