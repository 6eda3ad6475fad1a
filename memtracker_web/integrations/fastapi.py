"""FastAPI helper: ``install(app, path="/debug/memory", metrics_path="/metrics")``.

Equivalent to ``app.add_middleware(MemoryTrackerMiddleware, **options)``; it
validates the options now instead of when the first request builds the stack.
"""

from __future__ import annotations

from typing import Any

from ..endpoint.routes import options_from_mapping
from .asgi import MemoryTrackerMiddleware


def install(app: Any, **options: Any) -> None:
    """Serve the memory endpoint in a FastAPI (or Starlette) app:
    ``app.add_middleware(MemoryTrackerMiddleware, **options)`` with the options
    checked now, not when the first request builds the middleware stack.

    :param app: The FastAPI or Starlette app.
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
    options_from_mapping(options)
    app.add_middleware(MemoryTrackerMiddleware, **options)
