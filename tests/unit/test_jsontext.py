"""jsontext.dumps: the same text as json.dumps, with the monitor's pre-encoded histories spliced in."""

from __future__ import annotations

import collections
import copy
import json
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtracker_web.monitor import MemoryMonitor
from memtracker_web.monitor.history import History, PointRing, encode_point
from memtracker_web.render import jsontext


def reference(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def history(points: list) -> History:
    return History(points, "[" + ",".join(encode_point(p) for p in points) + "]")


class Node:
    pass


class Leaf:
    pass


def test_a_real_snapshot_encodes_to_the_same_text() -> None:
    monitor = MemoryMonitor(threshold=2, increases=2, watch_all=False)
    keep = []
    monitor.start_monitoring(Node)
    monitor.start_monitoring(Leaf)
    try:
        for round_ in range(8):
            keep.extend(Node() for _ in range(5 * round_))  # grows: escalated, with paths and a report
            keep.append(Leaf())
            monitor.sample()
        snapshot = monitor.snapshot()
        entries = {entry["type"]: entry for entry in snapshot["types"]}
        node = entries[f"{__name__}.Node"]
        assert type(node["history"]) is History and len(node["history"]) == 8
        assert node["history"][-1][1] == node["live"]
        text = jsontext.dumps(snapshot)
        assert text == reference(snapshot)
        assert json.loads(text)["types"][0]["history"] == [list(p) for p in snapshot["types"][0]["history"]]
        detail = monitor.type_detail(f"{__name__}.Node")
        assert detail is not None and type(detail["history"]) is History
        assert jsontext.dumps(detail) == reference(detail)
    finally:
        monitor.close()


@pytest.mark.parametrize(
    "data",
    [
        {},
        [],
        {"a": [1, 2.5, None, True, "x"], "b": {"c": (1, 2)}},
        {"types": [{"type": 'we"ird\\name\u00e9\x01', "history": [(1.5, 2)]}]},
        {1: "int key", "nested": [[{"history": (1, 2)}]]},
        "just a string \x00history:0\x00",  # a placeholder-looking string that is data
    ],
)
def test_data_without_histories_is_encoded_by_json(data: object) -> None:
    assert jsontext.dumps(data) == reference(data)


def test_histories_anywhere_give_the_same_text() -> None:
    h1 = history([(1795677158.379, 1), (1795677158.38, 2), (1795677159.0, 30)])
    h2 = history([])
    data = {
        "types": [{"type": "a.B", "history": h1}, {"type": "c.D", "history": h2}],
        "detail": {"history": h1},
        "deep": [[h1]],  # not reached by the splice: encoded as the list it is
        7: ({"history": h1},),  # an int key, a tuple of dicts
        "ordered": collections.OrderedDict([("z", 1), ("history", h2), ("a", 'q"\\')]),
    }
    assert jsontext.dumps(data) == reference(data)


@pytest.mark.parametrize(
    "odd",
    [
        {"\x00history:0\x00": 1},  # as a key
        {"v": 'x"\x00history:0\x00'},  # after an escaped quote
        {"v": "\x00history:99\x00"},  # an index no placeholder has
    ],
)
def test_placeholder_like_data_falls_back(odd: dict) -> None:
    h = history([(1.5, 1)])
    h.json = "[[9,9]]"  # the splice would show
    data = {"types": [{"history": h}], **odd}
    assert jsontext.dumps(data) == reference(data)


def test_cycles_and_depth_answer_like_json() -> None:
    looped: dict = {"history": history([(1.0, 1)])}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular"):
        jsontext.dumps(looped)
    deep: dict = {"history": history([(1.0, 1)])}
    for _ in range(5000):
        deep = {"d": deep}
    try:
        expected = reference(deep)
    except RecursionError:
        with pytest.raises(RecursionError):
            jsontext.dumps(deep)
    else:
        assert jsontext.dumps(deep) == expected


def test_the_text_follows_the_history_as_it_rolls_over() -> None:
    monitor = MemoryMonitor(threshold=2, increases=2, history=3)
    keep = []
    monitor.start_monitoring(Leaf)
    try:
        for round_ in range(7):
            keep.extend(Leaf() for _ in range(round_))
            monitor.sample()
            h = monitor.snapshot()["types"][0]["history"]
            assert len(h) == min(round_ + 1, 3)
            assert h.json == reference(list(h)) and h[-1][1] == len(keep)
    finally:
        monitor.close()


def test_the_texts_are_spliced_in() -> None:
    # A History's own text is what goes out (so the floats are not printed again);
    # a marked text shows which path the output took.
    h = history([(1.5, 1)])
    h.json = "[[9,9]]"
    data = {"types": [{"type": "a.B", "history": h}], "detail": {"history": h}}
    assert jsontext.dumps(data) == '{"types":[{"type":"a.B","history":[[9,9]]}],"detail":{"history":[[9,9]]}}'
    data["note"] = "\x00history:0\x00"  # a placeholder-like string in the data: plain json instead
    assert jsontext.dumps(data) == reference(data)


def test_nan_is_refused_like_json() -> None:
    with pytest.raises(ValueError):
        jsontext.dumps({"x": math.nan})
    with pytest.raises(ValueError):
        encode_point((math.inf, 1))


@given(
    st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.booleans()),
    st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans()),
)
def test_a_point_is_written_as_json_writes_it(time, live) -> None:
    try:
        expected = json.dumps([time, live], separators=(",", ":"), allow_nan=False)
    except ValueError:
        with pytest.raises(ValueError):
            encode_point((time, live))
    else:
        assert encode_point((time, live)) == expected


