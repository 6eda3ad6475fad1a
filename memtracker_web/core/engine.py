"""Which engine this interpreter can run, and why.

The exact engine is the C extension's hook on CPython's reference tracer
(PyRefTracer, CPython >= 3.13.3). Everywhere else ``import memtracker_web``
still works; ``engine_status()`` says why the engine cannot run and
``Capture.start()`` raises ``EngineUnavailable`` with the interpreter, the
reason and the fix.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import sysconfig
import types
from collections.abc import Iterable, Mapping
from typing import Any

# Versions this release was built and tested on with the exact engine.
TESTED = "CPython 3.13.3 to 3.15"

# Left next to the extension by setup.py when its build failed at install.
# setup.py writes it beside the extension, in memtracker_web/
_BUILD_FAILURE_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_extension_build_failed.txt")


def free_threaded() -> bool:
    """A free-threaded (no-GIL) CPython build."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _tested(version: tuple[int, ...]) -> bool:
    return (3, 13, 3) <= version < (3, 16)


def _build_failure() -> str:
    """Why the extension is missing, as setup.py recorded it ('' if it did not)."""
    try:
        with open(_BUILD_FAILURE_FILE, encoding="utf-8") as fh:
            for line in fh:
                name, python, detail = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                if not name.endswith("._tracker"):
                    continue
                said = (
                    f"the C extension could not be built when memtracker-web was installed on "
                    f"{python} (the compiler said: {detail})"
                )
                if _tested(sys.version_info[:3]) and platform.python_implementation() == "CPython":
                    return (
                        f"{said}; this CPython is one it was tested on, so the build itself is "
                        "what is missing: install a C compiler and the Python headers (gcc and "
                        "python3-dev, or the image's -dev variant) and reinstall memtracker-web"
                    )
                return (
                    f"{said}; this release was tested on {TESTED}: use one of those, or a "
                    f"memtracker-web release that supports {python}"
                )
    except OSError:
        pass
    return ""


def stale_extension(extension: Any) -> str:
    """Why ``extension`` (the loaded ``_tracker``) cannot be used with this code: it
    was built from another version's sources, its interface fingerprint (setup.py's
    ``_interface``) not that of the stub installed beside it; "" when they match, or
    when no stub is there to compare with. An editable install keeps its extension
    across a pull until it is rebuilt: called with arguments it did not take, every
    verification would fail."""
    stub = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_tracker.pyi")
    try:
        with open(stub, "rb") as fh:
            expected = hashlib.sha256(fh.read()).hexdigest()[:16]
    except OSError:
        return ""
    built = getattr(extension, "INTERFACE", None)
    if built == expected:
        return ""
    return (
        f"the C extension {getattr(extension, '__file__', 'memtracker_web._tracker')} was built from "
        f"another version of memtracker-web (its interface {built or 'unmarked'}, this code's {expected}): "
        "rebuild it (reinstall memtracker-web; in a checkout, pip install -e . or python setup.py "
        "build_ext --inplace)"
    )


SUBINTERPRETER_REASON = (
    "memtracker_web's exact engine runs in the main interpreter only, and this is a subinterpreter "
    "(mod_wsgi runs each app in one unless WSGIApplicationGroup %{GLOBAL} is set): "
    "memtracker_web counts in census mode here"
)


def subinterpreter() -> bool:
    """Whether this code runs in a subinterpreter rather than the main one.

    The engine is process-wide (CPython has one reference-tracer slot) and its
    type watcher belongs to one interpreter, so neither extension is imported
    in a subinterpreter: memtracker_web counts in census mode there and the
    main interpreter's engine is left alone."""
    for name in ("_interpreters", "_xxsubinterpreters"):  # 3.13+, older
        try:
            interpreters = __import__(name)
        except ImportError:
            continue
        current, main = interpreters.get_current(), interpreters.get_main()
        if isinstance(current, tuple):  # (id, how it was made) from 3.13 on
            current, main = current[0], main[0]
        return bool(current != main)
    return False


IN_SUBINTERPRETER = subinterpreter()

