"""Call-path analysis: exact allocation sites, retained vs total, bounds."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import sysconfig
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memtracker_web as mt
import support
from memtracker_web.core.tracker import display_path
from support import requires_engine

HERE = display_path(__file__)


class Item:
    pass


def line_of(marker: str) -> int:
    return support.line_of(__file__, marker)


_cache: list = []


def leak_items(n):
    for _ in range(n):
        _cache.append(Item())  # LEAK-SITE


def churn_items(n):
    for _ in range(n):
        Item()  # CHURN-SITE


@pytest.fixture
def tracker():
    t = mt.Tracker(depth=10)
    yield t
    t.stop()
    _cache.clear()


@requires_engine
def test_leaking_function_is_the_top_path_with_exact_line(tracker):
    tracker.track_with_analysis(Item)
    churn_items(500)
    leak_items(300)
    stats = tracker.stats(Item)
    assert stats["live_count"] == 300
    assert stats["total_allocations"] == 800
    assert stats["retained_allocations"] == 300
    top = stats["top_paths"][0]
    assert top["count"] == 300 and top["total_count"] == 300
    assert top["path"][0] == f"{HERE}:{line_of('LEAK-SITE')} in leak_items"
    assert top["frames"][0] == {"filename": HERE, "lineno": line_of("LEAK-SITE"), "function": "leak_items"}
    assert top["frames"][1]["function"] == "test_leaking_function_is_the_top_path_with_exact_line"
    churn = [p for p in stats["top_paths"] if p["frames"][0]["lineno"] == line_of("CHURN-SITE")]
    assert churn[0]["count"] == 0 and churn[0]["total_count"] == 500
    hot = {(h["function"], h["lineno"]): h for h in stats["hotspots"]}
    assert hot[("leak_items", line_of("LEAK-SITE"))]["count"] == 300
    assert hot[("churn_items", line_of("CHURN-SITE"))]["total_count"] == 500
    json.dumps(stats)


@requires_engine
def test_retained_drops_on_free_total_stays(tracker):
    tracker.track_with_analysis(Item)
    leak_items(100)
    assert tracker.stats(Item)["top_paths"][0]["count"] == 100
    del _cache[:60]
    stats = tracker.stats(Item)
    assert stats["top_paths"][0]["count"] == 40
    assert stats["top_paths"][0]["total_count"] == 100
    assert stats["live_count"] == 40


def _nest(depth, fn):
    if depth == 0:
        return fn()
    return _nest(depth - 1, fn)


@requires_engine
def test_depth_is_respected(tracker):
    tracker.track_with_analysis(Item, depth=3)
    keep = _nest(8, Item)
    stats = tracker.stats(Item)
    assert [f["function"] for f in stats["top_paths"][0]["frames"]] == ["_nest", "_nest", "_nest"]
    assert stats["depth"] == 3
    del keep


@requires_engine
def test_threads_keep_their_own_stacks(tracker):
    tracker.track_with_analysis(Item)
    kept = []

    def worker_a():
        for _ in range(200):
            kept.append(Item())  # THREAD-A

    def worker_b():
        for _ in range(300):
            kept.append(Item())  # THREAD-B

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = tracker.stats(Item)
    by_line = {p["frames"][0]["lineno"]: p for p in stats["top_paths"]}
    assert by_line[line_of("THREAD-B")]["count"] == 300
    assert by_line[line_of("THREAD-A")]["count"] == 200
    assert by_line[line_of("THREAD-A")]["frames"][0]["function"].endswith("<locals>.worker_a")
    assert len(by_line[line_of("THREAD-A")]["frames"]) <= 4  # the thread's own bootstrap, not the test's


async def _inner(kept):
    await asyncio.sleep(0)
    kept.append(Item())  # ASYNC-SITE


async def _middle(kept):
    await _inner(kept)


async def _outer(kept):
    await _middle(kept)


@requires_engine
def test_coroutines_give_their_await_chain(tracker):
    tracker.track_with_analysis(Item)
    kept = []
    asyncio.run(_outer(kept))
    stats = tracker.stats(Item)
    top = stats["top_paths"][0]
    assert top["count"] == 1
    assert [f["function"] for f in top["frames"][:3]] == ["_inner", "_middle", "_outer"]
    assert top["frames"][0]["lineno"] == line_of("ASYNC-SITE")


@requires_engine
def test_comprehensions_and_lambdas(tracker):
    tracker.track_with_analysis(Item)
    make = lambda: Item()  # noqa: E731  # LAMBDA-SITE
    a = [make() for _ in range(5)]
    b = [Item() for _ in range(7)]  # COMPREHENSION-SITE
    stats = tracker.stats(Item)
    by_line = {p["frames"][0]["lineno"]: p for p in stats["top_paths"]}
    assert by_line[line_of("LAMBDA-SITE")]["frames"][0]["function"].endswith("<lambda>")
    assert by_line[line_of("LAMBDA-SITE")]["count"] == 5
    assert by_line[line_of("COMPREHENSION-SITE")]["count"] == 7
    del a, b


@requires_engine
def test_objects_built_in_c_are_attributed_to_the_calling_line(tracker):
    payload = json.dumps([{"id": i, "tags": {"a": 1}} for i in range(50)])
    tracker.track_with_analysis(dict)
    decoded = json.loads(payload)  # JSON-SITE
    stats = tracker.stats(dict)
    top = stats["top_paths"][0]
    assert top["count"] == 100
    # innermost: the Python line that called into the C decoder; then our line
    assert top["frames"][0]["filename"] == "json/decoder.py"
    assert top["frames"][0]["function"] == "JSONDecoder.raw_decode"
    ours = [f for f in top["frames"] if f["filename"] == HERE]
    assert ours[0]["lineno"] == line_of("JSON-SITE")
    del decoded


@requires_engine
def test_node_cap_prunes_and_reports(tracker):
    namespace: dict = {}
    source = "\n".join(f"def make{i}():\n    return Item()" for i in range(200))
    exec(compile(source, "generated_sites.py", "exec"), {"Item": Item}, namespace)
    tracker.track_with_analysis(Item, max_nodes=32)
    keep = [namespace[f"make{i}"]() for i in range(200) for _ in range(1 + i % 3)]
    stats = tracker.stats(Item)
    tree = stats["call_tree"]
    assert tree["nodes"] <= 32
    assert tree["pruned_nodes"] + tree["overflow_allocations"] > 0
    assert stats["live_count"] == len(keep)
    # nothing is lost: every live object is still counted on some path
    assert stats["retained_allocations"] == len(keep)
    del keep
    assert tracker.stats(Item)["retained_allocations"] == 0


@requires_engine
def test_sampling_scales_and_marks_estimates(tracker):
    tracker.track_with_analysis(Item, sample_every=10)
    leak_items(10_000)
    stats = tracker.stats(Item)
    assert stats["estimated"] is True and stats["sample_every"] == 10
    assert stats["live_count"] == 10_000  # counts stay exact
    # about 1,000 sampled (at random gaps) x 10; within 10%: over five deviations
    assert abs(stats["top_paths"][0]["count"] - 10_000) <= 1_000
    assert stats["top_paths"][0]["count"] % 10 == 0


@requires_engine
def test_sampled_paths_are_not_in_step_with_the_apps_own_pattern(tracker):
    # Two objects of the type each round, one kept and one let go at once: a path
    # taken at a fixed step of 8 (the engine's before) was the one let go's every
    # time, and the line that keeps them was never seen.
    tracker.track_with_analysis(Item, sample_every=8)
    kept = []
    for _ in range(8_000):
        kept.append(Item())  # KEPT-LINE
        Item()
    stats = tracker.stats(Item)
    top = stats["top_paths"][0]
    here = "test_sampled_paths_are_not_in_step_with_the_apps_own_pattern"
    assert top["path"][0] == f"{HERE}:{line_of('KEPT-LINE')} in {here}"
    # about 1,000 of the kept ones' 8,000 allocations sampled, x 8
    assert abs(top["count"] - 8_000) <= 800, top
    assert abs(stats["retained_allocations"] - 8_000) <= 800, stats["retained_allocations"]


@requires_engine
def test_stats_for_count_only_type_is_none(tracker):
    tracker.track(Item)
    assert tracker.stats(Item) is None
    assert tracker.stats(list) is None
    assert tracker.is_tracking(Item) and not tracker.is_analysing(Item)


@requires_engine
def test_module_level_default_tracker():
    class Local:
        pass

    mt.track_with_analysis(Local, depth=5)
    try:
        objs = [Local() for _ in range(4)]
        assert mt.count(Local) == 4
        assert mt.stats(Local)["top_paths"][0]["count"] == 4
        del objs
    finally:
        assert mt.untrack(Local) is True
    assert mt.stats(Local) is None


@requires_engine
def test_seed_custom_callback_filters_on_allocating_frame():
    # The seed: capture.track(Hash) { |obj, klass| ... caller_locations ... "app/models" }
    tracker = mt.Tracker(depth=10)
    from_models = []

    def on_alloc(cls, event, data):
        if (
            event == "new"
            and data
            and data[0].filename.endswith("test_callpaths.py")
            and data[0].function == "leak_items"
        ):
            from_models.append(data[0])

    try:
        tracker.track_with_analysis(Item, callback=on_alloc)
        leak_items(3)
        churn_items(5)
        tracker.capture.flush()
        assert len(from_models) == 3
        assert from_models[0].lineno == line_of("LEAK-SITE")
        assert tracker.count(Item) == 3
    finally:
        tracker.stop()
        _cache.clear()


@requires_engine
def test_with_block_stops():
    with mt.Tracker() as tracker:
        tracker.track(Item)
        keep = Item()
        assert tracker.count(Item) == 1
    assert tracker.capture.running is False
    del keep


def test_tracker_validates_arguments():
    with pytest.raises(ValueError, match="depth"):
        mt.Tracker(depth=0)
    with pytest.raises(ValueError, match="sample_every"):
        mt.Tracker().track_with_analysis(Item, sample_every=0)


@requires_engine
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"hotspots": -1}, "hotspots"),
        ({"hotspots": None}, "hotspots"),
        ({"hotspots": "3"}, "hotspots"),
    ],
)
def test_stats_refuses_a_negative_or_non_int_limit(tracker, options, named):
    # (a negative limit once meant "all paths but the last", by slicing)
    tracker.track_with_analysis(Item)
    churn_items(10)
    with pytest.raises(ValueError, match=f"stats\\(\\): {named} must be"):
        tracker.stats(Item, **options)
    assert tracker.stats(Item, limit=None, hotspots=0)["hotspots"] == []


def test_display_path_prefers_the_shorter_relative_form():
    assert display_path("<frozen importlib._bootstrap>") == "<frozen importlib._bootstrap>"
    stdlib_json = sys.modules["json"].__file__
    assert display_path(stdlib_json) == "json/__init__.py"


def test_ties_go_to_the_app_and_memtracker_webs_own_paths_are_left_out():
    import os
    import sysconfig

    from memtracker_web.core import tracker as tracker_module
    from memtracker_web.core.tracker import build_stats

    lib = os.path.join(sysconfig.get_paths()["purelib"], "framework", "cache.py")
    stdlib = os.path.join(sysconfig.get_paths()["stdlib"], "json", "decoder.py")
    app = os.path.join(os.getcwd(), "myapp", "views.py")
    ours = os.path.join(os.path.dirname(tracker_module.__file__), "monitor.py")
    # (parent, filename, lineno, function, total, retained, truncated); counts on the innermost frame
    nodes = [
        (0, "", 0, "", 0, 0, 0),
        (0, app, 10, "handler", 0, 0, 0),  # 1: the app's view
        (1, lib, 20, "cached", 7, 7, 0),  # 2: a library frame called by it: 7 retained
        (1, stdlib, 30, "decode", 7, 7, 0),  # 3: the stdlib, called by it: 7 retained
        (0, app, 40, "remember", 7, 7, 0),  # 4: the app allocating itself: 7 retained
        (0, ours, 50, "sample", 99, 99, 0),  # 5: our own bookkeeping
        (5, stdlib, 60, "encode", 11, 11, 0),  # 6: the stdlib working for us (json of a history point)
        (1, ours, 70, "__call__", 0, 0, 0),  # 7: our middleware called by the app's code...
        (7, app, 80, "view", 5, 5, 0),  # 8: ...calling the app again: the app's allocation
    ]
    meta = {
        "sample_every": 1,
        "depth": 10,
        "max_nodes": 100,
        "pruned_nodes": 0,
        "pruned_allocations": 0,
        "overflow": 0,
        "unattributed": 0,
    }
    stats = build_stats(nodes, meta, 136, 136, limit=None)
    innermost = [p["frames"][0]["lineno"] for p in stats["top_paths"]]
    assert innermost[0] == 40  # the app's own line wins the three-way tie
    assert set(innermost) == {20, 30, 40, 80}  # ours (50, and 60 on our behalf) are not among them
    assert stats["own_allocations"] == {"count": 110, "total_count": 110}
    assert build_stats(nodes, meta, 136, 136, limit=None)["top_paths"] == stats["top_paths"]  # deterministic


@pytest.mark.parametrize(
    ("sample_every", "counts", "order"),
    [
        # one object a request at each of three sites, one in 64 followed: 10, 7 and 3
        # sampled, as Django's signal read (two tuples in Signal.connect, one in the
        # app): the sample cannot tell them apart, and the app's line goes first
        (64, (10, 7, 3), [20, 151, 176]),
        (64, (3, 7, 10), [20, 176, 151]),
        # far apart, beyond the noise (40 - 3 > 2 * sqrt(43)): the count decides; of
        # the two left, 7 and 3 are within it again
        (64, (40, 7, 3), [151, 20, 176]),
        (64, (40, 30, 3), [151, 176, 20]),
        # exact counts are not noise: 10 is more than 3
        (1, (10, 7, 3), [151, 176, 20]),
    ],
)
def test_sampled_counts_within_their_noise_go_to_the_path_that_starts_in_the_app(sample_every, counts, order):
    from memtracker_web.core.tracker import build_stats

    lib = os.path.join(sysconfig.get_paths()["purelib"], "django", "dispatch", "dispatcher.py")
    app = os.path.join(os.getcwd(), "myapp", "views.py")
    nodes = [
        (-1, "", 0, "", 0, 0, False),
        (0, app, 20, "work", counts[2], counts[2], False),  # 1: the app's line makes one itself
        (1, lib, 151, "Signal.connect", counts[0], counts[0], False),  # 2: connect, called from it
        (1, lib, 176, "Signal.connect", counts[1], counts[1], False),  # 3: connect's other one
    ]
    meta = {"sample_every": sample_every, "depth": 10, "max_nodes": 100, "pruned_nodes": 0}
    meta.update(pruned_allocations=0, overflow=0, unattributed=0)
    count_of = dict(zip((151, 176, 20), counts, strict=True))
    for limit in (1, 2, 3, None):
        shown = build_stats(nodes, meta, 0, 0, limit=limit)["top_paths"]
        assert [p["frames"][0]["lineno"] for p in shown] == order[:limit]
        assert [p["count"] for p in shown] == [sample_every * count_of[line] for line in order[:limit]]


def test_a_path_that_keeps_none_or_has_no_frames_does_not_take_a_tie_from_the_apps_side():
    from memtracker_web.core.tracker import build_stats

    lib = os.path.join(sysconfig.get_paths()["purelib"], "somelib", "store.py")
    app = os.path.join(os.getcwd(), "myapp", "views.py")
    meta = {"sample_every": 64, "depth": 10, "max_nodes": 100, "pruned_nodes": 0}
    meta.update(pruned_allocations=0, overflow=0, unattributed=0)
    # the app's line makes short-lived objects (none kept), a library called from it
    # keeps 3 sampled: the library's path first (a report needs a first path that keeps some)
    nodes = [
        (-1, "", 0, "", 0, 0, False),
        (0, app, 10, "view", 40, 0, False),
        (1, lib, 99, "Store.add", 3, 3, False),
    ]
    assert [p["count"] for p in build_stats(nodes, meta, 0, 0, limit=3)["top_paths"]] == [192, 0]
    # allocations made while the tree was full (the root's, no frames) are nearest nothing:
    # within the noise, the app's path and then the library's go first
    nodes = [
        (-1, "", 0, "", 7, 7, False),
        (0, app, 10, "view", 12, 12, False),
        (0, lib, 99, "Store.add", 9, 9, False),
    ]
    shown = build_stats(nodes, meta, 0, 0, limit=3)["top_paths"]
    assert [p["path"][0].split(":")[0] for p in shown] == ["myapp/views.py", "somelib/store.py", "<call tree full>"]


def _stats_by_walking_each_path(nodes: list, meta: dict, limit: int | None) -> list[dict]:
    """The top paths as their definition reads: walk each node's chain out to the root,
    leave out ours, order by retained, total, the app's nearness, then place (the file
    as shown, then the line)."""
    from memtracker_web.core.tracker import is_app_file, is_own_file

    paths = []
    for index, (_p, _f, _l, _fn, total, retained, _t) in enumerate(nodes):
        if not total and not retained:
            continue
        chain, i = [], index
        while i > 0:
            chain.append(i)
            i = nodes[i][0]
        decided = [j for j in chain if is_app_file(nodes[j][1]) or is_own_file(nodes[j][1])]
        if decided and is_own_file(nodes[decided[0]][1]):
            continue
        app = [k for k, j in enumerate(chain) if is_app_file(nodes[j][1])]
        near = app[0] if app else len(chain) if chain else math.inf  # (no frames: the tree was full)
        key = (-retained, -total, near, [display_path(nodes[j][1]) for j in chain], [nodes[j][2] for j in chain])
        shown = [f"{display_path(nodes[j][1])}:{nodes[j][2]} in {nodes[j][3]}" for j in chain]
        paths.append((key, shown or ["<call tree full>"]))
    paths.sort(key=lambda p: p[0])
    scale = meta["sample_every"]
    if scale > 1:
        # sampled: one at a time, the nearest to the app among the paths whose count is
        # within two deviations of the largest left's (sqrt of the two counts' sum)
        left, ordered = paths, []
        while left and len(ordered) < min(limit or 10, 10):
            top = -left[0][0][0]
            close = [p for p in left if -p[0][0] > 0 and top + p[0][0] <= 2 * math.sqrt(top - p[0][0])] or left[:1]
            chosen = min(close, key=lambda p: (p[0][2], left.index(p)))
            ordered.append(chosen)
            left = [p for p in left if p is not chosen]
        paths = ordered + left
    return [{"count": -key[0] * scale, "path": path} for key, path in paths[:limit]]


def _hotspots_by_walking_each_path(nodes: list, limit: int, scale: int = 1) -> list[dict]:
    """The hotspots as their definition reads: every frame of every path that is not ours
    adds the path's counts once (a frame twice in one path counts once), the innermost
    frame its retained count as self; most retained first, then self, then total, then place."""
    from memtracker_web.core.tracker import is_app_file, is_own_file

    hot: dict[tuple, list[int]] = {}
    for index, (_p, _f, _l, _fn, total, retained, _t) in enumerate(nodes):
        if not total and not retained:
            continue
        chain, i = [], index
        while i > 0:
            chain.append(i)
            i = nodes[i][0]
        decided = [j for j in chain if is_app_file(nodes[j][1]) or is_own_file(nodes[j][1])]
        if decided and is_own_file(nodes[decided[0]][1]):
            continue
        places = [(display_path(nodes[j][1]), nodes[j][2], nodes[j][3]) for j in chain]
        for place in set(places):
            counts = hot.setdefault(place, [0, 0, 0])
            counts[0] += total
            counts[1] += retained
        if places:
            hot[places[0]][2] += retained
    ranked = sorted(hot.items(), key=lambda kv: (-kv[1][1], -kv[1][2], -kv[1][0], kv[0]))[:limit]
    return [
        {
            "filename": f,
            "lineno": line,
            "function": fn,
            "total_count": c[0] * scale,
            "count": c[1] * scale,
            "self_count": c[2] * scale,
        }
        for (f, line, fn), c in ranked
    ]


_FILES = [
    os.path.join(os.getcwd(), "myapp", "views.py"),
    os.path.join(os.getcwd(), "myapp", "models.py"),
    os.path.join(sysconfig.get_paths()["purelib"], "framework", "cache.py"),
    os.path.join(sysconfig.get_paths()["stdlib"], "json", "decoder.py"),
    os.path.join(os.path.dirname(mt.__file__), "monitor", "monitor.py"),
]


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),  # the parent, among the nodes before
            st.integers(min_value=0, max_value=len(_FILES) - 1),
            st.integers(min_value=1, max_value=3),  # line: few, for ties
            # retained: few values for ties; up to 60 for counts apart by more than a sample's noise
            st.one_of(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=60)),
            st.integers(min_value=0, max_value=2),  # total beyond retained
        ),
        max_size=40,
    ),
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    hotspot_limit=st.integers(min_value=0, max_value=8),
    sample_every=st.sampled_from([1, 64]),
    at_root=st.tuples(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=2)),
)
def test_top_paths_are_those_of_walking_each_path_on_any_tree(shape, limit, hotspot_limit, sample_every, at_root):
    from memtracker_web.core.tracker import NOISE_DEVIATIONS, build_stats

    # (the root's counts: allocations made while the tree was full, a path without frames)
    nodes = [(-1, "", 0, "", at_root[0] + at_root[1], at_root[0], False)]
    for index, (parent, file, line, retained, extra) in enumerate(shape, 1):
        nodes.append((parent % index, _FILES[file], line, f"f{line}", retained + extra, retained, False))
    meta = {"sample_every": sample_every, "depth": 40, "max_nodes": 100, "pruned_nodes": 0}
    meta.update(pruned_allocations=0, overflow=0, unattributed=0)
    with_places = build_stats(nodes, meta, 0, 0, limit=limit, hotspot_limit=hotspot_limit)
    shown = [{"count": p["count"], "path": p["path"]} for p in with_places["top_paths"]]
    assert shown == _stats_by_walking_each_path(nodes, meta, limit)
    assert with_places["paths"] == len(_stats_by_walking_each_path(nodes, meta, None))
    assert with_places["hotspots"] == _hotspots_by_walking_each_path(nodes, hotspot_limit, sample_every)
    # whatever the tie rule: a path that keeps none never goes before one that keeps some,
    # and a count comes after a larger one only when the two are within the noise
    counts = [p["count"] // sample_every for p in with_places["top_paths"]]
    for before, after in zip(counts, counts[1:], strict=False):
        assert before > 0 or after == 0
        assert after <= before or (sample_every > 1 and after - before <= NOISE_DEVIATIONS * math.sqrt(after + before))
