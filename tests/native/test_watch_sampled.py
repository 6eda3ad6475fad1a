"""Sampled watch-all: about one object in N, chosen by a hash of its address.

An object's creation and its destruction are both counted or both not, so a
type's sampled net count times N estimates its net allocations, and goes back
to exactly zero when all its objects are gone."""

from __future__ import annotations

import functools
import gc
import os
import shutil
import subprocess
import sys
import textwrap
import types
import weakref

import pytest

import memtracker_web as mt
from memtracker_web import _tracker
from support import requires_engine

pytestmark = requires_engine


def _slotted(n: int) -> type:
    # n slots: objects of several pymalloc size classes (strides of 16 bytes)
    return type(f"Slots{n}", (), {"__slots__": tuple(f"a{i}" for i in range(n))})


SIZES = [_slotted(n) for n in (0, 1, 2, 4, 7, 12, 30)]

# Built-in objects of several size classes, made anew each call: these are sampled.
BUILTINS = {
    types.SimpleNamespace: lambda i: types.SimpleNamespace(),
    complex: lambda i: complex(i, 1),
    slice: lambda i: slice(i, None),
    range: lambda i: range(i),
    set: lambda i: set(),
    bytearray: lambda i: bytearray(),
    list: lambda i: [],
}


class Plain:
    pass


class Tracked:
    pass


def _net(counts, cls) -> int:
    new, free = counts.get(cls, (0, 0))
    return new - free


def _counts() -> dict:
    return {cls: (new, free) for cls, new, free in _tracker.watch_counts()}


