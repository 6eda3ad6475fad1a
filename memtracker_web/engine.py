"""Which engine this interpreter can run, and why.

The exact engine is the C extension's hook on CPython's reference tracer
(PyRefTracer, CPython >= 3.13.3). Everywhere else ``import memtracker_web``
still works; ``engine_status()`` says why the engine cannot run and
``Capture.start()`` raises ``EngineUnavailable`` with the interpreter, the
reason and the fix.
"""
from __future__ import annotations

import platform
import sys
from typing import Any

try:
    from . import _tracker
except ImportError as exc:  # PyPy, or a source tree whose extension was not built
    _tracker = None
    _IMPORT_ERROR = f"the C extension memtracker_web._tracker is not available ({exc})"

    class EngineUnavailable(RuntimeError):
        """The exact engine (CPython's reference tracer) cannot run on this interpreter."""

else:
    _IMPORT_ERROR = ""
    EngineUnavailable = _tracker.EngineUnavailable

EngineUnavailable.__module__ = "memtracker_web"

DISPLACED_REASON = (
    "another tool replaced memtracker_web's reference tracer (tracemalloc.start() does this; "
    "CPython has one tracer slot): counts stopped updating when it happened; "
    "stop every capture and start again once that tool is stopped"
)


def check_watch_sample(value: Any) -> int:
    """watch_sample as given (the engine counts one object in it, 1 to 65536),
    or a ValueError that says what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
        raise ValueError(f"watch_sample must be an integer from 1 (every object) to 65536, got {value!r}")
    return value


def interpreter() -> str:
    """``CPython 3.13.5`` (and ``free-threaded`` when it is)."""
    name = f"{platform.python_implementation()} {platform.python_version()}"
    if getattr(sys, "_is_gil_enabled", None) is not None and not sys._is_gil_enabled():
        name += " (free-threaded)"
    return name


def _unavailable_reason() -> str:
    if platform.python_implementation() != "CPython":
        return (f"{platform.python_implementation()} has no CPython reference tracer; "
                "use CPython 3.13.3 or newer")
    if _tracker is None:
        return _IMPORT_ERROR + "; reinstall memtracker-web with a C compiler available"
    return _tracker.engine_state()["reason"]


def engine_status() -> dict[str, Any]:
    """A mapping: available (bool), reason (str), displaced (bool), python (str), installed (bool),
    filter (str: how the hook picks the events it looks at while installed: "type-marks", the
    default, or "byte-filter" where no type watcher id or audit hook was to be had; "none" when
    not installed)."""
    state = _tracker.engine_state() if _tracker is not None else {}
    available = bool(state.get("available")) and platform.python_implementation() == "CPython"
    displaced = bool(state.get("displaced"))
    if not available:
        reason = _unavailable_reason()
    elif displaced:
        reason = DISPLACED_REASON
    else:
        reason = "exact: CPython's reference tracer reports every object creation and destruction"
    return {
        "available": available,
        "reason": reason,
        "displaced": displaced,
        "installed": bool(state.get("installed")),
        "filter": state.get("filter", "none") if available else "none",
        "python": interpreter(),
    }


def require_engine() -> None:
    """Raise EngineUnavailable naming the interpreter, the reason and the fix."""
    status = engine_status()
    if not status["available"]:
        raise EngineUnavailable(f"{status['python']}: {status['reason']}")
