"""The trivial app of bench_web.py: bare, or behind our middleware with watch-all on.

BENCH_MODE=bare|noop-tracer|middleware-idle|middleware|tracked|watch-only uvicorn bench.web_app:app
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
if MODE == "noop-tracer":
    # The bare app with a reference tracer that does nothing: what CPython's
    # tracer call costs the whole server (uvicorn's objects included), the floor
    # under every mode that counts.
    from memtracker_web import _tracker

    _tracker._noop_tracer(True)
elif MODE != "bare":
    from memtracker_web.asgi import MemoryTrackerMiddleware

    # "middleware": the middleware and a monitor counting two types;
    # "tracked": the same with watch-all on (BENCH_WATCH_SAMPLE: one object in N
    # counted, 64 by default; 1 counts every object);
    # "watch-only": the middleware and a monitor with watch-all on, no type named;
    # "middleware-idle": the middleware and a monitor with nothing to count, so
    # no tracer is installed: what our layer alone costs.
    app.add_middleware(
        MemoryTrackerMiddleware,
        metrics_path="/metrics",
        watch_all=MODE not in ("middleware", "middleware-idle"),
        watch_sample=int(os.environ.get("BENCH_WATCH_SAMPLE", "64")),
        interval=float(os.environ.get("BENCH_INTERVAL", "60")),
        track=[]
        if MODE in ("watch-only", "middleware-idle")
        else ["starlette.requests.Request", "starlette.responses.JSONResponse"],
    )
