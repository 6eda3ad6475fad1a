"""Django middleware serving the memory endpoint.

    MIDDLEWARE = ["memtracker_web.django.MemoryTrackerMiddleware", ...]
    MEMTRACKER = {"path": "/debug/memory", "track": ["myapp.models.Order"], "interval": 30}

Put it first so authentication or CSRF middleware never sees the endpoint's
requests; it does its own auth (token or allowed addresses). It runs sync;
Django adapts it under ASGI.
"""
from __future__ import annotations

from typing import Any, Callable

try:
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
except ImportError as exc:  # pragma: no cover - exercised only without Django
    raise ImportError(
        "memtracker_web.django needs Django; install it with: pip install 'memtracker-web[django]'"
    ) from exc

from .endpoint import MAX_BODY, Endpoint, Request, decimal, options_from_mapping
from .options import with_framework_settings


class MemoryTrackerMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Django's ALLOWED_HOSTS (same patterns) applies to the endpoint too, unless set apart
        options = with_framework_settings("django", dict(getattr(settings, "MEMTRACKER", None) or {}),
                                          lambda name: getattr(settings, name, None))
        self.endpoint = Endpoint(options_from_mapping(options))
        self._started = False
        self.endpoint.start_at_load()       # fork-safe: see Endpoint.start_at_load

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
    headers = {key[5:].replace("_", "-").lower(): value for key, value in meta.items()
               if key.startswith("HTTP_") and isinstance(value, str)}
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
    return Request(method=method, path=path, query_string=meta.get("QUERY_STRING", ""), headers=headers,
                   client=meta.get("REMOTE_ADDR") or None, body=body,
                   script_name=(meta.get("SCRIPT_NAME") or "").rstrip("/"),
                   raw_path=meta.get("RAW_URI") or meta.get("REQUEST_URI") or None)
