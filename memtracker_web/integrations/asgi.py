"""Pure ASGI middleware serving the memory endpoint (Starlette, FastAPI, any ASGI app).

    app.add_middleware(MemoryTrackerMiddleware, path="/debug/memory", metrics_path="/metrics")

Requests outside the endpoint's paths, lifespan and websocket scopes go to the
wrapped app untouched; the middleware only peeks at lifespan messages to start
the monitor's thread on startup and stop it (if it started it) on shutdown.
Once started, an http request that is not ours is the app's own call: calling
the middleware returns what the app returned (its coroutine), with no frame of
ours in between.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..core.engine import IN_SUBINTERPRETER, free_threaded
from ..endpoint.messages import MAX_BODY, Request, Response, decimal
from ..endpoint.routes import Endpoint, EndpointOptions
from ..options import DEFAULT_ALLOW, DEFAULT_PATH, FROM_ENV

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


try:
    # Calls the wrapped app directly, in C, for every http request that is not
    # ours, so the caller awaits the app's own coroutine and this layer adds no
    # frame of its own (see _passthrough.c). Everything else goes to _dispatch.
    if free_threaded():
        # a single-phase extension would turn the GIL back on (see core/engine.py)
        raise ImportError("not loaded on a free-threaded build")
    if IN_SUBINTERPRETER:
        # its interned names and type belong to the main interpreter (see core/engine.py)
        raise ImportError("not loaded in a subinterpreter")
    from .._passthrough import Passthrough as _Passthrough

    _BASE_IN_C = True
except ImportError:  # no C extension (not CPython, or not built): tests/test_asgi_passthrough.py runs this too
    _BASE_IN_C = False

    class _Passthrough:  # type: ignore[no-redef]
        _passthrough_routes: tuple[str, ...] | None = None

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self._dispatch(scope, receive, send)  # type: ignore[attr-defined]


class MemoryTrackerMiddleware(_Passthrough):
    """Serve the memory endpoint (the page, its JSON, ``POST .../track``, and metrics
    when ``metrics_path`` is set) in front of an ASGI application.

    Every other request, and lifespan and websocket scopes, go to ``app``. On
    lifespan startup (or the first request) the monitor's thread starts; on
    shutdown it stops if this middleware started it. A request gets in with
    ``Authorization: Bearer <token>`` or, without a token, from an address in
    ``allow``.

    .. code-block:: python

        app.add_middleware(MemoryTrackerMiddleware, path="/debug/memory", metrics_path="/metrics")

    :param app: The ASGI application to wrap.
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
        app: ASGIApp,
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
        self._started = False  # started (or tried) once: lifespan or first request
        self.endpoint.start_at_load()
        if _BASE_IN_C and type(self).__call__ is _Passthrough.__call__:
            # Servers tell an ASGI 3 app from an ASGI 2 one (and from WSGI) by
            # inspect.iscoroutinefunction(app.__call__), and the C base's
            # __call__ is not one. This instance attribute answers them; calls
            # go through the type's slot, which an instance attribute does not
            # change. Through a weak proxy: a bound method would make every
            # middleware (and the app it holds) a reference cycle.
            self.__call__ = functools.partial(type(self)._dispatch, weakref.proxy(self))

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every call the C pass-through is not sure of, and all calls before
        # the first request or lifespan startup has started the monitor.
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if not self._started:
            self._start()
        if kind == "http" and self.endpoint.may_own(scope.get("path", "")):
            path = _route_path(scope)
            if self.endpoint.owns(path):
                await self._serve(scope, receive, send, path)
                return
        await self.app(scope, receive, send)

    def _start(self) -> None:
        self._started = True
        self.endpoint.start()
        # From now on the C pass-through hands an http request to the app
        # itself unless its path contains one of these (Endpoint.may_own's test).
        options = self.endpoint.options
        self._passthrough_routes = tuple(r for r in (options.path, options.metrics_path) if r is not None)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and not self._started:
                self._start()
            elif message["type"] == "lifespan.shutdown":
                self.endpoint.stop()
            return message

        return wrapped

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        values: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers") or []:
            values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
        # Repeated headers are joined the way HTTP allows (comma list), once each: linear.
        headers = {name: ", ".join(parts) for name, parts in values.items()}
        client = scope.get("client")
        request = Request(
            method=scope.get("method", "GET"),
            path=path,
            query_string=(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers,
            client=client[0] if client else None,
            script_name=scope.get("root_path", "").rstrip("/"),
            raw_path=raw.decode("latin-1") if isinstance(raw := scope.get("raw_path"), bytes) else None,
        )
        refusal = self.endpoint.refusal(request)
        if refusal is not None:  # not admitted: its body is never read
            await _send(send, refusal)
            return
        if request.method == "POST":
            request.body = await _read_body(receive, headers)
        response = await _run_sync(functools.partial(self.endpoint.handle, admitted=True), request)
        await _send(send, response)


def _route_path(scope: Scope) -> str:
    # Servers differ on whether scope["path"] includes root_path; accept both.
    path = scope.get("path", "")
    root = scope.get("root_path", "").rstrip("/")  # "/" mounts at the top, like ""
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


async def _read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    size = None if length is None else decimal(length.strip())
    if length is not None and (size is None or size > MAX_BODY):
        return b""  # the endpoint answers 400 or 413 from the header alone
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # client went away
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY or not message.get("more_body", False):
            break  # over the limit: stop reading, the endpoint answers 413
    return b"".join(chunks)


async def _run_sync(fn: Callable[[Request], Response], request: Request) -> Response:
    # Snapshot and HTML rendering are CPU work; keep them off the event loop.
    # Under asyncio, in the loop's default executor: anyio's to_thread would load its
    # asyncio backend on the page's first view (hundreds of dicts and functions made at
    # once in an app that never needed it, into the counts of a dict leak being
    # analysed, with import paths in its report). Another loop (trio): anyio's.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # (in the request's context, as anyio's to_thread does: a log record made by
        # the page carries what the app's middleware put there)
        try:
            done = loop.run_in_executor(None, contextvars.copy_context().run, fn, request)
        except RuntimeError:  # the default executor was shut down: the loop is ending
            return fn(request)
        return await done
    try:
        from anyio import to_thread
    except ImportError:  # pragma: no cover - starlette always brings anyio
        return fn(request)
    return await to_thread.run_sync(fn, request)


async def _send(send: Send, response: Response) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
