"""_tracker.referrers(objects): what gc.get_referrers(*objects) answers, in one pass.

The retention search asks it, level by level, about up to thousands of objects at
once. Checked here against gc.get_referrers itself, on hand-made and on generated
object graphs, with frozen objects, and with threads changing the heap meanwhile.
Answers more: a dict holding a str looked for as a key, which gc.get_referrers
misses where all the dict's keys are strs; and the containers the collector does
not track (a tuple, or before 3.14 a dict, of objects in no cycle) holding an object
nothing it tracks holds.
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtracker_web.core import engine

_tracker = pytest.importorskip("memtracker_web._tracker", reason="the C extension is not built here")

pytestmark = pytest.mark.skipif(engine.referrers([]) is None, reason="the C extension is not loaded here")


class Node:
    def __init__(self) -> None:
        self.refs: list = []


MARK = object()  # the first of gc.get_referrers' arguments: its argument tuple is the one tuple that starts with it


def by_gc(objects: list) -> set[int]:
    """gc.get_referrers' answer, without its own argument tuple, the list of objects and
    what refers to MARK only (this module's namespace)."""
    wanted = {id(o) for o in objects}
    return {
        id(r)
        for r in gc.get_referrers(MARK, *objects)
        if r is not objects
        and not (type(r) is tuple and r and r[0] is MARK)
        and any(id(x) in wanted for x in gc.get_referents(r))
    }


def test_it_finds_every_kind_of_holder_and_only_those():
    target = Node()
    other = Node()
    in_list, in_dict_value, in_dict_key, in_tuple, in_set = [target], {"k": target}, {target: 1}, (target,), {target}
    holder = Node()
    holder.refs.append(target)  # held by the list in holder.__dict__, not by holder itself
    found = engine.referrers([target])
    ids = {id(r) for r in found}
    assert {id(in_list), id(in_dict_value), id(in_dict_key), id(in_tuple), id(in_set), id(holder.refs)} <= ids
    assert id(holder) not in ids and id(other) not in ids
    assert ids == by_gc([target])
    assert len(found) == len(ids)  # each referrer once


def test_the_list_asked_with_is_not_an_answer_and_each_referrer_comes_once():
    a, b = Node(), Node()
    both = [a, b]  # a list holding both: one answer, not two
    objects = [a, b]
    found = engine.referrers(objects)
    assert all(r is not objects for r in found)
    assert sum(1 for r in found if r is both) == 1
    assert {id(r) for r in found} == by_gc(objects)


def test_objects_the_collector_does_not_track_can_be_looked_for():
    text, number = "a string of our own " + str(id(object())), 10**30 + 7
    holder = [text, number]  # (a dict of strings and numbers only is not tracked by the collector before 3.14)
    found = engine.referrers([text, number])
    assert any(r is holder for r in found)
    assert {id(r) for r in found} == by_gc([text, number])


def test_a_str_kept_as_a_key_is_found_where_the_collector_does_not_show_it():
    # A dict whose keys are all strs does not visit them in its tp_traverse (a str is
    # in no cycle): the strs an app keeps as the keys of a registry had no referrer.
    key = "session-" + str(id(object()))
    registry = {key: Node()}  # (a value the collector tracks: the dict is tracked on every version)
    other = {"session-" + str(id(object()) + 1): Node()}
    both = {key: key, "node": Node()}  # the key and a value: one answer
    found = engine.referrers([key])
    assert sum(r is registry for r in found) == 1 and sum(r is both for r in found) == 1
    assert not any(r is other for r in found)
    assert not any(r is registry for r in gc.get_referrers(key))  # what the collector shows
    # (not a str looked for: the keys are not read, and a dict of other keys is as before)
    node = Node()
    by_node = {node: 1}
    assert [r for r in engine.referrers([node]) if type(r) is dict] == [by_node]
    assert {id(r) for r in engine.referrers([node])} == by_gc([node])


def _fresh(tag: str) -> str:
    return f"{tag}-{id(object())}-{len(tag)}"  # a new str, held by nothing else


def test_a_container_the_collector_does_not_track_is_found_below_what_holds_it():
    # A tuple of strs is set aside by the collector's first pass over it; no pass over
    # what it tracks meets it, and gc.get_referrers does not name it
    kept = [(_fresh("a"), _fresh("b"))]
    deep = [(((_fresh("c"),),),)]
    for _ in range(4):  # (before 3.14 one collection untracks one level of nested tuples)
        gc.collect()
    pair, inner = kept[0], deep[0][0][0]
    assert not gc.is_tracked(pair) and not gc.is_tracked(inner) and not gc.is_tracked(deep[0][0])
    found = engine.referrers([pair[0]])
    assert [r for r in found if r is pair] == [pair] and len(found) == 1
    assert not any(r is pair for r in gc.get_referrers(pair[0]))
    # two levels below the list: the one holding the str is the answer, not its holder
    found = engine.referrers([inner[0]])
    assert len(found) == 1 and found[0] is inner
    del found  # (a list holding inner)
    # and the search's next level, from it, finds the tuple holding it
    found = engine.referrers([inner])
    assert len(found) == 1 and found[0] is deep[0][0]


def test_an_untracked_container_asked_about_is_looked_into_too():
    # a float only a tuple holds, the tuple only another: asked together (the monitor
    # searches several types at once), each holder is an answer
    log = [(_fresh("req"), (1.5e300 * 3, 2.5e300 * 3))]
    for _ in range(3):
        gc.collect()
    outer = log[0]
    inner = outer[1]
    assert not gc.is_tracked(outer) and not gc.is_tracked(inner)
    found = engine.referrers([inner, inner[0]])
    assert sorted(id(r) for r in found) == sorted((id(outer), id(inner)))


def test_an_untracked_container_whose_id_is_ignored_is_no_answer():
    kept = [(_fresh("x"),)]
    gc.collect()
    holder = kept[0]
    assert not gc.is_tracked(holder)
    assert [r for r in engine.referrers([holder[0]])] == [holder]
    assert engine.referrers([holder[0]], {id(holder)}) == []


def test_a_dict_of_strs_and_floats_is_found_on_every_version():
    # SEEN[request_id] = time.time(): before 3.14 such a dict is not tracked
    seen: dict = {}
    for n in range(3):
        seen[_fresh(f"req{n}")] = n * 2.5 + id(seen)
    holder = [seen]
    # (each asked alone: a tuple or list of both, tracked, would hold them)
    found = engine.referrers([next(iter(seen))])
    assert sum(r is seen for r in found) == 1, [type(r) for r in found]
    found = engine.referrers([next(iter(seen.values()))])
    assert sum(r is seen for r in found) == 1, [type(r) for r in found]
    assert holder


def test_an_lru_caches_links_are_found_in_its_dict():
    @functools.lru_cache(maxsize=8)
    def cached(n: int) -> int:
        return n * 1000003

    for n in range(4):
        cached(n * 7919)
    links = [o for d in gc.get_referents(cached) if type(d) is dict for o in d.values()]
    links = [link for link in links if type(link).__name__ == "_lru_list_elem"]
    (cache,) = [d for d in gc.get_referents(cached) if type(d) is dict and links[0] in d.values()]
    assert len(links) == 4
    found = engine.referrers(links)
    assert [r for r in found if r is cache] == [cache]
    del links


def test_untracked_containers_are_looked_into_only_for_what_nothing_tracked_holds():
    # (the second pass reads every referent's type: it runs only when needed)
    text = _fresh("both")
    in_list, in_tuple = [text], [(text, "x")]
    gc.collect()
    assert not gc.is_tracked(in_tuple[0])
    found = engine.referrers([text])
    assert any(r is in_list for r in found) and not any(r is in_tuple[0] for r in found)
    # an object the collector tracks is in no untracked container
    node = Node()
    assert {id(r) for r in engine.referrers([node])} == by_gc([node])


def test_the_callers_own_containers_are_ignored_by_id():
    text = _fresh("ours")
    ours, theirs = [text], [(text,)]
    gc.collect()
    found = engine.referrers([text])
    assert any(r is ours for r in found) and not any(r is theirs[0] for r in found)
    found = engine.referrers([text], {id(ours)})
    # ours is no answer, and what it holds does not count as held: the tuple is found
    assert not any(r is ours for r in found) and any(r is theirs[0] for r in found)
    assert {id(r) for r in engine.referrers([text], [])} == {id(r) for r in engine.referrers([text], None)}


def test_referrers_until_a_deadline_stops_its_passes_there_and_says_so():
    target = Node()
    holders = [[target], {"k": target}, (target, Node())]
    # (well before the deadline: the same answers, complete)
    found, complete = engine.referrers_until([target], None, time.monotonic() + 60)
    assert complete is True
    assert {id(r) for r in found} == {id(r) for r in engine.referrers([target])} >= {id(h) for h in holders}
    # a deadline passed: the first pass stops at its first object and says so
    assert engine.referrers_until([target], None, time.monotonic() - 1) == ([], False)
    # a str only an untracked tuple holds: the second pass, not reached either
    text = "".join(["only-in-", "an-untracked-tuple"])
    inside = [(text, 1.5)]
    gc.collect()  # (before 3.14 a tuple is untracked by a collection)
    assert not gc.is_tracked(inside[0])
    assert [r for r in engine.referrers_until([text], None, time.monotonic() + 60)[0] if r is inside[0]] == [inside[0]]
    assert engine.referrers_until([text], None, 0.0) == ([], False)
    assert engine.referrers_until([], None, 0.0) == ([], True)  # (nothing to look for: no pass)
    # its ignored ids and its checks are referrers()'
    assert engine.referrers_until([target], {id(h) for h in holders}, time.monotonic() + 60)[0] == [
        r for r in engine.referrers([target]) if id(r) not in {id(h) for h in holders}
    ]
    with pytest.raises(ValueError, match="referrers_until\\(\\)'s deadline is NaN"):
        _tracker.referrers_until([target], None, float("nan"))
    with pytest.raises(TypeError, match="must be real number, not str"):
        _tracker.referrers_until([target], None, "soon")
    with pytest.raises(TypeError, match="referrers\\(\\) takes a list of objects, not tuple"):
        _tracker.referrers_until((target,), None, 1e9)


def test_referrers_until_stops_its_second_pass_inside_one_large_holder():
    # a str a tracked list holds (the first pass finds it), and two strs each only an
    # untracked tuple holds, the first and the last of 300,001 in one tracked list: the
    # first pass reads the list's references, the second looks into each tuple's 40
    # (tens of times as long; a list's references are visited last first), and a
    # deadline that falls among them stops it there, the last tuple found, the first not
    held = "".join(["held-by-", "a-list"])
    holder = [held]
    records = [("".join(["in-the-", "first-tuple"]), 1.5)] + [(k % 100,) * 40 for k in range(300_000)]
    records.append(("".join(["in-the-", "last-tuple"]), 1.5))
    gc.collect()  # (before 3.14 a tuple is untracked by a collection)
    assert not gc.is_tracked(records[0]) and not gc.is_tracked(records[-1])
    wanted = [held, records[0][0], records[-1][0]]
    found, complete = engine.referrers_until(wanted, None, time.monotonic() + 60)
    assert complete is True and {id(holder), id(records[0]), id(records[-1])} <= {id(r) for r in found}
    del found  # (a tracked list holding the tuples: the next passes would find them there first)
    sweeps = []
    for _ in range(3):  # (a sweep on a loaded machine can be preempted past the window: up to 3)
        outcomes = []
        budget = 1e-4
        while budget < 60:  # (doubling: a deadline lands among the tuples, tens of times the first pass)
            found, complete = engine.referrers_until(wanted, None, time.monotonic() + budget)
            ids = {id(r) for r in found}
            del found
            outcomes.append((id(holder) in ids, id(records[-1]) in ids, id(records[0]) in ids, complete))
            if complete:
                break
            budget *= 2
        assert outcomes[-1] == (True, True, True, True)
        sweeps.append(outcomes)
        if (True, True, False, False) in outcomes:
            break
    assert (True, True, False, False) in sweeps[-1], repr(sweeps)  # stopped inside the list's tuples


def test_held_by_names_what_a_holder_refers_to_of_the_objects_as_it_shows_them():
    a, b, c, elsewhere = Node(), Node(), Node(), Node()
    holder = [b, a, b, *[Node() for _ in range(2000)], a]
    # as gc.get_referents shows them: in its order (a list's, last first), and an object
    # it refers to twice twice (a search explains a reference count by its holders)
    expected = [o for o in gc.get_referents(holder) if o is a or o is b]
    assert len(expected) == 4
    assert engine.held_by(holder, [a, b, elsewhere], False) == expected
    assert engine.held_by(holder, [elsewhere], False) == []
    assert engine.held_by(holder, [], False) == []
    # a dict's str keys only with keys=True (its tp_traverse does not show them)
    key = "".join(["a-", "key"])
    table = {key: c, "other": a}
    assert engine.held_by(table, [key, c], False) == [c]
    assert engine.held_by(table, [key, c], True) == [c, key]
    # keys the dict's tp_traverse shows (not all strs) are there once, as it shows them
    mixed = {key: c, 5: a}
    assert [o for o in engine.held_by(mixed, [key, c], True) if o is key] == [key]
    assert engine.held_by(mixed, [key, c], True) == [o for o in gc.get_referents(mixed) if o is key or o is c]
    # an object the collector does not track refers to nothing it is shown
    assert engine.held_by("text", [key], True) == []
    with pytest.raises(TypeError, match="must be list, not tuple"):
        _tracker.held_by(holder, (a,), False)
    with pytest.raises(TypeError):
        _tracker.held_by(holder, [a])  # type: ignore[call-arg]


def test_empty_and_wrong_arguments():
    assert engine.referrers([]) == []
    with pytest.raises(TypeError, match="referrers\\(\\) takes a list of objects, not tuple"):
        _tracker.referrers((Node(),))
    with pytest.raises(TypeError, match="not NoneType"):
        _tracker.referrers(None)
    with pytest.raises(TypeError):
        _tracker.referrers()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="referrers\\(\\)'s ignored holds ids \\(ints\\), not str"):
        _tracker.referrers([Node()], ["x"])
    with pytest.raises(TypeError, match="not iterable"):
        _tracker.referrers([Node()], 5)
    with pytest.raises(ValueError, match="holds 0, which is no object's id"):
        _tracker.referrers([Node()], [0])
    with pytest.raises(OverflowError):
        _tracker.referrers([Node()], [2**200])
    with pytest.raises(TypeError):
        _tracker.referrers([], None, None)  # type: ignore[call-arg]


