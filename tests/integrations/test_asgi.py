"""ASGI middleware: Starlette and FastAPI in-process, lifespan, websockets, raw ASGI edge cases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import types
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from memtracker_web.asgi import MemoryTrackerMiddleware
from support import ORDER, FakeMonitor, Order, leaky_monitor

with warnings.catch_warnings():
    # starlette 1.x warns that it prefers httpx2 over httpx; not our concern here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LOOPBACK = ("127.0.0.1", 50000)
JSON = {"accept": "application/json"}


def make_app(events: list[str]) -> Starlette:
    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home", headers={"x-app": "1"})

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("echo:" + await websocket.receive_text())
        await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("app startup")
        yield
        events.append("app shutdown")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/debug/memoryless", home),
            WebSocketRoute("/ws", echo),
            WebSocketRoute("/debug/memory", echo),
        ],
        lifespan=lifespan,
    )


def client(app: Any, address: tuple[str, int] = LOOPBACK, **kwargs: Any) -> TestClient:
    # a Host the endpoint admits by address (TestClient's default, "testserver", is not: DNS rebinding)
    kwargs.setdefault("base_url", "http://localhost")
    return TestClient(app, client=address, **kwargs)


def test_add_middleware_serves_endpoint_and_passes_through() -> None:
    monitor = leaky_monitor()
    app = make_app([])
    app.add_middleware(
        MemoryTrackerMiddleware,
        path="/debug/memory",
        metrics_path="/metrics",
        monitor=monitor,
        registry=CollectorRegistry(),
    )
    c = client(app)
    r = c.get("/debug/memory", headers=JSON)
    assert r.status_code == 200
    assert r.json() == monitor.snapshot()
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-length"] == str(len(r.content))
    r = c.get("/")
    assert (r.status_code, r.text, r.headers["x-app"]) == (200, "home", "1")
    assert "cache-control" not in r.headers
    r = c.get("/debug/memoryless")  # a prefix that is not our path
    assert (r.status_code, r.text) == (200, "home")
    r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    assert 'memtracker_live_objects{type="shop.cache.Entry"} 300.0' in r.text
    r = c.get("/nope")
    assert r.status_code == 404 and r.text == "Not Found"  # the app's 404, not ours


def test_html_and_detail_over_asgi() -> None:
    app = MemoryTrackerMiddleware(make_app([]), monitor=leaky_monitor())
    c = client(app)
    r = c.get("/debug/memory")
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert '<a href="/debug/memory/types/shop.cache.Entry"><code>shop.cache.Entry</code></a>' in r.text
    r = c.get("/debug/memory/types/shop.cache.Entry", params={"format": "json"})
    assert r.json()["hotspots"][0]["function"] == "remember"


def test_root_path_prefixes_links() -> None:
    app = MemoryTrackerMiddleware(make_app([]), monitor=leaky_monitor())
    c = client(app, root_path="/app")
    r = c.get("/debug/memory")
    assert r.status_code == 200
    assert '<a href="/app/debug/memory/types/shop.cache.Entry">' in r.text


def test_track_untrack_over_asgi() -> None:
    monitor = FakeMonitor()
    c = client(MemoryTrackerMiddleware(make_app([]), monitor=monitor))
    r = c.post("/debug/memory/track", json={"type": ORDER, "analysis": True})
    assert (r.status_code, r.json()) == (200, {"type": ORDER, "tracking": True, "analysis": True})
    assert monitor.calls == [("start_monitoring", Order, None, True)]
    r = c.post("/debug/memory/untrack", json={"type": ORDER})
    assert (r.status_code, r.json()) == (200, {"type": ORDER, "tracking": False})
    r = c.post("/debug/memory/track", content=b"{bad", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"error": "body is not valid JSON"})
    r = c.post("/debug/memory/track", content=b"x" * 20000, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (413, {"error": "request body is larger than 16384 bytes"})
    r = c.put("/debug/memory/track", json={})
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    r = c.get("/debug/memory/missing")
    assert (r.status_code, r.json()) == (404, {"error": "no route '/debug/memory/missing'; see /debug/memory"})


@pytest.mark.parametrize(
    "address, token, headers, status",
    [
        (LOOPBACK, None, {}, 200),
        (("203.0.113.9", 1), None, {}, 403),
        (("testclient", 50000), None, {}, 403),
        (("203.0.113.9", 1), "tok", {}, 401),
        (("203.0.113.9", 1), "tok", {"authorization": "Bearer tok"}, 200),
        (("203.0.113.9", 1), "tok", {"authorization": "Bearer nope"}, 403),
        (LOOPBACK, None, {"x-forwarded-for": "203.0.113.9"}, 403),
    ],
)
def test_auth_over_asgi(address: tuple[str, int], token: str | None, headers: dict[str, str], status: int) -> None:
    c = client(MemoryTrackerMiddleware(make_app([]), monitor=leaky_monitor(), token=token), address)
    r = c.get("/debug/memory", headers={**JSON, **headers})
    assert r.status_code == status
    # The app behind is reachable for everyone; only the endpoint is guarded.
    assert c.get("/").status_code == 200


def test_lifespan_starts_and_stops_the_monitor() -> None:
    events: list[str] = []
    monitor = FakeMonitor()
    app = make_app(events)
    app.add_middleware(MemoryTrackerMiddleware, monitor=monitor)
    with client(app) as c:
        assert (monitor.running, monitor.starts) == (True, 1)
        assert events == ["app startup"]
        assert c.get("/").text == "home"
        assert monitor.starts == 1  # the first request does not start it again
    assert events == ["app startup", "app shutdown"]
    assert (monitor.running, monitor.stops) == (False, 1)


def test_lifespan_leaves_a_running_monitor_alone() -> None:
    monitor = FakeMonitor()
    monitor.start()
    app = make_app([])
    app.add_middleware(MemoryTrackerMiddleware, monitor=monitor)
    with client(app):
        pass
    assert (monitor.starts, monitor.stops, monitor.running) == (1, 0, True)


def test_the_monitor_starts_as_the_app_loads_without_lifespan() -> None:
    monitor = FakeMonitor()
    middleware = MemoryTrackerMiddleware(make_app([]), monitor=monitor)
    assert monitor.starts == 1 and monitor.running  # a worker is in the view before its first request
    assert middleware.endpoint.serving is False
    c = client(middleware)
    c.get("/")
    c.get("/")
    assert monitor.starts == 1 and monitor.running and middleware.endpoint.serving


def test_websocket_passes_through() -> None:
    monitor = FakeMonitor()
    c = client(MemoryTrackerMiddleware(make_app([]), monitor=monitor))
    for path in ("/ws", "/debug/memory"):  # even on our path: websockets are the app's
        with c.websocket_connect(path) as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "echo:hi"


def test_fastapi_add_middleware_and_install() -> None:
    from fastapi import FastAPI

    from memtracker_web.fastapi import install

    for use_install in (False, True):
        monitor = leaky_monitor()
        api = FastAPI()

        @api.get("/")
        def root() -> dict[str, str]:
            return {"ok": "yes"}

        if use_install:
            install(api, path="/mem", metrics_path="/metrics", monitor=monitor, registry=CollectorRegistry())
        else:
            api.add_middleware(
                MemoryTrackerMiddleware,
                path="/mem",
                metrics_path="/metrics",
                monitor=monitor,
                registry=CollectorRegistry(),
            )
        with client(api) as c:
            assert monitor.running
            assert c.get("/").json() == {"ok": "yes"}
            assert c.get("/mem", headers=JSON).json()["types"][0]["type"] == "shop.cache.Entry"
            assert c.get("/metrics").status_code == 200
            assert c.get("/debug/memory").status_code == 404  # the default path is not served
        assert not monitor.running


def test_fastapi_install_validates_now() -> None:
    from fastapi import FastAPI

    from memtracker_web.fastapi import install

    with pytest.raises(ValueError, match="unknown memtracker option"):
        install(FastAPI(), pth="/x")


def test_default_monitor_gets_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # The process-wide monitor is built lazily from these options (CONTRACTS.md).
    calls: list[dict[str, Any]] = []
    monitor = FakeMonitor()

    def get_default_monitor(**options: Any) -> FakeMonitor:
        calls.append(options)
        return monitor

    fake = types.ModuleType("memtracker_web.monitor")
    fake.get_default_monitor = get_default_monitor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "memtracker_web.monitor", fake)
    app = MemoryTrackerMiddleware(
        make_app([]), track=[Order, "x.Y"], watch_all=True, threshold=5, increases=2, interval=0.5, watch_sample=8
    )
    # built as the app loads (so the worker is in the view at once), once
    assert calls == [
        {"track": (Order, "x.Y"), "watch_all": True, "watch_sample": 8, "threshold": 5, "increases": 2, "interval": 0.5}
    ]
    with client(app) as c:
        assert len(calls) == 1
        assert c.get("/debug/memory", headers=JSON).json()["pid"] == 4242
    assert monitor.stops == 1
    app2 = MemoryTrackerMiddleware(make_app([]))
    client(app2).get("/")
    assert calls[-1] == {"track": ()}


# -- raw ASGI: what the test clients cannot send -------------------------------------


def run_asgi(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }


def test_chunked_body_is_assembled_and_limited() -> None:
    monitor = FakeMonitor()
    app = MemoryTrackerMiddleware(make_app([]), monitor=monitor)
    body = json.dumps({"type": ORDER}).encode()
    chunks = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]
    sent = run_asgi(app, http_scope("POST", "/debug/memory/track", [(b"content-type", b"application/json")]), chunks)
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"type": ORDER, "tracking": True, "analysis": False}

    big = [{"type": "http.request", "body": b" " * 10000, "more_body": True}] * 5
    sent = run_asgi(app, http_scope("POST", "/debug/memory/track", [(b"content-type", b"application/json")]), big)
    assert sent[0]["status"] == 413
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"


def test_repeated_headers_are_joined() -> None:
    app = MemoryTrackerMiddleware(make_app([]), monitor=leaky_monitor(), token="t")
    scope = http_scope("GET", "/debug/memory", [(b"accept", b"text/plain"), (b"accept", b"application/json")])
    scope["client"] = ("203.0.113.9", 1)
    scope["headers"].append((b"authorization", b"Bearer t"))
    sent = run_asgi(app, scope, [])
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"


def test_lifespan_scope_reaches_the_app_unchanged() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    monitor = FakeMonitor()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent = run_asgi(
        MemoryTrackerMiddleware(app, monitor=monitor),
        scope,
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )
    assert seen == [scope, "lifespan.startup", "lifespan.shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert (monitor.starts, monitor.stops) == (1, 1)


# -- the real monitor ------------------------------------------------------------------


def test_real_default_monitor_over_asgi() -> None:
    import memtracker_web
    from memtracker_web.core.naming import type_name
    from memtracker_web.monitor import monitor as mon
    from support import Basket

    mon.reset_default_monitor()
    try:
        app = make_app([])
        app.add_middleware(MemoryTrackerMiddleware, track=[Order], interval=30.0, threshold=1, increases=1)
        with client(app) as c:
            monitor = mon.get_default_monitor()
            assert monitor.running  # started by lifespan startup
            keep = [Order() for _ in range(7)]
            monitor.sample()
            data = c.get("/debug/memory", headers=JSON).json()
            assert data["mode"] == ("exact" if memtracker_web.engine_status()["available"] else "census")
            assert [(t["type"], t["live"]) for t in data["types"]] == [(ORDER, 7)]
            detail = c.get(f"/debug/memory/types/{ORDER}", headers=JSON).json()
            assert (detail["type"], detail["live"], type(detail["hotspots"])) == (ORDER, 7, list)
            r = c.post("/debug/memory/track", json={"type": type_name(Basket), "analysis": True})
            assert r.status_code == 200
            assert Basket in monitor.monitored()
            r = c.post("/debug/memory/untrack", json={"type": type_name(Basket)})
            assert (r.status_code, Basket in monitor.monitored()) == (200, False)
            page = c.get("/debug/memory").text
            assert f"<code>{ORDER}</code>" in page
            del keep
        assert not monitor.running  # stopped by lifespan shutdown: we started it
    finally:
        mon.reset_default_monitor()


PAGE_UNDER_ASYNCIO = """
import asyncio, contextvars, sys, threading
sys.path.insert(0, sys.argv[1])
from memtracker_web.asgi import MemoryTrackerMiddleware
from support import leaky_monitor

