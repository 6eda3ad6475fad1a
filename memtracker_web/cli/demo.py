"""``python -m memtracker_web demo``: serve the demo app, load it, stop cleanly.

The server runs in a thread so the main thread owns the signals: SIGINT,
SIGTERM and --duration all end in the same orderly shutdown (load thread,
server, monitor) and exit code 0.
"""

from __future__ import annotations

import abc
import errno
import importlib.util
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..core.engine import engine_status
from . import demo_app

READY_TIMEOUT = 20.0
LOAD_PERIOD = 0.25  # seconds between rounds of /leak + /
STOP_TIMEOUT = 10.0
MAX_CACHED = 100_000


class DemoError(Exception):
    """A problem the user can fix; shown as one line, exit code 2."""


def run(
    host: str,
    port: int,
    *,
    duration: float | None = None,
    server: str = "auto",
    interval: float = 1.0,
    out: TextIO = sys.stdout,
) -> int:
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    # Installed first, so a Ctrl-C during startup is also an orderly stop.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    log_handler = _quiet_monitor_log()
    monitor: Any = None
    runner: _Server | None = None
    say = _Printer(out)
    load: threading.Thread | None = None
    try:
        monitor = demo_app.make_monitor(interval)
        kind = _choose_server(server)
        candidate: _Server = (
            _UvicornServer(demo_app.asgi_app(monitor))
            if kind == "uvicorn"
            else _WsgirefServer(demo_app.wsgi_app(monitor))
        )
        candidate.start(host, port)
        runner = candidate  # from here on it has a thread and a socket to stop
        runner.wait_ready(stop)
        if stop.is_set():
            say(f"stopping ({received[0]}) before the server was ready", last=True)
            return 0
        base = f"http://{_url_host(host)}:{runner.port}"
        _announce(say, monitor, base, kind, runner.port, host, duration)
        _watch_for_leaks(monitor, say, base)
        monitor.start()
        load = threading.Thread(target=_load, args=(base, stop, say), name="memtracker-demo-load", daemon=True)
        load.start()
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                break
            stop.wait(left)
            if not runner.alive():
                raise DemoError(f"the server stopped unexpectedly: {runner.error or 'no reason given'}")
        say(f"stopping ({received[0] if received else f'--duration {duration:g} s elapsed'})", last=True)
        return 0
    finally:
        stop.set()
        if load is not None:
            load.join(STOP_TIMEOUT)
        if runner is not None:
            runner.stop()
        if monitor is not None:
            monitor.close()
        logging.getLogger("memtracker_web").removeHandler(log_handler)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if runner is not None:
            say.final("stopped")


