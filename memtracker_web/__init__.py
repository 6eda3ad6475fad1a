"""memtracker-web: find memory leaks in running Python web apps.

Exact per-type live-object counts from CPython's reference tracer (3.13.3+),
allocation call paths for the types you choose, a monitor that notices growth
and escalates to call-path analysis by itself, and exporters for Prometheus and
a /debug/memory page. Frameworks are optional and never imported here.
"""

from __future__ import annotations

from .core.capture import Allocations, Capture
from .core.engine import EngineUnavailable, engine_status
from .core.naming import TypeNameError, resolve_type, type_name
from .core.tracker import Frame, Tracker, count, default_tracker, stats, track, track_with_analysis, untrack

__version__ = "0.1.0"

__all__ = [
    "Allocations",
    "Capture",
    "EngineUnavailable",
    "Frame",
    "MemoryMonitor",
    "Tracker",
    "TypeNameError",
    "count",
    "default_tracker",
    "engine_status",
    "resolve_type",
    "stats",
    "track",
    "track_with_analysis",
    "type_name",
    "untrack",
]


def __getattr__(name: str):
    # The monitor pulls in threading and logging setup; load it on first use.
    if name == "MemoryMonitor":
        from .monitor.monitor import MemoryMonitor

        return MemoryMonitor
    raise AttributeError(f"module 'memtracker_web' has no attribute {name!r}")
