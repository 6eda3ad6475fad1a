"""pytest plugin: fail a test whose objects outlive it, and name the line that made them.

Loaded through the ``pytest11`` entry point but off unless asked for, in one of
three ways:

* a marker on a test::

      @pytest.mark.memtracker_no_leaks(Order, allow=0, warmup=1)
      def test_checkout(): ...

* ``--memtracker-leaks`` on the command line checks every test, for the classes
  named by ``--memtracker-type myapp.models.Order`` (or the ``memtracker_types``
  ini option), and with ``--memtracker-watch-all`` for any class defined in
  Python code;

* the ``memtracker`` fixture, for checks at chosen points of a test::

      def test_cache(memtracker):
          memtracker.track(Order)
          handle_request()
          memtracker.assert_no_growth(Order)

A checked test runs its warm-up runs first (``warmup``, default 0: a cache
filled by the first call is not a leak), then once with CPython's reference
tracer counting each checked class from zero while the test function runs.
Each run sets up and tears down the test's function-scoped fixtures; module,
class and session fixtures stay. Once the checked run's fixtures are torn down,
objects of a checked class made during its call that are still alive (after a
garbage collection) are leaks: more than ``allow`` of them fail the test, with
their count and their allocation paths, the test's own code first.

What it cannot see, and what it counts that a person may not call a leak:

* Without the exact engine (CPython older than 3.13.3, PyPy, a failed build) the
  checks do not run: the tests run as usual and the session ends with one line
  saying why; ``--memtracker-strict`` fails those tests instead.
* What the fixtures make while they are set up is not the test's; what its
  function-scoped fixtures keep is released by their teardown before the count.
* Objects another thread makes of a checked class during the test count too.
* Watch-all compares the number of live objects of each class before and after
  the test; a class that grew is checked again by running the test once more
  with call paths, and only objects that outlive that run are reported. So a
  test checked with watch-all may run once more than its warm-up says, and a
  leak offset by the death of older objects of the same class can go unseen.
  Built-in types (dict, str, ...) are left to named checks: their counts move
  with the interpreter's own caches; so is logging.LogRecord while pytest's log
  capture runs (it keeps each record of the test for the report).
* Test functions are checked (doctests are not), xfail tests are not; pytest's
  subtests are reported once per run, warm-up runs included.
"""

from __future__ import annotations

import gc
import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

MARKER = "memtracker_no_leaks"
MAX_WARMUP = 1000
# Frames recorded per allocation. Deep enough to reach from any allocation during a test
# to the test function and below it to this plugin's own frame: objects pytest makes for
# its reports while the capture runs are then known as this plugin's (not counted).
CALL_DEPTH = 32
# How many call paths a failure shows, and how many frames of each.
PATHS_SHOWN = 5
FRAMES_SHOWN = 6
# Sampled watch-all still counts every object of a class defined in Python
# exactly, and classes are all the plugin checks: sampling built-ins costs the
# session less. (A MemoryMonitor with watch-all started in the same session reads
# it at this rate and logs that it does.)
WATCH_SAMPLE = 64


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memtracker", "memtracker-web leak checks")
    group.addoption(
        "--memtracker-leaks",
        action="store_true",
        default=False,
        help="check every test for surviving objects of the classes named by "
        "--memtracker-type / memtracker_types (and any class with --memtracker-watch-all)",
    )
    group.addoption(
        "--memtracker-type",
        action="append",
        default=[],
        metavar="DOTTED.NAME",
        help="a class every checked test must not leak (repeatable), e.g. myapp.models.Order",
    )
    group.addoption(
        "--memtracker-watch-all",
        action="store_true",
        default=None,
        help="with --memtracker-leaks: also catch any class defined in Python code that grows",
    )
    group.addoption(
        "--memtracker-warmup",
        default=None,
        metavar="N",
        help="run each checked test N times before the checked run (default 0)",
    )
    group.addoption(
        "--memtracker-allow",
        default=None,
        metavar="N",
        help="surviving objects per class a checked test may leave (default 0)",
    )
    group.addoption(
        "--memtracker-strict",
        action="store_true",
        default=None,
        help="fail, not skip, leak checks where the exact engine is unavailable",
    )
    parser.addini(
        "memtracker_types", type="linelist", default=[], help="classes (dotted names) checked by --memtracker-leaks"
    )
    parser.addini(
        "memtracker_watch_all",
        type="bool",
        default=False,
        help="--memtracker-leaks also catches any class defined in Python code (markers "
        "decide for themselves with watch_all=)",
    )
    parser.addini("memtracker_warmup", default="0", help="warm-up calls before a checked run")
    parser.addini("memtracker_allow", default="0", help="surviving objects per class a test may leave")
    parser.addini(
        "memtracker_strict",
        type="bool",
        default=False,
        help="fail, not skip, leak checks where the exact engine is unavailable",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*types, allow=0, warmup=0, watch_all=False): fail when objects of these classes "
        "(classes or dotted names) made by the test outlive it (memtracker-web)",
    )
    settings = _Settings.from_config(config)
    config.stash[_SETTINGS] = settings
    session = _SessionState()
    if config.pluginmanager.has_plugin("logging"):
        import logging

        # pytest's log capture keeps every record of the call phase for the report
        session.watch_ignored = frozenset({logging.LogRecord})
    config.stash[_SESSION] = session


