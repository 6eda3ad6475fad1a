"""The call tree read a piece at a time (CaptureCore.tree_update, the Tracker's
CallTreeView): what ``stats`` makes from the nodes it kept and the nodes made
since must be what it makes from the whole tree read afresh, through new nodes,
pruning, a reset, and another tree of the same type."""

from __future__ import annotations

import array
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtracker_web import Tracker, _tracker
from memtracker_web.core.tracker import CallTreeView, build_stats, stats_of_view
from support import requires_engine


class Obj:
    pass


def _sites(n: int) -> list:
    """n functions, each making one Obj on a line of its own, called through a shared caller."""
    source = "def make(keep, which):\n" + "".join(
        f"    if which == {k}:\n        keep.append(Obj())\n" for k in range(n)
    )
    namespace = {"Obj": Obj}
    exec(compile(source, "/srv/app/sites.py", "exec"), namespace)
    return namespace["make"]


def _fresh(tracker: Tracker, cls: type, limit: int | None, hotspots: int) -> dict:
    """Stats built from the whole tree read now, as before tree_update."""
    nodes, meta = tracker.capture._tree(cls)
    allocations = tracker.capture.allocations(cls)
    stats = build_stats(
        nodes, meta, allocations.new_count, allocations.retained_count, limit=limit, hotspot_limit=hotspots
    )
    stats["object_sample"] = allocations.sample
    return stats


@pytest.fixture
def c():
    """A running engine capture counting Obj."""
    core = _tracker.CaptureCore()
    core.track(Obj)
    core.start()
    yield core
    core.stop()


@requires_engine
def test_tree_update_gives_the_nodes_after_those_known_and_every_nodes_counts(c):
    c.analyse(Obj, depth=2)
    make = _sites(3)
    keep: list = []
    make(keep, 0)
    layout, start, places, counts, meta = c.tree_update(Obj, 0, 0)
    assert layout > 0 and start == 0 and meta["max_nodes"] == 10_000
    assert places[0] == (-1, "", 0, "")  # the root
    whole = c.tree(Obj)[0]
    assert places == [node[:4] for node in whole]
    assert list(array.array("Q", counts)) == [n for node in whole for n in (node[4], node[5], int(node[6]))]
    known = len(places)
    for _ in range(2):
        make(keep, 1)  # (one line calling, one line making: two nodes)
    again = c.tree_update(Obj, layout, known)
    assert again[0] == layout and again[1] == known
    whole = c.tree(Obj)[0]
    assert again[2] == [node[:4] for node in whole[known:]] and len(again[2]) == 2
    assert len(again[3]) == 3 * 8 * len(whole)
    # another layout, or more nodes known than there are: everything again
    assert c.tree_update(Obj, layout + 1, known)[1:3] == (0, [node[:4] for node in whole])
    assert c.tree_update(Obj, layout, len(whole) + 1)[1] == 0
    assert c.tree_update(Obj, layout, len(whole))[1:3] == (len(whole), [])
    c.unanalyse(Obj)
    assert c.tree_update(Obj, layout, 0) is None
    c.analyse(Obj, depth=2)  # another tree: another layout
    assert c.tree_update(Obj, layout, 1)[:2] == (c.tree_update(Obj, 0, 0)[0], 0)
    assert c.tree_update(Obj, 0, 0)[0] > layout
    with pytest.raises(TypeError):
        c.tree_update("Obj", 0, 0)
    with pytest.raises(OverflowError):
        c.tree_update(Obj, -1, 0)


@requires_engine
def test_pruning_gives_the_tree_a_new_layout(c):
    c.analyse(Obj, depth=2, max_nodes=16)
    make = _sites(40)
    keep: list = []
    make(keep, 0)
    layout, _, places, _, _ = c.tree_update(Obj, 0, 0)
    for which in range(40):
        make(keep, which)
    pruned = c.tree_update(Obj, layout, len(places))  # past 90% of 16 nodes: pruned first
    assert pruned[0] != layout and pruned[1] == 0 and pruned[4]["pruned_nodes"] > 0
    assert pruned[2] == [node[:4] for node in c.tree(Obj)[0]]


