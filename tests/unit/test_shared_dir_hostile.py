"""The shared directory as an attacker (or a bug) could fill it: what every
worker reads there must never raise, block or be applied unchecked.

Findings of a security review of memtracker_web.workers: deeply nested JSON,
numbers that parse to inf or NaN, values of the wrong type or size, FIFOs,
directories and symlinks named like worker or command files, files anyone
can read, and a directory someone else can write.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memtracker_web.core.naming import MAX_NAME_LENGTH, type_name
from memtracker_web.endpoint import Endpoint, EndpointOptions
from memtracker_web.render import jsontext
from memtracker_web.store import workers
from support import JSON, POST_JSON, call, monitor_with

HOST = workers.hostname()


class Widget:
    """Instances are what the tests count (this module's own: census mode counts every live one)."""


class Gadget:
    """The type the hostile commands try to track."""


WIDGET = type_name(Widget)
GADGET = type_name(Gadget)


def monitor_with_widgets(count: int) -> tuple[Any, list[Widget]]:
    return monitor_with(count, Widget)


DEEP = "[" * 100_000


def worker_data(pid: int, **snapshot: Any) -> dict[str, Any]:
    """A valid worker file's content; ``snapshot`` overrides the snapshot's keys."""
    now = time.time()
    types = [
        {
            "type": WIDGET,
            "live": 5,
            "allocations": 6,
            "frees": 1,
            "increases": 0,
            "analysing": False,
            "source": "tracked",
            "history": [[now, 5]],
            "top_paths": [],
        }
    ]
    return {
        "format": workers.FORMAT,
        "host": HOST,
        "pid": pid,
        "written_at": now,
        "process_start": None,
        "snapshot": {
            "mode": "exact",
            "pid": pid,
            "sampled_at": now,
            "interval": 1.0,
            "samples": 3,
            "types": types,
            "leaks": [],
            **snapshot,
        },
        "commands": {},
    }


def put_worker(directory: Path, name: str, text: str) -> str:
    """A worker file with raw ``text`` (written as it is: not necessarily valid JSON)."""
    filename = f"{workers.WORKER_PREFIX}{name}.json"
    (directory / filename).write_text(text)
    return filename


def put_command(directory: Path, command_id: str, text: str) -> str:
    path = workers.command_path(directory, command_id)
    path.write_text(text)
    return path.name


def cluster_endpoint(shared: Path) -> tuple[Endpoint, list[Widget]]:
    monitor, kept = monitor_with_widgets(4)
    ep = Endpoint(EndpointOptions(monitor=monitor, shared_dir=str(shared)))
    ep.start()
    return ep, kept


def returns_within(seconds: float, function: Callable[[], Any]) -> Any:
    """``function()``'s result; fails (instead of hanging the run) if it takes longer."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = function()
        except BaseException as exc:  # re-raised below, in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def release_fifo(path: Path) -> None:
    """Unblock a reader stuck opening FIFO ``path`` (the code before the fix)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is waiting: nothing to release


# ---------------------------------------------------------------------------
# 1. deeply nested JSON


def test_deeply_nested_worker_files_are_skipped_with_a_note(shared: Path) -> None:
    good = put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(worker_data(os.getpid())))
    deep = put_worker(shared, "deep-1", DEEP)
    # Parses (well under the parser's limit), but too deep to show safely everywhere.
    nested = put_worker(shared, "nested-2", json.dumps(worker_data(2, extra=json.loads("[" * 400 + "]" * 400))))
    found, notes = workers.read_workers(shared)
    assert [w["file"] for w in found] == [good]
    errors = {n["file"]: n["error"] for n in notes}
    assert set(errors) == {deep, nested}
    assert errors[deep].startswith("skipped: not valid JSON (RecursionError: ")
    assert errors[nested] == f"skipped: nested deeper than {workers.MAX_DEPTH} levels"
    with pytest.raises(ValueError, match="not valid JSON"):
        workers.read_json(shared / deep)


def test_a_valid_file_as_deep_as_allowed_is_read(shared: Path) -> None:
    data = worker_data(os.getpid())
    # the file's object is level 1, the snapshot 2: this list fills the levels up to the limit
    data["snapshot"]["extra"] = json.loads("[" * (workers.MAX_DEPTH - 2) + "]" * (workers.MAX_DEPTH - 2))
    data["snapshot"]["note"] = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ \\" + '"' + " {{{{{{{{{{{{{{{{{{{{"
    put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(data))
    found, notes = workers.read_workers(shared)
    assert notes == [] and [w["pid"] for w in found] == [os.getpid()]
    data["snapshot"]["extra"] = [data["snapshot"]["extra"]]
    put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(data))
    assert workers.read_workers(shared)[0] == []


