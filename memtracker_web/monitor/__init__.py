"""The monitor: samples, growth, escalation to call paths, snapshots; retention on request.

``memtracker_web.monitor.MemoryMonitor`` and ``get_default_monitor`` are where they
always were; the code is in :mod:`.monitor` (the monitor), :mod:`.history` (a type's
points and growth) and :mod:`.retention` (what keeps a type's objects alive).
"""
from .monitor import (
    MemoryMonitor,
    RetentionUnavailable,
    counted_exactly_by_watch_all,
    get_default_monitor,
    is_builtin_type,
    reset_default_monitor,
    start_monitoring_logged,
)

__all__ = [
    "MemoryMonitor",
    "RetentionUnavailable",
    "counted_exactly_by_watch_all",
    "get_default_monitor",
    "is_builtin_type",
    "reset_default_monitor",
    "start_monitoring_logged",
]
