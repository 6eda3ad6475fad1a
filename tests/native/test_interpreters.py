"""What the engine does about the interpreter it runs on: the destruction
self-test, a tracer installed before ours (whose treatment differs from 3.15 on),
an extension that could not be built, and free-threaded builds."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import site
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import types
from pathlib import Path

import pytest

import memtracker_web as mt
from memtracker_web.core.capture import ReplacedTracerWarning
from support import requires_engine

ROOT = Path(__file__).resolve().parents[2]
TOLD_REMOVED = sys.version_info >= (3, 15)  # CPython tells a replaced tracer it was removed


def start_over_another_tool(capture) -> None:
    """Start, expecting the warning that the other tool's tracer was replaced from 3.15 on."""
    if TOLD_REMOVED:
        with pytest.warns(ReplacedTracerWarning, match="told it was removed"):
            capture.start()
    else:
        capture.start()


class Order:
    pass


def run_python(
    code: str, cwd: Path, env: dict[str, str] | None = None, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "dev", *flags, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@requires_engine
def test_the_destruction_self_test_passed_here_and_sees_every_list():
    from memtracker_web import _tracker

    assert mt.engine_status()["selftest"] == "passed"
    result = _tracker._destruction_selftest(depth=30_000)
    assert result == {"created": 30_001, "destroyed": 30_001, "completed": True, "threaded": True, "displaced": False}


@requires_engine
def test_the_self_test_counts_only_its_own_thread_and_chains_a_prior_tracer():
    from memtracker_web import _tracker

    tracemalloc.start()
    try:
        keep = [[i] for i in range(1000)]  # lists of this thread, alive throughout
        result = _tracker._destruction_selftest(depth=5000)
        assert result["created"] == result["destroyed"] == 5001
        assert _tracker.engine_state()["tracer_slot"] == "other"  # tracemalloc's, given back
        del keep
    finally:
        tracemalloc.stop()


@requires_engine
def test_an_interpreter_that_loses_destructions_is_refused_naming_the_issue(tmp_path):
    # The self-test's tracer drops 3 destruction events, as an interpreter with
    # gh-156371 does for objects the trashcan deferred.
    proc = run_python(
        """
        import memtracker_web as mt
        from memtracker_web import _tracker
        r = _tracker._destruction_selftest(drop=3, apply=True)
        assert r["created"] == r["destroyed"] + 3, r
        status = mt.engine_status()
        assert status["available"] is False and status["selftest"] == "failed", status
        print(status["reason"])
        try:
            mt.Capture().start()
        except mt.EngineUnavailable as exc:
            print("refused:", exc)
        """,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    reason, refused = proc.stdout.splitlines()
    assert "gh-156371" in reason and "20001 lists" in reason and "19998 were reported destroyed" in reason
    assert "upgrade CPython" in reason
    assert refused.startswith(f"refused: {mt.engine_status()['python']}: ") and "gh-156371" in refused


@requires_engine
def test_tracemalloc_installed_before_ours_is_chained_and_given_back(capture):
    from memtracker_web import _tracker

    tracemalloc.start()
    try:
        capture.track(Order)
        capture.start()
        assert _tracker.engine_state()["prior_tracer"] == "chained"
        kept = [Order() for _ in range(3)]
        assert capture.count_for(Order) == 3
        assert tracemalloc.get_object_traceback(kept[0]) is not None
        capture.stop()
        assert _tracker.engine_state()["tracer_slot"] == "other"  # tracemalloc's again
        fresh = Order()
        line = sys._getframe().f_lineno - 1  # the line above
        assert tracemalloc.get_object_traceback(fresh)[0].lineno == line  # tracemalloc still traces
    finally:
        capture.stop()
        tracemalloc.stop()


@requires_engine
def test_another_tools_tracer_is_chained_before_315_and_replaced_from_315_on(capture):
    from memtracker_web import _tracker

    _tracker._noop_tracer(True)  # a C tracer of "another tool"
    try:
        capture.track(Order)
        start_over_another_tool(capture)
        state = _tracker.engine_state()
        assert state["prior_tracer"] == ("replaced" if TOLD_REMOVED else "chained")
        assert mt.engine_status()["prior_tracer"] == state["prior_tracer"]
        kept = [Order() for _ in range(4)]
        assert capture.count_for(Order) == 4
        del kept
        assert capture.count_for(Order) == 0
        capture.stop()
        # Before 3.15 the other tool gets its slot back; from 3.15 on it was told
        # it was removed, and is not put back.
        assert _tracker.engine_state()["tracer_slot"] == ("empty" if TOLD_REMOVED else "other")
    finally:
        capture.stop()
        if _tracker.engine_state()["tracer_slot"] == "other":
            _tracker._noop_tracer(False)


@requires_engine
@pytest.mark.parametrize("first_call", ["engine_state", "capture_start", "watch_start"])
def test_threads_reaching_the_self_test_at_once_run_it_once(first_call):
    # The self-test releases the GIL while its thread runs: the others wait for
    # it (a start) or go on without it (a status query), and none chains its hook.
    proc = run_python(
        f"""
        import threading
        from memtracker_web import _tracker
        class Order: pass
        barrier = threading.Barrier(4)
        errors = []
        captures = [_tracker.CaptureCore() for _ in range(4)]
        def first(i):
            barrier.wait()
            try:
                if {first_call!r} == "engine_state":
                    _tracker.engine_state()
                elif {first_call!r} == "capture_start":
                    captures[i].track(Order)
                    captures[i].start()
                else:
                    _tracker.watch_start(sample=64)
            except BaseException as exc:
                errors.append(exc)
        threads = [threading.Thread(target=first, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors
        kept = [Order() for _ in range(5)]
        state = _tracker.engine_state()
        print(state["selftest"], state["running_captures"], sum(c.live(Order) for c in captures))
        for c in captures: c.stop()
        _tracker.watch_stop()
        print(_tracker.engine_state()["tracer_slot"])
        """,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    started = first_call == "capture_start"
    assert proc.stdout.split() == ["passed", str(4 if started else 0), str(20 if started else 0), "empty"]


@requires_engine
def test_the_first_question_at_exit_does_not_hang():
    # At exit a new thread cannot take the GIL: the self-test is not run then.
    proc = run_python(
        """
        from memtracker_web import _tracker
        class AtExit:
            def __del__(self):
                print(_tracker.engine_state()["selftest"])
        keep = AtExit()
        """,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["not run"]


@requires_engine
def test_another_tool_told_it_was_removed_is_never_called_again():
    from memtracker_web import _tracker

    capture = mt.Capture()
    _tracker._probe_tracer(True)
    try:
        capture.track(Order)
        start_over_another_tool(capture)
        kept = [Order() for _ in range(10)]
        assert capture.count_for(Order) == 10
        capture.stop()
        probe = _tracker._probe_tracer(None)
        if TOLD_REMOVED:
            assert probe["removed"] == 1 and probe["after_removed"] == 0 and not probe["installed"]
        else:
            # chained: called for every event while we held the slot, and given it back
            assert probe["removed"] == 0 and probe["events"] >= 20 and probe["installed"]
        del kept
    finally:
        capture.stop()
        _tracker._probe_tracer(False)


@requires_engine
@pytest.mark.skipif(not TOLD_REMOVED, reason="before 3.15 every prior tracer is chained")
def test_a_tool_that_replaced_tracemallocs_tracer_is_not_taken_for_tracemalloc():
    from memtracker_web import _tracker

    tracemalloc.start()
    capture = mt.Capture()
    try:
        _tracker._probe_tracer(True)  # tracemalloc.is_tracing() stays true
        capture.track(Order)
        start_over_another_tool(capture)
        assert _tracker.engine_state()["prior_tracer"] == "replaced"
        capture.stop()
        probe = _tracker._probe_tracer(None)
        assert probe["removed"] == 1 and probe["after_removed"] == 0 and not probe["installed"]
    finally:
        capture.stop()
        _tracker._probe_tracer(False)
        tracemalloc.stop()


def _broken_build(tmp_path: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    # A copy of the sources: no build folder of an earlier build to reuse objects from.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "memtracker_web",
        src / "memtracker_web",
        ignore=shutil.ignore_patterns("*.so", "__pycache__", "_extension_build_failed.txt"),
    )
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    broken = tmp_path / "broken.h"
    # What a future CPython whose internal headers moved looks like to the compiler.
    broken.write_text('#error "pycore_interpframe.h: no such internal header on this interpreter"\n')
    return subprocess.run(
        [sys.executable, *command],
        cwd=src,
        env={
            **os.environ,
            "CFLAGS": f"-include {broken}",
            "MEMTRACKER_WERROR": "",
            "MEMTRACKER_REQUIRE_EXTENSION": "",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


def _broken_install(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _broken_build(
        tmp_path,
        env,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-cache-dir",
        "--target",
        str(tmp_path / "site"),
        ".",
    )


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="builds the C extension")
def test_a_failed_in_place_build_leaves_its_note_in_the_sources(tmp_path):
    # in-place, as editable installs build: setuptools must not try to copy the missing extension
    build = _broken_build(tmp_path, {}, "setup.py", "-q", "build_ext", "--inplace")
    assert build.returncode == 0, build.stderr[-2000:]
    note = (tmp_path / "src" / "memtracker_web" / "_extension_build_failed.txt").read_text()
    assert note.startswith("memtracker_web._tracker\tCPython ")
    assert "no such internal header on this interpreter" in note


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="builds the C extension")
def test_an_extension_that_cannot_be_built_installs_in_census_mode_and_says_why(tmp_path):
    build = _broken_install(tmp_path, {})
    assert build.returncode == 0, build.stderr[-2000:]
    installed = tmp_path / "site" / "memtracker_web"
    assert not list(installed.glob("_tracker*.so"))
    assert (installed / "_extension_build_failed.txt").is_file()
    proc = run_python(
        f"""
        import memtracker_web as mt, sys
        assert mt.__file__.startswith({str(installed)!r}), mt.__file__
        status = mt.engine_status()
        print(status["available"])
        print(status["reason"])
        try:
            mt.Capture().start()
        except mt.EngineUnavailable as exc:
            print("refused")
        print(mt.MemoryMonitor(interval=60).snapshot()["mode"])
        """,
        cwd=tmp_path,
        flags=("-S",),
        # -S: no .pth files, so an editable install of this checkout cannot answer
        # for memtracker_web; the dependencies come from this environment's site-packages.
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *site.getsitepackages()])},
    )
    assert proc.returncode == 0, proc.stderr
    available, reason, refused, mode = proc.stdout.splitlines()
    assert (available, refused, mode) == ("False", "refused", "census")
    version = ".".join(map(str, sys.version_info[:3]))
    assert reason.startswith(
        f"the C extension could not be built when memtracker-web was installed on "
        f"CPython {version} (the compiler said: "
    )
    assert "no such internal header on this interpreter" in reason
    if (3, 13, 3) <= sys.version_info[:3] < (3, 16):
        # a version it was tested on: the build is what is missing, not support
        assert "install a C compiler and the Python headers" in reason
    else:
        assert "tested on CPython 3.13.3 to 3.15: use one of those" in reason


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="builds the C extension")
def test_an_extension_built_from_other_sources_is_refused_and_says_how_to_rebuild(tmp_path):
    # An editable install keeps its extension across a pull: the stub beside it changed
    # (a function took a new argument) and the extension was not built again.
    package = Path(mt.__file__).parent
    copy = tmp_path / "memtracker_web"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "_extension_build_failed.txt"))
    assert list(copy.glob("_tracker*.so"))
    code = f"""
        import memtracker_web as mt
        assert mt.__file__.startswith({str(copy)!r}), mt.__file__
        status = mt.engine_status()
        print(status["available"])
        print(status["reason"])
        print(mt.MemoryMonitor(interval=60).snapshot()["mode"])
        """
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *site.getsitepackages()])}
    fresh = run_python(code, cwd=tmp_path, flags=("-S",), env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines()[0] == str(mt.engine_status()["available"])  # as built: as here
    stub = copy / "_tracker.pyi"
    stub.write_text(stub.read_text().replace("def referrers(objects", "def referrers(new_argument: int, objects"))
    stale = run_python(code, cwd=tmp_path, flags=("-S",), env=env)
    assert stale.returncode == 0, stale.stderr
    available, reason, mode = stale.stdout.splitlines()
    assert (available, mode) == ("False", "census")
    built = copy / ("_tracker" + importlib.machinery.EXTENSION_SUFFIXES[0])
    assert reason.startswith(f"the C extension {built} was built from another version of memtracker-web (its ")
    assert reason.endswith(
        "): rebuild it (reinstall memtracker-web; in a checkout, pip install -e . or python setup.py"
        " build_ext --inplace)"
    )
    from memtracker_web.core import engine

    assert engine.stale_extension(types.SimpleNamespace(INTERFACE="0" * 16)).startswith(
        "the C extension memtracker_web._tracker was built from another version of memtracker-web"
        " (its interface 0000000000000000, this code's "
    )
    assert "(its interface unmarked, " in engine.stale_extension(types.SimpleNamespace())
    if engine._tracker is not None:
        assert engine.stale_extension(engine._tracker) == ""


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="builds the C extension")
def test_ci_makes_a_failed_build_fatal(tmp_path):
    build = _broken_install(tmp_path, {"MEMTRACKER_REQUIRE_EXTENSION": "1"})
    assert build.returncode != 0
    assert "no such internal header on this interpreter" in build.stderr + build.stdout


