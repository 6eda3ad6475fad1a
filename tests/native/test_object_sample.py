"""A tracked built-in followed by address sample: one object in about N is tabled
and counted (``Capture.track(cls, sample_objects=N)``,
``Tracker.track_with_analysis(cls, sample_every=S, sample_objects=N)``).

An object keeps its address while it lives, so its creation and its death are
both followed or both not; the counts are the followed objects' times N, and an
object not followed touches no table."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading

import pytest

import memtracker_web as mt
from memtracker_web import _tracker
from support import requires_engine

pytestmark = requires_engine

HASH_MULT = 0x9E3779B1  # MT_WATCH_HASH_MULT


def followed(obj: object, n: int) -> bool:
    """Whether the engine follows ``obj`` at one object in ``n`` (its address hash)."""
    limit = (1 << 32) // n
    return ((id(obj) & 0xFFFFFFFF) * HASH_MULT) & 0xFFFFFFFF < limit


def make_payload(i: int) -> dict:
    return {"i": i}  # the allocating line of these tests' dicts


class Plain:
    pass


class Meta(type):
    pass


def test_counts_are_the_followed_objects_times_n(capture):
    capture.track(dict, sample_objects=16)
    capture.start()
    kept = [make_payload(i) for i in range(200_000)]
    raw_new, raw_free, _ = capture._core.counts(dict)
    # exactly the kept dicts whose address is followed (the loop's own dicts die)
    assert raw_new - raw_free == sum(followed(d, 16) for d in kept)
    allocations = capture.allocations(dict)
    assert allocations.sample == 16 and allocations.estimated
    assert allocations.retained_count == (raw_new - raw_free) * 16
    assert capture.count_for(dict) == allocations.retained_count
    assert abs(allocations.retained_count - 200_000) < 200_000 * 0.05
    del kept
    gc.collect()
    raw_new, raw_free, _ = capture._core.counts(dict)
    assert raw_new == raw_free  # every followed dict's death seen
    assert capture.count_for(dict) == 0


def test_the_table_holds_only_followed_objects(capture):
    capture.track(dict, sample_objects=8)
    capture.start()
    kept = [make_payload(i) for i in range(20_000)]
    sampled = capture.sample(dict, 1000)
    assert sampled and all(followed(d, 8) for d in sampled)
    assert capture.statistics()["tracked_objects"] == capture._core.live(dict)
    del kept, sampled


def test_every_followed_object_has_its_path_when_both_rates_agree():
    tracker = mt.Tracker(depth=4)
    tracker.track_with_analysis(dict, sample_every=16, sample_objects=16)
    kept = [make_payload(i) for i in range(50_000)]
    stats = tracker.stats(dict, limit=1)
    tracker.stop()
    assert stats["object_sample"] == 16 and stats["sample_every"] == 16 and stats["estimated"]
    top = stats["top_paths"][0]
    assert top["frames"][0]["function"] == "make_payload"
    # every kept dict followed has its path (the live count may hold a dict made elsewhere meanwhile)
    assert top["count"] == sum(followed(d, 16) for d in kept) * 16
    assert stats["live_count"] - 16 * 16 <= top["count"] <= stats["live_count"]
    del kept


def test_one_path_in_s_over_n_of_the_followed_objects():
    tracker = mt.Tracker(depth=4)
    tracker.track_with_analysis(dict, sample_every=64, sample_objects=16)
    kept = [make_payload(i) for i in range(50_000)]
    nodes, meta = tracker.capture._tree(dict)
    raw_new = tracker.capture._core.counts(dict)[0]
    tracker.stop()
    assert meta["sample_every"] == 64
    # one followed object in about 4 gets its path, at random gaps (one made with no
    # Python frame is unattributed)
    expected = raw_new / 4
    assert abs(sum(n[4] for n in nodes) + meta["unattributed"] - expected) <= 0.1 * expected
    del kept


@pytest.mark.parametrize("cls", [Meta, type])
def test_types_whose_objects_are_classes_count_every_object(capture, cls):
    capture.track(cls, sample_objects=16)
    assert capture.object_sample(cls) == 1
    capture._analyse(cls, depth=4, sample_every=16, max_nodes=1000, object_sample=16)
    assert capture.object_sample(cls) == 1


class Other:
    pass


@pytest.mark.parametrize("watch", [None, 1, 64], ids=["no watch-all", "exact watch-all", "sampled watch-all"])
@pytest.mark.parametrize("analysed", [False, True], ids=["counted", "analysed"])
def test_a_class_is_followed_by_address_whatever_class_its_objects_take(capture, watch, analysed):
    """A class samples its objects like a built-in: an object keeps its address
    whatever ``__class__`` says, so one followed at its creation is in the table,
    where its death is found under any class; one not followed touches nothing."""
    if watch is not None:
        _tracker.watch_start(sample=watch)
    try:
        capture.track(Plain, sample_objects=8)
        if analysed:
            capture._analyse(Plain, depth=4, sample_every=16, max_nodes=1000, object_sample=8)
        capture.track(Other)  # every object
        assert capture.object_sample(Plain) == 8
        capture.start()
        kept = [Plain() for _ in range(20_000)]
        assert capture._core.live(Plain) == sum(followed(o, 8) for o in kept) > 0
        for o in kept[::2]:
            o.__class__ = Other
        others = [Other() for _ in range(1000)]
        for o in others[::2]:
            o.__class__ = Plain
        # each counted by its class at creation, whatever it is now
        assert capture._core.live(Plain) == sum(followed(o, 8) for o in kept)
        assert capture._core.live(Other) == 1000
        assert all(followed(o, 8) for o in capture.sample(Plain, 10_000))
        del kept[::3], others[1::3]
        gc.collect()
        assert capture._core.live(Plain) == sum(followed(o, 8) for o in kept)
        assert capture._core.live(Other) == len(others)
        del kept, others, o
        gc.collect()
        assert capture._core.live(Plain) == capture._core.live(Other) == 0
        assert capture.statistics()["tracked_objects"] == 0
    finally:
        if watch is not None:
            _tracker.watch_stop()


def test_another_interpreters_objects_of_a_sampled_built_in_are_not_counted():
    """A built-in's type is shared with interpreters that run under a GIL of their
    own: the objects of it a slot follows take the path that asks which interpreter
    this is, and another's are neither counted nor tabled."""
    code = """
        import _interpreters, gc, threading
        from memtracker_web import _tracker
        capture = _tracker.CaptureCore()
        capture.track(bytearray, object_sample=8)
        capture.start()
        iid = _interpreters.create()
        run = threading.Thread(target=_interpreters.exec, args=(iid, "keep = [bytearray(3) for i in range(200000)]"))
        run.start()
        run.join()
        print(capture.live(bytearray), capture.statistics()["tracked_objects"])
        _interpreters.destroy(iid)
        gc.collect()
        print(capture.live(bytearray), capture.statistics()["tracked_objects"])
        capture.stop()
    """
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["0", "0", "0", "0"]  # (before the fix the followed ones were counted)


