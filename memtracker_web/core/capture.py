"""Capture: count live objects of chosen types, exactly, in O(1).

The Python face of one ``_tracker.CaptureCore``. The C side counts inside the
reference tracer; this side delivers callbacks at safe points, never inside an
allocation.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import engine

logger = logging.getLogger("memtracker_web")

Callback = Callable[[type, str, Any], Any]


class Frame(NamedTuple):
    """One frame of an allocation's call path."""

    filename: str
    lineno: int
    function: str


class DisplacedWarning(RuntimeWarning):
    """Counts were read while another tool had replaced the reference tracer."""


class ReplacedTracerWarning(RuntimeWarning):
    """Starting took the reference-tracer slot from another tool, which CPython (3.15+) told
    it was removed."""


@dataclass(frozen=True)
class Allocations:
    """Counts of one tracked type since the capture started.

    ``sample`` is 1 when every object was counted. N > 1 (a type analysed with
    ``sample_objects=N``): one object in about N was followed, picked by its
    address, and the counts are theirs times N, estimates. An object keeps its
    address while it lives, so the objects a leak keeps are sampled as fairly as
    any; the relative error of a count of n sampled objects is about 1/sqrt(n).
    """

    new_count: int
    free_count: int
    lost_count: int = 0  # creations the tracer could not record (memory ran out)
    sample: int = 1

    @property
    def estimated(self) -> bool:
        return self.sample > 1

    @property
    def retained_count(self) -> int:
        return self.new_count - self.free_count


class _Unbuilt:
    """Stands in for CaptureCore where the C extension is missing (e.g. PyPy):
    tracking sets can be edited, starting raises EngineUnavailable."""

    running = False

    def __init__(self, queue_size: int = 0) -> None:
        self._types: dict[int, type] = {}

    def track(self, cls: type, callback: bool = False, object_sample: int = 0) -> int:
        self._types[id(cls)] = cls
        return len(self._types) - 1

    def untrack(self, cls: type) -> bool:
        return self._types.pop(id(cls), None) is not None

    def slot_of(self, cls: type) -> int | None:
        return 0 if id(cls) in self._types else None

    def object_sample(self, cls: type) -> int | None:
        return 1 if id(cls) in self._types else None

    def counts(self, cls: type):
        return (0, 0, 0) if id(cls) in self._types else None

    def live(self, cls: type) -> int:
        return 0

    def items(self):
        return [(cls, 0, 0, 0, False) for cls in self._types.values()]

    def start(self) -> None:
        engine.require_engine()

    def stop(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def drain(self):
        return []

    def pending(self) -> int:
        return 0

    def analyse(self, cls: type, **options: Any) -> None:
        engine.require_engine()

    def unanalyse(self, cls: type) -> bool:
        return False

    def tree(self, cls: type):
        return None

    def tree_update(self, cls: type, layout: int, known: int):
        return None

    def path_of(self, cls: type, leaf: int):
        return None

    def allocation_paths(self, cls: type, objects: list):
        return [0] * len(objects), {}

    def tabled(self, cls: type, objects: list) -> tuple[int, int]:
        return 0, 0

    def statistics(self) -> dict:
        return {"tracked_objects": 0, "total_bytes": 0, "dropped_events": 0, "queue_length": 0}

    def tree_codes(self) -> tuple[list, list]:
        return [], []

    def sample(self, cls: type, n: int) -> list:
        engine.require_engine()  # raises EngineUnavailable (a RuntimeError): no engine here
        return []

    def sizes(self, cls: type, n: int) -> tuple[int, int] | None:
        engine.require_engine()
        return None


# Captures with callbacks, drained by the pending call the C hook schedules.
_with_callbacks: weakref.WeakSet[Capture] = weakref.WeakSet()


def _drain_all() -> None:
    for capture in list(_with_callbacks):
        capture.flush()


if engine._tracker is not None:
    engine._tracker.set_pending_callable(_drain_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=engine._tracker._after_fork_child)


def _release_flushes_of_gone_threads() -> None:
    """In a forked child: a flush another thread was running at the fork never ends
    there, and its lock would keep every flush after it from delivering (callbacks
    lost for good). The forking thread's own flush goes on in the child and lets go
    of its lock itself."""
    for capture in list(_with_callbacks):
        if capture._flush_lock.locked() and capture._flushing != threading.get_ident():
            capture._flush_lock = threading.Lock()
            capture._flushing = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_flushes_of_gone_threads)


