"""The examples under real servers on 127.0.0.1: FastAPI/uvicorn, Flask/gunicorn, Django/gunicorn.

Each server is started and stopped here. /leak is hit repeatedly; the leaking
type must grow in /debug/memory (any engine), and with the exact engine it
must be escalated to analysis with its top path naming the leak line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import stop_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INTERVAL = "0.3"


def exact_engine() -> tuple[bool, str]:
    import memtracker_web

    status = getattr(memtracker_web, "engine_status", None)
    if status is None:
        return False, "memtracker_web.engine_status() does not exist"
    info = status()
    return bool(info.get("available")), str(info.get("reason", ""))


SERVERS = {
    "fastapi-uvicorn": {
        "argv": [
            "-m",
            "uvicorn",
            "examples.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        "cwd": ROOT,
        "type": "examples.fastapi_app.CacheEntry",
        "file": EXAMPLES / "fastapi_app.py",
    },
    "flask-gunicorn": {
        "argv": [
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1:{port}",
            "--log-level",
            "warning",
            "examples.flask_app:app",
        ],
        "cwd": ROOT,
        "type": "examples.flask_app.CacheEntry",
        "file": EXAMPLES / "flask_app.py",
    },
    "django-gunicorn": {
        "argv": [
            "-m",
            "gunicorn",
            "--chdir",
            str(EXAMPLES / "django_project"),
            "--workers",
            "1",
            "--bind",
            "127.0.0.1:{port}",
            "--log-level",
            "warning",
            "demo.wsgi",
        ],
        "cwd": ROOT,
        "type": "demo.views.CacheEntry",
        "file": EXAMPLES / "django_project" / "demo" / "views.py",
    },
}


def leak_line(path: Path) -> int:
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if "# LEAK:" in text]
    assert len(lines) == 1, f"{path} must mark exactly one line with '# LEAK:'"
    return lines[0]


def same_file(reported: str, path: Path) -> bool:
    """The monitor may report absolute or shortened (relative) file names."""
    if os.path.isabs(reported):
        return Path(reported).resolve() == path.resolve()
    return path.as_posix().endswith("/" + reported.lstrip("./"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.spec = SERVERS[name]
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MEMTRACKER_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "PYTHONWARNINGS")
        }
        env.update(PYTHONPATH=str(ROOT), MEMTRACKER_INTERVAL=INTERVAL)
        argv = [sys.executable] + [a.replace("{port}", str(self.port)) for a in self.spec["argv"]]
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=self.spec["cwd"], env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.get("/")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"{self.name} did not answer within {timeout} s:\n{self.output()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def snapshot(self) -> dict[str, Any]:
        status, headers, body = self.get("/debug/memory", {"Accept": "application/json"})
        assert status == 200, body
        assert headers["cache-control"] == "no-store"
        return json.loads(body)

    def entry(self) -> dict[str, Any] | None:
        found = [t for t in self.snapshot()["types"] if t["type"] == self.spec["type"]]
        assert len(found) <= 1
        return found[0] if found else None

    def leak(self, times: int) -> int:
        cached = 0
        for _ in range(times):
            status, _, body = self.get("/leak")
            assert status == 200, body
            cached = json.loads(body)["cached"]
        return cached

    def stop(self) -> None:
        stop_process(self.proc)
        self._log_file.close()


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(request.param, tmp_path_factory.mktemp("servers"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def wait_for(
    server: Server, condition: Any, *, leak_per_round: int, timeout: float, what: str, whole: bool = False
) -> dict[str, Any]:
    """Leak a little, let the monitor sample, until condition holds (bounded).

    condition gets the type's entry, or the whole snapshot when whole=True.
    """
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        if leak_per_round:
            server.leak(leak_per_round)
        time.sleep(float(INTERVAL))
        seen = server.snapshot() if whole else server.entry()
        if seen is not None and condition(seen):
            return seen
    pytest.fail(f"{server.name}: {what} within {timeout} s; last seen: {json.dumps(seen)[:2000]}\n{server.output()}")


def test_leaking_type_grows(server: Server) -> None:
    snapshot = server.snapshot()
    exact, _ = exact_engine()
    assert snapshot["mode"] == ("exact" if exact else "census")
    cached = server.leak(30)
    assert cached >= 300
    # Once the monitor has sampled after the last /leak, it counts every entry exactly.
    entry = wait_for(
        server, lambda e: e["live"] >= cached, leak_per_round=0, timeout=15, what=f"live did not reach {cached}"
    )
    assert entry["live"] == cached
    assert entry["history"][-1][1] == cached
    assert entry["history"][0][1] < cached
    status, headers, body = server.get("/debug/memory")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert f"<code>{server.spec['type']}</code>" in body.decode()


def test_leak_is_escalated_to_its_line(server: Server) -> None:
    exact, reason = exact_engine()
    if not exact:
        pytest.skip(
            f"exact engine unavailable on {sys.version.split()[0]} ({reason}); "
            "census mode has no call paths (growth is checked by test_leaking_type_grows)"
        )
    line = leak_line(server.spec["file"])
    filename = server.spec["file"].relative_to(ROOT)

    def is_leak_line(frame: dict[str, Any]) -> bool:
        return frame["lineno"] == line and same_file(frame["filename"], server.spec["file"])

    def at_leak_line(entry: dict[str, Any]) -> bool:
        return bool(
            entry["analysing"] and entry["top_paths"] and any(is_leak_line(f) for f in entry["top_paths"][0]["frames"])
        )

    entry = wait_for(
        server, at_leak_line, leak_per_round=5, timeout=60, what=f"no escalation with a top path at {filename}:{line}"
    )
    assert entry["analysing"] is True
    assert entry["increases"] >= 3

    # Analysing now: the next growth past the threshold files a leak report.
    def reported(snapshot: dict[str, Any]) -> bool:
        return any(leak["type"] == server.spec["type"] for leak in snapshot["leaks"])

    snapshot = wait_for(server, reported, leak_per_round=10, timeout=30, what="no leak report", whole=True)
    report = next(leak for leak in snapshot["leaks"] if leak["type"] == server.spec["type"])
    assert report["live"] > 50 and report["increases"] >= 3
    assert 1 <= len(report["top_paths"]) <= 3
    assert any(is_leak_line(f) for f in report["top_paths"][0]["frames"])
    detail_status, _, detail = server.get(f"/debug/memory/types/{server.spec['type']}?format=json")
    assert detail_status == 200
    hotspots = json.loads(detail)["hotspots"]
    assert any(is_leak_line(h) for h in hotspots)
    shown = next(f["filename"] for f in entry["top_paths"][0]["frames"] if is_leak_line(f))
    page = server.get("/debug/memory")[2].decode()
    assert f"<code>{shown}:{line}</code>" in page