def test_a_deeply_nested_command_file_is_skipped_and_the_others_apply(shared: Path) -> None:
    monitor, _ = monitor_with_widgets(1)
    try:
        publisher = workers.WorkerPublisher(monitor, shared)
        deep = put_command(shared, "00000000000000aa", DEEP)
        command = workers.new_command("track", GADGET)
        workers.write_command(shared, command)
        commands, notes = workers.list_commands(shared)
        assert [c["id"] for c in commands] == [command["id"]]
        assert [n["file"] for n in notes] == [deep] and notes[0]["error"].startswith("not valid JSON (RecursionError")
        assert workers.read_command(shared, "00000000000000aa") is None
        publisher.publish()  # raised RecursionError at every sample before
        assert Gadget in monitor.monitored()
        assert json.loads(publisher.path.read_text())["commands"][command["id"]]["ok"] is True
    finally:
        monitor.close()


def test_overview_and_post_track_survive_deep_files(shared: Path) -> None:
    ep, kept = cluster_endpoint(shared)
    try:
        deep = put_worker(shared, "deep-1", DEEP)
        put_command(shared, "00000000000000aa", DEEP)
        status, _, body = call(ep, headers=JSON)
        assert status == 200
        data = json.loads(body)
        assert [r["pid"] for r in data["workers"]] == [os.getpid()]
        assert [n["file"] for n in data["worker_notes"]] == [deep]
        status, _, body = call(ep)
        assert status == 200 and deep in body.decode()
        status, _, body = call(
            ep, "POST", "/debug/memory/track", headers=POST_JSON, body=json.dumps({"type": GADGET}).encode()
        )
        assert status == 200 and json.loads(body)["tracking"] is True
    finally:
        ep.monitor.close()


# ---------------------------------------------------------------------------
# 2. numbers out of range, values of the wrong type or size


@pytest.mark.parametrize(
    "text",
    [
        '"samples": 1e400',
        '"samples": -1e400',
        '"samples": NaN',
        '"samples": Infinity',
        '"samples": -Infinity',
        '"samples": 1' + "0" * 400 + ".5",
    ],
)
def test_numbers_that_are_not_finite_skip_the_file(shared: Path, text: str) -> None:
    good = json.dumps(worker_data(os.getpid()))
    put_worker(shared, f"{HOST}-{os.getpid()}", good)
    bad = put_worker(shared, "inf-3", good.replace('"samples": 3', text))
    found, notes = workers.read_workers(shared)
    assert [w["pid"] for w in found] == [os.getpid()]
    assert [n["file"] for n in notes] == [bad] and notes[0]["error"].startswith("skipped: not valid JSON (ValueError: ")
    jsontext.dumps(workers.cluster_view(found, notes))  # strict: no inf or NaN reached it


def test_overview_json_with_an_infinite_number_in_a_file(shared: Path) -> None:
    ep, kept = cluster_endpoint(shared)
    try:
        put_worker(shared, "inf-3", json.dumps(worker_data(3)).replace('"samples": 3', '"samples": 1e400'))
        status, _, body = call(ep, headers=JSON)
        assert status == 200 and [n["file"] for n in json.loads(body)["worker_notes"]] == [
            f"{workers.WORKER_PREFIX}inf-3.json"
        ]
    finally:
        ep.monitor.close()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"pid": 10**400}, "no valid host and pid"),  # os.kill raised OverflowError
        ({"pid": "7"}, "no valid host and pid"),
        ({"host": ""}, "no valid host and pid"),
        ({"host": "h" * 256}, "no valid host and pid"),
        ({"written_at": 10**400}, "no valid written_at"),  # now - written_at raised OverflowError
        ({"written_at": "today"}, "no valid written_at"),
        ({"written_at": True}, "no valid written_at"),
        ({"snapshot": {"types": "x"}}, "no valid snapshot"),
        ({"snapshot": {"types": [1, 2]}}, "snapshot has malformed types"),
        ({"snapshot": []}, "no valid snapshot"),
        ({"commands": [1]}, "no valid commands"),
        ({"format": "x" * 1000}, "unknown format " + repr("x" * 1000)[:40]),
    ],
)
def test_a_worker_file_of_the_wrong_shape_is_skipped(shared: Path, change: dict[str, Any], problem: str) -> None:
    data = {**worker_data(os.getpid()), **change}
    put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(data))
    found, notes = workers.read_workers(shared)
    assert found == [] and [n["error"] for n in notes] == [f"skipped: {problem}"]


