"""One view of every worker process: snapshots and commands through a shared directory.

Under gunicorn or uvicorn with several workers, a request to ``/debug/memory``
lands on one of them. Each worker's :class:`WorkerPublisher` therefore writes
its monitor's snapshot to ``MEMTRACKER_SHARED_DIR`` (default:
``PROMETHEUS_MULTIPROC_DIR``) after every sample, and whichever worker answers
reads all of them (:func:`read_workers`, :func:`cluster_view`).

Files (JSON, each replaced atomically: written to a temp file in the same
directory, then ``os.replace``d, so a reader never sees half a file)::

    memtracker-worker-<host>-<pid>.json   one per worker, rewritten at each sample
    memtracker-command-<id>.json          track/untrack, applied by every worker

A worker is *stale* when its last snapshot is older than ``STALE_INTERVALS``
sample intervals (plus a small grace) and *gone* when its pid no longer exists;
pids are only checked for files written on this host. Gone workers are shown
for ``KEEP_GONE`` seconds, then their files are removed; files of other hosts
are removed once ``FORGET_AFTER`` seconds old. Totals leave gone workers out:
their objects died with them.

Commands are one-shot: every worker applies each command it has not applied
yet at its next sample, as long as the command is younger than
``COMMAND_TTL`` (a worker started within that time applies it too), and lists
the ids it applied in its snapshot file. At most ``MAX_COMMANDS`` command files
are kept; for types every worker should always watch, configure ``track``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Optional

from . import jsontext
from .naming import resolve_type

log = logging.getLogger(__name__)

SHARED_DIR_ENV = "MEMTRACKER_SHARED_DIR"
PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"
FORMAT = 1
WORKER_PREFIX = "memtracker-worker-"
COMMAND_PREFIX = "memtracker-command-"
TMP_PREFIX = ".memtracker-tmp-"
STALE_INTERVALS = 3
STALE_GRACE = 1.0          # seconds: a sample and a write can be late under load
KEEP_GONE = 60.0
FORGET_AFTER = 3600.0
TMP_MAX_AGE = 60.0         # a temp file this old belongs to a writer that died mid-write
COMMAND_TTL = 300.0
MAX_COMMANDS = 64
MAX_REMEMBERED = 256
MAX_FILE_BYTES = 8 * 1024 * 1024
COMMAND_ID = re.compile(r"^[0-9a-f]{16}$")
ACTIONS = ("track", "untrack")


def shared_dir_from_env() -> Optional[str]:
    return os.environ.get(SHARED_DIR_ENV) or os.environ.get(PROMETHEUS_ENV) or None


def hostname() -> str:
    return socket.gethostname() or "localhost"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", text)[:100]


def worker_path(directory: str | os.PathLike[str], host: str, pid: int) -> Path:
    return Path(directory) / f"{WORKER_PREFIX}{_safe(host)}-{int(pid)}.json"


def command_path(directory: str | os.PathLike[str], command_id: str) -> Path:
    if not COMMAND_ID.match(command_id):
        raise ValueError(f"not a command id: {command_id!r}")
    return Path(directory) / f"{COMMAND_PREFIX}{command_id}.json"


def write_atomic(path: Path, data: Any, *, fsync: bool = False) -> None:
    """Write JSON so that readers see the old file or the new one, never a mix."""
    body = jsontext.dumps(data).encode()
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as out:
            out.write(body)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError says why not (size, syntax, shape)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        # a read sized by the limit would allocate the whole limit every time
        body = f.read(min(size, MAX_FILE_BYTES) + 1)
    if len(body) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; they would also break the endpoint's strict dumps
    raise ValueError(f"{name} is not allowed")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("memtracker: could not remove %s: %s", path, exc)


def process_start(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid from its old owner."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, started: Optional[str] = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # exists, owned by someone else
        pass
    except OSError:
        return False
    if started is not None:
        now = process_start(pid)
        return now is None or now == started
    return True


# ---------------------------------------------------------------------------
# commands


def new_command(action: str, type_name: str, *, analysis: bool = False, threshold: Optional[int] = None,
                now: Optional[float] = None) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    command: dict[str, Any] = {"id": secrets.token_hex(8), "action": action, "type": type_name,
                               "issued_at": time.time() if now is None else now,
                               "issued_by": {"host": hostname(), "pid": os.getpid()}}
    if action == "track":
        command["analysis"] = bool(analysis)
        command["threshold"] = threshold
    return command


def write_command(directory: str | os.PathLike[str], command: dict[str, Any]) -> Path:
    """Put ``command`` where every worker's next sample finds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Keep the directory bounded: the oldest commands make room for this one.
    existing, _ = list_commands(directory, now=command["issued_at"])
    for old in existing[:max(0, len(existing) - MAX_COMMANDS + 1)]:
        _unlink(command_path(directory, old["id"]))
    path = command_path(directory, command["id"])
    write_atomic(path, command)
    return path