@requires_engine
@pytest.mark.parametrize("limit, hotspots", [(3, 0), (10, 20), (None, 5)])
def test_stats_from_the_kept_view_are_the_stats_of_the_whole_tree(limit, hotspots):
    tracker = Tracker(depth=3, max_nodes=24)
    tracker.track_with_analysis(Obj)
    try:
        make = _sites(30)
        keep: list = []
        layouts = set()
        for round_ in range(12):
            for which in range(round_ * 3 % 30, round_ * 3 % 30 + 4 + round_):
                make(keep, which % 30)
            del keep[: len(keep) // 3]  # some die: retained and total part
            kept = tracker.stats(Obj, limit=limit, hotspots=hotspots)
            assert kept == _fresh(tracker, Obj, limit, hotspots)
            layouts.add(tracker._views[id(Obj)].layout)
        assert len(layouts) > 1  # (pruned on the way: 30 sites, 24 nodes)
        tracker.capture.stop()
        tracker.capture.clear()
        tracker.capture.start()
        assert tracker.stats(Obj, limit=limit, hotspots=hotspots) == _fresh(tracker, Obj, limit, hotspots)
        tracker.stop_analysis(Obj)
        assert id(Obj) not in tracker._views and tracker.stats(Obj) is None
    finally:
        tracker.stop()


@requires_engine
def test_a_view_left_by_a_type_no_longer_analysed_goes():
    tracker = Tracker(depth=2)

    class Other:
        pass

    tracker.track_with_analysis(Obj)
    tracker.track_with_analysis(Other)
    try:
        keep = [Obj(), Other()]
        assert tracker.stats(Obj) is not None and tracker.stats(Other) is not None
        tracker.capture._unanalyse(Obj)  # behind the tracker's back: its view stays for now
        tracker._analysis.pop(id(Obj))
        assert tracker.stats(Obj) is None and id(Obj) not in tracker._views
        tracker.untrack(Other)
        assert tracker._views == {}
        del keep
    finally:
        tracker.stop()


def _meta(scale: int) -> dict:
    return {"sample_every": scale, "depth": 4, "max_nodes": 64, "pruned_nodes": 0, "pruned_allocations": 0, **_NONE}


_NONE = {"overflow": 0, "unattributed": 0}


def test_a_view_takes_only_the_nodes_after_those_it_has():
    view = CallTreeView()
    view.update(5, 0, [(-1, "", 0, ""), (0, "/srv/app/a.py", 3, "f")])
    with pytest.raises(ValueError, match="read from node 3 under layout 5, 2 known"):
        view.update(5, 3, [(2, "/srv/app/a.py", 4, "g")])
    view.update(5, 2, [(1, "/srv/app/a.py", 4, "g")])
    assert len(view) == 3 and list(view.depth) == [0, 1, 2] and list(view.app_depth) == [-1, 0, 0]
    view.update(6, 0, [(-1, "", 0, "")])  # another layout: from the start
    assert len(view) == 1 and view.layout == 6
    with pytest.raises(ValueError, match="6 counts for 1 call tree nodes"):
        stats_of_view(view, array.array("Q", [0] * 6), _meta(1), 0, 0)


_FILES = ["/srv/app/views.py", "/srv/app/models.py", "/usr/lib/python3.13/json/decoder.py", "<frozen x>"]


@st.composite
def _trees(draw):
    """A call tree as the engine gives it: each node after its parent."""
    n = draw(st.integers(1, 40))
    nodes = [(-1, "", 0, "", draw(st.integers(0, 5)), 0, False)]
    for index in range(1, n):
        total = draw(st.integers(0, 9))
        nodes.append(
            (
                draw(st.integers(0, index - 1)),
                draw(st.sampled_from(_FILES)),
                draw(st.integers(1, 4)),
                draw(st.sampled_from(["f", "g"])),
                total,
                draw(st.integers(0, total)),
                draw(st.booleans()),
            )
        )
    nodes[0] = (*nodes[0][:5], draw(st.integers(0, nodes[0][4])), False)
    return nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=_trees(), cut=st.integers(0, 40), scale=st.sampled_from([1, 64]), limit=st.sampled_from([None, 1, 3]))
def test_a_view_built_in_two_reads_ranks_as_one_built_at_once(nodes, cut, scale, limit):
    meta = _meta(scale)
    cut = min(max(cut, 1), len(nodes))
    view = CallTreeView()
    view.update(1, 0, [node[:4] for node in nodes[:cut]])
    view.update(1, cut, [node[:4] for node in nodes[cut:]])
    counts = array.array("Q", [n for node in nodes for n in (node[4], node[5], int(node[6]))])
    in_two = stats_of_view(view, counts, meta, 50, 20, limit=limit, hotspot_limit=5)
    assert in_two == build_stats(nodes, meta, 50, 20, limit=limit, hotspot_limit=5)


