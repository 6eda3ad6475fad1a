"""FastAPI app with a deliberate leak, watched by memtracker-web.

Run from the repository root:
    MEMTRACKER_INTERVAL=0.3 uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000

Then call http://127.0.0.1:8000/leak a few dozen times and open
http://127.0.0.1:8000/debug/memory (JSON: add ?format=json).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from memtracker_web.asgi import MemoryTrackerMiddleware


class CacheEntry:
    """What the leaky endpoint stores; small on purpose, many of them add up."""

    def __init__(self, key: int) -> None:
        self.key = key


CACHE: list[CacheEntry] = []  # module-level and never pruned: the leak
PER_REQUEST = 10

app = FastAPI()
app.add_middleware(
    MemoryTrackerMiddleware,
    path="/debug/memory",
    metrics_path="/metrics",
    track=[CacheEntry],
    threshold=50,  # small numbers so a few dozen /leak calls escalate it
    increases=3,
    interval=float(os.environ.get("MEMTRACKER_INTERVAL", "1.0")),
)


@app.get("/")
def index() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/leak")
def leak() -> dict[str, int]:
    for _ in range(PER_REQUEST):
        CACHE.append(CacheEntry(len(CACHE)))  # LEAK: entries are added and never removed
    return {"cached": len(CACHE), "pid": os.getpid()}  # per worker: each has its own CACHE
