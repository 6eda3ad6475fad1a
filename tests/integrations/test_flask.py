"""Flask extension: MemoryTracker(app) and init_app, options from app.config."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from memtracker_web.flask import MemoryTracker
from memtracker_web.wsgi import MemoryTrackerMiddleware
from support import ORDER, FakeMonitor, Order, leaky_monitor

JSON = {"Accept": "application/json"}


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)

    @app.get("/")
    def home() -> str:
        return "home"

    return app


def test_constructor_wraps_wsgi_app() -> None:
    monitor = leaky_monitor()
    app = make_app()
    MemoryTracker(app, monitor=monitor, metrics_path="/metrics", registry=CollectorRegistry())
    assert isinstance(app.wsgi_app, MemoryTrackerMiddleware)
    assert app.extensions["memtracker"] is app.wsgi_app
    c = app.test_client()
    r = c.get("/debug/memory", headers=JSON)
    assert (r.status_code, r.json) == (200, monitor.snapshot())
    assert r.headers["Cache-Control"] == "no-store"
    assert c.get("/").text == "home"
    assert c.get("/metrics").status_code == 200
    assert c.get("/missing").status_code == 404
    assert monitor.running


def test_init_app_with_config_overriding_constructor() -> None:
    monitor = leaky_monitor()
    tracker = MemoryTracker(path="/ignored", token="from-ctor", monitor=monitor)
    app = make_app(MEMTRACKER={"path": "/mem"})
    tracker.init_app(app)
    c = app.test_client()
    assert c.get("/mem", headers=JSON).status_code == 200  # loopback is allowed without a token
    assert c.get("/ignored").status_code == 404
    r = c.get(
        "/mem", headers={**JSON, "Authorization": "Bearer from-ctor"}, environ_overrides={"REMOTE_ADDR": "198.51.100.7"}
    )
    assert r.status_code == 200
    r = c.get("/mem", headers=JSON, environ_overrides={"REMOTE_ADDR": "198.51.100.7"})
    assert (r.status_code, r.json) == (401, {"error": "missing token: send 'Authorization: Bearer <token>'"})


def test_one_extension_several_apps() -> None:
    tracker = MemoryTracker(monitor=FakeMonitor())
    first, second = make_app(MEMTRACKER={"path": "/one"}), make_app(MEMTRACKER={"path": "/two"})
    tracker.init_app(first)
    tracker.init_app(second)
    assert first.test_client().get("/one", headers=JSON).status_code == 200
    assert first.test_client().get("/two").status_code == 404
    assert second.test_client().get("/two", headers=JSON).status_code == 200


def test_track_through_flask() -> None:
    monitor = FakeMonitor()
    app = make_app()
    MemoryTracker(app, monitor=monitor)
    r = app.test_client().post("/debug/memory/track", json={"type": ORDER, "analysis": True})
    assert (r.status_code, r.json) == (200, {"type": ORDER, "tracking": True, "analysis": True})
    assert monitor.calls == [("start_monitoring", Order, None, True)]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown memtracker option"):
        MemoryTracker(paht="/x")
    with pytest.raises(ValueError, match="unknown memtracker option"):
        MemoryTracker(make_app(MEMTRACKER={"tokn": "x"}))
    with pytest.raises(TypeError, match=r'app.config\["MEMTRACKER"\] must be a dict'):
        MemoryTracker(make_app(MEMTRACKER="/x"))
    with pytest.raises(ValueError, match="path must look like"):
        MemoryTracker(make_app(MEMTRACKER={"path": "mem"}))
