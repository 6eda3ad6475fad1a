"""Turns memtracker_web's tracking on in every Python process started with this
directory on PYTHONPATH and MEMTRACKER_REGRTEST_MODE set: tests/native/test_cpython_regrtest.py
runs CPython's own regression tests so, and each process writes what it saw at exit.

Modes: count (captures counting hot built-ins and classes), analysis (call paths on
hot built-ins), watch (exact watch-all beside a capture), monitor (a MemoryMonitor with
sampled watch-all sampling every 0.1 s, and a callback on dict).

At exit each process checks the invariants the engine promises (a live count is
never negative, frees never exceed creations, call trees read back) and writes
them as JSON into MEMTRACKER_REGRTEST_OUT."""

from __future__ import annotations

import atexit
import json
import os
import sys

MODE = os.environ.get("MEMTRACKER_REGRTEST_MODE")
OUT = os.environ.get("MEMTRACKER_REGRTEST_OUT")
BUILTINS = (dict, list, tuple, str, int, float, set, bytes, type(lambda: 0), type(sys._getframe()))


def _setup() -> None:
    import memtracker_web as mt
    from memtracker_web import _tracker

    captures: list = []
    older_classes: set[int] = set()
    tracker = None
    monitor = None
    callback_events = [0]
    if MODE in ("count", "watch"):
        capture = mt.Capture()
        for cls in BUILTINS + (object, Exception):
            capture.track(cls)
        capture.start()
        captures.append(capture)
        if MODE == "watch":
            _tracker.watch_start(sample=1)
            # classes made from here on have every object counted from its creation:
            # their frees can never exceed their creations
            import gc

            older_classes.update(id(obj) for obj in gc.get_objects() if isinstance(obj, type))
    elif MODE == "analysis":
        tracker = mt.Tracker(depth=8, max_nodes=20_000)
        for cls in (dict, list, tuple):
            tracker.track_with_analysis(cls)
        tracker.track(str)
    elif MODE == "monitor":
        # its leak reports would land in the stderr that tests of child processes compare
        import logging

        logging.getLogger("memtracker_web").addHandler(logging.NullHandler())
        logging.getLogger("memtracker_web").propagate = False
        monitor = mt.MemoryMonitor(interval=0.1, watch_all=True, threshold=1000)
        monitor.start()
        capture = mt.Capture()
        capture.track(dict, callback=lambda cls, event, data: callback_events.__setitem__(0, callback_events[0] + 1))
        capture.start()
        captures.append(capture)
    else:
        raise SystemExit(f"MEMTRACKER_REGRTEST_MODE={MODE!r}: count, analysis, watch or monitor")

    def check(violations: list[str]) -> tuple[int, int]:
        checked = events = 0
        for capture in captures:
            capture.flush()
            for cls, allocations in capture:
                checked += 1
                new, free = allocations.new_count, allocations.free_count
                events += new
                if free > new or capture.count_for(cls) < 0:
                    violations.append(f"{cls.__qualname__}: new {new}, free {free}")
        if tracker is not None:
            for cls in (dict, list, tuple):
                stats = tracker.stats(cls)
                checked += 1
                events += 0 if stats is None else stats["total_allocations"]
                # (the tree and the counts are read one after the other while this code allocates:
                # only what holds across that gap is checked)
                if (
                    stats is None
                    or stats["live_count"] < 0
                    or stats["retained_allocations"] < 0
                    or stats["retained_allocations"] + stats["own_allocations"]["count"] > stats["total_allocations"]
                    or any(not 0 <= path["count"] <= path["total_count"] for path in stats["top_paths"])
                ):
                    violations.append(f"{cls.__qualname__}: stats {stats!r}")
        if MODE == "watch":
            try:
                counts = _tracker.watch_counts()
            except RuntimeError as exc:  # a test took the tracer slot (test_tracemalloc): no counts
                if "another tool replaced the reference tracer" not in str(exc):
                    raise
                counts = []
            for cls, new, free in counts:
                checked += 1
                if id(cls) not in older_classes and cls.__flags__ & (1 << 9) and free > new:  # heap types
                    violations.append(f"watch {cls!r}: new {new}, free {free}")
        if monitor is not None:
            snapshot = monitor.snapshot()
            checked += 1
            if snapshot["mode"] != "exact" or any(
                t["live"] is not None and t["live"] < 0 and t.get("sampled") is not True for t in snapshot["types"]
            ):
                violations.append(f"monitor: {json.dumps(snapshot)[:2000]}")
            monitor.close()
        return checked, events

    def report() -> None:
        violations: list[str] = []
        checked = events = 0
        displaced = bool(mt.engine_status()["displaced"])
        try:
            checked, events = check(violations)
        except Exception as exc:  # a result is written whatever happens: a missing one fails the run
            violations.append(f"the check itself failed: {exc!r}")
        result = {
            "mode": MODE,
            "pid": os.getpid(),
            "argv": sys.argv[:6],
            "checked": checked,
            "events": events,
            "violations": violations,
            "displaced": displaced,
            "callback_events": callback_events[0],
        }
        with open(os.path.join(OUT, f"{os.getpid()}.json"), "w", encoding="utf-8") as fh:
            json.dump(result, fh)

    atexit.register(report)


def _main_interpreter() -> bool:
    # site runs again in every subinterpreter a test makes; the engine is the main
    # interpreter's, and a monitor thread left there would stop the subinterpreter from ending
    from memtracker_web.core import engine

    return not engine.IN_SUBINTERPRETER


if MODE and OUT and _main_interpreter():
    _setup()