def _valid_command(data: dict[str, Any]) -> bool:
    return (isinstance(data.get("id"), str) and bool(COMMAND_ID.match(data["id"]))
            and data.get("action") in ACTIONS and isinstance(data.get("type"), str)
            and isinstance(data.get("issued_at"), (int, float)) and not isinstance(data.get("issued_at"), bool))


def list_commands(directory: str | os.PathLike[str], *, now: Optional[float] = None,
                  ttl: float = COMMAND_TTL) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Unexpired commands, oldest first, and notes on unreadable files; removes expired ones."""
    now = time.time() if now is None else now
    commands, notes = [], []
    for path in sorted(Path(directory).glob(f"{COMMAND_PREFIX}*.json")):
        try:
            data = read_json(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            notes.append({"file": path.name, "error": str(exc)})
            continue
        if not _valid_command(data) or path.name != command_path(directory, data["id"]).name:
            notes.append({"file": path.name, "error": "not a memtracker command"})
            continue
        if now - data["issued_at"] > ttl:
            _unlink(path)
            continue
        commands.append(data)
    commands.sort(key=lambda c: (c["issued_at"], c["id"]))
    return commands, notes


def read_command(directory: str | os.PathLike[str], command_id: str) -> Optional[dict[str, Any]]:
    try:
        data = read_json(command_path(directory, command_id))
    except (OSError, ValueError):
        return None
    return data if _valid_command(data) and data["id"] == command_id else None


def apply_command(monitor: Any, command: dict[str, Any]) -> dict[str, Any]:
    """Apply one command to ``monitor``; the result is what the worker publishes."""
    result: dict[str, Any] = {"action": command["action"], "type": command["type"], "applied_at": time.time()}
    try:
        cls = resolve_type(command["type"], import_modules=False)   # commands come from requests
        if command["action"] == "track":
            threshold = command.get("threshold")
            monitor.start_monitoring(cls, threshold=threshold if isinstance(threshold, int) else None,
                                     analysis=command.get("analysis") is True)
        else:
            result["was_tracking"] = bool(monitor.stop_monitoring(cls))
        result.update(ok=True, error=None)
    except Exception as exc:   # e.g. the type's module is not imported in this worker
        result.update(ok=False, error=f"{exc.__class__.__name__}: {exc}"[:300])
    return result


# ---------------------------------------------------------------------------
# the writing side: one per worker process


class WorkerPublisher:
    """Publishes ``monitor.snapshot()`` to the shared directory and applies commands.

    :meth:`attach` adds it to ``monitor.sample_hooks``, so both happen after
    every sample. Fork-safe: the pid and lock are checked at each publish.
    """

    def __init__(self, monitor: Any, directory: str | os.PathLike[str], *, fsync: bool = False,
                 command_ttl: float = COMMAND_TTL) -> None:
        self.monitor = monitor
        self.directory = Path(directory)
        self.fsync = fsync
        self.command_ttl = float(command_ttl)
        self.host = hostname()
        self._applied: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._started = process_start(self._pid)

    @property
    def path(self) -> Path:
        return worker_path(self.directory, self.host, os.getpid())

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # the child inherits what the parent applied (its monitor state came along too)
            self._lock = threading.Lock()
            self._pid = os.getpid()
            self._started = process_start(self._pid)

    def record(self, command: dict[str, Any], result: dict[str, Any]) -> None:
        """Remember a command this process applied itself (the POST that issued it)."""
        self._check_fork()
        with self._lock:
            self._remember(command["id"], result)

    def _remember(self, command_id: str, result: dict[str, Any]) -> None:
        self._applied[command_id] = result
        self._applied.move_to_end(command_id)
        while len(self._applied) > MAX_REMEMBERED:
            self._applied.popitem(last=False)

    def applied(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._applied)

    def apply_commands(self) -> list[str]:
        """Apply the commands this worker has not applied yet; returns their ids."""
        self._check_fork()
        commands, _ = list_commands(self.directory, ttl=self.command_ttl)
        done = []
        with self._lock:
            for command in commands:
                if command["id"] in self._applied:
                    continue
                self._remember(command["id"], apply_command(self.monitor, command))
                done.append(command["id"])
        return done

    def publish(self) -> Path:
        """Apply new commands, then write this worker's snapshot file."""
        self._check_fork()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.apply_commands()
        snapshot = self.monitor.snapshot()
        with self._lock:
            cutoff = time.time() - self.command_ttl
            commands = {cid: r for cid, r in self._applied.items() if r.get("applied_at", 0) >= cutoff}
            path = self.path
            write_atomic(path, {"format": FORMAT, "host": self.host, "pid": os.getpid(),
                                "process_start": self._started, "written_at": time.time(),
                                "snapshot": snapshot, "commands": commands}, fsync=self.fsync)
        return path

    def _hook(self, _monitor: Any) -> None:
        self.publish()

    def attach(self) -> bool:
        """Publish after every sample; False if the monitor has no ``sample_hooks``."""
        hooks = getattr(self.monitor, "sample_hooks", None)
        if not isinstance(hooks, list):
            log.warning("memtracker: %r has no sample_hooks; its snapshot is published only on demand",
                        self.monitor)
            return False
        if self._hook not in hooks:
            hooks.append(self._hook)
        return True

    def detach(self) -> None:
        try:
            self.monitor.sample_hooks.remove(self._hook)
        except ValueError:
            pass


