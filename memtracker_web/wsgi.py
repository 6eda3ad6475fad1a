"""Public path of the WSGI middleware (the code: :mod:`memtracker_web.integrations.wsgi`)."""

from .integrations.wsgi import MemoryTrackerMiddleware, read_body, request_from_environ, send

__all__ = ["MemoryTrackerMiddleware", "read_body", "request_from_environ", "send"]
