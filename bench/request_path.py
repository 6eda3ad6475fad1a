"""Drive one request kind through the ASGI or the WSGI middleware in process, for
instruction counts of a request (issue 16: the request path's cost before and
after the hardening checks).

    BENCH: PYTHONPATH=TREE PYTHONHASHSEED=1 valgrind --tool=callgrind python bench/request_path.py ADAPTER MODE KIND N

ADAPTER is asgi or wsgi. MODE is bare (the app alone) or middleware (our
middleware, a monitor with nothing to count: no tracer, so what is measured is
our layer alone; interval 1 h). KIND is
  app       GET /              the app's own request (not ours)
  ours-404  GET /debug/memory/nope  ours: admission (address, Host), routing, a JSON 404
  ours-json GET /debug/memory with Accept: application/json: the snapshot as JSON
Every request carries the same seven headers a browser sends (Host: localhost:8000,
so a request admitted by address passes the Host check), from 127.0.0.1. N
requests follow startup and 50 warm-up ones; run with N and with 0 and
subtract, like bench/asgi_requests.py. Unlike that script this one imports
memtracker_web from PYTHONPATH (it prints which, on stderr), so one copy of it
measures any checkout of the library.
"""

from __future__ import annotations

import asyncio
import io
import sys

PATHS = {"app": "/", "ours-404": "/debug/memory/nope", "ours-json": "/debug/memory"}
HEADERS = [
    ("host", "localhost:8000"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
    ("accept", "application/json"),
    ("accept-language", "en-GB,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    ("sec-fetch-site", "none"),
]
BODY = b'{"hello":"world","items":[1,2,3]}'


def _middleware_options() -> dict:
    return dict(metrics_path="/metrics", watch_all=False, track=[], interval=3600.0)


# -- ASGI ----------------------------------------------------------------------
def asgi_app(mode: str):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        return JSONResponse({"hello": "world", "items": [1, 2, 3]})

    app = Starlette(routes=[Route("/", hello)])
    if mode == "middleware":
        from memtracker_web.asgi import MemoryTrackerMiddleware

        app.add_middleware(MemoryTrackerMiddleware, **_middleware_options())
    return app


def _scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }


async def _asgi_run(app, path: str, n: int, want: int) -> None:
    inbox: asyncio.Queue = asyncio.Queue()
    replies: list = []

    async def receive():
        return await inbox.get()

    async def send(message):
        replies.append(message)

    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    while not replies:
        await asyncio.sleep(0)

    async def request_receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list = []

    async def request_send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(50 + n):
        await app(_scope(path), request_receive, request_send)
    if set(statuses) != {want}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}, wanted {want}")
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


# -- WSGI ----------------------------------------------------------------------
def wsgi_app(mode: str):
    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]

    if mode == "middleware":
        from memtracker_web.wsgi import MemoryTrackerMiddleware

        return MemoryTrackerMiddleware(hello, **_middleware_options())
    return hello


def _environ(path: str) -> dict:
    """What wsgiref.simple_server gives an app (no RAW_URI/REQUEST_URI)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_HOST": "",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "WSGIServer/0.2",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in HEADERS:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _wsgi_run(app, path: str, n: int, want: int) -> None:
    statuses: list = []

    def start_response(status, headers, exc_info=None):
        statuses.append(int(status.split(" ", 1)[0]))
        return lambda data: None

    for _ in range(50 + n):
        result = app(_environ(path), start_response)
        try:
            for _chunk in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    if set(statuses) != {want}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}, wanted {want}")


def main() -> None:
    adapter, mode, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if adapter not in ("asgi", "wsgi") or mode not in ("bare", "middleware") or kind not in PATHS:
        raise SystemExit(__doc__)
    if mode == "bare" and kind != "app":
        raise SystemExit("bare: only the app's own request (KIND app)")
    import memtracker_web

    print(f"memtracker_web from {memtracker_web.__file__}", file=sys.stderr)
    want = {"app": 200, "ours-404": 404, "ours-json": 200}[kind]
    if adapter == "asgi":
        asyncio.run(_asgi_run(asgi_app(mode), PATHS[kind], n, want))
    else:
        _wsgi_run(wsgi_app(mode), PATHS[kind], n, want)


if __name__ == "__main__":
    main()