def test_a_history_is_a_read_only_list() -> None:
    h = history([(1.0, 1), (2.0, 2)])
    assert h == [(1.0, 1), (2.0, 2)] and isinstance(h, list)
    for mutate in (
        lambda: h.append((3.0, 3)),
        lambda: h.extend([]),
        lambda: h.insert(0, 1),
        lambda: h.pop(),
        lambda: h.remove((1.0, 1)),
        lambda: h.clear(),
        lambda: h.sort(),
        lambda: h.reverse(),
        lambda: h.__setitem__(0, 1),
        lambda: h.__delitem__(0),
        lambda: h.__iadd__([]),
        lambda: h.__imul__(2),
    ):
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    assert h == [(1.0, 1), (2.0, 2)] and h.json == "[[1.0,1],[2.0,2]]"
    for twin in (copy.copy(h), copy.deepcopy(h), pickle.loads(pickle.dumps(h)), list(h), h[:]):
        assert type(twin) is list and twin == h
        twin.append((3.0, 3))  # copies are ordinary lists
    assert len(h) == 2


def test_a_point_ring_keeps_the_last_points_and_their_text() -> None:
    ring = PointRing(3)
    assert ring.history() == [] and ring.history().json == "[]"
    for i in range(7):
        ring.append(1000.5 + i, i * 10**12)
        kept = [(1000.5 + j, j * 10**12) for j in range(max(0, i - 2), i + 1)]
        h = ring.history()
        assert h == kept and len(ring) == len(kept)
        assert h.json == reference(kept) and jsontext.dumps({"history": h}) == reference({"history": kept})
    assert ring.last_lives(2) == [5 * 10**12, 6 * 10**12]


def test_a_point_ring_keeps_no_object_per_point() -> None:
    # The monitor's history must not grow the app's tuples, floats and strings
    # (it would look like a leak to the monitor itself): a full ring keeps four.
    import gc

    ring = PointRing(50)
    for i in range(200):
        ring.append(i + 0.25, i)
    kept = sorted(type(o).__name__ for o in gc.get_referents(ring) if o is not PointRing)
    assert kept == ["array", "array", "array", "bytearray", "int"]  # times, lives, lengths; text; size
    text = ring.text
    ring.append(200.25, 200)
    assert ring.text is text  # changed in place: no new object a sample
