"""WSGI middleware serving the memory endpoint in front of any WSGI app.

    app.wsgi_app = MemoryTrackerMiddleware(app.wsgi_app)

Other paths go to the wrapped app untouched. The monitor's thread and the
worker file start as the middleware is built, so a worker is in the workers
view before its first request; a process that forks before it serves (the
master of ``gunicorn --preload``) hands them over to its children (see
Endpoint.start_at_load).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from ..endpoint.messages import MAX_BODY, Request, Response, decimal, reason
from ..endpoint.routes import Endpoint, EndpointOptions
from ..options import DEFAULT_ALLOW, DEFAULT_PATH, FROM_ENV

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class MemoryTrackerMiddleware:
    """Serve the memory endpoint (the page, its JSON, ``POST .../track``, and metrics
    when ``metrics_path`` is set) in front of a WSGI application.

    Every other request goes to ``app``. The monitor's thread starts as the
    middleware is built. A request gets in with ``Authorization: Bearer
    <token>`` or, without a token, from an address in ``allow``.

    .. code-block:: python

        app.wsgi_app = MemoryTrackerMiddleware(app.wsgi_app, metrics_path="/metrics")

    :param app: The WSGI application to wrap.
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
        track: Iterable[type | str] = (),
        watch_all: bool | None = None,
        watch_sample: int | None = None,
        threshold: int | None = None,
        increases: int | None = None,
        interval: float | None = None,
        registry: Any = None,
        shared_dir: str | os.PathLike[str] | None = FROM_ENV,
    ) -> None:
        self.app = app
        self.endpoint = Endpoint(
            EndpointOptions(
                monitor=monitor,
                path=path,
                metrics_path=metrics_path,
                token=token,
                allow=allow,
                trusted_proxies=trusted_proxies,
                allowed_hosts=allowed_hosts,
                track=track,
                watch_all=watch_all,
                watch_sample=watch_sample,
                threshold=threshold,
                increases=increases,
                interval=interval,
                registry=registry,
                shared_dir=shared_dir,
            )
        )
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
        if refusal is not None:  # not admitted: its body is never read
            return send(refusal, start_response)
        if request.method == "POST":
            request.body = read_body(environ)
        return send(self.endpoint.handle(request, admitted=True), start_response)


def request_from_environ(environ: WSGIEnviron, path: str) -> Request:
    """The request without its body: read_body() reads it once the request is admitted."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    method = environ.get("REQUEST_METHOD", "GET").upper()
    return Request(
        method=method,
        path=path,
        query_string=environ.get("QUERY_STRING", ""),
        headers=headers,
        client=environ.get("REMOTE_ADDR") or None,
        script_name=environ.get("SCRIPT_NAME", "").rstrip("/"),
        # as sent (gunicorn: RAW_URI; uWSGI, mod_wsgi: REQUEST_URI); wsgiref gives neither
        raw_path=environ.get("RAW_URI") or environ.get("REQUEST_URI") or None,
    )


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
