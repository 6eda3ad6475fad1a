"""The command line, run as a person would: ``python -m memtracker_web ...`` in subprocesses.

The demo is a real server on a free 127.0.0.1 port; every demo started here
is bounded by --duration and stopped (or killed) by the test that started it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

import memtracker_web
from support import ENGINE

ROOT = Path(__file__).resolve().parents[2]
DEMO_APP = ROOT / "memtracker_web" / "cli" / "demo_app.py"
LEAKING = "memtracker_web.cli.demo_app.CacheEntry"
FLAT = "memtracker_web.cli.demo_app.Greeting"
TOKEN = "cli-test-token"
EXACT = ENGINE["available"]


def leak_line() -> int:
    lines = [n for n, text in enumerate(DEMO_APP.read_text().splitlines(), 1) if "# LEAK:" in text]
    assert len(lines) == 1, "demo_app.py must mark exactly one line with '# LEAK:'"
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEMTRACKER_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "PYTHONWARNINGS")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-m", "memtracker_web", *args],
        cwd=ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive: uvicorn sends lower-case names) and body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


class Demo:
    """``python -m memtracker_web demo`` as a subprocess, output in files."""

    def __init__(self, tmp: Path, *args: str, duration: float = 90, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out, self.err = tmp / f"demo-{self.port}.out", tmp / f"demo-{self.port}.err"
        argv = [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "memtracker_web",
            "demo",
            "--port",
            str(self.port),
            "--duration",
            str(duration),
            *args,
        ]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=child_env(**env), stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def output(self) -> str:
        return f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"

    def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"demo exited with {self.proc.returncode} before answering\n{self.output()}")
            try:
                return self.snapshot()
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"demo did not answer within {timeout} s\n{self.output()}")

    def wait_announced(self, timeout: float = 10) -> None:
        """The server answers a moment before the demo has printed its URLs and started the load."""
        deadline = time.monotonic() + timeout
        while "\nstops after " not in self.stdout():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"the demo did not announce itself\n{self.output()}")
            time.sleep(0.05)

    def wait_printed(self, text: str, timeout: float = 15) -> str:
        """The demo prints what its monitor found a moment after the page shows it."""
        deadline = time.monotonic() + timeout
        while text not in self.stdout():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"the demo did not print {text!r}\n{self.output()}")
            time.sleep(0.1)
        return self.stdout()

    def snapshot(self) -> dict[str, Any]:
        status, headers, body = get(self.base + "/debug/memory?format=json")
        assert status == 200, body
        assert headers["Content-Type"] == "application/json"
        return json.loads(body)

    def wait_until(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = self.snapshot()
            if predicate(snap):
                return snap
            time.sleep(0.2)
        pytest.fail(f"condition not met within {timeout} s; last snapshot: {json.dumps(snap)[:2000]}\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"demo did not stop within {timeout} s\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.kill()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo for the read-only checks: short interval, a token so auth can be checked."""
    demo = Demo(tmp_path_factory.mktemp("demo"), "--interval", "0.3", MEMTRACKER_TOKEN=TOKEN)
    try:
        demo.wait_ready()
        demo.wait_announced()
        yield demo
    finally:
        demo.kill()


def escalated(snap: dict[str, Any]) -> bool:
    return any(leak["type"] == LEAKING for leak in snap["leaks"])  # census mode reports too


def clean_stderr(text: str) -> None:
    # -X dev shows ResourceWarning (unclosed sockets) and deprecations.
    assert "Traceback" not in text and "Warning" not in text, text


# -- the command itself -------------------------------------------------------


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"memtracker-web {memtracker_web.__version__}\n"


