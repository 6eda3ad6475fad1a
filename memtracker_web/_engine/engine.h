/* memtracker_web/_engine/engine.h: what the engine's units share: limits, the
 * capture's and the engine's data structures, the one engine state
 * (mt_engine), and the functions one unit calls in another. Every unit
 * includes it (through memtracker_web/_tracker.c, the one translation unit).
 */
#ifndef MT_ENGINE_ENGINE_H
#define MT_ENGINE_ENGINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../_compat.h"    /* MT_HAVE_TRACER, the frame internals, every version and platform guard */
#include "ptrmap.h"
#include "calltree.h"

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
    /* 1: every object is tabled and counted. N > 1 (analyse(object_sample=N), an
     * immutable type only): one object in about N, those whose address hash is
     * below addr_limit (MT_WATCH_SAMPLED), and the counts are of them alone (the
     * caller scales by N). An object keeps its address for life, so its creation
     * and its death are sampled alike; an object still alive keeps its address
     * from reuse, so a leak's objects are sampled fairly, whatever the churn
     * around them. */
    uint32_t object_sample;
    uint32_t addr_limit;
    uint32_t path_every;    /* of the objects tabled, one in this many gets its call path */
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
 * conditions hold (marks, one interpreter, no reassignment targets, nothing
 * chained). Exact watch-all takes it only from mt_hook_watch_miss. */
typedef struct {
    PyTypeObject *type;
    MtCaptureCore *capture;
    uint32_t slot;
    uint32_t val;           /* its objects' entry: slot << MT_LEAF_BITS | MT_NO_LEAF */
    uint32_t limit;         /* nonzero: the slot samples objects by address (MtSlot.addr_limit);
                             * an object not sampled needs nothing */
    uint32_t own;           /* one of our classes (MtBind.own_class): its objects, followed, take
                             * the shortcut; a built-in's need the full path, which asks which
                             * interpreter this is (another may share the type, under its own GIL) */
} MtPlainEntry;

static inline size_t
mt_bind_cache_index(PyTypeObject *tp)
{
    return (size_t)(((uint64_t)(uintptr_t)tp * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - MT_BIND_CACHE_BITS));
}

typedef struct {
    PyTypeObject *type;     /* NULL: an unused row (on the free list, or waiting for its ref to go) */
    uint64_t new_count, free_count;
    PyObject *ref;          /* a weak reference to a class, made at a safe point (mt_watch_verify_rows);
                             * NULL before that, and for static types */
    uint32_t next_free;     /* free-list link of an unused row (0 ends the list) */
    uint32_t is_static;     /* a static type: never freed, so its pointer needs no check */
} MtWatchRow;

/* Cache in front of mt_engine.watch: type pointer => counts not yet added to
 * its row (index: CREATE 0, DESTROY 1). Its first MT_FILTER_SIZE entries only
 * ever hold types whose events need nothing else (see mt_watch_cacheable), so
 * a hit there is one add. They are two-way: a type sits at its index or the
 * one beside it (MT_WATCH_OTHER_WAY), and the hook looks at the second only
 * when the first misses. Direct-mapped, two hot types sharing an index (a few
 * of a server's hundreds of types do, as its heap's layout falls) took turns
 * through the slow path at every switch. The second half, under exact
 * watch-all, holds tracked classes (MT_WATCH_MARKED_ENTRY): the hook's miss
 * path counts one there when its one capture's shortcut takes the event
 * (mt_hook_watch_miss), instead of a lookup in mt_engine.watch. */
typedef struct {
    PyTypeObject *type;
    uint64_t count[2];
} MtWatchCache;
#define MT_WATCH_CACHE_ENTRIES (3 * MT_FILTER_SIZE)
#define MT_WATCH_MARKED_ENTRY(tp) (&mt_engine.watch_cache[MT_FILTER_SIZE + MT_FILTER_INDEX(tp)])
/* The third part holds finalizable types whose events need nothing else
 * (generators, coroutines, classes with __del__: a server makes thousands a
 * second): counted there once mt_watch_first_death says so, without the full
 * slow path (mt_watch_final_or_full). */
#define MT_WATCH_FINAL_ENTRY(tp) (&mt_engine.watch_cache[2 * MT_FILTER_SIZE + MT_FILTER_INDEX(tp)])
/* The first half's second way for a type: the entry beside its own. */
#define MT_WATCH_OTHER_WAY(tp) (&mt_engine.watch_cache[MT_FILTER_INDEX(tp) ^ 1])