# `_tracker` is the module (typed by _tracker.pyi) or None where it cannot load;
# every use checks `_tracker is not None` first. mypy has no "module or None"
# type, hence the ignores on the None assignments.
if not free_threaded() and not IN_SUBINTERPRETER:
    try:
        from .. import _tracker
    except ImportError as exc:  # PyPy, or an install whose extension was not built
        _tracker = None  # type: ignore[assignment]
        _IMPORT_ERROR = _build_failure() or (
            f"the C extension memtracker_web._tracker is not available ({exc}); "
            "reinstall memtracker-web with a C compiler and the Python headers available"
        )
    else:
        _IMPORT_ERROR = stale_extension(_tracker)
        if _IMPORT_ERROR:
            _tracker = None  # type: ignore[assignment]
elif IN_SUBINTERPRETER:
    _tracker = None  # type: ignore[assignment]
    _IMPORT_ERROR = SUBINTERPRETER_REASON
else:
    # Importing a single-phase extension would turn the GIL back on for the whole
    # process; the engine does not run on these builds anyway (the tracer's tables
    # rely on the GIL), so neither extension is imported.
    _tracker = None  # type: ignore[assignment]
    _IMPORT_ERROR = (
        "free-threaded CPython builds are not supported by the exact engine (its tables "
        "rely on the GIL, and loading it would turn the GIL back on); use a default "
        "(GIL) build of " + TESTED
    )

if _tracker is not None:
    EngineUnavailable = _tracker.EngineUnavailable
else:

    class EngineUnavailable(RuntimeError):  # type: ignore[no-redef]
        """The exact engine (CPython's reference tracer) cannot run on this interpreter."""


EngineUnavailable.__module__ = "memtracker_web"

DISPLACED_REASON = (
    "another tool replaced memtracker_web's reference tracer (tracemalloc.start() does this; "
    "CPython has one tracer slot): counts stopped updating when it happened; "
    "stop every capture and start again once that tool is stopped"
)


REPLACED_TRACER = (
    "memtracker_web took CPython's reference-tracer slot from another tool's tracer: from CPython "
    "3.15 on that tool is told it was removed (PyRefTracer_TRACKER_REMOVED) and sees no more object "
    "creations or destructions, also after memtracker_web stops (only tracemalloc's tracer is kept, "
    "chained); start that tool after memtracker_web's captures stop if you need both"
)


def tracer_slot() -> str:
    """Who holds CPython's reference-tracer slot: "empty", "ours" or "other"."""
    return _tracker.engine_state()["tracer_slot"] if _tracker is not None else "empty"


def replaced_tracer(slot_before: str) -> bool:
    """Whether installing our tracer just replaced another tool's (3.15+, not tracemalloc's)."""
    return slot_before == "other" and _tracker is not None and _tracker.engine_state()["prior_tracer"] == "replaced"


