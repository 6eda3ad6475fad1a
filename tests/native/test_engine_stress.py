"""Stress of the C engine through its Python API (run the suite under python -X dev)."""

from __future__ import annotations

import gc
import random
import threading
import weakref

import pytest

import memtracker_web as mt
from memtracker_web import _tracker
from support import requires_engine


class Node:
    def __init__(self, other=None):
        self.other = other


@requires_engine
def test_watch_all_counts_net_allocations_and_forgets_dead_types():
    _tracker.watch_start()
    try:

        class Growing:
            pass

        keep = [Growing() for _ in range(321)]
        churn = [Growing() for _ in range(50)]
        del churn
        counts = {cls: (new, free) for cls, new, free in _tracker.watch_counts()}
        assert counts[Growing] == (371, 50)
        before = _tracker.watch_statistics()["types"]
        refs = []
        for i in range(400):
            cls = type(f"Temp{i}", (), {})
            objs = [cls() for _ in range(3)]
            del objs
            refs.append(weakref.ref(cls))
            del cls
        gc.collect()
        assert all(r() is None for r in refs)  # the watch table kept no type alive
        after = _tracker.watch_statistics()["types"]
        assert after - before < 50  # 400 dead classes would have added 400 rows
        names = {cls.__name__ for cls, _, _ in _tracker.watch_counts()}
        assert not any(name.startswith("Temp") for name in names)
        del keep
    finally:
        _tracker.watch_stop()
    assert _tracker.watch_counts() == []


@requires_engine
def test_captures_started_and_stopped_while_threads_allocate():
    stop = threading.Event()
    errors = []

    def allocate():
        try:
            rng = random.Random(1)
            keep = []
            while not stop.is_set():
                keep.append(Node(Node()))
                if len(keep) > 500:
                    del keep[: rng.randint(1, 500)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=allocate) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(2)
        for cycle in range(60):
            capture = mt.Capture()
            capture.track(Node)
            if cycle % 3 == 0:
                capture.track(dict)
            capture.start()
            if cycle % 4 == 0:
                _tracker.watch_start()
            if cycle % 5 == 0:
                gc.collect()
            mine = [Node() for _ in range(rng.randint(0, 50))]
            assert capture.count_for(Node) >= len(mine)
            assert capture.allocations(Node).retained_count == capture.count_for(Node)
            capture.stop()
            _tracker.watch_stop()
            del mine, capture
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert mt.engine_status()["installed"] is False


@requires_engine
@pytest.mark.parametrize("watch", [None, 1, 64], ids=["no-watch-all", "exact-watch-all", "sampled-watch-all"])
@pytest.mark.parametrize("sample_every", [1, 8], ids=["every-path", "paths-1-in-8"])
def test_analysis_under_threads_and_gc_keeps_exact_counts(watch, sample_every):
    # (each way a tracked class's event may take: the hook's shortcut for one capture,
    # with or without watch-all counting it, and the full path for an object whose path is taken)
    if watch is not None:
        _tracker.watch_start(sample=watch)
    tracker = mt.Tracker(depth=8)
    tracker.track_with_analysis(Node, max_nodes=64, sample_every=sample_every)
    kept = []
    lock = threading.Lock()

    def work(seed):
        rng = random.Random(seed)
        local = []
        for i in range(5000):
            n = Node(Node()) if rng.random() < 0.5 else Node()
            if i % 10 == 0:
                local.append(n)
        with lock:
            kept.extend(local)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for _ in range(20):
            tracker.stats(Node)  # prunes at safe points while threads allocate
            gc.collect()
        for t in threads:
            t.join()
        stats = tracker.stats(Node)
        live = sum(1 + (n.other is not None) for n in kept)
        assert stats["live_count"] == live
        if sample_every == 1:
            assert stats["retained_allocations"] == live
        else:
            assert stats["estimated"] and stats["retained_allocations"] % sample_every == 0
        assert stats["call_tree"]["nodes"] <= 64
        if watch is not None:
            new, free = next((n, f) for cls, n, f in _tracker.watch_counts() if cls is Node)
            assert new - free == live  # a class: counted exactly by watch-all, sampled or not
        kept.clear()
        stats = tracker.stats(Node)
        assert stats["live_count"] == 0 and stats["retained_allocations"] == 0
        if watch is not None:
            new, free = next((n, f) for cls, n, f in _tracker.watch_counts() if cls is Node)
            assert new == free
    finally:
        tracker.stop()
        _tracker.watch_stop()


