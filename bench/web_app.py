"""The trivial app of bench_web.py: bare, or behind our middleware with watch-all on.

    BENCH_MODE=bare|tracked uvicorn bench.web_app:app
"""
from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": "world", "items": [1, 2, 3]})


app = Starlette(routes=[Route("/", hello)])

if os.environ.get("BENCH_MODE") == "tracked":
    from memtracker_web.asgi import MemoryTrackerMiddleware

    # Watch-all on and a short interval: the monitor samples often while wrk runs.
    app.add_middleware(MemoryTrackerMiddleware, metrics_path="/metrics", watch_all=True, interval=1.0,
                       track=["starlette.requests.Request", "starlette.responses.JSONResponse"])
