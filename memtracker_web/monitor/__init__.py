"""The monitor: samples, growth, escalation to call paths, snapshots; retention on request.

``memtracker_web.monitor.MemoryMonitor`` and ``get_default_monitor`` are where they
always were; the code is in :mod:`.monitor` (the monitor), :mod:`.history` (a type's
points and growth) and :mod:`.retention` (what keeps a type's objects alive).

The names are imported on first use: the layers above import :mod:`.history`
(through JSON text) without paying for the monitor until they build one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import monitor

        return getattr(monitor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