def test_estimates_are_close_for_every_size_class_and_go_back_to_zero(filter_mode):
    n = 200_000  # about 3,125 sampled of each: a binomial deviation of 1.8%
    _tracker.watch_start(sample=64)
    try:
        assert _tracker.watch_statistics()["sample"] == 64
        keep = {cls: [make(i) for i in range(n)] for cls, make in BUILTINS.items()}
        counts = _counts()
        for cls in keep:
            assert abs(_net(counts, cls) * 64 / n - 1) < 0.08, (cls, _net(counts, cls))
        for cls in keep:
            del keep[cls][: n // 2]
        counts = _counts()
        for cls in keep:
            assert abs(_net(counts, cls) * 64 / (n // 2) - 1) < 0.12, (cls, _net(counts, cls))
        keep.clear()
        gc.collect()
        counts = _counts()
        for cls in BUILTINS:
            if cls is list:
                continue  # lists are everywhere: not back to zero
            new, free = counts[cls]
            # back to about zero; every one of ours was seen (the runtime may make more meanwhile)
            assert abs(new - free) * 64 < 0.05 * n and new * 64 / n > 0.9, (cls, new, free)
    finally:
        _tracker.watch_stop()
    assert _tracker.watch_statistics()["sample"] == 0


def test_classes_defined_in_python_are_counted_exactly_and_immutable_types_are_sampled(filter_mode):
    # The class is what names a leak: its count must not wait for sampling noise.
    n = 50_000
    _tracker.watch_start(sample=64)
    try:
        keep = {cls: [cls() for _ in range(n)] for cls in SIZES + [Plain]}
        partials = [functools.partial(int, i) for i in range(n)]  # an immutable heap type: a built-in
        counts = _counts()
        for cls in SIZES + [Plain]:
            assert counts[cls] == (n, 0), cls
        assert functools.partial.__flags__ & (1 << 9) and abs(_net(counts, functools.partial) * 64 / n - 1) < 0.1
        for cls in keep:
            del keep[cls][: n // 5]
        counts = _counts()
        for cls in SIZES + [Plain]:
            assert counts[cls] == (n, n // 5), cls
        keep.clear()
        del partials
        counts = _counts()
        for cls in SIZES + [Plain]:
            assert counts[cls] == (n, n), cls
    finally:
        _tracker.watch_stop()


def test_a_tracked_class_and_a_tracked_builtin_are_exact_for_their_capture(filter_mode):
    c = mt.Capture()
    c.track(Tracked)
    c.track(bytearray)
    c.start()
    _tracker.watch_start(sample=64)
    try:
        objs = [Tracked() for _ in range(100_000)]
        arrays = [bytearray() for _ in range(100_000)]
        assert c.count_for(Tracked) == 100_000 and c.count_for(bytearray) == 100_000
        counts = _counts()
        assert counts[Tracked] == (100_000, 0)  # watch-all counts a class's every object
        assert 0.9 < _net(counts, bytearray) * 64 / 100_000 < 1.1  # the slow path samples a built-in
        del objs, arrays
        assert c.count_for(Tracked) == 0 and c.count_for(bytearray) == 0
        counts = _counts()
        assert _net(counts, Tracked) == 0 and _net(counts, bytearray) == 0
    finally:
        _tracker.watch_stop()
        c.stop()


def test_sample_one_counts_every_object():
    _tracker.watch_start(sample=1)
    try:
        objs = [Plain() for _ in range(1234)]
        assert _counts()[Plain] == (1234, 0)
        del objs
        assert _counts()[Plain] == (1234, 1234)
    finally:
        _tracker.watch_stop()


def test_sample_argument_errors():
    for bad in (0, -1, 65537):
        with pytest.raises(ValueError, match="sample must be between 1 and 65536"):
            _tracker.watch_start(sample=bad)
    with pytest.raises(TypeError):
        _tracker.watch_start(sample="64")
    assert not _tracker.engine_state()["installed"]
    _tracker.watch_start(sample=32)
    try:
        _tracker.watch_start(sample=32)  # the same rate: nothing to do
        with pytest.raises(RuntimeError, match="watch-all already runs with sample=32: stop it first"):
            _tracker.watch_start()
    finally:
        _tracker.watch_stop()
    assert not _tracker.engine_state()["installed"]


def test_dead_classes_leave_no_rows_after_a_read():
    # sampled watch-all does not see every class die; a read drops the rows of the dead
    _tracker.watch_start(sample=4)
    try:
        refs = []
        for i in range(300):
            cls = type(f"Temp{i}", (), {})
            objs = [cls() for _ in range(20)]
            del objs
            refs.append(weakref.ref(cls))
            del cls
        gc.collect()
        assert all(r() is None for r in refs)  # no class kept alive
        names = {cls.__name__ for cls in _counts()}
        assert not any(name.startswith("Temp") for name in names)
        assert _tracker.watch_statistics()["types"] < 200
    finally:
        _tracker.watch_stop()


# Where watch-all sees every class die (exact, 3.15+: CPython tells us when
# our tracer is replaced), a class's row needs no weak reference.
ROWS_TRUSTED = sys.version_info >= (3, 15)


@pytest.mark.parametrize("sample", [1, 64])
def test_a_class_row_holds_one_weak_reference_dropped_with_the_row(sample):
    # rows are checked through a weak reference to their class (O(rows) a
    # read, not a walk of every class); none may outlive its row
    trusted = ROWS_TRUSTED and sample == 1

    def dead_refs() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is weakref.ReferenceType and o() is None)

    # (CPython hands out a class's one plain weak reference, which its base
    # class's list of subclasses holds already: ours is one more hold of it)
    classes = [type(f"Held{i}", (), {}) for i in range(200)]
    refs = [weakref.ref(cls) for cls in classes]
    base = [sys.getrefcount(ref) for ref in refs]
    _tracker.watch_start(sample=sample)
    try:
        keep = [cls() for cls in classes for _ in range(64)]
        _counts()
        now = [sys.getrefcount(ref) for ref in refs]
        seen = [i for i in range(200) if now[i] == base[i] + 1]
        assert len(seen) == (0 if trusted else 200)
        before = dead_refs()
        del keep, classes, seen, refs
        after = dead_refs()  # the classes died: our references to them are dead, not yet dropped
        assert after - before == (0 if trusted else 200)
        names = {cls.__name__ for cls in _counts()}
        assert not any(name.startswith("Held") for name in names)
        assert dead_refs() - before == 0
    finally:
        _tracker.watch_stop()


def test_stopping_watch_all_drops_its_references():
    cls = type("Watched", (), {})
    ref = weakref.ref(cls)  # the class's one plain weak reference, which ours holds too
    base = sys.getrefcount(ref)
    _tracker.watch_start(sample=64)
    try:
        keep = [cls() for _ in range(256)]
        _counts()
        assert sys.getrefcount(ref) == base + 1
    finally:
        _tracker.watch_stop()
    assert sys.getrefcount(ref) == base
    del keep


@pytest.mark.parametrize("sample", [1, 64])
def test_a_class_that_died_while_our_tracer_was_replaced_is_never_read(sample):
    # a tool took the tracer slot and put ours back: a class that died in
    # between was not seen; its row (checked already, or new since the last
    # read) must go, never be read, whatever new class took its memory
    code = textwrap.dedent(f"""
        import ctypes, gc, sys
        from memtracker_web import _tracker
        api = ctypes.pythonapi
        api.PyRefTracer_GetTracer.restype = ctypes.c_void_p
        api.PyRefTracer_GetTracer.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        api.PyRefTracer_SetTracer.restype = ctypes.c_int
        api.PyRefTracer_SetTracer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        _tracker.watch_start(sample={sample})
        Checked = type("Checked", (), {{}})
        a = [Checked() for _ in range(256)]
        _tracker.watch_counts()                   # Checked's row is checked now
        Fresh = type("Fresh", (), {{}})
        b = [Fresh() for _ in range(256)]         # Fresh's row is new
        data = ctypes.c_void_p()
        fn = api.PyRefTracer_GetTracer(ctypes.byref(data))
        api.PyRefTracer_SetTracer(None, None)
        del a, b, Checked, Fresh
        gc.collect()                              # both classes freed, unseen
        api.PyRefTracer_SetTracer(fn, data.value)
        newer = [type(f"Newer{{i}}", (), {{}}) for i in range(100)]
        objs = [cls() for cls in newer for _ in range(64)]
        try:
            rows = _tracker.watch_counts()
        except RuntimeError as exc:
            print("unavailable:", exc)
        else:
            names = sorted({{cls.__name__ for cls, _, _ in rows}})
            print("Checked" in names, "Fresh" in names, all(isinstance(cls, type) for cls, _, _ in rows))
        _tracker.watch_stop()
    """)
    proc = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if sys.version_info >= (3, 15):
        # CPython tells a replaced tracer: the counts say they cannot be trusted
        expected = "unavailable: watch-all counts are unavailable: another tool replaced the reference tracer"
    else:
        expected = "False False True"
    assert proc.stdout.strip() == expected


@pytest.mark.parametrize("sample", [1, 64])
def test_another_interpreters_objects_are_not_counted(sample):
    code = f"""
        import _interpreters
        from memtracker_web import _tracker
        iid = _interpreters.create()
        _tracker.watch_start(sample={sample})
        def net():
            new, free = {{t: (n, f) for t, n, f in _tracker.watch_counts()}}.get(list, (0, 0))
            return new - free
        net()               # a read notices the other interpreter
        warm = [[] for _ in range(1000)]    # so that list sits in the cache
        before = net()
        _interpreters.exec(iid, "keep = [[] for _ in range(200000)]")
        print((net() - before) * {sample})
        _tracker.watch_stop()
        _interpreters.destroy(iid)
    """
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    theirs = int(proc.stdout)
    assert abs(theirs) < 2_000, theirs  # not 200,000


def test_no_capture_means_the_sample_test_alone_and_a_capture_brings_the_mark_test_back():
    _tracker.watch_start(sample=64)
    try:
        assert _tracker.engine_state()["hook"] == "sampled-unmarked"
        c = mt.Capture()
        c.track(Tracked)
        c.start()
        try:
            assert _tracker.engine_state()["hook"] == "sampled"
            objs = [Tracked() for _ in range(5000)]
            assert c.count_for(Tracked) == 5000  # every object, sampled or not
            del objs[:1000]
            assert c.count_for(Tracked) == 4000
        finally:
            c.stop()
        assert _tracker.engine_state()["hook"] == "sampled-unmarked"
        del objs
        assert _net(_counts(), Tracked) == 0
    finally:
        _tracker.watch_stop()
    assert _tracker.engine_state()["hook"] == "none"


class Empty:
    pass


class Query:
    pass


@pytest.mark.parametrize("sample", [1, 64])
@pytest.mark.parametrize("with_capture", [False, True], ids=["watch-only", "beside-a-capture"])
def test_class_assignment_moves_the_watch_all_count_with_the_object(sample, with_capture):
    # Django's `obj = Empty(); obj.__class__ = Query`: created as one type, dead
    # as another. Net counts must not drift apart on the two types.
    capture = mt.Capture()
    if with_capture:
        capture.track(Empty)  # marked: the audit hook's other path runs too
        capture.start()
    _tracker.watch_start(sample=sample)
    try:
        kept = []
        for i in range(20_000):
            obj = Empty()
            obj.__class__ = Query
            if i % 4 == 0:
                kept.append(obj)
        del obj
        net = {t: new - free for t, new, free in _tracker.watch_counts()}
        assert net.get(Empty, 0) == 0  # every Empty became a Query
        assert net[Query] == 5000  # exactly the ones kept: classes are counted exactly
        if with_capture:
            assert capture.count_for(Empty) == 5000  # a capture counts an object as what it was created
        del kept
        net = {t: new - free for t, new, free in _tracker.watch_counts()}
        assert net.get(Empty, 0) == 0 and net.get(Query, 0) == 0
    finally:
        _tracker.watch_stop()
        capture.stop()


@pytest.mark.parametrize("sample", [1, 64])
@pytest.mark.parametrize("how", ["one-capture", "two-captures", "analysis", "paths-1-in-8"])
def test_a_tracked_class_is_counted_once_by_watch_all_whichever_path_its_events_take(how, sample, filter_mode):
    # One capture counting it takes the engine's shortcut, and so does one analysing it
    # for an object whose path is not taken; two captures, or a path taken, the full path.
    captures = [mt.Capture() for _ in range({"one-capture": 1, "two-captures": 2}.get(how, 0))]
    tracker = None
    for c in captures:
        c.track(Tracked)
        c.start()
    if how in ("analysis", "paths-1-in-8"):
        tracker = mt.Tracker(depth=4)
        tracker.track_with_analysis(Tracked, sample_every=8 if how == "paths-1-in-8" else 1)
    _tracker.watch_start(sample=sample)
    try:
        for rounds in range(1, 4):
            objs = [Tracked() for _ in range(30_000)]
            del objs[::3]
            assert _counts()[Tracked] == (30_000 * rounds, 10_000 + 30_000 * (rounds - 1))
            assert all(c.count_for(Tracked) == 20_000 for c in captures)
            if tracker is not None:
                nodes, meta = tracker.capture._tree(Tracked)
                paths = sum(n[4] for n in nodes) + meta["unattributed"]
                alive = sum(n[5] for n in nodes)
                if how == "paths-1-in-8":
                    # one object in about 8 gets its path, at random gaps; of this round's,
                    # about two in three live on (those not 0 mod 3)
                    assert abs(paths - 30_000 * rounds / 8) <= 0.1 * 30_000 * rounds / 8, paths
                    assert abs(alive - 20_000 / 8) <= 0.1 * 20_000 / 8, alive
                else:  # every object gets its path; of this round's, those not deleted live on
                    assert paths == 30_000 * rounds
                    assert alive == 20_000
                assert tracker.capture.count_for(Tracked) == 20_000
            del objs
        assert _net(_counts(), Tracked) == 0
        if tracker is not None:
            assert sum(n[5] for n in tracker.capture._tree(Tracked)[0]) == 0
    finally:
        _tracker.watch_stop()
        for c in captures:
            c.stop()
        if tracker is not None:
            tracker.stop()


# ---- objects resurrected by their finaliser ----------------------------------------------------
# CPython reports the death of an object whose __del__ resurrects it, and later its death again,
# with no creation in between. Watch-all counts it freed once, as a capture does.

_saved: list = []


class Phoenix:
    def __del__(self):
        _saved.append(self)  # resurrected; CPython runs __del__ once per object


class CycleWithDel:
    def __del__(self):
        pass


@pytest.mark.parametrize("sample", [1, 64])
@pytest.mark.parametrize("with_capture", [False, True], ids=["watch-only", "beside-a-capture"])
def test_an_object_resurrected_by_its_finaliser_is_counted_freed_once(sample, with_capture, filter_mode):
    capture = mt.Capture()
    if with_capture:
        capture.track(Phoenix)
        capture.start()
    _tracker.watch_start(sample=sample)
    try:
        for _ in range(1000):
            Phoenix()
        assert len(_saved) == 1000
        assert _counts()[Phoenix] == (1000, 1000)  # counted freed at the death its __del__ undid
        if with_capture:
            assert capture.count_for(Phoenix) == 0  # the capture counts it alike
        _saved.clear()  # their real deaths: not counted again
        assert _counts()[Phoenix] == (1000, 1000)
        assert _tracker.watch_statistics()["resurrected"] == 1000
        for _ in range(500):  # objects at the same addresses count as new
            Phoenix()
            _saved.clear()
        assert _counts()[Phoenix] == (1500, 1500)
        # collected in cycles: finalised by the collector first, each death counted once
        for _ in range(500):
            obj = CycleWithDel()
            obj.me = obj
        del obj
        gc.collect()
        assert _counts()[CycleWithDel] == (500, 500)
        if with_capture:
            assert capture.count_for(Phoenix) == 0
    finally:
        _tracker.watch_stop()
        capture.stop()
        _saved.clear()


@pytest.mark.parametrize("watch", [1, 64], ids=["exact watch-all", "sampled watch-all"])
@pytest.mark.parametrize("objects", [None, 8], ids=["every object", "one in 8 followed"])
def test_a_finaliser_added_to_a_tracked_class_after_it_was_counted_is_seen(filter_mode, watch, objects):
    # A tracked class under watch-all is counted in a cache entry with the one-capture
    # shortcut only while it has no finaliser: a __del__ given to it later takes its
    # events off the shortcut at once, so a resurrected object is counted freed once,
    # not at each of its deaths.
    kept: list = []

    class Late:
        pass

    capture = mt.Capture()
    capture.track(Late, sample_objects=objects)
    capture.start()
    _tracker.watch_start(sample=watch)
    try:
        objs = [Late() for _ in range(100)]
        del objs
        assert _counts()[Late] == (100, 100)
        objs = [Late() for _ in range(100)]  # counted in the cache entry the class holds

        def resurrect(self):
            if not getattr(self, "back", False):
                self.back = True
                kept.append(self)

        Late.__del__ = resurrect
        del objs  # each dies, comes back, and dies for good below
        assert len(kept) == 100
        kept.clear()
        assert _counts()[Late] == (200, 200)
        assert capture.count_for(Late) == 0
    finally:
        _tracker.watch_stop()
        capture.stop()


def test_the_addresses_kept_for_resurrection_are_bounded():
    _tracker.watch_start(sample=64)
    try:
        many = [CycleWithDel() for _ in range(70_000)]  # 70,000 addresses alive at once
        del many  # each death keeps its address
        stats = _tracker.watch_statistics()
        assert stats["dying_resets"] == 1  # the table started over at 65,536
        assert stats["bytes"] < 4 << 20
        assert _counts()[CycleWithDel] == (70_000, 70_000)
    finally:
        _tracker.watch_stop()


class PlainToBeFinalizable:
    pass


@pytest.mark.parametrize("sample", [1, 64])
def test_an_object_moved_by_class_assignment_to_a_finalizable_class_is_counted_when_it_dies(sample):
    # A finalizable object's ordinary death leaves its address kept; a plain object made there
    # and given the finalizable class must still have its death counted.
    _tracker.watch_start(sample=sample)
    try:
        for _ in range(1000):
            d = CycleWithDel()
            del d
            a = PlainToBeFinalizable()
            a.__class__ = CycleWithDel
            del a
        assert _counts()[CycleWithDel] == (2000, 2000)
        assert _counts()[PlainToBeFinalizable] == (1000, 1000)  # each moved out when reassigned
    finally:
        _tracker.watch_stop()


@pytest.mark.parametrize("sample", [1, 64])
def test_a_resurrected_object_moved_to_another_class_is_not_counted_freed_again(sample):
    _tracker.watch_start(sample=sample)
    try:
        for _ in range(500):
            Phoenix()
        for obj in _saved:
            obj.__class__ = CycleWithDel  # the resurrected objects change class, then die
        del obj
        _saved.clear()
        assert _counts()[Phoenix] == (500, 500)
        assert _counts()[CycleWithDel] == (500, 500)
    finally:
        _tracker.watch_stop()
        _saved.clear()


@pytest.mark.parametrize("sample", [1, 64])
def test_async_generators_asyncio_keeps_alive_to_close_are_counted_freed_once(sample):
    import asyncio

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            pass

    async def main():
        for _ in range(1000):
            g = agen()
            await g.__anext__()
            del g  # unfinished: its finaliser hands it to asyncio, which closes it later
        await asyncio.sleep(0.05)

    kind = type(agen())
    _tracker.watch_start(sample=sample)
    try:
        asyncio.run(main())
        gc.collect()
        new, free = _counts().get(kind, (0, 0))
        assert new == free
        if sample == 1:
            assert new == 1000
    finally:
        _tracker.watch_stop()


def test_a_finaliser_added_to_a_cached_class_is_checked_from_the_next_read():
    class Late:
        pass

    saved = []
    _tracker.watch_start(sample=1)
    try:
        Late()  # the class is cached
        Late.__del__ = lambda self: saved.append(self)
        _counts()  # a read (every monitor sample) takes it out
        for _ in range(1000):
            Late()
        saved.clear()
        assert _counts()[Late] == (1001, 1001)
    finally:
        _tracker.watch_stop()


def _followed_at(address: int, sample: int) -> bool:
    return ((address & 0xFFFFFFFF) * 0x9E3779B1) & 0xFFFFFFFF < (1 << 32) // sample


def test_a_class_made_where_a_class_died_unseen_keeps_its_counts():
    """Sampled watch-all does not see a class die whose address is not sampled. A
    new class made at that address counts in the dead one's row; the dead weak
    reference must not take the new class's counts away with the row."""
    sample = 64
    _tracker.watch_start(sample=sample)
    try:
        for _attempt in range(20):
            firsts = [type(f"First{i}", (), {}) for i in range(200)]
            objects = [cls() for cls in firsts for _ in range(3)]
            _counts()  # their rows are checked (given their weak references)
            dead = {id(cls) for cls in firsts if not _followed_at(id(cls), sample)}
            del objects, firsts
            gc.collect()
            seconds = [type(f"Second{i}", (), {}) for i in range(200)]
            again = [cls for cls in seconds if id(cls) in dead]
            if not again:
                del seconds
                gc.collect()
                continue
            kept = [cls() for cls in again for _ in range(100)]
            counts = _counts()
            assert all(counts[cls][0] - counts[cls][1] >= 100 for cls in again)
            del kept
            gc.collect()
            counts = _counts()
            assert all(counts[cls][0] == counts[cls][1] >= 100 for cls in again)
            return
        pytest.fail("no class was made at a dead class's address in 20 rounds of 200")
    finally:
        _tracker.watch_stop()


# Fails one calloc(n, 8) with n >= 64 when asked (the watch table's growth), and
# fills what realloc adds with 0x41, so that a field left unset shows.
_ALLOC_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <string.h>
int shim_fail_next = 0;
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
void *calloc(size_t n, size_t s) {
    static int in_init; static char boot[4096];
    if (!real_calloc) {
        if (in_init) { memset(boot, 0, sizeof boot); return boot; }
        in_init = 1; real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc"); in_init = 0;
    }
    if (shim_fail_next && s == 8 && n >= 64) { shim_fail_next = 0; return NULL; }
    return real_calloc(n, s);
}
void *realloc(void *p, size_t s) {
    if (!real_realloc) real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = real_realloc(p, s);
    if (q && s > old) memset((char *)q + old, 0x41, s - old);
    return q;
}
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("cc") is None, reason="needs Linux and cc")
def test_a_row_given_back_when_the_table_cannot_grow_holds_nothing(tmp_path):
    shim = tmp_path / "shim.so"
    source = tmp_path / "shim.c"
    source.write_text(_ALLOC_SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(source), "-ldl"], check=True)
    code = textwrap.dedent(
        f"""
        import ctypes, gc
        from memtracker_web import _tracker
        fail = ctypes.c_int.in_dll(ctypes.CDLL({str(shim)!r}), "shim_fail_next")
        _tracker.watch_start(sample=1)
        classes, objects = [], []
        while _tracker.watch_statistics()["types"] < 384:  # the table's next row makes it grow
            cls = type(f"C{{len(classes)}}", (), {{}})
            classes.append(cls)
            objects.append(cls())
        Late = type("Late", (), {{}})
        fail.value = 1
        late = Late()
        _tracker.watch_counts()  # the row given back is not released, nor freed twice
        assert _tracker.watch_statistics()["lost"] == 1, _tracker.watch_statistics()
        more = [type(f"M{{i}}", (), {{}})() for i in range(300)]
        counts = {{cls: (n, f) for cls, n, f in _tracker.watch_counts()}}
        assert all(counts[type(m)] == (1, 0) for m in more)
        _tracker.watch_stop()
        print("ok")
        """
    )
    env = dict(os.environ, LD_PRELOAD=str(shim))
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
