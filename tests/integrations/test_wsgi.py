"""WSGI middleware through werkzeug's test client."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Request as WRequest
from werkzeug.wrappers import Response as WResponse

from memtracker_web.endpoint import MAX_BODY
from memtracker_web.wsgi import MemoryTrackerMiddleware, read_body
from support import ORDER, FakeMonitor, Order, leaky_monitor

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
JSON = {"Accept": "application/json"}


@WRequest.application
def inner(request: WRequest) -> WResponse:
    return WResponse(f"app:{request.path}", headers={"X-App": "1"})


def make(monitor: Any = None, **options: Any) -> tuple[Client, FakeMonitor]:
    monitor = monitor or leaky_monitor()
    return Client(MemoryTrackerMiddleware(inner, monitor=monitor, **options)), monitor


def get(c: Client, path: str, addr: str = "127.0.0.1", **kwargs: Any) -> Any:
    return c.get(path, environ_overrides={"REMOTE_ADDR": addr}, **kwargs)


def post(c: Client, path: str, data: Any, addr: str = "127.0.0.1", **kwargs: Any) -> Any:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    kwargs.setdefault("content_type", "application/json")
    return c.post(path, data=body, environ_overrides={"REMOTE_ADDR": addr}, **kwargs)


def test_serves_endpoint_and_passes_through() -> None:
    c, monitor = make(metrics_path="/metrics", registry=CollectorRegistry())
    r = get(c, "/debug/memory", headers=JSON)
    assert r.status_code == 200
    assert r.json == monitor.snapshot()
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Length"] == str(len(r.data))
    r = get(c, "/shop")
    assert (r.status_code, r.text, r.headers["X-App"]) == (200, "app:/shop", "1")
    assert "Cache-Control" not in r.headers
    assert get(c, "/debug/memoryless").text == "app:/debug/memoryless"
    r = get(c, "/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=")


def test_html_under_a_script_name() -> None:
    c, _ = make()
    r = c.get("/debug/memory", environ_overrides={**LOOPBACK, "SCRIPT_NAME": "/app/"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<a href="/app/debug/memory/types/shop.cache.Entry">' in r.text


def test_type_detail_and_not_found() -> None:
    c, _ = make()
    r = get(c, "/debug/memory/types/shop.cache.Entry?format=json")
    assert r.json["hotspots"][0]["lineno"] == 17
    r = get(c, "/debug/memory/types/nope.Nope?format=json")
    assert (r.status_code, r.json) == (
        404,
        {"error": "unknown type 'nope.Nope': it is not tracked or seen by the monitor"},
    )


def test_track_untrack_and_errors() -> None:
    c, monitor = make(FakeMonitor())
    r = post(c, "/debug/memory/track", {"type": ORDER, "analysis": True})
    assert (r.status_code, r.json) == (200, {"type": ORDER, "tracking": True, "analysis": True})
    assert monitor.calls == [("start_monitoring", Order, None, True)]
    r = post(c, "/debug/memory/untrack", {"type": ORDER})
    assert (r.status_code, r.json) == (200, {"type": ORDER, "tracking": False})
    r = post(c, "/debug/memory/track", b"nope")
    assert (r.status_code, r.json) == (400, {"error": "body is not valid JSON"})
    r = post(c, "/debug/memory/track", b" " * (MAX_BODY + 1))
    assert (r.status_code, r.json) == (413, {"error": "request body is larger than 16384 bytes"})
    r = post(c, "/debug/memory/track", {"type": ORDER}, content_type="text/plain")
    assert r.status_code == 415
    r = c.delete("/debug/memory/untrack", environ_overrides=LOOPBACK)
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")
    assert len(monitor.calls) == 2


@pytest.mark.parametrize(
    "addr, token, headers, status",
    [
        ("127.0.0.1", None, {}, 200),
        ("::1", None, {}, 200),
        ("198.51.100.4", None, {}, 403),
        ("198.51.100.4", "tok", {}, 401),
        ("198.51.100.4", "tok", {"Authorization": "Bearer tok"}, 200),
        ("198.51.100.4", "tok", {"Authorization": "Bearer tik"}, 403),
        ("127.0.0.1", None, {"X-Forwarded-For": "198.51.100.4"}, 403),
    ],
)
def test_auth(addr: str, token: str | None, headers: dict[str, str], status: int) -> None:
    c, _ = make(token=token)
    assert get(c, "/debug/memory", addr, headers={**JSON, **headers}).status_code == status
    assert get(c, "/", addr).status_code == 200


def test_the_monitor_starts_as_the_app_loads() -> None:
    monitor = FakeMonitor()
    middleware = MemoryTrackerMiddleware(inner, monitor=monitor)
    # at construction: a worker is in the view before its first request (fork-safe: test_fork.py)
    assert (monitor.starts, monitor.running, middleware.endpoint.serving) == (1, True, False)
    c = Client(middleware)
    get(c, "/")
    get(c, "/debug/memory")
    assert (monitor.starts, monitor.running, middleware.endpoint.serving) == (1, True, True)


def test_read_body_framing() -> None:
    def environ(data: bytes, **extra: Any) -> dict[str, Any]:
        return {"wsgi.input": io.BytesIO(data), **extra}

    assert read_body(environ(b"abcdef", CONTENT_LENGTH="3")) == b"abc"
    assert read_body(environ(b"abc", CONTENT_LENGTH=str(MAX_BODY + 1))) == b""
    assert read_body(environ(b"abc")) == b""  # unframed: never block on read()
    big = b"x" * (MAX_BODY + 100)
    assert read_body(environ(big, **{"wsgi.input_terminated": True})) == big[: MAX_BODY + 1]
    assert read_body({}) == b""


def test_chunked_request_over_the_limit() -> None:
    monitor = FakeMonitor()
    mw = MemoryTrackerMiddleware(inner, monitor=monitor)
    env = EnvironBuilder(
        path="/debug/memory/track",
        method="POST",
        input_stream=io.BytesIO(b" " * 20000),
        content_type="application/json",
    ).get_environ()
    env.pop("CONTENT_LENGTH", None)
    env.update({"REMOTE_ADDR": "127.0.0.1", "wsgi.input_terminated": True})
    body, status, headers = run_wsgi_app(mw, env)
    assert status == "413 Content Too Large"
    assert json.loads(b"".join(body)) == {"error": "request body is larger than 16384 bytes"}
    assert monitor.calls == []


def test_inner_iterable_is_returned_untouched() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterable[bytes]:
            return iter([b"a", b"b"])

        def close(self) -> None:
            closed.append(True)

    def app(environ: Any, start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    mw = MemoryTrackerMiddleware(app, monitor=FakeMonitor())
    r = Client(mw).get("/x")
    assert r.data == b"ab"
    r.close()
    assert closed == [True]


def test_real_monitor_over_wsgi() -> None:
    from memtracker_web.monitor import MemoryMonitor

    monitor = MemoryMonitor(interval=30.0, threshold=1, increases=1)
    try:
        c = Client(MemoryTrackerMiddleware(inner, monitor=monitor, track=[f"{Order.__module__}.Order"]))
        assert monitor.running  # started as the app loaded
        assert get(c, "/").status_code == 200
        assert monitor.running and monitor.monitored() == [Order]
        keep = [Order() for _ in range(5)]
        monitor.sample()
        data = get(c, "/debug/memory", headers=JSON).json
        assert [(t["type"], t["live"]) for t in data["types"]] == [(ORDER, 5)]
        assert get(c, f"/debug/memory/types/{ORDER}?format=json").json["live"] == 5
        del keep
    finally:
        monitor.close()