seen = {}
request_id = contextvars.ContextVar("request_id")

async def app(scope, receive, send):
    raise AssertionError("the page is ours")

monitor = leaky_monitor()
snapshot = monitor.snapshot
def snapshot_off_the_loop(*args, **kwargs):
    seen["thread"] = threading.get_ident()
    seen["request_id"] = request_id.get("unset")
    return snapshot(*args, **kwargs)
monitor.snapshot = snapshot_off_the_loop
middleware = MemoryTrackerMiddleware(app, monitor=monitor)

async def main():
    request_id.set("request-7")  # as an app's logging middleware would
    sent = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/debug/memory", "raw_path": b"/debug/memory", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"localhost"), (b"accept", b"application/json")],
             "client": ("127.0.0.1", 50000), "server": ("localhost", 80)}
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await middleware(scope, receive, send)
    off_the_loop = seen["thread"] != threading.get_ident()
    # the page asked for as the loop ends (asyncio.run shuts its default executor down)
    await asyncio.get_running_loop().shutdown_default_executor()
    await middleware(scope, receive, send)
    return sent, off_the_loop

sent, off_the_loop = asyncio.run(main())
print(sent[0]["status"], sent[1]["body"][:1].decode(), off_the_loop,
      seen["request_id"], "anyio._backends._asyncio" in sys.modules, sent[2]["status"], sent[3]["body"][:1].decode())
"""


def test_the_page_runs_off_the_loop_in_the_request_context_without_loading_anyio() -> None:
    # anyio's to_thread would load its asyncio backend on the page's first view: hundreds
    # of objects made at once in an all-async app, into the counts of a leak being analysed
    tests = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", PAGE_UNDER_ASYNCIO, tests], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # (the page runs in the request's context, as under anyio: what an app's middleware
    # put in a context variable is there for a log record the page makes)
    # and asked for once the default executor is shut down (the loop ending): built inline
    assert done.stdout.split() == ["200", "{", "True", "request-7", "False", "200", "{"]
