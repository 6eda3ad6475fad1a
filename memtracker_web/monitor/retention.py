"""Who keeps objects alive: chains of referrers from a few live objects up to a root.

For a sample of live objects of one type, walk the heap backwards, one level at
a time, until each object's chain reaches something a developer recognises: a
module global (``myapp.cache.HOARD``), a class attribute (``Repo.cache``), the
frame of a running function (a thread's or an asyncio task's), or nothing
outside a reference cycle ("unreachable, waiting for the garbage collector").
Identical chains are grouped and counted.

Each level is one pass over the garbage collector's objects for the whole
frontier (``max_depth`` at most), not one per object visited as in a
depth-first search: the extension's ``referrers``, whose pass costs the same
for one object or thousands (``gc.get_referrers`` compares every reference with
each object asked about, and is used only where the extension is not loaded).
It stops when ``budget_seconds`` is spent and says so. The pass holds the GIL:
on a heap of 10^6 objects a level takes tens of milliseconds (bench/RESULTS.md).

Chains name types, module-level names, attribute names and container kinds,
never contents: a dict key that is not a short word without digits is ``[key]``,
a list or tuple position is ``[i]``, an object kept as a dict's key ``dict(a key)``.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import gc
import itertools
import math
import os
import sys
import threading
import time
import types
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.engine import REFERRERS_SEE_FROZEN, code_parts, held_by, referrers_until, running_frames
from ..core.naming import HEAPTYPE, TYPE_DICT, TYPE_MRO, is_python_class, type_flags, type_module, type_name
from ..core.tracker import is_app_file, is_own_file

__all__ = [
    "app_threads_held_off",
    "find_retainers",
    "restore_a_switch_interval_left_raised",
    "search_running",
    "RetentionBusy",
    "only_in_own_tables",
    "own_table_refs",
]

MAX_DEPTH = 16
# Referrer objects considered per level: a frontier that fans out past this is cut.
MAX_FRONTIER = 5000

# While the app's threads are held off (see app_threads_held_off): the thread switch
# interval, how long a block may run before a waiting thread can ask for the GIL. Also
# how long a thread of the app's that computes without pause may keep the GIL from the
# others while the block waits to start: verification searches took 10-68 ms in
# bench/leak_shapes.py (budget 0.2 s), so most run whole with it.
HOLD_OFF_INTERVAL = 0.05

_lock = threading.Lock()
# Blocks of app_threads_held_off running now (two monitors' verifications may overlap),
# the interval the first of them set (None: it found one as long and left it), and the
# one to restore when the last of them ends.
_held_off: dict[str, Any] = {"blocks": 0, "interval": None, "restore": 0.0}
_held_off_lock = threading.Lock()


def search_running() -> bool:
    """Whether a retention search runs in this process now (find_retainers would raise
    RetentionBusy): a caller can skip its preparations."""
    return _lock.locked()


def _set_switch_interval(seconds: float) -> None:
    """``sys.setswitchinterval`` to the microsecond ``seconds`` reads as: CPython keeps
    whole microseconds and truncates (0.1 would become 99,999 µs, read back as
    0.099999; set again, 99,998 µs), so half a microsecond more lands on the same one."""
    sys.setswitchinterval(seconds + 5e-7)


def _still_raised(raised: float | None) -> bool:
    """Whether the switch interval is the one a block raised it to: within the
    microsecond an app's ``setswitchinterval(getswitchinterval())`` loses."""
    return raised is not None and abs(sys.getswitchinterval() - raised) < 1.5e-6


def _restore_if_still_raised() -> None:
    """The switch interval back to what a block found, unless someone changed it since
    (with _held_off_lock held, or in a forked child)."""
    if _still_raised(_held_off["interval"]):
        _set_switch_interval(_held_off["restore"])


def restore_a_switch_interval_left_raised() -> None:
    """Put back the app's switch interval where code of the app's saved ours while a
    block ran and restored it after (CPython's test_threading does: ``old =
    sys.getswitchinterval() ... finally: sys.setswitchinterval(old)``), which left
    HOLD_OFF_INTERVAL for good. Called at each monitor sample and block, it looks once
    after a block ends; a no-op otherwise. (An interval of exactly HOLD_OFF_INTERVAL set
    on purpose between a block and the next sample looks the same and is put back too.)"""
    with _held_off_lock:
        if _held_off["blocks"] == 0:
            _restore_if_still_raised()
            _held_off["interval"] = None  # once: a value the app sets later is its own


def _reset_in_forked_child() -> None:
    """A child forked while a block ran (by another thread than the block's, which
    the child does not have) would keep the raised interval: restore it there."""
    global _held_off_lock
    _held_off_lock = threading.Lock()  # (the parent's block may have held it)
    if _held_off["blocks"]:
        _held_off["blocks"] = 0
        _restore_if_still_raised()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_forked_child)


@contextlib.contextmanager
def app_threads_held_off() -> Iterator[None]:
    """Run the block without the interpreter handing the GIL to another thread.

    A search holds references to the app's objects (those it starts from, their
    holders). Were an app thread to run meanwhile and drop its last reference to one
    of them, that object would outlive it until the search ends: a weakref still
    alive, a ``__del__`` or a callback late by milliseconds, where CPython's own
    tests (test_weakref) expect it at once. The GIL passes to a waiting thread only
    once it has waited the switch interval; that interval is raised to
    HOLD_OFF_INTERVAL for the block's duration, and the block starts only once every
    thread that began waiting under the old interval has had its turn (a sleep as
    long as that interval), so none of them asks mid-block. A block that runs longer
    than HOLD_OFF_INTERVAL, or blocks itself (I/O, a lock another thread holds), lets
    others run, and then waits up to HOLD_OFF_INTERVAL to go on: keep logging and
    anything else that may wait out of it.

    The price: the app's threads wait for the block (a search of the monitor's
    verification, bounded by its budget), as they wait for a collection of
    CPython's garbage collector; and while the block waits to start, a thread that
    computes without pause keeps the GIL from the others for up to HOLD_OFF_INTERVAL
    instead of the usual 5 ms. An interval already as long is left as it is (and
    no sleep is needed); one someone else set meanwhile is left as they set it;
    overlapping blocks (two monitors) restore the interval when the last of them
    ends; a child forked meanwhile gets it back at once."""
    restore_a_switch_interval_left_raised()
    counted = False
    # (the count is taken inside the try: an exception between the two, a
    # KeyboardInterrupt, would leave it above 0 and the interval raised for good)
    try:
        with _held_off_lock:
            settle = 0.0
            if _held_off["blocks"] == 0:
                _held_off["restore"] = sys.getswitchinterval()
                _held_off["interval"] = None
                if _held_off["restore"] < HOLD_OFF_INTERVAL - 1.5e-6:  # (0.05 set reads 0.0499...)
                    _held_off["interval"] = HOLD_OFF_INTERVAL  # (first: restored should what follows fail)
                    _set_switch_interval(HOLD_OFF_INTERVAL)
                    _held_off["interval"] = sys.getswitchinterval()
            if _held_off["interval"] is not None:
                settle = _held_off["restore"] + 0.001
            _held_off["blocks"] += 1
            counted = True
        if settle:
            time.sleep(settle)
        yield
    finally:
        with _held_off_lock:
            # (a child forked by this thread mid-block comes here with blocks reset to 0)
            if counted:
                _held_off["blocks"] = max(0, _held_off["blocks"] - 1)
            if _held_off["blocks"] == 0:
                _restore_if_still_raised()
        # A thread that began waiting in the block waits the long interval: letting go
        # of the GIL wakes it, and it waits the restored one from then on.
        time.sleep(0)


_OWN_PACKAGE = __name__.split(".")[0]
# A suspended coroutine (an asyncio task's), generator or async generator: where its frame is
_FRAME_OF = {types.CoroutineType: "cr_frame", types.GeneratorType: "gi_frame", types.AsyncGeneratorType: "ag_frame"}


def _suspended_frame(holder: Any) -> types.FrameType | None:
    """The frame of a coroutine or generator that has not finished, else None."""
    attribute = _FRAME_OF.get(type(holder))
    return getattr(holder, attribute) if attribute is not None else None


# a metaclass may define __name__ itself: read type's descriptor, which runs no code of the app's
_TYPE_NAME = type.__dict__["__name__"].__get__


def bounded_with_room(holder: Any) -> str | None:
    """If ``holder`` is a cache or queue with a size bound it has not reached: what
    it is, with its size and bound (objects it takes in now push none out, so
    the growth it causes ends at its bound: a cache warming up, not a leak).
    Recognised: ``functools.lru_cache(maxsize=N)``, ``collections.deque(maxlen=N)``,
    cachetools' caches and the standard library's dicts of ``_LIBRARY_CACHES``; None
    for anything else, full or unbounded ones. Runs none of the app's code (C
    methods and instance attributes only)."""
    found = cache_room(holder)
    return found[0] if found is not None and found[1] > 0 else None


