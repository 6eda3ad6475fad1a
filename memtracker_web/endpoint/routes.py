"""The /debug/memory endpoint, free of any web framework.

The ASGI, WSGI, Flask and Django adapters translate their request into a
:class:`Request`, call :meth:`Endpoint.handle` and translate the
:class:`Response` back. Everything that matters for security (auth, limits,
headers, what is revealed) lives here once.

Security model: a request gets in with ``Authorization: Bearer <token>``
(compared in constant time) or, without a token, from an address in
``allow`` (loopback by default). Proxy headers are ignored unless the direct
peer is in ``trusted_proxies``; a request that carries proxy headers from an
untrusted peer never gets in on its address alone, because a reverse proxy on
the same host would otherwise make every visitor look like loopback.
The responses show type names, counts and code locations; the monitor never
hands out objects, so no contents or reprs can leak.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..core.naming import MAX_NAME_LENGTH, TypeNameError, resolve_type, type_name
from ..options import DEFAULT_ALLOW, DEFAULT_PATH, ENDPOINT, FROM_ENV, MONITOR_OPTIONS, OPTIONS, names
from .auth import PROXY_HEADERS, _client_ip, _host_allowed, _host_name, _in, _origin_authority
from .messages import (
    BASE_HEADERS,
    MAX_BODY,
    HTTPError,
    Request,
    Response,
    decimal,
    error_response,
    html_response,
    json_response,
    parse_query,
    wants_json,
)

log = logging.getLogger(__name__)

MAX_MONITORED = 1000  # types POST /track may bring a monitor to (the engine's own cap is 4095)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass
class EndpointOptions:
    """The endpoint's options, checked as they are built (see memtracker_web.options for
    what each means; the module docstring for auth)."""

    monitor: Any = None
    path: str = DEFAULT_PATH
    metrics_path: str | None = None
    token: str | None = FROM_ENV
    allow: Iterable[str] | str | None = DEFAULT_ALLOW
    trusted_proxies: Iterable[str] | str | None = ()
    allowed_hosts: Iterable[str] | str | None = ()
    track: Iterable[type | str] = ()
    watch_all: bool | None = None
    watch_sample: int | None = None
    threshold: int | None = None
    increases: int | None = None
    interval: float | None = None
    registry: Any = None
    shared_dir: str | os.PathLike[str] | None = FROM_ENV
    allow_networks: tuple[Any, ...] = field(init=False, repr=False)
    proxy_networks: tuple[Any, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for option in ENDPOINT_OPTIONS:
            setattr(self, option.attribute or option.name, option.take(getattr(self, option.name), ENDPOINT))
        if self.metrics_path is not None and (
            self.metrics_path == self.path or self.metrics_path.startswith(self.path + "/")
        ):
            raise ValueError("metrics_path must not be inside path")
        if self.monitor is not None:
            # These are constructor arguments of a monitor; silently ignoring
            # them for a monitor the caller built would hide a mistake.
            given = [n for n in MONITOR_OPTIONS if getattr(self, n) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} configure the default monitor; set them on the monitor you pass instead"
                )


ENDPOINT_OPTIONS = tuple(OPTIONS[name] for name in names(ENDPOINT))


class Endpoint:
    """Routes, auth and rendering; adapters call :meth:`owns` then :meth:`handle`."""

    def __init__(self, options: EndpointOptions) -> None:
        self.options = options
        self._monitor = options.monitor
        self._lock = threading.Lock()
        self._ready = False
        self.started_monitor = False  # True only if we started its thread
        self.serving = False  # start() ran: this process serves requests (a worker)
        self._collector_registered = False
        _ENDPOINTS.add(self)

    # -- monitor lifecycle ------------------------------------------------
    @property
    def monitor(self) -> Any:
        if not self._ready:
            self.ensure_monitor()
        return self._monitor

    def ensure_monitor(self) -> Any:
        with self._lock:
            if self._ready:
                return self._monitor
            opts = self.options
            if self._monitor is None:
                from ..monitor import get_default_monitor  # lazy: optional layer, heavy imports

                kwargs: dict[str, Any] = {"track": opts.track}
                for name in MONITOR_OPTIONS:
                    if getattr(opts, name) is not None:
                        kwargs[name] = getattr(opts, name)
                self._monitor = get_default_monitor(**kwargs)
            else:
                from ..monitor import start_monitoring_logged

                for item in opts.track:
                    start_monitoring_logged(self._monitor, item)
            self._ready = True
            return self._monitor

    def start(self) -> None:
        """Start the monitor's background thread unless it already runs (the first
        request or lifespan startup: this process serves), its exporter and its
        worker file."""
        self.serving = True
        self._start_monitor()
        self.install_exporter()
        self.publisher()

    def start_at_load(self) -> None:
        """Start the monitor's thread and this process's worker file as the app
        loads (the middleware's constructor), so that a worker that has not had a
        request yet is in the workers view. (Any process that builds the app
        starts its monitor: a management command's too.)

        A process that forks before it has served (a server's master that
        loaded the app, as ``gunicorn --preload`` does) is not a worker: right
        after the fork it removes its worker file and stops publishing, and
        publishes again if it ever serves. Its children start their monitor at
        their first request (with examples/gunicorn.conf.py, as they start).
        The fork hooks take no lock the forking thread may hold."""
        _AT_LOAD.add(self)
        try:
            self._start_monitor()
            self.publisher()
        except Exception:
            # Loading the app must not fail for its monitor's sake: the first
            # request tries again, and its error page says what went wrong.
            log.exception("memtracker: starting the memory monitor as the app loads failed")

    def _start_monitor(self) -> None:
        monitor = self.monitor
        with self._lock:
            if not monitor.running:
                monitor.start()
                self.started_monitor = True

    def _unpublish_after_fork(self) -> None:
        """In a parent that forked before serving: it is not a worker, its children are."""
        if self.options.shared_dir is not None and self._ready and self._monitor is not None:
            from ..store.workers import forget_publisher

            forget_publisher(self._monitor, self.options.shared_dir, blocking=False)

    def publisher(self) -> Any:
        """This process's WorkerPublisher for the shared directory (None without one)."""
        if self.options.shared_dir is None:
            return None
        from ..store.workers import publisher_for

        return publisher_for(self.monitor, self.options.shared_dir)

    def stop(self) -> None:
        """Stop the background thread, but only if :meth:`start` started it."""
        with self._lock:
            if self.started_monitor and self._monitor is not None:
                self._monitor.stop()
                self.started_monitor = False

    # -- routing -----------------------------------------------------------
    def may_own(self, path: str) -> bool:
        """A cheap first test for every request: False means not ours (a route of
        ours is a part of any path that owns() accepts)."""
        metrics = self.options.metrics_path
        return self.options.path in path or (metrics is not None and metrics in path)

    def owns(self, path: str) -> bool:
        base = self.options.path
        if path == base or path.startswith(base + "/"):
            return True
        return self.options.metrics_path is not None and path == self.options.metrics_path

    def handle(self, request: Request, *, admitted: bool = False) -> Response:
        """The response to ``request``; ``admitted``: :meth:`refusal` already said yes."""
        try:
            if not admitted:
                self._authorize(request)
            return self._route(request)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except Exception:
            # A bug of ours: still the documented JSON error, and the traceback in the log.
            log.exception("memtracker: the memory endpoint failed on %s %s", request.method, request.path)
            return error_response(500, "internal error of the memory endpoint; see the application's log")

    def refusal(self, request: Request) -> Response | None:
        """The error response for a request that is not admitted, else None: the
        adapters ask before they read a body (nothing proportional to an
        unauthorised request is done beyond what the server did)."""
        try:
            self._authorize(request)
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        return None

    def _authorize(self, request: Request) -> None:
        if request.raw_path is not None and "%" in request.raw_path.split("?", 1)[0]:
            # Routing sees the decoded path: /debug%2Fmemory would be served, past a
            # front proxy's rule on /debug/memory. Our paths never need encoding.
            raise HTTPError(400, "percent-encoded paths are not served by the memory endpoint; send the path as it is")
        opts = self.options
        bearer = None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            bearer = credentials.strip()
        if bearer is not None and opts.token is not None:
            if hmac.compare_digest(bearer.encode(), opts.token.encode()):
                return
            raise HTTPError(403, "invalid token")
        if _in(self._client_address(request), opts.allow_networks):
            self._check_same_site(request)
            return
        if opts.token is not None:
            raise HTTPError(
                401,
                "missing token: send 'Authorization: Bearer <token>'",
                [("WWW-Authenticate", 'Bearer realm="memtracker"')],
            )
        raise HTTPError(403, "client address not allowed; configure 'allow' or a token")

    def _check_same_site(self, request: Request) -> None:
        """A request admitted by its address must name this server in a way no
        other site can (DNS rebinding: a page the developer visits points its
        own name at 127.0.0.1): a Host that is an IP address, localhost, or one
        of ``allowed_hosts``. A POST must also not come from another site's page."""
        host = _host_name(request.headers.get("host"))
        # __post_init__ made allowed_hosts _host_patterns' tuple
        patterns = cast("tuple[str, ...]", self.options.allowed_hosts)
        if host is not None and not _host_allowed(host, patterns):
            raise HTTPError(
                403,
                f"Host {host!r} is not allowed for requests admitted by address; "
                "add it to allowed_hosts, or send a token",
            )
        if request.method.upper() != "POST":
            return
        if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            raise HTTPError(403, "cross-site requests may not change what is tracked")
        origin = request.headers.get("origin")
        if origin is not None and (
            origin.strip().lower() == "null"
            or _origin_authority(origin) != (request.headers.get("host") or "").strip().lower()
        ):
            raise HTTPError(403, "cross-site requests may not change what is tracked (Origin is not this Host)")

    def _client_address(self, request: Request) -> Any:
        peer = _client_ip(request.client)
        has_proxy_headers = any(h in request.headers for h in PROXY_HEADERS)
        if not _in(peer, self.options.proxy_networks):
            # Proxy headers from an untrusted peer: the peer's address says
            # nothing about the visitor, so the allow list does not apply.
            return None if has_proxy_headers else peer
        forwarded = request.headers.get("x-forwarded-for")
        if "forwarded" in request.headers or "x-real-ip" in request.headers:
            # A proxy that writes these may pass the client's own X-Forwarded-For
            # along untouched: only X-Forwarded-For is parsed, so none is believed.
            return None
        if not forwarded:
            # Only X-Forwarded-For is parsed; a proxy that sends Forwarded or
            # X-Real-IP instead must not make every visitor look like itself.
            return None if has_proxy_headers else peer
        # Walk from the right past our own proxies; the first other hop is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            ip = _client_ip(hop)
            if ip is None:
                return None
            if not _in(ip, self.options.proxy_networks):
                return ip
        return None

    def _route(self, request: Request) -> Response:
        opts = self.options
        path, method = request.path, request.method.upper()
        if opts.metrics_path is not None and path == opts.metrics_path:
            self._allow(method, "GET")
            return self._metrics()
        rest = path[len(opts.path) :]
        if rest in ("", "/"):
            self._allow(method, "GET")
            return self._overview(request)
        if rest.startswith("/types/") and rest.endswith("/retainers") and len(rest) > len("/types//retainers"):
            self._allow(method, "GET")
            return self._type(request, rest[len("/types/") : -len("/retainers")], retainers=True)
        if rest.startswith("/types/") and len(rest) > len("/types/"):
            self._allow(method, "GET")
            return self._type(request, rest[len("/types/") :])
        if rest in ("/track", "/untrack"):
            self._allow(method, "POST")
            return self._track(request, untrack=rest == "/untrack")
        if rest.startswith(("/workers/", "/commands/")):
            from . import cluster

            response = cluster.route(self, request, rest)
            if response is not None:
                return response
        raise HTTPError(404, f"no route {path!r}; see {opts.path}")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise HTTPError(405, f"method {method} not allowed; use {allowed}", [("Allow", allowed)])

    # -- handlers ----------------------------------------------------------
    def _overview(self, request: Request) -> Response:
        query = parse_query(request.query_string)
        as_json = wants_json(request.headers, query)
        refresh = _refresh(query)
        snapshot = self.monitor.snapshot()
        view = None
        if self.options.shared_dir is not None:
            from . import cluster

            view = cluster.overview(self, snapshot)
        if as_json:
            return json_response(200, snapshot if view is None else {**snapshot, **view})
        from ..render.page import render_overview

        nonce = secrets.token_urlsafe(16)
        base = request.script_name + self.options.path
        return html_response(render_overview(snapshot, base=base, nonce=nonce, refresh=refresh, cluster=view), nonce)

    def _type(self, request: Request, name: str, *, retainers: bool = False) -> Response:
        query = parse_query(request.query_string)
        as_json = wants_json(request.headers, query)
        if len(name) > MAX_NAME_LENGTH:
            raise HTTPError(400, f"type name is longer than {MAX_NAME_LENGTH} characters")
        unknown = HTTPError(404, f"unknown type {name!r}: it is not tracked or seen by the monitor")
        if retainers:
            # On this request's thread (ASGI runs the endpoint off the event loop); one at a time.
            from ..monitor import RetentionUnavailable
            from ..monitor.retention import RetentionBusy

            search = getattr(self.monitor, "find_retainers", None)
            if search is None:
                raise HTTPError(409, "this monitor cannot search for retainers")
            try:
                found = search(name)
            except KeyError:
                raise unknown from None
            except (RetentionUnavailable, RetentionBusy) as exc:
                raise HTTPError(409, str(exc)) from None
            if as_json:
                return json_response(200, found)
        detail = self.monitor.type_detail(name)
        if detail is None:
            raise unknown
        if as_json:
            return json_response(200, detail)
        from ..render.page import render_type

        nonce = secrets.token_urlsafe(16)
        base = request.script_name + self.options.path
        return html_response(render_type(detail, base=base, nonce=nonce), nonce)

    def _track(self, request: Request, *, untrack: bool) -> Response:
        length = request.headers.get("content-length")
        size = None if length is None else decimal(length.strip())
        if length is not None and size is None:
            raise HTTPError(400, "Content-Length must be a whole number of bytes")
        if len(request.body) > MAX_BODY or (size or 0) > MAX_BODY:
            raise HTTPError(413, f"request body is larger than {MAX_BODY} bytes")
        # Requiring JSON makes a cross-site form post impossible: browsers
        # preflight application/json, and we answer no preflight.
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HTTPError(415, "Content-Type must be application/json")
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(400, "body is not valid JSON") from None
        except RecursionError:
            raise HTTPError(400, "body is nested too deeply") from None
        allowed = {"type"} if untrack else {"type", "analysis", "threshold"}
        if not isinstance(data, dict):
            raise HTTPError(400, 'body must be a JSON object like {"type": "myapp.models.Order"}')
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise HTTPError(400, f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        name = data.get("type")
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _DOTTED.match(name):
            raise HTTPError(400, "'type' must be a dotted name like 'myapp.models.Order'")
        analysis = data.get("analysis", False)
        if not isinstance(analysis, bool):
            raise HTTPError(400, "'analysis' must be true or false")
        threshold = data.get("threshold")
        if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1):
            raise HTTPError(400, "'threshold' must be a positive integer")
        try:
            cls = resolve_type(name, import_modules=False)  # a request never imports code
        except TypeNameError as exc:
            raise HTTPError(404, str(exc)) from None
        resolved = type_name(cls)
        if self.options.shared_dir is not None:
            return self._broadcast(request, resolved, untrack=untrack, analysis=analysis, threshold=threshold)
        if untrack:
            if not self.monitor.stop_monitoring(cls):
                raise HTTPError(404, f"{resolved!r} is not being tracked")
            return json_response(200, {"type": resolved, "tracking": False})
        monitored = getattr(self.monitor, "monitored", None)  # (a monitor of the user's may not say)
        if callable(monitored) and len(monitored()) >= MAX_MONITORED and cls not in monitored():
            raise HTTPError(409, f"{MAX_MONITORED} types are monitored already; untrack one first")
        try:
            self.monitor.start_monitoring(cls, threshold=threshold, analysis=analysis)
        except OverflowError as exc:  # the engine's own cap
            log.warning("memtracker: cannot monitor %s: %s", resolved, exc)
            raise HTTPError(409, f"cannot monitor {resolved!r}: {exc}") from None
        return json_response(200, {"type": resolved, "tracking": True, "analysis": analysis})

    def _broadcast(
        self, request: Request, name: str, *, untrack: bool, analysis: bool, threshold: int | None
    ) -> Response:
        """Track/untrack in every worker through the shared directory (see endpoint/cluster.py)."""
        from . import cluster

        if untrack:
            local, status = cluster.broadcast(self, request, "untrack", name)
            return json_response(
                200, {"type": name, "tracking": False, "was_tracking_here": local["was_tracking"], "command": status}
            )
        _, status = cluster.broadcast(self, request, "track", name, analysis=analysis, threshold=threshold)
        return json_response(200, {"type": name, "tracking": True, "analysis": analysis, "command": status})

    def _metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.install_exporter()
        return Response(200, [("Content-Type", CONTENT_TYPE_LATEST)] + BASE_HEADERS, generate_latest(self._registry()))

    def _registry(self) -> Any:
        if self.options.registry is not None:
            return self.options.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            # A fresh registry per scrape, as prometheus_client documents for
            # multiprocess mode: it merges every worker's files.
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return registry
        from prometheus_client import REGISTRY

        return REGISTRY

    def install_exporter(self) -> None:
        """Export the monitor's series once, if memtracker_web.prometheus is there.

        Called when the monitor starts (in multiprocess mode every worker must
        publish, not only the ones that get scraped) and again on scrape.
        """
        if self.options.metrics_path is None or self._collector_registered:
            return
        self._collector_registered = True
        try:
            from ..render import prometheus  # another layer of this package; optional here
        except ImportError:
            return
        monitor = self.monitor
        try:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                _register_once(("multiprocess", id(monitor)), lambda: prometheus.install(monitor))
            else:
                registry = self._registry()
                _register_once((id(registry), id(monitor)), lambda: prometheus.install(monitor, registry))
        except Exception:
            # Metrics are an extra; a misconfigured exporter must not take the
            # application (or its other metrics) down with it.
            log.exception("memtracker: exporting the monitor to Prometheus failed")


_ENDPOINTS: weakref.WeakSet[Endpoint] = weakref.WeakSet()
_AT_LOAD: weakref.WeakSet[Endpoint] = weakref.WeakSet()  # started as the app loaded


def _after_fork_in_parent() -> None:
    for ep in list(_AT_LOAD):
        if not ep.serving:
            try:
                ep._unpublish_after_fork()
            except Exception:
                log.exception("memtracker: removing the worker file of a forking master failed")


def _after_fork_in_child() -> None:
    for ep in list(_AT_LOAD):
        ep._lock = threading.Lock()  # the forking thread may have held it: it is not here
        ep.started_monitor = False  # the thread did not come along (the monitor restarts on use)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def start_endpoints() -> None:
    """Start every endpoint built in this process (gunicorn's post_worker_init, integrations/gunicorn.py)."""
    for ep in list(_ENDPOINTS):
        try:
            ep.start()
        except Exception:
            log.exception("memtracker: starting the memory endpoint failed")


_REGISTERED: set[tuple[Any, int]] = set()
_REGISTERED_LOCK = threading.Lock()


def _register_once(key: tuple[Any, int], make: Callable[[], Any]) -> None:
    # Two middlewares sharing the default monitor must not export it twice:
    # prometheus_client rejects duplicated time series.
    with _REGISTERED_LOCK:
        if key in _REGISTERED:
            return
        _REGISTERED.add(key)
    make()


def _refresh(query: Mapping[str, str]) -> int | None:
    value = query.get("refresh")
    if value is None:
        return None
    seconds = decimal(value)
    if seconds is None or not 1 <= seconds <= 3600:
        raise HTTPError(400, "refresh must be a whole number of seconds between 1 and 3600")
    return seconds


def options_from_mapping(mapping: Mapping[str, Any] | None, **overrides: Any) -> EndpointOptions:
    """EndpointOptions from a settings dict (Django, Flask), with clear errors."""
    values = dict(mapping or {})
    values.update(overrides)
    known = set(names(ENDPOINT))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown memtracker option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return EndpointOptions(**values)