_PUBLISHERS: dict[str, WorkerPublisher] = {}
_PUBLISHERS_LOCK = threading.Lock()


def publisher_for(monitor: Any, directory: str | os.PathLike[str]) -> Optional[WorkerPublisher]:
    """The attached publisher of ``monitor`` for ``directory``, made once per process.

    One file per pid: a second monitor in the same process cannot publish to
    the same directory (None, with a warning) while the first one runs; a
    stopped one (e.g. after ``reset_default_monitor()``) is replaced.
    """
    key = os.path.abspath(os.fspath(directory))
    with _PUBLISHERS_LOCK:
        publisher = _PUBLISHERS.get(key)
        stopped = publisher is not None and not getattr(publisher.monitor, "running", True)
        if publisher is not None and publisher.monitor is not monitor and stopped:
            publisher.detach()
            publisher = None
        if publisher is None:
            publisher = _PUBLISHERS[key] = WorkerPublisher(monitor, key)
            publisher.attach()
        elif publisher.monitor is not monitor:
            log.warning("memtracker: another monitor of this process already publishes to %s", key)
            return None
    return publisher


def forget_publisher(monitor: Any, directory: str | os.PathLike[str]) -> None:
    """Detach ``monitor``'s publisher for ``directory`` and remove this process's
    file there (a process that hands its monitoring over to its forked workers)."""
    key = os.path.abspath(os.fspath(directory))
    with _PUBLISHERS_LOCK:
        publisher = _PUBLISHERS.get(key)
        if publisher is None or publisher.monitor is not monitor:
            return
        del _PUBLISHERS[key]
    publisher.detach()
    _unlink(publisher.path)


def forget_publishers() -> None:
    """Detach every publisher of this process (tests, reloads)."""
    with _PUBLISHERS_LOCK:
        publishers = list(_PUBLISHERS.values())
        _PUBLISHERS.clear()
    for publisher in publishers:
        publisher.detach()


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: start the memory endpoints built in this worker now.

    The monitor and the worker file start as the app loads (Endpoint.start_at_load);
    this also installs the metrics exporter before the first request.
    """
    from .endpoint import start_endpoints

    start_endpoints()


def clear_host_files(directory: str | os.PathLike[str]) -> list[str]:
    """Remove this host's worker files (a new server run: old pids mean nothing)."""
    removed = []
    for path in Path(directory).glob(f"{WORKER_PREFIX}{_safe(hostname())}-*.json"):
        _unlink(path)
        removed.append(path.name)
    return removed


