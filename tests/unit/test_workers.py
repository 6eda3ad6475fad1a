"""Every worker in one view: memtracker_web.workers, the endpoint's multi-worker
routes, and real gunicorn servers with 3 workers (sync + Flask, uvicorn + FastAPI).

Unit tests use temp directories and fake worker files; "alive" pids are this
process, its parent and a sleeping child, "dead" ones a reaped child.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memtracker_web import engine_status
from memtracker_web.core.naming import type_name
from memtracker_web.endpoint import Endpoint, EndpointOptions
from memtracker_web.monitor import MemoryMonitor
from memtracker_web.store import workers
from support import JSON, POST_JSON, call, children_of, monitor_with, stop_process


class Widget:
    """Instances are what the unit tests count."""


class Gadget:
    """A second type for track commands."""


WIDGET = type_name(Widget)
GADGET = type_name(Gadget)
HOST = workers.hostname()


@pytest.fixture
def sleeper() -> Iterator[int]:
    """The pid of a live child process on this host."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def entry(name: str, live: int, allocations: int | None = None, frees: int | None = None) -> dict[str, Any]:
    return {
        "type": name,
        "live": live,
        "allocations": allocations,
        "frees": frees,
        "high_water": live,
        "increases": 0,
        "analysing": False,
        "source": "tracked",
        "history": [[0.0, live]],
        "top_paths": [],
    }


def fake_worker(
    directory: Path,
    pid: int,
    types: list[dict[str, Any]],
    *,
    host: str = HOST,
    age: float = 0.0,
    interval: float = 1.0,
    mode: str = "exact",
    commands: dict[str, Any] | None = None,
    process_start: str | None = None,
) -> Path:
    when = time.time() - age
    data = {
        "format": workers.FORMAT,
        "host": host,
        "pid": pid,
        "written_at": when,
        "process_start": process_start,
        "snapshot": {
            "mode": mode,
            "pid": pid,
            "sampled_at": when,
            "interval": interval,
            "samples": 7,
            "types": types,
            "leaks": [],
        },
        "commands": commands or {},
    }
    path = workers.worker_path(directory, host, pid)
    workers.write_atomic(path, data)
    return path


def monitor_with_widgets(count: int, cls: type = Widget) -> tuple[MemoryMonitor, list[Any]]:
    return monitor_with(count, cls)


# ---------------------------------------------------------------------------
# configuration


def test_shared_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEMTRACKER_SHARED_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert EndpointOptions().shared_dir is None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    assert EndpointOptions().shared_dir == str(tmp_path / "prom")
    monkeypatch.setenv("MEMTRACKER_SHARED_DIR", str(tmp_path / "mine"))
    assert EndpointOptions().shared_dir == str(tmp_path / "mine")
    assert EndpointOptions(shared_dir=tmp_path / "given").shared_dir == str(tmp_path / "given")
    assert EndpointOptions(shared_dir=None).shared_dir is None
    with pytest.raises(ValueError, match="shared_dir must be a directory path or None"):
        EndpointOptions(shared_dir="")


# ---------------------------------------------------------------------------
# publishing


def test_publisher_writes_the_snapshot_at_each_sample(shared: Path) -> None:
    monitor, kept = monitor_with_widgets(30)
    publisher = workers.WorkerPublisher(monitor, shared)
    assert publisher.attach() is True
    assert publisher.attach() is True and monitor.sample_hooks.count(publisher._hook) == 1
    assert not publisher.path.exists()
    monitor.sample()
    data = json.loads(publisher.path.read_text())
    assert (data["host"], data["pid"], data["format"]) == (HOST, os.getpid(), workers.FORMAT)
    assert [t["live"] for t in data["snapshot"]["types"] if t["type"] == WIDGET] == [30]
    kept.extend(Widget() for _ in range(5))
    monitor.sample()
    data = json.loads(publisher.path.read_text())
    assert [t["live"] for t in data["snapshot"]["types"] if t["type"] == WIDGET] == [35]
    assert sorted(p.name for p in shared.iterdir()) == [publisher.path.name]  # no temp file left
    publisher.detach()
    kept.append(Widget())
    monitor.sample()
    assert json.loads(publisher.path.read_text())["snapshot"]["samples"] == 3  # not rewritten after detach
    monitor.close()


def test_write_is_atomic_under_a_concurrent_reader(shared: Path) -> None:
    path = shared / "big.json"
    payloads = [{"n": n, "pad": "x" * (200_000 + n)} for n in range(2)]
    workers.write_atomic(path, payloads[0])
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            workers.write_atomic(path, payloads[n % 2])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = set()
        for _ in range(300):
            seen.add(workers.read_json(path)["n"])  # ValueError on a half-written file
    finally:
        stop.set()
        writer.join(timeout=10)
    assert seen <= {0, 1}
    assert [p.name for p in shared.iterdir()] == ["big.json"]