def test_wrong_values_in_a_snapshot_are_shown_as_null(shared: Path) -> None:
    huge = 10**400
    widest = int("9" * 4300)  # the longest int json reads; two of them sum to one it cannot print
    odd = worker_data(
        os.getpid(),
        mode={"a": 1},
        sampled_at="yesterday",
        interval=huge,
        samples=huge,
        types=[
            {
                "type": WIDGET,
                "live": "many",
                "allocations": huge,
                "frees": 1.5,
                "increases": True,
                "analysing": "yes",
                "source": ["tracked"],
            },
            {"type": GADGET, "live": widest},
        ],
    )
    put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(odd))
    put_worker(
        shared,
        f"{HOST}-{os.getppid()}",
        json.dumps(worker_data(os.getppid(), types=[{"type": GADGET, "live": widest}, {"type": WIDGET, "live": 2}])),
    )
    found, notes = workers.read_workers(shared)  # interval 10**400: float() raised OverflowError
    assert notes == [] and len(found) == 2
    view = workers.cluster_view(found, notes)
    row = next(r for r in view["workers"] if r["pid"] == os.getpid())
    assert (row["mode"], row["sampled_at"], row["interval"], row["samples"]) == (None, None, None, None)
    assert row["types"][0] == {
        "type": WIDGET,
        "live": None,
        "allocations": None,
        "frees": None,
        "increases": None,
        "analysing": False,
        "source": None,
        "live_bytes": None,
    }
    assert row["stale"] is False  # its age counts from written_at, with the default interval
    assert view["totals"] == [
        {"type": WIDGET, "live": 2, "workers": 2, "allocations": None, "frees": None, "live_bytes": None},
        {"type": GADGET, "live": 0, "workers": 2, "allocations": None, "frees": None, "live_bytes": None},
    ]
    json.loads(jsontext.dumps(view))
    monitor, _ = monitor_with_widgets(1)
    try:
        found, _ = workers.gather(shared, monitor.snapshot(), None)  # this process's row replaces the odd one
    finally:
        monitor.close()
    rows = json.loads(jsontext.dumps(workers.cluster_view(found, [])))["workers"]
    assert [(r["pid"], r["self"], r["mode"] is not None) for r in rows] == sorted(
        [(os.getpid(), True, True), (os.getppid(), False, True)]
    )


def test_the_page_shows_a_hostile_but_well_formed_file(shared: Path) -> None:
    ep, kept = cluster_endpoint(shared)
    try:
        put_worker(
            shared,
            f"{HOST}-{os.getppid()}",
            json.dumps(
                worker_data(
                    os.getppid(),
                    mode=["x"] * 3,
                    sampled_at=10**400,
                    interval=-1,
                    types=[{"type": WIDGET, "live": "many"}],
                )
            ),
        )
        assert call(ep, headers=JSON)[0] == 200
        status, _, body = call(ep)
        assert status == 200 and '<table id="workers">' in body.decode()
    finally:
        ep.monitor.close()


def test_command_results_in_a_worker_file_are_picked_by_type(shared: Path) -> None:
    command = workers.new_command("untrack", GADGET)
    data = worker_data(os.getpid())
    data["commands"] = {command["id"]: {"ok": "yes", "error": {"deep": [1]}, "applied_at": 10**400}}
    put_worker(shared, f"{HOST}-{os.getpid()}", json.dumps(data))
    found, _ = workers.read_workers(shared)
    [row] = workers.command_status(command, found)["workers"]
    assert row == {"host": HOST, "pid": os.getpid(), "state": "failed", "error": None, "applied_at": None}


# ---------------------------------------------------------------------------
# 3. FIFOs, directories and symlinks named like worker and command files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_worker_file_does_not_block(shared: Path) -> None:
    fifo = shared / f"{workers.WORKER_PREFIX}fifo-1.json"
    os.mkfifo(fifo)
    try:
        found, notes = returns_within(5.0, lambda: workers.read_workers(shared))
    finally:
        release_fifo(fifo)
    assert found == [] and notes == [{"file": fifo.name, "error": "skipped: a FIFO, not a regular file"}]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_command_file_does_not_block(shared: Path) -> None:
    fifo = workers.command_path(shared, "00000000000000ff")
    os.mkfifo(fifo)
    monitor, _ = monitor_with_widgets(1)
    try:
        publisher = workers.WorkerPublisher(monitor, shared)
        commands, notes = returns_within(5.0, lambda: workers.list_commands(shared))
        assert commands == [] and notes == [{"file": fifo.name, "error": "a FIFO, not a regular file"}]
        assert returns_within(5.0, lambda: workers.read_command(shared, "00000000000000ff")) is None
        assert returns_within(5.0, publisher.publish) == publisher.path
    finally:
        release_fifo(fifo)
        monitor.close()


