from __future__ import annotations

import pytest

import memtracker_web as mt

ENGINE = mt.engine_status()

requires_engine = pytest.mark.skipif(
    not ENGINE["available"], reason=f"exact engine unavailable: {ENGINE['reason']}"
)
without_engine = pytest.mark.skipif(
    ENGINE["available"], reason="tests the fallback path; this interpreter runs the exact engine"
)


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
