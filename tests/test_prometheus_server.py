"""A real Prometheus server scrapes an app served by uvicorn and its HTTP API
returns memtracker_live_objects of the leaking type with the right value.

The app runs in a uvicorn subprocess (``make_app`` below, imported by uvicorn
with ``--factory``) so that its monitor and tracer stay out of the test process.
``MEMTRACKER_TEST_MONITOR`` picks the monitor: "real" is
``memtracker_web.monitor.MemoryMonitor``; "counting" is a minimal in-file monitor
that counts the leak list, which checks the exporter-to-Prometheus path on its own.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
FIRST_LEAK = 137
MORE_LEAK = 63
WAIT_SECONDS = 45.0


# ---------------------------------------------------------------------------
# the app (runs in the uvicorn subprocess)


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
        from memtracker_web.naming import type_name

        return {"mode": "exact",
                "engine": {"available": True, "reason": "", "displaced": False,
                           "python": platform.python_version()},
                "pid": os.getpid(), "sampled_at": time.time(), "interval": 60.0,
                "sample_duration_seconds": 0.0001, "samples": self.samples,
                "types": [{"type": type_name(cls), "live": self.live, "allocations": self.live,
                           "frees": 0, "high_water": self.live, "increases": 1, "analysing": False,
                           "source": "tracked", "history": [], "top_paths": []} for cls in self.types],
                "leaks": []}


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
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


# ---------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
                pytest.fail(f"{proc.args[0]} exited ({proc.returncode}) while waiting for {what}\n"
                            + dump(logs))
        try:
            result = check()
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n" + dump(logs))


def dump(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
                     for log in logs if log.exists())


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


MONITORS = ["counting", "real"]


# ---------------------------------------------------------------------------
# the test


@pytest.mark.skipif(not Path(PROMETHEUS).exists(),
                    reason="prometheus server not installed (Debian package 'prometheus')")
@pytest.mark.parametrize("monitor_kind", MONITORS)
def test_prometheus_scrapes_live_objects_of_the_leaking_type(tmp_path, monitor_kind):
    app_port, prom_port = free_port(), free_port()
    app_log, prom_log = tmp_path / "uvicorn.log", tmp_path / "prometheus.log"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: app\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n")
    app = prom = None
    try:
        with app_log.open("wb") as out:
            app = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "test_prometheus_server:make_app",
                 "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1",
                 "--port", str(app_port), "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT,
                env=subprocess_env(MEMTRACKER_TEST_MONITOR=monitor_kind))
        with prom_log.open("wb") as out:
            prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT)
        logs, procs = [app_log, prom_log], (app, prom)
        app_url, prom_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}"

        exposition = wait_for("the app's /metrics", lambda: http_get(app_url + "/metrics").decode(),
                              logs, processes=procs)
        assert 'memtracker_live_objects{type="test_prometheus_server.LeakyRecord"}' in exposition
        wait_for("Prometheus to be ready", lambda: http_get(prom_url + "/-/ready"), logs, processes=procs)

        def query(promql: str) -> list[dict]:
            url = prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            answer = json.loads(http_get(url))
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        live = 'memtracker_live_objects{type="test_prometheus_server.LeakyRecord"}'

        def live_value(expected: float):
            result = query(live)
            return result if result and float(result[0]["value"][1]) == expected else None

        result = wait_for(f"{live} == {FIRST_LEAK}", lambda: live_value(FIRST_LEAK), logs, processes=procs)
        assert len(result) == 1
        assert result[0]["metric"] == {"__name__": "memtracker_live_objects", "instance": f"127.0.0.1:{app_port}",
                                       "job": "app", "type": "test_prometheus_server.LeakyRecord"}

        # The leak grows: the next scrapes carry the new count.
        assert json.loads(http_get(f"{app_url}/leak?n={MORE_LEAK}"))["live"] == FIRST_LEAK + MORE_LEAK
        wait_for(f"{live} == {FIRST_LEAK + MORE_LEAK}", lambda: live_value(FIRST_LEAK + MORE_LEAK),
                 logs, processes=procs)

        info = query("memtracker_engine_info")
        assert len(info) == 1 and info[0]["metric"]["mode"] in ("exact", "census")
        assert platform.python_version() in info[0]["metric"]["python"]
        up = query("memtracker_engine_up")
        assert len(up) == 1 and up[0]["value"][1] in ("0", "1")
        # Scrapes were clean: Prometheus recorded no errors for the target.
        targets = json.loads(http_get(prom_url + "/api/v1/targets"))["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        assert targets[0]["lastError"] == ""
    finally:
        stop(prom)
        stop(app)
