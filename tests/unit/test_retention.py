"""Who keeps objects alive: retention chains from a root to sampled live objects."""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import functools
import gc
import os
import re
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from memtracker_web.core import engine
from memtracker_web.monitor import retention
from memtracker_web.monitor.retention import RetentionBusy, find_retainers, find_retainers_of_groups
from support import Guarding, requires_engine
from support import line_of as line_in


def line_of(marker: str) -> int:
    return line_in(__file__, marker)


LOCALS_READ = sys.version_info >= (3, 13)  # running functions' locals are read (retention._LOCALS_READ_SAFELY)


MOD = __name__


class Order:
    def __init__(self, n: int = 0) -> None:
        self.n = n


HOARD: list[Order] = []
CALLBACKS: list = []


class Registry:
    by_name: dict = {}


class Repo:
    @functools.cache  # noqa: B019 -- the leak under test
    def query(self, q: str) -> Order:
        return Order()


class Holder:
    def __init__(self) -> None:
        self.kept = Order()


def chains(result: dict) -> dict[str, int]:
    return {c["chain"]: c["count"] for c in result["chains"]}


def test_a_module_level_list():
    HOARD[:] = [Order(i) for i in range(3)]
    try:
        result = find_retainers(list(HOARD))
        assert chains(result) == {f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order": 3}
        assert (result["objects"], result["unreachable"], result["unresolved"], result["stopped"]) == (3, 0, 0, "")
    finally:
        HOARD.clear()


def test_a_class_level_dict_shows_identifier_keys_and_hides_the_others():
    Registry.by_name = {"cart": Order(), "secret: 4111-1111": Order()}
    try:
        result = find_retainers(list(Registry.by_name.values()))
        assert chains(result) == {
            f"{MOD}.Registry.by_name -> builtins.dict['cart'] -> {MOD}.Order": 1,
            f"{MOD}.Registry.by_name -> builtins.dict[key] -> {MOD}.Order": 1,
        }
        assert "4111" not in str(result)
    finally:
        Registry.by_name = {}


class Outer:
    class Inner:
        kept: list = []


Rebound = type("Rebound", (), {})
MADE: list = []


def namespace_of(cls: type) -> dict:
    [namespace] = [d for d in gc.get_referents(cls) if type(d) is dict]
    return namespace


def test_classes_made_at_run_time_are_roots_and_holders_of_what_they_hold():
    # A class holds its namespace and its attributes' values as a root. One not found by
    # its qualified name (made by type() or namedtuple(), in a function, or whose name
    # now means another class) may be one of a leak of classes: it is also counted
    # among the holders, as the monitor reads them for a growing type holding another.
    def local_class() -> type:
        class Local:
            kept = Order()

        return Local

    global Rebound
    old, Rebound = Rebound, type("Rebound", (), {})
    old.kept = Order()
    made = [type(f"Made{i}", (), {"kept": Order(i)}) for i in range(2)] + [local_class(), old]
    MADE[:] = [*made, collections.namedtuple("Point", "x y")]
    try:
        result = find_retainers([namespace_of(cls) for cls in MADE])
        local = f"{MOD}.{test_classes_made_at_run_time_are_roots_and_holders_of_what_they_hold.__name__}.<locals>"
        assert chains(result) == {
            f"{MOD}.Made0 -> builtins.dict": 1,
            f"{MOD}.Made1 -> builtins.dict": 1,
            f"{local}.local_class.<locals>.Local -> builtins.dict": 1,
            f"{MOD}.Rebound -> builtins.dict": 1,
            f"{MOD}.Point -> builtins.dict": 1,
        }
        assert result["holders"] == [{"type": "builtins.type", "objects": 5, "distinct": 5, "distance": 1.0}]
        result = find_retainers([cls.kept for cls in made] + [MADE[-1].__repr__])
        assert result["holders"] == [{"type": "builtins.type", "objects": 5, "distinct": 5, "distance": 1.0}]
        assert chains(result)[f"{MOD}.Point.__repr__ -> builtins.function"] == 1
        # a class its module holds by its name (a nested one through its outer class) is none
        Outer.Inner.kept.append(Order())
        for objects in ([namespace_of(Outer.Inner)], list(Outer.Inner.kept), [namespace_of(Rebound)]):
            holders = find_retainers(objects)["holders"]
            assert "builtins.type" not in {h["type"] for h in holders}, (objects, holders)
    finally:
        MADE.clear()
        Outer.Inner.kept.clear()


def test_the_re_module_s_caches_of_compiled_patterns_bound_what_their_patterns_hold():
    # re.compile(text) or re.match(text, ...) with a new text fills re's own dicts up
    # to their bound (re._MAXCACHE; from 3.12 a second one, re._MAXCACHE2): a pattern
    # there, and its source str, are a bounded cache's (whose growth ends), found
    # through the cache's key or its pattern.
    re.purge()
    sources = [f"bounded-{i}-x" for i in range(20)]
    for source in sources:
        re.compile(source)
    expected = {f"re._cache (20 of {re._MAXCACHE})": float(re._MAXCACHE - 20)}
    if hasattr(re, "_cache2"):
        expected[f"re._cache2 (20 of {re._MAXCACHE2})"] = float(re._MAXCACHE2 - 20)
    try:
        for objects in (sources, [re.compile(source) for source in sources]):
            result = find_retainers(objects)
            assert {b["holder"]: b["room"] for b in result["bounded"]}.items() <= expected.items(), result
            assert sum(b["count"] for b in result["bounded"]) == 20, result
    finally:
        re.purge()


KEPT_BY_THE_APP: list = []


@pytest.mark.parametrize("library_first", [True, False])
def test_of_the_shortest_chains_the_one_from_the_app_s_global_is_shown(library_first, monkeypatch):
    # A library's global (a module of an installed package's) holds the objects the
    # app keeps, as the re module's cache holds the patterns an app compiles and keeps:
    # the chain shown is the app's, whichever of the two lists was made first.
    library = types.ModuleType("somelib.registry")
    library.__file__ = os.path.join(os.path.dirname(os.__file__), "site-packages", "somelib", "registry.py")
    monkeypatch.setitem(sys.modules, library.__name__, library)
    orders = [Order(i) for i in range(3)]
    for holder in ("library", "app") if library_first else ("app", "library"):
        if holder == "library":
            library.RECENT = list(orders)
        else:
            monkeypatch.setattr(sys.modules[__name__], "KEPT_BY_THE_APP", list(orders))
    try:
        assert chains(find_retainers(orders)) == {f"{MOD}.KEPT_BY_THE_APP -> builtins.list[i] -> {MOD}.Order": 3}
        KEPT_BY_THE_APP.clear()  # the library's alone: its chain
        assert chains(find_retainers(orders)) == {f"somelib.registry.RECENT -> builtins.list[i] -> {MOD}.Order": 3}
    finally:
        KEPT_BY_THE_APP.clear()
        library.RECENT = []


def test_an_lru_cache_on_a_method():
    repo = Repo()
    made = [repo.query(q) for q in ("a", "b")]
    try:
        result = find_retainers(made)
        [(text, count)] = chains(result).items()
        assert count == 2
        assert text.startswith(f"{MOD}.Repo.query -> functools._lru_cache_wrapper -> ")
        assert text.endswith(f" -> {MOD}.Order")
    finally:
        Repo.query.cache_clear()


def test_a_closure_held_by_a_registered_callback():
    def register() -> None:
        order = Order()
        CALLBACKS.append(lambda: order)

    register()
    try:
        result = find_retainers([CALLBACKS[0].__closure__[0].cell_contents])
        assert chains(result) == {
            f"{MOD}.CALLBACKS -> builtins.list[i] -> builtins.function.__closure__ -> builtins.tuple[i] "
            f"-> builtins.cell(closure cell) -> {MOD}.Order": 1
        }
    finally:
        CALLBACKS.clear()


def test_an_instance_attribute_is_named():
    holder = Holder()
    HOARD.append(holder)  # type: ignore[arg-type]
    try:
        result = find_retainers([holder.kept])
        assert chains(result) == {f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Holder.kept -> {MOD}.Order": 1}
    finally:
        HOARD.clear()


def test_an_object_held_by_a_running_asyncio_task_s_frame():
    found: dict = {}

    async def worker(ready: asyncio.Event, done: asyncio.Event) -> None:
        order = Order()  # WORKER-LOCAL
        found["order"] = id(order)
        ready.set()
        await done.wait()
        del order

    async def main() -> None:
        ready, done = asyncio.Event(), asyncio.Event()
        task = asyncio.get_running_loop().create_task(worker(ready, done))
        await ready.wait()
        found["result"] = find_retainers([o for o in gc.get_objects() if type(o) is Order and id(o) == found["order"]])
        done.set()
        await task

    asyncio.run(main())
    [(text, count)] = chains(found["result"]).items()
    assert count == 1
    assert text.startswith(
        f"coroutine frame of test_an_object_held_by_a_running_asyncio_task_s_frame.<locals>.worker ({__file__}:"
    )
    assert text.endswith(f" local order -> {MOD}.Order")


def test_a_running_function_s_local_is_a_holder_the_collector_cannot_see():
    # 3.11+ keeps a running function's locals in no object: the frame is read once the
    # search is over, and names the local
    def running() -> dict:
        kept = [Order(), Order()]
        return find_retainers(list(kept))  # RUNNING-LINE

    result = running()
    if not LOCALS_READ:  # (before 3.13 reading them leaves a snapshot on the frame: not read)
        assert (result["chains"], result["hidden"], result["unreachable"], result["unresolved"]) == ([], 2, 0, 0)
        return
    assert (result["hidden"], result["unreachable"], result["unresolved"]) == (0, 0, 0)
    assert chains(result) == {
        f"frame of {running.__qualname__} ({__file__}:{line_of('RUNNING-LINE')}) local kept "
        f"-> builtins.list[i] -> {MOD}.Order": 2
    }


def test_a_running_function_s_local_is_the_chain_only_where_no_other_root_keeps_them():
    # the function that made a leak's objects holds them for a moment too: the chain
    # that keeps them is the other one
    HOARD[:] = [Order(), Order()]
    made = list(HOARD)
    try:
        assert chains(find_retainers(list(made))) == {f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order": 2}
    finally:
        HOARD.clear()


def test_objects_held_where_nothing_can_see_are_hidden():
    # (a C structure holds them: a reference no object the collector knows shows)
    import ctypes

    kept = [Order(), Order()]
    for obj in kept:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    del obj
    targets = [kept.pop(), kept.pop()]
    try:
        result = find_retainers(targets)
        assert (result["chains"], result["hidden"], result["unresolved"]) == ([], 2, 0)
    finally:
        for obj in targets:
            ctypes.pythonapi.Py_DecRef(ctypes.py_object(obj))


def test_a_cycle_nothing_outside_holds_is_unreachable():
    class Node:
        def __init__(self) -> None:
            self.other = None

    def make() -> Node:
        a, b = Node(), Node()
        a.other, b.other = b, a
        return a

    result = find_retainers([make()])
    assert result["chains"] == []
    assert (result["unreachable"], result["hidden"], result["unresolved"], result["stopped"]) == (1, 0, 0, "")
    gc.collect()


def test_the_search_stops_at_its_budget_and_says_so():
    HOARD[:] = [Order()]
    try:
        result = find_retainers(list(HOARD), budget_seconds=0.0)
        assert result["stopped"] == "time budget spent"
        assert (result["chains"], result["unresolved"], result["unreachable"]) == ([], 1, 0)
        shallow = find_retainers(list(HOARD), max_depth=1)
        assert shallow["stopped"] == "max depth 1 reached" and shallow["unresolved"] == 1
    finally:
        HOARD.clear()


def test_an_exception_as_a_block_begins_leaves_the_interval_as_it_was(monkeypatch):
    # (a KeyboardInterrupt can land anywhere; here, reading back the raised interval. An
    # earlier block's leftover to look for once is cleared first: its check would take
    # the first read, and the interrupt would land at the read of the interval to restore)
    retention.restore_a_switch_interval_left_raised()
    assert retention._held_off["interval"] is None
    before = sys.getswitchinterval()
    reads = []

    class Interrupting:
        def __getattr__(self, name: str) -> Any:
            return getattr(sys, name)

        def getswitchinterval(self) -> float:
            reads.append(1)
            if len(reads) == 2:
                raise KeyboardInterrupt
            return sys.getswitchinterval()

    monkeypatch.setattr(retention, "sys", Interrupting())
    try:
        with pytest.raises(KeyboardInterrupt):
            with retention.app_threads_held_off():
                pytest.fail("the block ran")
    finally:
        monkeypatch.undo()
    assert abs(sys.getswitchinterval() - before) < 1.5e-6
    assert retention._held_off["blocks"] == 0


def test_one_search_at_a_time(monkeypatch):
    HOARD[:] = [Order()]
    entered, release = threading.Event(), threading.Event()
    real = retention._referrers_of

    def slow(frontier, ours, deadline):
        entered.set()
        release.wait(10)
        return real(frontier, ours, deadline)

    errors = []

    def search() -> None:
        try:
            find_retainers(list(HOARD))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    monkeypatch.setattr(retention, "_referrers_of", slow)
    try:
        first = threading.Thread(target=search)
        first.start()
        assert entered.wait(10)
        with pytest.raises(RetentionBusy, match="a retention search is already running in this process"):
            find_retainers(list(HOARD))
    finally:
        release.set()
        first.join()
        HOARD.clear()
    assert errors == []


def test_the_search_leaves_nothing_behind():
    HOARD[:] = [Order() for _ in range(5)]
    try:
        find_retainers(list(HOARD))
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(5):
            find_retainers(list(HOARD))
        assert gc.collect() == 0  # no cycles of ours left for the collector
        assert len(gc.get_objects()) - before < 50
    finally:
        HOARD.clear()


@requires_engine
def test_objects_sampled_from_a_capture(capture):
    capture.track(Order)
    capture.start()
    try:
        HOARD[:] = [Order(i) for i in range(200)]
        temp = [Order() for _ in range(50)]  # a local of this running function: the collector cannot see it
        result = find_retainers(capture.sample(Order, 20))  # SAMPLED-LINE
        assert result["objects"] == 20 and sum(c["count"] for c in result["chains"]) == 20
        assert result["unreachable"] == result["hidden"] == result["unresolved"] == 0
        assert set(chains(result)) <= {
            f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order",
            f"frame of test_objects_sampled_from_a_capture ({__file__}:{line_of('SAMPLED-LINE')}) "
            f"local temp -> builtins.list[i] -> {MOD}.Order",
        }
        del temp
    finally:
        HOARD.clear()


class Session:
    registry: list = []


def test_a_class_attribute_is_found_past_thousands_of_live_instances_of_the_class():
    ordinary = [Session() for _ in range(6000)]  # each refers to its class
    Session.registry = [Session() for _ in range(20)]
    try:
        result = find_retainers(list(Session.registry))
        assert chains(result) == {f"{MOD}.Session.registry -> builtins.list[i] -> {MOD}.Session": 20}
        assert result["stopped"] == ""
    finally:
        Session.registry = []
        del ordinary


ERRORS: list = []


def test_a_finished_frame_kept_by_a_stored_exception_is_walked_past_to_its_owner():
    def handle() -> None:
        order = Order()  # noqa: F841 -- kept by the traceback's frame
        raise ValueError("boom")

    try:
        handle()
    except ValueError as exc:
        ERRORS.append(exc)
    try:
        frame = ERRORS[0].__traceback__.tb_next.tb_frame
        result = find_retainers([frame.f_locals["order"]])
        del frame
        # (two tracebacks: this test's frame, then handle's)
        assert chains(result) == {
            f"{MOD}.ERRORS -> builtins.list[i] -> builtins.ValueError -> builtins.traceback "
            f"-> builtins.traceback -> builtins.frame -> {MOD}.Order": 1
        }
    finally:
        ERRORS.clear()


class Touchy(dict):
    def items(self):  # the app's code: never called by the search
        raise RuntimeError("items() ran")


class Proxy:
    __slots__ = ("_target",)

    def __init__(self, target):
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name):
        raise RuntimeError(f"__getattr__({name!r}) ran")

    @property
    def __class__(self):  # as lazy proxies do
        raise RuntimeError("__class__ ran")


class Guarded(metaclass=Guarding):
    __slots__ = ("_target",)

    def __init__(self, target):
        self._target = target


TOUCHY = Touchy()
PROXIES: list = []


def test_the_search_runs_no_code_of_the_app_s():
    TOUCHY["a"] = Order()
    PROXIES.append(Proxy(Order()))
    PROXIES.append(Guarded(Order()))
    try:
        result = find_retainers(
            [TOUCHY["a"], object.__getattribute__(PROXIES[0], "_target"), Guarded._target.__get__(PROXIES[1])]
        )
        assert chains(result) == {
            f"{MOD}.TOUCHY -> {MOD}.Touchy['a'] -> {MOD}.Order": 1,
            f"{MOD}.PROXIES -> builtins.list[i] -> {MOD}.Proxy._target -> {MOD}.Order": 1,
            f"{MOD}.PROXIES -> builtins.list[i] -> {MOD}.Guarded._target -> {MOD}.Order": 1,
        }
    finally:
        TOUCHY.clear()
        PROXIES.clear()


def test_dict_keys_that_could_be_data_are_hidden_and_chains_still_group():
    import uuid

    by_token = {uuid.uuid4().hex: Order() for _ in range(4)}
    by_token["cart"] = Order()
    HOARD.append(by_token)  # type: ignore[arg-type]
    try:
        result = find_retainers(list(by_token.values()))
        assert chains(result) == {
            f"{MOD}.HOARD -> builtins.list[i] -> builtins.dict[key] -> {MOD}.Order": 4,
            f"{MOD}.HOARD -> builtins.list[i] -> builtins.dict['cart'] -> {MOD}.Order": 1,
        }
        assert not any(token in str(result) for token in by_token if token != "cart")
    finally:
        HOARD.clear()


SESSIONS: dict = {}


@pytest.mark.skipif(engine.referrers([]) is None, reason="the C extension is not loaded here")
def test_strs_kept_as_the_keys_of_a_dict_are_held_by_it(monkeypatch):
    # the dict's keys are all strs: it does not show them to the collector, and the
    # search looks at a dict's keys itself (in the extension's pass, and after it)
    SESSIONS.update((f"session-{n}-{id(object())}", Order(n)) for n in range(4))
    try:
        result = find_retainers(list(SESSIONS))
        assert chains(result) == {f"{MOD}.SESSIONS -> builtins.dict(a key) -> builtins.str": 4}
        assert (result["objects"], result["hidden"], result["unreachable"], result["unresolved"]) == (4, 0, 0, 0)
        assert not any(key in str(result) for key in SESSIONS)
        # without the extension (gc.get_referrers), as before: something hides them
        monkeypatch.setattr(retention, "referrers_until", lambda objects, ignored, deadline: None)
        without = find_retainers(list(SESSIONS))
        assert (without["chains"], without["hidden"]) == ([], 4)
    finally:
        SESSIONS.clear()


class Namespace:
    pass


SPACE = Namespace()


@pytest.mark.skipif(engine.referrers([]) is None, reason="the C extension is not loaded here")
def test_attribute_names_kept_by_an_object_or_a_class_are_its_keys():
    # setattr(obj, f"seen_{n}", ...): the names are the keys of its namespace, never its values
    for n in range(3):
        setattr(SPACE, f"seen_{n}_{id(SPACE)}", [n])
        setattr(Namespace, f"known_{n}_{id(SPACE)}", [n])  # (names are interned: others than the object's)
    try:
        # (outside the assert: pytest would keep vars()'s dict in a local of this frame)
        result = find_retainers(list(vars(SPACE)))
        if sys.version_info[:2] != (3, 13):
            assert chains(result) == {f"{MOD}.SPACE -> {MOD}.Namespace(a key) -> builtins.str": 3}
        else:
            # 3.13 visits an object's inline values, not the namespace dict vars() made
            # over them: nothing the collector shows holds that dict
            assert (result["chains"], result["hidden"]) == ([], 3)
        result = find_retainers([name for name in vars(Namespace) if name.startswith("known_")])
        assert chains(result) == {f"{MOD}.Namespace(a key) -> builtins.str": 3}
    finally:
        for n in range(3):
            delattr(SPACE, f"seen_{n}_{id(SPACE)}")
            delattr(Namespace, f"known_{n}_{id(SPACE)}")


def test_after_gc_freeze_what_cannot_be_followed_is_unresolved_not_hidden(monkeypatch):
    # gc.get_referrers, which skips frozen objects
    monkeypatch.setattr(retention, "referrers_until", lambda objects, ignored, deadline: None)
    monkeypatch.setattr(retention, "REFERRERS_SEE_FROZEN", False)
    HOARD[:] = [Order() for _ in range(3)]
    gc.freeze()
    try:
        result = find_retainers(list(HOARD))
        assert (result["chains"], result["unresolved"], result["hidden"], result["unreachable"]) == ([], 3, 0, 0)
        assert result["stopped"].startswith("gc.freeze() keeps ")
    finally:
        gc.unfreeze()
        HOARD.clear()


@pytest.mark.skipif(not engine.REFERRERS_SEE_FROZEN, reason="the extension's pass skips frozen objects here")
def test_after_gc_freeze_the_extension_still_follows_chains_through_frozen_objects():
    HOARD[:] = [Order() for _ in range(3)]
    gc.freeze()  # HOARD and this module's namespace are set aside now
    try:
        result = find_retainers(list(HOARD))
        assert result["chains"] == [{"chain": f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order", "count": 3}]
        assert (result["unresolved"], result["hidden"], result["unreachable"], result["stopped"]) == (0, 0, 0, "")
    finally:
        gc.unfreeze()
        HOARD.clear()


@pytest.mark.skipif(engine.referrers([]) is None, reason="the C extension is not loaded here")
def test_a_level_whose_pass_the_deadline_stopped_is_the_budget_spent_not_a_heap_seen_whole(monkeypatch):
    # the pass over the heap stops at the search's deadline (here: before the level's
    # first object); what it did not look at is unknown, not "unreachable"
    HOARD[:] = [Order() for _ in range(3)]
    real = retention.referrers_until
    levels = []

    def late(objects, ignored, deadline):
        levels.append(len(objects))
        return real(objects, ignored, 0.0 if len(levels) == 2 else deadline)

    monkeypatch.setattr(retention, "referrers_until", late)
    try:
        result = find_retainers([*HOARD, Order()])  # (one that only the search holds)
        assert levels == [4, 1]  # (the list holding three, stopped looking for what holds it)
        assert (result["stopped"], result["unresolved"], result["unreachable"], result["chains"]) == (
            "time budget spent",
            4,
            0,
            [],
        )
    finally:
        HOARD.clear()


_FROZEN: list = []


@pytest.mark.skipif(not hasattr(builtins, "frozendict"), reason="frozendict arrived in CPython 3.15")
@pytest.mark.skipif(engine.referrers([]) is None, reason="the C extension is not loaded here")
def test_strs_kept_as_the_keys_of_frozendicts_have_their_chain():
    # a frozendict (no subclass of dict) shows the collector none of its str keys either
    _FROZEN[:] = [builtins.frozendict({"".join(["session-", str(n)]): n * 0.5}) for n in range(6)]
    try:
        keys = [next(iter(frozen)) for frozen in _FROZEN]
        result = find_retainers(keys)
        assert result["chains"] == [
            {"chain": f"{MOD}._FROZEN -> builtins.list[i] -> builtins.frozendict(a key) -> builtins.str", "count": 6}
        ]
        values = find_retainers([frozen[key] for frozen, key in zip(_FROZEN, keys, strict=True)])
        assert values["chains"] == [
            {"chain": f"{MOD}._FROZEN -> builtins.list[i] -> builtins.frozendict[key] -> builtins.float", "count": 6}
        ]
    finally:
        _FROZEN.clear()


def test_a_large_holder_is_read_by_the_extension_with_the_same_chains(monkeypatch):
    # a long-running leak's list (above _LARGE_HOLDER items) is read by held_by; a dict's
    # str keys too
    HOARD[:] = [Order() for _ in range(3000)]
    _KEYED.update(("".join(["session-", str(n)]), n * 0.5) for n in range(3000))
    try:
        objects, keys = HOARD[-5:], list(_KEYED)[-5:]
        with_it = find_retainers(objects), find_retainers(keys)
        asked = []
        monkeypatch.setattr(retention, "held_by", lambda holder, frontier, strings: asked.append(len(holder)))
        without = find_retainers(objects), find_retainers(keys)
        assert asked == [3000, 3000]  # (the list, then the dict: both large; and None, so read here)
        assert (
            [r["chains"] for r in with_it]
            == [r["chains"] for r in without]
            == [
                [{"chain": f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order", "count": 5}],
                [{"chain": f"{MOD}._KEYED -> builtins.dict(a key) -> builtins.str", "count": 5}],
            ]
        )
    finally:
        HOARD.clear()
        _KEYED.clear()


_KEYED: dict = {}


def test_an_object_a_large_holder_refers_to_twice_is_explained_by_it(monkeypatch):
    # garbage in a cycle: a list of more than _LARGE_HOLDER items that holds itself and
    # one object twice; both references explained, the object is unreachable, not hidden
    gc.disable()
    try:
        cycle: list = [Order() for _ in range(1100)]
        cycle += [Order(), cycle]
        cycle.append(cycle[-2])
        target = weakref.ref(cycle[-1])  # (no frame of the test's holds it)
        del cycle
        with_it = find_retainers([target()])
        monkeypatch.setattr(retention, "held_by", lambda holder, frontier, strings: None)
        without = find_retainers([target()])
        assert [(r["unreachable"], r["hidden"], r["chains"]) for r in (with_it, without)] == [(1, 0, [])] * 2
    finally:
        gc.enable()
        gc.collect()


def test_the_search_without_the_extension_finds_the_same_chains(monkeypatch):
    HOARD[:] = [Order() for _ in range(4)]
    try:
        with_extension = find_retainers(list(HOARD))
        monkeypatch.setattr(retention, "referrers_until", lambda objects, ignored, deadline: None)
        without = find_retainers(list(HOARD))
        expected = [{"chain": f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order", "count": 4}]
        assert with_extension["chains"] == without["chains"] == expected
    finally:
        HOARD.clear()


class Tables:
    _memtracker_bookkeeping = True  # as the monitor's own classes are marked

    def __init__(self) -> None:
        self.rows: list = []


class Row:
    pass


def test_objects_in_our_tables_held_by_a_local_variable_are_our_own():
    # the tables are held by this function's local variable only, which the collector
    # does not show: the chain stops at them, no root found, and still they are ours
    tables = Tables()
    tables.rows.extend(Row() for _ in range(5))
    found = find_retainers(list(tables.rows))  # TABLES-LINE
    assert found["roots"] == {"own": 5, "library frame": 0}
    through_local = (
        f"frame of {sys._getframe().f_code.co_name} ({__file__}:{line_of('TABLES-LINE')}) local tables "
        f"-> {MOD}.Tables.rows -> builtins.list[i] -> {MOD}.Row"
    )
    assert chains(found) == ({through_local: 5} if LOCALS_READ else {})
    assert found["hidden"] == found["unreachable"] == found["unresolved"] == 0  # each counted once
    plain = [Row() for _ in range(5)]  # the same without our tables: nobody's
    assert find_retainers(plain[:])["roots"] == {"own": 0, "library frame": 0}


@requires_engine
def test_what_the_codes_our_call_trees_hold_keep_is_found_though_the_collector_shows_none_of_it():
    # Code compiled for each call (a template rendered from a string), run while a type
    # it makes is analysed: its node keeps the code, and the code its line table,
    # exception table, locals' kinds and constants, none of which the collector shows
    # held: a search finds them held by nothing it can see.
    import memtracker_web as mt

    tracker = mt.Tracker()
    try:
        tracker.track_with_analysis(Row)
        rows = []
        for n in range(4):
            namespace: dict = {"Row": Row}
            source = f"def render_{n}():\n    def cell():\n        return {n}\n"
            source += f"    title = 'page {n}!'\n    return Row()\n"
            exec(compile(source, "<template>", "exec"), namespace)
            rows.append(namespace[f"render_{n}"]())
            namespace[f"render_{n}"].__code__.co_varnames  # (made when first read, and kept)  # noqa: B018
            del namespace
        gc.collect()
        all_codes, alone = tracker.capture.tree_codes()
        assert len([code for code in alone if code.co_filename == "<template>"]) == 4
        codes = [code for code in all_codes if code.co_filename == "<template>"]
        del all_codes, alone
        assert len(codes) == 4 and tracker.capture.tree_codes()[1] == []  # (now this list holds them too)
        held = retention.held_by_codes(tracker.capture.tree_codes()[0])
        nested = [const for code in codes for const in code.co_consts if isinstance(const, types.CodeType)]
        assert len(nested) == 4
        for code in codes + nested:
            assert {id(code.co_linetable), id(code.co_exceptiontable), id(code.co_consts)} <= held
        assert all(id(code) not in held for code in codes + nested)  # (codes themselves: only those alone)
        assert {id(code) for code in codes} <= retention.held_by_codes([], codes)
        assert all(id(code.co_varnames) in held for code in codes)
        titles = [const for code in codes for const in code.co_consts if isinstance(const, str) and "!" in const]
        assert sorted(titles) == [f"page {n}!" for n in range(4)] and all(id(t) in held for t in titles)
        (found,) = find_retainers_of_groups([[code.co_linetable for code in codes]])
        assert found["hidden"] == 4  # (what the monitor leaves out of its samples: see _search_for_pending)
    finally:
        tracker.stop()


class Manager:  # as logging's: one manager, shared by every logger, holds them all
    def __init__(self) -> None:
        self.loggers: dict = {}


class Logger:
    manager = Manager()


def test_what_a_global_of_ours_reaches_through_anothers_object_is_not_ours(monkeypatch):
    # memtracker_web's modules keep a logging.Logger (``logger = logging.getLogger(...)``),
    # whose manager holds every logger the app makes: a logger leak was set aside as our
    # own bookkeeping when the search reached it from our module's global first
    from memtracker_web.core import naming

    ours = Logger()
    ours.manager = Logger.manager  # (logging sets each logger's manager on the instance)
    made = [Logger() for _ in range(5)]
    registry = Logger.manager.loggers
    registry.update((f"shop.{n}", logger) for n, logger in enumerate(made))
    monkeypatch.setattr(naming, "logger", ours, raising=False)
    try:
        found = find_retainers(made[:])
        assert found["roots"] == {"own": 0, "library frame": 0}
        through_logging = f"{MOD}.Logger.manager -> {MOD}.Manager.loggers -> builtins.dict[key] -> {MOD}.Logger"
        assert chains(found) == {through_logging: 5}
        # with our global the only root: the app's all the same, named as reached
        monkeypatch.setattr(Logger, "manager", None)
        found = find_retainers(made[:])
        assert found["roots"] == {"own": 0, "library frame": 0}
        assert chains(found) == {
            f"memtracker_web.core.naming.logger -> {MOD}.Logger.manager -> {MOD}.Manager.loggers "
            f"-> builtins.dict[key] -> {MOD}.Logger": 5
        }
        # and through our own objects and plain containers only, it is ours
        tables = Tables()
        tables.rows.extend(made)
        monkeypatch.setattr(naming, "logger", tables)
        ours.manager = None
        assert find_retainers(made[:])["roots"] == {"own": 5, "library frame": 0}
    finally:
        registry.clear()


# a class of memtracker_web's as the search reads it (its module is ours), for a publisher of
# ours that keeps another package's objects (prometheus_client metrics)
Publisher = type("Publisher", (), {"__module__": "memtracker_web.render.prometheus"})


class MetricFamily:  # another package's class, made and kept by an object of ours
    def __init__(self) -> None:
        self.children: dict = {}


def test_what_an_object_of_ours_keeps_through_anothers_object_and_a_second_clean_chain_stay_ours(monkeypatch):
    from memtracker_web.core import naming

    made = [Row() for _ in range(5)]
    # a global of ours -> an object of ours -> another package's object it made -> ...:
    # ours (a multiprocess publisher's metric children, one per label it ever published)
    publisher = Publisher()
    publisher.metrics = MetricFamily()
    publisher.metrics.children.update(enumerate(made))
    monkeypatch.setattr(naming, "publisher", publisher, raising=False)
    assert find_retainers(made[:])["roots"] == {"own": 5, "library frame": 0}
    monkeypatch.delattr(naming, "publisher")
    # the same global of ours reaching them both through another's object and, as short,
    # through containers only: the clean chain is found, and they are ours
    other = MetricFamily()
    other.children.update(enumerate(made))
    monkeypatch.setattr(naming, "both", [other, [list(made)]], raising=False)
    assert find_retainers(made[:])["roots"] == {"own": 5, "library frame": 0}


class Alerts:  # an app's object the monitor was given (an on_leak callback's owner)
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, report: dict) -> None:
        self.sent.append(report)


def test_an_apps_object_our_tables_hold_keeps_what_it_holds_as_the_apps():
    tables, alerts = Tables(), Alerts()
    tables.rows.append(alerts.send)  # as MemoryMonitor(on_leak=alerts.send) keeps it
    alerts.sent.extend(Row() for _ in range(5))
    del alerts  # now held by our tables only, through the bound method
    found = find_retainers(list(tables.rows[0].__self__.sent))
    assert found["roots"] == {"own": 0, "library frame": 0} and found["hidden"] == (0 if LOCALS_READ else 5)
    if LOCALS_READ:
        assert found["kept_by"].startswith(f"frame of {sys._getframe().f_code.co_name} (")
        assert found["kept_by"].endswith(f"{MOD}.Alerts.sent -> builtins.list[i] -> {MOD}.Row")


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def a_cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def without_timing(result: dict) -> dict:
    return {key: value for key, value in result.items() if key not in ("seconds", "levels")}


def test_one_search_for_several_groups_answers_for_each_as_alone():
    HOARD[:] = [Order(i) for i in range(3)]
    tables = Tables()
    tables.rows.extend(Row() for _ in range(2))

    def search(alone: bool) -> list[dict]:
        local = [Holder(), Holder()]  # a local: held where the collector cannot see, read once it is over
        groups = [list(HOARD), [a_cycle(), a_cycle()], list(tables.rows), list(local), []]
        return [find_retainers(group) for group in groups] if alone else find_retainers_of_groups(groups)

    try:
        grouped, alone = search(False), search(True)
        assert [without_timing(r) for r in grouped] == [without_timing(r) for r in alone]
        assert [(r["objects"], r["unreachable"], r["hidden"], r["roots"]["own"]) for r in grouped] == [
            (3, 0, 0, 0),
            (2, 2, 0, 0),
            (2, 0, 0, 2),
            (2, 0, 0 if LOCALS_READ else 2, 0),
            (0, 0, 0, 0),
        ]
        assert not LOCALS_READ or grouped[3]["kept_by"].startswith(
            "frame of test_one_search_for_several_groups_answers_for_each_as_alone."
        )
        assert not LOCALS_READ or grouped[3]["kept_by"].endswith(f" local local -> builtins.list[i] -> {MOD}.Holder")
        assert chains(grouped[0]) == {f"{MOD}.HOARD -> builtins.list[i] -> {MOD}.Order": 3}
    finally:
        HOARD.clear()
        gc.collect()


def test_a_root_generator_that_finishes_before_the_chains_are_written_keeps_its_name(monkeypatch):
    # between two passes the app runs on: a coroutine or generator found suspended may
    # have resumed or finished when the result is written ("? -> ..." before)
    from memtracker_web.monitor import retention

    def holding(items: list):
        yield

    gen = holding([Order(), Order()])
    next(gen)
    targets = list(gen.gi_frame.f_locals["items"])
    write = retention._Search.result

    def finish_then_write(self, *args, **kwargs):
        gen.close()  # it finished meanwhile
        return write(self, *args, **kwargs)

    monkeypatch.setattr(retention._Search, "result", finish_then_write)
    found = find_retainers(targets)
    assert gen.gi_frame is None
    [(text, count)] = chains(found).items()
    assert count == 2
    assert text.startswith(f"generator frame of {holding.__qualname__} ({__file__}:")
    assert text.endswith(f" local items -> builtins.list[i] -> {MOD}.Order")
    assert found["kept_by"] == text


NEAR = collections.deque(maxlen=100)  # a bounded cache with room: not the app's
NEAR_APP: list = []
MID: list = []
FAR: list = []


def nested(obj: Any, lists: int) -> list:
    holder: list = [obj]
    for _ in range(lists - 1):
        holder = [holder]
    return holder


def test_patience_stops_a_search_once_more_levels_reach_no_other_object_and_half_are_not_the_apps():
    NEAR.extend(Order() for _ in range(6))
    MID.append(nested(Order(), 2))  # four levels below its module
    FAR.append(nested(Order(), 10))  # twelve
    mid, far = MID[0][0][0], FAR[0]
    for _ in range(9):
        far = far[0]
    far = far[0]  # (the search reads the running test's locals: only the targets list may hold them)
    near_chain = f"{MOD}.NEAR -> collections.deque[i] -> {MOD}.Order"
    mid_chain = f"{MOD}.MID -> " + "builtins.list[i] -> " * 3 + f"{MOD}.Order"
    far_chain = f"{MOD}.FAR -> " + "builtins.list[i] -> " * 11 + f"{MOD}.Order"
    targets = [*NEAR, mid, far]
    del mid, far
    try:
        whole = find_retainers_of_groups([targets])[0]
        assert whole["unresolved"] == 0 and whole["stopped"] == "" and whole["levels"] == 12
        assert chains(whole) == {near_chain: 6, mid_chain: 1, far_chain: 1}
        patient = find_retainers_of_groups([targets], patience=2)[0]
        # NEAR's at level 2, MID's at 4: two more levels without another, and 6 of 8 not the app's
        assert chains(patient) == {near_chain: 6, mid_chain: 1}
        assert patient["unresolved"] == 1 and patient["levels"] == 4 + 2
        assert patient["stopped"] == "no other object reached a root in 2 more levels"
        assert patient["bounded"] == [
            {"holder": "collections.deque (6 of maxlen 100)", "count": 6, "room": 94, "function": None}
        ]
        # nothing reached yet: it does not stop (a leak held from far off is still found)
        alone = find_retainers_of_groups([targets[-1:]], patience=1)[0]
        assert chains(alone) == {far_chain: 1}
        # half of a group the app's own: its verdict could still change, the search goes on
        NEAR_APP.extend(NEAR)
        NEAR.clear()
        app = find_retainers_of_groups([targets], patience=2)[0]
        assert app["unresolved"] == 0 and app["levels"] == 12
        # each group on its own: one mostly not the app's is not enough
        NEAR.extend(NEAR_APP)
        NEAR_APP.clear()
        groups = find_retainers_of_groups([targets[:6], targets[-1:]], patience=2)
        assert [g["unresolved"] for g in groups] == [0, 0]
    finally:
        NEAR.clear()
        NEAR_APP.clear()
        MID.clear()
        FAR.clear()


@pytest.mark.parametrize("patience", [0, -1])
def test_patience_below_one_level_is_refused(patience):
    with pytest.raises(ValueError, match=f"patience must be 1 or more levels, got {patience}"):
        find_retainers_of_groups([[Order()]], patience=patience)


@pytest.mark.skipif(not LOCALS_READ, reason="running functions' locals are read from 3.13")
def test_where_an_apps_function_and_a_librarys_both_hold_it_the_chain_is_the_apps():
    # an app's main() made the object and handed it to a server, which runs on
    import os

    library = {}
    source = "def serve(app, targets, find):\n    return find(targets)\n"
    exec(compile(source, os.path.join(os.path.dirname(os.__file__), "fake_server.py"), "exec"), library)

    def main() -> dict:
        app = Order()
        return library["serve"](app, [app], find_retainers)  # MAIN-LINE

    found = main()
    assert found["roots"] == {"own": 0, "library frame": 0}
    assert chains(found) == {
        f"frame of {main.__qualname__} ({__file__}:{line_of('MAIN-LINE')}) local app -> {MOD}.Order": 1
    }


class Spinner:
    """A thread of the app's that never waits: it counts as long as it has the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop:
            self.count += 1

    def __enter__(self) -> Spinner:
        self.thread.start()
        while self.count == 0:  # running, and asking for the GIL from now on
            pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop = True
        self.thread.join()


def spin(seconds: float) -> None:
    """Python code of our own for ``seconds`` of thread time, without waiting."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_no_app_thread_runs_while_they_are_held_off(monkeypatch):
    # (an interval well above the block's 20 ms: a test process the machine deschedules
    # for a while must not let the app's thread ask meanwhile)
    monkeypatch.setattr(retention, "HOLD_OFF_INTERVAL", 0.5)
    interval = sys.getswitchinterval()
    with Spinner() as app:
        before = app.count
        spin(0.05)  # ten times the switch interval: the app's thread has its turns
        assert app.count > before
        with retention.app_threads_held_off():
            assert sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL)
            before = app.count
            spin(0.02)  # (under HOLD_OFF_INTERVAL: a longer block lets a waiting thread in)
            after = app.count
        assert after == before
        assert sys.getswitchinterval() == interval
        before = app.count
        spin(0.05)
        assert app.count > before  # and it runs again after


def test_a_switch_interval_set_while_app_threads_are_held_off_is_kept():
    interval = sys.getswitchinterval()
    try:
        with retention.app_threads_held_off():
            sys.setswitchinterval(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
        sys.setswitchinterval(0.003)
        with retention.app_threads_held_off():
            pass
        assert sys.getswitchinterval() == pytest.approx(0.003)
    finally:
        sys.setswitchinterval(interval)


@contextlib.contextmanager
def a_block_in_another_thread() -> Iterator[None]:
    """Another monitor's block, running in a thread of its own until the with ends."""
    inside, leave = threading.Event(), threading.Event()

    def other_monitor() -> None:
        with retention.app_threads_held_off():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_monitor)
    thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        leave.set()
        thread.join()


def fork() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (fork with threads, 3.12+)
        return os.fork()


def test_overlapping_blocks_restore_the_switch_interval_when_the_last_one_ends():
    interval = sys.getswitchinterval()
    with contextlib.ExitStack() as other:
        with retention.app_threads_held_off():
            other.enter_context(a_block_in_another_thread())
        assert sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL)  # the other block still runs
    assert sys.getswitchinterval() == interval


@pytest.mark.parametrize("seconds", [0.007, 0.025, 1e-4, 0.0123457, 0.1])
def test_the_switch_interval_comes_back_to_the_microsecond(seconds):
    # CPython keeps whole microseconds and truncates: a value read back and set again
    # can lose one each time (0.007 -> 0.006999, 0.025 -> 0.024999, 1e-4 -> 9.9e-05)
    interval = sys.getswitchinterval()
    try:
        sys.setswitchinterval(seconds)
        before = sys.getswitchinterval()
        for _ in range(3):
            with retention.app_threads_held_off():
                held = before if before >= retention.HOLD_OFF_INTERVAL else pytest.approx(retention.HOLD_OFF_INTERVAL)
                assert sys.getswitchinterval() == held
            assert sys.getswitchinterval() == before
    finally:
        sys.setswitchinterval(interval)


def test_an_interval_the_app_saved_mid_block_and_restored_after_is_put_back():
    # CPython's test_threading saves the switch interval and restores it in a finally: done
    # across a block, it would leave the raised one for good
    interval = sys.getswitchinterval()
    try:
        with retention.app_threads_held_off():
            saved = sys.getswitchinterval()
        sys.setswitchinterval(saved)  # (a microsecond lower: CPython truncates)
        assert sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL, abs=2e-6)
        from memtracker_web.monitor import MemoryMonitor

        m = MemoryMonitor(interval=60.0)
        try:
            m.sample()
            assert sys.getswitchinterval() == interval
            # once: the same value set on purpose later is the app's own
            sys.setswitchinterval(retention.HOLD_OFF_INTERVAL)
            chosen = sys.getswitchinterval()
            m.sample()
            assert sys.getswitchinterval() == chosen
        finally:
            m.close()
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("seconds", [0.3, retention.HOLD_OFF_INTERVAL])
def test_an_interval_already_as_long_is_left_and_the_block_does_not_wait(seconds):
    import time

    # The last block run here (another test's) left its raised interval to look for once
    # (restore_a_switch_interval_left_raised): HOLD_OFF_INTERVAL set now would look like
    # the app restoring a value it saved mid-block, and be put back to what that block found.
    retention.restore_a_switch_interval_left_raised()
    interval = sys.getswitchinterval()
    try:
        sys.setswitchinterval(seconds)  # (0.05 reads back as 0.0499...: as long all the same)
        before = sys.getswitchinterval()
        started = time.perf_counter()
        with retention.app_threads_held_off():
            assert sys.getswitchinterval() == before
        assert time.perf_counter() - started < 0.04  # (no sleep as long as that interval)
        assert sys.getswitchinterval() == before
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_another_thread_holds_the_app_off_gets_the_interval_back():
    interval = sys.getswitchinterval()
    with a_block_in_another_thread():
        pid = fork()
        if pid == 0:
            ok = sys.getswitchinterval() == interval
            with retention.app_threads_held_off():  # and blocks work there
                ok = ok and sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL)
            ok = ok and sys.getswitchinterval() == interval
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL)  # the parent's block runs on
    assert sys.getswitchinterval() == interval


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_by_the_blocks_own_thread_ends_the_block_there_and_the_parent_is_untouched():
    interval = sys.getswitchinterval()
    pid = -1
    try:
        with retention.app_threads_held_off():
            pid = fork()
            if pid == 0:
                back_at_once = sys.getswitchinterval() == interval
            else:
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
                assert sys.getswitchinterval() == pytest.approx(retention.HOLD_OFF_INTERVAL)
        if pid == 0:  # the child, through the block's end too
            ended = sys.getswitchinterval() == interval and not retention._held_off["blocks"]
            os._exit(0 if back_at_once and ended else 1)
    except BaseException:
        if pid == 0:
            os._exit(2)
        raise
    assert sys.getswitchinterval() == interval
    assert retention._held_off["blocks"] == 0


NEWEST_LIST: Any = None
NEWEST_DICT: Any = None
NEWEST_DEQUE: Any = None
NEWEST_SET: Any = None
NEWEST_OTHER: Any = None


def test_newest_global_objects_reads_the_last_entries_of_a_module_global_in_order():
    # where a leak kept in a module global adds its objects: its last entries' objects,
    # however many it holds (global_container_entries gives up past its limit)
    global NEWEST_LIST, NEWEST_DICT, NEWEST_DEQUE, NEWEST_SET, NEWEST_OTHER
    try:
        NEWEST_LIST = [f"r{k}" for k in range(10)]
        NEWEST_DICT = {f"k{k}": k * 10 for k in range(10)}
        NEWEST_DEQUE = collections.deque(range(10), maxlen=20)
        NEWEST_SET = set(range(10))
        NEWEST_OTHER = (1, 2, 3)
        newest = retention.newest_global_objects
        assert newest(MOD, "NEWEST_LIST", 3) == ["r7", "r8", "r9"]
        assert newest(MOD, "NEWEST_LIST", 50) == [f"r{k}" for k in range(10)]
        assert newest(MOD, "NEWEST_LIST", 0) == []
        assert newest(MOD, "NEWEST_DICT", 2) == ["k8", 80, "k9", 90]  # (keys and values)
        assert newest(MOD, "NEWEST_DICT", 0) == []
        assert newest(MOD, "NEWEST_DEQUE", 3) == [7, 8, 9]
        some = newest(MOD, "NEWEST_SET", 4)
        assert some is not None and len(some) == 4 and set(some) <= NEWEST_SET
        assert retention.global_container_entries(MOD, "NEWEST_LIST", 3) is None  # (past its limit)
        assert newest(MOD, "NEWEST_OTHER", 3) is None  # not a plain list, dict, set or deque
        assert newest(MOD, "NO_SUCH_GLOBAL", 3) is None
        assert newest("no_such_module_here", "NEWEST_LIST", 3) is None
        NEWEST_LIST.append("r10")
        assert newest(MOD, "NEWEST_LIST", 1) == ["r10"]  # read now, not a copy kept
    finally:
        NEWEST_LIST = NEWEST_DICT = NEWEST_DEQUE = NEWEST_SET = NEWEST_OTHER = None


def test_newest_global_objects_reads_one_level_down_where_asked():
    # a leak kept in the lists of a module dict (``LEAKED.setdefault(key, []).append(row)``)
    # or the tuples of a module list: the newest entries' own newest objects, up to the
    # limit in all; entries that are no plain container (an int key) are passed over
    global NEWEST_DICT, NEWEST_LIST
    try:
        NEWEST_DICT = {k: [f"{k}.{j}" for j in range(3)] for k in range(4)}
        NEWEST_LIST = [(k, f"t{k}") for k in range(5)] + ["loose"]
        newest = retention.newest_global_objects
        assert newest(MOD, "NEWEST_DICT", 4, nested=True) == ["2.2", "3.0", "3.1", "3.2"]
        assert newest(MOD, "NEWEST_DICT", 50, nested=True) == [f"{k}.{j}" for k in range(4) for j in range(3)]
        assert newest(MOD, "NEWEST_DICT", 0, nested=True) == []
        assert newest(MOD, "NEWEST_LIST", 3, nested=True) == ["t3", 4, "t4"]
        assert newest(MOD, "NEWEST_LIST", 2, nested=False) == [(4, "t4"), "loose"]
        NEWEST_DICT[9] = {"a": "x"}  # (a dict one level down: its keys and values)
        assert newest(MOD, "NEWEST_DICT", 2, nested=True) == ["a", "x"]
        # read in chunks of the newest entries (64, 512, then the limit), in order across them
        NEWEST_DICT = {k: [k] for k in range(1000)}
        assert newest(MOD, "NEWEST_DICT", 70, nested=True) == list(range(930, 1000))
        assert newest(MOD, "NEWEST_DICT", 600, nested=True) == list(range(400, 1000))
        NEWEST_LIST = [[k] for k in range(3)] + [[] for _ in range(5000)]
        assert newest(MOD, "NEWEST_LIST", 2048, nested=True) == []  # (its newest 2,048 entries only)
        NEWEST_LIST = collections.deque([[k, -k] for k in range(5)])
        assert newest(MOD, "NEWEST_LIST", 3, nested=True) == [-3, 4, -4]
        # a defaultdict and an OrderedDict are read as a dict is (the OrderedDict in the
        # order of its insertions: a move to its end is its own bookkeeping)
        NEWEST_DICT = collections.defaultdict(list)
        NEWEST_DICT["a"].extend(["a1", "a2"])
        NEWEST_DICT["b"].append("b1")
        assert newest(MOD, "NEWEST_DICT", 2, nested=True) == ["a2", "b1"]
        assert retention.global_place_sizes(MOD, "NEWEST_DICT", nested=True) == (2, 2 + 3)
        assert retention.global_place_sizes(MOD, "NEWEST_DICT", nested=False) == (2, 2)
        # (past NESTED_SIZE_ENTRIES entries, what its newest hold: a new key pushes one out)
        most = retention.NESTED_SIZE_ENTRIES
        NEWEST_DICT.update((k, [k, k]) for k in range(most - 2))
        assert retention.global_place_sizes(MOD, "NEWEST_DICT", nested=True) == (most, most + 3 + 2 * (most - 2))
        NEWEST_DICT[-1] = [0]
        assert retention.global_place_sizes(MOD, "NEWEST_DICT", nested=True) == (
            most + 1,
            most + 1 + (1 + 2 * (most - 2) + 1),  # ("a", its oldest entry, pushed out of those read)
        )
        NEWEST_DICT = collections.OrderedDict((f"k{k}", [k]) for k in range(3))
        NEWEST_DICT.move_to_end("k0")
        assert newest(MOD, "NEWEST_DICT", 2) == ["k1", [1], "k2", [2]]
        assert retention.global_container_entries(MOD, "NEWEST_DICT", 5) == [("k0", [0]), ("k1", [1]), ("k2", [2])]
        # (a subclass of the app's is not read: its methods are its code)
        NEWEST_DICT = type("Mine", (dict,), {})(a=[1])
        assert newest(MOD, "NEWEST_DICT", 2, nested=True) is None
        assert retention.global_container_size(MOD, "NEWEST_DICT") is None
    finally:
        NEWEST_LIST = NEWEST_DICT = None
