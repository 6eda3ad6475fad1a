"""Drive bench/web_app.py's ASGI app in-process, for instruction counts of a request.

    BENCH: valgrind --tool=callgrind python bench/asgi_requests.py MODE N

MODE is a web_app mode (bare, middleware, tracked, watch-only); N requests follow lifespan
startup (which starts the monitor and, in "tracked", watch-all) and 50 warm-up
requests. Run with N and with 0 and subtract: the difference is N requests'
instructions. Under valgrind the process runs ~50x slower, so the monitor's
60 s sample can land inside the N-request run; compare per-function totals
(callgrind_annotate) to leave it out.
"""

from __future__ import annotations

import asyncio
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scope() -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }


async def _request(app) -> None:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await app(_scope(), receive, send)


async def _run(app, n: int) -> None:
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
    for _ in range(50 + n):
        await _request(app)
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    os.environ["BENCH_MODE"] = mode
    sys.path.insert(0, ROOT)
    from bench.web_app import app

    asyncio.run(_run(app, n))


if __name__ == "__main__":
    main()
