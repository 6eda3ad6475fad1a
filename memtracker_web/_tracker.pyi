"""Types of memtracker_web._tracker (memtracker_web/_tracker.c): the reference-tracer engine.

Written from the C method tables (mt_methods, CaptureCore_methods, CaptureCore_getset)
and the values each function builds; tests/test_stubs.py checks that the names here and
the module's match.
"""

from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any, TypedDict, final

HAVE_TRACER: int  # 1 where the headers have PyRefTracer (3.13+), else 0
MAX_DEPTH: int
MAX_SLOTS: int
MAX_NODES: int
REFERRERS_SEE_FROZEN: int
INTERFACE: str  # a fingerprint of this stub, compiled in (see setup.py)

class EngineUnavailable(RuntimeError):
    """The exact engine (CPython's reference tracer) cannot run on this interpreter."""

class EngineState(TypedDict):
    available: bool
    reason: str
    installed: bool
    displaced: bool
    running_captures: int
    watching: bool
    filter: str  # "type-marks", "byte-filter" or "none"
    marked_types: int
    reassignment_targets: int
    hook: str
    prior_tracer: str  # "none", "chained" or "replaced"
    selftest: str  # "passed", "failed" or "not run"
    tracer_slot: str  # "empty", "ours" or "other"

class WatchStatistics(TypedDict):
    types: int
    bytes: int
    lost: int
    resurrected: int  # deaths not counted again: the object's finaliser had resurrected it
    dying_resets: int  # times the table of finalising objects' addresses started over
    sample: int  # 0 when watch-all is off

class CaptureStatistics(TypedDict):
    tracked_objects: int
    object_table_capacity: int
    object_table_bytes: int
    call_tree_nodes: int
    call_tree_bytes: int
    other_bytes: int
    queue_length: int
    queue_capacity: int
    dropped_events: int
    total_bytes: int

class TreeMeta(TypedDict):
    depth: int
    sample_every: int
    max_nodes: int
    overflow: int
    pruned_nodes: int
    pruned_allocations: int
    unattributed: int

class ProbeCounts(TypedDict):
    events: int
    removed: int
    after_removed: int
    installed: bool

class SelftestResult(TypedDict):
    created: int
    destroyed: int
    completed: bool
    threaded: bool
    displaced: bool

# (parent, filename, lineno, function, total, retained, truncated); the root is
# (-1, "", 0, "", total, retained, truncated).
TreeNode = tuple[int, str, int, str, int, int, bool]

@final
class CaptureCore:
    """One capture's tracked types, per-object table and counts (see memtracker_web.Capture)."""

    def __new__(cls, queue_size: int = ...) -> CaptureCore: ...
    @property
    def running(self) -> bool: ...
    @property
    def missed_events(self) -> bool: ...
    def track(self, type: type, callback: bool = False, object_sample: int = 0) -> int: ...
    def untrack(self, type: type, /) -> bool: ...
    def analyse(
        self, type: type, depth: int = 10, sample_every: int = 1, max_nodes: int = 10000, object_sample: int = 1
    ) -> None: ...
    def unanalyse(self, type: type, /) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def clear(self) -> None: ...
    def counts(self, type: type, /) -> tuple[int, int, int] | None: ...  # (new, free, lost)
    def live(self, type: type, /) -> int: ...
    def items(self) -> list[tuple[type, int, int, int, bool]]: ...  # (type, new, free, lost, analysing)
    def slot_of(self, type: type, /) -> int | None: ...
    def object_sample(self, type: type, /) -> int | None: ...
    def drain(self) -> list[tuple[int, int, int, int]]: ...  # (slot, kind, seq, leaf)
    def pending(self) -> int: ...
    def tree(self, type: type, /) -> tuple[list[TreeNode], TreeMeta] | None: ...
    def tree_update(
        self, type: type, layout: int, known: int, /
    ) -> tuple[int, int, list[tuple[int, str, int, str]], bytes, TreeMeta] | None: ...
    def path_of(self, type: type, leaf: int, /) -> list[tuple[str, int, str]] | None: ...
    def statistics(self) -> CaptureStatistics: ...
    def tree_codes(self) -> tuple[list[CodeType], list[CodeType]]: ...
    def allocation_paths(
        self, type: type, objects: list[Any], /
    ) -> tuple[list[int], dict[int, list[tuple[str, int, str]] | None]]: ...
    def tabled(self, type: type, objects: list[Any], /) -> tuple[int, int]: ...
    def sample(self, type: type, n: int, /) -> list[Any]: ...
    def sizes(self, type: type, n: int, /) -> tuple[int, int] | None: ...

def engine_state() -> EngineState: ...
def displaced() -> bool: ...
def main_interpreter() -> bool: ...
def running_frames() -> list[FrameType]: ...
def referrers(objects: list[Any], ignored: Iterable[int] | None = None, /) -> list[Any]: ...
def held_by(holder: object, objects: list[Any], keys: bool, /) -> list[Any]: ...
def referrers_until(
    objects: list[Any], ignored: Iterable[int] | None, deadline: float, /
) -> tuple[list[Any], bool]: ...
def code_parts(code: CodeType, /) -> tuple[Any, ...]: ...
def clear_type_cache() -> None: ...
def watch_start(sample: int = 1) -> None: ...
def watch_stop() -> None: ...
def watch_counts() -> list[tuple[type, int, int]]: ...  # (type, new, free)
def watch_statistics() -> WatchStatistics: ...
def set_pending_callable(fn: Callable[[], object] | None, /) -> None: ...
def _after_fork_child() -> None: ...
def _use_type_marks(on: object, /) -> None: ...
def _noop_tracer(on: object, /) -> None: ...
def _probe_tracer(on: object, /) -> ProbeCounts | None: ...  # None given: the counts; else None
def _destruction_selftest(
    depth: int = 20000, drop: int = 0, apply: bool = False
) -> SelftestResult | None: ...  # None where the engine is not compiled in
