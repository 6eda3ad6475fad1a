"""Helpers the tests share: what the interpreter can run, processes, the endpoint's
test double and request helpers, and polling a server.

FakeMonitor follows docs/CONTRACTS.md exactly; the endpoint and adapter tests all
use it, so every layer is tested against the same contract. Fixtures live in
conftest.py; this module is imported by test modules (``from support import ...``:
tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memtracker_web as mt
from memtracker_web.core.naming import type_name
from memtracker_web.endpoint import Endpoint, EndpointOptions, Request
from memtracker_web.monitor import MemoryMonitor
from memtracker_web.render import page

ROOT = Path(__file__).resolve().parent.parent  # the repository
WAIT_SECONDS = 45.0

# ---------------------------------------------------------------------------
# the interpreter

ENGINE = mt.engine_status()

requires_engine = pytest.mark.skipif(not ENGINE["available"], reason=f"exact engine unavailable: {ENGINE['reason']}")
without_engine = pytest.mark.skipif(
    ENGINE["available"], reason="tests the fallback path; this interpreter runs the exact engine"
)


# ---------------------------------------------------------------------------
# processes and files


def line_of(path: str, marker: str) -> int:
    """The line of ``path`` that ends with the comment ``# marker``."""
    with open(path) as fh:
        for number, text in enumerate(fh, 1):
            if text.rstrip().endswith(f"# {marker}") and "line_of(" not in text:
                return number
    raise AssertionError(f"no line ending with '# {marker}' in {path}")


