"""The trivial app of bench_web.py: bare, or behind our middleware with watch-all on.

    BENCH_MODE=bare|middleware|tracked|watch-only uvicorn bench.web_app:app
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
    # counted, 64 by default; 1 counts every object);
    # "watch-only": the middleware and a monitor with watch-all on, no type named.
    app.add_middleware(MemoryTrackerMiddleware, metrics_path="/metrics", watch_all=MODE != "middleware",
                       watch_sample=int(os.environ.get("BENCH_WATCH_SAMPLE", "64")),
                       interval=float(os.environ.get("BENCH_INTERVAL", "60")),
                       track=[] if MODE == "watch-only" else ["starlette.requests.Request",
                                                             "starlette.responses.JSONResponse"])