def test_a_callback_counts_every_object(capture):
    capture.track(dict, sample_objects=16)
    assert capture.object_sample(dict) == 16
    capture.track(dict, callback=lambda cls, event, data: None)
    assert capture.object_sample(dict) == 1
    capture.track(set, callback=lambda cls, event, data: None, sample_objects=16)
    assert capture.object_sample(set) == 1


def test_a_change_of_sample_starts_the_counts_over_and_none_keeps_it(capture):
    capture.track(dict)
    capture.start()
    kept = [make_payload(i) for i in range(1000)]
    assert capture.count_for(dict) == 1000
    capture.track(dict)  # None: as it is
    assert capture.count_for(dict) == 1000 and capture.object_sample(dict) == 1
    capture.track(dict, sample_objects=8)
    assert capture.allocations(dict) == mt.Allocations(0, 0, 0, 8)
    assert capture.statistics()["tracked_objects"] == 0  # the exact table went with the old rule
    more = [make_payload(i) for i in range(8000)]
    assert capture.count_for(dict) == sum(followed(d, 8) for d in more) * 8
    capture.track(dict, sample_objects=1)
    assert capture.allocations(dict) == mt.Allocations(0, 0, 0, 1)
    del kept, more


def test_stopping_analysis_keeps_the_sample():
    tracker = mt.Tracker(depth=4)
    try:
        tracker.track_with_analysis(dict, sample_every=32, sample_objects=8)
        kept = [make_payload(i) for i in range(8000)]
        before = tracker.capture.allocations(dict)
        assert tracker.stop_analysis(dict)
        after = tracker.capture.allocations(dict)
        # not started over (a followed dict made or freed meanwhile may move them)
        assert after.sample == before.sample == 8 and after.new_count >= before.new_count > 0
        assert tracker.stats(dict) is None
        del kept
    finally:
        tracker.stop()