/* Sampled watch-all counts an object when a multiplicative hash of its
 * address falls below a limit. An object keeps its address for life, so its
 * creation and its destruction are both counted or both not, and the sampled
 * net count of a type times the rate estimates its net allocations. The
 * hash mixes the low 32 bits of the address: objects of one size class sit
 * at a fixed stride, and a plain mask of address bits would never pick some
 * strides at all. */
#define MT_WATCH_HASH_MULT 0x9E3779B1u
#define MT_WATCH_SAMPLED(op, limit) ((uint32_t)((uint32_t)(uintptr_t)(op) * MT_WATCH_HASH_MULT) < (limit))

/* Sampled watch-all counts every object of a class defined in Python code
 * (a mutable heap type): such objects are few beside the built-ins', and the
 * class is what names a leak, so its count must not wait for sampling noise
 * to average out. A type's flags do not change after it is made, so an
 * object's creation and its death are counted alike. */
#define MT_WATCH_EXACT_TYPE(tp) \
    (((tp)->tp_flags & (Py_TPFLAGS_HEAPTYPE | Py_TPFLAGS_IMMUTABLETYPE)) == Py_TPFLAGS_HEAPTYPE)
#define MT_WATCH_COUNTED(op, tp, limit) (MT_WATCH_SAMPLED(op, limit) || MT_WATCH_EXACT_TYPE(tp))

/* An object the plain shortcut's slot does not sample: nothing to do (it
 * touches no table, so the interpreter need not be asked either). */
#define MT_PLAIN_SKIPS(plain, op) ((plain)->limit && !MT_WATCH_SAMPLED(op, (plain)->limit))
/* An object the shortcut's capture may take right there: one of our classes'. */
#define MT_PLAIN_TAKES(plain, op, event) \
    ((plain)->own \
     && ((event) == PyRefTracer_CREATE \
             ? mt_capture_on_create_plain((plain)->capture, (plain)->slot, (plain)->val, (op)) \
             : mt_capture_on_destroy_plain((plain)->capture, (plain)->slot, (plain)->val, (op))))

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

typedef struct MtEngine {
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
    MtWatchCache watch_cache[MT_WATCH_CACHE_ENTRIES];   /* (sizeof covers every part) */
    int multi_interp;       /* another interpreter exists (refreshed at safe points) */
    /* callbacks */
    PyObject *pending_callable;     /* called by the pending call: drains queues */
    int pending_scheduled;
} MtEngine;

/* The process-wide engine: one tracer slot, one state. */
static MtEngine mt_engine;

static const char *mt_unavailable_reason = NULL;
static PyObject *mt_EngineUnavailable = NULL;

/* ---------------- functions one unit calls in another ---------------- */

/* calltree.c */
static MtTree *mt_tree_new(int depth, uint32_t sample_every, uint32_t max_nodes);
static void mt_tree_free(MtTree *t);

/* hooks.c */
static void mt_queue_push(MtCaptureCore *c, uint32_t slot, uint32_t kind, uint64_t seq, uint32_t leaf);
static int mt_run_pending(void *arg);
static void mt_on_type_destroy(PyTypeObject *tp);
#if MT_HAVE_TRACER
static int mt_is_our_hook(PyRefTracer fn);
#endif

/* watch.c: the slow path's counting */
static int mt_watch_cacheable(PyTypeObject *tp);
static void mt_watch_cache_flush(MtWatchCache *entry, int clear);
static void mt_watch_cache_flush_all(int clear);
static void mt_watch_count(PyTypeObject *tp, int is_free);
#if MT_HAVE_TRACER
static int mt_watch_first_death(PyObject *op, PyTypeObject *tp, PyRefTracerEvent event);
#endif
static void mt_watch_forget(PyTypeObject *tp);
static void mt_watch_release_all(void);

/* state.c */
static void mt_engine_rebuild_bindings(void);
static void mt_engine_rebuild_filter(void);
static void mt_engine_update_plain(void);

/* selftest.c */
#if MT_HAVE_TRACER
static int mt_selftest_hook(PyObject *op, PyRefTracerEvent event, void *data);
#endif

/* install.c */
static void mt_engine_mark_displaced(void);
static void mt_engine_validate_slots(void);
static void mt_engine_refresh_interps(void);
#if MT_HAVE_TRACER
static void mt_engine_select_hook(void);
static void mt_engine_precise_failed(void);
static int mt_engine_keeps_prior(PyRefTracer prev, void *data);
#endif

/* capture.c */
static PyTypeObject MtCaptureCoreType;
static int mt_slot_type_alive(MtSlot *slot);
static void mt_capture_purge_objects(MtCaptureCore *c, int64_t slot, int clear_leaf_only);

#endif /* MT_ENGINE_ENGINE_H */