def test_failed_write_keeps_the_old_file_and_no_temp(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared / "w.json"
    workers.write_atomic(path, {"v": 1})

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(workers.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        workers.write_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in shared.iterdir()] == ["w.json"]


def test_publisher_for_attaches_once_and_refuses_a_second_monitor(shared: Path, caplog: Any) -> None:
    monitor, _ = monitor_with_widgets(1)
    first = workers.publisher_for(monitor, shared)
    assert first is not None and workers.publisher_for(monitor, shared) is first
    assert monitor.sample_hooks == [first._hook]
    monitor.start()
    other = MemoryMonitor(interval=3600.0)
    assert workers.publisher_for(other, shared) is None
    assert "another monitor of this process already publishes" in caplog.text
    monitor.close()  # a closed monitor (say, reset_default_monitor) hands over
    second = workers.publisher_for(other, shared)
    assert second is not None and second.monitor is other and monitor.sample_hooks == []
    other.close()


# ---------------------------------------------------------------------------
# reading: rows, totals, stale, gone, cleanup, corrupt files


def test_rows_and_totals(shared: Path, sleeper: int) -> None:
    fake_worker(shared, os.getppid(), [entry(WIDGET, 10, 15, 5), entry(GADGET, 3, 3, 0)])
    fake_worker(shared, sleeper, [entry(WIDGET, 20)], mode="census")
    gone = dead_pid()
    fake_worker(shared, gone, [entry(WIDGET, 1000, 1000, 0)])
    found, notes = workers.read_workers(shared)
    assert notes == []
    view = workers.cluster_view(found, notes)
    rows = {row["pid"]: row for row in view["workers"]}
    assert set(rows) == {os.getppid(), sleeper, gone}
    assert [rows[os.getppid()]["gone"], rows[sleeper]["gone"], rows[gone]["gone"]] == [False, False, True]
    assert rows[sleeper]["mode"] == "census" and rows[sleeper]["types_count"] == 1
    assert rows[os.getppid()]["types"][0] == {
        "type": WIDGET,
        "live": 10,
        "allocations": 15,
        "frees": 5,
        "increases": 0,
        "analysing": False,
        "source": "tracked",
        "live_bytes": None,
    }
    assert rows[os.getppid()]["resident_bytes"] is None
    assert "history" not in rows[os.getppid()]["types"][0]  # the per-worker page has the full snapshot
    # The gone worker's objects died with it; allocations sum over the workers that count them.
    assert view["totals"] == [
        {"type": WIDGET, "live": 30, "workers": 2, "allocations": 15, "frees": 5, "live_bytes": None},
        {"type": GADGET, "live": 3, "workers": 1, "allocations": 3, "frees": 0, "live_bytes": None},
    ]


def test_bytes_sum_over_the_workers_that_estimate_them_and_foreign_values_are_dropped(
    shared: Path, sleeper: int
) -> None:
    with_bytes = dict(entry(WIDGET, 10, 15, 5), live_bytes=480)
    path = fake_worker(shared, os.getppid(), [with_bytes])
    data = json.loads(path.read_text())
    data["snapshot"]["process"] = {"resident_bytes": 50_000_000, "history": []}
    path.write_text(json.dumps(data))
    fake_worker(
        shared, sleeper, [dict(entry(WIDGET, 20), live_bytes="a lot"), dict(entry(GADGET, 1), live_bytes=10**40)]
    )
    found, notes = workers.read_workers(shared)
    view = workers.cluster_view(found, notes)
    rows = {row["pid"]: row for row in view["workers"]}
    assert rows[os.getppid()]["resident_bytes"] == 50_000_000
    assert rows[sleeper]["resident_bytes"] is None
    assert rows[sleeper]["types"][0]["live_bytes"] is None  # not a number: dropped
    totals = {t["type"]: t for t in view["totals"]}
    assert totals[WIDGET]["live_bytes"] == 480
    assert totals[GADGET]["live_bytes"] is None  # beyond any real size: dropped


def test_stale_after_three_intervals(shared: Path) -> None:
    fake_worker(shared, os.getppid(), [entry(WIDGET, 1)], interval=2.0, age=3 * 2.0 + workers.STALE_GRACE + 1)
    fake_worker(shared, os.getpid(), [entry(WIDGET, 1)], interval=2.0, age=2 * 2.0)
    found, _ = workers.read_workers(shared)
    assert {w["pid"]: w["stale"] for w in found} == {os.getppid(): True, os.getpid(): False}
    assert not any(w["gone"] for w in found)


def test_gone_workers_are_shown_then_removed(shared: Path) -> None:
    recent = fake_worker(shared, dead_pid(), [entry(WIDGET, 1)])
    old = fake_worker(shared, dead_pid(), [entry(WIDGET, 1)], age=workers.KEEP_GONE + 5)
    found, _ = workers.read_workers(shared)
    assert [(w["file"], w["gone"]) for w in found] == [(recent.name, True)]
    assert recent.exists() and not old.exists()
    found, _ = workers.read_workers(shared, keep_gone=0.0)
    assert found == [] and not recent.exists()


def test_reused_pid_is_gone(shared: Path) -> None:
    # Same pid, different kernel start time: the process that wrote the file is gone.
    fake_worker(shared, os.getppid(), [entry(WIDGET, 1)], process_start="1")
    fake_worker(shared, os.getpid(), [entry(WIDGET, 1)], process_start=workers.process_start(os.getpid()))
    found, _ = workers.read_workers(shared)
    expected = {os.getpid(): False}
    if workers.process_start(os.getppid()) is not None:  # /proc is there to tell
        expected[os.getppid()] = True
    assert {w["pid"]: w["gone"] for w in found if w["pid"] in expected} == expected


def test_other_hosts_are_never_pid_checked_and_forgotten_late(shared: Path) -> None:
    pid = dead_pid()
    elsewhere = fake_worker(shared, pid, [entry(WIDGET, 4)], host="other-host")
    ancient = fake_worker(shared, pid + 1, [entry(WIDGET, 4)], host="other-host", age=workers.FORGET_AFTER + 5)
    found, _ = workers.read_workers(shared)
    assert [(w["host"], w["pid"], w["gone"], w["stale"]) for w in found] == [("other-host", pid, False, False)]
    assert elsewhere.exists() and not ancient.exists()


def test_corrupt_files_are_skipped_with_a_note(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = fake_worker(shared, os.getppid(), [entry(WIDGET, 2)])
    half = json.dumps({"format": 1, "host": HOST, "pid": 5, "snapshot": {"types": []}})[:40]
    (shared / f"{workers.WORKER_PREFIX}half-5.json").write_text(half)
    (shared / f"{workers.WORKER_PREFIX}list-6.json").write_text("[1, 2]")
    (shared / f"{workers.WORKER_PREFIX}binary-7.json").write_bytes(b"\xff\xfe\x00garbage")
    (shared / f"{workers.WORKER_PREFIX}shape-8.json").write_text(
        json.dumps({"format": 1, "host": HOST, "pid": 8, "written_at": 1.0, "snapshot": {"types": [{"live": 3}]}})
    )
    (shared / f"{workers.WORKER_PREFIX}future-9.json").write_text(json.dumps({"format": 99}))
    (shared / f"{workers.WORKER_PREFIX}nan-10.json").write_text(
        '{"format": 1, "host": "h", "pid": 10, "written_at": NaN, "snapshot": {"types": []}}'
    )
    (shared / f"{workers.WORKER_PREFIX}leaks-11.json").write_text(
        json.dumps({"format": 1, "host": HOST, "pid": 11, "written_at": 1.0, "snapshot": {"types": [], "leaks": 3}})
    )
    temp = shared / f"{workers.TMP_PREFIX}123-abcd"  # a writer mid-write: not a worker
    temp.write_text("{")
    (shared / "gauge_liveall_1.db").write_bytes(b"prometheus")  # other tools' files are left alone
    found, notes = workers.read_workers(shared)
    assert [w["file"] for w in found] == [good.name]
    assert {n["file"]: n["error"] for n in notes} == {
        f"{workers.WORKER_PREFIX}half-5.json": notes[2]["error"],
        f"{workers.WORKER_PREFIX}list-6.json": "skipped: not a JSON object",
        f"{workers.WORKER_PREFIX}binary-7.json": notes[0]["error"],
        f"{workers.WORKER_PREFIX}shape-8.json": "skipped: snapshot has malformed types",
        f"{workers.WORKER_PREFIX}future-9.json": "skipped: unknown format 99",
        f"{workers.WORKER_PREFIX}nan-10.json": "skipped: not valid JSON (ValueError: NaN is not allowed)",
        f"{workers.WORKER_PREFIX}leaks-11.json": "skipped: snapshot has malformed leaks",
    }
    assert notes[0]["error"].startswith("skipped: not valid JSON")
    assert notes[2]["error"].startswith("skipped: not valid JSON")
    assert temp.exists()
    monkeypatch.setattr(workers, "MAX_FILE_BYTES", 100)
    found, notes = workers.read_workers(shared)
    assert found == [] and {"file": good.name, "error": "skipped: larger than 100 bytes"} in notes
    monkeypatch.undo()
    os.utime(temp, (time.time() - workers.TMP_MAX_AGE - 5,) * 2)
    workers.read_workers(shared)
    assert not temp.exists() and (shared / "gauge_liveall_1.db").exists()


def test_clear_host_files_keeps_other_hosts(shared: Path) -> None:
    mine = fake_worker(shared, 11, [])
    theirs = fake_worker(shared, 12, [], host="other-host")
    assert workers.clear_host_files(shared) == [mine.name]
    assert not mine.exists() and theirs.exists()


# ---------------------------------------------------------------------------
# commands


def two_workers(shared: Path) -> tuple[list[workers.WorkerPublisher], list[Any]]:
    """Two publishers in this process standing for two workers (different host names)."""
    publishers, kept = [], []
    for host in ("worker-a", "worker-b"):
        monitor, objs = monitor_with_widgets(3)
        publisher = workers.WorkerPublisher(monitor, shared)
        publisher.host = host
        publishers.append(publisher)
        kept.append(objs)
    return publishers, kept


def status_of(shared: Path, command: dict[str, Any]) -> dict[str, str]:
    found, _ = workers.read_workers(shared)
    return {w["host"]: w["state"] for w in workers.command_status(command, found)["workers"]}


def test_a_command_reaches_every_worker_once(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publishers, _ = two_workers(shared)
    for publisher in publishers:
        publisher.publish()
    command = workers.new_command("track", GADGET, analysis=False, threshold=7)
    workers.write_command(shared, command)
    assert status_of(shared, command) == {"worker-a": "pending", "worker-b": "pending"}
    publishers[0].publish()
    assert status_of(shared, command) == {"worker-a": "applied", "worker-b": "pending"}
    found, _ = workers.read_workers(shared)
    assert workers.command_status(command, found)["complete"] is False
    publishers[1].publish()
    found, _ = workers.read_workers(shared)
    status = workers.command_status(command, found)
    assert (status["applied"], status["pending"], status["complete"]) == (2, 0, True)
    for publisher in publishers:
        assert Gadget in publisher.monitor.monitored()
        assert publisher.monitor._types[id(Gadget)].threshold == 7
        # applied ids are remembered: a later sample does not apply it again
        calls = []
        monkeypatch.setattr(publisher.monitor, "start_monitoring", lambda *a, **k: calls.append(a))  # noqa: B023 -- called and undone in this iteration
        assert publisher.apply_commands() == []
        assert calls == []
        monkeypatch.undo()
    untrack = workers.new_command("untrack", GADGET)
    workers.write_command(shared, untrack)
    for publisher in publishers:
        publisher.publish()
        assert Gadget not in publisher.monitor.monitored()
        assert publisher.applied()[untrack["id"]]["was_tracking"] is True
        publisher.monitor.close()


def test_a_command_that_fails_is_reported_as_failed(shared: Path) -> None:
    publishers, _ = two_workers(shared)
    command = workers.new_command("track", "no_such_module_xyz.Thing")
    workers.write_command(shared, command)
    publishers[0].publish()
    found, _ = workers.read_workers(shared)
    status = workers.command_status(command, found)
    [row] = status["workers"]
    assert row["state"] == "failed" and "no_such_module_xyz" in row["error"]
    assert status["complete"] is True and status["failed"] == 1
    for publisher in publishers:
        publisher.monitor.close()


def test_commands_expire_and_stay_bounded(shared: Path) -> None:
    publishers, _ = two_workers(shared)
    old = workers.new_command("track", GADGET, now=time.time() - workers.COMMAND_TTL - 1)
    workers.write_command(shared, old)
    publishers[0].publish()
    assert Gadget not in publishers[0].monitor.monitored()
    assert not workers.command_path(shared, old["id"]).exists()
    issued = [workers.new_command("untrack", GADGET, now=time.time() + i) for i in range(workers.MAX_COMMANDS + 5)]
    for command in issued:
        workers.write_command(shared, command)
    left = sorted(p.name for p in shared.glob(f"{workers.COMMAND_PREFIX}*"))
    assert left == sorted(workers.command_path(shared, c["id"]).name for c in issued[-workers.MAX_COMMANDS :])
    publishers[0].publish()
    assert len(publishers[0].applied()) == workers.MAX_COMMANDS
    for i in range(workers.MAX_REMEMBERED + 10):
        publishers[1].record({"id": f"{i:016x}"}, {"ok": True, "applied_at": time.time()})
    assert len(publishers[1].applied()) == workers.MAX_REMEMBERED
    (shared / f"{workers.COMMAND_PREFIX}0123456789abcdef.json").write_text("{oops")
    commands, notes = workers.list_commands(shared)
    assert len(commands) == workers.MAX_COMMANDS
    assert (
        notes == [{"file": f"{workers.COMMAND_PREFIX}0123456789abcdef.json", "error": notes[0]["error"]}]
        and "not valid JSON" in notes[0]["error"]
    )
    assert workers.read_command(shared, "0123456789abcdef") is None
    with pytest.raises(ValueError):
        workers.command_path(shared, "../../etc/passwd")
    for publisher in publishers:
        publisher.monitor.close()


# ---------------------------------------------------------------------------
# the endpoint with a shared directory (in process)


def cluster_endpoint(shared: Path, count: int = 12) -> tuple[Endpoint, list[Widget]]:
    monitor, kept = monitor_with_widgets(count)
    ep = Endpoint(EndpointOptions(monitor=monitor, shared_dir=str(shared)))
    ep.start()
    return ep, kept


def test_overview_json_and_html_show_every_worker(shared: Path, sleeper: int) -> None:
    ep, kept = cluster_endpoint(shared)  # kept alive: the monitor thread samples at start
    try:
        fake_worker(shared, sleeper, [entry(WIDGET, 8, 9, 1)])
        gone = dead_pid()
        fake_worker(shared, gone, [entry(WIDGET, 500)])
        fake_worker(shared, os.getppid(), [entry(GADGET, 4)], age=60, interval=1.0)
        (shared / f"{workers.WORKER_PREFIX}broken-1.json").write_text('{"format": 1, "ho')
        status, _, body = call(ep, headers=JSON)
        assert status == 200
        data = json.loads(body)
        assert data["pid"] == os.getpid() and any(t["type"] == WIDGET for t in data["types"])  # as before
        rows = {row["pid"]: row for row in data["workers"]}
        assert set(rows) == {os.getpid(), sleeper, gone, os.getppid()}
        assert rows[os.getpid()]["self"] is True
        assert (rows[gone]["gone"], rows[os.getppid()]["stale"], rows[sleeper]["stale"]) == (True, True, False)
        widget = next(t for t in data["totals"] if t["type"] == WIDGET)
        local_live = next(t["live"] for t in data["types"] if t["type"] == WIDGET)
        assert local_live == 12
        local_bytes = next(t["live_bytes"] for t in data["types"] if t["type"] == WIDGET)
        assert (local_bytes is None) == (ep.monitor.mode != "exact")
        assert widget == {
            "type": WIDGET,
            "live": 12 + 8,
            "workers": 2,
            "allocations": (12 + 9) if ep.monitor.mode == "exact" else 9,
            "frees": (0 + 1) if ep.monitor.mode == "exact" else 1,
            "live_bytes": local_bytes,
        }
        assert [n["file"] for n in data["worker_notes"]] == [f"{workers.WORKER_PREFIX}broken-1.json"]

        status, headers, body = call(ep)
        page = body.decode()
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert '<table id="workers">' in page and '<table id="totals">' in page
        assert f'<a href="/debug/memory/workers/{sleeper}?host={HOST}">{sleeper}</a>' in page
        assert '<span class="badge gone">gone</span>' in page
        assert '<span class="badge stale">stale</span>' in page
        assert "this worker" in page and '<ul class="note" id="worker-notes">' in page
        assert f'<td class="num">{12 + 8}</td>' in page
    finally:
        ep.monitor.close()


def test_worker_detail_pages(shared: Path, sleeper: int) -> None:
    ep, kept = cluster_endpoint(shared)  # kept alive: the monitor thread samples at start
    try:
        fake_worker(shared, sleeper, [entry(WIDGET, 8)])
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}", headers=JSON)
        data = json.loads(body)
        assert status == 200
        assert data["worker"]["pid"] == sleeper and data["worker"]["self"] is False
        assert data["types"][0]["history"] == [[0.0, 8]]  # the whole published snapshot
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}")
        page = body.decode()
        assert status == 200 and f"<h1>Worker {sleeper} on {HOST}" in page
        assert f'href="/debug/memory/workers/{sleeper}/types/{WIDGET}"' in page
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}/types/{WIDGET}", headers=JSON)
        assert status == 200 and json.loads(body)["live"] == 8
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}/types/{WIDGET}")
        assert status == 200 and f"<h1><code>{WIDGET}</code></h1>" in body.decode()
        # another process's objects: no search link (only that worker can search them)
        assert "/retainers" not in body.decode() and "only that worker can search its own objects" in body.decode()
        page = call(ep, path=f"/debug/memory/workers/{os.getpid()}/types/{WIDGET}")[2].decode()
        assert f'<a href="/debug/memory/types/{WIDGET}/retainers">find who holds them now</a>' in page
        # a resident-memory history with odd points from a worker file: drawn from the good ones
        odd = fake_worker(shared, sleeper, [entry(WIDGET, 8)])
        data = json.loads(odd.read_text())
        data["snapshot"]["process"] = {"resident_bytes": 1000, "history": [5, [1.0, "x"], [2.0, 1000], None]}
        odd.write_text(json.dumps(data))
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}")
        assert status == 200 and 'aria-label="resident bytes, 1 sample: 1,000 to 1,000"' in body.decode()
        # this worker: the live monitor, with hotspots
        status, _, body = call(ep, path=f"/debug/memory/workers/{os.getpid()}/types/{WIDGET}", headers=JSON)
        assert status == 200 and json.loads(body)["live"] == 12 and "hotspots" in json.loads(body)
        for path, code in (
            (f"/debug/memory/workers/{sleeper}/types/{GADGET}", 404),
            ("/debug/memory/workers/1", 404),
            ("/debug/memory/workers/0", 400),
            ("/debug/memory/workers/abc", 400),
            ("/debug/memory/commands/xyz", 400),
            ("/debug/memory/commands/0123456789abcdef", 404),
        ):
            assert call(ep, path=path, headers=JSON)[0] == code, path
        assert call(ep, path=f"/debug/memory/workers/{sleeper}", query="host=a/b", headers=JSON)[0] == 400
        assert call(ep, "POST", f"/debug/memory/workers/{sleeper}", headers=JSON)[0] == 405
        # A snapshot that passes the checks but cannot be drawn: an error, never a 500.
        fake_worker(shared, sleeper, [{**entry(WIDGET, 8), "history": [["a", "b"]]}])
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}")
        assert status == 502 and "cannot be shown" in json.loads(body)["error"]
        assert call(ep, path=f"/debug/memory/workers/{sleeper}", headers=JSON)[0] == 200
        assert call(ep)[0] == 200
        fake_worker(shared, sleeper, [entry(WIDGET, 1)], host="other-host")
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}", headers=JSON)
        assert status == 400 and "add ?host=" in json.loads(body)["error"]
        status, _, body = call(ep, path=f"/debug/memory/workers/{sleeper}", query="host=other-host", headers=JSON)
        assert status == 200 and json.loads(body)["types"][0]["live"] == 1
    finally:
        ep.monitor.close()


