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
