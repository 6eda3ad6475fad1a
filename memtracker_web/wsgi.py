"""WSGI middleware serving the memory endpoint in front of any WSGI app.

    app.wsgi_app = MemoryTrackerMiddleware(app.wsgi_app)

Other paths go to the wrapped app untouched. The monitor's thread and the
worker file start as the middleware is built, so a worker is in the workers
view before its first request; a process that forks before it serves (the
master of ``gunicorn --preload``) hands them over to its children (see
Endpoint.start_at_load).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .endpoint import (
    DEFAULT_ALLOW,
    DEFAULT_PATH,
    FROM_ENV,
    MAX_BODY,
    Endpoint,
    EndpointOptions,
    Request,
    Response,
    decimal,
    reason,
)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class MemoryTrackerMiddleware:
    def __init__(
        self,
        app: WSGIApp,
        *,
        path: str = DEFAULT_PATH,
        metrics_path: str | None = None,
        token: str | None = FROM_ENV,
        allow: Iterable[str] | str | None = DEFAULT_ALLOW,
        trusted_proxies: Iterable[str] | str | None = (),
        allowed_hosts: Iterable[str] | str | None = (),
        monitor: Any = None,
        track: Iterable[Any] = (),
        watch_all: bool | None = None,
        watch_sample: int | None = None,
        threshold: int | None = None,
        increases: int | None = None,
        interval: float | None = None,
        registry: Any = None,
        shared_dir: Any = FROM_ENV,
    ) -> None:
        self.app = app
        self.endpoint = Endpoint(EndpointOptions(
            monitor=monitor, path=path, metrics_path=metrics_path, token=token, allow=allow,
            trusted_proxies=trusted_proxies, allowed_hosts=allowed_hosts, track=track, watch_all=watch_all,
            watch_sample=watch_sample, threshold=threshold,
            increases=increases, interval=interval, registry=registry, shared_dir=shared_dir))
        self._started = False
        self.endpoint.start_at_load()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        if not self._started:
            self._started = True
            self.endpoint.start()
        path = environ.get("PATH_INFO", "") or "/"
        if not self.endpoint.may_own(path) or not self.endpoint.owns(path):
            return self.app(environ, start_response)
        request = request_from_environ(environ, path)
        refusal = self.endpoint.refusal(request)
        if refusal is not None:             # not admitted: its body is never read
            return send(refusal, start_response)
        if request.method == "POST":
            request.body = read_body(environ)
        return send(self.endpoint.handle(request, admitted=True), start_response)


def request_from_environ(environ: WSGIEnviron, path: str) -> Request:
    """The request without its body: read_body() reads it once the request is admitted."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_") and isinstance(value, str)}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    method = environ.get("REQUEST_METHOD", "GET").upper()
    return Request(method=method, path=path, query_string=environ.get("QUERY_STRING", ""), headers=headers,
                   client=environ.get("REMOTE_ADDR") or None,
                   script_name=environ.get("SCRIPT_NAME", "").rstrip("/"),
                   # as sent (gunicorn: RAW_URI; uWSGI, mod_wsgi: REQUEST_URI); wsgiref gives neither
                   raw_path=environ.get("RAW_URI") or environ.get("REQUEST_URI") or None)


def read_body(environ: WSGIEnviron) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length:
        size = decimal(length.strip())
        if size is None or size > MAX_BODY:
            return b""  # the endpoint answers 400 or 413 from the header alone
        return stream.read(size)
    if environ.get("wsgi.input_terminated"):
        # Chunked upload the server already framed: read one byte past the
        # limit so the endpoint can tell "too large" from "exactly full".
        return stream.read(MAX_BODY + 1)
    return b""  # no length and no framing: reading could block forever


def send(response: Response, start_response: StartResponse) -> list[bytes]:
    headers = list(response.headers) + [("Content-Length", str(len(response.body)))]
    start_response(f"{response.status} {reason(response.status)}", headers)
    return [response.body]