def test_post_track_applies_here_and_reports_others_pending(shared: Path, sleeper: int) -> None:
    ep, kept = cluster_endpoint(shared)  # kept alive: the monitor thread samples at start
    try:
        fake_worker(shared, sleeper, [])
        body = json.dumps({"type": GADGET, "threshold": 5}).encode()
        status, _, out = call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=body)
        data = json.loads(out)
        assert status == 200
        assert (data["type"], data["tracking"], data["analysis"]) == (GADGET, True, False)
        command = data["command"]
        states = {row["pid"]: row["state"] for row in command["workers"]}
        assert states == {os.getpid(): "applied", sleeper: "pending"}
        assert command["complete"] is False
        assert command["status_url"] == f"/debug/memory/commands/{command['id']}"
        assert Gadget in ep.monitor.monitored()
        # The other worker applies it at its next sample (here: its file says so).
        fake_worker(
            shared,
            sleeper,
            [entry(GADGET, 0)],
            commands={command["id"]: {"ok": True, "error": None, "applied_at": time.time()}},
        )
        status, _, out = call(ep, path=command["status_url"], headers=JSON)
        assert status == 200
        assert json.loads(out)["complete"] is True and json.loads(out)["applied"] == 2
        # Our own sample does not apply our own command again.
        assert ep.publisher().apply_commands() == []
        body = json.dumps({"type": GADGET}).encode()
        status, _, out = call(ep, "POST", "/debug/memory/untrack", headers=POST_JSON, body=body)
        assert status == 200 and json.loads(out)["was_tracking_here"] is True
        assert Gadget not in ep.monitor.monitored()
        # Tracked nowhere any more (the other worker's file no longer lists it): 404, no command.
        fake_worker(shared, sleeper, [])
        before = set(shared.glob(f"{workers.COMMAND_PREFIX}*"))
        status, _, out = call(ep, "POST", "/debug/memory/untrack", headers=POST_JSON, body=body)
        assert status == 404 and "not being tracked by any worker" in json.loads(out)["error"]
        assert set(shared.glob(f"{workers.COMMAND_PREFIX}*")) == before
    finally:
        ep.monitor.close()