def cache_room(holder: Any) -> tuple[str, float] | None:
    """If ``holder`` is a cache or queue with a size bound (``bounded_with_room``
    says which): its text, and the room left below the bound, in entries (for a
    cachetools cache with a ``getsizeof``, entries of the mean size of those it
    holds). 0 for a full one: each object it takes in pushes an old one out. None
    for anything else."""
    kind = type(holder)
    try:
        if kind is dict:
            return _library_cache_room(holder)
        if _is_lru_wrapper(holder):
            info = kind.cache_info(holder)  # functools' own C method
            if info.maxsize is not None:
                name = getattr(holder, "__qualname__", "?")
                module = getattr(holder, "__module__", None)
                name = f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else str(name)
                text = f"functools.lru_cache {name} ({info.currsize} of {info.maxsize})"
                return text, max(0, info.maxsize - info.currsize)
            return None
        if issubclass(kind, collections.deque):
            maxlen = collections.deque.maxlen.__get__(holder)
            size = collections.deque.__len__(holder)
            if maxlen is not None:
                return f"{type_name(kind)} ({size} of maxlen {maxlen})", max(0, maxlen - size)
            return None
        if any(type_module(k).startswith("cachetools") and _TYPE_NAME(k) == "Cache" for k in TYPE_MRO(kind)):
            attributes = _own_dict(holder) or {}
            current, bound = attributes.get("_Cache__currsize"), attributes.get("_Cache__maxsize")
            data = attributes.get("_Cache__data")
            if (
                isinstance(current, (int, float))
                and isinstance(bound, (int, float))
                and math.isfinite(current)
                and math.isfinite(bound)  # (maxsize=math.inf: no bound)
            ):
                room = float(max(0, bound - current))
                entries = dict.__len__(data) if isinstance(data, dict) else 0
                if entries and current > 0:
                    room = float(math.floor(room / (current / entries)))  # (in entries of the mean size)
                return f"{type_name(kind)} ({current:g} of maxsize {bound:g})", room
    except Exception:  # noqa: BLE001 -- an odd object that looks like one: not known to be bounded
        return None
    return None


# Plain dicts of the standard library that its own code keeps below a bound: (module,
# the dict's global, the bound's global). The re module's compiled patterns (each
# re.match(text, ...) or re.compile(text) with a new text fills it; from 3.12 a second,
# smaller one beside it). An app that compiles patterns per request fills them up to
# their bound, and no further.
_LIBRARY_CACHES = (("re", "_cache", "_MAXCACHE"), ("re", "_cache2", "_MAXCACHE2"))


def _library_cache_room(storage: dict) -> tuple[str, float] | None:
    """``cache_room`` for a dict: one of ``_LIBRARY_CACHES``, by identity, with its
    bound an int of its module's; None for any other dict."""
    for module, name, bound_name in _LIBRARY_CACHES:
        namespace = module_namespace(sys.modules.get(module))
        if namespace is None or dict.get(namespace, name) is not storage:
            continue
        bound = dict.get(namespace, bound_name)
        if type(bound) is not int or bound <= 0:
            return None
        size = dict.__len__(storage)
        return f"{module}.{name} ({size} of {bound})", float(max(0, bound - size))
    return None


class RetentionBusy(RuntimeError):
    """Another retention search runs in this process (one at a time)."""


def _is_name(key: Any) -> bool:
    """A name in code (a module global, an attribute): shown."""
    return type(key) is str and key.isidentifier()


def _is_word_key(key: Any) -> bool:
    """A dict key shown as it is: an identifier-like word without digits, short. Anything
    else (a token, an id, a user's name with digits, a number) could be data: ``[key]``."""
    return type(key) is str and key.isidentifier() and len(key) <= 40 and not any(c.isdigit() for c in key)


def _is(holder: Any, kind: type | tuple[type, ...]) -> bool:
    # type() and issubclass(): never the object's own __class__, which a proxy may compute
    return issubclass(type(holder), kind)


# From 3.15 a frozendict, no subclass of dict, keeps keys as a dict does: the collector
# is not shown its str keys either (see _held_of).
_FROZENDICT: Any = getattr(builtins, "frozendict", None)
_DICTS: tuple[type, ...] = (dict,) if _FROZENDICT is None else (dict, _FROZENDICT)


def _dict_items(holder: Any) -> Any:
    """A dict's or a frozendict's items; not a subclass's items(), which is the app's code."""
    return (dict.items if _is(holder, dict) else _FROZENDICT.items)(holder)


def _dict_keys(holder: Any) -> Any:
    """A dict's or a frozendict's keys (as _dict_items)."""
    return (dict.keys if _is(holder, dict) else _FROZENDICT.keys)(holder)


def _own_dict(holder: Any) -> Any:
    """An instance's __dict__, without running the app's __getattr__ or
    __getattribute__ (a property its class names ``__dict__`` would still run); None
    if it has none. On 3.13+ this makes the dict of an instance that kept its
    attributes inline."""
    try:
        found = object.__getattribute__(holder, "__dict__")
    except Exception:  # noqa: BLE001 -- no __dict__, or a descriptor of the app's that fails
        return None
    return found if type(found) is dict else None


KEY_EDGE = "(a key)"  # the edge from a dict (or a namespace) to one of its keys


def _edge(holder: Any, held: Any) -> str:
    """How ``holder`` refers to ``held``: an attribute, a key, a position, or its kind."""
    try:
        return _edge_of(holder, held)
    except Exception:  # noqa: BLE001 -- an odd object: the chain still stands without the edge
        return ""


def _edge_of(holder: Any, held: Any) -> str:
    if _is(holder, _DICTS):
        for key, value in _dict_items(holder):
            if value is held:
                return f"[{key!r}]" if _is_word_key(key) else "[key]"
            if key is held:
                return KEY_EDGE
        return "[key]"
    if _is(holder, (list, tuple, set, frozenset)) or type(holder).__name__ == "deque":
        return "[i]"
    if type(holder) is types.CellType:
        return "(closure cell)"
    if type(holder) is types.FunctionType:
        if holder.__defaults__ is held or holder.__kwdefaults__ is held:
            return ".__defaults__"
        if holder.__closure__ is held:
            return ".__closure__"
        return ""
    if type(holder) is types.MethodType:
        return ".__self__" if holder.__self__ is held else ".__func__"
    for klass in TYPE_MRO(type(holder)):
        slots = TYPE_DICT(klass).get("__slots__", ())
        for name in (slots,) if type(slots) is str else slots:
            if type(name) is not str:
                continue
            member = TYPE_DICT(klass).get(_mangled(klass, name))
            if type(member) is types.MemberDescriptorType:
                try:
                    if member.__get__(holder, type(holder)) is held:
                        return f".{name}"
                except AttributeError:
                    pass
    attributes = _own_dict(holder)
    if attributes is not None:
        for name, value in _dict_items(attributes):
            if value is held:
                return f".{name}" if _is_name(name) else "[key]"
    return ""


def _mangled(klass: type, name: str) -> str:
    if name.startswith("__") and not name.endswith("__"):
        return f"_{klass.__name__.lstrip('_')}{name}"
    return name


def _holder_kinds(upward: list[Any], root: Any = None) -> dict[str, tuple[int, int]]:
    """The kinds of object a chain goes through above its object (``upward``: the
    object, its holder, that one's holder, ... without the root), each with id()
    of the one nearest the object and how far above it the farthest one is. A
    class's or an instance's own namespace dict is part of its owner, not a
    holder of its own; the object's own type is left out (a chain of them is how
    it grows). The monitor reads this to find a growing type that holds a
    growing one: each object held through a new holder of its own (a traceback
    chain keeping frames, and these what they referred to) is the holder's
    growth, not its own. ``root``: the chain's root, when it reached one."""
    target_kind = type(upward[0])
    kinds: dict[str, tuple[int, int]] = {}
    first: dict[str, int] = {}
    own = [(0, 0)]  # (distance, index) of each one of its own type above the object ((0, 0): none)
    namespaces = set()  # indexes of the namespace dicts passed
    distance = 0  # (a namespace dict is no step: whether an instance has one made is CPython's choice)
    for index in range(1, len(upward)):
        holder = upward[index]
        kind = type(holder)
        if kind is dict and index + 1 < len(upward):
            owner = upward[index + 1]
            if issubclass(type(owner), type) or holder is _own_dict(owner):
                namespaces.add(index)
                continue  # a class's or an instance's namespace
        distance += 1
        if kind is target_kind:
            own.append((distance, index))
            continue
        name = type_name(kind)
        nearest = kinds.get(name)
        kinds[name] = (id(holder) if nearest is None else nearest[0], distance)
        first.setdefault(name, distance)
    if isinstance(root, type) and len(upward) > 1 and type(upward[-1]) is dict:
        namespaces.add(len(upward) - 1)  # (the root class's namespace)
    # A kind met below an object of the same type as this one is part of a structure
    # of that type (a tree's nodes keep lists of nodes): it holds nothing of its own.
    # (Its first sight counts, not its farthest: a search cut short may end on either.)
    # Not below the farthest of them when that one is a store: only namespaces, classes,
    # modules and the app's objects between it and the root (a list of records, each
    # a dict holding a new list, in a module's global, a class's attribute or an app
    # object's). A tree's top node in a registry dict is one of its nodes still.
    # (a container above holds it as an item: part of a bigger structure, as a tree's
    # node in a registry dict is)
    if root is not None and len(own) > 1:
        farthest = own[-1][1]
        above = range(farthest + 1, len(upward))
        if all(i in namespaces or not isinstance(upward[i], _PLAIN_CONTAINERS) for i in above):
            own.pop()
    own_farthest = own[-1][0]
    return {name: found for name, found in kinds.items() if first[name] > own_farthest}


BOOKKEEPING = "_memtracker_bookkeeping"  # a class attribute of the classes that keep our tables


def _own_inside(path: list[Any]) -> str | None:
    """The string "own" when the chain (root first) holds its object in one of
    memtracker_web's bookkeeping objects (the monitor's tables, kept by an app's
    global that holds the monitor), as ``_in_own_tables`` tells. Not any object of
    ours: a middleware wrapping the app holds all the app holds."""
    return "own" if _in_own_tables(path[::-1]) else None