# ---------------------------------------------------------------------------
# the reading side


def _worker_record(data: dict[str, Any]) -> Optional[str]:
    """None if ``data`` is a worker file we can show, else why not."""
    if data.get("format") != FORMAT:
        return f"unknown format {data.get('format')!r}"
    pid, host, snapshot = data.get("pid"), data.get("host"), data.get("snapshot")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(host, str):
        return "no valid host and pid"
    if not isinstance(data.get("written_at"), (int, float)):
        return "no valid written_at"
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("types"), list):
        return "no valid snapshot"
    if not all(isinstance(t, dict) and isinstance(t.get("type"), str) for t in snapshot["types"]):
        return "snapshot has malformed types"
    if not isinstance(data.get("commands", {}), dict):
        return "no valid commands"
    if not isinstance(snapshot.get("leaks", []), list):
        return "snapshot has malformed leaks"
    return None


def _freshness(data: dict[str, Any], now: float) -> tuple[float, bool]:
    snapshot = data["snapshot"]
    when = snapshot.get("sampled_at")
    when = when if isinstance(when, (int, float)) else data["written_at"]
    interval = snapshot.get("interval")
    interval = float(interval) if isinstance(interval, (int, float)) and interval > 0 else 60.0
    age = max(0.0, now - when)
    return age, age > STALE_INTERVALS * interval + STALE_GRACE


