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
    raise ImportError("memtracker_web.flask needs Flask; install it with: pip install 'memtracker-web[flask]'") from exc

from ..endpoint.routes import options_from_mapping
from ..options import with_framework_settings
from .wsgi import MemoryTrackerMiddleware


class MemoryTracker:
    """Serve the memory endpoint in a Flask app, in front of Flask's routing: it wraps
    ``app.wsgi_app`` with :class:`memtracker_web.wsgi.MemoryTrackerMiddleware`, so
    sessions and ``before_request`` hooks never see the endpoint's requests.

    Options given here apply to every app; ``app.config["MEMTRACKER"]`` (a dict
    of the same options) applies to its app and wins. Unknown or invalid
    options raise ValueError here, not at the first request.

    .. code-block:: python

        tracker = MemoryTracker(metrics_path="/metrics")
        tracker.init_app(app)

    :param app: The Flask app to serve the endpoint in now; ``None``: call :meth:`init_app` later.
    :param path: Where the page and its JSON are served (a leading slash, no trailing one). Default:
        ``'/debug/memory'``.
    :param metrics_path: Where Prometheus metrics are served; ``None`` serves none. Default: ``None``.
    :param token: A Bearer token that admits a request from any address; ``None``: no token. Default:
        ``$MEMTRACKER_TOKEN``, else ``None``.
    :param allow: Addresses and networks admitted without a token. Default: loopback, ``('127.0.0.0/8',
        '::1')``.
    :param trusted_proxies: Peers whose ``X-Forwarded-For`` header is believed. Default: none.
    :param allowed_hosts: ``Host`` names besides IP addresses and ``localhost`` that a request admitted by its
        address may carry (``'.example.com'`` for its subdomains, ``'*'`` for any). Default: none (Django's
        ``ALLOWED_HOSTS`` under Django, Flask's ``TRUSTED_HOSTS`` under Flask).
    :param monitor: A monitor of your own (the default monitor's options are then refused); ``None`` uses the
        process-wide default monitor. Default: ``None``.
    :param track: Classes or ``'module.QualName'`` names to monitor. Default: ``()``.
    :param watch_all: Count every type, so that growing types are found without being named. Default:
        ``None``, which keeps the default monitor's (``False`` when it is created).
    :param watch_sample: Watch-all counts about one object in this many and scales (1: every object, exactly;
        at most 65536). Default: ``None``, which keeps the default monitor's (``1`` when it is created).
    :param threshold: Growth above a type's high-water mark that counts as an increase (0 counts every rise;
        the endpoint's options ask for at least 1). Default: ``None``, which keeps the default monitor's
        (``100`` when it is created).
    :param increases: Increases before a leak report; call-path analysis starts then. Default: ``None``, which
        keeps the default monitor's (``10`` when it is created).
    :param interval: Seconds between samples (above 0, at most a day). Default: ``None``, which keeps the
        default monitor's (``60.0`` when it is created).
    :param registry: The registry ``metrics_path`` serves; ``None``: prometheus_client's ``REGISTRY`` (a
        multiprocess one when ``$PROMETHEUS_MULTIPROC_DIR`` is set). Default: ``None``.
    :param shared_dir: Directory where worker processes publish their snapshots and read commands; ``None``:
        this process alone. Default: ``$MEMTRACKER_SHARED_DIR``, else ``$PROMETHEUS_MULTIPROC_DIR``, else
        ``None``.
    """

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