def _is_bookkeeping(holder: Any) -> bool:
    return any(BOOKKEEPING in TYPE_DICT(klass) for klass in TYPE_MRO(type(holder)))


_NEUTRAL, _OURS, _OTHERS = 0, 1, 2


def _whose(holder: Any, below: int) -> int:
    """Going up a chain: _OURS or _OTHERS when ``holder`` is an object of ours or of
    another's Python class (see _through_others), else what was nearest the root below it."""
    kind = type(holder)
    if type_module(kind).split(".")[0] == _OWN_PACKAGE:
        return _OURS
    if is_python_class(kind) and not issubclass(kind, _PLAIN_CONTAINERS):
        return _OTHERS
    return below


def _through_others(path: list[Any]) -> bool:
    """Whether a chain (root first) passes, on its way down from its root and before any
    object of memtracker_web's, through an object of a class another package or the
    app defines in Python code (a ``logging.Logger`` our module keeps, whose manager is
    logging's, shared by all). Not containers (subclasses too: a ``Counter``), nor C
    types (functions, methods, cells, locks), nor ours; below an object of ours, what it
    holds is its own (a publisher of ours keeps its prometheus_client metrics)."""
    whose = _NEUTRAL
    for holder in reversed(path[1:-1]):
        whose = _whose(holder, whose)
    return whose == _OTHERS


_PLAIN_CONTAINERS = (list, tuple, *_DICTS, set, frozenset, collections.deque)
# Those whose len() grows as the app adds to them (exactly these types: a subclass's
# __len__ is the app's code)
# (a defaultdict or an OrderedDict is a dict whose size and entries dict's own methods
# read: `LEAKED = defaultdict(list)`)
_GROWABLE_GLOBALS = (list, dict, set, collections.deque, collections.defaultdict, collections.OrderedDict)


def _growable_dict(obj: Any) -> bool:
    """Whether ``obj`` is a dict, a defaultdict or an OrderedDict (exactly these)."""
    kind = type(obj)
    return kind is dict or kind is collections.defaultdict or kind is collections.OrderedDict


def _nested_container(obj: Any) -> bool:
    """Whether ``obj`` is a plain list, dict (a defaultdict, an OrderedDict), set,
    deque or tuple: what a growable global's entry may keep a leak in (see
    newest_global_objects)."""
    kind = type(obj)  # (by identity, as _growable; spelled out: it runs for each entry read)
    return (
        kind is list
        or kind is dict
        or kind is tuple
        or kind is set
        or kind is collections.deque
        or kind is collections.defaultdict
        or kind is collections.OrderedDict
    )


_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]


def _module_global(module: str, name: str) -> Any:
    """The value of the module global ``module.name``, or None when the module is gone
    or has no such global. A dotted name is a class attribute (``Registry.entries``,
    see _Search.global_container), read from each class's own namespace. Runs none of
    the app's code."""
    namespace = module_namespace(sys.modules.get(module))
    if namespace is None:
        return None
    first, *attributes = name.split(".")
    held = dict.get(namespace, first)
    try:
        for attribute in attributes:
            if not issubclass(type(held), type):
                return None
            held = TYPE_DICT(held).get(attribute)  # (a class's own dict: no descriptor runs)
    except Exception:  # noqa: BLE001 -- an odd class: no such attribute
        return None
    return held


def global_container_size(module: str, name: str) -> int | None:
    """The size of the module global ``module.name`` when it is still a plain list,
    dict, set or deque (see _Search.global_container); None when the module or the
    global is gone or is something else now. Runs none of the app's code."""
    container = _module_global(module, name)
    return len(container) if _growable(container) else None


def global_place_sizes(module: str, name: str, *, nested: bool) -> tuple[int, int] | None:
    """Two sizes of the module global ``module.name`` (see global_container_size): its
    own, and, ``nested``, that plus the sizes of the plain lists, dicts, sets, deques
    or tuples among its newest NESTED_SIZE_ENTRIES entries (where a leak one level
    down adds its objects: see _Search.nested_global_container); its own twice for a
    place that is not. A leak grows the first with each new key, the second with each
    row added to an entry read; past NESTED_SIZE_ENTRIES entries, the second slides
    as new keys push older entries out of those read. None as for
    global_container_size. Runs none of the app's code (the entries read in one
    call)."""
    container = _module_global(module, name)
    if not _growable(container):
        return None
    size = len(container)
    if not nested:
        return size, size
    entries = _newest_first(container, NESTED_SIZE_ENTRIES)
    return size, size + sum(len(entry) for entry in entries if _nested_container(entry))


# Entries of a global whose own sizes global_place_sizes adds up, the newest (read at
# each sample while a place is watched: 0.5 ms at most)
NESTED_SIZE_ENTRIES = 2048


def global_full_ring(module: str, name: str) -> bool:
    """Whether the module global ``module.name`` is a plain deque with a ``maxlen``
    that it has reached: it cannot grow, each new entry pushes out the oldest. Runs
    none of the app's code."""
    container = _module_global(module, name)
    return type(container) is collections.deque and container.maxlen is not None and len(container) >= container.maxlen


def global_container_entries(module: str, name: str, most: int) -> list[tuple[Any, Any]] | None:
    """The entries of the module global ``module.name`` in its order, when it is still
    a plain list, dict, set or deque of at most ``most``: a dict's (key, value) items,
    (the object, the object) for the others; None otherwise. Runs none of the app's
    code (the containers' own iteration, copied in one call: another thread may change
    it between two steps of a loop). Hold them for no longer than needed (they are the
    app's)."""
    container = _module_global(module, name)
    if not _growable(container) or len(container) > most:
        return None
    if _growable_dict(container):
        return list(dict.items(container))
    return [(element, element) for element in list(container)]


def newest_global_objects(module: str, name: str, most: int, *, nested: bool = False) -> list[Any] | None:
    """The objects of the last ``most`` entries of the module global ``module.name``,
    however many it holds, oldest first: where a leak kept in a list, a dict (its keys
    and values) or a deque adds its objects (a set has no order: any ``most`` of its
    elements). ``nested``: the objects of its newest entries' own newest entries, up
    to ``most`` in all, where those are plain lists, dicts, sets, deques or tuples (a
    leak kept one level down: ``LEAKED.setdefault(key, []).append(row)``), of its
    newest ``most`` entries at most (empty ones too). None when it is not a plain list,
    dict, set or deque. Runs none of the app's code (the containers' own slicing and
    reversed iteration, each read in one call: another thread may change them between
    two steps of a loop). Hold them for no longer than needed (they are the app's)."""
    container = _module_global(module, name)
    if not _growable(container):
        return None
    if not nested:
        newest = _newest_first(container, most)
        if type(container) is not set:
            newest.reverse()
        return newest
    newest = []
    done = 0
    for chunk in (64, 512, most):  # (as far as needed: the few newest lists of a large dict)
        entries = _newest_first(container, min(chunk, most))
        for entry in itertools.islice(entries, done, None):
            if _nested_container(entry):
                newest += _newest_first(entry, most - len(newest))
                if len(newest) >= most:
                    break
        if len(newest) >= most or chunk >= most or len(container) <= chunk:  # (all of it read)
            break
        done = len(entries)
    newest.reverse()
    return newest


def _newest_first(container: Any, most: int) -> list[Any]:
    """The objects of the last ``most`` entries of a plain list, tuple, dict (a value,
    then its key), deque or set (any ``most``), newest first, read in one call."""
    kind = type(container)
    if most <= 0:
        return []
    if kind is list or kind is tuple:
        newest = list(kind.__getitem__(container, slice(-most, None)))
        newest.reverse()
        return newest
    if _growable_dict(container):
        # (an OrderedDict's moves to its end are not in dict's order: its insertions are)
        return [part for item in list(itertools.islice(reversed(dict.items(container)), most)) for part in item[::-1]]
    if kind is collections.deque:
        return list(itertools.islice(reversed(container), most))
    return list(itertools.islice(iter(container), most))


def entry_parts(entries: list[tuple[Any, Any]]) -> list[Any]:
    """The objects of ``entries`` (see global_container_entries), each entry's once."""
    return [part for entry in entries for part in (entry if entry[0] is not entry[1] else entry[:1])]


def module_namespace(module: Any) -> dict | None:
    """A module's dict, read through ModuleType's own ``__dict__`` (a property that a
    subclass of the app's may define is its code); None for anything else."""
    if not issubclass(type(module), types.ModuleType):
        return None
    try:
        namespace = _MODULE_DICT.__get__(module)
    except Exception:  # noqa: BLE001 -- an odd module object
        return None
    return namespace if type(namespace) is dict else None


_TYPE_QUALNAME = type.__dict__["__qualname__"].__get__  # (type's own: a metaclass's runs no code here)


def _named_class(cls: type, namespaces: dict[str, dict]) -> bool:
    """Whether a class is one its module's namespace (``namespaces``, by module name)
    holds under its qualified name, a nested one through the classes named before it,
    or a static type. Not one made at run time: by ``type()`` for each request, by a
    class statement in a function, or one whose name now means another class."""
    if not type_flags(cls) & HEAPTYPE:
        return True
    try:
        qualname = _TYPE_QUALNAME(cls)
        module = type_module(cls)
        if type(qualname) is not str or type(module) is not str:
            return False  # (a str subclass's __hash__ or __eq__ is the app's code)
        namespace: Any = namespaces.get(module)
        held: Any = None
        for part in qualname.split("."):
            if namespace is None:
                return False
            # (dict.get: a namespace's key of another type with this hash, and an __eq__
            # of the app's, is the one way to run code here; caught below)
            held = dict.get(namespace, part) if type(namespace) is dict else namespace.get(part)
            namespace = TYPE_DICT(held) if issubclass(type(held), type) else None
    except Exception:  # noqa: BLE001 -- an odd class or namespace: not found by its name
        return False
    return held is cls


