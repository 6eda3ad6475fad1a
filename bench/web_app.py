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

MODE = os.environ.get("BENCH_MODE", "bare")
if MODE != "bare":
    from memtracker_web.asgi import MemoryTrackerMiddleware

    # "middleware": the middleware and a monitor counting two types;
    # "tracked": the same with watch-all on (BENCH_WATCH_SAMPLE: one object in N
    # counted, 64 by default; 1 counts every object).
    app.add_middleware(MemoryTrackerMiddleware, metrics_path="/metrics", watch_all=MODE == "tracked",
                       watch_sample=int(os.environ.get("BENCH_WATCH_SAMPLE", "64")),
                       interval=float(os.environ.get("BENCH_INTERVAL", "60")),
                       track=["starlette.requests.Request", "starlette.responses.JSONResponse"])