def test_help_lists_commands_and_options() -> None:
    top = cli("--help")
    assert top.returncode == 0
    assert top.stdout.startswith("usage: python -m memtracker_web ")
    for word in ("demo", "report", "--version", "Exit codes: 0 ok, 1 report found a leak, 2 error."):
        assert word in top.stdout
    demo = cli("demo", "--help")
    assert demo.returncode == 0
    for option in ("--port", "--host", "--duration", "--interval", "--server"):
        assert option in demo.stdout
    report = cli("report", "--help")
    assert report.returncode == 0
    for option in ("URL", "--token", "--timeout", "--json"):
        assert option in report.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "the following arguments are required: COMMAND"),
        (("demo", "--port", "70000"), "70000 is not a port number"),
        (("demo", "--duration", "-1"), "must be a positive number of seconds"),
        (("report",), "the following arguments are required: URL"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# -- demo ---------------------------------------------------------------------


def test_demo_prints_urls_and_engine_and_serves_page_json_metrics(running: Demo) -> None:
    out = running.stdout()
    assert f"page:    {running.base}/debug/memory\n" in out
    assert f"metrics: {running.base}/metrics\n" in out
    if EXACT:
        assert "engine: exact (" in out
    else:
        assert f"engine: census ({ENGINE['python']}): {ENGINE['reason']}\n" in out

    snap = running.snapshot()
    assert snap["mode"] == ("exact" if EXACT else "census")
    assert {t["type"] for t in snap["types"]} == {LEAKING, FLAT}
    assert snap["interval"] == 0.3

    status, headers, body = get(running.base + "/debug/memory")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert LEAKING.encode() in body

    status, headers, body = get(running.base + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert f'memtracker_live_objects{{type="{LEAKING}"}}'.encode() in body


def test_demo_finds_the_leak(running: Demo) -> None:
    snap = running.wait_until(escalated)
    flat = next(t for t in snap["types"] if t["type"] == FLAT)
    assert flat["increases"] == 0 and not flat["analysing"]
    if not EXACT:
        # census mode reports the repeated growth as a leak, without paths, saying why
        report = next(leak for leak in snap["leaks"] if leak["type"] == LEAKING)
        assert report["top_paths"] == [] and report["note"].startswith("no call paths in census mode: ")
        assert "census" in snap
        running.wait_printed(f"leak found: {LEAKING} (")
        running.wait_printed("no call paths in census mode")
        return
    report = next(leak for leak in snap["leaks"] if leak["type"] == LEAKING)
    top = report["top_paths"][0]["frames"][0]
    assert Path(top["filename"]).name == "demo_app.py"
    assert (top["lineno"], top["function"]) == (leak_line(), "remember")
    running.wait_printed(f"leak found: {LEAKING} (")
    running.wait_printed(f"demo_app.py:{leak_line()} in remember")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_cleanly_on_signal(demos: list[Demo], tmp_path: Path, sig: int) -> None:
    demo = Demo(tmp_path)
    demos.append(demo)
    demo.wait_ready()
    demo.wait_announced()
    assert demo.stop(sig) == 0, demo.output()
    assert demo.stdout().endswith(f"stopping ({signal.Signals(sig).name})\nstopped\n")
    clean_stderr(demo.stderr())
    with pytest.raises(OSError):
        get(demo.base + "/")


@pytest.mark.parametrize("server", ["uvicorn", "wsgiref"])
def test_demo_duration_exits_by_itself(demos: list[Demo], tmp_path: Path, server: str) -> None:
    demo = Demo(tmp_path, "--server", server, duration=3)
    demos.append(demo)
    started = time.monotonic()
    assert demo.wait_ready()["mode"] == ("exact" if EXACT else "census")
    status, _, body = get(demo.base + "/leak")
    assert status == 200 and json.loads(body)["cached"] > 0
    assert demo.wait(20) == 0, demo.output()
    assert time.monotonic() - started >= 3
    assert f"({server})\n" in demo.stdout()
    assert demo.stdout().endswith("stopping (--duration 3 s elapsed)\nstopped\n")
    clean_stderr(demo.stderr())


@pytest.mark.parametrize("server", ["uvicorn", "wsgiref"])
def test_demo_port_in_use_is_one_line_and_exit_2(server: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("demo", "--port", str(port), "--server", server, "--duration", "5")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"memtracker-web demo: error: port {port} on 127.0.0.1 is already in use; pick another with --port\n"
    )


# -- report -------------------------------------------------------------------


def test_report_gates_on_the_leak(running: Demo) -> None:
    running.wait_until(escalated)
    result = cli("report", running.base + "/debug/memory", "--token", TOKEN)
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith(f"memtracker report: {running.base}/debug/memory?format=json\n")
    assert LEAKING in out and FLAT in out
    assert "TYPE" in out and "LIVE" in out and "GROWTH" in out and "INCREASES" in out and "ANALYSING" in out
    assert result.returncode == 1, out
    assert "LEAKS: 1 type(s) reported\n" in out
    if EXACT:
        assert "mode:    exact (" in out
        assert f"    memtracker_web/cli/demo_app.py:{leak_line()} in remember\n" in out
    else:
        assert f"mode:    census ({ENGINE['python']})\n" in out
        assert f"engine:  {ENGINE['reason']}\n" in out
        assert "census:  " in out
        assert f"  no call paths in census mode: {ENGINE['reason']}\n" in out


def test_report_json_keeps_exit_code(running: Demo) -> None:
    running.wait_until(escalated)
    result = cli("report", running.base, "--json")  # a bare base URL means /debug/memory
    assert result.returncode == 1, result.stderr  # census mode reports repeated growth too
    snap = json.loads(result.stdout)
    assert snap["mode"] == ("exact" if EXACT else "census")
    assert any(t["type"] == LEAKING for t in snap["types"])


def test_report_without_leak_exits_0(demos: list[Demo], tmp_path: Path) -> None:
    # An hour between samples: the first sample sets the baseline, nothing can grow.
    demo = Demo(tmp_path, "--interval", "3600", duration=30)
    demos.append(demo)
    demo.wait_ready()
    get(demo.base + "/leak")
    result = cli("report", demo.base + "/debug/memory")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("\nno leak reported\n")
    assert demo.stop() == 0


def test_report_wrong_token_shows_the_servers_message(running: Demo) -> None:
    result = cli("report", running.base + "/debug/memory", "--token", "wrong")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"memtracker-web report: error: {running.base}/debug/memory?format=json answered 403 Forbidden: invalid token\n"
    )


def test_report_token_from_environment(running: Demo) -> None:
    assert cli("report", running.base, MEMTRACKER_TOKEN="wrong").returncode == 2
    assert cli("report", running.base, MEMTRACKER_TOKEN=TOKEN).returncode in (0, 1)


@pytest.mark.parametrize(
    "path, message",
    [
        ("/metrics", "did not answer with JSON (Content-Type text/plain"),
        ("/leak", "answered JSON that is not a memtracker snapshot"),
    ],
)
def test_report_rejects_what_is_not_a_snapshot(running: Demo, path: str, message: str) -> None:
    result = cli("report", running.base + path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_report_unreachable_exits_2() -> None:
    port = free_port()  # nothing listens there once the probe socket is closed
    result = cli("report", f"http://127.0.0.1:{port}/debug/memory", "--timeout", "5")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"memtracker-web report: error: cannot reach "
        f"http://127.0.0.1:{port}/debug/memory?format=json: Connection refused\n"
    )


def test_report_rejects_non_http_urls() -> None:
    result = cli("report", "file:///etc/passwd")
    assert result.returncode == 2
    assert "is not an http(s) URL" in result.stderr