def _growable(obj: Any) -> bool:
    kind = type(obj)  # (by identity: an app's metaclass may define __eq__)
    return any(kind is plain for plain in _GROWABLE_GLOBALS)


def _in_own_tables(upward: list[Any], own_locals: frozenset[int] | set[int] = frozenset()) -> bool:
    """For an object whose root was not reached (``upward``: it, then one line of its
    holders): whether it sits in memtracker_web's own tables, whatever holds them (a
    monitor in a running function's local variable, which the collector does not
    show), or in a local variable of one of our functions running in this thread
    (``own_locals``, ids: see _Search.held_by_own_locals). Only plain containers, or
    ours, may come between it and our bookkeeping object: an app's object there (a
    callback the monitor was given) makes it the app's."""
    if id(upward[0]) in own_locals:
        return True
    for holder in upward[1:]:
        if _is_bookkeeping(holder):
            return True
        kind = type(holder)
        if kind not in _PLAIN_CONTAINERS and not type_module(kind).startswith(f"{_OWN_PACKAGE}."):
            return False
        if id(holder) in own_locals:
            return True
    return False


def held_by_codes(codes: Iterable[Any], alone: Iterable[Any] = ()) -> set[int]:
    """The ids of all ``codes`` hold, which the collector does not show (see
    ``code_parts``): the parts of each, the items of tuples and frozensets among them,
    and the parts of the code objects among their constants (a nested function's);
    and the ids of the codes in ``alone`` themselves (a code the app still holds, in
    a list of its own or through a function, is the app's: the search finds it
    there). Valid while the codes live. Runs no code of the app's."""
    ids: set[int] = {id(code) for code in alone}
    seen: set[int] = set()
    todo = list(codes)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if type(obj) is types.CodeType:
            todo.extend(code_parts(obj) or ())
            continue
        ids.add(id(obj))
        if type(obj) in (tuple, frozenset):
            todo.extend(obj)
    return ids


class OwnTables:
    """What memtracker_web's bookkeeping objects keep through plain containers or
    other bookkeeping objects (what ``_in_own_tables`` calls our own), found
    forwards from our tables, in one walk of their size, not the heap's: for each
    object, how many references our tables hold to it and which of them hold it."""

    def __init__(self, refs: dict[int, int], holders: dict[int, list[int]], exclusive: set[int]) -> None:
        self.refs = refs
        self.holders = holders
        self.exclusive = exclusive  # our containers no one else holds, on a chain of such from a root


def own_table_refs(roots: list[Any], limit: int = 100_000) -> OwnTables | None:
    """The walk of ``OwnTables`` from ``roots``; None when they hold more than
    ``limit`` objects (a search then tells). Only objects kept alive while the
    ids are compared may be looked up (see ``only_in_own_tables``)."""
    refs: dict[int, int] = {}
    holders: dict[int, list[int]] = {}
    entered: dict[int, Any] = {}  # the containers walked into, kept while their counts are read
    todo = [root for root in roots if _is_bookkeeping(root)]
    roots_ids = set(map(id, todo))
    seen = set(roots_ids)
    while todo:
        if len(seen) > limit:
            return None
        holder = todo.pop()
        for held in gc.get_referents(holder):
            if isinstance(held, type):
                continue
            key = id(held)
            refs[key] = refs.get(key, 0) + 1
            holders.setdefault(key, []).append(id(holder))
            if key in seen:
                continue
            seen.add(key)
            if type(held) in _PLAIN_CONTAINERS or _is_bookkeeping(held):
                todo.append(held)
                entered[key] = held
    # A container the app holds as well (a record a tracker callback returned, which
    # the capture keeps and the app appends to a list of its own) is the app's: what
    # it holds is not only ours. Ours: a bookkeeping object, or a container only our
    # tables hold, itself held only by such.
    probe_holder = {0: object()}
    probe = _references_beyond(list(probe_holder.values()), {})[0]
    only_ours = {
        key
        for key, extra in zip(entered, _references_beyond(list(entered.values()), refs), strict=True)
        if extra <= probe  # (``entered`` holds each, as ``probe_holder`` the probe)
    }
    exclusive = set(roots_ids)
    for key, obj in entered.items():
        if _is_bookkeeping(obj):
            exclusive.add(key)
    changed = True
    while changed:
        changed = False
        for key in only_ours - exclusive:
            if all(holder in exclusive for holder in holders.get(key, ())):
                exclusive.add(key)
                changed = True
    entered.clear()
    return OwnTables(refs, holders, exclusive)


def _references_beyond(objects: list[Any], refs: dict[int, int]) -> list[int]:
    # (one function for the objects and for the probe: the same frame, the same references)
    return [sys.getrefcount(obj) - refs.get(id(obj), 0) for obj in objects]


def only_in_own_tables(objects: list[Any], own: OwnTables) -> list[bool]:
    """For each object of ``objects`` (a list holding each once, the caller's only
    reference to them): whether every other reference to it is from one of our
    tables that no one else holds (``own``, from ``own_table_refs``). An object the
    app keeps as well, or keeps a container of, is not only ours: its holder is the
    app's, and a search finds it."""
    probe = _references_beyond([object()], {})[0]  # a new object held by a list alone
    beyond = _references_beyond(objects, own.refs)
    return [
        id(obj) in own.refs and extra <= probe and all(h in own.exclusive for h in own.holders.get(id(obj), ()))
        for obj, extra in zip(objects, beyond, strict=True)
    ]


def _is_lru_wrapper(obj: Any) -> bool:
    kind = type(obj)
    return _TYPE_NAME(kind) == "_lru_cache_wrapper" and type_module(kind) == "functools"


def _bounded_holder(path: list[Any], past_tuples: int) -> tuple[str, float, Any] | None:
    """The bounded cache (``cache_room``: full or not) that holds the last object of
    ``path`` (root first) itself, with its text and room: as its direct holder, or
    through its own storage (an lru_cache's dict of entries, a cachetools cache's data
    dict), or through tuples it keeps (``urllib.parse.urlsplit``'s cache of 128 keeps
    a SplitResult of new strs for each new URL: a tuple holds what it held when made,
    and lives as long as the cache keeps it). An object held by a value such a cache
    keeps that can take in more (a cached list that grows) is not the cache's: its
    bound does not limit it. ``past_tuples`` is ``_past_tuples(path)``."""
    if len(path) < 2:
        return None
    cache = _cache_holding(path[: past_tuples + 2])
    room = cache_room(cache) if cache is not None else None
    return (*room, cache) if room is not None else None


def _cached_function(cache: Any) -> dict[str, Any] | None:
    """Where the function whose results an ``lru_cache`` keeps is, and the cache's
    bound: ``{"file": ..., "name": qualified name, "lines": [first, last], "bound":
    maxsize}``, so that call paths through it can be told apart (what it returns is
    what the cache fills with); through other decorators that keep ``__wrapped__``
    (``functools.wraps``), the innermost function. None for another cache, or a
    function that is not plain Python. Runs none of the app's code (the wrappers' own
    dicts, the code object's fields, functools' own ``cache_info``)."""
    try:
        if not _is_lru_wrapper(cache):
            return None
        bound = type(cache).cache_info(cache).maxsize
        function = cache
        for _ in range(16):  # (a chain of wrappers; a loop ends here)
            inner = (_own_dict(function) or {}).get("__wrapped__")
            if inner is None:
                break
            function = inner
        if type(function) is not types.FunctionType:
            return None
        code = function.__code__
        lines = [line for _, _, line in code.co_lines() if line is not None]
        return {
            "file": code.co_filename,
            "name": getattr(code, "co_qualname", code.co_name),  # (3.11+)
            "lines": [code.co_firstlineno, max(lines, default=code.co_firstlineno)],
            "bound": bound,
        }
    except Exception:  # noqa: BLE001 -- an odd object: its paths are ranked as any others
        return None


def _past_tuples(path: list[Any]) -> int:
    """The index in ``path`` of the last object's holder past the tuples above it that
    are frozen records (_is_frozen_tuple); that of its direct holder when none is."""
    end = len(path) - 2
    while end > 0 and _is_frozen_tuple(path[end]):
        end -= 1
    return end


# A record's fields, not a tuple the app rebuilds longer each time (``cache[k] =
# cache[k] + (event,)``: a full cache of 3 entries then kept 60 strs and growing)
_FROZEN_TUPLE_MOST = 16


def _is_frozen_tuple(node: Any) -> bool:
    """Whether ``node`` is a tuple that can refer to nothing but its few items: a plain
    tuple or a namedtuple (no instance dict: ``__dictoffset__`` 0, read through type's
    own descriptor), of at most _FROZEN_TUPLE_MOST items, that the collector tracks (one
    it stopped tracking, of strs and numbers only, may be held by another such tuple,
    which the search does not see as long as a tracked holder is found). Runs no code
    of the app's."""
    kind = type(node)
    return (
        (kind is tuple or (issubclass(kind, tuple) and _DICT_OFFSET(kind) == 0))
        and tuple.__len__(node) <= _FROZEN_TUPLE_MOST
        and gc.is_tracked(node)
    )


