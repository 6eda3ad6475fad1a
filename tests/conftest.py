"""Fixtures for every test. Shared helpers are in support.py (this file puts tests/
on sys.path so test modules in the folders below can import it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import memtracker_web as mt

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


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
    """Each test starts without the process-wide tracker, monitor and worker-file
    publishers of earlier tests."""
    yield
    from memtracker_web.core import tracker as tracker_module
    from memtracker_web.monitor import monitor as monitor_module
    from memtracker_web.store import workers

    workers.forget_publishers()

    monitor_module.reset_default_monitor()
    with tracker_module._default_lock:
        default, tracker_module._default = tracker_module._default, None
    if default is not None:
        default.stop()


@pytest.fixture(autouse=True)
def _unhurried_verification(monkeypatch):
    """A verification search cut short by its time budget (0.2 s) judges what it did
    not reach as held by something unseen: on a loaded machine, under ``-X dev``,
    beside another test worker and pytest's own heap, a search of the tests' few
    objects can take that long, and a test of what a search decides would then test
    the machine's load. (A test of the budget sets its own.)"""
    from memtracker_web.monitor import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "VERIFY_BUDGET", 30.0)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A shared directory for worker files, as memtracker_web requires it (only this user may write it)."""
    path = tmp_path / "shared"
    path.mkdir(mode=0o700)
    return path
