"""MemoryMonitor: sample live counts, detect repeated growth, escalate to call paths.

The monitor reads the O(1) counts of the tracking core, so a sample costs
microseconds per type whatever the heap size. Where the exact engine cannot run, it samples a census of
``gc.get_objects()`` instead (``mode == "census"``), with the same snapshot.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import statistics
import sys
import threading
import time
import traceback
import types
import weakref
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import options
from ..core import engine
from ..core.census import BLIND_SPOTS, take_census
from ..core.naming import is_python_class, resolve_type, type_flags, type_module, type_name
from ..core.tracker import Tracker, frame_text, path_shortener
from .history import History, PointRing
from .retention import (
    KEY_EDGE,
    RetentionBusy,
    app_threads_held_off,
    entry_parts,
    find_retainers,
    find_retainers_of_groups,
    global_container_entries,
    global_container_size,
    global_full_ring,
    global_place_sizes,
    held_by_codes,
    lru_keys,
    newest_global_objects,
    only_in_own_tables,
    own_table_refs,
    restore_a_switch_interval_left_raised,
    search_running,
)

# Live objects a retention search starts from, and its time budget.
RETAINER_SAMPLE = 20
# A module global's plain container that holds most of a search's objects, and of its
# objects of the type that the type's table follows at least OVERWRITTEN_LEAST, of which
# OVERWRITTEN_NEW or more are in the table (made since it began), holds only the
# newest: what the app overwrites, or a leak that began since (OVERWRITTEN_HELD of them
# are held until the next search tells which: see _judge_only_new). At most OVERWRITTEN_MOST such
# globals are remembered a type, each until it grows to OVERWRITTEN_FORGET times its
# size then, and looked into up to OVERWRITTEN_SIZE_MOST; a search of such a type
# takes OVERWRITTEN_PICKS times as many objects, to leave theirs out
OVERWRITTEN_LEAST = 8
OVERWRITTEN_NEW = 0.9
OVERWRITTEN_HELD = 8
OVERWRITTEN_WAIT = 5
OVERWRITTEN_MOST = 4
OVERWRITTEN_FORGET = 2
OVERWRITTEN_SIZE_MOST = 100_000
OVERWRITTEN_PICKS = 8
# A search whose objects were mostly garbage in reference cycles (waiting for a pass
# over the older generations), with a few kept by a lasting root beside them, is made
# again with GARBAGE_PICKS times as many (see _judge)
GARBAGE_PICKS = 8
# ... and a place keeping some of those not garbage must grow by this many between
# two such searches, and be grown so still this many samples after it was first read
# (see _garbage_beside)
GARBAGE_PLACE_GROWTH = 8
GARBAGE_PLACE_SAMPLES = 10
# ... shrinking this many times at most meanwhile, each time to GARBAGE_PLACE_GROWTH
# above its first read still (a leak's sweeps: see _PlaceRead)
GARBAGE_PLACE_FALLS = 2
_MOST_PICKED = 10_000  # (what Capture.sample takes at most)
# Objects of a leaking container looked into for how many objects of a type out of
# the search's sight each holds (_holds_its_growth). Their mean is weighed against
# half of that type's growth, and a mix of sizes makes it noisy: of frozensets 1 in
# 10 holding 30 new ints and the rest 1 (a mean of 3.9), 64 of 180 looked at came
# out below half the mean in 1.7% of draws (2 of the 18 large ones or fewer), 128 in
# 0.001%; from a large population, 64 in 3.9% and 256 in 0.003%. Looking into one
# is a call of gc.get_referents, with the app's threads held off.
CONTAINERS_LOOKED_AT = 256
# Values of each count whose changes' median is its growth a sample there (5 changes)
_GROWTH_VALUES = 6
OWN_BOOKKEEPING = "its new objects looked at are memtracker_web's own bookkeeping"


def own_bookkeeping(ours: int, looked_at: int) -> str:
    """The reason a growth is set aside as the monitor's own, with its numbers: of a
    hot built-in only one object in 64 is looked at, and a few of ours among them
    may hide the app's that were not (an app's dicts keeping a new int each)."""
    return f"{OWN_BOOKKEEPING} ({ours} of {looked_at})"


RETAINER_BUDGET = 2.0
# Before a type watch-all found is analysed or reported: samples its new objects
# are counted first, and the time budget of one sample's search (one search for all
# the types waiting; it holds the GIL; an object whose root was not reached within it
# counts as the app's).
VERIFY_AFTER = 1
VERIFY_BUDGET = 0.2
# Levels a verification searches on without another object reaching a root, once
# the chains found set the growth aside (half of the objects not the app's): a few
# objects held from far off would cost a pass over the heap a level up to the
# search's depth, and could not undo that verdict.
VERIFY_PATIENCE = 3
# A type whose new objects a search found held through another growing type (the
# root) stays set aside while the root is a verified leak that still grows; it is
# searched again after this many calm_samples, so that a leak of its own beside the
# root's shows within a bound (each search of a chain that grows climbs it further).
EXPLAINED_RECHECK_PERIODS = 4
# A type set aside because a bounded cache filling holds most of its new objects
# looked at, while at least BESIDE_CACHE_OBJECTS of them sit in a module global's
# list, dict, set or deque: that global is read again at each of this many samples,
# and when it never shrank and grew by a built-in's least step a sample (by one a
# sample for a class) and by at least a quarter of its share of the type's growth,
# the type is a leak kept there (see _check_beside_caches).
BESIDE_CACHE_SAMPLES = 3
BESIDE_CACHE_OBJECTS = 3
# Samples of analysis a report waits, at least, while all its paths that keep some
# go through a function whose results a bounded cache filling keeps; longer while
# fewer than CACHE_PATHS_SAMPLED of the rest's new objects can have had their paths
# sampled, up to calm_samples (see _report_stats)
CACHE_PATHS_WAIT = 5
CACHE_PATHS_SAMPLED = 5
# A built-in analysed records about this many call paths a second at most (one
# allocation in up to MAX_PATH_SAMPLING): paths of every dict would cost the app more
# than the whole hunt.
PATHS_PER_SECOND = 256
MAX_PATH_SAMPLING = 64
UNKNOWN_RATE_PATH_SAMPLING = 16
# A built-in watch-all nominated is tabled to verify it one object in up to
# MAX_PATH_SAMPLING, picked by address, as long as about this many of the objects its
# growth adds each sample are still tabled: tabling every dict costs the app more than
# its paths do, and a sample of the survivors is what verification searches from.
# Analysed, it is tabled one object in as many as its paths are sampled (each object
# followed gets its path): the paths' evidence is the same, at a table entry for
# every path instead of several.
SURVIVORS_PER_SAMPLE = 8


class RetentionUnavailable(LookupError):
    """A type's live objects cannot be sampled for a retention search (and why)."""


logger = logging.getLogger("memtracker_web")

LeakCallback = Callable[[dict], Any]
SampleHook = Callable[["MemoryMonitor"], Any]


@dataclass
class _Searched:
    """What a verification search decided, for _verify_pending to act on once the app's
    threads run again."""

    found: list[tuple[tuple[_TypeState, type], dict[str, Any]]] = field(default_factory=list)
    set_aside: list[tuple[_TypeState, type, str]] = field(default_factory=list)
    # searched again after two more rises, its table kept: why (see _ONLY_OVERWRITTEN)
    deferred: list[tuple[_TypeState, str]] = field(default_factory=list)
    failure: Exception | None = None


_UNKNOWN = -1  # allocations not counted (census mode), or not yet


def _of_type(entry: tuple[Any, Any], cls: type) -> Any:
    """Of a container's entry (key, value: see global_container_entries), the part of
    exactly ``cls``: the value when it is one, else the key."""
    return entry[1] if type(entry[1]) is cls else entry[0]


class _Count:
    """One of a _TypeState's counts, an item of its ``counts`` array."""

    def __init__(self, index: int, doc: str) -> None:
        self.index = index
        self.__doc__ = doc

    def __get__(self, state: _TypeState, owner: type | None = None) -> int:
        return state.counts[self.index]

    def __set__(self, state: _TypeState, value: int) -> None:
        state.counts[self.index] = value


class _OptionalCount(_Count):
    """A count that may be unknown (None), kept as _UNKNOWN: it is never negative."""

    def __get__(self, state: _TypeState, owner: type | None = None) -> int | None:  # type: ignore[override]
        value = state.counts[self.index]
        return None if value == _UNKNOWN else value

    def __set__(self, state: _TypeState, value: int | None) -> None:
        state.counts[self.index] = _UNKNOWN if value is None else value


class _TypeState:
    """What the monitor knows of one monitored type."""

    _memtracker_bookkeeping = True  # (retention.BOOKKEEPING: a chain through it is our own)

    __slots__ = (
        "ref",
        "name",
        "threshold",
        "high_water",
        "increases",
        "evidence_from",
        "recheck_from",
        "aside_explains",
        "aside_awaits_rises",
        "aside_doubts_growth",
        "analysing",
        "forced",
        "history",
        "first_live",
        "counts",
        "source",
        "last_growth_sample",
        "grew",
        "reported",
        "builtin",
        "drifts",
        "counted_from_zero",
        "nominated_at",
        "analysis_since",
        "rises",
        "by_watch",
        "by_noise",
        "verify_since",
        "verified",
        "verdict",
        "dismissed_until",
        "explained_by",
        "explained_at",
        "root_of",
        "bytes_measured",
        "retainers_text",
        "report_retainers",
        "bytes_per_object",
        "bytes_at",
        "object_sample",
        "watch_growth",
        "theirs_tracked",
        "theirs_analysed",
        "watched_lives",
        "beside_cache",
        "kept_in_global",
        "leak_place",
        "overwritten",
        "held_new",
        "filled_caches",
        "key_fillings",
        "path_sample",
        "same_leak_as",
        "look_wider",
        "garbage_marks",
        "garbage_watch",
    )

    def __init__(self, cls: type, threshold: int, history: int, source: str, forced: bool) -> None:
        self.ref = weakref.ref(cls)
        self.name = type_name(cls)
        self.threshold = threshold
        self.high_water: int | None = None
        self.increases = 0
        self.evidence_from = 0  # its increases when a set-aside ended: those were explained
        self.recheck_from = 0  # its increases when a set-aside that awaits rises ended: searched again after 2 more
        self.aside_explains = True  # whether the set-aside in force explains the growth before it
        self.aside_awaits_rises = True  # whether its end waits for 2 new rises before a search
        # whether the set-aside in force doubts its growth itself: it explains nothing meanwhile
        self.aside_doubts_growth = False
        self.analysing = False
        self.forced = forced  # analysis asked for by the user: never demoted
        self.history = PointRing(history)
        self.first_live: int | None = None
        self.counts = array("q", (0, _UNKNOWN, _UNKNOWN, 0, _UNKNOWN))  # see live
        self.source = source
        self.last_growth_sample = 0
        self.grew = False
        self.reported = False  # a leak report was made since analysis began
        self.builtin = is_builtin_type(cls)
        self.drifts = drifts(cls)  # (see least_builtin_step)
        self.counted_from_zero = False  # exact counts of objects created since monitoring began
        self.nominated_at = 0  # the sample at which watch-all nominated it
        self.analysis_since = 0  # the sample at which its analysis began
        self.rises: deque = deque(maxlen=_NOISE_WINDOW)  # the samples of its last increases
        # counts are watch-all's (exact, or estimates when it samples), not the tracker's (see _discover)
        self.by_watch = False
        self.by_noise = False  # rises measured against its own noise, not the threshold (see margin)
        self.verify_since: int | None = None  # the sample from which the tracker has its objects' table
        self.verified = False  # a retention search found what keeps its new objects: a leak
        self.verdict: str | None = None  # what the last retention search concluded, in words
        self.dismissed_until = 0  # not escalated before this sample (a bounded cache filling, ...)
        # while set aside for a bounded cache: the module global that holds some of its
        # new objects, and its sizes since (see _check_beside_caches)
        self.beside_cache: dict[str, Any] | None = None
        # verified by that watch: (module, name, its size at its last report) (see _report_stats)
        self.kept_in_global: tuple[str, str, int] | None = None
        # verified: (module, name) of the module global whose plain container its
        # verdict names as holding its new objects (see _leak_paths_first)
        self.leak_place: tuple[str, str, bool] | None = None
        # its next search takes GARBAGE_PICKS times as many objects (see _judge)
        self.look_wider = False
        # the places such a search found keeping some, whose growth the next one reads:
        # (module, global, one level down) -> how it was read, or None once it shrank
        # too often (see _garbage_beside, _read_garbage_places)
        self.garbage_marks: dict[tuple[str, str, bool], _PlaceRead | None] | None = None
        # verified so: the place and how it is read, until GARBAGE_PLACE_SAMPLES passed
        # since its first read (see _watch_garbage_place)
        self.garbage_watch: tuple[tuple[str, str, bool], _PlaceRead] | None = None
        # (module, name, size) of the globals found holding only the newest of its
        # objects, which a search takes none of its objects from until they grow to
        # OVERWRITTEN_FORGET times that size (see _overwritten_marks)
        self.overwritten: tuple[tuple[str, str, int], ...] = ()
        # a module global found holding only objects made since its table began, the
        # newest of its entries (key, value), held to its next searches, the sample they
        # were taken at, its size then and now, and whether it shrank at a sample since
        # (see _judge_only_new, _read_held_sizes)
        self.held_new: tuple[str, str, list[tuple[Any, Any]], int, int, int, bool] | None = None
        # the lru_caches its last search saw holding its new objects (weak references):
        # what their keys' paths are, reports see (see _key_fillings), read once a sample
        self.filled_caches: tuple[weakref.ref[Any], ...] = ()
        self.key_fillings: tuple[int, list[dict[str, Any]]] | None = None
        self.path_sample = 1  # its analysis follows the path of one allocation in this many
        # a built-in whose reports are another's, made by the same statement (see _one_report_a_leak)
        self.same_leak_as: str | None = None
        self.explained_by: str | None = None  # the growing type that holds its new objects
        self.explained_at = 0  # the sample of the search that found it so
        self.root_of: set[str] = set()  # growing types whose new objects this one holds
        self.bytes_measured = 0  # how many live objects that estimate measured
        self.retainers_text: str | None = None  # see retainers
        self.report_retainers: dict[str, Any] | None = None  # see retainers_for_report
        self.bytes_per_object: float | None = None  # from the last measurement
        self.bytes_at = (0, 0)  # (sample number, live count) of that measurement
        self.object_sample = 1  # the tracker tables one of its objects in this many (see SURVIVORS_PER_SAMPLE)
        self.watch_growth = 0.0  # its growth a sample over watch-all's last samples when it was nominated
        # the tracker counted it (analysed it) before the monitor did: someone else's
        # (a tracker shared with the monitor), left as they set it
        self.theirs_tracked = False
        self.theirs_analysed = False
        # watch-all's values before the sample that nominated it, when its counts go on
        # being watch-all's (an array: ints would be new objects of ours alive)
        self.watched_lives = array("q")

    def forget_garbage_places(self) -> None:
        """Its wider search, marked places and watch beside garbage (see
        MemoryMonitor._garbage_beside) dropped: judged, or to be judged afresh."""
        self.look_wider, self.garbage_marks, self.garbage_watch = False, None, None

    def last_lives(self) -> list[int]:
        """Its last _NOISE_WINDOW values, oldest first: its own history, after watch-all's
        values before its nomination (on the same scale) until its history is full
        (with ``history`` below _NOISE_WINDOW, they would stay in the window for ever)."""
        lives = self.history.last_lives(_NOISE_WINDOW)
        if len(lives) < _NOISE_WINDOW and len(lives) < self.history.size and self.watched_lives:
            lives = self.watched_lives[len(lives) - _NOISE_WINDOW :].tolist() + lives
        return lives

    # Its counts at the last sample, in ``counts`` (changed in place): as attributes of
    # their own, each sample would replace them with new ints (beyond 256) that the
    # monitor keeps alive, up to five a monitored type, and a verification of the
    # app's growing ints samples new ones alive (see _take_out_own_growth).
    live = _Count(0, "Its live objects (watch-all's estimate for a built-in it samples).")
    allocations = _OptionalCount(1, "Of them, the creations counted (None: not counted).")
    frees = _OptionalCount(2, "The deaths counted (None: not counted).")
    new_per_sample = _Count(3, "Objects made between its last two samples (watch-all's count, or the tracker's).")
    live_bytes = _OptionalCount(4, "An estimate: the mean shallow size of a sample of them times ``live``.")

    @property
    def retainers(self) -> dict[str, Any] | None:
        """The last retention search's result (a verification's, or one asked for), a
        new dict at each read; None before any. Kept as its JSON text: one str where
        the result is dozens of dicts, lists, strs, ints and floats. The monitor
        verifies every type watch-all nominates, and their results, kept as they
        came, would grow the app's floats, ints and strs by as many a type, which
        watch-all (counting every object) would see rise, and verify in turn."""
        return None if self.retainers_text is None else json.loads(self.retainers_text)

    @retainers.setter
    def retainers(self, found: dict[str, Any] | None) -> None:
        self.retainers_text = None if found is None else json.dumps(found, separators=(",", ":"))
        self.report_retainers = None

    def retainers_for_report(self) -> dict[str, Any] | None:
        """``retainers`` as the type's leak reports carry it: read once a result and
        shared by the reports that follow. A leaking type is reported at every growth
        (each sample), and a new copy in each would be as many new objects a sample."""
        if self.report_retainers is None and self.retainers_text is not None:
            # (the setter forgets the copy of a result it replaces)
            self.report_retainers = json.loads(self.retainers_text)
        return self.report_retainers

    def rank(self) -> int:
        """Who gets an analysis slot first: types the user named (0), classes defined
        in Python code and types that hold other growing types' new objects (1),
        then built-ins (2), which a leaked object drags along."""
        if self.source != "watch_all":
            return 0
        return 2 if self.builtin and not self.root_of else 1

    def growth(self) -> int:
        return self.live - (self.first_live or 0)

    def counted_by_noise(self) -> bool:
        """A type watch-all found and counts exactly: its rises are measured
        against its own recent changes (see rise_step), not the fixed threshold."""
        return self.source == "watch_all" and self.by_noise

    def margin(self, threshold: int, increases: int) -> float:
        if self.counted_by_noise():
            step = rise_step(self.history.last_lives(_NOISE_WINDOW))
            return max(step, least_builtin_step(threshold, increases)) if self.drifts else step
        if self.by_watch:
            # an estimate moves by sampling noise alone: a rise stands out of it by three deviations
            return threshold + 3 * (change_deviation(self.history.last_lives(_NOISE_WINDOW)) or 0)
        return threshold

    def recent_growth(self, points: int) -> float:
        """Its growth a sample over its last 4 history points (``growth_per_sample``)
        once it has ``points`` of them; before, watch-all's when it was nominated."""
        lives = self.history.last_lives(4)
        return growth_per_sample(lives) if len(lives) >= points else self.watch_growth

    def rate(self) -> float:
        """Growth per sample over the kept history."""
        if len(self.history) < 2:
            return 0.0
        lives = self.history.lives
        return (lives[-1] - lives[0]) / (len(lives) - 1)


_NOISE_WINDOW = 11  # samples of history a rise is measured against


# Objects of the app's a search must find, at least, for garbage not to outvote them
# (see _kept_past_garbage)
KEPT_PAST_GARBAGE = 3


_GARBAGE = "its new objects are garbage in reference cycles the collector will free"


@dataclass
class _PlaceRead:
    """A place kept beside garbage, read at each sample (see
    MemoryMonitor._garbage_beside): its sizes (see global_place_sizes) when first
    read, at that sample, and at the last one; how many times it shrank since."""

    first: tuple[int, int]
    since: int
    last: tuple[int, int]
    falls: int = 0

    def grown(self, now: tuple[int, int]) -> bool:
        """Whether it grew by GARBAGE_PLACE_GROWTH since it was first read: in entries
        (new keys), or in what it holds one level down."""
        return max(now[0] - self.first[0], now[1] - self.first[1]) >= GARBAGE_PLACE_GROWTH

    def read(self, now: tuple[int, int]) -> bool:
        """Take in the sizes read now: False once it shrank to less than
        GARBAGE_PLACE_GROWTH above its first read, or more than GARBAGE_PLACE_FALLS
        times. A registry cleared every few samples, or the jobs in flight, fall back
        to where they were, or below. A leak swept now and then passes only where each
        sweep comes after it grew by more than that since its first read: swept right
        after it, it is set aside at that search (and a later search may find it, late;
        one swept every 3 samples shrinks more than twice in any 10, and is never
        found this way). (Its entries the same, what they hold shrank; past
        NESTED_SIZE_ENTRIES entries, new keys slide what is read of them: its entries
        more, it did not shrink.)"""
        if now[0] < self.last[0] or (now[0] == self.last[0] and now[1] < self.last[1]):
            self.falls += 1
            if not self.grown(now):
                return False
        self.last = now
        return self.falls <= GARBAGE_PLACE_FALLS


