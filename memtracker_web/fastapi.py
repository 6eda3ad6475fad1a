"""FastAPI helper: ``install(app, path="/debug/memory", metrics_path="/metrics")``.

Equivalent to ``app.add_middleware(MemoryTrackerMiddleware, **options)``; it
validates the options now instead of when the first request builds the stack.
"""
from __future__ import annotations

from typing import Any

from .asgi import MemoryTrackerMiddleware
from .endpoint import options_from_mapping


def install(app: Any, **options: Any) -> None:
    options_from_mapping(options)
    app.add_middleware(MemoryTrackerMiddleware, **options)