@dataclass
class _Settings:
    every_test: bool
    type_names: list[str]
    watch_all: bool
    warmup: int
    allow: int
    strict: bool

    @classmethod
    def from_config(cls, config: pytest.Config) -> _Settings:
        def option(name: str, ini: str) -> Any:
            value = config.getoption(name)
            return config.getini(ini) if value is None else value

        names = list(config.getoption("memtracker_type")) or list(config.getini("memtracker_types"))
        settings = cls(
            every_test=bool(config.getoption("memtracker_leaks")),
            type_names=[n.strip() for n in names if n.strip()],
            watch_all=bool(option("memtracker_watch_all", "memtracker_watch_all")),
            warmup=_count(
                "--memtracker-warmup / memtracker_warmup", option("memtracker_warmup", "memtracker_warmup"), MAX_WARMUP
            ),
            allow=_count("--memtracker-allow / memtracker_allow", option("memtracker_allow", "memtracker_allow"), None),
            strict=bool(option("memtracker_strict", "memtracker_strict")),
        )
        if settings.every_test and not settings.type_names and not settings.watch_all:
            raise pytest.UsageError(
                "--memtracker-leaks needs classes to check: name them with --memtracker-type "
                "myapp.models.Order (or the memtracker_types ini option), or add --memtracker-watch-all"
            )
        return settings


