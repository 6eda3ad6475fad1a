"""Flask extension: ``MemoryTracker(app)`` or ``tracker.init_app(app)``.

Options come from the constructor (for every app) and from
``app.config["MEMTRACKER"]`` (a dict, for that app; it wins). The extension
wraps ``app.wsgi_app`` with the WSGI middleware, so the endpoint bypasses
Flask's routing, sessions and before_request hooks.
"""
from __future__ import annotations

from typing import Any

try:
    from flask import Flask
except ImportError as exc:  # pragma: no cover - exercised only without Flask
    raise ImportError(
        "memtracker_web.flask needs Flask; install it with: pip install 'memtracker-web[flask]'"
    ) from exc

from .endpoint import options_from_mapping
from .options import with_framework_settings
from .wsgi import MemoryTrackerMiddleware


class MemoryTracker:
    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        options_from_mapping(options)  # fail early on unknown or invalid options
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> MemoryTrackerMiddleware:
        config = app.config.get("MEMTRACKER") or {}
        if not isinstance(config, dict):
            raise TypeError('app.config["MEMTRACKER"] must be a dict of memtracker options')
        # Flask's own host check, TRUSTED_HOSTS, applies to the endpoint too, unless set apart
        merged = with_framework_settings("flask", {**self.options, **config}, app.config.get)
        options_from_mapping(merged)
        middleware = MemoryTrackerMiddleware(app.wsgi_app, **merged)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions["memtracker"] = middleware
        return middleware
