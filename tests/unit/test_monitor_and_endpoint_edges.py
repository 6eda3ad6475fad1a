"""Regressions for review findings in the Python layer: each failed before its fix."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import pytest

from memtracker_web.monitor import MemoryMonitor, reset_default_monitor
from memtracker_web.render import page as html
from support import JSON, POST_JSON, call, endpoint, in_forked_child


@pytest.mark.parametrize("header", [{"forwarded": "for=203.0.113.9"}, {"x-real-ip": "203.0.113.9"}])
def test_a_trusted_proxy_without_x_forwarded_for_does_not_admit_everyone(header):
    ep = endpoint(trusted_proxies=["127.0.0.1"])
    status, _, body = call(ep, headers={**JSON, **header}, client="127.0.0.1")
    assert status == 403, body
    status, _, _ = call(ep, headers=JSON, client="127.0.0.1")  # the proxy itself, no headers
    assert status == 200


def test_post_track_never_imports_a_module():
    assert "this" not in sys.modules or pytest.skip("module 'this' was imported by something else")
    ep = endpoint()
    status, _, body = call(
        ep, "POST", "/debug/memory/track", headers=POST_JSON, body=json.dumps({"type": "this.Anything"}).encode()
    )
    assert status == 404, body
    assert "this" not in sys.modules


def test_a_bad_configured_type_name_is_logged_not_raised_into_requests(caplog):
    reset_default_monitor()
    try:
        ep = endpoint(monitor=None, track=["no_such_package_xyz.Order"])
        with caplog.at_level(logging.ERROR, logger="memtracker_web"):
            ep.ensure_monitor()
        assert "cannot monitor 'no_such_package_xyz.Order'" in caplog.text
        status, _, _ = call(ep, headers=JSON)
        assert status == 200
    finally:
        reset_default_monitor()


def test_times_from_a_corrupt_snapshot_render_as_invalid():
    assert html._when(1e300) == "invalid time"
    assert html._when(None) == "never"


def test_one_snapshot_build_per_sample(monkeypatch):
    m = MemoryMonitor()
    builds = []
    original = m._type_entry

    def counting(*args, **kwargs):
        builds.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(m, "_type_entry", counting)
    try:
        m.start_monitoring(dict)
        m.sample()
        first = m.snapshot()
        second = m.snapshot()
        assert len(builds) == 1 and first["types"] == second["types"]
        m.sample()
        m.snapshot()
        assert len(builds) == 2
        m.start_monitoring(list)  # the monitored set changed: rebuilt
        assert {t["type"] for t in m.snapshot()["types"]} == {"builtins.dict", "builtins.list"}
    finally:
        m.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_start_in_a_forked_child_runs_exactly_one_sampler():
    m = MemoryMonitor(interval=0.05)
    m.start()

    def child():
        m.start()  # as Endpoint.start() does
        time.sleep(0.3)
        threads = sum(t.name == "memtracker-monitor" for t in threading.enumerate())
        m.stop()
        after = sum(t.name == "memtracker-monitor" and t.is_alive() for t in threading.enumerate())
        return [threads, after]

    _, result = in_forked_child(child)
    m.close()
    assert result == [1, 0]
