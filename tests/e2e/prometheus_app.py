"""The app the Prometheus end-to-end tests serve: uvicorn imports ``make_app`` (ASGI,
one process), gunicorn ``make_gunicorn_app()`` (WSGI, in each worker, with
PROMETHEUS_MULTIPROC_DIR). ``MEMTRACKER_TEST_MONITOR`` picks the monitor: "real" is
``memtracker_web.monitor.MemoryMonitor``; "counting" is a minimal monitor here that
counts the leak list, which checks the exporter-to-Prometheus path on its own."""

from __future__ import annotations

import json
import os
import platform
import time
import urllib.parse

FIRST_LEAK = 137
MORE_LEAK = 63
WORKER_LEAK = 40


class LeakyRecord:
    """Instances are kept forever in _LEAKED: the leak the exporter must report."""

    def __init__(self, n: int) -> None:
        self.n = n


_LEAKED: list[LeakyRecord] = []


class CountingMonitor:
    """Monitor stand-in: one tracked type, counted from the leak list."""

    mode = "exact"

    def __init__(self) -> None:
        self.types: list[type] = []
        self.live = 0
        self.samples = 0

    def start_monitoring(self, cls, threshold=None, analysis=False):
        self.types.append(cls)

    def sample(self):
        self.live = len(_LEAKED)
        self.samples += 1
        return []

    def snapshot(self):
        from memtracker_web.core.naming import type_name

        return {
            "mode": "exact",
            "engine": {"available": True, "reason": "", "displaced": False, "python": platform.python_version()},
            "pid": os.getpid(),
            "sampled_at": time.time(),
            "interval": 60.0,
            "sample_duration_seconds": 0.0001,
            "samples": self.samples,
            "types": [
                {
                    "type": type_name(cls),
                    "live": self.live,
                    "allocations": self.live,
                    "frees": 0,
                    "high_water": self.live,
                    "increases": 1,
                    "analysing": False,
                    "source": "tracked",
                    "history": [],
                    "top_paths": [],
                }
                for cls in self.types
            ],
            "leaks": [],
        }


def build_monitor(kind: str):
    if kind == "real":
        from memtracker_web.monitor import MemoryMonitor

        return MemoryMonitor(interval=3600.0)
    return CountingMonitor()


def make_app():
    """ASGI app: /metrics through prometheus_client's make_asgi_app, /leak?n= adds to the leak."""
    from prometheus_client import CollectorRegistry, make_asgi_app

    from memtracker_web.prometheus import MemoryCollector

    monitor = build_monitor(os.environ["MEMTRACKER_TEST_MONITOR"])
    monitor.start_monitoring(LeakyRecord)
    _LEAKED.extend(LeakyRecord(i) for i in range(FIRST_LEAK))
    monitor.sample()
    registry = CollectorRegistry()
    MemoryCollector(monitor, registry)
    metrics = make_asgi_app(registry)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/metrics":
            await metrics(scope, receive, send)
            return
        if scope["path"] == "/leak":
            count = int(urllib.parse.parse_qs(scope["query_string"].decode())["n"][0])
            _LEAKED.extend(LeakyRecord(i) for i in range(count))
            monitor.sample()
            status, body = 200, json.dumps({"live": len(_LEAKED)}).encode()
        else:
            status, body = 404, b"not found"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def make_gunicorn_app():
    """WSGI app: /metrics from every worker's files, /leak?n= leaks in this worker."""
    from prometheus_client import make_wsgi_app

    from memtracker_web.prometheus import install, metrics_registry

    if os.environ["MEMTRACKER_TEST_MONITOR"] == "real":
        from memtracker_web.monitor import MemoryMonitor

        monitor = MemoryMonitor(interval=3600.0)
    else:
        monitor = CountingMonitor()
    monitor.start_monitoring(LeakyRecord)
    _LEAKED.extend(LeakyRecord(i) for i in range(WORKER_LEAK))
    monitor.sample()
    publisher = install(monitor, multiprocess_mode=os.environ["MEMTRACKER_TEST_MODE"])
    hooked = publisher.attach()
    metrics = make_wsgi_app(metrics_registry())

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/metrics":
            return metrics(environ, start_response)
        count = int(urllib.parse.parse_qs(environ["QUERY_STRING"])["n"][0])
        _LEAKED.extend(LeakyRecord(i) for i in range(count))
        monitor.sample()
        if not hooked:  # the monitor has no on_sample hooks: publish explicitly
            publisher.publish()
        body = json.dumps({"pid": os.getpid(), "live": len(_LEAKED)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app