def test_options_are_checked():
    tracker = mt.Tracker()
    with pytest.raises(ValueError, match="sample_objects must be an int dividing sample_every"):
        tracker.track_with_analysis(dict, sample_every=8, sample_objects=3)
    with pytest.raises(ValueError, match="sample_objects must be an int dividing sample_every"):
        tracker.track_with_analysis(dict, sample_every=8, sample_objects=16)
    with pytest.raises(ValueError, match="sample_objects must be an int dividing sample_every"):
        tracker.track_with_analysis(dict, sample_every=8, sample_objects=True)
    with pytest.raises(ValueError, match="sample_objects must be an int from 1 to 65536"):
        tracker.track(dict, sample_objects=0)
    with pytest.raises(ValueError, match="sample_objects must be an int from 1 to 65536"):
        tracker.capture.track(dict, sample_objects=1 << 17)
    core = _tracker.CaptureCore()
    core.track(dict)
    with pytest.raises(ValueError, match="object_sample must divide sample_every"):
        core.analyse(dict, sample_every=8, object_sample=3)
    with pytest.raises(ValueError, match="object_sample must be between 1 and 65536, got 131072"):
        core.analyse(dict, sample_every=1 << 17, object_sample=1 << 17)  # (as track refuses it)
    core.analyse(dict, sample_every=8, object_sample=4)
    with pytest.raises(ValueError, match="object_sample must divide the type's sample_every"):
        core.track(dict, object_sample=16)
    tracker.stop()


def test_watch_all_counts_every_dict_beside_a_sampled_one():
    """Exact watch-all must see every dict: the tracker's shortcut for objects it does
    not follow is off then."""
    tracker = mt.Tracker(depth=4)
    _tracker.watch_start(sample=1)
    try:
        tracker.track_with_analysis(dict, sample_every=64, sample_objects=64)
        gc.collect()
        gc.disable()  # (no older dict freed in the window)
        before = dict((cls, n) for cls, n, f in _tracker.watch_counts()).get(dict, 0)
        kept = [make_payload(i) for i in range(10_000)]
        after = dict((cls, n) for cls, n, f in _tracker.watch_counts()).get(dict, 0)
    finally:
        gc.enable()
        _tracker.watch_stop()
        tracker.stop()
    assert 10_000 <= after - before < 10_100  # dicts made: every one
    del kept


def test_sampled_watch_all_and_a_sampled_dict_both_estimate():
    tracker = mt.Tracker(depth=4)
    _tracker.watch_start(sample=64)
    try:
        tracker.track_with_analysis(dict, sample_every=64, sample_objects=64)
        # the tracker's note of the analysis: a dict made once the capture followed dicts
        # (counted one time in 64, before watch-all's first read)
        note = tracker._analysis[id(dict)]
        gc.collect()
        gc.disable()  # (no older dict freed in the window: the capture would not count it)
        # (read without making a dict: one alive here, followed one time in 64, would be
        # counted by the capture beside kept's)
        before = next((n - f for cls, n, f in _tracker.watch_counts() if cls is dict), 0)
        kept = [make_payload(i) for i in range(200_000)]
        after = next((n - f for cls, n, f in _tracker.watch_counts() if cls is dict), 0)
        raw_new, raw_free, _ = tracker.capture._core.counts(dict)
    finally:
        gc.enable()
        _tracker.watch_stop()
        tracker.stop()
    # the same hash and rate: the same dicts followed by both (watch-all's counts are raw)
    assert raw_new - raw_free - followed(note, 64) == sum(followed(d, 64) for d in kept)
    assert after - before == raw_new - raw_free - followed(note, 64)
    assert abs((after - before) * 64 - 200_000) < 200_000 * 0.1
    del kept