def _read_place(place: tuple[str, str, bool]) -> tuple[int, int] | None:
    """global_place_sizes of ``place`` (module, global, one level down); None when it
    cannot be read (then it is no place)."""
    try:
        return global_place_sizes(place[0], place[1], nested=place[2])
    except Exception:  # noqa: BLE001 -- (unread: no place)
        return None


def _not_leaks(found: dict[str, Any]) -> list[tuple[int, str]]:
    """Of a retention search's objects (see MemoryMonitor._judge), those whose growth
    ends by itself or is not the app's, how many for each reason, and the reason."""
    return [
        # (counting every object, watch-all sees the monitor's own tables grow as it
        # nominates types: they are bounded, and never a leak of the app's)
        (found["roots"]["own"], own_bookkeeping(found["roots"]["own"], found["objects"])),
        (
            # (an object the monitor's own tables hold is counted there, not here)
            sum(b["count"] for b in found["bounded"]),
            _bounded_reason(found["bounded"][0]) if found["bounded"] else "",
        ),
        (
            found["roots"]["library frame"],
            "its new objects are held by functions of the standard library or installed packages that "
            "are running or waiting (work in progress, such as timers and requests being served)",
        ),
        (found["unreachable"], _GARBAGE),
    ]


def _climbs(lives: list[int]) -> bool:
    """Whether a count (its last values, oldest first, up to _NOISE_WINDOW) still
    climbs: the lowest of the newer half above the lowest of the older half, so that
    a class leaking a few objects a sample among many more that come and go climbs
    through its swings, where a cache that filled stays level. Fewer than 4 values (a
    class just nominated, its history begun then) tell nothing yet: it climbs."""
    if len(lives) < 4:
        return True
    half = len(lives) // 2
    return min(lives[half:]) > min(lives[:half])


# Values of a count the judge of objects out of a search's sight needs, at least (see
# _no_climb: with fewer, no order of them passes its trend test)
LEAST_TO_JUDGE = 6
# How far a count's values must rise in order past values in random order, in standard
# deviations of Mann-Kendall's statistic (one-sided, 1 time in 100 by chance)
TREND_DEVIATIONS = 2.33


def trend_deviations(lives: list[int]) -> float:
    """Mann-Kendall's trend test of a count's values, oldest first: by how many
    standard deviations its pairs in rising order outnumber those in falling order,
    against the same values in random order (continuity-corrected; ties are not
    corrected for, which errs towards no trend)."""
    n = len(lives)
    if n < 2:
        return 0.0
    s = sum((b > a) - (b < a) for i, a in enumerate(lives) for b in lives[i + 1 :])
    return (s - 1 if s > 0 else s + 1 if s < 0 else 0) / math.sqrt(n * (n - 1) * (2 * n + 5) / 18)


def _no_climb(lives: list[int], capacity: int = _NOISE_WINDOW) -> tuple[str, int, bool] | None:
    """Why a count whose new objects no search reaches is not seen to climb, for how
    many samples to set it aside, and whether a search after that waits for two new
    rises (not when it only waits for enough values); None when it climbs. Its count is its one
    evidence left (see MemoryMonitor._judge), so judged strictly: the lowest of the
    newer half of its window above the lowest of the older half (a leak climbs
    through its swings, where a cache that filled stays level, its peaks rising or
    not), and its values rising in order past chance (Mann-Kendall's test). A pool
    swinging at random around a level passes the first test about one time in two
    (its lowest value is in either half alike), and would be verified at one of the
    searches its higher peaks bring; both, less than one time in 100 for swings
    independent of each other (normal, uniform, bursts; 6 to 11 values), more where
    they are not: 2-9 in 100 for swings that carry on from one sample to the next
    (autoregressive, 0.3-0.7), up to 4 when the last value is the window's highest,
    as it is at a search a new peak brought. A leak adding half a standard deviation
    of its swings a sample passes 93-95 times in 100 over a full window of
    _NOISE_WINDOW, a third of one 60 times: a slow leak among large swings waits for
    a clearer window. Set aside until the window has LEAST_TO_JUDGE values, or until its
    newer half is all samples after this one: a leak that had just begun climbs
    through them. ``capacity``: the most values its window can hold (a ``history``
    under LEAST_TO_JUDGE samples); below LEAST_TO_JUDGE, the first test alone judges
    a full window, as no order of fewer values passes the second."""
    least = min(LEAST_TO_JUDGE, max(capacity, 2))
    if len(lives) < least:
        return (
            f"its count has {len(lives)} samples, too few to tell whether it climbs (at least {least})",
            least - len(lives),
            False,
        )
    older = len(lives) // 2
    newer = len(lives) - older
    if min(lives[older:]) <= min(lives[:older]):
        return (
            f"its count does not climb: the lowest of its last {newer} samples is no higher than the lowest of "
            f"the {older} before",
            newer,
            True,
        )
    deviations = trend_deviations(lives)
    if len(lives) >= LEAST_TO_JUDGE and deviations <= TREND_DEVIATIONS:
        return (
            f"its count does not climb past its swings: its last {len(lives)} samples rise in order by "
            f"{deviations:.2f} standard deviations in Mann-Kendall's test, short of the {TREND_DEVIATIONS} that "
            "values in random order pass 1 time in 100",
            newer,
            True,
        )
    return None


def _not_leak_count(found: dict[str, Any]) -> int:
    return sum(n for n, _ in _not_leaks(found))


def _kept_past_garbage(found: dict[str, Any], others: int) -> bool:
    """Whether a type's new objects that are garbage in reference cycles are all that
    would set it aside (``others``: how many the other reasons count), while at least
    KEPT_PAST_GARBAGE of the rest, and most of them, are kept by a root that lasts:
    a chain from a module global or a class (``found["kept"]``, the search's
    result), not from a running or suspended function's frame (a request in flight
    holds its objects for a moment: as many a sample, however much garbage piles up
    beside them). Garbage says nothing of
    what the rest does: it dies at the collector's next pass, whatever keeps the
    others. A type the app leaks and also churns in cycles (an exception kept in a
    global, while every other request's exceptions wait for the collector, longer
    under 3.14's incremental one) has more than half its new objects garbage at some
    searches, and was set aside for ``calm_samples`` there."""
    garbage, kept = found["unreachable"], found["kept"]
    return others * 2 < found["objects"] and kept >= KEPT_PAST_GARBAGE and kept * 2 > found["objects"] - garbage


def _bounded_reason(cache: dict[str, Any]) -> str:
    """Why objects a bounded cache holds are no leak: it fills up to its bound, or,
    full, takes in each new one in place of an old one."""
    if cache["room"] > 0:
        return "it fills a cache with a size bound: " + cache["holder"]
    return "its new objects take old ones' places in a full cache with a size bound: " + cache["holder"]


_FREE_THREADED = engine.free_threaded()


def _foldable(state: _TypeState) -> bool:
    """Whether ``state``'s report may be folded into another's (see
    MemoryMonitor._one_report_a_leak): a built-in watch-all found, verified and analysed."""
    return state.builtin and state.source == "watch_all" and state.verified and state.analysing and not state.forced


def _whole_top_path(report: dict) -> dict | None:
    """The report's top path when it is whole: not cut short, with a frame of the app's."""
    top = report["top_paths"][0] if report["top_paths"] else None
    if top is None or top.get("truncated") or top.get("app_frame") is None:
        return None
    return top


def _verdict_chain(state: _TypeState) -> list[str] | None:
    """The steps of the chain ``state``'s verdict names, or None."""
    verdict = state.verdict or ""
    if not verdict.startswith("kept by ") or " -> " not in verdict:
        return None  # (kept by something the search did not reach: no chain)
    # (a global watched beside a cache: "kept by <chain>, which grew by ...")
    return verdict[len("kept by ") :].split(", which ")[0].split(" -> ")


def _held_through(chain: list[str], nearer: list[str]) -> bool:
    """Whether ``chain`` goes through ``nearer`` (up to its object) and on: its object is
    held by one of the type ``nearer`` ends at, where that one's objects are kept."""
    end = len(nearer) - 1
    if len(chain) <= len(nearer) or chain[:end] != nearer[:end]:
        return False
    step, kind = chain[end], nearer[end]
    return step == kind or (step.startswith(kind) and step[len(kind)] in "[.(")


# The frames that two top paths share when one statement in one call made both: the
# app's and its callers. A path is cut at the monitor's ``depth`` (10 frames), and one
# made in a library's function the statement called (``uuid.uuid4().hex``: in UUID.hex)
# has frames of its own before the app's, so its last callers are cut off.
_SAME_CALL_FRAMES = 4


def _ends_at_a_key(chain: list[str]) -> bool:
    """Whether ``chain``'s object is a key of the dict (or namespace) before it."""
    return len(chain) >= 2 and chain[-2].endswith(KEY_EDGE)


def _key_beside(chain: list[str], value: list[str]) -> bool:
    """Whether ``chain`` ends at a key of the dict whose value ``value`` ends at: the same
    steps up to that dict, each naming the one object it goes to (no position ``[i]``
    nor unnamed key ``[key]``: the keys of one dict in a list and the values of another
    would read alike). ``CACHE[f"session-{n}"] = n * 2.5``: its strs kept as the keys,
    its floats as the values."""
    if not _ends_at_a_key(chain) or len(chain) != len(value) or chain[:-2] != value[:-2]:
        return False
    if any(step.endswith(("[i]", "[key]")) for step in chain[1:-2]):
        return False
    kind, step = chain[-2][: -len(KEY_EDGE)], value[-2]
    return step.startswith(kind + "[")


def _collect_young_garbage() -> float:
    """Collect the youngest generation's garbage before a sample reads its counts; the
    seconds it took. Many apps make reference cycles every request that are garbage
    at once (werkzeug's router leaves a recursive closure, its functions and cells,
    every request), and they stay counted until the collector's next pass over the
    youngest objects, which comes every 2,000 net allocations: every few seconds
    under light load. Read between passes, such a type's count climbs and drops by
    hundreds in a saw, its rises must clear its drops (rise_step), and a leak of the
    same type a few dozen a second hides in it (a Flask app under gunicorn keeping a
    closure a request: not reported in 40 samples; collected first, at the 10th).
    Collected first, the count holds no young garbage in cycles (a cycle that lived
    through a pass before it died waits for an older generation's, as without us),
    and a leak climbs through every sample. A young pass is short at the default
    threshold (about 0.1 ms at 30 requests a second: only what was made since the
    last one; a young generation raised to 200,000 objects takes milliseconds); it
    restarts the count toward the app's own next young pass, and counts toward the
    next older one. Not when the app turned the collector off (gc.disable(), or a
    threshold of 0): it chose not to collect. Not on a free-threaded build, whose
    collector has no young generation: every pass there is of the whole heap.
    Outside the monitor's lock: the garbage's finalisers run in this thread, and
    may call the monitor."""
    if not gc.isenabled() or gc.get_threshold()[0] <= 0 or _FREE_THREADED:
        return 0.0
    started = time.perf_counter()
    gc.collect(0)
    return time.perf_counter() - started


def _let_go_of_cached_names() -> None:
    """Clear CPython's type attribute cache right before a sample reads its counts. The
    cache keeps the last attribute name looked up in each of its 4,096 entries alive
    (a hit or a miss: ``getattr(obj, f"field_{n}", None)`` caches the new name), a few
    thousand strs that are otherwise garbage. A verification search must clear it
    (see _search_for_pending), or those names look held by something unseen. Cleared
    only then, str's count dropped by the names let go of at each search (835 in the
    str-set app of bench/leak_apps.py under starlette's test client) and refilled
    over the next samples: the drop made str's rise step three times as large for the
    next ten samples, and a leak of strs was first set aside ("it did not rise since
    its objects were tabled") and then reported at the 47th sample through uvicorn.
    Cleared before every read, a read holds almost none of those names, however many
    the app looked up since the last. Clearing takes 10-40 us; the app's next lookup of
    each (type, name) misses once. Only str's count moves: a name holds nothing else.
    Not in census mode, whose census never counts str (the collector does not track it)."""
    engine.clear_type_cache()


# Call paths a leak report shows, and those its stats take beyond them when some may be
# a bounded cache's filling, so that those can give their places to others (see
# _past_cache_fillings), or when the leak's own may be behind others (_leak_paths_first)
_REPORT_PATHS = 3
_PATHS_PAST_A_CACHE = 3
# The most entries of an lru_cache whose keys' call paths a report reads (see
# MemoryMonitor._key_fillings): a larger cache's are not read (reading one of 65,536
# entries, whose wrapper refers to each entry's key and result, took 25-95 ms)
_KEYS_READ = 8192
# The newest entries of a leak's module global a report reads to know the leak's own
# call paths (_place_paths): 2,048 add 0.13 ms to a report's stats, 8,192 added 1.3 ms
_PLACE_READ = 2048


