"""The app that ``python -m memtracker_web demo`` serves: one leaking endpoint, one healthy one.

``/leak`` stores CacheEntry objects in a module-level list that is never
pruned; ``/`` creates a Greeting per request and lets it go. Both types are
monitored, so the page shows one growing and one flat. The same routes exist
as a Starlette (ASGI) app and as a plain WSGI app, for when uvicorn is not
installed; either is wrapped in the package's middleware.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from ..monitor.monitor import MemoryMonitor

PAGE_PATH = "/debug/memory"
METRICS_PATH = "/metrics"
PER_REQUEST = 10
# Small numbers so a second or so of /leak traffic counts as growth and three
# growing samples escalate to call-path analysis.
THRESHOLD = 20
INCREASES = 3


class CacheEntry:
    """What the leaky endpoint keeps; small, but nothing ever removes them."""

    def __init__(self, key: int) -> None:
        self.key = key


class Greeting:
    """Made per request on / and dropped with the response: must stay flat."""

    def __init__(self, text: str) -> None:
        self.text = text


CACHE: list[CacheEntry] = []


def remember() -> int:
    for _ in range(PER_REQUEST):
        CACHE.append(CacheEntry(len(CACHE)))  # LEAK: appended on every request, never removed
    return len(CACHE)


def greet() -> str:
    return Greeting("hello").text


def make_monitor(interval: float = 1.0) -> MemoryMonitor:
    monitor = MemoryMonitor(interval=interval, threshold=THRESHOLD, increases=INCREASES)
    monitor.start_monitoring(CacheEntry)
    monitor.start_monitoring(Greeting)
    return monitor


def asgi_app(monitor: MemoryMonitor) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ..integrations.asgi import MemoryTrackerMiddleware

    async def index(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok", "greeting": greet()})

    async def leak(request: Any) -> JSONResponse:
        return JSONResponse({"cached": remember()})

    app = Starlette(routes=[Route("/", index), Route("/leak", leak)])
    return MemoryTrackerMiddleware(app, path=PAGE_PATH, metrics_path=METRICS_PATH, monitor=monitor)


def wsgi_app(monitor: MemoryMonitor) -> Callable[..., Iterable[bytes]]:
    from ..integrations.wsgi import MemoryTrackerMiddleware

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/":
            return _json(start_response, "200 OK", {"status": "ok", "greeting": greet()})
        if path == "/leak":
            return _json(start_response, "200 OK", {"cached": remember()})
        return _json(start_response, "404 Not Found", {"error": f"no route {path!r}"})

    return MemoryTrackerMiddleware(app, path=PAGE_PATH, metrics_path=METRICS_PATH, monitor=monitor)


def _json(start_response: Callable[..., Any], status: str, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
