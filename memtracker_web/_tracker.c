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
 *
 * The engine lives in memtracker_web/_engine/, one concern a file:
 *   engine.h       limits, data structures, the engine state mt_engine, and
 *                  the functions one unit calls in another
 *   ptrmap.h       the pointer table (its lookups static inline)
 *   calltree.h/.c  call trees
 *   hooks.c        the hooks and the slow path (the hot path)
 *   state.c        bindings, type marks, the shortcut table, the byte filter
 *   selftest.c     the interpreter's destruction self-test
 *   install.c      taking and giving back the tracer slot, displacement
 *   capture.c      the CaptureCore type
 *   watch.c        watch-all
 *   referrers.c    referrers(objects): gc.get_referrers for many objects in one pass
 *   module.c       module functions and PyInit__tracker
 * Every version and platform guard is in memtracker_web/_compat.h.
 *
 * This file is the one translation unit: it includes the units in order
 * (a "unity build"). Every function stays static and in one unit, so the
 * compiler inlines the hot path (the hooks, mt_hook_slow's shortcut, the
 * PtrMap lookups, the capture's plain create/destroy) exactly as it did
 * when the engine was one file, without depending on link-time
 * optimisation (which setup.py does not turn on and distributions build
 * without). bench/RESULTS.md, "Split of the C engine", has the instruction
 * counts before and after.
 */
#include "_engine/engine.h"

#include "_engine/calltree.c"
#include "_engine/hooks.c"
#include "_engine/state.c"
#include "_engine/selftest.c"
#include "_engine/install.c"
#include "_engine/capture.c"
#include "_engine/watch.c"
#include "_engine/referrers.c"
#include "_engine/module.c"