class Capture:
    """Counts live objects of exactly the tracked types, created while tracked.

    >>> capture = Capture(); capture.track(dict); capture.start()
    >>> capture.count_for(dict)    # O(1), no heap walk

    Objects that existed before tracking began are never counted. Each
    ``start()`` begins a new counting period (frees are invisible while
    stopped, so earlier counts cannot carry over); ``stop()`` freezes the counts.
    """

    _memtracker_bookkeeping = True  # (monitor.retention.BOOKKEEPING: a chain through it is our own)

    def __init__(self, *, queue_size: int = 65536) -> None:
        core_type = engine._tracker.CaptureCore if engine._tracker is not None else _Unbuilt
        self._core = core_type(queue_size=queue_size)
        # slot => (class, callback); a class tracked with a callback is held strongly
        self._callbacks: dict[int, tuple[type, Callback]] = {}
        # (slot, seq) => what the callback returned for "new", handed back on "free"
        self._callback_data: dict[tuple[int, int], Any] = {}
        self._flush_lock = threading.Lock()
        self._flushing: int | None = None  # the thread that holds _flush_lock (see _release_flushes_of_gone_threads)
        self.callback_errors = 0

    # -- tracked set -------------------------------------------------------

    def track(self, cls: type, callback: Callback | None = None, sample_objects: int | None = None) -> None:
        """Count objects of exactly ``cls`` (a subclass is its own type).

        ``callback(cls, event, data)`` runs later, at a safe point, for each
        creation (event "new") and destruction ("free"). On "new", ``data`` is
        the allocation's call path (a tuple of Frame, innermost first) when the
        type is under call-path analysis, else None; whatever the callback
        returns for "new" comes back as ``data`` on that object's "free".

        ``sample_objects=N`` counts one object in about N, picked by address
        (see ``Allocations.sample``; classes of classes, module types and types
        with a callback count every object), 1 every object; None leaves a
        tracked type as it is. A change starts the type's counts over.
        """
        _check_class(cls, "track")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if sample_objects is not None and (
            isinstance(sample_objects, bool) or not isinstance(sample_objects, int) or not 1 <= sample_objects <= 65536
        ):
            raise ValueError(f"sample_objects must be an int from 1 to 65536, got {sample_objects!r}")
        slot = self._core.track(cls, callback=callback is not None, object_sample=sample_objects or 0)
        if callback is not None:
            self._callbacks[slot] = (cls, callback)
            _with_callbacks.add(self)
        else:
            self._callbacks.pop(slot, None)

    def untrack(self, cls: type) -> bool:
        """Stop counting ``cls``; its counts and call tree are dropped."""
        _check_class(cls, "untrack")
        slot = self._core.slot_of(cls)
        self.flush()
        removed = self._core.untrack(cls)
        if slot is not None:
            self._callbacks.pop(slot, None)
            # a copy: another thread's flush may be adding entries meanwhile
            for key in [k for k in list(self._callback_data) if k[0] == slot]:
                self._callback_data.pop(key, None)
        return removed

    def is_tracking(self, cls: type) -> bool:
        return isinstance(cls, type) and self._core.slot_of(cls) is not None

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._core.slot_of(cls) is not None

    def __iter__(self) -> Iterator[tuple[type, Allocations]]:
        self._flush_if_needed()
        for cls, new, free, lost, _analysing in self._core.items():
            n = self._core.object_sample(cls) or 1
            yield cls, Allocations(new * n, free * n, lost * n, n)

    def __len__(self) -> int:
        return len(self._core.items())

    # -- running -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._core.running)

    @property
    def can_sample(self) -> bool:
        """Whether ``sample`` can follow the table now: running, no event missed (a
        stopped or displaced capture's counts are frozen too)."""
        return bool(self._core.running) and not getattr(self._core, "missed_events", False)

    def start(self) -> None:
        """Begin a new counting period. Raises EngineUnavailable where the
        reference tracer cannot run (it names the interpreter and the fix)."""
        if self.running:
            return
        engine.require_engine()
        self._callback_data.clear()
        slot_before = engine.tracer_slot()
        self._core.start()
        if engine.replaced_tracer(slot_before):
            warnings.warn(engine.REPLACED_TRACER, ReplacedTracerWarning, stacklevel=2)

    def stop(self) -> None:
        """Stop counting; counts stay readable, frozen as they were."""
        self.flush()
        self._core.stop()

    def clear(self) -> None:
        """Zero the counts of a stopped capture (RuntimeError while running)."""
        self._core.clear()
        self._callback_data.clear()

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------

    def count_for(self, cls: type) -> int:
        """Live objects of exactly ``cls`` created while tracked; 0 if untracked. O(1).
        An estimate for a type followed by sample (see ``Allocations.sample``)."""
        self._flush_if_needed()
        self._warn_if_displaced()
        return self._live(cls)

    def _live(self, cls: type) -> int:
        return self._core.live(cls) * (self._core.object_sample(cls) or 1)

    def object_sample(self, cls: type) -> int | None:
        """1 when every object of ``cls`` is counted, N when one in about N is
        (``Allocations.sample``); None if untracked."""
        _check_class(cls, "object_sample")
        return self._core.object_sample(cls)

    def allocations(self, cls: type) -> Allocations | None:
        """new_count, free_count and retained_count of ``cls``, or None if untracked."""
        _check_class(cls, "allocations")
        self._flush_if_needed()
        self._warn_if_displaced()
        counts = self._core.counts(cls)
        if counts is None:
            return None
        n = self._core.object_sample(cls) or 1
        return Allocations(counts[0] * n, counts[1] * n, counts[2] * n, n)

    def statistics(self) -> dict[str, Any]:
        """Memory the capture holds (tables, call trees, queue) and dropped events."""
        stats = dict(self._core.statistics())
        stats["callback_errors"] = self.callback_errors
        stats["callback_data_entries"] = len(self._callback_data)
        return stats

    def tree_codes(self) -> tuple[list[types.CodeType], list[types.CodeType]]:
        """The code objects this capture's call trees hold, each once (those of
        functions the app still has too), and those of them every reference to which
        is a call-path node's (the app let go of them). A type analysed while the app compiles code
        for each request (a template rendered from a string, ``exec``) keeps those
        codes, and the bytes, strs and tuples they hold, until the tree prunes their
        nodes: growth of ours, which the monitor leaves out of its verifications."""
        return self._core.tree_codes()

    def sample(self, cls: type, n: int = 64) -> list[Any]:
        """Up to ``n`` live objects of the tracked ``cls``, spread over all of them
        (over those it follows, for a type followed by sample; references: let them go
        soon). Empty when ``cls`` is not tracked. Only while the capture runs and has
        missed no event (RuntimeError otherwise): then every object it knows of is
        alive. As with ``gc.get_objects()``, one may still be under construction in
        another thread (a tuple being filled): look at its type and size, not into it.
        Scans the capture's object table."""
        _check_class(cls, "sample")
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"sample size must be an int, got {type(n).__name__}")
        self._flush_if_needed()
        return self._core.sample(cls, n)

    def allocation_paths(self, cls: type, objects: list[Any]) -> list[tuple[Frame, ...] | None]:
        """Where each of ``objects`` was allocated: the frames of its call path,
        innermost first, as ``cls``'s analysis recorded it; None for one it does not
        follow (another type's, not picked by its sampling, allocated with no Python
        frame, or the capture stopped). A retention search tells this way which call
        paths the objects it looked at came from."""
        leaves, paths = self._leaves_and_paths(cls, objects, "allocation_paths")
        return [paths.get(leaf) for leaf in leaves]

    def allocation_path_counts(self, cls: type, objects: list[Any]) -> list[tuple[tuple[Frame, ...], int]]:
        """``allocation_paths`` counted: each call path that allocated some of
        ``objects``, with how many (those the analysis of ``cls`` follows), most first."""
        leaves, paths = self._leaves_and_paths(cls, objects, "allocation_path_counts")
        framed = {leaf: path for leaf, path in paths.items() if path}
        counted = collections.Counter(leaf for leaf in leaves if leaf in framed)
        return [(framed[leaf], count) for leaf, count in counted.most_common()]

    def tabled(self, cls: type, objects: list[Any]) -> tuple[int, int]:
        """Of ``objects``, those of exactly ``cls`` that its table follows (every one,
        or those its address sample picks: see ``track(sample_objects=...)``), and of
        those the ones in the table: made since ``cls`` was tracked and alive. (0, 0)
        while the capture is stopped or missed events. A global the app overwrites holds
        only objects made since; one a leak fills holds older ones too."""
        _check_class(cls, "tabled")
        if not isinstance(objects, list):
            raise TypeError(f"objects must be a list, got {type(objects).__name__}")
        tabled, followed = self._core.tabled(cls, objects)
        return followed, tabled

    def _leaves_and_paths(
        self, cls: type, objects: list[Any], caller: str
    ) -> tuple[list[int], dict[int, tuple[Frame, ...] | None]]:
        """The call-tree leaf of each of ``objects`` (0: not followed) and each leaf's
        frames, read in one call (a pruning between two would number the nodes again).
        No pending callback runs here: the caller holds ``objects`` (a search's, a
        cache's keys), and a callback is code of the app's, which may wait on them."""
        _check_class(cls, caller)
        if not isinstance(objects, list):
            raise TypeError(f"objects must be a list, got {type(objects).__name__}")
        leaves, frames_of = self._core.allocation_paths(cls, objects)
        return leaves, {
            leaf: tuple(Frame(*frame) for frame in frames) if frames else None for leaf, frames in frames_of.items()
        }

    def live_bytes(self, cls: type, sample: int = 64) -> tuple[int, int] | None:
        """An estimate of the memory the live objects of ``cls`` take themselves:
        the mean shallow ``sys.getsizeof`` of up to ``sample`` of them, times the
        live count; with how many were measured. Shallow: what an object refers
        to (a dict's values, an instance's attributes' objects) is not included.
        None when it cannot be estimated (not tracked, stopped, displaced).

        The engine measures them itself when the type's ``__sizeof__`` is C code:
        no Python code runs while it holds them, so no other thread can drop its last
        reference to one meanwhile and see it outlive that."""
        _check_class(cls, "live_bytes")
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise TypeError(f"sample size must be an int, got {type(sample).__name__}")
        self._flush_if_needed()
        try:
            sizes = self._core.sizes(cls, sample)
            if sizes is None:  # its __sizeof__ is the app's (Python code): measured here
                sizes = _shallow_sizes(self._core.sample(cls, sample))
        except RuntimeError:
            return None
        live = self._live(cls)
        size, measured = sizes
        if not measured:
            return (0, 0) if live == 0 and self.is_tracking(cls) else None
        return round(size / measured * live), measured

    # -- callbacks -----------------------------------------------------------

    def flush(self) -> int:
        """Run pending callbacks now; returns how many events were delivered.

        Only one thread drains at a time; a flush that finds another one
        running returns 0 (that one delivers the events, in order).
        """
        lock = self._flush_lock  # (released as taken: a fork's hook may give the child another)
        if not self._callbacks or not lock.acquire(blocking=False):
            return 0
        self._flushing = threading.get_ident()
        delivered = 0
        try:
            for _ in range(16):  # events pushed by callbacks themselves come in later rounds
                events = self._core.drain()
                if not events:
                    break
                for slot, kind, seq, leaf in events:
                    delivered += self._deliver(slot, kind, seq, leaf)
        finally:
            self._flushing = None
            lock.release()
        return delivered

    def _flush_if_needed(self) -> None:
        if self._callbacks and self._core.pending():
            self.flush()

    def _deliver(self, slot: int, kind: int, seq: int, leaf: int) -> int:
        entry = self._callbacks.get(slot)
        key = (slot, seq & 0xFFFFFFFF)
        if entry is None:
            self._callback_data.pop(key, None)
            return 0
        cls, callback = entry
        try:
            if kind == 0:
                path = self._core.path_of(cls, leaf)
                data = tuple(Frame(*frame) for frame in path) if path else None
                result = callback(cls, "new", data)
                if result is not None:
                    self._callback_data[key] = result
            else:
                callback(cls, "free", self._callback_data.pop(key, None))
        except Exception:
            self.callback_errors += 1
            logger.exception(
                "memtracker_web: callback %r for %s raised; tracking continues", callback, cls.__qualname__
            )
        return 1

    def _warn_if_displaced(self) -> None:
        if getattr(self._core, "missed_events", False):
            warnings.warn(engine.DISPLACED_REASON, DisplacedWarning, stacklevel=3)

    # -- call-path analysis (used by Tracker) ------------------------------

    def _analyse(self, cls: type, depth: int, sample_every: int, max_nodes: int, object_sample: int = 1) -> None:
        self._core.analyse(
            cls, depth=depth, sample_every=sample_every, max_nodes=max_nodes, object_sample=object_sample
        )

    def _unanalyse(self, cls: type) -> bool:
        return self._core.unanalyse(cls)

    def _tree(self, cls: type):
        self._flush_if_needed()  # queued events name leaves that pruning would move
        return self._core.tree(cls)

    def _tree_update(self, cls: type, layout: int, known: int):
        self._flush_if_needed()  # (as _tree)
        return self._core.tree_update(cls, layout, known)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Capture {state}, {len(self)} types>"


def _shallow_sizes(objects: list[Any]) -> tuple[int, int]:
    """The summed ``sys.getsizeof`` of ``objects`` and how many were measured."""
    size = measured = 0
    for obj in objects:
        try:
            size += sys.getsizeof(obj, 0)  # the object's own __sizeof__ may be the app's
        except Exception:  # noqa: BLE001 -- one odd object must not cost the estimate
            continue
        measured += 1
    return size, measured


def _check_class(cls: object, what: str) -> None:
    if not isinstance(cls, type):
        raise TypeError(f"{what}() needs a class, got {type(cls).__name__} object")