def test_a_view_interrupted_part_way_starts_again_from_the_first_node(monkeypatch):
    from memtracker_web.core import tracker as tracker_module

    view = CallTreeView()
    view.update(3, 0, [(-1, "", 0, ""), (0, "/srv/app/a.py", 2, "f")])

    def interrupted(filename: str) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(tracker_module, "is_app_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        view.update(3, 2, [(0, "/srv/app/b.py", 2, "f")])
    # nothing half added: the next read (layout 0 now) is a whole one
    assert len(view) == 0 and view.layout == 0
    assert [len(column) for column in (view.filenames, view.depth, view.app, view.ours)] == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="from node 2 under layout 3, 0 known"):
        view.update(3, 2, [(0, "/srv/app/b.py", 2, "f")])


@requires_engine
def test_a_callback_reading_stats_inside_a_read_leaves_the_kept_view_as_it_was():
    # Callbacks run where events are flushed. A thread makes objects and reads
    # while the main thread waits in join(), where the engine's pending call (the
    # main thread's) cannot run: the events are still queued when the thread reads,
    # and its read's flush runs the callback, which reads too.
    tracker = Tracker(depth=3)
    inner: list = []

    def callback(cls, event, data):
        if event == "new":
            reading = tracker._reading
            inner.append((threading.current_thread().name, reading, tracker.stats(Obj, limit=None, hotspots=0)))

    tracker.track_with_analysis(Obj, callback=callback)
    make = _sites(12)
    keep: list = []
    outer: list = []

    def work(which: int, go: threading.Event) -> None:
        go.wait()  # (until the main thread lets go of the GIL, in join())
        make(keep, which)
        outer.append(tracker.stats(Obj, limit=None, hotspots=0))

    try:
        for which in range(12):
            go = threading.Event()
            thread = threading.Thread(target=work, args=(which, go), name=f"reader-{which}")
            thread.start()
            go.set()
            thread.join()
            assert outer[-1] == _fresh(tracker, Obj, None, 0)
        # each callback ran inside its thread's read (the only read under way), and read as well
        assert [(name, reading, stats is not None) for name, reading, stats in inner] == [
            (f"reader-{which}", 1, True) for which in range(12)
        ]
    finally:
        tracker.stop()


@requires_engine
def test_a_read_that_fails_leaves_no_read_under_way(monkeypatch):
    tracker = Tracker(depth=2)
    tracker.track_with_analysis(Obj)
    try:
        keep = [Obj()]

        def fails(*args):
            raise MemoryError

        with monkeypatch.context() as patch:
            patch.setattr(tracker.capture, "_tree_update", fails)
            with pytest.raises(MemoryError):
                tracker.stats(Obj)
        assert tracker._reading == 0
        # (a read after it is an outer one again: it keeps its view)
        assert tracker.stats(Obj) is not None and len(tracker._views[id(Obj)]) > 1
        del keep
    finally:
        tracker.stop()


def test_the_truncated_flag_is_the_shown_paths_own():
    nodes = [
        (-1, "", 0, "", 0, 0, False),
        (0, "/srv/app/views.py", 10, "index", 4, 4, False),
        (1, "/srv/app/models.py", 20, "load", 9, 9, True),  # absorbed pruned children
        (0, "/srv/app/views.py", 30, "other", 2, 2, False),
    ]
    shown = build_stats(nodes, _meta(1), 15, 15, limit=None)["top_paths"]
    assert [(p["frames"][0]["lineno"], p.get("truncated", False)) for p in shown] == [
        (20, True),
        (10, False),
        (30, False),
    ]


def test_a_view_is_the_monitors_own_bookkeeping():
    from memtracker_web.monitor.retention import only_in_own_tables, own_table_refs

    tracker = Tracker(depth=2)
    view = tracker._views[0] = CallTreeView()
    view.update(1, 0, [(-1, "", 0, ""), (0, "/srv/app/a.py", 2, "f")])
    own = own_table_refs([tracker])
    assert own is not None
    columns = [view.parents, view.depth, view.app, view.kinds, view.filenames]
    assert only_in_own_tables(columns, own) == [True] * 5
    # (its strings are the code objects': the walk takes no step for each)
    assert id(view.filenames[1]) not in own.refs and id(view.functions[1]) not in own.refs
