/* memtracker_web/_compat.h: every difference between the CPython versions the
 * C engine builds on, in one place. The engine's own code carries no
 * PY_VERSION_HEX test; it tests the MT_* names defined here.
 *
 *   MT_HAVE_TRACER         the reference tracer (PyRefTracer) exists and the
 *                          engine runs: CPython >= 3.13, GIL builds only (the
 *                          tracer's tables rely on the GIL)
 *   MT_TRACER_TOLD_REMOVED CPython tells a tracer it is being replaced, with a
 *                          NULL object and PyRefTracer_TRACKER_REMOVED (3.15+)
 *   MT_HAVE_WEAKREF_GETREF PyWeakref_GetRef (3.13+)
 *   MT_TRASHCAN_BY_STACK   the trashcan defers a deallocation by the C stack
 *                          left (3.14+), not by a nesting counter (3.13: the C
 *                          recursion limit, at most 10000)
 *   MT_PY_DEPTH_LEFT(ts)   Python calls a thread state may still make before
 *                          RecursionError, an lvalue (3.12+:
 *                          py_recursion_remaining; older: recursion_remaining)
 *   MT_C_STACK_BY_ADDRESS  the C stack is limited by its address (3.14+);
 *                          before, by a counter:
 *   MT_C_DEPTH_LEFT(ts)    C calls left before RecursionError (3.12, 3.13:
 *                          c_recursion_remaining; older: recursion_remaining)
 *   MT_FREE_THREADED       a free-threaded (no GIL) build
 *   MT_RUNTIME_LOSES_DESTROYS(v)  the running CPython (Py_Version v) loses
 *                          object destruction events: 3.13.0-3.13.2
 *   MT_RUNTIME_HAS_TRACER(v)  the running CPython has the reference tracer
 *   MT_HAVE_DICT_GETITEMREF  PyDict_GetItemRef (3.13+)
 *   MT_HAVE_GC_VISIT       PyUnstable_GC_VisitObjects (3.12+): every object the
 *                          collector tracks, without a list of them
 *   MT_RUNTIME_GC_VISITS_FROZEN(v)  the running CPython's PyUnstable_GC_VisitObjects
 *                          also visits what gc.freeze() set aside (3.12.10+,
 *                          3.13.3+, 3.14+: gh-131740)
 *   MT_ANY_DICT_CHECK(op)  a dict, or an exact frozendict (3.15+): str keys its
 *                          tp_traverse does not show
 *   mt_monotonic_ns()      the clock time.monotonic() reads, in nanoseconds
 *                          (PyTime_MonotonicRaw from 3.13, before its private twin)
 *
 * Platform and compiler differences too:
 *   MT_HAVE_PTHREAD        pthreads and sched_yield (the self-test's thread)
 *   MT_HAVE_DLADDR         dladdr: which binary a tracer function lives in
 *   MT_NOINLINE, MT_UNLIKELY  GCC/Clang attributes, empty elsewhere
 *   MT_HOOK_ONLY           `static` for functions only the hook calls, marked
 *                          unused where the tracer compiles out
 *
 * With MT_HAVE_TRACER the interpreter-frame internals are included the way
 * CPython's own Python/tracemalloc.c walks the stack: _PyInterpreterFrame,
 * _PyFrame_GetFirstComplete, _PyFrame_GetCode, _PyInterpreterFrame_LASTI. They
 * live in pycore_frame.h on 3.13 and in pycore_interpframe.h from 3.14. A
 * module that needs the version guards only (_passthrough.c) defines
 * MT_COMPAT_NO_INTERNALS first.
 */
#ifndef MT_COMPAT_H
#define MT_COMPAT_H

#include <Python.h>

#if defined(__unix__) || defined(__APPLE__)
#  include <pthread.h>
#  include <sched.h>
#  define MT_HAVE_PTHREAD 1
#else
#  define MT_HAVE_PTHREAD 0
#endif
#if defined(__GLIBC__) || defined(__APPLE__)
#  include <dlfcn.h> /* dladdr: which binary a tracer function lives in */
#  define MT_HAVE_DLADDR 1
#else
#  define MT_HAVE_DLADDR 0
#endif

#if defined(Py_GIL_DISABLED)
#  define MT_FREE_THREADED 1
#else
#  define MT_FREE_THREADED 0
#endif

#if PY_VERSION_HEX >= 0x030D0000 && !defined(Py_GIL_DISABLED)
#  define MT_HAVE_TRACER 1
#else
#  define MT_HAVE_TRACER 0
#endif

#if PY_VERSION_HEX >= 0x030F0000
#  define MT_TRACER_TOLD_REMOVED 1
#else
#  define MT_TRACER_TOLD_REMOVED 0
#endif