def test_a_free_threaded_build_loads_no_extension_and_keeps_the_gil_off(tmp_path):
    # Simulated (no free-threaded CPython on this machine): sysconfig answers as
    # on a 3.14t build. Loading a single-phase extension there would turn the
    # GIL back on, so neither extension may be imported.
    proc = run_python(
        """
        import sys, sysconfig
        real = sysconfig.get_config_var
        sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
        import memtracker_web as mt
        from memtracker_web.integrations import asgi
        assert "memtracker_web._tracker" not in sys.modules
        assert "memtracker_web._passthrough" not in sys.modules
        assert asgi._BASE_IN_C is False
        status = mt.engine_status()
        assert status["available"] is False
        print(status["reason"])
        """,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("free-threaded CPython builds are not supported by the exact engine")
    assert "turn the GIL back on" in proc.stdout


@requires_engine
def test_the_monitor_logs_a_replaced_tracer_from_315_on(caplog):
    from memtracker_web import _tracker
    from memtracker_web.monitor import MemoryMonitor

    _tracker._probe_tracer(True)
    monitor = MemoryMonitor(interval=60, watch_all=True)
    try:
        with caplog.at_level("WARNING", logger="memtracker_web"):
            monitor.sample()
        logged = [r.getMessage() for r in caplog.records if "reference-tracer slot" in r.getMessage()]
        assert len(logged) == (1 if TOLD_REMOVED else 0)
    finally:
        monitor.close()
        _tracker._probe_tracer(False)


# ---- subinterpreters: the engine stays the main interpreter's --------------------------------
# mod_wsgi runs each app in a subinterpreter. The engine is process-wide (one tracer slot) and its
# type watcher belongs to one interpreter, so a subinterpreter gets census mode and a clear reason,
# and whatever it does leaves the main interpreter's captures, callbacks and drainer working.

SUBINTERPRETER_SCRIPT = r'''
import json, sys
import _testcapi
import memtracker_web as mt
from memtracker_web.core import engine

class Order:
    pass

capture = mt.Capture()
capture.track(Order)
capture.start()
keep = [Order() for _ in range(10)]

CODE = """
import json
import memtracker_web as mt
from memtracker_web.core import engine
from memtracker_web.integrations import asgi
from memtracker_web import _tracker as core     # the module object the main interpreter loaded
out = {"available": mt.engine_status()["available"], "reason": mt.engine_status()["reason"],
       "in_sub": engine.IN_SUBINTERPRETER, "passthrough_in_c": asgi._BASE_IN_C,
       "main_interpreter": core.main_interpreter(), "state": core.engine_state()["available"]}
try:
    c = mt.Capture(); c.track(list); c.start()
    out["start"] = "started"
except mt.EngineUnavailable as exc:
    out["start"] = str(exc)
refused = []
for name, args in [("watch_start", ()), ("watch_stop", ()), ("watch_counts", ()),
                   ("set_pending_callable", (print,)), ("_after_fork_child", ()), ("CaptureCore", ())]:
    try:
        getattr(core, name)(*args)
    except RuntimeError as exc:
        if "main interpreter only" in str(exc):
            refused.append(name)
out["refused"] = refused
class Widget:
    pass
monitor = mt.MemoryMonitor(threshold=1, increases=1)
monitor.start_monitoring(Widget)
monitor.sample()
widgets = [Widget() for _ in range(7)]
monitor.sample()
snap = monitor.snapshot()
monitor.close()
out["mode"] = snap["mode"]
out["widgets"] = snap["types"][0]["live"]
open(PATH, "w").write(json.dumps(out))
"""
rc = _testcapi.run_in_subinterp(CODE.replace("PATH", repr(sys.argv[1])))
result = json.load(open(sys.argv[1]))
result["rc"] = rc
keep += [Order() for _ in range(5)]
result["main_live"] = capture.count_for(Order)
events = []
other = mt.Capture()
other.track(dict, callback=lambda cls, event, data: events.append(event))
other.start()
made = [{} for _ in range(3)]
other.flush()
other.stop()
capture.stop()
result["callbacks"] = events.count("new") >= 3
result["main_available"] = mt.engine_status()["available"]
print(json.dumps(result))
'''


def _subinterpreter_result(tmp_path: Path, script: str) -> dict:
    pytest.importorskip("_testcapi")
    (tmp_path / "script.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "-X", "dev", str(tmp_path / "script.py"), str(tmp_path / "out.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


@requires_engine
def test_a_subinterpreter_counts_in_census_mode_and_leaves_the_main_engine_working(tmp_path):
    result = _subinterpreter_result(tmp_path, SUBINTERPRETER_SCRIPT)
    assert result["rc"] == 0
    assert result["in_sub"] is True and result["available"] is False
    assert "main interpreter only" in result["reason"] and "WSGIApplicationGroup" in result["reason"]
    assert "main interpreter only" in result["start"]
    assert result["main_interpreter"] is False and result["state"] is False
    assert result["refused"] == [
        "watch_start",
        "watch_stop",
        "watch_counts",
        "set_pending_callable",
        "_after_fork_child",
        "CaptureCore",
    ]
    assert result["passthrough_in_c"] is False
    assert result["mode"] == "census" and result["widgets"] == 7
    # the main interpreter: its capture counted on, a new one starts, callbacks still arrive
    # (a subinterpreter used to take the drainer, and after it ended every pending call failed)
    assert result["main_live"] == 15
    assert result["callbacks"] is True and result["main_available"] is True


@requires_engine
@pytest.mark.parametrize("sample", [1, 64])
def test_a_subinterpreter_made_between_two_reads_adds_nothing_to_watch_alls_counts(tmp_path, sample):
    # Until the next read sees it, a new subinterpreter runs under the hook that checks
    # no interpreter; its generators (a static type, shared) must not be counted, nor
    # reach the table of addresses kept for finalizable types' deaths.
    pytest.importorskip("_interpreters")
    script = rf"""
import json, types
import _interpreters
from memtracker_web import _tracker

def generators():  # (no generator of its own: it would count)
    for cls, new, free in _tracker.watch_counts():
        if cls is types.GeneratorType:
            return new, free
    return 0, 0

_tracker.watch_start(sample={sample})
def g():
    yield 1
keep = [g() for _ in range(10)]
del keep
before = generators()
sub = _interpreters.create("legacy")
_interpreters.exec(sub, "def g():\n    yield 1\nkeep = [g() for _ in range(5000)]\ndel keep\n")
after = generators()
_interpreters.destroy(sub)
print(json.dumps({{"before": before, "after": after, "again": generators()}}))
_tracker.watch_stop()
"""
    result = _subinterpreter_result(tmp_path, script)
    # (at 64, generators are counted one in 64 by address: the same before and after)
    assert result["before"] == result["after"] == result["again"]
    if sample == 1:
        assert result["before"] == [10, 10]


@requires_engine
def test_a_subinterpreter_that_imports_first_leaves_the_main_interpreter_its_engine(tmp_path):
    script = r"""
import json, sys
import _testcapi
rc = _testcapi.run_in_subinterp("import memtracker_web as mt; assert not mt.engine_status()['available']")
import memtracker_web as mt
class Order:
    pass
c = mt.Capture(); c.track(Order); c.start()
keep = [Order() for _ in range(4)]
print(json.dumps({"rc": rc, "live": c.count_for(Order), "available": mt.engine_status()["available"]}))
c.stop()
"""
    assert _subinterpreter_result(tmp_path, script) == {"rc": 0, "live": 4, "available": True}


@requires_engine
def test_an_isolated_interpreter_imports_the_package_in_census_mode(tmp_path):
    interpreters = pytest.importorskip("_interpreters")
    script = r'''
import json, sys
import _interpreters
import memtracker_web as mt
iid = _interpreters.create()
_interpreters.exec(iid, """
import json
import memtracker_web as mt
from memtracker_web.integrations import asgi
open(PATH, "w").write(json.dumps([mt.engine_status()["available"], mt.engine_status()["reason"],
                                  asgi._BASE_IN_C]))
""".replace("PATH", repr(sys.argv[1])))
_interpreters.destroy(iid)
available, reason, in_c = json.load(open(sys.argv[1]))
print(json.dumps({"available": available, "sub": "main interpreter only" in reason, "in_c": in_c,
                  "main": mt.engine_status()["available"]}))
'''
    assert interpreters is not None
    assert _subinterpreter_result(tmp_path, script) == {"available": False, "sub": True, "in_c": False, "main": True}


@requires_engine
def test_a_main_interpreter_capture_reached_from_a_subinterpreter_refuses_every_change(tmp_path):
    script = r'''
import ctypes, json, sys
import _testcapi
from memtracker_web import _tracker as core
class Order:
    pass
cap = core.CaptureCore()
cap.track(Order)
cap.start()
CODE = """
import ctypes, json
cap = ctypes.cast(ADDRESS, ctypes.py_object).value     # an object of the main interpreter
class Local:
    pass
refused = []
for name, args in [("track", (Local,)), ("untrack", (Local,)), ("analyse", (Local,)), ("unanalyse", (Local,)),
                   ("stop", ()), ("clear", ())]:
    try:
        getattr(cap, name)(*args)
    except RuntimeError as exc:
        if "main interpreter only" in str(exc):
            refused.append(name)
open(PATH, "w").write(json.dumps(refused))
""".replace("ADDRESS", str(id(cap))).replace("PATH", repr(sys.argv[1]))
rc = _testcapi.run_in_subinterp(CODE)
keep = [Order() for _ in range(5)]
print(json.dumps({"rc": rc, "refused": json.load(open(sys.argv[1])), "filter": core.engine_state()["filter"],
                  "live": cap.live(Order), "running": cap.running}))
cap.stop()
'''
    assert _subinterpreter_result(tmp_path, script) == {
        "rc": 0,
        "refused": ["track", "untrack", "analyse", "unanalyse", "stop", "clear"],
        "filter": "type-marks",
        "live": 5,
        "running": True,
    }


RETENTION_BESIDE_AN_ISOLATED_INTERPRETER = r'''
import json, sys, threading
import _interpreters
from memtracker_web.monitor.retention import find_retainers

iid = _interpreters.create()
SPIN = """
import time
def spin(n):
    t = time.monotonic()
    while time.monotonic() - t < n:
        pass
for _ in range(400):
    spin(0.002)
"""
held = [bytearray(8)]
worker = threading.Thread(target=_interpreters.exec, args=(iid, SPIN))
worker.start()
searches = found = 0
while worker.is_alive():
    result = find_retainers(held[:], budget_seconds=0.05)
    searches += 1
    found += any("held" in chain["chain"] for chain in result["chains"])
worker.join()
_interpreters.destroy(iid)
print(json.dumps({"searches": searches, "all_found": found == searches}))
'''


@requires_engine
def test_a_retention_search_beside_an_isolated_interpreter_leaves_its_frames_alone(tmp_path):
    # sys._current_frames() makes frame objects of every interpreter's threads with this
    # interpreter's allocator; the isolated one frees them with its own: on 3.13 this
    # script aborted ("double free or corruption") within its first second, every run
    pytest.importorskip("_interpreters")
    result = _subinterpreter_result(tmp_path, RETENTION_BESIDE_AN_ISOLATED_INTERPRETER)
    assert result["searches"] >= 5 and result["all_found"] is True


def parked(started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait()


def codes_on(frames: list) -> set:
    """The code of every frame on the stacks whose innermost frames are ``frames``."""
    codes = set()
    for frame in frames:
        while frame is not None:
            codes.add(frame.f_code)
            frame = frame.f_back
    return codes


@requires_engine
def test_running_frames_are_this_interpreters_threads_innermost_frames():
    from memtracker_web.core import engine

    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=parked, args=(started, release))
    thread.start()
    try:
        started.wait()
        frames = engine.running_frames()
        codes = codes_on(frames)
        assert parked.__code__ in codes and sys._getframe().f_code in codes
        assert len(frames) >= 2 and len({id(frame) for frame in frames}) == len(frames)
    finally:
        release.set()
        thread.join()


def test_without_the_extension_running_frames_give_this_threads_frame_only(monkeypatch):
    from memtracker_web.core import engine

    monkeypatch.setattr(engine, "_tracker", None)
    frames = engine.running_frames()
    if sys.version_info < (3, 12):  # one GIL and one allocator for every interpreter: all threads
        assert sys._getframe().f_code in codes_on(frames)
    else:
        assert frames == [sys._getframe()]