class _Printer:
    """Progress lines from the main and the monitor thread; none after "stopping"."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.closing = False
        self.broken = False

    def __call__(self, message: str, *, last: bool = False) -> None:
        with self.lock:
            if not self.closing:
                self.closing = last
                self._print(message)

    def final(self, message: str) -> None:
        with self.lock:
            self._print(message)

    def _print(self, message: str) -> None:
        if self.broken:
            return
        try:
            print(message, file=self.out, flush=True)  # flush: a pipe would hold progress back
        except BrokenPipeError:
            # The reader went away (`| head`): the demo goes on, silently.
            self.broken = True
            silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (tests): nothing to flush
        pass


def _quiet_monitor_log() -> logging.Handler:
    # The monitor logs a multi-line leak report at every growth (each second
    # here); the demo prints one readable notice instead, and keeps errors.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("memtracker: %(message)s"))
    logging.getLogger("memtracker_web").addHandler(handler)
    return handler


def _choose_server(server: str) -> str:
    has_uvicorn = importlib.util.find_spec("uvicorn") is not None
    if server == "auto":
        return "uvicorn" if has_uvicorn else "wsgiref"
    if server == "uvicorn" and not has_uvicorn:
        raise DemoError("uvicorn is not installed: pip install uvicorn, or use --server wsgiref")
    return server


def _url_host(host: str) -> str:
    # A wildcard address is not something to browse to; loopback always works.
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "[::1]"
    return f"[{host}]" if ip.version == 6 else host


def _announce(
    say: Callable[[str], None], monitor: Any, base: str, kind: str, port: int, host: str, duration: float | None
) -> None:
    status = engine_status()
    say(f"memtracker-web demo: a leaking app on {host}:{port} ({kind})")
    if monitor.mode == "exact":
        say(f"engine: exact ({status['python']}, reference tracer)")
    else:
        say(f"engine: census ({status['python']}): {status['reason']}")
        hint = _source_tree_hint()
        if hint:
            say(f"  {hint}")
        say("  census mode shows which types grow, but not the line that allocates them")
    say(f"page:    {base}{demo_app.PAGE_PATH}")
    say(f"json:    {base}{demo_app.PAGE_PATH}?format=json")
    say(f"metrics: {base}{demo_app.METRICS_PATH}")
    say(
        f"load: /leak and / every {LOAD_PERIOD:g} s from this process; the monitor samples every {monitor.interval:g} s"
    )
    say(f"stops after {duration:g} s" if duration is not None else "press Ctrl-C to stop")


def _source_tree_hint() -> str | None:
    # `python -m` puts the current directory first on sys.path: in a checkout
    # after `pip install .` that is the source tree, whose extension was built
    # into the wheel, not next to the sources.
    from ..core import engine

    if engine._tracker is not None or Path(__file__).resolve().parents[2] != Path.cwd().resolve():
        return None
    return (
        "python -m imported the source tree in the current directory, which has no built extension, "
        "not the installed package: run `memtracker-web demo`, run from another directory, "
        "or install with `pip install -e .`"
    )


def _watch_for_leaks(monitor: Any, say: Callable[[str], None], base: str) -> None:
    told: set[str] = set()

    def on_leak(report: dict) -> None:
        if report["type"] in told:
            return
        told.add(report["type"])
        if report["top_paths"]:
            where = f"allocated at {report['top_paths'][0]['path'][0]}"
        else:
            where = "no call paths in census mode"
        say(f"leak found: {report['type']} ({report['live']:,} live, grew {report['increases']} times), {where}")
        say(f"  see {base}{demo_app.PAGE_PATH}")

    monitor.on_leak = on_leak


def _load(base: str, stop: threading.Event, say: Callable[[str], None]) -> None:
    # Bounded by `stop`; failures are expected while the server shuts down.
    # /leak is left alone past MAX_CACHED entries so a forgotten demo does not
    # eat the machine's memory (about 15 MB by then).
    leaking = True
    while not stop.wait(LOAD_PERIOD):
        for path in ("/leak", "/") if leaking else ("/",):
            try:
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    data = json.loads(response.read())
            except (OSError, ValueError):
                continue
            if path == "/leak" and data["cached"] >= MAX_CACHED:
                leaking = False
                say(f"load: {MAX_CACHED:,} entries leaked; no more /leak calls (the demo keeps its memory bounded)")


class _Server(abc.ABC):
    port = 0
    error: str | None = None
    _thread: threading.Thread | None = None

    @abc.abstractmethod
    def start(self, host: str, port: int) -> None:
        """Listen (raising DemoError when that fails) and serve in a thread."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release the socket."""

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._is_ready():
            if not self.alive():
                raise DemoError(f"the server did not start: {self.error or 'no reason given'}")
            if stop.wait(0.05):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"the server did not start within {READY_TIMEOUT:g} s")

    def _is_ready(self) -> bool:
        return True

    def _serve(self, target: Callable[[], Any]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException as exc:  # SystemExit from uvicorn included: report, don't vanish
                self.error = f"{type(exc).__name__}: {exc}"

        self._thread = threading.Thread(target=body, name="memtracker-demo-server", daemon=True)
        self._thread.start()


def _listen_error(host: str, port: int, exc: OSError) -> DemoError:
    if exc.errno == errno.EADDRINUSE:
        return DemoError(f"port {port} on {host} is already in use; pick another with --port")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DemoError(f"not allowed to listen on {host}:{port} ({exc.strerror}); try a port above 1023")
    return DemoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _family(host: str, port: int) -> int:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror as exc:
        raise DemoError(f"cannot use host {host!r}: {exc.strerror}") from None


class _UvicornServer(_Server):
    def __init__(self, app: Any) -> None:
        self.app = app
        self.server: Any = None

    def start(self, host: str, port: int) -> None:
        import uvicorn

        # Bind here rather than in uvicorn: a busy port becomes one clear
        # line instead of a log record and sys.exit in the server thread.
        sock = socket.socket(_family(host, port), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise _listen_error(host, port, exc) from None
        self.sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self._serve(lambda: self.server.run(sockets=[sock]))

    def _is_ready(self) -> bool:
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self.sock.close()


class _WsgirefServer(_Server):
    def __init__(self, app: Any) -> None:
        self.app = app
        self.httpd: Any = None

    def start(self, host: str, port: int) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per load request would bury the demo's messages

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = _family(host, port)

        try:
            self.httpd = Server((host, port), Quiet)
        except OSError as exc:
            raise _listen_error(host, port, exc) from None
        self.httpd.set_app(self.app)
        self.port = self.httpd.server_address[1]
        self._serve(lambda: self.httpd.serve_forever(poll_interval=0.2))

    def stop(self) -> None:
        if self.alive():
            self.httpd.shutdown()
        self.httpd.server_close()