_DICT_OFFSET = type.__dict__["__dictoffset__"].__get__


def _cache_holding(path: list[Any]) -> Any:
    """What may be a cache holding the last object of ``path`` (see
    ``_bounded_holder``): its holder, or for a plain dict, the lru_cache or cachetools
    cache whose storage it is; None when it is a plain dict of no such cache. A
    library's cache (``_LIBRARY_CACHES``) anywhere above it holds it too."""
    holder = path[-2]
    for node in path[-2::-1]:
        # (a library cache's entries, compiled patterns, do not grow: what they hold is
        # bounded by the cache's bound too)
        if type(node) is dict and _library_cache_room(node) is not None:
            return node
    if type(holder) is not dict:
        return holder
    try:
        owner = path[-3] if len(path) >= 3 else None
        if owner is not None and _is_lru_wrapper(owner) and _is_lru_entries(holder):
            return owner  # its entries' dict: the object is a key or an entry
        for index in (len(path) - 3, len(path) - 4):  # a cachetools cache, maybe through its own __dict__
            if index < 0:
                break
            owner = path[index]
            attributes = owner if _is(owner, dict) else _own_dict(owner)
            if attributes is not None and dict.get(attributes, "_Cache__data") is holder:
                return path[index - 1] if _is(owner, dict) and index > 0 else owner
    except Exception:  # noqa: BLE001 -- an odd object: not known to be a cache's
        return None
    return None


def _is_lru_entries(storage: dict) -> bool:
    """Whether a dict an ``lru_cache`` wrapper refers to is its entries' dict (values
    of functools' own link type), not another it holds."""
    first = next(iter(dict.values(storage)), None)
    return first is not None and _TYPE_NAME(type(first)) == "_lru_list_elem"


def lru_keys(cache: Any, kind: type, most: int) -> list[Any]:
    """The keys of type ``kind`` an ``lru_cache`` (its wrapper: ``cache``) keeps its
    entries under, of a cache of at most ``most`` entries (empty for a larger one, or
    another object). A call's one int or str argument is its key itself, and the key
    of several arguments a tuple made for the call: made on the caller's line, not in
    the cached function. Runs none of the app's code; hold the keys for no longer than
    needed (they are the app's)."""
    try:
        if not _is_lru_wrapper(cache) or type(cache).cache_info(cache).currsize > most:
            return []
        # (from the end: the wrapper visits each entry's key and result first, then its dict)
        for part in reversed(gc.get_referents(cache)):
            if type(part) is dict and _is_lru_entries(part):
                # (list(): one C call, which no other thread's change to the dict can break)
                return [key for key in list(dict.keys(part)) if type(key) is kind]
    except Exception:  # noqa: BLE001 -- an odd object: none of its keys known
        return []
    return []


def _cache_parts(cache: Any) -> set[int]:
    """The ids of a bounded cache and of the storage it holds its entries in: itself,
    what it refers to (an lru_cache's dict of entries), its instance dict and what that
    refers to (a cachetools cache's data and order)."""
    parts = {id(cache)}
    parts.update(id(part) for part in gc.get_referents(cache))
    attributes = _own_dict(cache)
    if attributes is not None:
        parts.add(id(attributes))
        parts.update(id(part) for part in gc.get_referents(attributes))
    return parts


# Containers whose len() runs no code of the app's (exactly these types), and the size
# from which the extension reads what one holds (held_by): below it, testing each of
# its references here costs less than handing the frontier over.
_SIZED_CONTAINERS = frozenset(_PLAIN_CONTAINERS)
_LARGE_HOLDER = 1024


def _held_of(holder: Any, wanted: set[int], strings: bool, frontier: list[Any]) -> list[Any]:
    """What ``holder`` refers to of the objects whose ids are ``wanted`` (those of
    ``frontier``); ``strings``: some of them are strs, and a dict's keys are looked at
    too. A dict whose keys are all strs does not show them to the collector (a str is
    in no cycle): the strs kept as the keys of a module's dict (``CACHE[f"session-{n}"]
    = ...``) had no holder, and were reported as kept by something the search did not
    reach. A large container (a long-running leak's list) is read by the extension."""
    kind = type(holder)
    # (a class whose metaclass is type: no hash of the app's runs to look it up)
    if type(kind) is type and kind in _SIZED_CONTAINERS and len(holder) >= max(_LARGE_HOLDER, len(frontier)):
        found = held_by(holder, frontier, strings)
        if found is not None:
            return found
    held = [o for o in gc.get_referents(holder) if id(o) in wanted]
    if strings and _is(holder, _DICTS):
        ids = {id(o) for o in held}
        # (list(): one C call, which no other thread's change to the dict can break)
        held += [key for key in list(_dict_keys(holder)) if id(key) in wanted and id(key) not in ids]
    return held


class _Mark:
    """Passed first to each gc.get_referrers call: the call's own argument tuple, which
    refers to the whole frontier, is the one tuple that starts with it."""


_MARK = _Mark()


def _referrers_of(frontier: list[Any], ours: set[int], deadline: float) -> tuple[list[Any], bool]:
    """What refers to an object of ``frontier``, but the search's own containers (the
    ids ``ours``): what the collector sees, and with the extension the untracked
    containers holding an object nothing else holds; and whether all of it was looked
    for (False: the extension's passes stopped at ``deadline``, a ``time.monotonic()``
    value, and what they found is a part)."""
    walked = referrers_until(frontier, ours, deadline)
    if walked is None:
        # (without our call's own argument tuple, which refers to the whole frontier)
        return [r for r in gc.get_referrers(_MARK, *frontier) if not _is_call_arguments(r)], True
    return walked


def _is_call_arguments(holder: Any) -> bool:
    return type(holder) is tuple and len(holder) > 0 and holder[0] is _MARK


def _frame_text(frame: types.FrameType) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return f"{name} ({code.co_filename}:{frame.f_lineno})"


def _locals_items(frame: types.FrameType) -> list[tuple[str, Any]]:
    try:
        return list(frame.f_locals.items())  # (a dict or a proxy of CPython's)
    except Exception:  # noqa: BLE001 -- a frame's locals can fail to read: it holds nothing we can show
        return []


def _local_name(frame: types.FrameType, held: Any) -> str:
    """The name of a local variable of ``frame`` that is ``held``, or ""."""
    return next((name for name, value in _locals_items(frame) if value is held), "")


_CO_OPTIMIZED = 0x1  # a function's frame, not a module's or a class body's (whose locals are a dict the collector sees)
# Reading another thread's running frame's locals has no side effect from 3.13 on (PEP 667);
# before, it left a snapshot dict on the frame, holding what the function had let go.
_LOCALS_READ_SAFELY = sys.version_info >= (3, 13)


def _frame_kind(frame: types.FrameType) -> str | None:
    """ "library frame" for a frame of the standard library's, an installed package's or
    our code (work in progress); None for the app's."""
    return None if is_app_file(frame.f_code.co_filename) else "library frame"


def find_retainers(
    objects: list[Any],
    *,
    budget_seconds: float = 2.0,
    max_depth: int = MAX_DEPTH,
    top: int = 10,
    with_caches: bool = False,
) -> dict[str, Any]:
    """Chains from a root to each of ``objects``, grouped and counted, most first:
    ``{"chains": [{"chain": text, "count": n}], "objects": n, "unreachable": k, "hidden": h,
    "unresolved": m, "stopped": reason or "", "levels": d, "seconds": t}``.

    A running function's local variables are in no object the collector sees (3.11+):
    once the passes are over, the running frames of the app's and the libraries'
    functions are read, and one whose local holds an object met is the root of its
    chain ("frame of handle (app.py:12) local items -> ...") where nothing else
    reaches it. When the search walked all the way around an object without meeting
    a root, every reference to it and to what holds it is counted: if the collector
    sees them all, nothing outside a reference cycle holds it (``unreachable``:
    waiting for the garbage collector); if not, something the collector cannot see
    holds it (``hidden``: C code, or a running function of our own).
    ``unresolved``: objects whose root was not reached before the search stopped.
    ``kept_in``: the module globals, plain lists, dicts, sets or deques, that hold
    some of the objects themselves (``{"module", "name", "count", "size", "chain"}``,
    most first): where a leak is kept, whose size anyone can read again later
    (``global_container_size``). ``kept_under``: those whose plain containers hold
    some of the objects one level down, in a plain list, dict, set, deque or tuple
    (``{"module", "name", "count", "chains"}``, most first). One search at a time per process (RetentionBusy
    otherwise). ``with_caches``: see ``find_retainers_of_groups``."""
    return find_retainers_of_groups(
        [objects], budget_seconds=budget_seconds, max_depth=max_depth, top=top, with_caches=with_caches
    )[0]