def children_of(master: int) -> set[int]:
    """Live (not zombie) children of a process, from /proc: no extra dependency."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master and fields[0] != "Z":
            pids.add(int(stat.parent.name))
    return pids


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Terminate, then kill if it does not exit in time; always reaped (None: nothing to do)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def in_forked_child(body: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``body`` in a forked child; return the child's pid and what ``body``
    returned (it must be JSON-serialisable)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with a live thread
        pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    return pid, json.loads(data)


class Guarding(type):
    """A metaclass whose class attributes are the app's code: what reads a class's
    ``__mro__`` or ``__dict__`` through it raises."""

    @property
    def __mro__(cls):
        raise RuntimeError("__mro__ ran")

    @property
    def __dict__(cls):
        raise RuntimeError("__dict__ ran")


# ---------------------------------------------------------------------------
# the endpoint's test double and requests


class Order:
    """A class the endpoint can resolve by name: tests.test_endpoint.Order or test_endpoint.Order."""


class Basket:
    pass


ORDER = type_name(Order)


def make_entry(
    name: str,
    history: list[int],
    *,
    analysing: bool = False,
    source: str = "tracked",
    top_paths: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": name,
        "live": history[-1],
        "allocations": history[-1] + 10,
        "frees": 10,
        "high_water": max(history),
        "increases": len(history) - 1,
        "analysing": analysing,
        "source": source,
        "history": [[1764115200.0 + i, v] for i, v in enumerate(history)],
        "top_paths": list(top_paths or []),
    }


LEAK_PATH = {
    "count": 120,
    "total_count": 130,
    "path": ["shop/cache.py:17 in remember", "shop/views.py:40 in checkout"],
    "frames": [
        {"filename": "shop/cache.py", "lineno": 17, "function": "remember"},
        {"filename": "shop/views.py", "lineno": 40, "function": "checkout"},
    ],
}


class FakeMonitor:
    """In-memory MemoryMonitor with the CONTRACTS.md interface and snapshot shape."""

    def __init__(self, mode: str = "exact") -> None:
        self.mode = mode
        self.running = False
        self.starts = 0
        self.stops = 0
        self.calls: list[tuple[Any, ...]] = []
        self.on_leak = None
        self.tracked: dict[str, dict[str, Any]] = {}
        self.leaks: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start_monitoring(self, cls: type, threshold: int | None = None, analysis: bool = False) -> None:
        assert isinstance(cls, type)
        self.calls.append(("start_monitoring", cls, threshold, analysis))
        self.tracked[type_name(cls)] = make_entry(type_name(cls), [0], analysing=analysis)

    def stop_monitoring(self, cls: type) -> bool:
        self.calls.append(("stop_monitoring", cls))
        return self.tracked.pop(type_name(cls), None) is not None

    def sample(self) -> list[dict[str, Any]]:
        return []

    def start(self) -> None:
        with self._lock:
            self.starts += 1
            self.running = True

    def stop(self) -> None:
        with self._lock:
            self.stops += 1
            self.running = False

    def snapshot(self) -> dict[str, Any]:
        types = sorted(self.tracked.values(), key=lambda e: (-page.growth(e), e["type"]))
        snap = {
            "mode": self.mode,
            "engine": {
                "available": self.mode == "exact",
                "reason": "fake engine",
                "displaced": False,
                "python": "3.13.5",
            },
            "pid": 4242,
            "sampled_at": 1764115200.0,
            "interval": 1.0,
            "sample_duration_seconds": 0.0001,
            "samples": 3,
            "types": [{**e, "top_paths": e["top_paths"][:3]} for e in types],
            "leaks": list(self.leaks),
        }
        if self.mode == "census":
            snap["census"] = {
                "cost_seconds": 0.05,
                "objects_scanned": 123456,
                "blind_spots": "objects the garbage collector does not track are not counted",
            }
        return snap

    def type_detail(self, name: str) -> dict[str, Any] | None:
        entry = self.tracked.get(name)
        if entry is None:
            return None
        hotspots = (
            [{"filename": "shop/cache.py", "lineno": 17, "function": "remember", "total_count": 130, "count": 120}]
            if entry["top_paths"]
            else []
        )
        return {**entry, "hotspots": hotspots}


def leaky_monitor(mode: str = "exact") -> FakeMonitor:
    monitor = FakeMonitor(mode)
    analysing = mode == "exact"
    monitor.tracked["shop.cache.Entry"] = make_entry(
        "shop.cache.Entry", [100, 150, 220, 300], analysing=analysing, top_paths=[LEAK_PATH] if analysing else []
    )
    monitor.tracked["builtins.dict"] = make_entry("builtins.dict", [50, 50, 49], source="watch_all")
    if analysing:
        monitor.leaks.append(
            {
                "type": "shop.cache.Entry",
                "live": 300,
                "increases": 3,
                "detected_at": 1764115203.0,
                "top_paths": [LEAK_PATH],
            }
        )
    return monitor


def endpoint(monitor: Any = None, **options: Any) -> Endpoint:
    return Endpoint(EndpointOptions(monitor=monitor if monitor is not None else leaky_monitor(), **options))


def call(
    ep: Endpoint,
    method: str = "GET",
    path: str = "/debug/memory",
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    client: str | None = "127.0.0.1",
    body: bytes = b"",
    script_name: str = "",
) -> tuple[int, dict[str, str], bytes]:
    response = ep.handle(
        Request(
            method=method,
            path=path,
            query_string=query,
            headers=headers or {},
            client=client,
            body=body,
            script_name=script_name,
        )
    )
    hdrs = {}
    for k, v in response.headers:
        assert k.lower() not in hdrs, f"duplicate header {k}"
        hdrs[k.lower()] = v
    return response.status, hdrs, response.body


JSON = {"accept": "application/json"}
POST_JSON = {"content-type": "application/json"}


# -- options -----------------------------------------------------------------


def monitor_with(count: int, cls: type) -> tuple[MemoryMonitor, list[Any]]:
    """A real monitor (never sampling by itself) watching ``count`` live objects of ``cls``."""
    monitor = MemoryMonitor(interval=3600.0)
    monitor.start_monitoring(cls)
    kept = [cls() for _ in range(count)]
    monitor.sample()
    return monitor, kept


# ---------------------------------------------------------------------------
# servers


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` ports free now, all different: each probe socket stays bound until all
    are taken (closed one by one, the kernel may hand the same port out again)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(what: str, check, logs: list[Path], timeout: float = WAIT_SECONDS, processes=()):
    """Poll check() until it returns a truthy value; bounded, with logs on failure."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for proc in processes:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args[0]} exited ({proc.returncode}) while waiting for {what}\n" + dump(logs))
        try:
            result = check()
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n" + dump(logs))


def dump(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs if log.exists())


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH")]))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env