def test_without_shared_dir_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMTRACKER_SHARED_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monitor, _ = monitor_with_widgets(2)
    ep = Endpoint(EndpointOptions(monitor=monitor))
    try:
        data = json.loads(call(ep, headers=JSON)[2])
        assert "workers" not in data and "totals" not in data
        assert '<table id="workers">' not in call(ep)[2].decode()
        assert call(ep, path=f"/debug/memory/workers/{os.getpid()}", headers=JSON)[0] == 404
        out = json.loads(
            call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=json.dumps({"type": GADGET}).encode())[2]
        )
        assert out == {"type": GADGET, "tracking": True, "analysis": False}
    finally:
        monitor.close()


# ---------------------------------------------------------------------------
# real servers: gunicorn, 3 workers, examples/gunicorn.conf.py


ROOT = Path(__file__).resolve().parents[2]
INTERVAL = "0.3"
TRACKED = "json.decoder.JSONDecoder"  # imported by every worker, tracked by none until the command
# uvicorn's own gunicorn worker is deprecated in favour of the uvicorn-worker package; use that when present.
UVICORN_WORKER = (
    "uvicorn_worker.UvicornWorker" if importlib.util.find_spec("uvicorn_worker") else "uvicorn.workers.UvicornWorker"
)
SERVERS = {
    # the Flask example finds the directory through PROMETHEUS_MULTIPROC_DIR, the FastAPI one through ours
    "flask-sync": {
        "app": "examples.flask_app:app",
        "worker_class": "sync",
        "env": "PROMETHEUS_MULTIPROC_DIR",
        "type": "examples.flask_app.CacheEntry",
    },
    "fastapi-uvicorn": {
        "app": "examples.fastapi_app:app",
        "worker_class": UVICORN_WORKER,
        "env": "MEMTRACKER_SHARED_DIR",
        "type": "examples.fastapi_app.CacheEntry",
    },
}