def find_retainers_of_groups(
    groups: list[list[Any]],
    *,
    budget_seconds: float = 2.0,
    max_depth: int = MAX_DEPTH,
    top: int = 10,
    patience: int | None = None,
    with_caches: bool = False,
) -> list[dict[str, Any]]:
    """``find_retainers`` for each group of objects (a type's, say), from one search of
    them all: each level of a search asks the collector once about every object it
    holds, so searching for several groups at once costs about as much as one. The
    results are as ``find_retainers`` gives each group alone, but for ``levels`` and
    ``seconds``, which are the one search's.

    ``patience``: stop after this many levels in a row that gave no other object its
    chain, once the chains found show that at least half of each group's objects are
    not the app's (the monitor's own, a bounded cache's, a library's work in progress;
    the rest are ``unresolved``). A few objects held far from any root would otherwise
    cost every level up to ``max_depth``, one pass over the heap each, when what the
    others tell already sets the growth aside (see the monitor's verification).

    ``with_caches``: each result also has ``"lru_caches"``, weak references to the
    ``lru_cache`` wrappers among its bounded caches (see ``lru_keys``): not JSON, for
    the caller to take out."""
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be 1 or more levels, got {patience}")
    if not _lock.acquire(blocking=False):
        raise RetentionBusy("a retention search is already running in this process")
    search = None
    try:
        search = _Search(groups, budget_seconds, max_depth, patience)
        results = search.run(top)
        for result in results:
            caches = result.pop("lru_caches")
            if with_caches:
                result["lru_caches"] = [weakref.ref(cache) for cache in caches]
        return results
    finally:
        if search is not None:
            search.up.clear()  # holders include frames: leave no cycle behind
            search.cache_parts.clear()
            search.suspended.clear()
            search.local_up.clear()
            search.library_roots.clear()
            search.targets.clear()
            search.given.clear()
        _lock.release()