def test_threads_gc_and_changes_of_sample_keep_the_table_and_counts_in_step():
    capture = mt.Capture()
    capture.track(dict, sample_objects=4)
    capture.track(tuple, sample_objects=2)
    capture.start()
    stop = threading.Event()

    def churn(seed: int) -> None:
        kept: list = []
        i = 0
        while not stop.is_set():
            kept.append({"seed": seed, "i": (i,)})
            if len(kept) > 500:
                del kept[: 250 + seed]
            i += 1
            if i % 1000 == 0:
                gc.collect()

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        for round_ in range(40):
            n = (1, 2, 4, 8)[round_ % 4]
            capture.track(dict, sample_objects=n)
            if round_ % 5 == 0:
                capture._analyse(tuple, depth=4, sample_every=8, max_nodes=1000, object_sample=2)
            elif round_ % 5 == 2:
                capture._unanalyse(tuple)
            gc.collect()
    finally:
        stop.set()
        for t in threads:
            t.join()
    gc.collect()
    # (read while running: the table and the counts of every slot agree)
    assert capture.statistics()["tracked_objects"] == capture._core.live(dict) + capture._core.live(tuple)
    capture.stop()


class Swapped:
    pass


class Cyclic:
    def __init__(self) -> None:
        self.me = self  # freed by the collector


def test_threads_class_swaps_cycles_and_changes_of_sample_keep_a_class_table_in_step():
    """Classes sampled by address under exact watch-all, with objects changing class
    both ways and dying in cycles on three threads while the main thread changes
    the sample: the table and the counts agree, and once every object is gone
    every count is back to 0."""
    _tracker.watch_start(sample=1)
    capture = mt.Capture()
    capture.track(Plain, sample_objects=4)
    capture.track(Swapped, sample_objects=2)
    capture.track(Cyclic, sample_objects=8)
    capture.start()
    stop = threading.Event()
    survivors: list = []

    def churn(seed: int) -> None:
        kept: list = []
        survivors.append(kept)
        i = 0
        while not stop.is_set():
            obj = Plain() if i % 2 else Swapped()
            if i % 3 == 0:
                obj.__class__ = Swapped if type(obj) is Plain else Plain
            kept.append(obj)
            Cyclic()
            if len(kept) > 500:
                del kept[: 250 + seed]
            i += 1
            if i % 1000 == 0:
                gc.collect()

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
    try:
        for t in threads:
            t.start()
        for round_ in range(40):
            capture.track(Plain, sample_objects=(1, 2, 4, 8)[round_ % 4])
            if round_ % 5 == 0:
                capture._analyse(Swapped, depth=4, sample_every=8, max_nodes=1000, object_sample=2)
            elif round_ % 5 == 2:
                capture._unanalyse(Swapped)
            gc.collect()
        stop.set()
        for t in threads:
            t.join()
        gc.collect()
        assert sum(map(len, survivors)) > 0
        assert capture.statistics()["tracked_objects"] == sum(
            capture._core.live(cls) for cls in (Plain, Swapped, Cyclic)
        )
        survivors.clear()
        gc.collect()
        # every object is gone: each count is back to 0, the table is empty
        assert [capture._core.live(cls) for cls in (Plain, Swapped, Cyclic)] == [0, 0, 0]
        assert capture.statistics()["tracked_objects"] == 0
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        capture.stop()
        _tracker.watch_stop()


def test_analysis_without_a_sample_keeps_the_types():
    tracker = mt.Tracker(depth=4)
    tracker.track(dict, sample_objects=8)
    try:
        _analysis_keeps_the_sample(tracker)
    finally:
        tracker.stop()


def _analysis_keeps_the_sample(tracker):
    kept = [make_payload(i) for i in range(8000)]
    before = tracker.capture.allocations(dict)
    tracker.track_with_analysis(dict, sample_every=16)
    after = tracker.capture.allocations(dict)
    assert after.sample == before.sample == 8
    assert after.new_count >= before.new_count > 0  # not started over (the call's own dicts may add)
    with pytest.raises(ValueError, match="followed one object in 8: sample_every \\(4\\) must be a multiple"):
        tracker.track_with_analysis(dict, sample_every=4)
    tracker.track_with_analysis(set)  # not tracked yet: every object
    assert tracker.capture.object_sample(set) == 1
    del kept
