"""CPython's own regression tests, run with memtracker_web tracking on in every process.

tests/native/regrtest/sitecustomize.py turns tracking on in each process (the regression
test runner, its workers, and the Pythons tests start without -I or -E) and checks at exit what
the engine promises: live counts never negative, frees never above creations, call
trees that read back, watch-all counts that make sense, a monitor that samples in
exact mode; under exact watch-all, frees never above creations for classes made after it
started. The tests themselves must pass as they do without us: tracing and
profiling tests, finalisers and resurrection, the collector, threads, recursion to
the limit, tracemalloc taking the tracer slot.

CPython's test files ship apart from the interpreter on Debian (libpython3.X-testsuite);
.ci/run installs them and sets MEMTRACKER_REQUIRE_CPYTHON_TESTS=1, which turns a
missing suite into a failure instead of a skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import requires_engine

pytestmark = requires_engine

HERE = Path(__file__).resolve().parent
COMMON = [
    "test_list",
    "test_dict",
    "test_set",
    "test_tuple",
    "test_descr",
    "test_class",
    "test_weakref",
    "test_finalization",
    "test_generators",
    "test_coroutines",
    "test_sys_settrace",
    "test_sys_setprofile",
    "test_exceptions",
    "test_threading",
    "test_functools",
    "test_scope",
]
SUBSETS = {
    "count": COMMON + ["test_gc", "test_tracemalloc"],
    "analysis": COMMON + ["test_gc"],
    "watch": COMMON + ["test_gc", "test_tracemalloc"],
    # a monitor's thread allocates and so sets off collections: test_gc's exact collect() counts
    # then find the garbage gone (as with any app thread), so it is left out here
    "monitor": COMMON,
}


def _suite_dir() -> Path | None:
    try:
        import test
    except ImportError:
        return None
    folder = Path(test.__file__).resolve().parent
    return folder if (folder / "test_list.py").exists() else None


@pytest.mark.parametrize("mode", list(SUBSETS))
def test_cpython_regression_tests_pass_with_tracking_on(mode, tmp_path):
    if _suite_dir() is None:
        message = f"CPython's test suite is not installed for {sys.version.split()[0]}"
        if os.environ.get("MEMTRACKER_REQUIRE_CPYTHON_TESTS"):
            pytest.fail(message)
        pytest.skip(message + " (Debian: libpython3.X-testsuite)")
    out = tmp_path / "results"
    out.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE / "regrtest"), os.environ.get("PYTHONPATH", "")]),
        "MEMTRACKER_REGRTEST_MODE": mode,
        "MEMTRACKER_REGRTEST_OUT": str(out),
    }
    env.pop("PYTHONDEVMODE", None)
    env.pop("PYTHONWARNINGS", None)
    # SIGINT back to its default: a shell's background job ignores it, and test_threading's tests of
    # _thread.interrupt_main() then never see their KeyboardInterrupt (one recurses until it comes);
    # regrtest's own --timeout ends a test file that hangs anyway
    proc = subprocess.run(
        [sys.executable, "-m", "test", "-j2", "-q", "--timeout", "300", *SUBSETS[mode]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "Result: SUCCESS" in proc.stdout, tail
    results = [json.loads(p.read_text()) for p in out.glob("*.json")]
    # regrtest runs each test file in a worker process of its own: every one must have reported
    # (a child a test ends with os._exit or a signal may not, so those are not required)
    workers = {r["pid"] for r in results if any("libregrtest" in arg for arg in r["argv"][:2])}
    assert len(workers) == len(SUBSETS[mode]), sorted(r["argv"][:2] for r in results)
    assert len(results) >= 3, [r["argv"][:2] for r in results]
    assert all(r["checked"] > 0 for r in results)
    assert all(r["events"] > 0 for r in results if r["pid"] in workers and mode != "monitor")
    assert [r for r in results if r["violations"]] == []
    if mode == "monitor":
        assert any(r["callback_events"] > 0 for r in results if r["pid"] in workers)