def _count(what: str, value: Any, most: int | None, error: Callable[[str], BaseException] = pytest.UsageError) -> int:
    """A non-negative integer option (from the command line, ini or a marker), or an error naming it."""
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit():
            raise error(f"{what} must be a whole number of 0 or more, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise error(f"{what} must be a whole number of 0 or more, got {value!r}")
    if most is not None and value > most:
        raise error(f"{what} must be at most {most}, got {value}")
    return value


@dataclass
class _SessionState:
    unchecked: int = 0  # checks not run: no exact engine
    reason: str = ""
    resolved: list[type] | None = None
    lost: list[str] = field(default_factory=list)  # checks that could not be trusted, and why
    usage_error: str | None = None  # a class name that does not resolve, in an xdist worker
    watch_started: bool = False
    # classes whose objects pytest itself keeps past the test's call: watch-all leaves them out
    watch_ignored: frozenset = frozenset()


_SETTINGS = pytest.StashKey[_Settings]()
_SESSION = pytest.StashKey[_SessionState]()


@dataclass
class _Check:
    types: list[type]
    allow: int
    warmup: int
    watch_all: bool
    strict: bool


def _engine_reason() -> str | None:
    """None where the exact engine runs here, else why not (naming the interpreter)."""
    from .core import engine

    status = engine.engine_status()
    if status["available"]:
        return None
    return f"{status['python']}: {status['reason']}"


def _resolve(value: Any, what: str, error: Callable[[str], BaseException]) -> type:
    if isinstance(value, type):
        return value
    from .core.naming import TypeNameError, resolve_type

    if not isinstance(value, str):
        raise error(f"{what}: {value!r} is neither a class nor a dotted name like 'myapp.models.Order'")
    try:
        return resolve_type(value)
    except TypeNameError as exc:
        raise error(f"{what}: {exc}") from None


def _marker_error(message: str) -> BaseException:
    """A bad marker fails its test with the message alone (no traceback into this plugin)."""
    return pytest.fail.Exception(message, pytrace=False)


def _check_for(item: pytest.Item) -> _Check | None:
    settings = item.config.stash[_SETTINGS]
    session = item.config.stash[_SESSION]
    marker = item.get_closest_marker(MARKER)
    if marker is None and not settings.every_test:
        return None
    types: list[type] = []
    if settings.every_test and session.resolved:
        types.extend(session.resolved)
    allow, warmup, watch_all = settings.allow, settings.warmup, settings.watch_all
    if marker is not None:
        where = f"@pytest.mark.{MARKER}"
        unknown = set(marker.kwargs) - {"types", "allow", "warmup", "watch_all"}
        if unknown:
            raise _marker_error(
                f"{where}: unknown argument(s) {', '.join(sorted(unknown))}; "
                "it takes classes, types=, allow=, warmup= and watch_all="
            )
        named = list(marker.args)
        extra_types = marker.kwargs.get("types", ())
        if isinstance(extra_types, (type, str)):
            extra_types = [extra_types]
        if not isinstance(extra_types, (list, tuple, set, frozenset)):
            raise _marker_error(
                f"{where}(types=) must be a list of classes or dotted names, got {type(extra_types).__name__}"
            )
        named.extend(extra_types)
        for value in named:
            cls = _resolve(value, where, _marker_error)
            if cls not in types:
                types.append(cls)
        allow = _count(f"{where}(allow=)", marker.kwargs.get("allow", allow), None, _marker_error)
        warmup = _count(f"{where}(warmup=)", marker.kwargs.get("warmup", warmup), MAX_WARMUP, _marker_error)
        watch_all = marker.kwargs.get("watch_all", watch_all if settings.every_test else False)
        if not isinstance(watch_all, bool):
            raise _marker_error(f"{where}(watch_all=) must be True or False, got {watch_all!r}")
        if not types and not watch_all:
            raise _marker_error(f"{where} needs classes to check (e.g. {MARKER}(types=[Order])) or watch_all=True")
    return _Check(types, allow, warmup, watch_all, settings.strict)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Look the named classes up once the test modules (and what they import) are loaded."""
    settings = session.config.stash[_SETTINGS]
    state = session.config.stash[_SESSION]
    if settings.every_test and settings.type_names:
        try:
            state.resolved = [
                _resolve(name, "--memtracker-type / memtracker_types", pytest.UsageError)
                for name in settings.type_names
            ]
        except pytest.UsageError as exc:
            if not hasattr(session.config, "workerinput"):
                raise
            # xdist's controller turns a worker's usage error into an INTERNALERROR: fail
            # the first checked test with it instead and stop
            state.usage_error = f"memtracker: {exc}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a checked test: its warm-up runs, the checked run, and (watch-all, when a
    class grew) one more run with call paths; each run with its own function-scoped
    fixtures. Survivors are counted once the checked run's fixtures are torn down."""
    try:
        check = _check_for(item) if isinstance(item, pytest.Function) else None
    except pytest.fail.Exception as exc:  # a bad marker: its test fails with what is wrong
        item.stash[_REFUSAL] = exc.msg
        return None
    if check is None:
        return None
    session = item.config.stash[_SESSION]
    if session.usage_error is not None:  # an xdist worker: the controller cannot show a usage error
        item.stash[_REFUSAL] = session.usage_error
        item.session.shouldstop = session.usage_error
        return None
    reason = _engine_reason()
    if reason is not None:
        if check.strict:
            item.stash[_REFUSAL] = f"memtracker: leak check cannot run on {reason}"
        else:
            session.unchecked += 1
            session.reason = reason
        return None
    from _pytest.runner import runtestprotocol

    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    # Between runs of the same test only its own fixtures are torn down: a "next item"
    # that is its parent keeps the module's, class's and session's.
    again = item.parent
    reports: list[pytest.TestReport] = []
    for _ in range(check.warmup):
        item._report_sections = []  # a report shows its own run's output only
        reports = runtestprotocol(item, nextitem=again, log=False)  # type: ignore[arg-type]
        if not all(report.passed for report in reports):
            # that failure is the test's result; finish the teardown the next item needs
            _finish_teardown(item, nextitem, reports)
            break
    else:
        reports = _checked_runs(item, nextitem, check, session)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _finish_teardown(item: pytest.Item, nextitem: pytest.Item | None, reports: list[pytest.TestReport]) -> None:
    """Tear down what a run ended with the test's parent kept and the next item does not
    need (its module's fixtures, when it is in another module); a failure joins ``reports``."""
    from _pytest.runner import CallInfo

    done = CallInfo.from_call(lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown")
    if done.excinfo is not None:
        reports.append(item.ihook.pytest_runtest_makereport(item=item, call=done))


class _Lost(Exception):
    """The check cannot be trusted (another tool took the tracer): say so, fail nothing."""


def _checked_runs(
    item: pytest.Item, nextitem: pytest.Item | None, check: _Check, session: _SessionState
) -> list[pytest.TestReport]:
    from _pytest.runner import runtestprotocol

    run = _Run(check, session, _test_of(getattr(item, "function", None)))
    # made before counting starts: watch-all would count it as the test's
    quiet, quieter = warnings.catch_warnings(), warnings.catch_warnings()
    item.stash[_ACTIVE] = run
    # watch-all may run the test once more: keep the fixtures that run would set up again
    first_next = item.parent if check.watch_all else nextitem
    finished = not check.watch_all
    reports: list[pytest.TestReport] = []
    try:
        item._report_sections = []
        reports = runtestprotocol(item, nextitem=first_next, log=False)  # type: ignore[arg-type]
        call = next((r for r in reports if r.when == "call"), None)
        if call is None or not call.passed or not run.began or hasattr(call, "wasxfail"):
            return reports  # failed, skipped or xfail on its own: that is what to show
        try:
            with quiet:
                warnings.simplefilter("ignore")  # a displaced capture's warning: _Lost says it
                grown = run.finish()
                if grown:
                    run.confirm_begin(grown)
                    item._report_sections = []
                    second = runtestprotocol(item, nextitem=nextitem, log=False)
                    finished = True
                    failed = next((r for r in second if not r.passed), None)
                    run.confirm_finish(None if failed is None else _first_line(failed))
        except _Lost as lost:
            session.lost.append(f"{item.nodeid}: {lost}")
            return reports
        except Exception as exc:  # noqa: BLE001 -- a fault of this plugin's must not stop the session
            call.outcome = "failed"
            call.longrepr = f"memtracker: the leak check itself failed: {type(exc).__name__}: {exc}"
            return reports
        if run.leaks:
            call.outcome = "failed"
            call.longrepr = _leak_message(run.leaks, check.allow, run.confirm_error, run.test)
        return reports
    finally:
        if not finished:
            _finish_teardown(item, nextitem, reports)
        item.stash[_ACTIVE] = None
        with quieter:
            warnings.simplefilter("ignore")
            run.abandon()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    refusal = item.stash.get(_REFUSAL, None)
    if refusal is not None:
        pytest.fail(refusal, pytrace=False)
    run = item.stash.get(_ACTIVE, None)
    if run is not None:
        run.start_counting()  # after the fixtures are set up: what they make is not the test's
    yield


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext.strip().splitlines()
    return f"{report.when} {report.outcome}: {text[-1] if text else ''}"


_ACTIVE = pytest.StashKey[Optional["_Run"]]()
_REFUSAL = pytest.StashKey[str]()


class _Run:
    """One checked run of a test: the named classes counted from zero with their
    call paths, and (watch-all) every class's live count before and after."""

    def __init__(self, check: _Check, session: _SessionState, test: tuple[str, str] | None) -> None:
        from .core.tracker import Tracker

        self.test = test
        self.check = check
        self.session = session
        self.tracker = Tracker(depth=CALL_DEPTH)
        self.before: dict[type, int] = {}
        self.watching = False
        self.leaks: list[tuple[type, int, dict[str, Any] | None, str]] = []
        self.confirming: list[tuple[type, int]] = []
        self.confirm_error: str | None = None
        self.began = False

    # -- the checked run --------------------------------------------------

    def start_counting(self) -> None:
        if self.confirming:
            for cls, _n in self.confirming:
                self.tracker.track_with_analysis(cls)
            return
        if self.began:
            return
        self.began = True
        for cls in self.check.types:
            self.tracker.track_with_analysis(cls)
        if self.check.watch_all:
            self.before = self._watch_start()

    def abandon(self) -> None:
        """Stop counting and forget (idempotent)."""
        _release(self.tracker)
        self._watch_stop()

    def finish(self) -> list[tuple[type, int]]:
        """Read the counts; returns the classes watch-all saw grow (to confirm)."""
        self._require_trusted()
        grown: list[tuple[type, int]] = []
        if self.check.watch_all:
            grown = self._watch_growth()
            if grown:
                gc.collect()
                grown = self._watch_growth()
            self._watch_stop()
        survivors = self._survivors_of(self.check.types)
        self.tracker.stop()
        for cls, live in survivors:
            if live > self.check.allow:
                self.leaks.append((cls, live, _paths(self.tracker, cls), "named"))
            self.tracker.untrack(cls)
        named = {id(cls) for cls in self.check.types}
        return [(cls, n) for cls, n in grown if id(cls) not in named]

    # -- watch-all's second run, with call paths on the classes that grew ------

    def confirm_begin(self, grown: list[tuple[type, int]]) -> None:
        """The classes to count, with call paths, from the next run's call on."""
        from .core.tracker import Tracker

        self.confirming = grown
        self.tracker = Tracker(depth=CALL_DEPTH)

    def confirm_finish(self, error: str | None) -> None:
        self._require_trusted()
        self.confirm_error = error
        if not self.tracker.capture.running:  # the second run never reached its call
            self.confirm_error = error or "it did not reach the test's call"
        survivors = self._survivors_of([cls for cls, _n in self.confirming], collect=self.confirm_error is None)
        self.tracker.stop()
        grew = {id(cls): n for cls, n in self.confirming}
        for cls, live in survivors:
            stats = _paths(self.tracker, cls)
            self.tracker.untrack(cls)
            if self.confirm_error is not None:
                self.leaks.append((cls, grew[id(cls)], None, "unconfirmed"))
            elif live > self.check.allow:
                self.leaks.append((cls, live, stats, "watch-all"))

    def _survivors_of(self, classes: list[type], *, collect: bool = True) -> list[tuple[type, int]]:
        """Each class's survivors; counted again after a garbage collection when some
        are over ``allow`` (cycles the collector has not freed yet are no leak)."""
        survivors = [(cls, _survivors(self.tracker, cls)) for cls in classes]
        if collect and any(n > self.check.allow for _cls, n in survivors):
            gc.collect()
            survivors = [(cls, _survivors(self.tracker, cls)) for cls in classes]
        return survivors

    def _require_trusted(self) -> None:
        from .core import engine

        if getattr(self.tracker.capture._core, "missed_events", False) or engine.engine_status()["displaced"]:
            raise _Lost(
                "another tool took CPython's reference tracer during the test "
                "(tracemalloc.start() does this), so its counts missed events"
            )

    # -- watch-all ----------------------------------------------------------

    def _watch_start(self) -> dict[type, int]:
        from .core import engine

        core = engine._tracker
        if core.watch_statistics()["sample"] == 0:
            core.watch_start(sample=WATCH_SAMPLE)
            self.session.watch_started = True
        self.watching = True
        return self._watch_net()

    def _watch_net(self) -> dict[type, int]:
        from .core import engine
        from .monitor.monitor import counted_exactly_by_watch_all

        try:
            rows = engine._tracker.watch_counts()
        except RuntimeError as exc:  # another tool took the tracer: counts cannot be trusted
            raise _Lost(f"watch-all: {exc}") from None
        ignored = self.session.watch_ignored
        return {
            cls: new - free
            for cls, new, free in rows
            if counted_exactly_by_watch_all(cls) and not _is_machinery_class(cls) and cls not in ignored
        }

    def _watch_growth(self) -> list[tuple[type, int]]:
        from .core import engine

        if engine._tracker.watch_statistics()["sample"] == 0:
            raise _Lost("the test stopped watch-all itself (a MemoryMonitor of its own?)")
        after = self._watch_net()
        grown = [(cls, n - self.before.get(cls, 0)) for cls, n in after.items()]
        return sorted(
            ((cls, d) for cls, d in grown if d > self.check.allow),
            key=lambda kv: (-kv[1], kv[0].__module__, kv[0].__qualname__),
        )

    def _watch_stop(self) -> None:
        if self.watching and self.session.watch_started:
            from .core import engine

            engine._tracker.watch_stop()
            self.session.watch_started = False
        self.watching = False
        self.before = {}


def _release(tracker: Any) -> None:
    """Stop ``tracker`` and untrack every class it counts (idempotent)."""
    tracker.stop()
    for cls in [c for c, _a in tracker.capture]:
        tracker.untrack(cls)


def _paths(tracker: Any, cls: type) -> dict[str, Any] | None:
    """The stats a failure message shows: up to PATHS_SHOWN call paths."""
    return tracker.stats(cls, limit=PATHS_SHOWN, hotspots=0)


def _survivors(tracker: Any, cls: type) -> int:
    """Live objects of ``cls`` made since it was tracked, less those memtracker_web's own
    code made meanwhile (this plugin's bookkeeping between the start and the check)."""
    live = tracker.count(cls)
    if live == 0:
        return 0
    stats = tracker.stats(cls, limit=0, hotspots=0)
    return live - (stats["own_allocations"]["count"] if stats else 0)


# Classes whose objects outlive a test because pytest or this plugin keep them (reports,
# call infos, the tracker): watch-all leaves them out.
_MACHINERY = ("memtracker_web", "_pytest", "pytest", "pluggy")


def _is_machinery_class(cls: type) -> bool:
    module = type.__dict__["__module__"].__get__(cls)
    return isinstance(module, str) and module.partition(".")[0] in _MACHINERY


def _leak_message(
    leaks: list[tuple[type, int, dict[str, Any] | None, str]],
    allow: int,
    confirm_error: str | None,
    test: tuple[str, str] | None,
) -> str:
    from .core.naming import type_name

    lines = []
    for cls, live, stats, how in leaks:
        name = type_name(cls)
        noun = "object" if live == 1 else "objects"
        if how == "unconfirmed":
            lines.append(
                f"memtracker: {name} grew by {live} during the test (watch-all); running the test "
                f"again to find where they are made failed ({confirm_error}), so there are no "
                "call paths"
            )
            continue
        made = "made by the test" if how == "named" else "made by a second run of the test"
        lines.append(f"memtracker: {live} {noun} of {name} {made} outlived it (allowed: {allow})")
        paths = (stats or {}).get("top_paths", [])
        if paths:
            lines.append("  where (live objects, then the line in your code that made them):")
        for entry in paths:
            if entry["count"] > 0:
                lines.extend(_path_lines(entry, test))
        own = (stats or {}).get("own_allocations", {}).get("count", 0)
        if own:
            lines.append(f"    ({own} more made by memtracker_web itself, not counted)")
    return "\n".join(lines)


def _path_lines(entry: dict[str, Any], test: tuple[str, str] | None) -> list[str]:
    """One call path: its count and the app's own innermost frame (the test's code, or the
    code it tests); then, when a library made the objects, where; then the callers up to
    the test function (pytest's frames above it say nothing)."""
    frames = entry["frames"]
    if not frames:
        return [f"    {entry['count']:>6}  <call tree full: no frames recorded>"]
    app = entry.get("app_frame") or 0
    end = next((i + 1 for i, f in enumerate(frames) if test is not None and _is_test_frame(f, test)), len(frames))
    lines = [f"    {entry['count']:>6}  {_frame(frames[app])}"]
    if app:
        lines.append(f"            allocated in {_frame(frames[0])}")
        lines.extend(f"            via {_frame(f)}" for f in frames[1:app][:FRAMES_SHOWN])
    callers = frames[app + 1 : end]
    lines.extend(
        f"            {'called from' if i == 0 else '       from'} {_frame(f)}"
        for i, f in enumerate(callers[:FRAMES_SHOWN])
    )
    if len(callers) > FRAMES_SHOWN:
        lines.append(f"            ... {len(callers) - FRAMES_SHOWN} more frames")
    return lines


def _is_test_frame(frame: dict[str, Any], test: tuple[str, str]) -> bool:
    return frame["function"] == test[1] and os.path.basename(frame["filename"]) == test[0]


def _test_of(function: Any) -> tuple[str, str] | None:
    """(file name, qualified name) of a test function, to find its frame in a call path."""
    function = inspect.unwrap(function)
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    return os.path.basename(code.co_filename), getattr(code, "co_qualname", function.__qualname__)


def _frame(frame: dict[str, Any]) -> str:
    return f"{frame['filename']}:{frame['lineno']} in {frame['function']}"


# -- the fixture ---------------------------------------------------------------


class LeakChecker:
    """The ``memtracker`` fixture: count chosen classes from a point of the test on.

    ``track(Order)`` counts objects of Order made from now on, with their call
    paths; ``live(Order)`` is how many of them are alive; ``assert_no_growth``
    and ``assert_live`` collect garbage first and fail with the call paths.
    """

    def __init__(self, strict: bool, test: tuple[str, str] | None = None) -> None:
        self._strict = strict
        self._test = test
        self._tracker: Any = None

    def _require(self) -> Any:
        if self._tracker is None:
            reason = _engine_reason()
            if reason is not None:
                message = f"memtracker: leak checks cannot run on {reason}"
                if self._strict:
                    pytest.fail(message, pytrace=False)
                # reported at the test, not at this line of the plugin
                raise pytest.skip.Exception(message, _use_item_location=True)
            from .core.tracker import Tracker

            self._tracker = Tracker(depth=CALL_DEPTH)
        return self._tracker

    def track(self, *classes: type) -> None:
        """Count objects of these classes made from now on (again from zero if already tracked)."""
        tracker = self._require()
        for cls in classes:
            if not isinstance(cls, type):
                raise TypeError(f"memtracker.track() needs classes, got {type(cls).__name__} object")
            if tracker.is_tracking(cls):
                tracker.untrack(cls)
            tracker.track_with_analysis(cls)

    def live(self, cls: type) -> int:
        """Objects of ``cls`` made since ``track(cls)`` that are alive now (no collection)."""
        return self._tracked(cls).count(cls)

    def stats(self, cls: type) -> dict[str, Any]:
        """Live count, allocations and top call paths, as ``Tracker.stats`` gives them."""
        stats = self._tracked(cls).stats(cls)
        assert stats is not None
        return stats

    def assert_no_growth(self, cls: type, allow: int = 0) -> None:
        """Fail when more than ``allow`` objects of ``cls`` made since ``track(cls)``
        are alive after a garbage collection."""
        allow = _count("memtracker.assert_no_growth(allow=)", allow, None, ValueError)
        tracker = self._tracked(cls)
        gc.collect()
        live = _survivors(tracker, cls)
        if live > allow:
            pytest.fail(
                _leak_message([(cls, live, _paths(tracker, cls), "named")], allow, None, self._test), pytrace=False
            )

    def assert_live(self, cls: type, expected: int) -> None:
        """Fail unless exactly ``expected`` objects of ``cls`` made since
        ``track(cls)`` are alive after a garbage collection."""
        expected = _count("memtracker.assert_live(expected)", expected, None, ValueError)
        tracker = self._tracked(cls)
        gc.collect()
        live = _survivors(tracker, cls)
        if live != expected:
            from .core.naming import type_name

            noun = "object" if live == 1 else "objects"
            message = [
                (f"memtracker: {live} {noun} of {type_name(cls)} made since track() are alive, expected {expected}")
            ]
            if live:
                detail = _leak_message([(cls, live, _paths(tracker, cls), "named")], 0, None, self._test)
                message.extend(detail.splitlines()[1:])
            pytest.fail("\n".join(message), pytrace=False)

    def _tracked(self, cls: type) -> Any:
        tracker = self._require()
        if not isinstance(cls, type):
            raise TypeError(f"memtracker needs a class, got {type(cls).__name__} object")
        if not tracker.is_tracking(cls):
            raise ValueError(f"memtracker: call memtracker.track({cls.__qualname__}) first")
        return tracker

    def close(self) -> None:
        if self._tracker is not None:
            _release(self._tracker)
            self._tracker = None


@pytest.fixture
def memtracker(request: pytest.FixtureRequest):
    """Count chosen classes from a point of the test on; see ``LeakChecker``."""
    function = getattr(request.node, "function", None)
    checker = LeakChecker(request.config.stash[_SETTINGS].strict, _test_of(function) if function else None)
    try:
        yield checker
    finally:
        checker.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands what the summary says to the controller."""
    output = getattr(session.config, "workeroutput", None)
    state = session.config.stash.get(_SESSION, None)
    if output is not None and state is not None:
        output["memtracker"] = {"unchecked": state.unchecked, "reason": state.reason, "lost": state.lost}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The xdist controller adds up its workers' summaries."""
    state = node.config.stash.get(_SESSION, None)
    told = getattr(node, "workeroutput", {}).get("memtracker")
    if state is None or not isinstance(told, dict):
        return
    state.unchecked += int(told.get("unchecked", 0))
    state.reason = state.reason or str(told.get("reason", ""))
    state.lost.extend(str(text) for text in told.get("lost", ()))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is None:
        return
    if session.unchecked:
        checks = "check" if session.unchecked == 1 else "checks"
        terminalreporter.write_line(
            f"memtracker: {session.unchecked} leak {checks} not run (the tests ran): {session.reason}"
        )
    if session.lost:
        checks = "check" if len(session.lost) == 1 else "checks"
        terminalreporter.write_line(f"memtracker: {len(session.lost)} leak {checks} lost (the tests passed):")
        for text in session.lost[:20]:
            terminalreporter.write_line(f"  {text}")
        if len(session.lost) > 20:
            terminalreporter.write_line(f"  ... and {len(session.lost) - 20} more")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is not None and session.watch_started:
        from .core import engine

        engine._tracker.watch_stop()
        session.watch_started = False
