"""Django middleware serving the memory endpoint.

    MIDDLEWARE = ["memtracker_web.django.MemoryTrackerMiddleware", ...]
    MEMTRACKER = {"path": "/debug/memory", "track": ["myapp.models.Order"], "interval": 30}

Put it first so authentication or CSRF middleware never sees the endpoint's
requests; it does its own auth (token or allowed addresses). It runs sync;
Django adapts it under ASGI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
except ImportError as exc:  # pragma: no cover - exercised only without Django
    raise ImportError(
        "memtracker_web.django needs Django; install it with: pip install 'memtracker-web[django]'"
    ) from exc

from ..endpoint.messages import MAX_BODY, Request, decimal
from ..endpoint.routes import Endpoint, options_from_mapping
from ..options import with_framework_settings


class MemoryTrackerMiddleware:
    """Serve the memory endpoint in a Django project, before the other middlewares.

    Its options are the keys of ``settings.MEMTRACKER`` (a dict); Django's
    ``ALLOWED_HOSTS`` is ``allowed_hosts`` unless that key is given. Unknown or
    invalid keys raise ValueError as the middleware is built. The monitor's
    thread starts then too.

    .. code-block:: python

        MIDDLEWARE = ["memtracker_web.django.MemoryTrackerMiddleware", ...]
        MEMTRACKER = {"metrics_path": "/metrics", "track": ["myapp.models.Order"]}

    :param get_response: The next middleware or view (Django passes it).
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

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Django's ALLOWED_HOSTS (same patterns) applies to the endpoint too, unless set apart
        options = with_framework_settings(
            "django", dict(getattr(settings, "MEMTRACKER", None) or {}), lambda name: getattr(settings, name, None)
        )
        self.endpoint = Endpoint(options_from_mapping(options))
        self._started = False
        self.endpoint.start_at_load()  # fork-safe: see Endpoint.start_at_load

    def __call__(self, request: HttpRequest) -> Any:
        if not self._started:
            self._started = True
            self.endpoint.start()
        path = request.path_info or "/"
        if not self.endpoint.owns(path):
            return self.get_response(request)
        response = self.endpoint.handle(_request(request, path))
        django_response = HttpResponse(response.body, status=response.status)
        for name, value in response.headers:
            django_response[name] = value
        return django_response


def _request(request: HttpRequest, path: str) -> Request:
    meta = request.META
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in meta.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if meta.get(key):
            headers[key.replace("_", "-").lower()] = meta[key]
    method = (request.method or "GET").upper()
    body = b""
    length = headers.get("content-length")
    size = None if length is None else decimal(length.strip())
    if method == "POST" and (length is None or (size is not None and size <= MAX_BODY)):
        # read() past the limit by one byte so the endpoint can answer 413;
        # Django bounds the stream by Content-Length.
        body = request.read(MAX_BODY + 1)
    return Request(
        method=method,
        path=path,
        query_string=meta.get("QUERY_STRING", ""),
        headers=headers,
        client=meta.get("REMOTE_ADDR") or None,
        body=body,
        script_name=(meta.get("SCRIPT_NAME") or "").rstrip("/"),
        raw_path=meta.get("RAW_URI") or meta.get("REQUEST_URI") or None,
    )