#if PY_VERSION_HEX >= 0x030D0000
#  define MT_HAVE_WEAKREF_GETREF 1
#  define MT_HAVE_DICT_GETITEMREF 1
#else
#  define MT_HAVE_WEAKREF_GETREF 0
#  define MT_HAVE_DICT_GETITEMREF 0
#endif

/* Of the running interpreter (Py_Version), not the headers built against. */
#define MT_RUNTIME_LOSES_DESTROYS(v) ((v) < 0x030D03F0 && ((v) & 0xFFFF0000) == 0x030D0000)
#define MT_RUNTIME_HAS_TRACER(v) ((v) >= 0x030D0000)

#if PY_VERSION_HEX >= 0x030C0000
#  define MT_HAVE_GC_VISIT 1
#else
#  define MT_HAVE_GC_VISIT 0
#endif
#define MT_RUNTIME_GC_VISITS_FROZEN(v) \
    ((v) >= 0x030E0000 || ((v) >= 0x030D03F0 && (v) < 0x030E0000) || ((v) >= 0x030C0AF0 && (v) < 0x030D0000))

/* The attributes a code object makes when first read and keeps: in _co_cached
 * (co_code, co_varnames, co_cellvars, co_freevars) from 3.12; co_code alone before. */
#if PY_VERSION_HEX >= 0x030C0000
#  define MT_CODE_CACHED_MOST 4
#  define MT_CODE_CACHED(code, out) \
      ((code)->_co_cached == NULL \
           ? 0 \
           : ((out)[0] = (code)->_co_cached->_co_code, (out)[1] = (code)->_co_cached->_co_varnames, \
              (out)[2] = (code)->_co_cached->_co_cellvars, (out)[3] = (code)->_co_cached->_co_freevars, 4))
#else
#  define MT_CODE_CACHED_MOST 1
#  define MT_CODE_CACHED(code, out) ((out)[0] = (code)->_co_code, 1)
#endif

#if PY_VERSION_HEX >= 0x030E0000
#  define MT_TRASHCAN_BY_STACK 1
#else
#  define MT_TRASHCAN_BY_STACK 0
#endif

#if PY_VERSION_HEX >= 0x030C0000
#  define MT_PY_DEPTH_LEFT(ts) ((ts)->py_recursion_remaining)
#else
#  define MT_PY_DEPTH_LEFT(ts) ((ts)->recursion_remaining)
#endif

#if PY_VERSION_HEX >= 0x030E0000
#  define MT_C_STACK_BY_ADDRESS 1
#else
#  define MT_C_STACK_BY_ADDRESS 0
#  if PY_VERSION_HEX >= 0x030C0000
#    define MT_C_DEPTH_LEFT(ts) ((ts)->c_recursion_remaining)
#  else
#    define MT_C_DEPTH_LEFT(ts) ((ts)->recursion_remaining)
#  endif
#endif

/* A dict, or from 3.15 a frozendict (no subclass of dict): both keep keys their
 * tp_traverse does not show when they are strs. (An exact frozendict: a search asks
 * this of every object the collector tracks, and a subtype test walks the MRO.) */
#if defined(PyFrozenDict_CheckExact)
#  define MT_ANY_DICT_CHECK(op) (PyDict_Check(op) || PyFrozenDict_CheckExact(op))
#else
#  define MT_ANY_DICT_CHECK(op) PyDict_Check(op)
#endif

/* The clock time.monotonic() reads, in nanoseconds: a retention search's deadline
 * is a time.monotonic() value. (PyTime_MonotonicRaw, public from 3.13; before, the
 * function it replaced.) */
#if PY_VERSION_HEX >= 0x030D0000
static inline int64_t
mt_monotonic_ns(void)
{
    PyTime_t now;
    return PyTime_MonotonicRaw(&now) == 0 ? (int64_t)now : INT64_MAX;
}
#else
static inline int64_t
mt_monotonic_ns(void)
{
    return (int64_t)_PyTime_GetMonotonicClock();
}
#endif

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

#if MT_HAVE_TRACER && !defined(MT_COMPAT_NO_INTERNALS)
/* CPython's internal inline helpers are not written for -Wextra (unused
 * parameters in pycore_stackref.h and pycore_object_deferred.h, among others):
 * their warnings are silenced for these includes only, never for our code. */
#  if defined(__GNUC__)
#    pragma GCC diagnostic push
#    pragma GCC diagnostic ignored "-Wunused-parameter"
#    pragma GCC diagnostic ignored "-Wsign-compare"
#    pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#  endif
#  define Py_BUILD_CORE 1
#  if PY_VERSION_HEX >= 0x030E0000
#    include "internal/pycore_interpframe.h"
#  else
#    include "internal/pycore_frame.h"
#  endif
#  undef Py_BUILD_CORE
#  if defined(__GNUC__)
#    pragma GCC diagnostic pop
#  endif
#endif

#endif /* MT_COMPAT_H */