def read_workers(directory: str | os.PathLike[str], *, now: Optional[float] = None, keep_gone: float = KEEP_GONE,
                 forget_after: float = FORGET_AFTER, cleanup: bool = True
                 ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every worker file as ``{host, pid, written_at, snapshot, commands, age, stale, gone, file}``,
    sorted by host and pid, plus notes on the files that were skipped.

    With ``cleanup``, removes files of workers gone for ``keep_gone`` seconds,
    of other hosts after ``forget_after`` seconds, and abandoned temp files.
    """
    now = time.time() if now is None else now
    directory = Path(directory)
    here = hostname()
    workers, notes = [], []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return [], []
    for entry in sorted(entries, key=lambda e: e.name):
        path = Path(entry.path)
        if entry.name.startswith(TMP_PREFIX):
            if cleanup and _mtime_age(path, now) > TMP_MAX_AGE:
                _unlink(path)
            continue
        if not (entry.name.startswith(WORKER_PREFIX) and entry.name.endswith(".json")):
            continue
        try:
            data = read_json(path)
            problem = _worker_record(data)
        except FileNotFoundError:       # removed between listing and reading
            continue
        except (OSError, ValueError) as exc:
            problem = str(exc)
        if problem is not None:
            notes.append({"file": entry.name, "error": f"skipped: {problem}"})
            if cleanup and _mtime_age(path, now) > forget_after:
                _unlink(path)
            continue
        age, stale = _freshness(data, now)
        local = data["host"] == here
        started = data.get("process_start") if isinstance(data.get("process_start"), str) else None
        gone = local and not pid_alive(data["pid"], started)
        written_age = now - data["written_at"]
        if cleanup and ((gone and written_age > keep_gone) or (not local and written_age > forget_after)):
            _unlink(path)
            continue
        workers.append({"host": data["host"], "pid": data["pid"], "written_at": data["written_at"],
                        "snapshot": data["snapshot"], "commands": data.get("commands") or {},
                        "age": age, "stale": stale, "gone": gone, "file": entry.name})
    workers.sort(key=lambda w: (w["host"], w["pid"]))
    return workers, notes


def _mtime_age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _number(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def worker_row(worker: dict[str, Any], *, this: bool = False) -> dict[str, Any]:
    """The JSON row of one worker: status and its types without history or paths."""
    snapshot = worker["snapshot"]
    types = [{"type": t["type"], "live": _number(t.get("live")), "allocations": _number(t.get("allocations")),
              "frees": _number(t.get("frees")), "increases": _number(t.get("increases")),
              "analysing": t.get("analysing") is True, "source": t.get("source")}
             for t in snapshot.get("types") or []]
    return {"pid": worker["pid"], "host": worker["host"], "self": this, "mode": snapshot.get("mode"),
            "sampled_at": snapshot.get("sampled_at"), "written_at": worker["written_at"],
            "age_seconds": round(worker["age"], 3), "stale": worker["stale"], "gone": worker["gone"],
            "interval": snapshot.get("interval"), "samples": snapshot.get("samples"),
            "types_count": len(types), "leaks_count": len(snapshot.get("leaks") or []), "types": types}


def totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per type over the workers that are not gone: live summed, workers reporting,
    allocations and frees summed over the workers that count them (null if none)."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["gone"]:
            continue
        for t in row["types"]:
            total = merged.setdefault(t["type"], {"type": t["type"], "live": 0, "workers": 0,
                                                  "allocations": None, "frees": None})
            total["live"] += t["live"] or 0
            total["workers"] += 1
            for key in ("allocations", "frees"):
                if t[key] is not None:
                    total[key] = (total[key] or 0) + t[key]
    return sorted(merged.values(), key=lambda t: (-t["live"], t["type"]))


def local_worker(snapshot: dict[str, Any], publisher: Optional[WorkerPublisher], now: float) -> dict[str, Any]:
    """The answering worker, from its fresh in-memory snapshot."""
    data = {"snapshot": snapshot, "written_at": now}
    age, stale = _freshness(data, now)
    return {"host": hostname(), "pid": os.getpid(), "written_at": now, "snapshot": snapshot,
            "commands": publisher.applied() if publisher is not None else {},
            "age": age, "stale": stale, "gone": False, "file": None}


def gather(directory: str | os.PathLike[str], local_snapshot: Optional[dict[str, Any]] = None,
           publisher: Optional[WorkerPublisher] = None, *, now: Optional[float] = None
           ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """All workers, with the answering one (if given) from its live snapshot instead of its file."""
    now = time.time() if now is None else now
    workers, notes = read_workers(directory, now=now)
    if local_snapshot is not None:
        me = (hostname(), os.getpid())
        workers = [w for w in workers if (w["host"], w["pid"]) != me]
        workers.append(local_worker(local_snapshot, publisher, now))
        workers.sort(key=lambda w: (w["host"], w["pid"]))
    return workers, notes


def cluster_view(workers: list[dict[str, Any]], notes: list[dict[str, str]]) -> dict[str, Any]:
    """What ``/debug/memory`` adds to the local snapshot: ``workers``, ``totals``, ``notes``."""
    me = (hostname(), os.getpid())
    rows = [worker_row(w, this=(w["host"], w["pid"]) == me) for w in workers]
    return {"workers": rows, "totals": totals(rows), "worker_notes": notes}


def find_worker(workers: list[dict[str, Any]], pid: int, host: Optional[str] = None) -> list[dict[str, Any]]:
    """Workers with ``pid`` (on ``host`` if given); this host's first."""
    found = [w for w in workers if w["pid"] == pid and (host is None or w["host"] == host)]
    here = hostname()
    return sorted(found, key=lambda w: w["host"] != here)


def command_status(command: dict[str, Any], workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Which workers applied ``command``: applied, failed, pending, or stale/gone without it.

    ``complete`` once every worker that is neither gone nor stale applied it
    (successfully or not).
    """
    states = []
    for worker in workers:
        result = worker["commands"].get(command["id"])
        row: dict[str, Any] = {"host": worker["host"], "pid": worker["pid"]}
        if isinstance(result, dict):
            row["state"] = "applied" if result.get("ok") else "failed"
            row["error"] = result.get("error")
            row["applied_at"] = result.get("applied_at")
        else:
            row["state"] = "gone" if worker["gone"] else "stale" if worker["stale"] else "pending"
        states.append(row)
    count = {s: sum(1 for r in states if r["state"] == s) for s in ("applied", "failed", "pending")}
    return {"id": command["id"], "action": command["action"], "type": command["type"],
            "issued_at": command["issued_at"], "issued_by": command.get("issued_by"), "workers": states, **count,
            "complete": count["pending"] == 0 and any(r["state"] in ("applied", "failed") for r in states)}
