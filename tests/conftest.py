from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memtracker_web as mt

ENGINE = mt.engine_status()

requires_engine = pytest.mark.skipif(
    not ENGINE["available"], reason=f"exact engine unavailable: {ENGINE['reason']}"
)
without_engine = pytest.mark.skipif(
    ENGINE["available"], reason="tests the fallback path; this interpreter runs the exact engine"
)


@pytest.fixture(params=["type-marks", "byte-filter"])
def filter_mode(request):
    """Runs a test under each way the hook picks its events (the engine must be idle)."""
    from memtracker_web import _tracker

    assert not _tracker.engine_state()["installed"]
    _tracker._use_type_marks(request.param == "type-marks")
    try:
        yield request.param
    finally:
        if not _tracker.engine_state()["installed"]:
            _tracker._use_type_marks(True)


@pytest.fixture
def capture():
    c = mt.Capture()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _fresh_defaults():
    """Each test starts without the process-wide tracker and monitor of earlier tests."""
    yield
    from memtracker_web import monitor as monitor_module
    from memtracker_web import tracker as tracker_module

    monitor_module.reset_default_monitor()
    with tracker_module._default_lock:
        default, tracker_module._default = tracker_module._default, None
    if default is not None:
        default.stop()


def line_of(path: str, marker: str) -> int:
    """The line of ``path`` that ends with the comment ``# marker``."""
    with open(path) as fh:
        for number, text in enumerate(fh, 1):
            if text.rstrip().endswith(f"# {marker}") and "line_of(" not in text:
                return number
    raise AssertionError(f"no line ending with '# {marker}' in {path}")


def children_of(master: int) -> set[int]:
    """Live (not zombie) children of a process, from /proc: no extra dependency."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master and fields[0] != "Z":
            pids.add(int(stat.parent.name))
    return pids


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, then kill if it does not exit in time; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def in_forked_child(body: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``body`` in a forked child; return the child's pid and what ``body``
    returned (it must be JSON-serialisable)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with a live thread
        pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    return pid, json.loads(data)
