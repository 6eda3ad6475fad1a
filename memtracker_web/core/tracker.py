"""Tracker: counts plus allocation call paths (the seed's Memory::Tracker::Instance).

Call paths are taken in C at the allocation itself, so they are exact: the
innermost frame is the Python line that was running when the object was
created (for objects built inside C code, such as ``json.loads``'s dicts, the
line that called into C).
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import sys
import sysconfig
import threading
import weakref
from array import array
from functools import lru_cache
from typing import Any

from .capture import Callback, Capture, Frame, _check_class

__all__ = ["Frame", "Tracker", "count", "default_tracker", "stats", "track", "track_with_analysis", "untrack"]

DEFAULT_MAX_NODES = 10_000


class Tracker:
    """Counts for some types, call-path analysis for others, on one Capture.

    >>> with Tracker(depth=10) as tracker:
    ...     tracker.track_with_analysis(Order)
    ...     run_code()
    ...     print(tracker.stats(Order)["top_paths"][0]["path"])
    """

    _memtracker_bookkeeping = True  # (monitor.retention.BOOKKEEPING: a chain through it is our own)

    def __init__(self, depth: int = 10, *, max_nodes: int = DEFAULT_MAX_NODES, capture: Capture | None = None) -> None:
        if not isinstance(depth, int) or not 1 <= depth <= 64:
            raise ValueError(f"depth must be an int from 1 to 64, got {depth!r}")
        self.depth = depth
        self.max_nodes = max_nodes
        self.capture = capture if capture is not None else Capture()
        self._lock = threading.RLock()
        self._analysis: dict[int, dict[str, int]] = {}  # id(cls) => options, for types under analysis
        self._views: dict[int, CallTreeView] = {}  # id(cls) => its call tree as last read (see stats)
        self._reading = 0  # reads of a view under way on the thread holding the lock (see stats)
        _trackers.add(self)

    def _ensure_started(self) -> None:
        if not self.capture.running:
            self.capture.start()

    def track(self, cls: type, callback: Callback | None = None, sample_objects: int | None = None) -> None:
        """Count ``cls`` (no call paths); ``sample_objects`` as in ``Capture.track``."""
        with self._lock:
            self.capture.track(cls, callback=callback, sample_objects=sample_objects)
            self._ensure_started()

    def track_with_analysis(
        self,
        cls: type,
        depth: int | None = None,
        sample_every: int = 1,
        max_nodes: int | None = None,
        callback: Callback | None = None,
        sample_objects: int | None = None,
    ) -> None:
        """Count ``cls`` and record where each instance was allocated.

        ``sample_every=N`` records the path of one allocation in about N, at random
        gaps, not to keep in step with an app's own pattern (counts stay exact; path
        figures are scaled by N and marked as estimates).

        ``sample_objects=M`` (M dividing N) follows one object in about M,
        picked by its address, instead of every object, and records the path
        of one in N/M of those: the counts are theirs times M
        (``Allocations.sample``; estimates), and an object not followed costs the
        tracer one multiplication. For a hot type (``dict``, ``str``, a class made by the thousand) that is
        most of the cost of analysing it. ``stop_analysis`` keeps it sampled.
        An object keeps its address while it lives, so the objects a leak keeps
        are sampled fairly, however many others come and go. Not for types
        whose objects are classes, nor module types: they count every object. (An
        object whose ``__class__`` is assigned stays the type's it was made as.) A callback
        needs every object: giving one counts every object again. A change of
        ``sample_objects`` starts the type's counts over; None keeps a tracked type's
        (it must divide ``sample_every``), and is 1 for a type not tracked yet.
        """
        depth = self.depth if depth is None else depth
        max_nodes = self.max_nodes if max_nodes is None else max_nodes
        if not isinstance(sample_every, int) or sample_every < 1:
            raise ValueError(f"sample_every must be an int >= 1, got {sample_every!r}")
        if sample_objects is None:
            sample_objects = (self.capture.object_sample(cls) if isinstance(cls, type) else None) or 1
            if sample_every % sample_objects:
                raise ValueError(
                    f"{cls.__qualname__} is followed one object in {sample_objects}: sample_every ({sample_every}) "
                    "must be a multiple of it, or pass sample_objects"
                )
        if (
            isinstance(sample_objects, bool)
            or not isinstance(sample_objects, int)
            or not 1 <= sample_objects <= sample_every
            or sample_every % sample_objects
        ):
            raise ValueError(
                f"sample_objects must be an int dividing sample_every ({sample_every}), got {sample_objects!r}"
            )
        with self._lock:
            if callback is not None or cls not in self.capture:
                self.capture.track(cls, callback=callback, sample_objects=sample_objects)
            self._ensure_started()
            self.capture._analyse(
                cls, depth=depth, sample_every=sample_every, max_nodes=max_nodes, object_sample=sample_objects
            )
            self._analysis[id(cls)] = {"depth": depth, "sample_every": sample_every}

    def stop_analysis(self, cls: type) -> bool:
        """Keep counting ``cls`` (as it was: every object, or a sample) but drop its call tree."""
        with self._lock:
            self._analysis.pop(id(cls), None)
            self._views.pop(id(cls), None)
            return self.capture._unanalyse(cls)

    def is_analysing(self, cls: type) -> bool:
        return id(cls) in self._analysis and self.capture.is_tracking(cls)

    def count(self, cls: type) -> int:
        return self.capture.count_for(cls)

    def is_tracking(self, cls: type) -> bool:
        return self.capture.is_tracking(cls)

    def untrack(self, cls: type) -> bool:
        with self._lock:
            self._analysis.pop(id(cls), None)
            self._views.pop(id(cls), None)
            return self.capture.untrack(cls)

    def stats(self, cls: type, *, limit: int | None = 10, hotspots: int = 20) -> dict[str, Any] | None:
        """Live count, allocations and the top call paths of ``cls``.

        None for a type tracked without analysis (or not tracked). The result
        is JSON-serialisable; ``top_paths`` is ordered by retained count, a tie
        going to the path nearest the app's own code (for counts estimated from a
        sample, a difference within the sampling's noise is a tie too).
        """
        _check_class(cls, "stats")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"stats(): limit must be None or an int >= 0, not {limit!r}")
        if isinstance(hotspots, bool) or not isinstance(hotspots, int) or hotspots < 0:
            raise ValueError(f"stats(): hotspots must be an int >= 0, not {hotspots!r}")
        with self._lock:  # (the views are shared by every thread that asks)
            nested = self._reading > 0
            self._reading += 1
            try:
                stats = self._stats_of(cls, nested, limit, hotspots)
            finally:
                self._reading -= 1
        return stats

    def _stats_of(self, cls: type, nested: bool, limit: int | None, hotspots: int) -> dict[str, Any] | None:
        # A callback a flush runs (or a pending call) in the middle of a read, reading
        # too (``nested``), reads from a view of its own: the one kept stays as the
        # outer read found it.
        view = None if nested else self._views.get(id(cls))
        raw = self.capture._tree_update(cls, view.layout if view else 0, len(view) if view else 0)
        allocations = self.capture.allocations(cls)
        if raw is None or allocations is None:
            if not nested:
                self._views.pop(id(cls), None)
            return None
        layout, start, places, counts, meta = raw
        if nested:
            view = CallTreeView()
        elif view is None:
            # (a type analysed once and no more, its class gone, leaves none behind)
            for key in [key for key in self._views if key not in self._analysis]:
                del self._views[key]
            view = self._views[id(cls)] = CallTreeView()
        view.update(layout, start, places)
        stats = stats_of_view(
            view,
            array("Q", counts),
            meta,
            allocations.new_count,
            allocations.retained_count,
            limit=limit,
            hotspot_limit=hotspots,
        )
        # one object in object_sample followed: live_count and total_allocations are estimates too
        stats["object_sample"] = allocations.sample
        return stats

    def stop(self) -> None:
        """Stop the capture; counts and stats stay readable, frozen."""
        self.capture.stop()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A thread that held a tracker's lock when another thread forked does not exist
    in the child: the lock would stay held, and the child's first read would wait for
    ever; and a view it was adding to may be half written. The forking thread's own
    hold goes on in the child, which lets go of it. So for the default tracker's lock,
    made anew."""
    global _default_lock
    _default_lock = threading.Lock()
    for tracker in list(_trackers):
        if not tracker._lock._is_owned():  # type: ignore[attr-defined]  # (RLock's, in C)
            tracker._lock = threading.RLock()
            tracker._reading = 0
            tracker._views.clear()  # (read afresh)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Sampled counts (one object in ``sample_every`` followed) this many standard deviations
# of their difference apart or nearer are taken as equal; see _within_noise.
NOISE_DEVIATIONS = 2.0
# How many of the top paths of a sampled tree are picked with ties within the noise
# going to the app's code (the rest, never shown in a report, in plain order).
TIED_PICKS = 10


def _within_noise(larger: int, smaller: int) -> bool:
    """Whether two retained counts of sampled paths (in sampled objects) may be the
    same rate seen through the sample: each is about Poisson, so their difference has
    a standard deviation of about sqrt(larger + smaller). (Three sites making one
    object a request each read 10, 7 and 3 sampled objects after 20 requests.) A path
    that keeps none is no tie of one that keeps some: a leak's path would give its
    place to a site of short-lived objects nearer the app."""
    return smaller > 0 and larger - smaller <= NOISE_DEVIATIONS * math.sqrt(larger + smaller)


def _nearest_the_app_within_noise(ranked: list, picks: int) -> list:
    """The first ``picks`` paths of ``ranked`` (in plain order: most retained first)
    taken one at a time: the path nearest the app's own code among those within the
    noise of the largest left (_within_noise), the first of them on a tie; then the
    rest as they were. Exact counts tie only when equal; sampled counts that differ
    by less than the sampling's error say nothing about which site keeps more, and
    the path that starts in the app's code is the one to show."""
    left = list(ranked)
    picked: list = []
    while left and len(picked) < picks:
        best = 0
        for index in range(1, len(left)):
            if not _within_noise(left[0][0], left[index][0]):
                break  # (ranked by count: none further is within it either)
            if left[index][3] < left[best][3]:
                best = index
        picked.append(left.pop(best))
    return picked + left


class _EngineStrings(list):
    """A column of the engine's strings (files and functions: the code objects'
    own). Not a plain list, so that the monitor's walk of its own tables
    (monitor.retention.own_table_refs) counts the column as the view's without a
    step for each of its thousands of strings, none of them ours."""

    __slots__ = ()


class CallTreeView:
    """A type's call tree as the stats read it, kept from one read to the next: the
    place of each node (its parent, file, line and function) and what its path
    needs (how deep it is, how far out the app's innermost frame is, whether it is
    ours), worked out once a node. The engine numbers the nodes in the order it
    makes them and gives each numbering a layout number (a tree's own, a new one at
    each pruning), so a read under the same layout adds only the nodes made since
    (``CaptureCore.tree_update``): a leak reported at every growth, its tree of
    hundreds of nodes read each second, costs the new nodes and the counts.
    Columns of arrays and lists of the engine's own strings: neither the places nor
    their facts are a Python object a node that a verification could count as the
    monitor's growth."""

    _memtracker_bookkeeping = True  # (monitor.retention.BOOKKEEPING: a chain through it is our own)

    __slots__ = ("layout", "parents", "filenames", "linenos", "functions", "depth", "app_depth", "app", "ours", "kinds")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.layout = 0  # (the engine numbers layouts from 1)
        self.parents = array("q")
        self.filenames: list[str] = _EngineStrings()
        self.linenos = array("q")
        self.functions: list[str] = _EngineStrings()
        self.depth = array("q")
        # how far out the app's own innermost frame is (0: the node itself), -1 for none
        self.app_depth = array("q")
        self.app = bytearray()  # the node's frame is the app's own code
        # whether the innermost frame outside the stdlib and libraries is ours
        self.ours = bytearray()
        self.kinds: dict[str, int] = {}  # a file's: 2 if the app's, + 1 if ours; few files, many nodes

    def __len__(self) -> int:
        return len(self.parents)

    def update(self, layout: int, start: int, places: list) -> None:
        """Take the places of nodes ``start`` on (``(parent, filename, lineno,
        function)`` each) read under ``layout``; from 0, the nodes kept go."""
        if start == 0:
            self._clear()
        elif start != len(self) or layout != self.layout:
            raise ValueError(f"call tree read from node {start} under layout {layout}, {len(self)} known")
        try:
            self._add(places)
        except BaseException:
            self._clear()  # (interrupted part way: columns out of step would mislead every read after)
            raise
        self.layout = layout

    def _add(self, places: list) -> None:
        kinds, depth, app_depth, app, ours = self.kinds, self.depth, self.app_depth, self.app, self.ours
        for parent, filename, lineno, function in places:
            index = len(self.parents)
            self.parents.append(parent)
            self.filenames.append(filename)
            self.linenos.append(lineno)
            self.functions.append(function)
            if not index:  # (the root has no frame: allocations made when the tree was full)
                depth.append(0)
                app_depth.append(-1)
                app.append(0)
                ours.append(0)
                continue
            kind = kinds.get(filename)
            if kind is None:
                kind = kinds[filename] = 2 * is_app_file(filename) + is_own_file(filename)
            is_app, mine = kind >> 1, kind & 1
            app.append(is_app)
            depth.append(depth[parent] + 1)
            app_depth.append(0 if is_app else app_depth[parent] + 1 if app_depth[parent] >= 0 else -1)
            ours.append(mine if is_app or mine else ours[parent])


def build_stats(
    nodes: list, meta: dict, new_count: int, live_count: int, *, limit: int | None = 10, hotspot_limit: int = 20
) -> dict[str, Any]:
    """Turn the C call tree into the stats dict.

    ``nodes[i] = (parent, filename, lineno, function, total, retained, truncated)``;
    counts are per innermost frame, so each node with counts is one call path.
    A node comes after its parent (the engine appends children, and pruning keeps
    the order), so one pass in index order gives every node what its path needs
    from its parent's (CallTreeView); only the paths shown, and the hotspots when
    asked for, are walked frame by frame.
    """
    view = CallTreeView()
    view.update(1, 0, [node[:4] for node in nodes])
    counts = array("Q")
    for node in nodes:
        counts.extend((node[4], node[5], 1 if node[6] else 0))
    return stats_of_view(view, counts, meta, new_count, live_count, limit=limit, hotspot_limit=hotspot_limit)


def stats_of_view(
    view: CallTreeView,
    counts: array,
    meta: dict,
    new_count: int,
    live_count: int,
    *,
    limit: int | None = 10,
    hotspot_limit: int = 20,
) -> dict[str, Any]:
    """build_stats from a CallTreeView and its nodes' counts (each node's total,
    retained and truncated flag, in a row)."""
    scale = meta["sample_every"]
    shorten = path_shortener()
    count = len(view)
    if len(counts) != 3 * count:
        raise ValueError(f"{len(counts)} counts for {count} call tree nodes")
    totals, retains, flags = counts[0::3], counts[1::3], counts[2::3]
    parents, depth, app_depth, app = view.parents, view.depth, view.app_depth, view.app
    # each path (a node with counts) as it ranks: (-retained, -total, how near the app's
    # code its allocation is (the chain's length when it has no app frame), node)
    keyed: list[tuple[int, int, int, int]] = []
    own_retained = own_total = retained_sum = 0
    ours = view.ours
    for index in itertools.compress(range(count), map(operator.or_, totals, retains)):
        total, retained = totals[index], retains[index]
        if ours[index]:
            # allocated for memtracker_web itself (its bookkeeping, directly or through
            # the stdlib, e.g. json encoding a history point): never reported as the app's
            own_retained += retained
            own_total += total
            continue
        # (how near the app: the root's allocations have no frames, the farthest of all)
        near_app = app_depth[index] if app_depth[index] >= 0 else depth[index] if index else count
        keyed.append((-retained, -total, near_app, index))
        retained_sum += retained
    keyed.sort()
    frames: dict[int, Frame] = {}

    def chain_of(index: int) -> tuple[list[Frame], list[int]]:
        chain: list[Frame] = []
        indexes: list[int] = []
        while index > 0:
            frame = frames.get(index)
            if frame is None:
                frame = frames[index] = Frame(
                    shorten(view.filenames[index]), view.linenos[index], view.functions[index]
                )
            chain.append(frame)
            indexes.append(index)
            index = parents[index]
        return chain, indexes

    # Most retained first; a tie goes to the path whose allocation is nearest the
    # app's own code (not the stdlib's or a library's), then by place, deterministically.
    # The places are read only for the paths that could be shown: those within `limit`
    # by the counts and the app's distance, and every path tied with the last of them
    # (or, sampled, within the sampling's noise of it: see _nearest_the_app_within_noise).
    if limit is None:
        picked = keyed
    else:
        picked = keyed[:limit]
        if picked:
            last = picked[-1][:3]
            # (the smallest count shown is the widest noise: the margin grows slower
            # than the count; ranked, every path after the first one neither tied nor
            # within it is neither)
            least = -last[0]
            for key in keyed[limit:]:
                if not (key[:3] == last or (scale > 1 and _within_noise(least, -key[0]))):
                    break
                picked.append(key)
    # (retained, total, node, how near the app)
    candidates = [(-key[0], -key[1], key[3], key[2]) for key in picked]
    near = lambda p: (-p[0], -p[1], p[3])  # noqa: E731
    chains = {p[2]: chain_of(p[2]) for p in candidates}
    order = lambda p: (*near(p), [f.filename for f in chains[p[2]][0]], [f.lineno for f in chains[p[2]][0]])  # noqa: E731
    ranked = sorted(candidates, key=order)
    if scale > 1:
        ranked = _nearest_the_app_within_noise(ranked, TIED_PICKS if limit is None else min(limit, TIED_PICKS))
    shown = ranked[:limit]
    top_paths = []
    for retained, total, index, _ in shown:
        chain, indexes = chains[index]
        truncated = flags[index]
        entry = {
            "count": retained * scale,
            "total_count": total * scale,
            # no frames: the tree was full at its first level when these were allocated
            "path": [frame_text(f) for f in chain] or ["<call tree full>"],
            "frames": [{"filename": f.filename, "lineno": f.lineno, "function": f.function} for f in chain],
            # which of them are the app's own code (not the stdlib's, a library's or ours)
            "app_frames": [i for i, node in enumerate(indexes) if app[node]],
            # index in frames of the innermost frame of the app's own code (not the stdlib's,
            # a library's or ours), None when the path has none
            "app_frame": app_depth[index] if app_depth[index] >= 0 else None,
        }
        if truncated:
            entry["truncated"] = True  # deeper frames were pruned or did not fit the node cap
        top_paths.append(entry)
    hot: dict[Frame, list[int]] = {}
    if hotspot_limit > 0:
        for negative_retained, negative_total, _, index in keyed:
            retained, total = -negative_retained, -negative_total
            chain = chains[index][0] if index in chains else chain_of(index)[0]
            for frame in set(chain):
                tally = hot.setdefault(frame, [0, 0, 0])
                tally[0] += total
                tally[1] += retained
            if chain:
                hot[chain[0]][2] += retained  # allocated right here, not in a callee
    hotspots = sorted(hot.items(), key=lambda kv: (-kv[1][1], -kv[1][2], -kv[1][0], kv[0]))[:hotspot_limit]
    return {
        "live_count": live_count,
        "total_allocations": new_count,
        "retained_allocations": retained_sum * scale,
        "estimated": scale > 1,
        "sample_every": scale,
        "depth": meta["depth"],
        "paths": len(keyed),
        "top_paths": top_paths,
        # memtracker_web's own allocations of the type, left out of the paths above
        "own_allocations": {"count": own_retained * scale, "total_count": own_total * scale},
        "hotspots": [
            {
                "filename": f.filename,
                "lineno": f.lineno,
                "function": f.function,
                "total_count": c[0] * scale,
                "count": c[1] * scale,
                "self_count": c[2] * scale,
            }
            for f, c in hotspots
        ],
        "call_tree": {
            "nodes": count - 1,
            "max_nodes": meta["max_nodes"],
            "pruned_nodes": meta["pruned_nodes"],
            "pruned_allocations": meta["pruned_allocations"] * scale,
            "overflow_allocations": meta["overflow"] * scale,
            "unattributed_allocations": meta["unattributed"] * scale,
        },
    }


_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package: memtracker_web/
_LIBRARY_DIRS = tuple(
    sorted(
        {
            os.path.abspath(p) + os.sep
            for name in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(name))
        }
    )
)


