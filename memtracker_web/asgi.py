"""Public path of the ASGI middleware (the code: :mod:`memtracker_web.integrations.asgi`)."""

from .integrations.asgi import MemoryTrackerMiddleware

__all__ = ["MemoryTrackerMiddleware"]