class _Search:
    def __init__(self, groups: list[list[Any]], budget: float, max_depth: int, patience: int | None = None) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + budget
        self.max_depth = max_depth
        self.patience = patience
        self.given = list(groups)  # the caller's lists: they hold the objects, and are not holders
        self.targets = [obj for group in groups for obj in group]
        # every loaded module's namespace, by module name, and the name of each, by id
        self.namespaces = {
            name: namespace
            for name, m in list(sys.modules.items())
            if type(name) is str and (namespace := module_namespace(m)) is not None
        }
        self.modules = {id(namespace): name for name, namespace in self.namespaces.items()}
        # the frames of every thread's running functions (made into objects here)
        self.running: set[int] = set()
        frame: types.FrameType | None
        for frame in running_frames():
            while frame is not None:
                self.running.add(id(frame))
                frame = frame.f_back
        # a root coroutine or generator, by id: its frame's text, kind (see root_kind) and
        # local variables' names by id() of their values among the objects it holds, read
        # when it was found: between two passes the app runs on, and it may have resumed
        # or finished before the chains are written (its frame is not kept: a frame that
        # outlives its generator takes over its locals, and would hold them for the search)
        self.suspended: dict[int, tuple[str, str | None, dict[int, str]]] = {}
        # id(obj) -> the holders found for it, level by level
        self.up: dict[int, list[Any]] = {}
        self.cache_parts: dict[int, set[int]] = {}  # id of a full bounded cache => _cache_parts
        # id(obj) -> the running frames whose local variables hold it (attach_running_locals)
        self.local_up: dict[int, list[types.FrameType]] = {}
        self.local_roots: set[int] = set()  # those frames
        self.own_locals: set[int] = set()  # ids held by our own functions' locals (held_by_own_locals)
        self.roots: set[int] = set()
        self.library_roots: dict[int, bool] = {}  # id of a root -> library_root's answer
        self.stopped = ""

    def root_text(self, holder: Any, held: Any) -> str | None:
        name = self.modules.get(id(holder))
        if name is not None:
            for key, value in _dict_items(holder):
                if value is held:
                    return f"{name}.{key}" if _is_name(key) else f"{name}[key]"
            return name
        kind = type(holder)
        if issubclass(kind, type):
            return type_name(holder)  # a class: the chain goes on with its attribute
        if kind is types.FrameType:
            name = _local_name(holder, held)
            return f"frame of {_frame_text(holder)}" + (f" local {name}" if name else "")
        found = self.suspended.get(id(holder))
        if found is not None:
            text, _, names = found
            name = names.get(id(held))
            return f"{kind.__name__} frame of {text}" + (f" local {name}" if name is not None else "")
        if holder is sys.modules:
            return "sys.modules"
        return None

    def root_kind(self, root: Any) -> str | None:
        """The string "own" for a global of memtracker_web (its bookkeeping); "library
        frame" for a frame, running or suspended, of the standard library's, an installed
        package's or our code (work in progress: a timer waiting, a request being read,
        our middleware waiting for the app); None for anything else (the app's globals
        and frames, a library's globals)."""
        kind = type(root)
        if kind is types.FrameType:
            return _frame_kind(root)
        found = self.suspended.get(id(root))
        if found is not None:
            return found[1]
        return "own" if self.is_own_global(root) else None

    def run_time_class(self, root: Any) -> bool:
        """Whether a root is a class not found by its qualified name (see _named_class):
        one made by ``type()`` or ``namedtuple()`` for each request, or by a class
        statement in a function. It holds its attributes' values as any class does,
        but where many such classes hold the objects (their functions, their
        namespaces), they are what grows: ``_holder_kinds`` counts them as holders."""
        return issubclass(type(root), type) and not _named_class(root, self.namespaces)

    def library_root(self, root: Any) -> bool:
        """Whether a root is not the app's own: ours or a library's (see root_kind), or a
        global of a module, or a class of one, that is not in the app's files (the
        standard library's, an installed package's, a built-in module's). Read once a
        root, a search (the roots it found stay alive until it ends)."""
        known = self.library_roots.get(id(root))
        if known is None:
            known = self.library_roots[id(root)] = self.judge_library_root(root)
        return known

    def judge_library_root(self, root: Any) -> bool:
        if self.root_kind(root) is not None:
            return True
        if issubclass(type(root), type):
            namespace = self.namespaces.get(type_module(root))
        else:
            namespace = root if id(root) in self.modules else None
        if namespace is None:
            return type(root) is not types.FrameType and id(root) not in self.suspended  # (sys.modules)
        filename = namespace.get("__file__")
        return not (type(filename) is str and is_app_file(filename))

    def is_own_global(self, root: Any) -> bool:
        """Whether ``root`` is a module namespace or a class of memtracker_web's."""
        name = self.modules.get(id(root))
        if name is None and issubclass(type(root), type):
            name = type_module(root)
        return isinstance(name, str) and name.split(".")[0] == _OWN_PACKAGE

    def chain_kind(self, path: list[Any]) -> str | None:
        """What a chain (root first) says of its object: "own" when it is held in
        memtracker_web's tables, or from a global of ours through nothing but plain
        containers and our own objects; "library frame" (see root_kind); None for the
        app's. A global of ours that reaches it through another's object is no
        bookkeeping of ours: our module's ``logger`` holds a ``logging.Logger``, whose
        manager holds every logger the app makes."""
        if _own_inside(path):
            return "own"
        kind = self.root_kind(path[0])
        return None if kind == "own" and _through_others(path) else kind

    def mostly_not_the_apps(self, resolved: dict[int, bool]) -> bool:
        """Whether the chains found show at least half of each group's objects are not
        the app's, each chain read again now as ``result`` will (the app ran on
        meanwhile: a cache's fill, a shorter chain found since)."""
        for target in self.targets:
            if id(target) in resolved:
                path = self.path_of(target)
                resolved[id(target)] = path is not None and self.not_the_apps(path)
        path = target = None  # noqa: F841
        return all(2 * sum(resolved.get(id(t), False) for t in group) >= len(group) for group in self.given)

    def not_the_apps(self, path: list[Any]) -> bool:
        """Whether a chain (root first) shows its object is not the app's: held through
        the monitor's own tables, by a bounded cache (full or not), or from a frame of
        the standard library's or an installed package's (see ``result``)."""
        kind = self.chain_kind(path)
        return kind is not None or self.bounded_holder(path) is not None

    def bounded_holder(self, path: list[Any]) -> tuple[str, float, Any] | None:
        """``_bounded_holder``, but for a full cache only when nothing else holds the
        object (of what the search found): a full cache takes each new object in place
        of an old one, and keeps no growth, but an object the app keeps as well is the
        app's (a leak that also puts each object in a ring of recent ones)."""
        past_tuples = _past_tuples(path)
        found = _bounded_holder(path, past_tuples)
        if found is None or found[1] > 0:
            return found
        cache = found[2]
        parts = self.cache_parts.get(id(cache))
        if parts is None:  # (once a search: an lru_cache's parts are its thousands of entries)
            parts = self.cache_parts[id(cache)] = _cache_parts(cache)
        below: set[int] = set()  # and the chain from the cache to the object
        for node in reversed(path):
            below.add(id(node))
            if node is cache:
                break
        # (the tuples between the cache and the object too: a SplitResult the app keeps
        # as well keeps its strs)
        for node in path[past_tuples + 1 :]:
            if any(id(h) not in parts and id(h) not in below for h in self.up.get(id(node), ())):
                return None
        return found

    def global_container(self, path: list[Any]) -> tuple[str, str] | None:
        """(module name, global name) when the object is held by a plain list, dict, set
        or deque that is a module global, or an attribute of a class a module holds
        under its qualified name (the name then ``Registry.entries``): a place whose
        size anyone can read again (global_container_size), and which grows by one a
        new object of a leak kept there. None for a chain of any other shape."""
        if len(path) == 4 and issubclass(type(path[0]), type):
            return self.class_container(path)
        if len(path) != 3 or not _growable(path[1]):
            return None
        module = self.modules.get(id(path[0]))
        if module is None:
            return None
        key = next((k for k, v in _dict_items(path[0]) if v is path[1]), None)
        return (module, key) if isinstance(key, str) and _is_name(key) else None

    def class_container(self, path: list[Any]) -> tuple[str, str] | None:
        """global_container for a chain from a class (``path``: the class, its
        namespace, the container, the object)."""
        cls, namespace, container = path[:3]
        if type(namespace) is not dict or not _growable(container) or not _named_class(cls, self.namespaces):
            return None
        key = next((k for k, v in _dict_items(namespace) if v is container), None)
        if not (isinstance(key, str) and _is_name(key)):
            return None
        try:
            if TYPE_DICT(cls).get(key) is not container:  # (the class's own namespace, not another dict)
                return None
            qualname, module = _TYPE_QUALNAME(cls), type_module(cls)
        except Exception:  # noqa: BLE001 -- an odd class: no place
            return None
        return (module, f"{qualname}.{key}") if type(qualname) is str and module else None

    def nested_global_container(self, path: list[Any]) -> tuple[str, str] | None:
        """(module name, global name) when the object is held by a plain list, dict,
        set, deque or tuple that a module global's plain container holds (a dict of
        lists, a list of tuples), or a class attribute's: where a leak one level down
        adds its objects (see newest_global_objects). None for a chain of any other
        shape."""
        if len(path) not in (4, 5) or not _nested_container(path[-2]):
            return None
        return self.global_container(path[:-2] + path[-1:])

    def is_global(self, holder: Any) -> bool:
        """A module's namespace, a class, or sys.modules: a root that lasts, unlike a
        running or suspended function's frame (work in progress)."""
        return id(holder) in self.modules or issubclass(type(holder), type) or holder is sys.modules

    def is_root(self, holder: Any, held: list[Any]) -> bool:
        """A module's namespace, a class, the frame of a function running now, a suspended
        coroutine or generator (what the chain's text needs of it is read now, ``held``
        being the objects it holds). A frame that finished (kept by a traceback) is
        walked past."""
        if self.is_global(holder):
            return True
        kind = type(holder)
        if kind is types.FrameType:
            return id(holder) in self.running
        frame = _suspended_frame(holder)
        if frame is None:
            return False
        names = {id(obj): name for obj in held if (name := _local_name(frame, obj))}
        self.suspended[id(holder)] = (_frame_text(frame), _frame_kind(frame), names)
        return True

    def run(self, top: int) -> list[dict[str, Any]]:
        here = sys._getframe()
        ours = {id(self.given), id(self.targets), id(self.up), id(self.suspended), id(here), id(self.__dict__)}
        ours.update(id(group) for group in self.given)
        # our own containers stay alive until the end: an id in `ours` is never reused meanwhile
        keep: list[Any] = []
        ours.add(id(keep))
        try:
            seen = {id(t) for t in self.targets}
            frontier = list(self.targets)
            depth = 0
            exhausted = False
            # id of a target a chain reaches -> whether the chain shows it is not the app's
            # (the monitor's own, a bounded cache's, a library's work in progress)
            resolved: dict[int, bool] = {}
            progress = 0  # the last level that gave a target its chain
            while True:
                if not frontier:
                    exhausted = True
                    break
                if depth >= self.max_depth:
                    self.stopped = f"max depth {self.max_depth} reached"
                    break
                if time.monotonic() > self.deadline:
                    self.stopped = "time budget spent"
                    break
                depth += 1
                wanted = {id(o) for o in frontier}
                strings = any(_is(o, str) for o in frontier)
                found, complete = _referrers_of(frontier, ours, self.deadline)
                following: list[Any] = []
                keep += (frontier, found, following)
                ours.update((id(frontier), id(found), id(following)))
                for holder in found:
                    hid = id(holder)
                    if hid in ours:  # (this frame's id is among them)
                        continue
                    held = _held_of(holder, wanted, strings, frontier)
                    if not held:
                        continue
                    for obj in held:
                        holders = self.up.get(id(obj))
                        if holders is None:
                            holders = self.up[id(obj)] = []
                            ours.add(id(holders))  # our bookkeeping refers to them too: not a holder
                            keep.append(holders)
                        holders.append(holder)
                    if hid in seen:
                        continue
                    seen.add(hid)
                    if self.is_root(holder, held):
                        self.roots.add(hid)
                    else:
                        following.append(holder)
                    if len(following) >= MAX_FRONTIER:
                        self.stopped = f"more than {MAX_FRONTIER} referrers at one level"
                        break
                frontier = following
                if not complete and not self.stopped:
                    # (the pass stopped at the deadline: what it found holds, the rest is unknown)
                    self.stopped = "time budget spent"
                if self.stopped:
                    break
                if self.roots and self.patience is None:
                    if all(self.chain_of(t) is not None for t in self.targets):
                        break  # every object has its chain: higher levels add nothing
                elif self.roots:
                    before = len(resolved)
                    for target in self.targets:
                        if id(target) not in resolved and (path := self.path_of(target)) is not None:
                            resolved[id(target)] = self.not_the_apps(path)
                        if time.monotonic() > self.deadline:
                            break  # (the next level says so)
                    path = target = None
                    if len(resolved) == len({id(t) for t in self.targets}):
                        break  # every object has its chain: higher levels add nothing
                    if len(resolved) > before:
                        progress = depth
                    elif depth - progress >= (self.patience or 0) and self.mostly_not_the_apps(resolved):
                        # at least half of each group is shown not to be the app's already:
                        # what more levels could find would not make it the app's
                        self.stopped = f"no other object reached a root in {self.patience} more levels"
                        break
            # (loop variables let go: their references would look like a holder the collector cannot see)
            holder = obj = held = holders = None  # type: ignore[assignment]  # noqa: F841
            unreached = any(self.path_of(t) is None for t in self.targets)
            if unreached and exhausted and _LOCALS_READ_SAFELY:
                # (only once the passes found every holder there is: a search cut short
                # would take the running functions for what keeps what it did not reach)
                self.attach_running_locals(keep)
                unreached = any(self.path_of(t) is None for t in self.targets)
            if unreached:
                self.own_locals = self.held_by_own_locals(here)
            results = [self.result(group, depth, exhausted, top, keep) for group in self.given]
            return results
        finally:
            keep.clear()  # (also when something failed: the frames it holds keep what they held)
            del here  # a frame in its own locals is a cycle

    def met(self) -> dict[int, Any]:
        """The objects the search met, by id: those searched for and their holders
        (the caller clears it when done: it holds them all)."""
        met = {id(obj): obj for obj in self.targets}
        met.update((id(holder), holder) for holders in self.up.values() for holder in holders)
        return met

    def attach_running_locals(self, keep: list[Any]) -> None:
        """The running frames whose local variables hold an object the search met, read
        once it is over: 3.11+ keeps a running function's locals in no object the
        collector sees, so gc.get_referrers cannot show these holders (a thread's loop
        keeping what it gathers, a request's handler at work). They are roots of a
        chain only for an object no other root reaches (``path_of``): a leak's objects
        are also held for a moment by the function that made them, and the chain that
        keeps them is the other one. Not our own functions': the search's and the
        monitor's locals hold what they look at. Where both an app's function and a
        library's hold it (the app's main() and the server it called), the app's
        is the chain."""
        met = self.met()
        frame: types.FrameType | None
        for frame in running_frames():
            while frame is not None:
                code = frame.f_code
                if code.co_flags & _CO_OPTIMIZED and not is_own_file(code.co_filename):
                    for _, value in _locals_items(frame):
                        if id(value) in met and met[id(value)] is value:
                            holders = self.local_up.setdefault(id(value), [])
                            if not holders:
                                keep.append(holders)
                            if not any(holder is frame for holder in holders):
                                holders.append(frame)
                                self.local_roots.add(id(frame))
                    value = None
                frame = frame.f_back
        met.clear()
        for holders in self.local_up.values():
            holders.sort(key=lambda frame: _frame_kind(frame) is not None)  # the app's first

    def held_by_own_locals(self, here: types.FrameType) -> set[int]:
        """The ids of the objects met (those searched for, their holders) that a local
        variable of one of our own functions running in this thread holds, outside this
        module: the monitor looking at what it just read while it searches (a record of
        counts, whose new ints are objects of a type being verified). No chain shows
        such a holder; an object the search left without a root under one is our own,
        not the app's (see result). Read from this thread alone: its frames wait for
        the search, and reading them is safe on every version."""
        met = self.met()
        held: set[int] = set()
        frame: types.FrameType | None = here.f_back
        while frame is not None:
            code = frame.f_code
            if code.co_flags & _CO_OPTIMIZED and is_own_file(code.co_filename) and code.co_filename != __file__:
                for _, value in _locals_items(frame):
                    if met.get(id(value)) is value:
                        held.add(id(value))
                value = None
            frame = frame.f_back
        met.clear()
        return held

    def chain_of(self, target: Any) -> str | None:
        """The chain from a root down to ``target``, or None if none was reached."""
        path = self.path_of(target)
        return None if path is None else self.text_of(path)

    def path_of(self, target: Any) -> list[Any] | None:
        """The objects from a root down to ``target``, or None if none was reached; from a
        global of ours through another's object (see chain_kind) only where no other
        root reaches it; through a running function's local variable only where nothing
        else does."""
        return self.shortest_path(target, False) or (self.shortest_path(target, True) if self.local_up else None)

    def shortest_path(self, target: Any, with_locals: bool) -> list[Any] | None:
        # breadth first up the holders found: the shortest chain to a root. Without
        # locals, a chain from a global of ours that passes through another's object
        # before one of ours (_through_others) is kept aside and returned only if no
        # other chain reaches a root: each chain carries whose the object nearest its
        # root so far is (_whose), and two chains through one holder but with a
        # different answer are both followed.
        # Of the chains of the shortest length, the first from a root of the app's own
        # (see library_root): an object a library's global holds as well (the re
        # module's cache of compiled patterns) is the app's leak where the app keeps it.
        paths: list[tuple[list[Any], int]] = [([target], _NEUTRAL)]  # target, its holder, ...
        visited = {(id(target), _NEUTRAL)}
        path: list[Any] | None = None
        aside: list[Any] | None = None  # the shortest chain from a global of ours through another's
        library = False  # whether ``path``'s root is a library's (another of the app's may come)
        while paths and path is None:
            longer = []
            for candidate, whose in paths:
                above = self.up.get(id(candidate[-1]), ())
                if with_locals:
                    above = [*above, *self.local_up.get(id(candidate[-1]), ())]
                for holder in above:
                    if id(holder) in self.roots or (with_locals and id(holder) in self.local_roots):
                        if whose == _OTHERS and self.is_own_global(holder):
                            if aside is None:
                                aside = candidate + [holder]
                            continue  # (another root may reach it)
                        if path is None or library:
                            is_library = self.library_root(holder)
                            if path is None or not is_library:
                                path, library = candidate + [holder], is_library
                        if not library:
                            break  # (the app's: none is preferred to it)
                        continue
                    if path is not None:
                        continue  # (no longer chain is wanted now)
                    above_whose = whose if with_locals else _whose(holder, whose)
                    if (id(holder), above_whose) in visited:
                        continue
                    visited.add((id(holder), above_whose))
                    longer.append((candidate + [holder], above_whose))
                if path is not None and not library:
                    break
            paths = longer
        path = path or aside
        if path is None:
            return None
        path.reverse()  # root first
        return path

    def partial_upward(self, target: Any) -> list[Any]:
        """For an object whose root was not reached: the object and one line of
        holders above it, as far as the search went."""
        upward = [target]
        seen = {id(target)}
        while True:
            holders = self.up.get(id(upward[-1]))
            holder = next((h for h in holders or () if id(h) not in seen), None)
            if holder is None:
                return upward
            seen.add(id(holder))
            upward.append(holder)

    def text_of(self, path: list[Any]) -> str:
        parts = [self.root_text(path[0], path[1]) or "?"]
        # the next dict is a class's or an object's namespace: its key is an attribute
        attribute = issubclass(type(path[0]), type) and type(path[1]) is dict
        for holder, held in zip(path[1:], path[2:], strict=False):
            if attribute and type(holder) is dict:
                # (list(): one C call, which no other thread's change to the dict can break)
                key = next((k for k, v in list(_dict_items(holder)) if v is held), None)
                if key is None and any(k is held for k in list(dict.keys(holder))):
                    parts[-1] += KEY_EDGE  # (an attribute's name: setattr(obj, name, ...) with a new name each time)
                else:
                    parts[-1] += f".{key}" if _is_name(key) else "[key]"
                attribute = False
                continue
            attribute = type(held) is dict and not _is(holder, dict) and held is _own_dict(holder)
            if attribute:
                parts.append(type_name(type(holder)))
                continue
            parts.append(f"{type_name(type(holder))}{_edge(holder, held)}")
        parts.append(type_name(type(path[-1])))
        return " -> ".join(parts)

    def own_references(self, left: list[Any], keep: list[Any]) -> Counter[int]:
        """How many references the search's own containers hold to each object, by id:
        what ``hidden`` takes off an object's reference count (counted once for all the
        objects ``left``, not once each: the containers hold every level's frontier and
        referrers, thousands of objects)."""
        containers = {id(c): c for c in (*keep, self.targets, *self.given, left)}  # each once
        # (a generator: a loop variable left holding one of them would be a reference too)
        return Counter(id(item) for container in containers.values() for item in container)

    def hidden(self, left: list[Any], index: int, ours: Counter[int]) -> bool:
        """Whether something the collector cannot see holds ``left[index]`` or what holds
        it: a running function's local variable (3.11+ keeps them outside any object), C
        code. Every reference to each of them must be one the search saw, or its own
        (``ours``: see ``own_references``)."""
        component = [left[index]]
        ids = {id(component[0])}
        for obj in component:  # grows while it is walked: all holders, transitively
            for holder in self.up.get(id(obj), ()):
                if id(holder) not in ids:
                    ids.add(id(holder))
                    component.append(holder)
        holder = None  # noqa: F841 -- a reference nobody else could see
        # What getrefcount counts of this very loop (the list, the loop variable, and on
        # some versions its own argument), measured on an object held by nothing else.
        base = 0
        for obj in [object()]:
            base = sys.getrefcount(obj)
        for obj in component:
            if sys.getrefcount(obj) - base - len(self.up.get(id(obj), ())) - ours[id(obj)] > 0:
                return True
        return False

    def result(self, targets: list[Any], depth: int, exhausted: bool, top: int, keep: list[Any]) -> dict[str, Any]:
        chains: Counter[str] = Counter()
        bounded: Counter[str] = Counter()
        rooms: dict[str, float] = {}  # the room each bounded cache has left
        fills: dict[str, dict[str, Any] | None] = {}  # the function whose results each keeps (see _cached_function)
        lru_caches: dict[int, Any] = {}  # of those caches, the lru_caches, by id
        roots: Counter[str] = Counter()
        kept: Counter[str] = Counter()  # chains whose root is the app's (or a library's global)
        kept_by_globals = 0  # of those, the ones from a module global or a class (no frame)
        in_globals: Counter[tuple[str, str]] = Counter()  # of those, held by a module global's plain container
        global_sizes: dict[tuple[str, str], tuple[int, str]] = {}  # its size now and the chain's text
        under_globals: Counter[tuple[str, str]] = Counter()  # or by a plain container such a container holds
        under_chains: dict[tuple[str, str], set[str]] = {}  # the chains' texts
        held_through: dict[str, list[Any]] = {}  # holder type => [objects held through one, nearest one ids, depths]
        left: list[Any] = []
        for target in targets:
            path = self.path_of(target)
            if path is None:
                upward = self.partial_upward(target)
                if _in_own_tables(upward, self.own_locals):
                    roots["own"] += 1
                else:
                    left.append(target)
            else:
                text = self.text_of(path)
                chains[text] += 1
                # each object in one of these at most: our own, a bounded cache's, a
                # library function's at work, or the app's (kept)
                kind = self.chain_kind(path)
                room = None if kind == "own" else self.bounded_holder(path)
                if room is not None:
                    bounded[room[0]] += 1
                    rooms[room[0]] = room[1]
                    if room[0] not in fills:
                        fills[room[0]] = _cached_function(room[2])
                    if _is_lru_wrapper(room[2]):
                        lru_caches[id(room[2])] = room[2]
                elif kind is not None:
                    roots[kind] += 1
                else:
                    kept[text] += 1
                    kept_by_globals += self.is_global(path[0])
                    if (place := self.global_container(path)) is not None:
                        in_globals[place] += 1
                        global_sizes[place] = (len(path[-2]), text)
                    elif (place := self.nested_global_container(path)) is not None:
                        under_globals[place] += 1
                        under_chains.setdefault(place, set()).add(text)
                # the object first, without the root; but with a class made at run time,
                # one of many like it, as a holder (the parts of classes that leak)
                upward = path[::-1] if self.run_time_class(path[0]) else path[:0:-1]
            for kind, (nearest, distance) in _holder_kinds(upward, None if path is None else path[0]).items():
                entry = held_through.setdefault(kind, [0, set(), 0])
                entry[0] += 1
                entry[1].add(nearest)
                entry[2] += distance
        # their references would count as ones nobody can see
        target = path = upward = None  # type: ignore[assignment]
        frozen = gc.get_freeze_count() if hasattr(gc, "get_freeze_count") else 0
        if exhausted and left and frozen and not REFERRERS_SEE_FROZEN:
            # gc.get_referrers does not look at what gc.freeze() set aside (a preloading
            # server's modules and classes): an object held from there looks held by nothing
            exhausted = False
            self.stopped = (
                f"gc.freeze() keeps {frozen:,} objects out of the search: chains through them cannot be followed"
            )
        hidden = 0
        if exhausted and left:
            ours = self.own_references(left, keep)
            for index in range(len(left)):
                hidden += self.hidden(left, index, ours)
        return {
            "chains": [{"chain": text, "count": n} for text, n in chains.most_common(top)],
            "bounded": [
                {"holder": text, "count": n, "room": rooms[text], "function": fills[text]}
                for text, n in bounded.most_common(top)
            ],
            "roots": {kind: roots[kind] for kind in ("own", "library frame")},
            "kept_by": kept.most_common(1)[0][0] if kept else None,
            "kept_in": [
                {
                    "module": module,
                    "name": name,
                    "count": n,
                    "size": global_sizes[module, name][0],
                    "chain": global_sizes[module, name][1],
                }
                for (module, name), n in in_globals.most_common(top)
            ],
            "kept_under": [
                {"module": module, "name": name, "count": n, "chains": sorted(under_chains[module, name])}
                for (module, name), n in under_globals.most_common(top)
            ],
            "kept": kept_by_globals,
            "holders": sorted(
                (
                    {"type": kind, "objects": n, "distinct": len(nearest), "distance": round(distances / n, 2)}
                    for kind, (n, nearest, distances) in held_through.items()
                ),
                key=lambda h: (-h["distance"], h["type"]),
            ),
            "objects": len(targets),
            "unreachable": len(left) - hidden if exhausted else 0,
            "hidden": hidden,
            "unresolved": 0 if exhausted else len(left),
            "stopped": self.stopped if left else "",  # every object has its chain: nothing was cut
            "levels": depth,
            "seconds": round(time.monotonic() - self.started, 4),
            "lru_caches": list(lru_caches.values()),
        }