class Gunicorn:
    def __init__(self, kind: str, tmp: Path) -> None:
        spec = SERVERS[kind]
        self.kind, self.type = kind, spec["type"]
        self.shared = tmp / "shared"
        self.shared.mkdir()
        fake_worker(self.shared, 999_999, [entry(self.type, 5)], age=10)  # a previous run's: on_starting removes it
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{kind}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MEMTRACKER_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "MEMTRACKER_SHARED_DIR", "PYTHONWARNINGS")
        }
        env.update({"PYTHONPATH": str(ROOT), "MEMTRACKER_INTERVAL": INTERVAL, spec["env"]: str(self.shared)})
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "examples" / "gunicorn.conf.py"),
                "-w",
                "3",
                "-b",
                f"127.0.0.1:{self.port}",
                "-k",
                spec["worker_class"],
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
                spec["app"],
            ],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def request(self, path: str, *, body: Any = None) -> tuple[int, Any]:
        """One request on a new connection (urllib closes it): any worker may take it."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read().decode(errors="replace")

    def page(self, path: str) -> str:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return response.read().decode()

    def wait(self, what: str, condition: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind}: gunicorn exited with {self.proc.returncode}:\n{self.output()}")
            try:
                seen = condition()
            except OSError as exc:  # not listening yet, or a worker died mid-request
                seen = exc
            else:
                if seen is not None and seen is not False:
                    return seen
            time.sleep(0.1)
        pytest.fail(f"{self.kind}: {what} within {timeout} s; last seen: {str(seen)[:3000]}\n{self.output()}")

    def stop(self) -> None:
        try:
            stop_process(self.proc)
        finally:
            self._out.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_of(row: dict[str, Any], name: str) -> int | None:
    return next((t["live"] for t in row["types"] if t["type"] == name), None)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find gunicorn's workers")
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_gunicorn_three_workers_in_one_view(kind: str, tmp_path: Path) -> None:
    server = Gunicorn(kind, tmp_path)
    try:
        exact = engine_status()["available"]

        def three_up() -> Any:
            status, data = server.request("/debug/memory")
            alive = {row["pid"] for row in data["workers"] if not row["gone"]} if status == 200 else set()
            pids = children_of(server.proc.pid)
            return data if len(pids) == 3 and alive == pids else None

        data = server.wait("/debug/memory to show 3 workers", three_up)
        assert not list(server.shared.glob(f"{workers.WORKER_PREFIX}*-999999.json"))  # on_starting cleared it
        pids = {row["pid"] for row in data["workers"]}
        assert {row["mode"] for row in data["workers"]} == {"exact" if exact else "census"}
        assert {row["host"] for row in data["workers"]} == {HOST}

        # Leak in whichever workers take the requests; each answer says which worker and its cache size.
        cached: dict[int, int] = {}
        for _ in range(300):
            status, answer = server.request("/leak")
            assert status == 200, answer
            cached[answer["pid"]] = max(cached.get(answer["pid"], 0), answer["cached"])
            if len(cached) == 3 and sum(cached.values()) >= 600:
                break
        assert set(cached) <= pids and len(cached) >= 2, f"requests were not spread: {cached}"
        expected = sum(cached.values())

        answered_by: set[int] = set()

        def totals_add_up() -> Any:
            status, data = server.request("/debug/memory")
            rows = {row["pid"]: row for row in data["workers"]}
            total = next((t for t in data["totals"] if t["type"] == server.type), None)
            if set(rows) != pids or total is None or total["live"] != expected:
                return None
            assert {pid: live_of(row, server.type) for pid, row in rows.items()} == {
                pid: cached.get(pid, 0) for pid in pids
            }
            assert total["workers"] == 3
            if exact:  # every CacheEntry ever made is still cached
                assert total["allocations"] == expected and total["frees"] == 0
            else:
                assert total["allocations"] is None and total["frees"] is None
            answered_by.add(data["pid"])
            return data if len(answered_by) >= 2 else None  # the same view from different workers

        server.wait("totals to equal the workers' own counts", totals_add_up)

        page = server.page("/debug/memory")
        assert '<table id="workers">' in page and '<table id="totals">' in page
        for pid in pids:
            assert f"/debug/memory/workers/{pid}?host=" in page
        other = next(pid for pid in sorted(pids, key=lambda p: -cached.get(p, 0)))
        status, detail = server.request(f"/debug/memory/workers/{other}")
        assert status == 200 and detail["worker"]["pid"] == other
        assert [t["live"] for t in detail["types"] if t["type"] == server.type] == [cached.get(other, 0)]
        assert f"<h1>Worker {other} on " in server.page(f"/debug/memory/workers/{other}")

        # A track command, POSTed to one worker, reaches all three.
        status, answer = server.request("/debug/memory/track", body={"type": TRACKED})
        assert status == 200, answer
        command = answer["command"]
        states = {row["pid"]: row["state"] for row in command["workers"]}
        assert set(states) == pids
        assert states[command["issued_by"]["pid"]] == "applied"  # at once, by the worker that answered
        assert set(states.values()) <= {"applied", "pending"}

        def applied_everywhere() -> Any:
            status, result = server.request(command["status_url"])
            return result if status == 200 and result["complete"] else None

        result = server.wait("the track command to reach every worker", applied_everywhere, timeout=15)
        assert {row["pid"]: row["state"] for row in result["workers"]} == dict.fromkeys(pids, "applied")

        def tracked_in(expected_pids: set[int]) -> Any:
            status, data = server.request("/debug/memory")
            rows = {row["pid"]: row for row in data["workers"] if not row["gone"]}
            return (
                data
                if set(rows) == expected_pids and all(live_of(rows[pid], TRACKED) is not None for pid in expected_pids)
                else None
            )

        server.wait(f"{TRACKED} in every worker's rows", lambda: tracked_in(pids), timeout=15)

        # Kill one worker: it is marked gone, and gunicorn's replacement appears (and applies the command).
        victim = max(pids, key=lambda pid: cached.get(pid, 0))
        os.kill(victim, signal.SIGKILL)
        survivors = pids - {victim}

        def replaced() -> Any:
            status, data = server.request("/debug/memory")
            rows = {row["pid"]: row for row in data["workers"]}
            alive = {pid for pid, row in rows.items() if not row["gone"]}
            if victim not in rows or not rows[victim]["gone"] or len(alive) != 3 or not survivors <= alive:
                return None
            newcomer = (alive - survivors).pop()
            if newcomer not in children_of(server.proc.pid) or live_of(rows[newcomer], TRACKED) is None:
                return None
            return data, newcomer

        data, newcomer = server.wait("the killed worker to be gone and replaced", replaced)
        total = next(t for t in data["totals"] if t["type"] == server.type)
        assert total["live"] == sum(cached.get(pid, 0) for pid in survivors)  # the dead worker's objects are gone
        assert total["workers"] == 3
        page = server.page("/debug/memory")
        assert '<span class="badge gone">gone</span>' in page
        assert "Traceback" not in server.output()
    finally:
        server.stop()


def test_a_publisher_forgotten_while_it_writes_leaves_no_file(shared: Path) -> None:
    # A master forks its workers while its monitor thread publishes: the fork hook
    # forgets the publisher; the publish under way must not leave the master's file.
    monitor, kept = monitor_with_widgets(2)
    try:
        publisher = workers.publisher_for(monitor, shared)
        assert publisher is not None
        real_snapshot = monitor.snapshot

        def snapshot_then_forgotten(*args: Any, **kwargs: Any) -> Any:
            data = real_snapshot(*args, **kwargs)
            workers.forget_publisher(monitor, shared, blocking=False)  # the fork hook, meanwhile
            return data

        monitor.snapshot = snapshot_then_forgotten  # type: ignore[method-assign]
        path = publisher.publish()
        assert not path.exists()
        monitor.snapshot = real_snapshot  # type: ignore[method-assign]
        publisher.publish()  # retired: writes nothing any more
        assert not path.exists()
    finally:
        monitor.close()