def test_many_objects_at_once():
    nodes = [Node() for _ in range(3000)]
    holders = [[n] for n in nodes]
    found = engine.referrers(nodes)
    assert {id(h) for h in holders} <= {id(r) for r in found}
    assert {id(r) for r in found} == by_gc(nodes)


graphs = st.lists(st.lists(st.integers(min_value=0, max_value=39), max_size=4), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(edges=graphs, wanted=st.sets(st.integers(min_value=0, max_value=39), max_size=10))
def test_the_same_answer_as_gc_get_referrers_on_any_graph(edges, wanted):
    # node i refers to the nodes edges[i] lists, through its list, a tuple or a dict
    nodes = [Node() for _ in edges]
    for i, out in enumerate(edges):
        kind = i % 3
        refs = [nodes[j % len(nodes)] for j in out]
        nodes[i].refs.append(refs if kind == 0 else tuple(refs) if kind == 1 else {k: r for k, r in enumerate(refs)})
    objects = [nodes[j % len(nodes)] for j in sorted(wanted)]
    assert {id(r) for r in engine.referrers(objects)} == by_gc(objects)


FROZEN_FROM = {(3, 12): (3, 12, 10), (3, 13): (3, 13, 3)}  # gh-131740; every later version


def test_whether_frozen_objects_are_seen_follows_the_running_version():
    version = sys.version_info[:3]
    if version < (3, 12):
        expected = False  # gc.get_objects(), which skips them
    else:
        expected = version >= FROZEN_FROM.get(version[:2], (0,))
    assert engine.REFERRERS_SEE_FROZEN is expected


def test_a_frozen_holder_is_found_where_frozen_objects_are_seen():
    target = Node()
    holder = [target]
    gc.freeze()
    try:
        found = any(r is holder for r in engine.referrers([target]))
        assert found is engine.REFERRERS_SEE_FROZEN
        assert not any(r is holder for r in gc.get_referrers(target))  # gc.get_referrers never sees them
    finally:
        gc.unfreeze()


def _ask_while_the_heap_changes(make_junk, ask_once) -> None:
    """Two threads making and collecting make_junk() while three call ask_once() 30
    times each; what any of them raised fails the test."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        while not stop.is_set():
            junk = [make_junk() for _ in range(200)]
            del junk
            gc.collect(0)

    def ask() -> None:
        try:
            for _ in range(30):
                ask_once()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    churners = [threading.Thread(target=churn) for _ in range(2)]
    askers = [threading.Thread(target=ask) for _ in range(3)]
    for t in churners + askers:
        t.start()
    for t in askers:
        t.join()
    stop.set()
    for t in churners:
        t.join()
    assert errors == []


def test_threads_changing_the_heap_meanwhile():
    kept = [Node() for _ in range(50)]
    holders = [[k] for k in kept]

    def ask_once() -> None:
        found = {id(r) for r in engine.referrers(kept)}
        assert {id(h) for h in holders} <= found

    _ask_while_the_heap_changes(lambda: [Node(), {"k": Node()}], ask_once)


def test_no_reference_is_leaked():
    target = Node()
    holders = [[target] for _ in range(10)]
    text = _fresh("leak")
    untracked = []
    for _ in range(10):  # (not a comprehension: before 3.12 its function's cell would hold text)
        untracked.append((text,))
    gc.collect()
    before = [sys.getrefcount(h) for h in holders + untracked]
    for _ in range(100):
        found = engine.referrers([target])
        del found
        found = engine.referrers([text])
        assert len(found) == 10
        del found
    assert [sys.getrefcount(h) for h in holders + untracked] == before


def test_threads_changing_the_heap_while_untracked_containers_are_looked_into():
    kept = [_fresh(f"k{n}") for n in range(50)]
    holders = [[(k, "x")] for k in kept]
    gc.collect()

    def ask_once() -> None:
        found = {id(r) for r in engine.referrers(kept, {id(kept)})}
        assert {id(h[0]) for h in holders} <= found

    _ask_while_the_heap_changes(lambda: [(_fresh("j"), 1.5), {"k": _fresh("v")}], ask_once)