def check_watch_sample(value: Any) -> int:
    """watch_sample as given (the engine counts one object in it, 1 to 65536),
    or a ValueError that says what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
        raise ValueError(f"watch_sample must be an integer from 1 (every object) to 65536, got {value!r}")
    return value


def running_frames() -> list[types.FrameType]:
    """The innermost frame of every thread of this interpreter running Python code.

    Not ``sys._current_frames()``: since 3.12 it walks every interpreter and makes
    frame objects of other interpreters' frames with this one's allocator, and a
    subinterpreter with a GIL of its own frees them with its own: the process
    aborts (``free(): invalid pointer``). The extension walks this interpreter's
    threads only. Where it is not loaded (a subinterpreter, a free-threaded build)
    only this thread's frame is given, short of the others'. Before 3.12 every
    interpreter shares one GIL and one allocator, and the whole walk is safe."""
    if sys.version_info < (3, 12):
        return list(sys._current_frames().values())
    if _tracker is not None:
        return _tracker.running_frames()
    return [sys._getframe(1)]


def referrers(objects: list[Any], ignored: Iterable[int] | None = None) -> list[Any] | None:
    """The objects the collector tracks that refer to any item of ``objects`` (not
    the list itself, nor one whose id is in ``ignored``: the caller's own containers),
    in one pass over the heap; or None where the extension is not loaded (then
    ``gc.get_referrers``, whose cost grows with the number of objects asked about: it
    compares every reference with each of them). See ``REFERRERS_SEE_FROZEN``.

    Also the containers the collector does not track (a tuple, or before 3.14 a
    dict, holding only objects that can be in no cycle) that hold an item no tracked
    object holds, found below the tracked objects that hold them: no pass over what
    the collector tracks meets them, and ``gc.get_referrers`` misses them."""
    # (getattr: an extension built before referrers() existed still loads; the
    # search then asks gc.get_referrers, as without the extension)
    walk = getattr(_tracker, "referrers", None) if _tracker is not None else None
    return walk(objects, ignored) if walk is not None else None


def referrers_until(
    objects: list[Any], ignored: Iterable[int] | None, deadline: float
) -> tuple[list[Any], bool] | None:
    """``referrers``, its passes over the heap stopped at ``deadline`` (a
    ``time.monotonic()`` value), with whether they ran to their end (False: the
    referrers found before are referrers, others were not looked for); or None where
    the extension is not loaded. A pass holds the GIL for the whole heap."""
    walk = getattr(_tracker, "referrers_until", None) if _tracker is not None else None
    return walk(objects, ignored, deadline) if walk is not None else None


def held_by(holder: Any, objects: list[Any], keys: bool) -> list[Any] | None:
    """The items of ``objects`` that ``holder`` refers to, as ``gc.get_referents``
    shows them (twice if it refers to one twice), then with ``keys`` a dict's or
    frozendict's keys it did not show; or None where
    the extension is not loaded. One C pass over the holder's references, however many
    it has, where a test of each in Python takes 96 ms for a list of a million."""
    walk = getattr(_tracker, "held_by", None) if _tracker is not None else None
    return walk(holder, objects, keys) if walk is not None else None


def code_parts(code: Any) -> tuple[Any, ...] | None:
    """What a code object refers to, which the collector does not show (a code object
    is not tracked): its constants, names, locals' names and kinds, file and function
    names, line and exception tables, and the attributes CPython caches once read
    (``co_code``, ``co_varnames``, ``co_cellvars``, ``co_freevars``); or None where
    the extension is not loaded."""
    parts = getattr(_tracker, "code_parts", None) if _tracker is not None else None
    return parts(code) if parts is not None else None


def clear_type_cache() -> None:
    """Let go of the attribute names CPython's type attribute cache keeps alive (a
    reference from C that no search sees; see the extension's ``clear_type_cache``).
    Nothing where the extension is not loaded."""
    clear = getattr(_tracker, "clear_type_cache", None) if _tracker is not None else None
    if clear is not None:
        clear()


# Whether ``referrers`` and ``referrers_until`` (which searches use) also look at what
# ``gc.freeze()`` set aside (the extension on CPython 3.12.10+, 3.13.3+ and 3.14+), which
# ``gc.get_referrers`` never does.
REFERRERS_SEE_FROZEN = bool(getattr(_tracker, "referrers_until", None) and _tracker.REFERRERS_SEE_FROZEN)


def interpreter() -> str:
    """``CPython 3.13.5`` (and ``free-threaded`` when it is)."""
    name = f"{platform.python_implementation()} {platform.python_version()}"
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    if is_gil_enabled is not None and not is_gil_enabled():
        name += " (free-threaded)"
    return name


def _unavailable_reason() -> str:
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} has no CPython reference tracer; use CPython 3.13.3 or newer"
    if _tracker is None:
        return _IMPORT_ERROR
    return _tracker.engine_state()["reason"]


def engine_status() -> dict[str, Any]:
    """A mapping: available (bool), reason (str), displaced (bool), python (str), installed (bool),
    filter (str: how the hook picks the events it looks at while installed: "type-marks", the
    default, or "byte-filter" where no type watcher id or audit hook was to be had; "none" when
    not installed), prior_tracer (str: what became of a reference tracer another tool had
    installed when ours was last installed: "none", "chained" (called before ours and given
    back when ours stops) or "replaced" (CPython 3.15+, a tool other than tracemalloc: CPython
    told it it was removed)), selftest (str: the engine's check that this interpreter reports
    every destruction: "passed", "failed" or "not run")."""
    state: Mapping[str, Any] = _tracker.engine_state() if _tracker is not None else {}
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
        "prior_tracer": state.get("prior_tracer", "none"),
        "selftest": state.get("selftest", "not run"),
        "python": interpreter(),
    }


def require_engine() -> None:
    """Raise EngineUnavailable naming the interpreter, the reason and the fix."""
    status = engine_status()
    if not status["available"]:
        raise EngineUnavailable(f"{status['python']}: {status['reason']}")