def _cached_functions(found: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The functions whose results a bounded cache keeps (retention's ``function``:
    ``file``, ``name``, ``lines``, ``bound``), of the caches a verification search
    (``found``) saw holding new objects of the type: part of what those caches fill
    with (see _fills_a_cache)."""
    return [b["function"] for b in (found or {}).get("bounded", ()) if b.get("function") is not None and b["count"] > 0]


def _past_cache_fillings(paths: list[dict], fillings: list[dict[str, Any]]) -> list[dict]:
    """A report's top paths (most retained first), those that are a bounded cache's
    filling (``fillings``: see _fills_a_cache) after the others that keep some, while
    they keep no more than the cache's bound: when the verification search saw new
    objects of the type in that cache, such a path is the cache filling, not the leak
    its verdict names. A leak of strs in a module set beside a cache of rendered strs
    filling as fast: the render line led the report with 152 retained to the leak's
    128 (leak shapes run 59), under "kept by" the set. A leak whose own line is in the
    cached function gets its place back once it keeps more than the bound. Paths that
    keep none stay last; the order within each part is kept."""
    if not fillings:
        return paths
    return sorted(paths, key=lambda path: (path["count"] <= 0, _fills_a_cache(path, fillings)))


def _leak_paths_first(paths: list[dict], made: set[tuple[str, ...]]) -> list[dict]:
    """A report's top paths (most retained first), those that made the leak's own
    objects (``made``: what the module global its verdict names holds; see
    MemoryMonitor._place_paths) before the others that keep some: a one-time load of
    1,000 dicts beside a leak of 20 a sample kept more than the leak at its report,
    and its line led under "kept by" the leak's list. Paths that keep none stay last;
    the order within each part is kept."""
    if not made:
        return paths
    return sorted(paths, key=lambda path: (path["count"] <= 0, tuple(path["path"]) not in made))


def _fills_a_cache(path: dict, fillings: list[dict[str, Any]]) -> bool:
    """Whether a call path is a bounded cache's filling and keeps no more than its
    bound: it goes through a function whose results the cache keeps (a filling with
    ``name``: see _cached_functions), or more than half of what it keeps are the cache's
    keys (one with ``path``: see MemoryMonitor._key_fillings). On 3.13 the ints of
    ``render(n % 2048)``, an ``lru_cache``'s keys made on its caller's line, led a leak
    report of ints 3 runs in 4: their path goes through no line of the cached function."""

    def in_file(raw: str, short: str) -> bool:
        # (a path's file names are shortened to a tail of the code's own)
        return raw == short or any(sep and raw.endswith(sep + short) for sep in (os.sep, os.altsep))

    for filling in fillings:
        if path["count"] > filling["bound"]:
            continue
        if "path" in filling:
            if filling["path"] == path["path"] and filling["count"] * 2 > path["count"]:
                return True
        elif any(
            frame["function"] == filling["name"]
            and filling["lines"][0] <= frame["lineno"] <= filling["lines"][1]
            and in_file(filling["file"], frame["filename"])
            for frame in path["frames"]
        ):
            return True
    return False


def drifts(cls: type) -> bool:
    """Whether a type's count may drift up by a few objects a sample in a healthy app,
    so that a rise smaller than ``least_builtin_step`` is no increase: a built-in's,
    but not classes' (instances of ``type`` and of C metaclasses). A class made by a
    metaclass defined in Python code is counted under that metaclass, rising by its
    own noise from one object; a plain one is the same kind of object, and a leak of
    five a sample is one (each drags a dict, tuples and descriptors along)."""
    return is_builtin_type(cls) and not issubclass(cls, type)


def least_builtin_step(threshold: int, increases: int) -> float:
    """The least rise of a built-in counted exactly that is an increase: ``increases``
    of them make ``threshold`` objects. Many built-ins drift by a few objects a sample
    in a healthy app (timers' floats, the interpreter's caches, our own tables);
    a leak of built-ins adds more than that or takes several samples per increase."""
    return threshold / max(increases, 1)


def _began_a_sample_ago(state: _WatchState, margin: float, noise_step: float | None) -> bool:
    """Whether a built-in's rise began at the sample before this one, which saw only
    the part of its interval after a leak began: flat before it, a rise out of its
    noise but short of ``margin`` then, and a rise past ``margin`` by itself now (a
    drift that adds a little every sample until its sum passes is not one)."""
    if noise_step is None or not state.builtin or len(state.recent) < 4:
        return False
    before, first, then, now = state.recent[-4:]
    return first - before <= noise_step < then - first <= margin < now - then


def rise_step(values: list) -> float:
    """How far an exact count must rise over its high-water mark to count as an
    increase: three times the typical drop among its recent changes (their
    median), and at least one object. A leak never gives objects back, so its
    step stays at one and every sample that adds some rises, however unevenly
    traffic comes; a population that churns drops as often as it rises, so
    its peaks must stand out of its own swings."""
    drops = [a - b for a, b in zip(values, values[1:], strict=False) if b < a]
    return max(1.0, 3 * statistics.median(drops)) if drops else 1.0


def growth_per_sample(values: list) -> float:
    """What ``values`` grew by a sample: the median of their changes, so that one
    burst (a cache filled at once, watch-all's first interval) does not count as a
    steady growth, which would table too few of a slower leak's objects to verify it."""
    changes = [b - a for a, b in zip(values, values[1:], strict=False)]
    return float(statistics.median(changes)) if changes else 0.0


def change_deviation(values: list) -> float | None:
    """The standard deviation of the changes between ``values``, or None before two
    changes: how much a sampled estimate moves by sampling noise alone."""
    changes = [b - a for a, b in zip(values, values[1:], strict=False)]
    return statistics.stdev(changes) if len(changes) >= 2 else None


def counted_exactly_by_watch_all(cls: type) -> bool:
    """Sampled watch-all still counts every object of a class defined in
    Python code (a mutable heap type: the engine's MT_WATCH_EXACT_TYPE)."""
    return is_python_class(cls)


def is_builtin_type(cls: type) -> bool:
    """A type defined in C (str, dict, frame, deque, asyncio's Future, a C extension's
    types), not by Python code. Many stdlib C types are heap types since 3.12, but
    they are immutable, which no class statement makes."""
    return not is_python_class(cls) or type_module(cls) == "builtins"


_HAVE_GC = 1 << 14  # Py_TPFLAGS_HAVE_GC

# The containers the collector stops tracking while they hold only objects that refer
# to none (see _judge), and the verdict on such objects when one of them leaks. From
# 3.15 a frozenset of such objects is never tracked either (made so).
_OUT_OF_SIGHT_CONTAINERS = ("builtins.dict", "builtins.tuple") + (
    () if gc.is_tracked(frozenset((0,))) else ("builtins.frozenset",)
)
_HELD_THROUGH = "its new objects are held through new {name} objects, which grow too"
_NO_RISE_SINCE_TABLED = (
    "it did not rise in the {} samples since its objects were tabled: what rose was made before, and its "
    "objects made since do not pile up"
)
_ONLY_NEW = (
    "not verified yet: most of its new objects looked at are held by {where}, which holds only objects made since "
    "its table began: a variable the app overwrites, or a leak that began since; searched again after two more rises"
)
_ONLY_OVERWRITTEN = (
    "not verified yet: its new objects looked at are {share} held by {where}, which holds only objects made since "
    "its table began: a variable the app overwrites; searched again without them after two more rises"
)
_GARBAGE_LOOK_WIDER = (
    "not verified yet: {garbage} of its {objects} new objects looked at are garbage in reference cycles, {kept} "
    "kept by a module global or a class: {more} are looked at after two more rises"
)
_GARBAGE_BESIDE = (
    "not verified yet: {garbage} of its {objects} new objects looked at are garbage in reference cycles, {kept} kept "
    "by {where}: one of these must keep growing, read at each sample and at the next search, after two more rises"
)
# The types of what a code object holds (code_parts: its constants, names, tables),
# and the code type itself: the ones a call tree's codes can make grow
_CODE_PARTS = frozenset({types.CodeType, bytes, str, tuple, frozenset, int, float, complex, slice})
_HELD_BY_OUR_CODES = (
    "not verified yet: {held} of the {of} new objects looked at are code objects only memtracker_web's call trees "
    "keep, or are held by code objects they keep (code the app compiles for each request, a template rendered from "
    "a string, made objects of an analysed type there): growth of ours, or of code the app compiles; searched "
    "again after two more rises"
)
_FEW_PAST_LEFT_OUT = (
    "not verified yet: {own} of the {of} new objects looked at past those left out ({where}) are memtracker_web's own "
    "bookkeeping: too few to tell; searched again after two more rises"
)


def _left_out_places(state: _TypeState) -> list[tuple[str, str]]:
    """(module, name) of the globals whose objects a search of ``state`` leaves out:
    those the app overwrites, then the one whose newest entries are held to tell."""
    places = [(module, name) for module, name, _ in state.overwritten]
    if state.held_new is not None:
        places.append((state.held_new[0], state.held_new[1]))
    return places


def _kept_places(state: _TypeState, found: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    """(module, global, one level down, the chain's text) of the module globals and
    class attributes keeping some of a search's objects, in their own plain containers
    (``kept_in``, most first) then one level down (``kept_under``, most first), of those the app is not known to
    overwrite, nor held to tell (see _left_out_places): where a leak beside garbage
    grows (see MemoryMonitor._garbage_beside). One level down, the chain most of the
    objects looked at have."""
    known = set(_left_out_places(state))
    counts = {chain["chain"]: chain["count"] for chain in found.get("chains") or ()}
    places = [(p["module"], p["name"], False, p["chain"]) for p in found.get("kept_in") or ()]
    places += [
        (p["module"], p["name"], True, max(p["chains"], key=lambda text: counts.get(text, 0)))
        for p in found.get("kept_under") or ()
    ]
    return [place for place in places if place[:2] not in known]


def _left_out(state: _TypeState) -> str:
    """The module globals whose objects a search of ``state`` leaves out, and why."""
    places = [f"{module}.{name}, which the app overwrites" for module, name, _ in state.overwritten]
    if state.held_new is not None:
        module, name = state.held_new[:2]
        places.append(f"the newest of {module}.{name}, held to tell whether the app overwrites it")
    return "; ".join(places)


_ONE_OBJECT_KEPT = (
    "not verified yet: one of its new objects looked at is kept where the search sees, by {chain}: too few to "
    "tell a leak from a variable the app overwrites; searched again after two more rises"
)
_FEW_LOOKED_AT = (
    "not verified yet: {cached} of the {objects} new objects looked at are in {cache}, too few looked at to set "
    "its growth aside for the cache's filling (one object in {sample} is tabled); searched again after two more rises"
)
_UNSEEN_IN_LEAK = (
    "most of its new objects are out of the search's sight, as in a "
    + ", ".join(name.removeprefix("builtins.") for name in _OUT_OF_SIGHT_CONTAINERS[:-1])
    + f" or {_OUT_OF_SIGHT_CONTAINERS[-1].removeprefix('builtins.')}"
    + " that holds only such objects: most likely in the new {name} objects, which leak"
)
# From 3.15 a bytearray keeps its buffer in a bytes object, which it shows no search:
# one new bytes beside each new bytearray.
_BYTES_IN_BYTEARRAYS = sys.version_info >= (3, 15)
_BUFFERS_IN_LEAK = (
    "most of its new objects are out of the search's sight, as a bytearray's buffer is: most likely "
    "the buffers of the new {name} objects, which leak"
)


# The fields of a _WatchState's row in its _WatchTable's numbers
# (_RECENT: how many of its last values are kept, up to _NOISE_WINDOW; _NEXT: where in
# its ring of them the next one goes, so that a value noted moves none of the others)
_HIGH_WATER, _INCREASES, _LAST_INCREASE, _ALLOCATIONS, _NEW_PER_SAMPLE, _RECENT, _NEXT = range(7)
_ROW_FIELDS = 7


class _RowField:
    """One of a _WatchState's numbers, a field of its row (see _WatchTable)."""

    def __init__(self, field: int, doc: str | None = None) -> None:
        self.field = field
        self.__doc__ = doc

    def __get__(self, state: _WatchState, owner: type | None = None) -> int:
        return state._field(self.field)

    def __set__(self, state: _WatchState, value: int) -> None:
        state._set(self.field, value)


class _WatchState:
    """A type seen by watch-all (exact: net allocations; census: live count).

    Its numbers are a row of its ``_WatchTable``'s arrays, not int objects of its
    own (see there)."""

    _memtracker_bookkeeping = True

    __slots__ = ("ref", "table", "row", "by_noise", "from_zero", "builtin", "drifts")

    def __init__(self, table: _WatchTable, row: int, cls: type, value: int, by_noise: bool, from_zero: bool) -> None:
        self.ref = weakref.ref(cls)
        self.table = table
        self.row = row
        self.by_noise = by_noise
        # A type counted exactly has net allocations since watch-all began: it
        # had 0 then, so its first sight may already be a rise (a leak that began
        # in watch-all's first interval is counted from its start, as it is at
        # every later one). An estimate's first value is a baseline, and so is a
        # count below 0 (older objects freed): from 0, it would look like a drop
        # that a rise must stand out of for a while, and a leak would first have
        # to climb back to 0.
        from_zero = from_zero and value >= 0
        self.from_zero = from_zero
        self.builtin = self.drifts = False
        if from_zero:
            self.restart_at(0)
            self.note(value)
        else:
            self.restart_at(value)

    def _field(self, field: int) -> int:
        return self.table.numbers[self.row * _ROW_FIELDS + field]

    def _set(self, field: int, value: int) -> None:
        self.table.numbers[self.row * _ROW_FIELDS + field] = value

    def note(self, value: int) -> None:
        """Its value at this sample, kept among the last _NOISE_WINDOW."""
        numbers, base = self.table.numbers, self.row * _ROW_FIELDS
        at = numbers[base + _NEXT]
        self.table.recent[self.row * _NOISE_WINDOW + at] = value
        numbers[base + _NEXT] = 0 if at == _NOISE_WINDOW - 1 else at + 1
        if numbers[base + _RECENT] < _NOISE_WINDOW:
            numbers[base + _RECENT] += 1

    def restart_at(self, value: int) -> None:
        """Its value now is its baseline (and high-water mark): no rise before it counts."""
        self._set(_RECENT, 0)
        self._set(_NEXT, 0)
        self.note(value)
        self.high_water = value

    @property
    def recent(self) -> list[int]:
        """Its last values, oldest first."""
        return self.recent_values().tolist()

    def recent_values(self) -> array:
        """``recent`` as an array (no int objects)."""
        start, kept = self.row * _NOISE_WINDOW, self._field(_RECENT)
        recent = self.table.recent
        if kept < _NOISE_WINDOW:  # (not yet round the ring: from its start)
            return recent[start : start + kept]
        at = start + self._field(_NEXT)  # the oldest
        return recent[at : start + _NOISE_WINDOW] + recent[start:at]

    high_water = _RowField(_HIGH_WATER)
    increases = _RowField(_INCREASES)
    last_increase = _RowField(_LAST_INCREASE, "The sample of its last increase.")
    new_per_sample = _RowField(_NEW_PER_SAMPLE, "Of its creations, the ones between its last two samples.")

    @property
    def allocations(self) -> int | None:
        """Watch-all's count of its creations (exact mode)."""
        count = self._field(_ALLOCATIONS)
        return None if count == _UNKNOWN else count

    def count_new(self, allocations: int | None) -> None:
        """Watch-all's count of its creations now (None: not counted), and so how many
        of them came since the last sample."""
        numbers, base = self.table.numbers, self.row * _ROW_FIELDS
        before = numbers[base + _ALLOCATIONS]
        if allocations is None:
            numbers[base + _ALLOCATIONS] = _UNKNOWN
        else:
            if before != _UNKNOWN and allocations >= before:
                numbers[base + _NEW_PER_SAMPLE] = allocations - before
            numbers[base + _ALLOCATIONS] = allocations

    def advance(self, value: int, allocations: int | None, sample: int, calm_samples: int) -> int:
        """A sample's reading of a type seen before: ``note(value)``,
        ``count_new(allocations)``, and its increases forgotten after ``calm_samples``
        without one (rises must come in a run, not scattered over hours); its high-water
        mark returned. Watch-all takes this step for every type it sees (hundreds) at
        every sample: the row is read directly, not through the properties' calls,
        which cost more than the work."""
        self.note(value)
        self.count_new(allocations)
        numbers, base = self.table.numbers, self.row * _ROW_FIELDS
        if sample - numbers[base + _LAST_INCREASE] > calm_samples:
            numbers[base + _INCREASES] = 0
        return numbers[base + _HIGH_WATER]

    def noise(self) -> float | None:
        """The standard deviation of the last changes, or None before two."""
        return change_deviation(self.recent)


class _WatchTable(dict):
    """The types watch-all sees, by ``id``: ``_WatchState`` each, their numbers in rows
    of two arrays shared by all. Watch-all sees every type the app has (hundreds), and
    an int object per number, replaced at each sample (a deque of them per type),
    would keep hundreds of new ints alive at any time: watch-all, counting every
    object, would see ints (and deques, or arrays) grow with the types it meets,
    and the verification of an app's leak of ints would find most new ones ours. The
    arrays grow in place; a row given back is used again."""

    _memtracker_bookkeeping = True

    def __init__(self) -> None:
        super().__init__()
        self.numbers = array("q")  # _ROW_FIELDS a row
        self.recent = array("q")  # _NOISE_WINDOW a row, a ring (see _WatchState.recent_values)
        self.free = array("q")  # rows given back
        self.risen: set[int] = set()  # keys of states that rose twice (see MemoryMonitor._watch_risen_lately)

    def add(self, key: int, cls: type, value: int, by_noise: bool, from_zero: bool) -> _WatchState:
        """A new state for ``cls`` (its ``id`` is ``key``), replacing any under that key."""
        self.pop(key, None)
        if self.free:
            row = self.free.pop()
        else:
            row = len(self.numbers) // _ROW_FIELDS
            self.numbers.extend((0,) * _ROW_FIELDS)
            self.recent.extend((0,) * _NOISE_WINDOW)
        base = row * _ROW_FIELDS
        self.numbers[base : base + _ROW_FIELDS] = array("q", (0, 0, 0, _UNKNOWN, 0, 0, 0))
        try:
            state = _WatchState(self, row, cls, value, by_noise, from_zero)
        except TypeError:  # a type that refuses weak references
            self.free.append(row)
            raise
        super().__setitem__(key, state)
        return state

    def __setitem__(self, key: int, state: _WatchState) -> None:
        raise TypeError("a watch-all state is made by _WatchTable.add")

    def _changed_elsewhere(self, *args: Any, **kwargs: Any) -> Any:
        # (dict's own would put a state under a second key, or drop its row unreturned)
        raise TypeError("a _WatchTable changes by add, del, pop and clear only")

    setdefault = update = popitem = __ior__ = _changed_elsewhere

    def __delitem__(self, key: int) -> None:
        self.free.append(self[key].row)
        self.risen.discard(key)
        super().__delitem__(key)

    def pop(self, key: int, *default: Any) -> Any:
        if key not in self:
            return super().pop(key, *default)
        state = super().pop(key)
        self.free.append(state.row)
        self.risen.discard(key)
        return state

    def clear(self) -> None:
        super().clear()
        del self.numbers[:], self.recent[:], self.free[:]
        self.risen.clear()


class MemoryMonitor:
    """Watches types for repeated growth and finds where the growth is allocated.

    A sample reads each monitored type's live count. When it exceeds the
    type's high-water mark by more than ``threshold``, the mark rises and the
    type's increase count goes up by one. At ``increases`` increases the
    monitor starts call-path analysis for the type by itself; from then on
    each growth produces a leak report (type, live count, increases, top 3
    paths), logged on logger "memtracker_web" and passed to ``on_leak``.

    :param tracker: The Tracker that counts; ``None`` makes one with ``depth``. Default: ``None``.
    :param interval: Seconds between samples (above 0, at most a day). Default: ``60.0``.
    :param threshold: Growth above a type's high-water mark that counts as an increase (0 counts every rise;
        the endpoint's options ask for at least 1). Default: ``100``.
    :param increases: Increases before a leak report; call-path analysis starts then. Default: ``10``.
    :param depth: Frames kept of each allocation's call path. Default: ``10``.
    :param max_analyzed: Types in call-path analysis at once. Default: ``3``.
    :param watch_all: Count every type, so that growing types are found without being named. Default:
        ``False``.
    :param history: Samples kept of each type's count and of resident memory. Default: ``120``.
    :param calm_samples: Samples without growth after which a type's analysis ends and its increases start
        afresh. Default: ``30``.
    :param discover_after: Increases after which watch-all nominates a type to be counted exactly. Default:
        ``3``.
    :param max_watch_promotions: Types nominated by watch-all that are monitored at once. Default: ``50``.
    :param leak_reports: Leak reports kept: the latest of each type, for this many types. Default: ``50``.
    :param watch_sample: Watch-all counts about one object in this many and scales (1: every object, exactly;
        at most 65536). Default: ``1``.
    """

    _memtracker_bookkeeping = True  # (retention.BOOKKEEPING: a chain through it is our own)

    def __init__(
        self,
        tracker: Tracker | None = None,
        interval: float = 60.0,
        threshold: int = 100,
        increases: int = 10,
        depth: int = 10,
        max_analyzed: int = 3,
        watch_all: bool = False,
        history: int = 120,
        calm_samples: int = 30,
        discover_after: int = 3,
        max_watch_promotions: int = 50,
        leak_reports: int = 50,
        watch_sample: int = 1,
    ) -> None:
        checked = options.take(
            options.MONITOR,
            dict(
                interval=interval,
                threshold=threshold,
                increases=increases,
                depth=depth,
                max_analyzed=max_analyzed,
                history=history,
                calm_samples=calm_samples,
                discover_after=discover_after,
                max_watch_promotions=max_watch_promotions,
                leak_reports=leak_reports,
                watch_sample=watch_sample,
            ),
        )
        self.mode = "exact" if engine.engine_status()["available"] else "census"
        self.tracker = tracker if tracker is not None else Tracker(depth=depth)
        self.interval = float(interval)
        self.threshold = int(threshold)
        self.increases = int(increases)
        self.depth = depth
        self.max_analyzed = int(max_analyzed)
        self.watch_all = bool(watch_all)
        # Watch-all counts about one object in watch_sample (chosen by address)
        # and scales: an estimate, cheap enough to leave on. It only nominates
        # types; a nominated type is then counted exactly. 1 counts every object.
        self.watch_sample = checked["watch_sample"]
        self._watching_sample = 0  # the running watch-all's rate
        self._watch_requested = 0  # watch_sample when it was started
        self.history = int(history)
        self.calm_samples = int(calm_samples)
        self.discover_after = int(discover_after)
        self.max_watch_promotions = int(max_watch_promotions)
        self.on_leak: LeakCallback | None = None
        self.sample_hooks: list[SampleHook] = []  # called after every sample (exporters)
        self._types: dict[int, _TypeState] = {}  # id(cls) => state
        self._watch = _WatchTable()  # id(cls) => watch-all state
        self._leaks: deque = deque(maxlen=leak_reports)
        self._leak_counts: dict[str, tuple[int, float]] = {}  # a reported type's reports and the first one's time
        # a type folded into another's leak => its report when it was (see _one_report_a_leak)
        self._folded_reports: dict[str, dict] = {}
        self._generation = 0  # bumped when the monitored set changes
        self._types_cache: tuple | None = None  # ((samples, top_paths, generation), entries)
        self._samples = 0
        self._sampled_at: float | None = None
        self._sample_duration = 0.0
        self._census_info: dict[str, Any] | None = None
        self._watching = False
        self._watch_recycled = 0  # nominated, went calm, and gave the place back
        # verification searches, and the seconds the app's threads waited for them in all
        # and at most (see app_threads_held_off)
        self._held_off = [0, 0.0, 0.0]
        self._restarts: deque = deque(maxlen=20)  # when counting restarted after another tool's tracer
        self._resident = PointRing(self.history)  # the process's resident memory at each sample
        self._config_errors: deque = deque(maxlen=20)  # configured types that could not be monitored
        self._recycled_ids: set[int] = set()  # id(cls) of types given back, until watch-all sees them again
        self._estimates: dict[
            int, tuple[int, int | None, int | None]
        ] = {}  # id(cls) => watch-all's (net, new, free), scaled
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._wanted_running = False
        self._pid = os.getpid()
        _after_fork_monitors.add(self)

    # -- what to watch -------------------------------------------------------

    def start_monitoring(self, cls: type | str, threshold: int | None = None, analysis: bool = False) -> None:
        """Monitor ``cls`` (a class or ``module.QualName``); ``threshold`` overrides the default.

        ``analysis=True`` starts call-path analysis now instead of waiting for growth.
        """
        cls = resolve_type(cls) if isinstance(cls, str) else cls
        if not isinstance(cls, type):
            raise TypeError(f"start_monitoring() needs a class or a type name, got {type(cls).__name__}")
        with self._lock:
            state = self._types.get(id(cls))
            if state is None or state.ref() is not cls:
                if threshold is not None:
                    threshold = options.OPTIONS["threshold"].take(threshold, options.MONITOR)
                state = _TypeState(
                    cls,
                    self.threshold if threshold is None else threshold,
                    self.history,
                    "census" if self.mode == "census" else "tracked",
                    analysis,
                )
                if self.mode == "exact":
                    already = cls in self.tracker.capture
                    self.tracker.track(cls)  # first: at the engine's cap it raises, and nothing is recorded
                    state.counted_from_zero = not already
                    state.theirs_tracked = already
                self._types[id(cls)] = state
            else:
                if state.by_watch:
                    # counted by the tracker from now on, exactly, from zero
                    self.tracker.track(cls, sample_objects=1)
                    state.object_sample = 1
                    state.by_watch = state.by_noise = False
                    state.counted_from_zero = True
                    state.high_water = state.first_live = None
                if state.source == "watch_all":
                    # named now by the user: it ranks as theirs, is never recycled, and
                    # what a verification said of it no longer holds it back
                    state.source = "census" if self.mode == "census" else "tracked"
                    if state.analysing and not state.theirs_analysed:
                        # every path from now on, as for any type the user names
                        self.tracker.track_with_analysis(cls, depth=self.depth, sample_every=1, sample_objects=1)
                    state.dismissed_until, state.explained_by, state.verdict = 0, None, None
                    state.forget_garbage_places()
                if threshold is not None:
                    state.threshold = int(threshold)
            self._watch.pop(id(cls), None)  # counted here from now on, not by watch-all's table
            if analysis:
                state.forced = True
                self._begin_analysis(state, cls)
            self._generation += 1

    def stop_monitoring(self, cls: type | str) -> bool:
        cls = resolve_type(cls) if isinstance(cls, str) else cls
        with self._lock:
            state = self._types.pop(id(cls), None)
            if state is None:
                return False
            self._folded_reports.pop(state.name, None)
            self._generation += 1
            if self.mode == "exact" and self._tracked_for(state):
                if not state.theirs_tracked:
                    self.tracker.untrack(cls)
                elif state.analysing and not state.theirs_analysed:
                    self.tracker.stop_analysis(cls)  # (ours; their counting goes on)
            return True

    @staticmethod
    def _tracked_for(state: _TypeState) -> bool:
        """Whether the tracker counts the type for this state: always, unless watch-all
        counts it, and then while its objects are verified or analysed."""
        return not state.by_watch or state.analysing or state.verify_since is not None

    @property
    def _watch_promotions(self) -> int:
        """Types watch-all nominated that are still monitored: a place comes back when
        one is recycled, untracked, named by the user, or its class dies."""
        return sum(1 for s in self._types.values() if s.source == "watch_all")

    def monitored(self) -> list[type]:
        with self._lock:
            return [cls for cls in (s.ref() for s in self._types.values()) if cls is not None]

    # -- sampling ------------------------------------------------------------

    def sample(self) -> list[dict]:
        """One pass now. Returns the leak reports it produced."""
        self._after_fork_check()
        restore_a_switch_interval_left_raised()
        collecting = _collect_young_garbage()  # (its finalisers' time included, not the lock's wait)
        with self._lock:
            started = time.perf_counter() - collecting
            now = time.time()
            census = None
            if self.mode == "census":
                census, self._census_info = take_census()
            else:
                if self.watch_all or id(str) in self._types:
                    _let_go_of_cached_names()  # (right before the reads)
                self._recover_if_displaced(now)
            if self.watch_all:
                self._discover(census)
            resident = resident_bytes()
            if resident is not None:
                self._resident.append(round(now, 3), resident)
            for key, state in list(self._types.items()):
                cls = state.ref()
                if cls is None:  # the class itself died: nothing left to watch
                    del self._types[key]
                    continue
                self._read_counts(state, cls, census)
                state.history.append(round(now, 3), state.live)  # ms: shorter JSON
                if state.first_live is None:
                    state.first_live = state.live
                state.grew = False
                if state.high_water is None:
                    # Counted from zero (a type tracked exactly since monitoring began):
                    # growth before the first sample counts. Otherwise
                    # (census, or counts from earlier) the first sample is the baseline.
                    state.high_water = 0 if state.counted_from_zero else state.live
                if state.live > state.high_water + state.margin(state.threshold, self.increases):
                    state.high_water = state.live
                    state.increases += 1
                    state.grew = True
                    state.last_growth_sample = self._samples
                    state.rises.append(self._samples)
            self._samples += 1
            self._escalate()
            due: list[tuple[_TypeState, dict]] = []
            for key, state in list(self._types.items()):
                cls = state.ref()
                if cls is None:
                    continue
                calm = self._samples - state.last_growth_sample > self.calm_samples
                stats = self._report_stats(state, cls)
                if stats is not None:
                    due.append((state, self._report(state, cls, now, stats)))
                    state.reported = True
                elif self.mode != "exact" and calm and state.increases and not state.forced:
                    state.increases = state.evidence_from = state.recheck_from = 0  # calm again (census): afresh
                    state.reported = False
                elif state.analysing and not state.forced and calm:
                    self._end_analysis(state, cls)  # calm again: back to counting only
                    state.increases = state.evidence_from = state.recheck_from = 0
                    state.root_of.clear()
                elif (
                    state.source == "watch_all"
                    and not state.analysing
                    and not state.forced
                    and calm
                    and self._samples - state.nominated_at > self.calm_samples
                ):
                    # a nominated type that went calm gives its place back: discovery never stops
                    self.stop_monitoring(cls)
                    self._watch_recycled += 1
                    self._recycled_ids.add(key)
            reports = self._one_report_a_leak(due)
            self._sampled_at = now
            self._sample_duration = time.perf_counter() - started

        for report in reports:
            self._publish_leak(report)
        for hook in list(self.sample_hooks):
            try:
                hook(self)
            except Exception:
                logger.exception("memtracker_web: sample hook %r failed", hook)
        return reports

    def _recover_if_displaced(self, now: float) -> None:
        """Another tool took the reference tracer (``tracemalloc.start()`` does, for
        a look during an incident): counts stopped updating, for good. Take the
        slot back now (the engine chains that tool's tracer while it still holds
        it, tracemalloc's on every version) and count again from zero: each
        type's live count and watch-all's counts restart. The high-water marks
        and increases seen before stay: a steady population refilling the
        restarted count must not look like growth. The snapshot's ``restarts``
        says so."""
        if not getattr(self.tracker.capture._core, "missed_events", False):
            return
        capture = self.tracker.capture
        capture.stop()
        capture.start()  # the same types, analyses and call trees; counts from zero
        for state in self._types.values():
            state.first_live = None
        if self._watching:
            engine._tracker.watch_stop()
            self._watching = False  # restarted by the next _discover, counting from then
            self._watch.clear()
        self._restarts.append(now)
        logger.warning(
            "memtracker_web: another tool replaced the reference tracer (tracemalloc.start() does "
            "this); the monitor took it back and counts again from now (objects made meanwhile "
            "are not counted)"
        )

    def _report_stats(self, state: _TypeState, cls: type) -> dict | None:
        """The stats a report is made of when one is due, else None. A type that met
        ``increases`` is reported as soon as its call paths show where the growth
        comes from (exact), or at once (census: there are none), then again at each
        growth. (One stats build serves the test and the report.)"""
        if state.increases - state.evidence_from < self.increases or not (state.grew or not state.reported):
            return None
        if (
            state.counted_by_noise()
            and state.live - (0 if state.counted_from_zero else state.first_live or 0) < state.threshold
        ):
            return None  # small steps: the growth must also reach the threshold
        if self.mode != "exact":
            return {"top_paths": []}
        if not state.analysing or (state.source == "watch_all" and not state.verified):
            return None
        if state.garbage_watch is not None:
            return None  # (verified beside garbage: its place must keep growing a while)
        stats, fillings = self._stats_and_fillings(state, cls, _REPORT_PATHS, hotspots=0)
        if not (stats and stats["top_paths"] and stats["top_paths"][0]["count"] > 0):
            return None
        if state.kept_in_global is not None and not self._still_grows_where_kept(state):
            return None
        if (
            self._samples - state.analysis_since < self.calm_samples
            and (found := state.retainers_for_report())
            and fillings
            and _fills_a_cache(stats["top_paths"][0], fillings)
            and self._samples - state.analysis_since < self._cache_paths_wait(state, found)
        ):
            # Every path that keeps some is a bounded cache's filling (those go last):
            # the leak's own may not have shown yet. A built-in's paths follow one
            # object in 64: the str-set leak of bench/leak_apps.py, 30 new strs a
            # sample, had none sampled in its first two samples of analysis once in
            # four runs, and its report led with the render cache's line alone. Not
            # for ever: a leak made inside the cached function itself is on such a
            # path, and would wait until it outgrew the cache's bound.
            return None
        return stats

    def _cache_paths_wait(self, state: _TypeState, found: dict[str, Any]) -> int:
        """Samples of analysis a report of ``state`` waits while its paths are all a
        bounded cache's filling (see _report_stats; ``found``: its search's result):
        until CACHE_PATHS_SAMPLED of its growth the cache does not take (by the search's
        share) can have had their paths sampled (one allocation in ``path_sample``:
        about 11 samples for str-set's 30 strs a sample, one in 64 followed, where 5
        samples miss them all in 9% of runs); CACHE_PATHS_WAIT at least, and
        ``calm_samples`` at most (which wins when smaller, or when the type did not
        grow lately)."""
        looked_at = max(found.get("objects", 0), 1)
        in_caches = sum(b["count"] for b in found.get("bounded", ()))
        rest = state.recent_growth(2) * max(looked_at - in_caches, 0) / looked_at
        wanted = math.ceil(CACHE_PATHS_SAMPLED * state.path_sample / rest) if rest > 0 else self.calm_samples
        return min(self.calm_samples, max(CACHE_PATHS_WAIT, wanted))

    def _still_grows_where_kept(self, state: _TypeState) -> bool:
        """For a type verified by the watch beside a cache (_check_beside_cache):
        whether the module global it is kept in grew since its last report (or since
        the watch verified it), read as the watch reads it; a failing read, or the
        global gone, counts as no growth."""
        if state.kept_in_global is None:
            return True
        module, name, before = state.kept_in_global
        try:
            size = global_container_size(module, name)
        except Exception:  # noqa: BLE001 -- (a sample must go on)
            size = None
        if size is None or size <= before:
            return False
        state.kept_in_global = (module, name, size)
        return True

    def _stats_as_reported(self, state: _TypeState, cls: type, top: int | None, hotspots: int = 20) -> dict | None:
        """The tracker's stats of ``cls`` with its ``top`` paths (None: all) in the order a
        leak report shows them: more paths asked for, and their order changed, only where
        a cache's filling may be among them (see _past_cache_fillings), or where the
        verdict names a module global that holds the leak (see _leak_paths_first)."""
        return self._stats_and_fillings(state, cls, top, hotspots)[0]

    def _stats_and_fillings(
        self, state: _TypeState, cls: type, top: int | None, hotspots: int = 20
    ) -> tuple[dict | None, list[dict[str, Any]]]:
        """_stats_as_reported, and the bounded caches' fillings it ordered the paths by."""
        fillings = _cached_functions(state.retainers)
        caches = fillings or state.overwritten or any(ref() is not None for ref in state.filled_caches)
        place = self._leak_place(state)
        more = _PATHS_PAST_A_CACHE if (caches or place) and top is not None else 0
        stats = self.tracker.stats(cls, limit=None if top is None else top + more, hotspots=hotspots)
        if stats and place:
            # (what made the leak's own objects, before what keeps more beside it)
            stats["top_paths"] = _leak_paths_first(stats["top_paths"], self._place_paths(cls, place, stats))
            if not caches:
                stats["top_paths"] = stats["top_paths"][:top]
        if stats and caches:
            if state.key_fillings is None or state.key_fillings[0] != self._samples:
                state.key_fillings = (self._samples, self._key_fillings(state, cls, stats["sample_every"]))
            # A path's text is not the path: two places on one line (a leak made beside
            # the call that makes the keys) read alike. Keys counted under such a text
            # are no one path's: none of those paths is taken for the cache's. (Those
            # that keep none do not count: ``f(n + 1)`` makes a passing int beside its key.)
            texts = Counter(tuple(path["path"]) for path in stats["top_paths"] if path["count"] > 0)
            fillings = fillings + [f for f in state.key_fillings[1] if texts[tuple(f["path"])] <= 1]
            stats["top_paths"] = _past_cache_fillings(stats["top_paths"], fillings)[:top]
        return stats, fillings

    @staticmethod
    def _leak_place(state: _TypeState) -> tuple[str, str, bool] | None:
        """(module, name, nested) of the module global whose plain container holds the
        new objects of a type verified a leak, as its verdict says when it was verified
        (``kept by appmod.LEAKED -> builtins.list[i] -> ...``; nested: one level down,
        ``kept by appmod.LEAKED -> builtins.dict[key] -> builtins.list[i] -> ...``; a
        search asked for later looks at older objects too, and may find another place);
        None for a verdict of any other shape."""
        return state.leak_place if state.verified else None

    def _place_paths(self, cls: type, place: tuple[str, str, bool], stats: dict) -> set[tuple[str, ...]]:
        """The call paths that made what the leak's place (see _leak_place) holds of
        ``cls``, of its newest _PLACE_READ entries: each whose objects there are most of
        what it keeps (by the stats' count), or most of those read (the leak fills the
        place); read now, and let go at once."""
        items: list[Any] = []
        try:
            items = newest_global_objects(place[0], place[1], _PLACE_READ, nested=place[2]) or []
            items[:] = [o for o in items if type(o) is cls]
            paths = self._paths_as_reported(cls, items)
        except Exception:  # noqa: BLE001 -- (a report goes on without them)
            return set()
        finally:
            items.clear()  # (the app's objects: not held past this)
        counts = {tuple(path["path"]): path["count"] for path in stats["top_paths"]}
        followed = sum(kept for _, kept in paths)
        return {
            tuple(path)
            for path, kept in paths
            if kept * stats["sample_every"] * 2 > counts.get(tuple(path), 0) or kept * 2 > followed
        }

    def _paths_as_reported(self, cls: type, objects: list[Any]) -> list[tuple[list[str], int]]:
        """The call paths that made ``objects`` (of ``cls``, as its analysis followed
        them), each as a report's ``"path"`` writes it (file names shortened as the
        tracker's stats do), with how many of them it made."""
        paths = self.tracker.capture.allocation_path_counts(cls, objects) if objects else []
        shorten = path_shortener()
        return [
            ([frame_text(frame._replace(filename=shorten(frame.filename))) for frame in frames], kept)
            for frames, kept in paths
        ]

    def _key_fillings(self, state: _TypeState, cls: type, scale: int) -> list[dict[str, Any]]:
        """The call paths that made the keys of ``cls`` the lru_caches its last search
        (its verification, or one asked for since) saw holding its new objects keep (a
        call's one int or str argument, a tuple of
        several), each with how many the cache keeps (``count``, in the stats' scale:
        each key its analysis follows counts ``scale``) and the cache's bound: the
        paths of a report that are those caches' filling (see _fills_a_cache). The keys
        are read as they are now (of a cache of up to _KEYS_READ entries), and let go at
        once."""
        fillings: list[dict[str, Any]] = self._overwritten_fillings(state, cls, scale)
        for ref in state.filled_caches:
            cache = ref()
            if cache is None:
                continue
            try:
                bound = type(cache).cache_info(cache).maxsize
                keys = lru_keys(cache, cls, _KEYS_READ)
                try:
                    paths = self._paths_as_reported(cls, keys)
                finally:
                    keys.clear()  # (the app's objects: not held past this)
            except Exception:  # noqa: BLE001 -- (a report goes on without them)
                continue
            finally:
                cache = None
            if bound is None:
                continue
            fillings += [{"path": path, "count": kept * scale, "bound": bound} for path, kept in paths]
        return fillings

    def _overwritten_fillings(self, state: _TypeState, cls: type, scale: int) -> list[dict[str, Any]]:
        """The call paths that made what the globals ``state`` found overwritten hold
        now (see _judge_only_new), as _key_fillings gives a cache's keys: a report's
        paths that are those globals' (200 dicts replaced each request led a report of
        20 leaking a sample, "200 retained" to the leak's fewer), each bounded as long as
        it is remembered (see _overwritten_marks)."""
        fillings: list[dict[str, Any]] = []
        for module, name, size in self._overwritten_marks(state):
            items: list[Any] = []
            try:
                entries = global_container_entries(module, name, _KEYS_READ) or []
                items = [o for o in entry_parts(entries) if type(o) is cls]
                entries.clear()
                paths = self._paths_as_reported(cls, items)
                bound = OVERWRITTEN_FORGET * size * scale  # (as long as it is remembered)
            except Exception:  # noqa: BLE001 -- (a report goes on without them)
                continue
            finally:
                items.clear()  # (the app's objects: not held past this)
            fillings += [{"path": path, "count": kept * scale, "bound": bound} for path, kept in paths]
        return fillings

    def _read_counts(self, state: _TypeState, cls: type, census) -> None:
        if census is not None:
            state.live = census.get(cls, 0)
            return
        if state.by_watch:
            # (taken out: kept to the next sample, each type's tuple and key would be
            # new objects of the monitor's alive, as many as it monitors)
            estimate = self._estimates.pop(id(cls), None)
            if estimate is not None:  # (none while watch-all restarts: the last one stays)
                before = state.allocations
                state.live, state.allocations, state.frees = estimate
                if before is not None and state.allocations is not None:
                    state.new_per_sample = max(0, state.allocations - before)
            if not state.builtin:
                if self._tracked_for(state):
                    self._estimate_bytes(state, cls)  # (from the objects the tracker tables)
                elif state.bytes_per_object is not None:
                    state.live_bytes = round(state.bytes_per_object * state.live)  # (its last mean size)
            return
        allocations = self.tracker.capture.allocations(cls)
        if allocations is None:  # untracked behind our back: track again
            self.tracker.track(cls)
            allocations = self.tracker.capture.allocations(cls)
            assert allocations is not None  # track() just made it tracked
        if state.allocations is not None and allocations.new_count >= state.allocations:
            state.new_per_sample = allocations.new_count - state.allocations
        state.live = allocations.retained_count
        state.allocations = allocations.new_count
        state.frees = allocations.free_count
        self._estimate_bytes(state, cls)

    def _estimate_bytes(self, state: _TypeState, cls: type) -> None:
        """Bytes of the type's live objects. Measuring scans the capture's object table,
        so it is done again only every BYTES_EVERY samples or when the live count moved
        by a tenth; in between the last mean size is scaled by the live count."""
        at_sample, at_live = state.bytes_at
        if (
            state.bytes_per_object is None
            or self._samples - at_sample >= BYTES_EVERY
            or abs(state.live - at_live) * 10 > max(at_live, 1)
        ):
            estimate = self.tracker.capture.live_bytes(cls, sample=BYTES_SAMPLE)
            if estimate is None:
                state.live_bytes, state.bytes_measured, state.bytes_per_object = None, 0, None
                return
            if not estimate[1] and state.live:
                # none of the tabled objects to measure (a table just begun, or sparse):
                # unknown, measured again at the next sample
                state.live_bytes, state.bytes_measured, state.bytes_per_object = None, 0, None
                return
            # (per object of the tracker's count: watch-all's, when it counts the type, may differ)
            tabled = self.tracker.capture.count_for(cls)
            state.bytes_per_object = estimate[0] / tabled if tabled else 0.0
            state.bytes_measured = estimate[1]
            state.bytes_at = (self._samples, state.live)
        state.live_bytes = round(state.bytes_per_object * state.live)

    def _escalate(self) -> None:
        """Start analysis for types that reached ``increases``, within the budget
        of ``max_analyzed`` slots. Types the user named come first and keep their
        slot; then classes defined in Python code, and types whose new objects
        hold another growing type's (the root of a chain, see _verify); built-ins
        only while no such class is growing (a leaked object drags its dicts,
        strings and numbers along: the class explains the leak, its built-ins do
        not). A type watch-all found is verified first (_verify), a sample after
        its nomination for a class, and then analysed while it keeps rising, so
        that its paths are there when it reaches ``increases``. Within a rank, a type that
        reached ``increases`` goes before one that did not, then the fastest
        grower; it takes a full budget's slot only from one that has not reached
        it, or one growing at most 2/3 as fast that was reported or stayed calm.
        A type set aside by its verification (a bounded cache filling, held by
        another growing type) waits ``calm_samples`` before it is looked at again."""
        if self.mode != "exact":
            return
        self._check_beside_caches()
        self._read_held_sizes()
        self._read_garbage_places()
        self._verify_pending()
        recently = lambda sample: self._samples - sample <= self.calm_samples  # noqa: E731
        met = lambda s: s.increases >= self.increases  # noqa: E731
        rising = lambda s: s.increases >= 2 and recently(s.last_growth_sample)  # noqa: E731
        live = [s for s in self._types.values() if s.ref() is not None and not self._set_aside(s)]
        growing = [s for s in live if s.analysing or met(s) or (s.counted_by_noise() and rising(s))]
        # A class counts as growing before it reaches `increases`, even before it is
        # nominated: the built-ins it drags along grow faster and would be first.
        # (A class whose count no longer climbs holds nothing back: a class cache filled
        # as the app warmed up, or per-request objects swinging with the collector's
        # passes, would keep a leak of built-ins waiting for calm_samples samples.)
        classes_growing = (
            # (a type the user named: once it rose lately, not while it is only analysed,
            # which it may be from the start, asked for, growing or not)
            any(s.rank() == 0 and s.increases >= 1 and recently(s.last_growth_sample) for s in live)
            or any(s.rank() == 1 and rising(s) and _climbs(s.history.last_lives(_NOISE_WINDOW)) for s in live)
            # a class watch-all saw rise twice lately, while a place is free to nominate it
            or (
                self._watch_promotions < self.max_watch_promotions
                and any(not is_builtin_type(cls) and _climbs(w.recent) for cls, w in self._watch_risen_lately())
            )
        )
        candidates = [s for s in growing if not s.analysing and (s.rank() < 2 or not classes_growing)]
        candidates.sort(key=lambda s: (s.rank(), not met(s), -s.rate(), s.name))
        # (built-ins: a class is tabled from its nomination and needs no place to wait for)
        verifying = sum(1 for s in live if s.by_watch and s.builtin and s.verify_since is not None and not s.verified)
        for state in candidates:
            if state.source == "watch_all" and not state.verified:
                # a type watch-all found is verified before it is analysed: its growth
                # may be a cache warming up, or what another growing type keeps (see
                # _verify); a class is tabled from its nomination, a built-in from now
                if state.verify_since is None and verifying < self.max_analyzed:
                    self._start_verification(state)
                    verifying += 1
                continue
            budget = self.max_analyzed - sum(1 for s in self._types.values() if s.analysing)
            if budget <= 0:
                # displace the analysed type that explains least: a worse rank; or
                # the same rank without the evidence this one has; or the same
                # rank, clearly slower, and given its chance (reported, or calm
                # long enough); never one the user named or forced
                yielding = [
                    s
                    for s in self._types.values()
                    if s.analysing
                    and not s.forced
                    and s.rank() > 0
                    and (
                        s.rank() > state.rank()
                        or (s.rank() == state.rank() and met(state) and not met(s))
                        or (
                            s.rank() == state.rank()
                            and met(state)
                            and s.rate() < state.rate() * 2 / 3
                            and (s.reported or self._samples - s.analysis_since > self.calm_samples)
                        )
                    )
                ]
                weakest = max(yielding, key=lambda s: (s.rank(), not met(s), -s.rate(), s.name), default=None)
                if weakest is None:
                    continue
                weak_cls = weakest.ref()
                if weak_cls is not None:
                    self._end_analysis(weakest, weak_cls)
            cls = state.ref()
            if cls is not None:
                self._begin_analysis(state, cls)
        for state in live:
            cls = state.ref()
            if state.by_watch and state.verified and not state.analysing and state.verify_since is not None and cls:
                # verified, but no slot: the tracker lets its objects go meanwhile (the
                # verdict stays; analysis starts its own table when a slot frees up)
                state.verify_since = None
                self.tracker.untrack(cls)

    def _set_aside(self, state: _TypeState) -> bool:
        """Whether its verification set the type aside for now; when that time is
        over, what it said is forgotten and the type is looked at afresh. A type
        whose new objects were held through another's (the root) stays set aside
        while the root is verified a leak and still grows: a search would find
        them held through it again, at a pass over the heap a level up the root's
        chain, which grows with the leak (a traceback chain: one level a request).
        Not for ever: every EXPLAINED_RECHECK_PERIODS x ``calm_samples`` it is searched
        again, so that a leak of its own, beside the root's, is found in bounded time."""
        if state.dismissed_until > self._samples and state.source == "watch_all":
            return True
        if (
            state.explained_by is not None
            and state.source == "watch_all"
            and self._samples - state.explained_at < EXPLAINED_RECHECK_PERIODS * self.calm_samples
            and self._root_still_leaks(state)
        ):
            state.dismissed_until = self._samples + self.calm_samples
            return True
        if state.explained_by is not None or state.dismissed_until:
            state.explained_by = None
            state.dismissed_until = 0
            state.aside_doubts_growth = False
            # it is searched again once it rose twice more (unless the set-aside only
            # waited for enough values to judge its count by: at once, if it rose
            # lately); and what it grew by, before and while it was set aside, was
            # explained (a cache filling), unless that set-aside only waited for its
            # count to tell (see _judge): a report needs `increases` rises from now on
            if state.aside_awaits_rises:
                state.recheck_from = state.increases
            if state.aside_explains:
                state.evidence_from = state.increases
        return False

    def _root_still_leaks(self, state: _TypeState) -> bool:
        """Whether the type that explained ``state`` is verified a leak and rose lately."""
        root = next((s for s in self._types.values() if s.name == state.explained_by), None)
        return (
            root is not None
            and root is not state
            and root.verified
            and root.increases >= 2
            and self._samples - root.last_growth_sample <= self.calm_samples
            and not self._explained(root)
        )

    # -- verification: what keeps a growing type's new objects ----------------

    def _start_verification(self, state: _TypeState) -> None:
        """Have the tracker count a built-in watch-all counts, so that its objects
        made from now on are in a table a retention search can start from."""
        cls = state.ref()
        if cls is None or state.verify_since is not None:
            return
        if state.by_watch:
            try:
                state.object_sample = self._sampling(state)[1]
                self.tracker.track(cls, sample_objects=state.object_sample)
            except (OverflowError, ValueError) as exc:  # the engine's cap on tracked types
                self._set_growth_aside(state, cls, f"its objects cannot be tabled to verify it: {exc}")
                return
        state.verify_since = self._samples

    def _verify_pending(self) -> None:
        """Verify the types waiting for it (see _judge), all from one retention search:
        each level of a search asks the collector once about every object it looks
        for, so one search for all costs about as much as one for a single type, and
        VERIFY_BUDGET seconds at most (checked between levels and inside a level's passes
        over the heap; see find_retainers). No app thread runs while
        it holds their objects, for up to HOLD_OFF_INTERVAL (see
        ``app_threads_held_off``); only types with objects to search start it."""
        if not self.tracker.capture.can_sample:
            return  # stopped, or another tool took the tracer: its counts say nothing now
        waiting: list[tuple[_TypeState, type]] = []
        for state in list(self._types.values()):
            if (
                state.source != "watch_all"
                or state.verified
                or state.verify_since is None
                or self._samples - state.verify_since < VERIFY_AFTER
                or self._set_aside(state)
                # (rises since a set-aside ended: a cache full when its time ended is
                # searched again only if the type grows on)
                or not (
                    state.increases - state.recheck_from >= 2
                    and self._samples - state.last_growth_sample <= self.calm_samples
                )
            ):
                continue
            cls = state.ref()
            if cls is None:
                continue
            if state.by_watch and state.builtin and state.last_growth_sample < state.verify_since:
                # A built-in is tabled when its verification begins, after the rises
                # watch-all saw: until it rises again, its objects made since are not
                # its growth, only what a counter, a request in flight or the last
                # response holds for a moment, and a search of those finds a variable
                # the app overwrites, not a leak. Two samples without a rise: its
                # table and its place among the types verified go (see _escalate).
                if self._samples - state.verify_since > VERIFY_AFTER:
                    unrisen = _NO_RISE_SINCE_TABLED.format(self._samples - state.verify_since)
                    self._set_growth_aside(state, cls, unrisen, doubts_growth=True)
                continue
            allocations = self.tracker.capture.allocations(cls)
            if allocations is not None and allocations.retained_count:
                waiting.append((state, cls))
            elif why := self._why_none_alive(state):
                self._set_growth_aside(state, cls, why)
        if not waiting or search_running():  # (someone's search from the page: at the next sample)
            return
        started = time.perf_counter()
        with app_threads_held_off():
            searched = self._search_for_pending(waiting)
        held = time.perf_counter() - started
        self._held_off[0] += 1
        self._held_off[1] += held
        self._held_off[2] = max(self._held_off[2], held)
        # what the search decided, done now that the app's threads run again (logging may wait)
        for state, cls, why in searched.set_aside:
            self._set_growth_aside(state, cls, why)
        for state, why in searched.deferred:
            self._search_again_later(state, why)
        if searched.failure is not None:
            exc = searched.failure
            names = ", ".join(state.name for (state, _), _found in searched.found)
            logger.error("memtracker_web: verifying %s failed", names, exc_info=exc)
            for (state, cls), _found in searched.found:
                self._set_growth_aside(state, cls, f"its verification failed ({type(exc).__name__}: {exc})"[:300])
            return
        for (state, cls), found in searched.found:
            if not state.verified and not self._set_aside(state):  # (a root judged before it may explain it)
                self._judge(state, cls, found)

    def _why_none_alive(self, state: _TypeState) -> str | None:
        """Why a type whose new objects all died is set aside, once it was verified long
        enough for that to mean something; None before."""
        since = self._samples - (state.verify_since or 0)
        return f"none of its objects made in the last {since} samples is alive" if since >= VERIFY_AFTER + 2 else None

    def _search_for_pending(self, waiting: list[tuple[_TypeState, type]]) -> _Searched:
        """The retention search of _verify_pending, from the moment it holds objects of
        the app's to the moment it lets them go, run while no app thread runs (see
        ``app_threads_held_off``): it decides, and _verify_pending acts afterwards."""
        searched = _Searched()
        pending: list[tuple[_TypeState, type]] = []
        groups: list[list[Any]] = []
        thinned: dict[int, str] = {}  # (id of a state: where those left out were, when few are left)
        # Names kept alive by CPython's type attribute cache alone die now, instead of
        # being sampled and found held by something hidden: a str made per request and
        # looked up as an attribute name (a healthy app's, or a library's) would
        # otherwise verify as a leak of str.
        engine.clear_type_cache()
        # A type analysed while the app compiles code for each request (a template
        # rendered from a string) keeps each such code in its call tree, and with it
        # the code's line table, constants and names, which the collector shows held by
        # nothing: they are left out of each sample, and a type most of whose new
        # objects they are grows by our doing (bytes, 3 a request, reported at jinja2's
        # compile() beside a real leak). The codes are held meanwhile, so their ids
        # stay theirs; the walk runs only when a type waiting may be among what they
        # hold, since a full tree's takes a few hundred ms with the app's threads held off.
        parts_waiting = any(cls in _CODE_PARTS for _, cls in waiting)
        our_codes, alone = self.tracker.capture.tree_codes() if parts_waiting else ([], [])
        held_by_trees = held_by_codes(our_codes, alone) if our_codes else set()
        for state, cls in waiting:
            skipped = self._overwritten_ids(state)
            if state.held_new is not None:  # (ours while held: the app may have let them go)
                skipped.update(map(id, entry_parts(state.held_new[2])))
            try:
                # (more where some will be left out: those of a global the app overwrites)
                wanted = RETAINER_SAMPLE * (GARBAGE_PICKS if state.look_wider else 1)
                picks = min(wanted * (OVERWRITTEN_PICKS if skipped or held_by_trees else 1), _MOST_PICKED)
                objects = self.tracker.capture.sample(cls, picks)
            except RuntimeError:
                continue  # stopped, or another tool took the tracer: try again at the next sample
            if held_by_trees and objects:
                picked = len(objects)
                objects = [obj for obj in objects if id(obj) not in held_by_trees]
                if (picked - len(objects)) * 2 >= picked:
                    held = _HELD_BY_OUR_CODES.format(held=picked - len(objects), of=picked)
                    searched.deferred.append((state, held))
                    continue
                if not skipped:
                    del objects[wanted:]
            if skipped:
                picked = len(objects)
                objects = [obj for obj in objects if id(obj) not in skipped]
                if picked and not objects:
                    # (a leak's share of the table grows as it goes on: looked at again later)
                    where = ", ".join(dict.fromkeys(f"{module}.{name}" for module, name in _left_out_places(state)))
                    searched.deferred.append((state, _ONLY_OVERWRITTEN.format(share="all", where=where)))
                    continue
                if len(objects) < picked and len(objects) < wanted:
                    thinned[id(state)] = _left_out(state)  # (some were left out, and few are left)
                del objects[wanted:]
            if objects:
                pending.append((state, cls))
                groups.append(objects)
            elif why := self._why_none_alive(state):
                searched.set_aside.append((state, cls, why))  # (they died meanwhile)
        our_codes.clear()
        alone.clear()
        held_by_trees.clear()
        objects = []
        for state, cls, ours, looked_at in self._take_out_own_growth(pending, groups):
            if id(state) in thinned:
                # Few were left past those of a global the app overwrites (a table begun
                # again beside it holds little else yet), and a few of the monitor's own
                # newest objects (a report's dicts) weigh as much as the app's growth
                # there: looked at again later, the table kept, not set aside.
                where = thinned[id(state)]
                searched.deferred.append((state, _FEW_PAST_LEFT_OUT.format(where=where, own=ours, of=looked_at)))
                continue
            searched.set_aside.append((state, cls, own_bookkeeping(ours, looked_at)))
        if not pending:
            return searched
        try:
            results = find_retainers_of_groups(
                groups, budget_seconds=VERIFY_BUDGET, patience=VERIFY_PATIENCE, with_caches=True
            )
        except RetentionBusy:
            return searched  # someone's search from the page began meanwhile: at the next sample
        except Exception as exc:  # a defect of ours must not stop the monitor's samples
            # logged after the block: its traceback's frames let go of the objects they held
            traceback.clear_frames(exc.__traceback__)
            searched.failure = exc
            searched.found = [(entry, {}) for entry in pending]
            return searched
        finally:
            groups.clear()  # the objects themselves are not kept past the search
        searched.found = list(zip(pending, results, strict=True))
        return searched

    @staticmethod
    def _overwritten_marks(state: _TypeState) -> tuple[tuple[str, str, int], ...]:
        """The globals ``state`` found overwritten (see _judge_only_new), less those
        gone, or grown to OVERWRITTEN_FORGET times their size then: a slow leak kept
        there may have paused while the type rose for another reason. (The size of one
        the app overwrites varies with what it holds each time.)"""
        kept = []
        for module, name, size in state.overwritten:
            try:
                now = global_container_size(module, name)
            except Exception:  # noqa: BLE001 -- (kept: read again next time)
                now = size
            if now is not None and now < OVERWRITTEN_FORGET * max(size, 1):
                kept.append((module, name, size))
        state.overwritten = tuple(kept)
        return state.overwritten

    def _overwritten_ids(self, state: _TypeState) -> set[int]:
        """The ids of what the globals ``state`` found overwritten hold now. (Run
        while the app's threads are held off: logs nothing.)"""
        ids: set[int] = set()
        for module, name, _ in self._overwritten_marks(state):
            try:
                ids.update(map(id, entry_parts(global_container_entries(module, name, OVERWRITTEN_SIZE_MOST) or [])))
            except Exception:  # noqa: BLE001,S112 -- (the objects are searched as they are)
                continue
        return ids

    def _take_out_own_growth(
        self, pending: list[tuple[_TypeState, type]], groups: list[list[Any]]
    ) -> list[tuple[_TypeState, type, int, int]]:
        """The pending types whose new objects are at least half in the monitor's own
        tables (with how many of how many were looked at), taken out of ``pending`` and
        ``groups``: set aside without a search, as the search would (see _judge).
        Counting every object, watch-all sees those
        tables grow while the monitor takes on the types an app's warm-up makes, and a
        search costs one pass over the heap a level, where this is one walk of our
        tables. From the other groups their few such objects go: a search from one (a
        verdict's text) goes on up through whatever holds the monitor, a deep graph in a
        server, and cut short at its depth it would leave the app's objects out of its
        sight unjudged."""
        own = own_table_refs([self])
        if own is None or not pending:
            return []
        taken = []
        for i in reversed(range(len(pending))):
            ours = only_in_own_tables(groups[i], own)
            if sum(ours) * 2 >= len(groups[i]):
                taken.append((*pending.pop(i), sum(ours), len(groups[i])))
                del groups[i]
            elif any(ours):
                groups[i][:] = [obj for obj, own_one in zip(groups[i], ours, strict=True) if not own_one]
        return taken

    def _judge(self, state: _TypeState, cls: type, found: dict[str, Any]) -> None:
        """Before a type watch-all found is reported (before a built-in is even
        analysed): ``found`` is a retention search from some of its objects made
        since the tracker has its table, that is, the new ones still alive. The
        growth is set aside (for ``calm_samples``; see _samples_to_fill for a cache
        filling) when at least half of them are held by a cache with a size bound (one
        warming up: its growth ends at the bound; a full one, when nothing else holds
        them: they replaced old entries), by functions of the standard library or an
        installed package that are running or waiting (work in progress), by
        memtracker_web's own tables, or are garbage in reference cycles; or when
        none survived (a module global beside a filling cache that holds some of
        them is read again meanwhile: _watch_beside_cache). When more than half are
        each held through a new object of another growing type, that type is the
        root: a traceback chain growing by one traceback per request keeps that
        request's frames and all they refer to; the root is nominated and analysed
        in their place. So it is when the root is verified as a leak already and
        those objects, with the growth set aside above, are more than half. Otherwise
        whatever holds them is a leak's holder, and the type is verified (and the types
        verified before it that it explains are regrouped under it: _regroup_under);
        when the search reached nothing that holds them, only while its count still
        climbs (_no_climb), the one evidence left."""
        found["computed_at"] = round(time.time(), 3)
        state.filled_caches, state.key_fillings = tuple(found.pop("lru_caches", ())), None
        state.retainers = found
        total = found["objects"]
        # (kept through a search that goes on waiting for another reason, a global the
        # app overwrites found meanwhile: the places marked stay marked)
        wide, marks = state.look_wider, state.garbage_marks
        # Most of its new objects must be kept by the app, as a leak keeps them. The
        # rest is growth that ends by itself, or is not the app's:
        not_leaks = _not_leaks(found)
        not_leak = sum(n for n, _ in not_leaks)
        if not_leak * 2 >= total and not _kept_past_garbage(found, not_leak - found["unreachable"]):
            reason = max(not_leaks, key=lambda reason: reason[0])
            if reason is not_leaks[-1] and not wide and total * 2 >= RETAINER_SAMPLE:
                # Garbage in cycles piles up until the collector passes over the older
                # generations (minutes in a large heap): 20 dicts a sample leaking beside
                # 200 a sample of such garbage were 0-2 of the 20 looked at, short of
                # KEPT_PAST_GARBAGE, and set aside at every search. GARBAGE_PICKS times
                # as many are looked at once before that (the heap is walked once a
                # level, whatever their number), the table kept. (Unless the search
                # looked at all there were: fewer than half the number it takes.)
                state.look_wider = True
                self._search_again_later(
                    state,
                    _GARBAGE_LOOK_WIDER.format(
                        garbage=found["unreachable"],
                        objects=total,
                        kept=found["kept"],
                        more=RETAINER_SAMPLE * GARBAGE_PICKS,
                    ),
                )
                return
            filling = reason is not_leaks[1] and found["bounded"]
            if (
                filling
                and state.object_sample > 1
                and total < RETAINER_SAMPLE // 2
                and state.verify_since is not None
                and self._samples - state.verify_since <= VERIFY_AFTER + 1
            ):
                # A hot built-in is tabled one object in several: a search a sample
                # after its table began looks at a handful (6 strs, 5 of them in the
                # render cache, none of the leak's set beside it, through uvicorn), and
                # a cache's set-aside lasts until it is full. The table stays, so that
                # more add up, and the type is searched again after two more rises;
                # nothing is set aside and its rises stay evidence. (Once a table: its
                # first search only, which comes VERIFY_AFTER samples after it began; a
                # type tabled sparsely for a slow growth would be searched every two
                # rises until ten added up.)
                few = _FEW_LOOKED_AT.format(
                    cached=found["bounded"][0]["count"],
                    objects=total,
                    cache=found["bounded"][0]["holder"],
                    sample=state.object_sample,
                )
                self._search_again_later(state, few)
                return
            self._set_growth_aside(state, cls, reason[1], self._samples_to_fill(state, found) if filling else None)
            if filling:
                self._watch_beside_cache(state, found, found["bounded"][0]["holder"])
            return
        places = _kept_places(state, found)
        watch = None
        if wide and (not_leak * 2 >= total or found["unresolved"]):
            grown = self._garbage_beside(state, cls, found, places, marks)
            if grown is None:
                return
            state.look_wider, state.garbage_marks = False, None
            # (the verdict names where the growth is: a dict updated in place beside it
            # may keep more of the objects looked at; watched on once verified)
            found["kept_by"], watch = grown
        elif not_leak * 2 >= total and places:
            # (kept past garbage by a few: where they are must grow too, read at a wide search)
            self._garbage_beside(state, cls, found, places, None)
            return
        if (root := self._root_of(state, cls, found, not_leak)) is not None:
            self._explain_by(state, cls, *root)
            return
        chain = found["kept_by"]
        capacity = min(_NOISE_WINDOW, state.history.size)
        if not chain and (no_climb := _no_climb(state.last_lives(), capacity)) is not None:
            # Nothing the search reached keeps them: the count itself is the only
            # evidence left, and a leak's climbs through its swings. One that rose twice
            # lately and stays level (a full cache churning its entries, a request's
            # objects held by C code for a moment) is no leak of the app's. Its rises
            # stay evidence: this says only that the count does not tell yet, not what
            # they were.
            sight = (
                f"the search stopped before it reached what keeps its new objects ({found['stopped']})"
                if found["stopped"]
                else "its new objects are out of the search's sight"
            )
            why, wait, awaits_rises = no_climb
            self._set_growth_aside(state, cls, f"{sight} and {why}", wait, explains=False, awaits_rises=awaits_rises)
            return
        if chain and total - not_leak - found["hidden"] - found["unresolved"] < 2:
            # One object of the app's in sight is what a variable it overwrites holds (a
            # request counter's current value: its int in a module dict, found after a
            # cache of ints filled and the count drifted up twice), and a leak holds more.
            # (Two such variables, two counters, still make two.) Its table stays, so a
            # slow leak's objects add up until the next search, after two more rises;
            # nothing is set aside and its rises stay evidence.
            self._search_again_later(state, _ONE_OBJECT_KEPT.format(chain=chain))
            return
        place = next((p for p in found.get("kept_in") or () if p["chain"] == chain), None) if chain else None
        under = next((p for p in found.get("kept_under") or () if chain in p["chains"]), None) if chain else None
        if place is not None and self._judge_only_new(state, cls, place):
            return
        if place is not None and (place["module"], place["name"]) in {mark[:2] for mark in state.overwritten}:
            # its table stays, so that a leak beside it adds up, and its rises stay evidence
            where = f"{place['module']}.{place['name']}"
            self._search_again_later(state, _ONLY_OVERWRITTEN.format(share="mostly", where=where))
            return
        self._verify_as_kept(
            state,
            f"kept by {chain}"
            if chain
            else f"kept by something the search did not reach ({found['stopped'] or 'no root found'})",
            place=(
                (place["module"], place["name"], False)
                if place is not None
                else (under["module"], under["name"], True)
                if under is not None
                else None
            ),
            garbage_watch=watch,
        )

    def _garbage_beside(
        self,
        state: _TypeState,
        cls: type,
        found: dict[str, Any],
        places: list[tuple[str, str, bool, str]],
        marks: dict[tuple[str, str, bool], _PlaceRead | None] | None,
    ) -> tuple[str, tuple[tuple[str, str, bool], _PlaceRead]] | None:
        """For a search (see _judge) whose objects are mostly garbage in reference
        cycles, but with KEPT_PAST_GARBAGE or more kept beside it (or a wide one cut
        short): the chain of the place that keeps some of them and grows, with the
        place and how it was read (the type goes on to be verified as kept by it, and
        the place is watched on: _watch_garbage_place); None when it was judged here. Kept is
        not growing: a dict the app updates in place takes in new objects as fast as a
        leak's list (a healthy app with 1,000 sessions, 20 replaced a sample, beside
        such garbage was reported at sample 10-11 in 8 of 8 runs). The module globals
        and class attributes keeping some of them (``places``, see _kept_places: each of them, since an
        in-place dict beside a leak may keep more of those looked at one time, the
        leak's list the next) are read, then at each sample (_read_garbage_places),
        and again at the next wide search, two rises later (``marks``): the first of
        them (in the order of _kept_places) grown by GARBAGE_PLACE_GROWTH or more
        since it was first read, shrinking at most GARBAGE_PLACE_FALLS times meanwhile
        and never to less than GARBAGE_PLACE_GROWTH above that (_PlaceRead), keeping
        some again, and holding objects older than the type's
        table (_all_new: a registry of the requests in flight, one level down, holds
        only new ones, and its size swings up and down by a request's rows), is where
        the growth is, and is watched on (_watch_garbage_place). A place that search finds first is read
        again at the one after. Otherwise, with no such place, or with a search cut
        short (its garbage not told from what the app keeps), the type is set aside as
        garbage."""
        garbage = _not_leaks(found)[-1][1]
        sizes: dict[tuple[str, str, bool], tuple[int, int]] = {}
        for module, name, nested, _ in places if not found["unresolved"] else ():
            if (now := _read_place((module, name, nested))) is not None:
                sizes[module, name, nested] = now
        if not sizes:
            self._set_growth_aside(state, cls, garbage)
            return None
        for module, name, nested, chain in places:
            place = (module, name, nested)
            mark, now = (marks or {}).get(place), sizes.get(place)
            if marks is None or mark is None or now is None:
                continue
            if not mark.read(now):
                marks[place] = None
                continue
            if not mark.grown(now):
                continue
            try:
                objects = newest_global_objects(module, name, OVERWRITTEN_SIZE_MOST, nested=nested) or []
                if self._all_new(cls, objects):
                    continue
            except Exception:  # noqa: BLE001 -- (unread: not this place)
                continue
            return chain, (place, mark)
        where = ", ".join(dict.fromkeys(f"{module}.{name}" for module, name, _ in sizes))
        if marks is None or sizes.keys() - marks.keys():
            # (a place not read before, the leak's list beside the in-place dict the last
            # search saw alone, is read again at the next one; those read before keep
            # their reads, so that each place is marked once in a row of searches)
            state.look_wider = True
            first = {place: _PlaceRead(now, self._samples, now) for place, now in sizes.items()}
            state.garbage_marks = {**first, **(marks or {})}
            self._search_again_later(
                state,
                _GARBAGE_BESIDE.format(
                    garbage=found["unreachable"], objects=found["objects"], kept=found["kept"], where=where
                ),
            )
            return None
        self._set_growth_aside(state, cls, f"{garbage} (and {where}, which keep some, did not keep growing)")
        return None

    def _judge_only_new(self, state: _TypeState, cls: type, place: dict[str, Any]) -> bool:
        """For a search whose objects a module global's plain container (``place``)
        holds most of: whether it is one the app overwrites (``LAST[:] = rows`` each
        request), whose objects are left out of the next searches (see _overwritten_ids),
        or may be (its verification waits, and True). 200 dicts replaced each sample
        beside 20 leaking took the verification, and the leak was reported "kept by
        app.LAST", at the replacing line. Such a global holds only objects made since
        the type's table began, and a leak's holds older ones too, unless the leak began
        since: its newest OVERWRITTEN_HELD entries (any of a set's) are held to the next
        searches (each after two more rises, the table kept), for OVERWRITTEN_WAIT
        samples at least, and its size is read at each sample meanwhile
        (_read_held_sizes). Most of their objects of the type gone from it then (a dict's
        values replaced under the same keys too), it is one the app overwrites, unless
        it grew by OVERWRITTEN_LEAST or more and never shrank (a backlog that grows, its
        oldest taken out; records replaced by updated copies under keys that pile up:
        the growth is there); still there, a leak that began since (at once when it grew
        so). A full ``deque(maxlen=...)`` is one at once; one that can no longer
        be read is taken for the leak's."""
        module, name = place["module"], place["name"]
        held, state.held_new = state.held_new, None
        mark = None
        if global_full_ring(module, name):
            mark = (module, name, place["size"])
        elif held is not None and held[:2] == (module, name):
            try:
                entries = global_container_entries(module, name, OVERWRITTEN_SIZE_MOST)
            except Exception:  # noqa: BLE001 -- (an odd global: taken for the leak's, as before)
                entries = None
            if entries is None:
                return False
            now = {id(part) for part in entry_parts(entries)}
            entries.clear()
            first, last, shrank = held[4:]
            grew = not shrank and last - first >= OVERWRITTEN_LEAST
            if sum(id(_of_type(entry, cls)) in now for entry in held[2]) * 2 < len(held[2]):
                if not grew:
                    mark = (module, name, place["size"])  # (gone: it was overwritten meanwhile)
            elif not grew and self._samples - held[3] < OVERWRITTEN_WAIT:
                state.held_new = held  # (there still: a while longer, as one replaced every few samples)
                state.recheck_from = state.increases
                return True
        elif (newest := self._only_new(cls, module, name)) is not None:
            size = place["size"]
            state.held_new = (module, name, newest, self._samples, size, size, False)
            self._search_again_later(state, _ONLY_NEW.format(where=f"{module}.{name}"))
            return True
        if mark is not None:
            state.overwritten = (*(m for m in state.overwritten if m[:2] != mark[:2]), mark)[-OVERWRITTEN_MOST:]
        return False

    @staticmethod
    def _search_again_later(state: _TypeState, verdict: str) -> None:
        """``state`` is not judged yet (``verdict`` says why): its table stays, so that
        more of its objects add up, it is searched again after two more rises, and its
        rises stay evidence."""
        state.recheck_from = state.increases
        state.verdict = verdict
        logger.info("memtracker_web: %s grows; %s", state.name, verdict)

    def _read_held_sizes(self) -> None:
        """The size now of each module global whose newest entries are held (see
        _judge_only_new), and whether it shrank since the last sample. (One that cannot
        be read keeps its last size.)"""
        for state in self._types.values():
            held = state.held_new
            if held is None:
                continue
            try:
                size = global_container_size(held[0], held[1])
            except Exception:  # noqa: BLE001 -- (read again at the next sample)
                continue
            if size is not None:
                state.held_new = (*held[:5], size, held[6] or size < held[5])

    def _read_garbage_places(self) -> None:
        """The sizes now of each place marked beside garbage (see _garbage_beside): one
        that shrank too often or too far (see _PlaceRead.read), or cannot be read, is no leak's
        place (a registry of the requests in flight, one level down, swings by a
        request's rows). So for the place a type was verified by
        (_watch_garbage_place)."""
        for state in list(self._types.values()):
            self._watch_garbage_place(state)
            marks = state.garbage_marks
            if marks is None:
                continue
            for place, mark in list(marks.items()):
                if mark is None:
                    continue
                now = _read_place(place)
                if now is None or not mark.read(now):
                    marks[place] = None

    def _watch_garbage_place(self, state: _TypeState) -> None:
        """For a type watch-all found and verified as kept by a place beside garbage:
        its place read at each sample until GARBAGE_PLACE_SAMPLES passed since its first
        read, its report waiting until then (_report_stats). Shrunk more than
        GARBAGE_PLACE_FALLS times meanwhile, or to less than GARBAGE_PLACE_GROWTH above
        its first read (see _PlaceRead.read), or not so far above it by then, the type
        is set aside as garbage: a registry the app clears every 10 samples grew
        between two searches as a leak's list does (one cleared less often can be
        reported)."""
        watch, cls = state.garbage_watch, state.ref()
        if watch is None or cls is None:
            return
        if state.source != "watch_all" or state.forced:
            state.garbage_watch = None  # (named by the user: theirs to judge)
            return
        (module, name, _), mark = watch
        now = _read_place(watch[0])
        if now is not None and mark.read(now):
            if self._samples - mark.since < GARBAGE_PLACE_SAMPLES:
                return
            if mark.grown(now):
                state.garbage_watch = None
                return
        self._set_growth_aside(state, cls, f"{_GARBAGE} (and {module}.{name}, which keeps some, did not keep growing)")

    def _all_new(self, cls: type, objects: list[Any]) -> bool:
        """Whether ``objects`` (a place's: cleared here) hold enough objects of ``cls``
        to tell, nearly all of them made since its table began (OVERWRITTEN_LEAST,
        OVERWRITTEN_NEW): what a variable the app overwrites holds, where a leak's
        place holds older ones too."""
        followed, tabled = self.tracker.capture.tabled(cls, objects)
        objects.clear()
        return followed >= OVERWRITTEN_LEAST and tabled >= OVERWRITTEN_NEW * followed

    def _only_new(self, cls: type, module: str, name: str) -> list[tuple[Any, Any]] | None:
        """The newest OVERWRITTEN_HELD entries (see global_container_entries) with an
        object of ``cls`` of the module global ``module.name``, when it holds only
        objects of ``cls`` made since its table began (see OVERWRITTEN_NEW); None when
        it holds older ones too."""
        entries: list[tuple[Any, Any]] = []
        try:
            entries = global_container_entries(module, name, OVERWRITTEN_SIZE_MOST) or []
            if not self._all_new(cls, entry_parts(entries)):
                return None
            newest = [entry for entry in reversed(entries) if type(entry[0]) is cls or type(entry[1]) is cls]
            return newest[:OVERWRITTEN_HELD]
        except Exception:  # noqa: BLE001 -- (an odd global: its objects are the leak's, as before)
            return None
        finally:
            entries.clear()  # (the app's objects: not held past this)

    def _verify_as_kept(
        self,
        state: _TypeState,
        verdict: str,
        kept_in_global: tuple[str, str, int] | None = None,
        place: tuple[str, str, bool] | None = None,
        garbage_watch: tuple[tuple[str, str, bool], _PlaceRead] | None = None,
    ) -> None:
        """``state`` is a leak, kept as ``verdict`` says (``kept_in_global``: the module
        global a watch beside a cache found it in, whose growth each report needs, see
        _still_grows_where_kept; ``place``: the module global whose plain container
        the verdict's chain ends in, and whether one level down, see _leak_place;
        ``garbage_watch``: the place beside garbage the verdict rests on, see
        _watch_garbage_place); the types verified before it that it explains are
        regrouped under it."""
        state.verified = True
        state.look_wider, state.garbage_marks, state.garbage_watch = False, None, garbage_watch
        state.kept_in_global = kept_in_global
        state.leak_place = (*kept_in_global[:2], False) if kept_in_global is not None else place
        state.held_new = None  # (the app's objects: judged)
        state.verdict = verdict
        logger.info("memtracker_web: %s grows and its new objects are %s", state.name, state.verdict)
        self._regroup_under(state)

    def _watch_beside_cache(self, state: _TypeState, found: dict[str, Any], cache: str) -> None:
        """A type set aside for a bounded cache filling (``cache``: how the verdict
        names it) may leak beside it: the session ids of a module set nobody prunes,
        beside a render cache taking as many new strs a request. The search's 20 objects
        are then split between the two, and which way they lean decides. When at least
        BESIDE_CACHE_OBJECTS of them sit in a module global's plain container (a
        quarter or more was too many: through uvicorn the cache took 8 of 14 looked
        at, a request in flight some, and the set fewer than a quarter, in 1 run of
        6), that container's size is read again at the next samples: see
        _check_beside_caches. ``cache``: the cache's name in the search's result."""
        place = next(iter(found.get("kept_in") or ()), None)
        lives = state.last_lives()
        if place is None or place["count"] < BESIDE_CACHE_OBJECTS or not lives:
            state.beside_cache = None
            return
        state.beside_cache = {
            "module": place["module"],
            "name": place["name"],
            "chain": place["chain"],
            "share": place["count"] / found["objects"],
            "cache": cache,
            "sizes": [place["size"]],
            "lives": [lives[-1]],
        }
        # (the watch reads it at the next BESIDE_CACHE_SAMPLES samples: a set-aside
        # shorter than that, with calm_samples of 3 or fewer, would end it first)
        state.dismissed_until = max(state.dismissed_until, self._samples + BESIDE_CACHE_SAMPLES + 1)
        logger.info(
            "memtracker_web: %s: %s.%s holds %d of the %d looked at beside the cache; its size is watched",
            state.name,
            place["module"],
            place["name"],
            place["count"],
            found["objects"],
        )

    def _check_beside_caches(self) -> None:
        """Each type watched beside a bounded cache (_watch_beside_cache): the module
        global's size now. When over BESIDE_CACHE_SAMPLES samples it never shrank and
        grew by a built-in's least step a sample (threshold / increases: 10 by
        default; by one a sample for a class) and by at least a quarter of what its
        share of the objects looked at makes of the type's growth meanwhile (a
        quarter: a dict's entry may hold two of them, a key and a value), the type is
        verified as a leak kept there, as it would be with no cache beside it. A set of
        the app's that only turns over (live sessions) does not grow by that much; a
        drop ends the watch and the set-aside runs its course. A global still filling
        towards a bound of the app's own (a list trimmed to its last thousand) is
        verified, as it is without a cache: three samples cannot tell it from a leak;
        but its reports, which the cache's rises bring sooner, each need the global
        grown since the last (_still_grows_where_kept)."""
        for state in list(self._types.values()):
            watch = state.beside_cache
            if watch is None:
                continue
            try:
                size = global_container_size(watch["module"], watch["name"])
            except Exception:  # (a sample must go on: the set-aside runs its course)
                logger.exception("memtracker_web: reading where %s is kept failed", state.name)
                state.beside_cache = None
                continue
            self._check_beside_cache(state, watch, size)

    def _check_beside_cache(self, state: _TypeState, watch: dict[str, Any], size: int | None) -> None:
        lives = state.last_lives()
        if (
            state.ref() is None
            or state.verified
            or state.explained_by is not None
            or state.dismissed_until <= self._samples
            or size is None
            or not lives
            or size < watch["sizes"][-1]
        ):
            state.beside_cache = None
            logger.info(
                "memtracker_web: %s: the watch of %s.%s ends (sizes %s, size now %s)",
                state.name,
                watch["module"],
                watch["name"],
                watch["sizes"],
                size,
            )
            return
        watch["sizes"].append(size)
        watch["lives"].append(lives[-1])
        if len(watch["sizes"]) <= BESIDE_CACHE_SAMPLES:
            return
        state.beside_cache = None
        grew = watch["sizes"][-1] - watch["sizes"][0]
        type_grew = watch["lives"][-1] - watch["lives"][0]
        # (a built-in's least step a sample; a class rises by its own noise: any growth)
        step = max(1.0, least_builtin_step(state.threshold, self.increases)) if state.drifts else 1.0
        least = BESIDE_CACHE_SAMPLES * step
        if type_grew <= 0 or grew < max(least, watch["share"] * type_grew / 4):
            logger.info(
                "memtracker_web: %s: %s.%s grew by %d in %d samples, the type by %d: no leak of its own",
                state.name,
                watch["module"],
                watch["name"],
                grew,
                BESIDE_CACHE_SAMPLES,
                type_grew,
            )
            return
        # (its rises before count: the cache did not explain them after all; but many
        # of them were the cache's, and each report needs the global grown since the
        # last: a global of the app's that grew for these samples only, a dict filling
        # as the app warms up, is no leak the cache's rises may report)
        state.dismissed_until = 0
        self._verify_as_kept(
            state,
            f"kept by {watch['chain']}, which grew by {grew} in {BESIDE_CACHE_SAMPLES} samples"
            f" beside {watch['cache']}, a cache with a size bound that holds others of its new objects",
            (watch["module"], watch["name"], size),
        )

    def _root_of(
        self, state: _TypeState, cls: type, found: dict[str, Any], not_leak: int, only: str | None = None
    ) -> tuple[str, _TypeState | _WatchState, str] | None:
        """The growing type that explains ``state``'s growth from its retention search
        ``found`` (see _judge): its name, its state and why; None when none does. With
        ``only``: whether that type does, whatever others may."""
        total = found["objects"]
        growing = self._growing_types()
        leaks = {s.name for s in self._types.values() if s.verified}
        atomic = not type_flags(cls) & _HAVE_GC
        for holder in found["holders"]:  # the farthest from the objects (nearest the root) first
            name = holder["type"]
            if not (
                name in growing
                and name != state.name
                and only in (None, name)
                # (through a leak already verified, beside growth that ends by itself:
                # a leak of dicts, each with a new int, and a bounded cache of ints
                # filling up, neither most of the new ints, are no leak of ints)
                and (holder["objects"] if name not in leaks else holder["objects"] + not_leak) * 2 > total
            ):
                continue
            if holder["distinct"] * 2 > holder["objects"] and holder["distinct"] >= min(3, total):
                return name, growing[name], _HELD_THROUGH
            if (
                # Few holders of many: a leak of such containers of mixed sizes (one
                # in ten holding thirty, the rest one) holds them when its objects can
                # hold the growth (not one tuple of thousands replaced each request),
                # weighed as the out-of-sight rule below weighs what no search sees.
                atomic
                and name in leaks
                and name in _OUT_OF_SIGHT_CONTAINERS
                # (not one container: a module's dict keeping a leak of its own beside a
                # leak of dicts)
                and holder["distinct"] >= min(3, total)
                and holder["objects"] * 2 >= total - not_leak
                and self._holds_its_growth(growing[name], cls, state, None, (total - not_leak) / total)
            ):
                return name, growing[name], _HELD_THROUGH
        if atomic:
            # An object that refers to none (an int, a str, bytes) is most often held by a
            # dict or tuple (or from 3.15 a frozenset): CPython takes those out of the
            # collector's sight while they hold only such objects. The extension's
            # referrers() looks inside them, gc.get_referrers does not, and neither sees
            # what C code holds. Beside a leak of such containers, such objects out of
            # sight are most likely its own.
            unseen = found["unresolved"] + found["hidden"]
            containers: list[tuple[str, str, float | None]] = [
                (name, _UNSEEN_IN_LEAK, None) for name in _OUT_OF_SIGHT_CONTAINERS
            ]
            if cls is bytes and _BYTES_IN_BYTEARRAYS:
                containers.append(("builtins.bytearray", _BUFFERS_IN_LEAK, 1.0))
            for name, why, each in containers:
                if (
                    name in leaks
                    and name in growing
                    and name != state.name
                    and only in (None, name)
                    and (unseen + not_leak) * 2 > total
                    # (of those not set apart, at least half out of sight: the rest the search saw kept
                    # where no such container holds them, a leak of their own)
                    and unseen > 0
                    and unseen * 2 >= total - not_leak
                    and self._holds_its_growth(growing[name], cls, state, each, (total - not_leak) / total)
                ):
                    return name, growing[name], why
        return None

    def _holds_its_growth(
        self,
        holder: _TypeState | _WatchState,
        cls: type,
        state: _TypeState,
        each: float | None = None,
        not_set_apart: float = 1.0,
    ) -> bool:
        """Whether the new objects of a leaking container type (``holder``) can hold
        at least half of what ``state`` (objects of ``cls``) grows by a sample, less
        what its search set apart: the mean number of ``cls`` objects its tabled live
        objects refer to, each counted up to that growth (one tuple of thousands,
        replaced each request, is among them and is not its leak; a mix of sizes is),
        times its growth a sample. A few frozensets leaking beside sixty new ints a
        sample kept elsewhere do not explain those ints. ``not_set_apart``: the share
        of its new objects looked at that the search did not set apart (a bounded cache
        filling, say: a leak of tuples of one str each beside a render cache taking as
        many new strs a sample holds half of str's growth, all of what is left; what
        the search saw the app keep is left, and a container must hold it too).
        ``each``: how many each holds when known (a bytearray's buffer, one bytes, is
        no referent). Unknown, and the out-of-sight rule alone decides: either count an
        estimate (watch-all sampling built-ins: they move by its steps), fewer than two
        values of either, its objects not tabled or none alive."""
        container = holder.ref()
        if container is None:
            return False
        if self._watching_sample > 1 and any(
            (isinstance(s, _WatchState) or s.by_watch) and not counted_exactly_by_watch_all(kind)
            for s, kind in ((holder, container), (state, cls))
        ):
            return True
        own_lives = state.last_lives()[-_GROWTH_VALUES:]
        lives = (holder.last_lives() if isinstance(holder, _TypeState) else holder.recent)[-_GROWTH_VALUES:]
        if len(own_lives) < 2 or len(lives) < 2:
            return True
        own_growth = growth_per_sample(own_lives)
        if own_growth <= 0:
            return True
        own_growth *= not_set_apart
        container_growth = max(0.0, growth_per_sample(lives))
        if each is None:
            with app_threads_held_off():  # (their contents are the app's: held for no moment past this)
                try:
                    objects = self.tracker.capture.sample(container, CONTAINERS_LOOKED_AT)
                except RuntimeError:  # stopped, or another tool took the tracer
                    objects = []
                held = [sum(1 for referent in gc.get_referents(obj) if type(referent) is cls) for obj in objects]
                objects.clear()
            if not held:
                return True
            each = sum(min(n, own_growth) for n in held) / len(held)
        return each * container_growth * 2 >= own_growth

    def _regroup_under(self, root: _TypeState) -> None:
        """A type just verified as a leak may be the root of one verified before it: a
        leak of dicts, each with a new int, whose ints watch-all saw rise first (a type
        made by the thousand a second, as dicts are, rises out of its noise later than
        a quiet one). Each type watch-all found and verified is judged again on its
        search's result, which is kept (from its verification, or a search asked for
        since): when the new leak explains it by _judge's rules, it is set aside as
        held through that leak, and its reports are withdrawn (they named the wrong
        type; the log keeps them). Only the new leak is looked for: another type that
        began to grow since is no reason to undo a verification."""
        for other in list(self._types.values()):
            if other is root or not other.verified or other.source != "watch_all":
                continue
            cls, found = other.ref(), other.retainers
            if cls is None or not found:
                continue
            explained = self._root_of(other, cls, found, _not_leak_count(found), only=root.name)
            if explained is not None:
                self._explain_by(other, cls, *explained)
                self._withdraw_reports(other)

    def _withdraw_reports(self, state: _TypeState, why: str | None = None) -> None:
        """Drop the kept report of ``state`` (``why``: the log's reason; its verdict by default)."""
        with self._lock:
            kept = [report for report in self._leaks if report["type"] != state.name]
            if len(kept) == len(self._leaks):
                return
            self._leaks.clear()
            self._leaks.extend(kept)
            self._leak_counts.pop(state.name, None)
        logger.warning("memtracker_web: the reports of %s are withdrawn: %s", state.name, why or state.verdict)

    def _growing_types(self) -> dict[str, _TypeState | _WatchState]:
        """The types that rose at least twice lately, by name: monitored or not."""
        lately = lambda sample: self._samples - sample <= self.calm_samples  # noqa: E731
        # (not those explained by another: two types holding each other's new objects
        # must not explain each other away; a root set aside for another reason still
        # holds what it explained)
        # (nor a built-in set aside for not rising once tabled: a leak of 10 classes a
        # sample rose every other sample, and explained away the dicts and tuples they
        # hold while not verified itself; the strs and ints out of sight were reported)
        found: dict[str, _TypeState | _WatchState] = {
            s.name: s
            for s in self._types.values()
            if s.increases >= 2
            and lately(s.last_growth_sample)
            and not self._explained(s)
            and not (s.aside_doubts_growth and self._set_aside(s))
        }
        set_aside = self._names_set_aside()
        # (every state, in the table's order, not _watch_risen_lately's: of types that
        # share a name, the first one seen is the root nominated, whatever their addresses)
        for watched in self._watch.values():
            if watched.increases >= 2 and lately(watched.last_increase) and (cls := watched.ref()) is not None:
                name = type_name(cls)
                if name not in set_aside:
                    found.setdefault(name, watched)
        return found

    def _watch_risen_lately(self) -> list[tuple[type, _WatchState]]:
        """The types watch-all sees (not monitored) that rose at least twice in the last
        ``calm_samples`` samples, with their states. Read from the few _discover saw
        rise twice, not from every type it sees (hundreds, at every sample); the table
        forgets a key with its state."""
        risen = []
        for key in list(self._watch.risen):
            watched = self._watch.get(key)
            if (
                watched is None
                or watched.increases < 2
                or self._samples - watched.last_increase > self.calm_samples
                or (cls := watched.ref()) is None
            ):
                self._watch.risen.discard(key)  # (it rises again before it counts again)
            else:
                risen.append((cls, watched))
        return risen

    def _explained(self, state: _TypeState) -> bool:
        return state.explained_by is not None and state.dismissed_until > self._samples

    def _names_set_aside(self) -> set[str]:
        return {s.name for s in self._types.values() if self._explained(s)}

    def _samples_to_fill(self, state: _TypeState, found: dict[str, Any]) -> int:
        """How long a type whose new objects fill a bounded cache is set aside: until
        the cache is full (its room over the entries it takes in a sample, counted as
        one of the type's new objects each: soon rather than late), and at least
        ``calm_samples``; at most twice that, when it fills slowly (held only
        ``calm_samples``, a cache filling for longer would be searched again only to be
        found filling still)."""
        cache = found["bounded"][0]
        entries = state.recent_growth(2) * cache["count"] / max(found["objects"], 1)
        if entries <= 0:
            return self.calm_samples
        # (+2: its nomination and verification take a sample each after the hold ends)
        return max(self.calm_samples, min(2 * self.calm_samples, math.ceil(cache["room"] / entries) + 2))

    def _set_growth_aside(
        self,
        state: _TypeState,
        cls: type,
        why: str,
        samples: int | None = None,
        explains: bool = True,
        awaits_rises: bool = True,
        doubts_growth: bool = False,
    ) -> None:
        """Set its growth aside for ``samples`` (``calm_samples``); ``explains``: what it
        grew by so far was not a leak's, and is not evidence any more when the time is over;
        ``awaits_rises``: it is searched again only once it rose twice more after that;
        ``doubts_growth``: its growth itself is in doubt (it did not rise once tabled), so
        it explains nothing while set aside."""
        state.verdict = f"not a leak for now: {why}"
        state.held_new = None  # (the app's objects: looked at afresh when the set-aside ends)
        state.forget_garbage_places()
        state.aside_explains = explains
        state.aside_awaits_rises = awaits_rises
        state.aside_doubts_growth = doubts_growth
        state.dismissed_until = self._samples + (self.calm_samples if samples is None else samples)
        self._end_analysis(state, cls)
        logger.info("memtracker_web: %s grows, %s", state.name, state.verdict)
        for other in self._types.values():
            if other.explained_by == state.name and other is not state:
                if doubts_growth:
                    # what it explained is its own again, and what it grew by meanwhile its evidence
                    other.dismissed_until = self._samples
                    other.aside_explains = False
                else:
                    # what it held is set aside with it, as long (its growth is this one's)
                    other.dismissed_until = max(other.dismissed_until, state.dismissed_until)

    def _explain_by(
        self,
        state: _TypeState,
        cls: type,
        name: str,
        root: _TypeState | _WatchState,
        why: str = _HELD_THROUGH,
    ) -> None:
        if isinstance(root, _WatchState):
            root_cls = root.ref()
            if root_cls is None:  # (it died meanwhile: looked at again next time)
                self._set_growth_aside(state, cls, f"its new objects are held through new {name} objects, now gone")
                return
            # (beyond max_watch_promotions if need be: the root of a leak is not left out
            # for want of a place, and each root is one type)
            try:
                root = self._nominate(
                    root_cls, root, (root.recent[-1], None, None) if root.recent else None, counted=False
                )
            except (OverflowError, ValueError) as exc:  # the engine's cap on tracked types
                self._set_growth_aside(state, cls, f"held through new {name} objects, which cannot be monitored: {exc}")
                return
        root.root_of.add(state.name)
        self._set_growth_aside(state, cls, why.format(name=name))
        state.explained_by = name
        state.explained_at = self._samples
        for other in self._types.values():
            if other.explained_by == state.name and other is not state and other.name != name:
                # what it held is held through the root too, and waits on the root's
                # leak (see _root_still_leaks), not on this type's, which is over
                other.explained_by = name
                root.root_of.add(other.name)

    def _sampling(self, state: _TypeState) -> tuple[int, int]:
        """For a type watch-all found: the path of one allocation in how many, and one
        object in how many tabled to verify it (both powers of two, the second dividing
        the first). A hot one (dict, str, or a class made by the thousand a second):
        paths at about PATHS_PER_SECOND (the stats are scaled and say "estimated"), so
        that analysing it costs the app about what analysing a quiet class does. A
        type watch-all counts (a built-in, or any type it found in exact mode): objects by
        address too, keeping SURVIVORS_PER_SAMPLE of its growth a sample. A type the
        user named: every object, every path."""
        if state.source != "watch_all":
            return 1, 1
        if state.by_watch and not state.new_per_sample:
            # (its rate is not known yet: just nominated, or watch-all restarted)
            sample_every = UNKNOWN_RATE_PATH_SAMPLING
        else:
            sample_every = 1
            per_second = state.new_per_sample / self.interval
            while sample_every < MAX_PATH_SAMPLING and per_second / sample_every > PATHS_PER_SECOND:
                sample_every *= 2
        if not state.by_watch:
            return sample_every, 1  # a type the tracker counts exactly: every object
        growth = state.recent_growth(4)
        object_sample = 1
        while object_sample < sample_every and growth / (object_sample * 2) >= SURVIVORS_PER_SAMPLE:
            object_sample *= 2
        return sample_every, object_sample

    def _begin_analysis(self, state: _TypeState, cls: type) -> None:
        if state.analysing or self.mode != "exact":
            return
        if self.tracker.is_analysing(cls):
            # someone else's analysis (a tracker shared with the monitor): used as it is
            state.theirs_analysed = True
            state.object_sample = self.tracker.capture.object_sample(cls) or 1
            state.path_sample = state.object_sample
        else:
            sample_every, object_sample = self._sampling(state)
            state.path_sample = sample_every
            if state.by_watch:
                # each object followed gets its path (its counts are watch-all's; the
                # table verification searched from, denser, is let go of)
                object_sample = sample_every
            state.object_sample = object_sample
            self.tracker.track_with_analysis(
                cls, depth=self.depth, sample_every=sample_every, sample_objects=object_sample
            )
        if state.verify_since is None:
            state.verify_since = self._samples  # (a type the user named is not verified)
        state.analysing = True
        state.reported = False
        state.analysis_since = self._samples
        state.last_growth_sample = self._samples
        logger.info(
            "memtracker_web: %s grew %d times; recording its allocation call paths", state.name, state.increases
        )

    def _end_analysis(self, state: _TypeState, cls: type) -> None:
        if state.analysing:
            state.analysing = False
            if state.theirs_analysed:
                state.theirs_analysed = False  # (theirs: it goes on)
            elif not self._tracked_for(state):
                self.tracker.untrack(cls)  # its counts are watch-all's: the tracker's cost goes too
            else:
                self.tracker.stop_analysis(cls)
        state.verified = False
        state.kept_in_global = state.held_new = state.leak_place = None
        state.forget_garbage_places()
        state.same_leak_as = None
        self._folded_reports.pop(state.name, None)
        if state.by_watch and state.verify_since is not None:
            state.verify_since = None
            self.tracker.untrack(cls)

    def _discover(self, census) -> None:
        """Watch-all: notice growing types nobody named and monitor them."""
        sampled: set[int] = set()
        if census is not None:
            values: list[tuple[type, int, int | None, int | None]] = [(cls, n, None, None) for cls, n in census.items()]
        else:
            wanted = self.watch_sample  # read once: get_default_monitor may set it meanwhile
            if self._watching and self._watch_requested != wanted:
                engine._tracker.watch_stop()  # the rate changed: counts start again
                self._watching = False
                self._watch.clear()
            if not self._watching:
                try:
                    slot_before = engine.tracer_slot()
                    engine._tracker.watch_start(sample=wanted)
                    running = wanted
                    if engine.replaced_tracer(slot_before):
                        logger.warning("%s", engine.REPLACED_TRACER)
                except RuntimeError:  # someone else's watch-all runs at another rate: share it
                    running = engine._tracker.watch_statistics()["sample"]
                    logger.warning(
                        "memtracker_web: watch-all already runs counting one object in %d; "
                        "this monitor reads it at that rate instead of %d",
                        running,
                        wanted,
                    )
                self._watching = True
                self._watch_requested = wanted
                self._watching_sample = running
                return  # first call: the baseline starts now
            scale = self._watching_sample
            try:
                # (the default, every type counted exactly, needs no type's flags)
                exact = scale == 1
                rows = engine._tracker.watch_counts()
            except RuntimeError as exc:  # displaced: type pointers can't be trusted; start again
                logger.warning("memtracker_web: watch-all restarts: %s", exc)
                engine._tracker.watch_stop()
                self._watching = False
                self._watch.clear()
                return
            if exact:
                values = [(cls, new - free, new, free) for cls, new, free in rows]
            else:
                values = []
                for cls, new, free in rows:
                    k = 1 if counted_exactly_by_watch_all(cls) else scale
                    values.append((cls, (new - free) * k, new * k, free * k))
            # (only for the types counted by it: more would be bookkeeping of ours that grows)
            sampled = {key for key, state in self._types.items() if state.by_watch}
        estimates: dict[int, tuple[int, int | None, int | None]] = {}
        if census is None:
            self._estimates = estimates  # (filled below; _nominate adds its type's)
        matched = 0  # of the types read, those with a state in ``watched`` after their step
        least_step = least_builtin_step(self.threshold, self.increases) if census is None else self.threshold
        # (read once, not once a type: the loop runs for every type there is)
        monitored, watched, samples, calm = self._types, self._watch, self._samples, self.calm_samples
        for cls, value, allocations, freed in values:
            key = id(cls)
            if key in monitored or key in _OWN_CLASSES:
                if key in sampled:
                    estimates[key] = (value, allocations, freed)
                if key in watched:
                    matched += 1
                continue  # monitored already, or the monitor's own bookkeeping
            matched += 1  # (undone below where it has no state after all)
            state = watched.get(key)
            if state is None or state.ref() is not cls:
                # A type counted exactly rises by its own noise (rise_step);
                # estimates and census counts by the threshold.
                is_class = counted_exactly_by_watch_all(cls) and not is_builtin_type(cls)
                by_noise = census is None and (is_class or self._watching_sample == 1)
                try:
                    state = self._watch.add(key, cls, value, by_noise, from_zero=by_noise)
                    state.builtin = not is_class
                    state.drifts = drifts(cls)
                except TypeError:  # a type that refuses weak references
                    matched -= 1
                    continue
                state.count_new(allocations)
                if key in self._recycled_ids:
                    # monitored before and given back: its count since watch-all began
                    # is old news, not a first rise
                    self._recycled_ids.discard(key)
                    state.restart_at(value)
                    continue
                if not state.from_zero:
                    continue
                high_water = state.high_water  # (0, no increase yet: nothing to forget)
            else:
                high_water = state.advance(value, allocations, samples, calm)
            if value <= high_water + (least_step if state.drifts else 1.0 if state.by_noise else self.threshold):
                continue  # within the least margin it can have: no rise (most types, every sample)
            noise_step = None
            if state.by_noise:
                margin = noise_step = rise_step(state.recent)
                if state.drifts:
                    margin = max(margin, least_builtin_step(self.threshold, self.increases))
            else:
                margin = self.threshold
                if census is None and self._watching_sample > 1:
                    # An estimate moves by sampling noise alone: a rise must stand
                    # out of the type's recent changes by three deviations.
                    noise = state.noise()
                    if noise is None:
                        continue
                    margin += 3 * noise
            if value > state.high_water + margin:
                state.high_water = value
                state.increases += 2 if state.increases == 0 and _began_a_sample_ago(state, margin, noise_step) else 1
                state.last_increase = self._samples
                if state.increases >= 2:
                    self._watch.risen.add(key)
                if state.increases >= self.discover_after and self._watch_promotions < self.max_watch_promotions:
                    matched -= 1  # (its state leaves ``watched``)
                    self._nominate(cls, state, None if census is not None else (value, allocations, freed))
        if len(watched) != matched:
            seen = {id(cls) for cls, *_ in values}
            for key in [k for k in watched if k not in seen]:
                del watched[key]  # the type died

    def _nominate(
        self,
        cls: type,
        watched: _WatchState,
        estimate: tuple[int, int | None, int | None] | None,
        counted: bool = True,
    ) -> _TypeState:
        """Monitor a type watch-all saw grow, with the evidence it gathered. ``counted``:
        nominated before this sample's counts are read (discovery), so that its history
        begins with watch-all's last value; not so for a root a verification nominates."""
        key = id(cls)
        watch_growth = growth_per_sample(watched.recent[-4:])
        increases = watched.increases  # (read before its row is given back to the table)
        if estimate is not None and cls not in self.tracker.capture:
            # Counting every object of a type through the tracker would cost the app
            # as much as the hunt itself (a dict, or a class made by the thousand a
            # second): it stays counted by watch-all (exactly, or by its estimate when
            # it samples a built-in), and the tracker tables one of its objects in
            # object_sample (see _sampling) while they are verified or analysed.
            nominated = _TypeState(cls, self.threshold, self.history, "watch_all", False)
            nominated.by_watch = True
            nominated.new_per_sample = watched.new_per_sample
            nominated.watch_growth = watch_growth
            nominated.watched_lives = watched.recent_values()
            if counted:
                nominated.watched_lives.pop()  # (this sample's value: its history's first)
            if not nominated.builtin:
                # a class is tabled from now on (first: at the engine's cap on tracked
                # types it raises, and nothing is recorded)
                nominated.object_sample = self._sampling(nominated)[1]
                self.tracker.track(cls, sample_objects=nominated.object_sample)
            del self._watch[key]
            self._types[key] = nominated
            self._estimates[key] = estimate
            self._generation += 1
        else:
            # (census; or a type the tracker counts already, for a user who shares their
            # tracker with the monitor: its counting is theirs, left as they set it)
            del self._watch[key]
            self.start_monitoring(cls)
            nominated = self._types[key]
            nominated.watch_growth = watch_growth
        nominated.source = "watch_all"
        # (a census counts every live object of a class: it rises by its own drops too)
        nominated.by_noise = watched.by_noise or (self.mode == "census" and not nominated.builtin)
        if self.mode == "exact" and not (nominated.by_watch and nominated.builtin):
            # the tracker's table of its objects starts now; (this sample's number is
            # not counted yet: it is verified at the next one, not in this pass)
            nominated.verify_since = self._samples + 1
        nominated.nominated_at = self._samples
        # the evidence watch-all gathered carries over: its increases count, and its
        # growth and rate tell how many of its objects the tracker need table (see _sampling)
        nominated.increases = increases
        # (its last rise, as watch-all saw it: a root nominated by a verification, after
        # this sample's count, rose no later than that)
        nominated.last_growth_sample = watched.last_increase if watched.last_increase >= 0 else self._samples
        logger.info("memtracker_web: watch-all found %s growing; monitoring it", nominated.name)
        return nominated

    def _grows_with(self, state: _TypeState) -> list[str]:
        """The other monitored types that rose in most of the samples this one
        rose in lately (at least three): a leaked object drags others along,
        and the leak is one, whichever of them is reported. Types the user
        named first, then classes, then built-ins; the most shared rises first."""
        mine = set(state.rises)
        if len(mine) < 3:
            return []
        together = []
        for other in self._types.values():
            shared = len(mine.intersection(other.rises))
            if other is not state and other.ref() is not None and shared >= 3 and shared * 3 >= len(mine) * 2:
                together.append((other.rank(), -shared, other.name))
        return [name for _, _, name in sorted(together)]

    def _report(self, state: _TypeState, cls: type, now: float, stats: dict) -> dict:
        report = {
            "type": state.name,
            "live": state.live,
            "increases": state.increases,
            "detected_at": now,
            "top_paths": stats["top_paths"],
            "grows_with": self._grows_with(state),
        }
        if state.verdict is not None:
            report["verdict"] = state.verdict  # what keeps its new objects, from the verification
        if (retainers := state.retainers_for_report()) is not None:
            report["retainers"] = retainers  # who held them, when someone asked last
        if self.mode != "exact":
            report["note"] = "no call paths in census mode: " + engine.engine_status()["reason"]
        return report

    def _one_report_a_leak(self, due: list[tuple[_TypeState, dict]]) -> list[dict]:
        """The reports ``due`` this sample, less those of a built-in made by the same
        statement as another built-in reported for the same leak. ``{"a": {"b": [n]}}``
        makes two dicts and a list: kept in a module list, each list is held through its
        new dicts, and the list is their growth (_root_of). Kept one level deeper, in a
        dict of lists, in Starlette's ``app.state`` or in an object inside a module list,
        a list is met above the new lists too, a structure of lists for all the search
        can tell (a tree's nodes keep lists of nodes), and both types were verified and
        reported, with the same line. So a verified built-in that watch-all found is
        another's leak when both hold:

        - their reports' top paths are the same in the app's frame and the 3 callers
          after it (one statement in one call; the frames before it are the library
          functions the statement called, ``uuid.uuid4().hex`` for a str, and push its
          last callers past the path's depth), and whole paths with a frame of the
          app's: not cut short (a full call tree books an allocation on a shallower
          node) nor all a library's frames;
        - its verdict's chain goes through the other's to an object of the other's type
          and on (``USERS -> dict['users'] -> list[i] -> dict`` for the records' dicts,
          ``USERS -> dict['users'] -> list[i] -> dict['a'] -> list`` for their lists):
          its objects are held by the other's. ``json.loads`` of a request's body, its
          dicts kept in one global (or under one key) and its lists in another, is two
          leaks.

        It is the leak of the nearest such type (the longest chain it goes through),
        and so on up to one that is no other's: reported once, under that type, the
        others named in the report's ``grows_with`` and in their own ``same_leak_as``
        (a report of one kept before is withdrawn, with a warning). Another type's
        report kept from an earlier sample counts too, while that type still leaks
        (_still_reports), as does a folded type's last report while it still rises:
        the types rise past their margins in different samples, far apart in a slow
        leak. Not a class (a class outranks the built-ins it drags along), nor a type
        the user named, nor one whose verdict names no chain.

        The keys of a dict whose values leak are that leak too, whatever line made each
        (``cache[uuid.uuid4().hex] = render(...)``, or keys the server made, with no
        frame of the app's): a built-in found as above whose chain ends at the keys of
        the dict another verified leak's chain (a class's too) ends at the values of,
        by the same steps, none of them a position or an unnamed key (``CACHE ->
        dict(a key) -> str`` beside ``CACHE -> dict[key] -> float``), is reported as
        the values' type, which says what the leak keeps, while that one reports. The
        keys of a leak's own objects are folded by the first rule when one statement
        made both; made at another line, they may be the keys of an old object of that
        type (``SHARDS[0][path] = True`` beside ``SHARDS.append({...})``), another leak."""
        if not due and all(state.same_leak_as is None for state in self._types.values()):
            return []
        by_name = {state.name: state for state in self._types.values()}
        kept_reports = {kept["type"]: kept for kept in self._leaks}
        due_names = {state.name for state, _ in due}
        candidates = list(due)
        if len(due) + len(kept_reports) >= 2:
            for name, kept in kept_reports.items():
                state = by_name.get(name)
                if state is not None and name not in due_names and self._still_reports(state, kept_reports):
                    candidates.append((state, kept))
        # (a type folded before, not due now: its report then, while it still rises)
        for name, report in list(self._folded_reports.items()):
            state = by_name.get(name)
            if state is None:
                del self._folded_reports[name]  # (no longer monitored)
            elif name not in due_names and self._still_rises(state):
                candidates.append((state, report))
        groups: dict[tuple[str, ...], list[tuple[list[str], _TypeState]]] = {}
        line: dict[str, str] = {}  # (the app's line that made them, for the log)
        keys: list[tuple[list[str], _TypeState]] = []  # the foldable whose objects are a dict's keys
        values: list[tuple[list[str], _TypeState]] = []  # any leak's, a class's too, kept in a chain
        reported: dict[str, dict] = {}
        for state, report in candidates:
            if (chain := _verdict_chain(state)) is None:
                continue
            if _foldable(state):
                reported[state.name] = report
                if (top := _whole_top_path(report)) is not None:
                    at = top["app_frame"]
                    groups.setdefault(tuple(top["path"][at : at + _SAME_CALL_FRAMES]), []).append((chain, state))
                    line[state.name] = top["path"][at]
                if _ends_at_a_key(chain):
                    keys.append((chain, state))
                    if state.name not in line:
                        paths = report["top_paths"]
                        line[state.name] = paths[0]["path"][0] if paths and paths[0]["path"] else "a place not known"
            if state.verified and state.analysing and not _ends_at_a_key(chain):
                values.append((chain, state))
        # each folded type => the type whose objects hold its own (or keep them as keys), and why
        nearest: dict[str, tuple[str, str]] = {}
        for group in groups.values():
            for chain, state in group:
                holders = [(len(c), other.name) for c, other in group if other is not state and _held_through(chain, c)]
                if holders:
                    holder = min(holders)[1]
                    nearest[state.name] = (
                        holder,
                        f"made by the same statement as {holder} ({line[state.name]}), and held by its objects",
                    )
        # The keys of a dict whose values leak are that leak, whatever line made each
        # (``cache[uuid.uuid4().hex] = render(...)``): the value says what the leak keeps.
        # (Keys of a leak's own objects made by the same statement are folded above; made
        # elsewhere, they may be the keys of an old object of that type, another leak.)
        for chain, state in keys:
            if state.name in nearest:
                continue
            if beside := sorted(other.name for c, other in values if other is not state and _key_beside(chain, c)):
                why = f"made at {line[state.name]}, and kept as the keys of the dict that keeps {beside[0]}'s objects"
                nearest[state.name] = (beside[0], why)
        folded: dict[str, str] = {}  # each folded type => the type it is reported as
        for name in nearest:  # (a tuple key's ints: held by the tuples, the keys beside the values)
            keeper, seen = nearest[name][0], {name}
            while keeper in nearest and keeper not in seen:
                seen.add(keeper)
                keeper = nearest[keeper][0]
            # (no cycle can form: each step is to a shorter chain, or off the keys; and the
            # type it ends at must report: a folded type's last report stands for no report)
            if keeper not in seen and (keeper in due_names or self._still_reports(by_name.get(keeper), kept_reports)):
                folded[name] = keeper
        for state in self._types.values():
            keeper_name = folded.get(state.name)
            if keeper_name is not None:
                self._folded_reports[state.name] = reported[state.name]
                if state.same_leak_as != keeper_name:
                    state.same_leak_as = keeper_name
                    self._withdraw_reports(state, f"{nearest[state.name][1]}: one leak, reported as {keeper_name}")
            elif state.same_leak_as is not None and (
                state.name in due_names or not self._still_reports(by_name.get(state.same_leak_as), kept_reports)
            ):
                state.same_leak_as = None  # reported on its own, or its leak's type reports no more
                self._folded_reports.pop(state.name, None)
        reports = []
        for state, report in due:
            if state.name in folded:
                continue
            together = report["grows_with"]
            together.extend(
                other.name
                for other in self._types.values()
                if other.same_leak_as == state.name and other.name not in together
            )
            reports.append(report)
        return reports

    def _still_rises(self, state: _TypeState) -> bool:
        """Whether ``state``, folded into another's leak, still stands for part of it: a
        leak verified and analysed that rose within ``calm_samples``."""
        return state.verified and state.analysing and self._samples - state.last_growth_sample <= self.calm_samples

    def _still_reports(self, state: _TypeState | None, kept_reports: dict[str, dict]) -> bool:
        """Whether ``state``'s report stands for the built-ins one statement makes with it
        (see _one_report_a_leak): a leak verified, analysed and reported (its report kept,
        in ``kept_reports``), no other's, and still rising (within ``calm_samples``; one
        calm longer ends its analysis, and a type whose global stopped growing beside a
        cache, no longer reported, hides nothing for long)."""
        return (
            state is not None and self._still_rises(state) and state.same_leak_as is None and state.name in kept_reports
        )

    def _publish_leak(self, report: dict) -> None:
        # A leaking type is reported at every growth: it keeps its latest report,
        # with how many it had and since when (copies of each would be the monitor's
        # own growth, every sample, as long as the leak lasts).
        # (The count is the monitor's own, not read back from a report a callback was given.)
        with self._lock:
            name = report["type"]
            count, first = self._leak_counts.get(name, (0, report["detected_at"]))
            report["reports"] = count + 1
            report["first_detected_at"] = first
            for index, kept in enumerate(self._leaks):
                if kept["type"] == name:
                    del self._leaks[index]
                    break
            self._leaks.append(report)  # (one that falls off the deque's end takes its count along:)
            self._leak_counts[name] = (count + 1, first)
            if len(self._leak_counts) > len(self._leaks):
                kept_names = {kept["type"] for kept in self._leaks}
                for gone in [n for n in self._leak_counts if n not in kept_names]:
                    del self._leak_counts[gone]
        lines = [f"MEMORY LEAK DETECTED: {report['type']}: {report['live']} live, grew {report['increases']} times"]
        if report.get("verdict"):
            lines.append(f"  {report['verdict']}")
        if report["grows_with"]:
            lines.append(f"  grows with: {', '.join(report['grows_with'])}")
        for path in report["top_paths"]:
            lines.append(f"  {path['count']} retained ({path['total_count']} allocated) from:")
            lines.extend(f"    <- {frame}" for frame in path["path"])
        if report.get("note"):
            lines.append(f"  ({report['note']})")
        logger.warning("\n".join(lines))
        if self.on_leak is not None:
            try:
                self.on_leak(dict(report))  # (a copy: what the callback does to it stays its own)
            except Exception:
                logger.exception("memtracker_web: on_leak callback failed")

    # -- background thread ---------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def start(self) -> None:
        """Sample every ``interval`` seconds in a daemon thread (idempotent)."""
        self._after_fork_check()  # a parent's thread state must not leak into the child
        with self._lock:
            self._wanted_running = True
            if self.running:
                return
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop_event,), name="memtracker-monitor", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; counting goes on until close()."""
        self._after_fork_check()
        with self._lock:
            self._wanted_running = False
            thread, self._thread = self._thread, None
            self._stop_event.set()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout=max(5.0, self.interval))

    def close(self) -> None:
        """Stop everything: thread, watch-all, the tracker's capture."""
        self.stop()
        with self._lock:
            if self._watching:
                engine._tracker.watch_stop()
                self._watching = False
            self.tracker.stop()
            for state in self._types.values():
                state.held_new = None  # (the app's objects)

    def _run(self, stop_event: threading.Event) -> None:
        while True:
            try:
                self.sample()
            except Exception:
                logger.exception("memtracker_web: a monitor sample failed; the monitor keeps going")
            if stop_event.wait(self.interval):
                return

    def _after_fork_check(self) -> None:
        """In a forked child, restart the thread lazily (an endpoint started as the
        app loaded restarts it at once: Endpoint.start_at_load)."""
        if self._pid != os.getpid():
            self._reinit_after_fork()

    def _reinit_after_fork(self) -> None:
        self._pid = os.getpid()
        # locks held by threads that did not survive the fork would never be released
        # (the tracker's and the capture's: their own fork hooks, which know whether the
        # forking thread holds them)
        self._lock = threading.RLock()
        self._thread = None
        self._stop_event = threading.Event()
        if self._wanted_running:
            self.start()

    def ensure_running(self) -> None:
        """Start the thread if it should run but does not (after a fork)."""
        self._after_fork_check()
        if self._wanted_running and not self.running:
            self.start()

    # -- reading -------------------------------------------------------------

    def _type_entry(
        self, state: _TypeState, cls: type | None, top: int | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        stats = None
        if state.analysing and cls is not None and self.mode == "exact":
            stats = self._stats_as_reported(state, cls, top)
        entry = {
            "type": state.name,
            "live": state.live,
            "allocations": state.allocations,
            "frees": state.frees,
            "high_water": state.high_water if state.high_water is not None else state.live,
            "increases": state.increases,
            "analysing": state.analysing,
            "source": state.source,
            "sampled": state.by_watch and state.builtin and self._watching_sample > 1,
            "verdict": state.verdict,
            "same_leak_as": state.same_leak_as,
            "threshold": state.threshold,
            # (a sampled built-in is never measured: None and 0)
            "live_bytes": state.live_bytes,
            "live_bytes_measured": state.bytes_measured,
            # points are never mutated after they are appended: share them
            "history": state.history.history(),
            "top_paths": [] if stats is None else stats["top_paths"],
        }
        if stats is not None:
            entry["call_tree"] = stats["call_tree"]
            entry["estimated"] = stats["estimated"]
        return entry, stats

    def snapshot(self, top_paths: int = 5) -> dict[str, Any]:
        """JSON-serialisable state for every exporter (see docs/CONTRACTS.md)."""
        self._after_fork_check()
        with self._lock:
            # Exporters (workers view, multiprocess metrics, the page) each ask after
            # every sample: build the per-type part (call-path stats) once per sample.
            key = (self._samples, top_paths, self._generation)
            if self._types_cache is None or self._types_cache[0] != key:
                types = []
                for state in self._types.values():
                    cls = state.ref()
                    if cls is None:
                        continue
                    entry, _ = self._type_entry(state, cls, top_paths)
                    types.append((state.growth(), state.name, entry))
                types.sort(key=lambda t: (-t[0], t[1]))
                self._types_cache = (key, [entry for _, _, entry in types])
            snap: dict[str, Any] = {
                "mode": self.mode,
                "engine": engine.engine_status(),
                "pid": os.getpid(),
                "sampled_at": self._sampled_at,
                "interval": self.interval,
                "sample_duration_seconds": self._sample_duration,
                "samples": self._samples,
                "threshold": self.threshold,
                "increases": self.increases,
                "watch_all": self.watch_all,
                "types": list(self._types_cache[1]),
                "leaks": list(self._leaks),
                "restarts": list(self._restarts),
                "process": {"resident_bytes": self._resident.last_value(), "history": self._resident.history()},
                "config_errors": list(self._config_errors),
            }
            if self.mode == "census":
                snap["census"] = (
                    dict(self._census_info)
                    if self._census_info
                    else {"cost_seconds": None, "objects_scanned": None, "blind_spots": BLIND_SPOTS}
                )
            elif self.watch_all:
                rate = self._watching_sample if self._watching else self.watch_sample
                snap["watch"] = {
                    "candidates": len(self._watch),
                    "promoted": self._watch_promotions,
                    "recycled": self._watch_recycled,
                    "held_off": {
                        "times": self._held_off[0],
                        "seconds": round(self._held_off[1], 6),
                        "longest_seconds": round(self._held_off[2], 6),
                    },
                    "sample": rate,
                    "estimated": rate > 1,
                }
            return snap

    def type_detail(self, name: str) -> dict[str, Any] | None:
        """One monitored type in full: every stored top path and the hotspots."""
        self._after_fork_check()
        with self._lock:
            for state in self._types.values():
                if state.name != name:
                    continue
                cls = state.ref()
                entry, stats = self._type_entry(state, cls, None)
                entry["hotspots"] = [] if stats is None else stats["hotspots"]
                entry["retainers"] = state.retainers
                return entry
        return None

    def find_retainers(
        self, name: str, *, sample: int = RETAINER_SAMPLE, budget_seconds: float = RETAINER_BUDGET
    ) -> dict[str, Any]:
        """Who keeps the live objects of the monitored type ``name`` alive: retention
        chains from up to ``sample`` of them (see ``retention.find_retainers``), kept for
        the type page. KeyError: no such type; LookupError subclass RetentionUnavailable
        (with why) when its objects cannot be sampled; RetentionBusy when another search runs."""
        self._after_fork_check()
        with self._lock:
            state = next((s for s in self._types.values() if s.name == name), None)
            cls = state.ref() if state is not None else None
            if state is None or cls is None:
                raise KeyError(name)
            if self.mode != "exact":
                raise RetentionUnavailable(
                    "retention chains need the exact engine: census mode keeps no table of live objects to start from"
                )
            if not self.tracker.is_tracking(cls):
                raise RetentionUnavailable(
                    f"{name} is counted by watch-all, which keeps no table of its objects to start from "
                    "(the tracker tables them only while they are verified or analysed): POST /track it first"
                )
        engine.clear_type_cache()  # (see _search_for_pending)
        try:
            objects = self.tracker.capture.sample(cls, sample)
        except RuntimeError as exc:
            raise RetentionUnavailable(str(exc)) from None
        result = find_retainers(objects, budget_seconds=budget_seconds, with_caches=True)
        del objects
        result["computed_at"] = round(time.time(), 3)
        caches = tuple(result.pop("lru_caches", ()))
        with self._lock:
            state.filled_caches, state.key_fillings = caches, None
            state.retainers = result
            state.report_retainers = result  # (the reports below and to come show this one)
            self._types_cache = None  # (the snapshot's paths are ordered by what it found)
            for report in reversed(self._leaks):  # the type's latest report shows it too
                if report.get("type") == name:
                    report["retainers"] = result
                    break
        return result


# Live objects measured per tracked type for its bytes estimate, and how often (in samples).
BYTES_SAMPLE = 64
BYTES_EVERY = 10


def _page_size() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


# Read once: os.sysconf with a name can keep a new string each call (CPython 3.13-3.15),
# which a monitor sampling every second would show as its own leak.
_PAGE_SIZE = _page_size()


def resident_bytes() -> int | None:
    """The process's resident memory now, from /proc (Linux); None elsewhere."""
    if _PAGE_SIZE is None:
        return None
    try:
        # (os-level calls: a file object's layers cost more than the read, every sample;
        # opened each time: "self" is resolved at open, and a forked child is another)
        fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 256)
        finally:
            os.close(fd)
        return int(text.split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


# The monitor's own bookkeeping grows with what it watches: never a leak of the app's.
_OWN_CLASSES = frozenset(id(cls) for cls in (_TypeState, _WatchState, History, PointRing))

_after_fork_monitors: weakref.WeakSet[MemoryMonitor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Each monitor restarts at its next use; the default monitor's lock is made anew: a
    thread that held it when another forked does not exist in the child, and its first
    get_default_monitor() would wait for ever (a hold of the forking thread's own lets
    go of the old one)."""
    global _default_lock
    _default_lock = threading.Lock()
    for monitor in list(_after_fork_monitors):
        if monitor._pid != os.getpid():  # (an endpoint's fork hook may have restarted it already)
            monitor._pid = -1  # forces _reinit_after_fork on next use (not here: no threads yet)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the process-wide default monitor (used by the middleware) ---------------

_default_monitor: MemoryMonitor | None = None
_default_lock = threading.Lock()


def get_default_monitor(
    *,
    track: Iterable[type | str] = (),
    watch_all: bool | None = None,
    threshold: int | None = None,
    increases: int | None = None,
    interval: float | None = None,
    watch_sample: int | None = None,
) -> MemoryMonitor:
    """The process-wide monitor, created on first call.

    Later calls return the same monitor, add their ``track`` types and apply
    the options they name (None leaves an option as it is; ``watch_all=False``
    does not turn off a watch-all another call turned on). The caller starts it
    (``start()`` is idempotent).

    :param track: Classes or ``'module.QualName'`` names to monitor. Default: ``()``.
    :param watch_all: Count every type, so that growing types are found without being named. Default:
        ``None``, which keeps the default monitor's (``False`` when it is created).
    :param threshold: Growth above a type's high-water mark that counts as an increase (0 counts every rise;
        the endpoint's options ask for at least 1). Default: ``None``, which keeps the default monitor's
        (``100`` when it is created).
    :param increases: Increases before a leak report; call-path analysis starts then. Default: ``None``, which
        keeps the default monitor's (``10`` when it is created).
    :param interval: Seconds between samples (above 0, at most a day). Default: ``None``, which keeps the
        default monitor's (``60.0`` when it is created).
    :param watch_sample: Watch-all counts about one object in this many and scales (1: every object, exactly;
        at most 65536). Default: ``None``, which keeps the default monitor's (``1`` when it is created).
    """
    global _default_monitor
    # watch_all is applied apart: a later False does not turn it off
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("threshold", threshold),
            ("increases", increases),
            ("interval", interval),
            ("watch_sample", watch_sample),
        )
        if value is not None
    }
    with _default_lock:
        if _default_monitor is None:
            if watch_all is not None:
                given_all: dict[str, Any] = {**given, "watch_all": watch_all}
                _default_monitor = MemoryMonitor(**given_all)
            else:
                _default_monitor = MemoryMonitor(**given)
        monitor = _default_monitor
        if watch_all:
            monitor.watch_all = True  # (False leaves it on: another caller asked for it)
        for name, value in given.items():  # (a changed watch_sample restarts watch-all)
            setattr(monitor, name, options.OPTIONS[name].take(value, options.MONITOR))
    for cls in track:
        start_monitoring_logged(monitor, cls)
    return monitor


def start_monitoring_logged(monitor: MemoryMonitor, cls: type | str) -> bool:
    """start_monitoring() for configured types: a bad name is logged, not raised
    (it would otherwise surface in whichever request started the monitor)."""
    try:
        monitor.start_monitoring(resolve_type(cls) if isinstance(cls, str) else cls)
    except (TypeError, ValueError) as exc:  # TypeNameError is a ValueError
        logger.error("memtracker_web: cannot monitor %r: %s", cls, exc)
        errors = getattr(monitor, "_config_errors", None)  # (a monitor of another kind may have none)
        if errors is not None:
            with monitor._lock:
                errors.append({"type": str(cls)[:200], "error": str(exc)[:500]})
        return False
    return True


def reset_default_monitor() -> None:
    """Close and forget the default monitor (tests, reloads)."""
    global _default_monitor
    with _default_lock:
        monitor, _default_monitor = _default_monitor, None
    if monitor is not None:
        monitor.close()