# The demo's leaking app ships inside the package, but it plays the user's app.
_APP_FILES_IN_PACKAGE = (os.path.join(_OWN_DIR, "cli", "demo_app.py"),)


@lru_cache(maxsize=4096)
def is_own_file(filename: str) -> bool:
    """A file of memtracker_web itself (its bookkeeping), not the demo's app."""
    return filename.startswith(_OWN_DIR) and filename not in _APP_FILES_IN_PACKAGE


@lru_cache(maxsize=4096)
def is_app_file(filename: str) -> bool:
    """The app's own code: not the standard library, not an installed package, not ours."""
    if not filename or filename.startswith("<") or is_own_file(filename):
        return False
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(_LIBRARY_DIRS)


@lru_cache(maxsize=4096)
def _display_path(filename: str, cwd: str, roots: tuple[str, ...]) -> str:
    if not filename or filename.startswith("<"):
        return filename
    best = filename
    candidates = [cwd, *roots]
    for root in candidates:
        if not root:
            continue
        prefix = root.rstrip(os.sep) + os.sep
        if filename.startswith(prefix):
            rel = filename[len(prefix) :]
            if len(rel) < len(best):
                best = rel
    return best


def frame_text(frame: Frame) -> str:
    """A frame as a path's ``"path"`` list writes it (its file name as given)."""
    return f"{frame.filename}:{frame.lineno} in {frame.function}"


def path_shortener():
    """display_path() with the working directory and sys.path read once (per stats call)."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    roots = tuple(p for p in sys.path if isinstance(p, str) and p)
    return lambda filename: _display_path(filename, cwd, roots)


def display_path(filename: str) -> str:
    """``filename`` relative to the working directory or the sys.path entry it
    came from, whichever is shorter."""
    return path_shortener()(filename)


# -- the process-wide default tracker (mt.track_with_analysis(...), mt.stats(...)) --

_default: Tracker | None = None
_default_lock = threading.Lock()


def default_tracker() -> Tracker:
    """The process-wide Tracker behind the module-level functions."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Tracker()
        return _default


def track(cls: type, callback: Callback | None = None) -> None:
    default_tracker().track(cls, callback=callback)


def track_with_analysis(cls: type, depth: int = 10, sample_every: int = 1) -> None:
    default_tracker().track_with_analysis(cls, depth=depth, sample_every=sample_every)


def stats(cls: type, **options: Any) -> dict[str, Any] | None:
    return default_tracker().stats(cls, **options)


def count(cls: type) -> int:
    return default_tracker().count(cls)


def untrack(cls: type) -> bool:
    return default_tracker().untrack(cls)