@requires_engine
def test_many_dynamic_classes_tracked_with_analysis_and_callbacks():
    tracker = mt.Tracker(depth=4)
    seen = []
    try:
        for i in range(200):
            cls = type(f"Dyn{i}", (Node,), {})
            tracker.track_with_analysis(cls, callback=lambda c, e, d: seen.append(e))
            objs = [cls() for _ in range(5)]
            assert tracker.count(cls) == 5
            del objs
            tracker.capture.flush()
            assert tracker.untrack(cls) is True
            del cls
        gc.collect()
        assert seen.count("new") == 1000 and seen.count("free") == 1000
        assert len(tracker.capture) == 0
    finally:
        tracker.stop()


@requires_engine
@pytest.mark.parametrize("sample", [1, 64], ids=["exact", "sampled"])
@pytest.mark.parametrize("marks", [True, False], ids=["type-marks", "byte-filter"])
def test_threads_reassigning_classes_under_watch_all_and_restarts(marks, sample):
    """4 threads create tracked objects, move half of them to untracked (and
    freshly made) classes, and drop them, while the main thread restarts a
    second capture and watch-all: the first capture's counts stay exact."""
    _tracker._use_type_marks(marks)
    tracked = mt.Capture()
    tracked.track(Node)
    tracked.start()
    errors = []
    kept = [[] for _ in range(4)]

    def work(k):
        try:
            rng = random.Random(k)
            for round_ in range(40):
                spare = type(f"Spare{k}_{round_}", (), {"__init__": Node.__init__})
                objs = [Node() for _ in range(50)]
                for o in objs[::2]:
                    o.__class__ = spare if rng.random() < 0.5 else Other
                kept[k].extend(objs[:5])
                del objs, o
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    other = mt.Capture()
    other.track(dict)
    for i in range(30):
        other.start()
        if i % 3 == 0:
            _tracker.watch_start(sample=sample)
        _ = [{} for _ in range(20)]
        other.stop()
        if i % 3 == 2:
            _tracker.watch_stop()
    for t in threads:
        t.join()
    _tracker.watch_stop()
    try:
        assert not errors
        assert tracked.count_for(Node) == 4 * 40 * 5
        assert tracked.allocations(Node).new_count == 4 * 40 * 50
        kept.clear()
        gc.collect()
        assert tracked.count_for(Node) == 0
        assert tracked.statistics()["tracked_objects"] == 0
    finally:
        tracked.stop()
        _tracker._use_type_marks(True)


class Other:
    def __init__(self, other=None):
        self.other = other


@requires_engine
def test_sampling_live_objects_while_threads_make_and_drop_them_and_cycles_are_collected():
    capture = mt.Capture()
    capture.track(Node)
    capture.start()
    stop = threading.Event()
    errors = []

    def churn(seed):
        rnd = random.Random(seed)
        kept = []
        try:
            while not stop.is_set():
                kept.extend(Node(Node()) for _ in range(rnd.randint(1, 50)))
                a, b = Node(), Node()
                a.other, b.other = b, a  # a cycle only the collector frees
                del a, b
                if len(kept) > 2000:
                    del kept[: rnd.randint(0, 1500)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for round_ in range(300):
            picked = capture.sample(Node, 50)
            assert all(type(obj) is Node for obj in picked)
            sizes = capture.live_bytes(Node, sample=32)
            assert sizes is not None and sizes[0] >= 0
            del picked
            if round_ % 25 == 0:
                gc.collect()
    finally:
        stop.set()
        for t in threads:
            t.join()
        capture.stop()
    assert errors == []