def test_directories_and_symlinks_named_like_our_files_are_skipped(shared: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text(json.dumps(worker_data(os.getpid())))
    link = shared / f"{workers.WORKER_PREFIX}{HOST}-{os.getpid()}.json"
    link.symlink_to(real)
    folder = shared / f"{workers.WORKER_PREFIX}dir-2.json"
    folder.mkdir()
    found, notes = workers.read_workers(shared)
    assert found == []
    assert {n["file"]: n["error"] for n in notes} == {
        link.name: "skipped: a symbolic link, not a regular file",
        folder.name: "skipped: a directory, not a regular file",
    }
    command = workers.new_command("track", GADGET)
    target = tmp_path / "command.json"
    target.write_text(json.dumps(command))
    workers.command_path(shared, command["id"]).symlink_to(target)
    commands, notes = workers.list_commands(shared)
    assert commands == [] and [n["error"] for n in notes] == ["a symbolic link, not a regular file"]
    assert workers.read_command(shared, command["id"]) is None


# ---------------------------------------------------------------------------
# 4. files only this user can read


def test_published_and_command_files_are_private(shared: Path) -> None:
    monitor, _ = monitor_with_widgets(1)
    try:
        publisher = workers.WorkerPublisher(monitor, shared)
        assert stat.S_IMODE(publisher.publish().stat().st_mode) == 0o600
        path = workers.write_command(shared, workers.new_command("untrack", GADGET))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        monitor.close()


# ---------------------------------------------------------------------------
# 5. the directory itself, and the commands in it


def test_the_shared_dir_is_created_private(tmp_path: Path) -> None:
    monitor, _ = monitor_with_widgets(1)
    try:
        directory = tmp_path / "made" / "here"
        publisher = workers.WorkerPublisher(monitor, directory)
        assert not directory.exists()  # made at the first publish, as before
        publisher.publish()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        other = tmp_path / "commands"
        workers.write_command(other, workers.new_command("untrack", GADGET))
        assert stat.S_IMODE(other.stat().st_mode) == 0o700
    finally:
        monitor.close()


def refuse_reading_and_writing(directory: Path, problem: str) -> None:
    """Every entry point refuses ``directory``, saying ``problem``, and leaves it alone."""
    put_worker(directory, f"{HOST}-{os.getppid()}", json.dumps(worker_data(os.getppid())))
    put_command(
        directory, "00000000000000aa", json.dumps({**workers.new_command("track", GADGET), "id": "00000000000000aa"})
    )
    before = sorted(p.name for p in directory.iterdir())
    monitor, _ = monitor_with_widgets(1)
    try:
        with pytest.raises(workers.UnsafeSharedDir, match=problem) as raised:
            workers.WorkerPublisher(monitor, directory)
        assert repr(str(directory)) in str(raised.value) and "MEMTRACKER_SHARED_DIR" in str(raised.value)
        with pytest.raises(workers.UnsafeSharedDir, match=problem):
            workers.write_command(directory, workers.new_command("untrack", GADGET))
        found, notes = workers.read_workers(directory)
        assert found == [] and notes == [{"file": str(directory), "error": notes[0]["error"]}]
        assert notes[0]["error"].startswith("refused: the directory ") and problem in notes[0]["error"]
        commands, notes = workers.list_commands(directory)
        assert commands == [] and notes[0]["error"].startswith("refused: ")
        assert workers.read_command(directory, "00000000000000aa") is None
        assert workers.clear_host_files(directory) == []
        assert workers.publisher_for(monitor, directory) is None
        assert Gadget not in monitor.monitored()
    finally:
        monitor.close()
    assert sorted(p.name for p in directory.iterdir()) == before


def test_a_directory_others_can_write_is_refused(shared: Path, caplog: pytest.LogCaptureFixture) -> None:
    for mode in (0o770, 0o707, 0o1777):
        shared.chmod(mode)
        refuse_reading_and_writing(shared, "is writable by its group or by others")
    assert "is writable by its group or by others (mode 0o1777)" in caplog.text
    shared.chmod(0o755)  # readable by others is fine (the files in it are not)
    assert workers.read_workers(shared)[1] == []


def test_a_directory_of_another_user_is_refused(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(os, "geteuid"):
        pytest.skip("no owners to check")
    if os.geteuid() == 0:
        os.chown(shared, 65534, 65534)
        owner = 65534
    else:  # cannot give it away: be someone else instead
        owner = os.geteuid()
        monkeypatch.setattr(workers.os, "geteuid", lambda: owner + 1)
    refuse_reading_and_writing(shared, f"is owned by uid {owner}, not by this process's uid")


def test_a_directory_opened_up_later_stops_publishing_with_one_log(
    shared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitor, _ = monitor_with_widgets(1)
    try:
        publisher = workers.WorkerPublisher(monitor, shared)
        publisher.attach()
        monitor.sample()
        path = publisher.path

        def samples_published() -> int:
            return json.loads(path.read_text())["snapshot"]["samples"]

        assert samples_published() == 2
        shared.chmod(0o777)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="memtracker_web"):
            monitor.sample()
            monitor.sample()
        refusals = [r for r in caplog.records if "is writable by its group or by others" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].name == "memtracker_web.store.workers"
        assert "sample hook" not in caplog.text  # logged by the hook, not a traceback per sample
        assert samples_published() == 2
        shared.chmod(0o700)
        monitor.sample()
        assert samples_published() == 5
    finally:
        monitor.close()


def test_the_endpoint_with_an_unsafe_directory_shows_only_itself(shared: Path) -> None:
    shared.chmod(0o777)
    put_worker(shared, f"{HOST}-{os.getppid()}", json.dumps(worker_data(os.getppid())))
    ep, kept = cluster_endpoint(shared)
    try:
        status, _, body = call(ep, headers=JSON)
        data = json.loads(body)
        assert status == 200 and [r["pid"] for r in data["workers"]] == [os.getpid()]
        assert data["worker_notes"][0]["file"] == str(shared)
        assert data["worker_notes"][0]["error"].startswith("refused: the directory is writable by its group")
        assert not list(shared.glob(f"{workers.WORKER_PREFIX}*-{os.getpid()}.json"))
    finally:
        ep.monitor.close()


def write_raw_command(directory: Path, **fields: Any) -> dict[str, Any]:
    command = {**workers.new_command("track", GADGET), **fields}
    workers.write_atomic(workers.command_path(directory, command["id"]), command)
    return command


@pytest.mark.parametrize(
    "fields",
    [
        {"threshold": "5"},
        {"threshold": True},
        {"threshold": 0},
        {"threshold": -3},
        {"threshold": 1.5},
        {"analysis": "yes"},
        {"analysis": 1},
        {"action": "exec"},
        {"type": 5},
        {"type": ""},
        {"type": "a." + "b" * MAX_NAME_LENGTH},
        {"issued_at": "now"},
        {"issued_at": 10**400},
        {"issued_by": "me"},
        {"issued_by": {"host": HOST, "pid": 10**400}},
    ],
)
def test_commands_are_checked_like_the_post_that_makes_them(shared: Path, fields: dict[str, Any]) -> None:
    command = write_raw_command(shared, **fields)
    commands, notes = workers.list_commands(shared)
    assert commands == [] and notes == [
        {"file": workers.command_path(shared, command["id"]).name, "error": "not a memtracker command"}
    ]
    assert workers.read_command(shared, command["id"]) is None
    monitor, _ = monitor_with_widgets(1)
    try:
        publisher = workers.WorkerPublisher(monitor, shared)
        publisher.publish()
        assert Gadget not in monitor.monitored() and publisher.applied() == {}
    finally:
        monitor.close()


def test_a_valid_command_still_applies(shared: Path) -> None:
    command = write_raw_command(shared, threshold=7, analysis=True)
    monitor, _ = monitor_with_widgets(1)
    try:
        assert workers.WorkerPublisher(monitor, shared).apply_commands() == [command["id"]]
        assert monitor._types[id(Gadget)].threshold == 7
    finally:
        monitor.close()


def test_a_command_issued_in_the_future_still_expires(shared: Path) -> None:
    far = write_raw_command(shared, issued_at=time.time() + 10**9)
    soon = write_raw_command(shared, issued_at=time.time() + 60)  # a clock a minute ahead: applies
    commands, _ = workers.list_commands(shared)
    assert [c["id"] for c in commands] == [soon["id"], far["id"]]
    later = time.time() + workers.COMMAND_TTL + 1  # its file was written now
    commands, notes = workers.list_commands(shared, now=later)
    assert commands == [] and notes == []
    assert not workers.command_path(shared, far["id"]).exists()
    assert not workers.command_path(shared, soon["id"]).exists()
