"""How the hook picks the events it must look at.

By default a tracked type (and its metaclass) carries our bit in tp_watched,
through a type watcher id; an audit hook marks the target of a tracked
object's ``__class__`` assignment. Without a watcher id or a working audit hook
the engine falls back to a byte filter. Both must count the same; the
scenarios below run under each."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import textwrap
import types

import pytest

import memtracker_web as mt
from memtracker_web import _tracker
from support import requires_engine

pytestmark = requires_engine


class Order:
    pass


class Other:
    pass


@contextlib.contextmanager
def _running(*types_):
    c = mt.Capture()
    for t in types_:
        c.track(t)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_the_engine_says_which_filter_it_uses(filter_mode):
    with _running(Order):
        state = _tracker.engine_state()
        assert state["filter"] == filter_mode
        # Order and its metaclass carry the bit; the byte filter marks nothing
        assert state["marked_types"] == (2 if filter_mode == "type-marks" else 0)
    _tracker._use_type_marks(True)
    assert _tracker.engine_state()["filter"] == "none"
    assert _tracker.engine_state()["marked_types"] == 0  # stopping unmarks


def test_switching_filters_while_installed_is_refused():
    with _running(Order):
        with pytest.raises(RuntimeError, match="stop captures"):
            _tracker._use_type_marks(False)


def test_counts_agree_under_both_filters(filter_mode):
    with _running(Order, dict) as c:
        keep = [Order() for _ in range(300)]
        temp = [Order() for _ in range(200)]
        dicts = [{"i": i} for i in range(150)]
        del temp
        assert c.count_for(Order) == 300
        assert c.count_for(dict) == 150
        del keep, dicts
        assert c.count_for(Order) == 0
        assert c.count_for(dict) == 0
        assert c.allocations(Order).new_count == 500


def test_reassigned_to_an_untracked_class_is_freed(filter_mode):
    with _running(Order) as c:
        objs = [Order() for _ in range(10)]
        for o in objs:
            o.__class__ = Other
        del o
        assert c.count_for(Order) == 10
        state = _tracker.engine_state()
        if filter_mode == "type-marks":
            assert state["reassignment_targets"] == 1
            assert state["marked_types"] == 3  # Order, type, Other
        del objs
        assert c.count_for(Order) == 0
        assert c.statistics()["tracked_objects"] == 0
    assert _tracker.engine_state()["reassignment_targets"] == 0
    assert _tracker.engine_state()["marked_types"] == 0


def test_reassignment_from_an_untracked_class_counts_nothing(filter_mode):
    with _running(Order) as c:
        o = Other()
        o.__class__ = Order
        assert c.count_for(Order) == 0
        assert _tracker.engine_state()["reassignment_targets"] == 0  # Other is not marked
        del o
        assert c.count_for(Order) == 0
        assert c.allocations(Order).free_count == 0


def test_a_failed_reassignment_keeps_its_error_and_the_counts(filter_mode):
    with _running(Order) as c:
        o = Order()
        with pytest.raises(TypeError, match="__class__ assignment"):
            o.__class__ = int
        assert type(o) is Order
        assert c.count_for(Order) == 1
        del o
        assert c.count_for(Order) == 0


def test_module_reassigned_both_ways(filter_mode):
    class Mod(types.ModuleType):
        pass

    with _running(types.ModuleType) as c:
        m = types.ModuleType("x")
        m.__class__ = Mod
        del m
        gc.collect()
        assert c.count_for(types.ModuleType) == 0
        assert c.statistics()["tracked_objects"] == 0


def test_a_subclass_of_a_marked_class_is_not_marked(filter_mode):
    class Child(Order):
        pass

    with _running(Order) as c:
        kids = [Child() for _ in range(50)]
        assert c.count_for(Order) == 0
        assert Child not in c
        del kids


def test_modifying_a_marked_class_keeps_counting(filter_mode):
    class Mutable:
        pass

    with _running(Mutable) as c:
        a = [Mutable() for _ in range(20)]
        Mutable.added = 1  # calls the type watcher of a marked class
        Mutable.__init__ = lambda self: None
        b = [Mutable() for _ in range(30)]
        assert c.count_for(Mutable) == 50
        del a, b
        assert c.count_for(Mutable) == 0


def test_a_dead_tracked_class_loses_its_mark_at_the_next_safe_point():
    def make():
        return type("Short", (), {})

    Short = make()
    c = mt.Capture()  # (not _running: its frame would keep Short alive)
    c.track(Short)
    c.track(Order)
    c.start()
    try:
        assert _tracker.engine_state()["marked_types"] == 3  # Short, Order, type
        objs = [Short() for _ in range(5)]
        del objs, Short
        gc.collect()
        c.track(Other)  # a safe point that resyncs the marks
        assert _tracker.engine_state()["marked_types"] == 3  # Order, Other, type
    finally:
        c.stop()


def test_watch_all_counts_exactly_beside_a_tracked_class(filter_mode):
    class Watched:
        pass

    with _running(Order) as c:
        _tracker.watch_start()
        try:
            w = [Watched() for _ in range(1000)]
            o = [Order() for _ in range(40)]
            del w[:300]
            counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
            assert counts[Watched] == (1000, 300)  # cached counts are folded in on reading
            assert counts[Order] == (40, 0)  # a tracked type's events are counted on the slow path
            assert c.count_for(Order) == 40
            del w, o
            counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
            assert counts[Watched] == (1000, 1000)
            assert counts[Order] == (40, 40)
        finally:
            _tracker.watch_stop()


def test_watch_all_cache_collisions_lose_no_counts():
    # many classes, so several share a cache entry and evict one another
    classes = [type(f"C{i}", (), {}) for i in range(3000)]
    _tracker.watch_start()
    try:
        objs = [cls() for _ in range(3) for cls in classes]
        counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
        assert all(counts[cls] == (3, 0) for cls in classes)
        del objs
        counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
        assert all(counts[cls] == (3, 3) for cls in classes)
    finally:
        _tracker.watch_stop()


def _sharing_one_cache_set(how_many: int) -> tuple[list[type], list[type]]:
    """``how_many`` classes whose type pointers share one pair of the watch cache's
    entries (the engine's index, (address >> 4) & 1023, and the one beside it), and
    the pool that keeps the others alive meanwhile."""
    pool = [type(f"Shared{i}", (), {}) for i in range(6000)]
    by_pair: dict[int, list[type]] = {}
    for cls in pool:
        by_pair.setdefault((id(cls) >> 4) & 1022, []).append(cls)
    group = max(by_pair.values(), key=len)
    assert len(group) >= how_many, "no cache pair shared by enough classes"
    return group[:how_many], pool


@pytest.mark.parametrize("sample", [1, 64])
def test_types_sharing_a_cache_set_are_counted_exactly_whichever_way_they_sit(sample):
    # Three and four hot types in one pair of entries: each event of one may find the
    # other in its way; the counts stay exact, and stay so after one of them dies.
    group, pool = _sharing_one_cache_set(4)
    _tracker.watch_start(sample=sample)  # (classes are counted exactly at any rate)
    try:
        for _ in range(500):
            for cls in group:
                made = cls()
                del made
        kept = [cls() for _ in range(30) for cls in group[:3]]
        counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
        assert [counts[cls] for cls in group] == [(530, 500)] * 3 + [(500, 500)]
        gone = group.pop()
        pool.remove(gone)
        del gone, cls, counts  # (the loop's name and the counts held it too)
        gc.collect()  # the class dies: its entry is dropped from either way
        for _ in range(200):
            for cls in group:
                made = cls()
                del made
        del kept
        counts = {t: (new, free) for t, new, free in _tracker.watch_counts()}
        assert [counts[cls] for cls in group] == [(730, 730)] * 3
        assert not any(t.__name__.startswith("Shared") and t not in pool for t in counts)
    finally:
        _tracker.watch_stop()


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_vetoed_audit_hook_falls_back_to_the_byte_filter():
    out = _run("""
        import sys
        def veto(event, args):
            if event == "sys.addaudithook":
                raise RuntimeError("no more hooks")   # CPython drops the new hook silently
        sys.addaudithook(veto)
        import memtracker_web as mt
        from memtracker_web import _tracker
        class A: pass
        class B: pass
        c = mt.Capture(); c.track(A); c.start()
        a = A(); a.__class__ = B
        before = c.count_for(A)
        del a
        print(_tracker.engine_state()["filter"], before, c.count_for(A))
        c.stop()
    """)
    assert out == "byte-filter 1 0"


def test_no_type_watcher_id_left_falls_back_to_the_byte_filter():
    pytest.importorskip("_testcapi")
    out = _run("""
        import _testcapi
        ids = []
        while True:
            try:
                ids.append(_testcapi.add_type_watcher(0))
            except RuntimeError:
                break
        import memtracker_web as mt
        from memtracker_web import _tracker
        class A: pass
        c = mt.Capture(); c.track(A); c.start()
        keep = [A() for _ in range(7)]
        print(len(ids), _tracker.engine_state()["filter"], c.count_for(A))
        c.stop()
    """)
    assert out.split()[1:] == ["byte-filter", "7"]
    assert int(out.split()[0]) >= 1


def test_marks_and_audit_hook_are_set_up_once_per_process():
    out = _run("""
        import memtracker_web as mt
        from memtracker_web import _tracker
        seen = []
        import sys
        sys.addaudithook(lambda event, args: seen.append(event) if event == "memtracker_web.probe" else None)
        class A: pass
        for _ in range(3):
            c = mt.Capture(); c.track(A); c.start(); c.stop()
        print(len(seen), _tracker.engine_state()["filter"])
    """)
    assert out == "1 none"


def test_engine_status_names_the_filter():
    assert mt.engine_status()["filter"] == "none"
    with _running(Order):
        assert mt.engine_status()["filter"] == "type-marks"
    assert mt.engine_status()["filter"] == "none"
