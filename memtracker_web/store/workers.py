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

Every file is read as written by someone else: a worker's snapshot is shown
and its commands are applied, so anything that can write there steers what
this process shows and monitors. The directory is therefore created 0700, its
files written 0600, and a directory owned by another user or writable by its
group or others is refused (:func:`check_shared_dir`). What is read is still
checked: only regular files (no FIFO to block on, no symlink to follow), of
bounded size and nesting, with finite numbers, and only the keys this module
uses, each of the type it expects; anything else is skipped with a note.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import secrets
import socket
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.naming import MAX_NAME_LENGTH, resolve_type
from ..options import OPTIONS
from ..render import jsontext
from ..render.leaks import report_count

log = logging.getLogger(__name__)

SHARED_DIR_ENV, PROMETHEUS_ENV = OPTIONS["shared_dir"].env  # MEMTRACKER_SHARED_DIR, PROMETHEUS_MULTIPROC_DIR
FORMAT = 1
WORKER_PREFIX = "memtracker-worker-"
COMMAND_PREFIX = "memtracker-command-"
TMP_PREFIX = ".memtracker-tmp-"
STALE_INTERVALS = 3
STALE_GRACE = 1.0  # seconds: a sample and a write can be late under load
KEEP_GONE = 60.0
FORGET_AFTER = 3600.0
TMP_MAX_AGE = 60.0  # a temp file this old belongs to a writer that died mid-write
COMMAND_TTL = 300.0
MAX_COMMANDS = 64
MAX_REMEMBERED = 256
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 32  # a snapshot nests 8 deep; far less than what json or repr can recurse through
MAX_NUMBER = 2**63  # counts, times and intervals: a sum of these is still a short JSON number
MAX_PID = 2**31 - 1  # os.kill takes a C pid_t
MAX_HOST = 255
DIR_MODE = 0o700
FILE_MODE = 0o600
COMMAND_ID = re.compile(r"^[0-9a-f]{16}$")
ACTIONS = ("track", "untrack")


def shared_dir_from_env() -> str | None:
    """The directory the option ``shared_dir`` takes from the environment, or None."""
    return OPTIONS["shared_dir"].from_env()


def hostname() -> str:
    return socket.gethostname() or "localhost"


class UnsafeSharedDir(PermissionError):
    """The shared directory may be written by someone else: it is not used."""


def shared_dir_problem(directory: str | os.PathLike[str]) -> str | None:
    """Why ``directory`` must not be used, or None (also when it does not exist yet).

    Whoever can write there decides what this process shows and which types it
    monitors, so only a directory of this user that its group and others cannot
    write is used. A symlink to one is fine: what counts is where it leads.
    """
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.__class__.__name__}: {exc.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if not hasattr(os, "geteuid"):  # Windows: no owner or mode bits to check
        return None
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this process's uid {os.geteuid()}"
    if st.st_mode & 0o022:
        return f"is writable by its group or by others (mode {stat.S_IMODE(st.st_mode):#o})"
    return None


def check_shared_dir(directory: str | os.PathLike[str], *, create: bool = False) -> Path:
    """``directory`` if it is safe to use (made 0700 with ``create``), else UnsafeSharedDir."""
    path = Path(directory)
    if create:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    problem = shared_dir_problem(path)
    if problem is not None:
        raise UnsafeSharedDir(
            f"memtracker: the shared directory {os.fspath(path)!r} {problem}, so it is not used; set "
            f"{SHARED_DIR_ENV} (or the option shared_dir=) to a directory only this user can write, "
            "or run chmod go-w on it"
        )
    return path


def _refusal_note(directory: str | os.PathLike[str]) -> dict[str, str] | None:
    """A worker note instead of reading a directory someone else may write."""
    problem = shared_dir_problem(directory)
    return None if problem is None else {"file": os.fspath(directory), "error": f"refused: the directory {problem}"}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", text)[:100]


def worker_path(directory: str | os.PathLike[str], host: str, pid: int) -> Path:
    return Path(directory) / f"{WORKER_PREFIX}{_safe(host)}-{int(pid)}.json"


def command_path(directory: str | os.PathLike[str], command_id: str) -> Path:
    if not COMMAND_ID.match(command_id):
        raise ValueError(f"not a command id: {command_id!r}")
    return Path(directory) / f"{COMMAND_PREFIX}{command_id}.json"


def write_atomic(path: Path, data: Any, *, fsync: bool = False) -> None:
    """Write JSON so that readers see the old file or the new one, never a mix.

    The file is 0600 (snapshots name the app's types and code paths; commands
    steer every worker); the temp file is new (O_EXCL, O_NOFOLLOW), so nothing
    planted under its name is written through.
    """
    body = jsontext.dumps(data).encode()
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        with os.fdopen(os.open(tmp, flags, FILE_MODE), "wb") as out:
            out.write(body)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ValueError says why not (kind, size, syntax, nesting, shape)."""
    return _load(path)[0]


def _load(path: Path) -> tuple[dict[str, Any], os.stat_result]:
    """:func:`read_json`, with the file's stat (commands age from their mtime too)."""
    body, st = _read_regular(path)
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: "[" * 100000 nests deeper than the parser can go
        raise ValueError(f"not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if _too_deep(body):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data, st


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


def _read_regular(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file, at most MAX_FILE_BYTES, and its stat.

    Opened without following a symlink (it could lead anywhere) and without
    blocking (a FIFO would block the open forever), then checked to be a regular
    file: a FIFO, directory or device has no snapshot to give, and reading one
    could block or never end.
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):  # EMLINK: FreeBSD's O_NOFOLLOW
            raise ValueError("a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # checked first: fdopen refuses a directory itself
            raise ValueError(f"{_KINDS.get(stat.S_IFMT(st.st_mode), 'something')}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        # a read sized by the limit would allocate the whole limit every time
        body = f.read(min(st.st_size, MAX_FILE_BYTES) + 1)
    if len(body) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return body, st


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; they would also break the endpoint's strict dumps
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but parses to inf, which the endpoint's strict dumps refuses
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # in valid JSON they pair up anyway: only the depth counts


def _too_deep(body: bytes) -> bool:
    """Whether valid JSON ``body`` nests deeper than MAX_DEPTH.

    Parsing succeeds far deeper than what can be shown: data a few hundred
    levels deep makes repr, the HTML page or a dumps called further down the
    stack raise RecursionError. With the strings gone and only the brackets
    left, each round removes the innermost pairs; what is left after MAX_DEPTH
    rounds nests deeper. (Bytes operations: a walk of the parsed data would
    cost as much as the parse.)
    """
    brackets = _STRING.sub(b"", body).translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def _real(value: Any) -> bool:
    """A finite, bounded number (not a bool): one that float() and arithmetic take."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_NUMBER <= value <= MAX_NUMBER


def _pid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_PID


def _host(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_HOST


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("memtracker: could not remove %s: %s", path, exc)


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid from its old owner."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
        return text.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, started: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    if started is not None:
        now = process_start(pid)
        return now is None or now == started
    return True


# ---------------------------------------------------------------------------
# commands


def new_command(
    action: str, type_name: str, *, analysis: bool = False, threshold: int | None = None, now: float | None = None
) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    command: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "action": action,
        "type": type_name,
        "issued_at": time.time() if now is None else now,
        "issued_by": {"host": hostname(), "pid": os.getpid()},
    }
    if action == "track":
        command["analysis"] = bool(analysis)
        command["threshold"] = threshold
    return command


def write_command(directory: str | os.PathLike[str], command: dict[str, Any]) -> Path:
    """Put ``command`` where every worker's next sample finds it (UnsafeSharedDir if
    ``directory`` may be written by someone else)."""
    directory = check_shared_dir(directory, create=True)
    # Keep the directory bounded: the oldest commands make room for this one.
    existing, _ = list_commands(directory, now=command["issued_at"])
    for old in existing[: max(0, len(existing) - MAX_COMMANDS + 1)]:
        _unlink(command_path(directory, old["id"]))
    path = command_path(directory, command["id"])
    write_atomic(path, command)
    return path


def _valid_command(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a command as POST /track and /untrack would have made it.

    The same checks as the endpoint's (a file is no more trusted than a request):
    a known action, a type name of bounded length, ``analysis`` a bool,
    ``threshold`` a positive int; plus a finite ``issued_at`` and, if there, an
    ``issued_by`` with a host and pid (shown in the command's status).
    """
    threshold, issued_by = data.get("threshold"), data.get("issued_by")
    return (
        isinstance(data.get("id"), str)
        and bool(COMMAND_ID.match(data["id"]))
        and data.get("action") in ACTIONS
        and isinstance(data.get("type"), str)
        and 0 < len(data["type"]) <= MAX_NAME_LENGTH
        and isinstance(data.get("analysis", False), bool)
        and (threshold is None or (isinstance(threshold, int) and not isinstance(threshold, bool) and threshold >= 1))
        and _real(data.get("issued_at"))
        and (
            issued_by is None
            or (isinstance(issued_by, dict) and _host(issued_by.get("host")) and _pid(issued_by.get("pid")))
        )
    )


def _command_age(data: dict[str, Any], st: os.stat_result, now: float) -> float:
    """Seconds since the command was issued, by the earliest of its ``issued_at``, its
    file's mtime and now: one "issued" in the future still expires TTL after it
    was written, instead of living (and being applied by every new worker) forever."""
    return now - min(data["issued_at"], st.st_mtime, now)


def list_commands(
    directory: str | os.PathLike[str], *, now: float | None = None, ttl: float = COMMAND_TTL
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Unexpired commands, oldest first, and notes on the files skipped; removes expired ones.

    None from a directory someone else may write (a note says so).
    """
    now = time.time() if now is None else now
    refused = _refusal_note(directory)
    if refused is not None:
        return [], [refused]
    commands, notes = [], []
    for path in sorted(Path(directory).glob(f"{COMMAND_PREFIX}*.json")):
        try:
            data, st = _load(path)
        except FileNotFoundError:
            continue
        except Exception as exc:  # whatever is wrong with one file, the others still apply
            notes.append({"file": path.name, "error": _why(exc)})
            continue
        if not _valid_command(data) or path.name != command_path(directory, data["id"]).name:
            notes.append({"file": path.name, "error": "not a memtracker command"})
            continue
        if _command_age(data, st, now) > ttl:
            _unlink(path)
            continue
        commands.append(data)
    commands.sort(key=lambda c: (c["issued_at"], c["id"]))
    return commands, notes


def _why(exc: Exception) -> str:
    """A note's reason: read_json's own words, else the exception's class and message."""
    if isinstance(exc, (OSError, ValueError)):
        return str(exc)
    return f"{exc.__class__.__name__}: {str(exc)[:80]}"


def read_command(directory: str | os.PathLike[str], command_id: str) -> dict[str, Any] | None:
    if shared_dir_problem(directory) is not None:
        return None
    try:
        data = read_json(command_path(directory, command_id))
    except Exception:  # unreadable in any way: no such command
        return None
    return data if _valid_command(data) and data["id"] == command_id else None


def apply_command(monitor: Any, command: dict[str, Any]) -> dict[str, Any]:
    """Apply one command to ``monitor``; the result is what the worker publishes."""
    result: dict[str, Any] = {"action": command["action"], "type": command["type"], "applied_at": time.time()}
    try:
        cls = resolve_type(command["type"], import_modules=False)  # commands come from requests
        if command["action"] == "track":
            threshold = command.get("threshold")
            threshold = threshold if isinstance(threshold, int) and not isinstance(threshold, bool) else None
            monitor.start_monitoring(cls, threshold=threshold, analysis=command.get("analysis") is True)
        else:
            result["was_tracking"] = bool(monitor.stop_monitoring(cls))
        result.update(ok=True, error=None)
    except Exception as exc:  # e.g. the type's module is not imported in this worker
        result.update(ok=False, error=f"{exc.__class__.__name__}: {exc}"[:300])
    return result


# ---------------------------------------------------------------------------
# the writing side: one per worker process


class WorkerPublisher:
    """Publishes ``monitor.snapshot()`` to the shared directory and applies commands.

    :meth:`attach` adds it to ``monitor.sample_hooks``, so both happen after
    every sample. Fork-safe: the pid and lock are checked at each publish.
    A directory someone else may write is refused: UnsafeSharedDir from the
    constructor, and at each publish (logged, not raised, by the sample hook).
    """

    def __init__(
        self, monitor: Any, directory: str | os.PathLike[str], *, fsync: bool = False, command_ttl: float = COMMAND_TTL
    ) -> None:
        self.monitor = monitor
        self.directory = check_shared_dir(directory)  # made (0700) at the first publish if missing
        self.fsync = fsync
        self.command_ttl = float(command_ttl)
        self.host = hostname()
        self._applied: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._started = process_start(self._pid)
        self.retired = False  # forgotten: it publishes no more
        self._refused: str | None = None  # the last refusal logged by the sample hook

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
        """Apply new commands, then write this worker's snapshot file.

        Checks the directory each time: it may have been replaced or opened up
        since (UnsafeSharedDir).
        """
        self._check_fork()
        if self.retired:
            return self.path
        check_shared_dir(self.directory, create=True)
        self.apply_commands()
        snapshot = self.monitor.snapshot()
        with self._lock:
            cutoff = time.time() - self.command_ttl
            commands = {cid: r for cid, r in self._applied.items() if r.get("applied_at", 0) >= cutoff}
            path = self.path
            write_atomic(
                path,
                {
                    "format": FORMAT,
                    "host": self.host,
                    "pid": os.getpid(),
                    "process_start": self._started,
                    "written_at": time.time(),
                    "snapshot": snapshot,
                    "commands": commands,
                },
                fsync=self.fsync,
            )
        if self.retired:  # retired while it wrote (forget_publisher, from a fork hook)
            _unlink(path)
        return path

    def _hook(self, _monitor: Any) -> None:
        try:
            self.publish()
        except UnsafeSharedDir as exc:
            # Said once, not at every sample (the monitor would log a traceback each
            # time); the hook goes on checking, so fixing the directory resumes it.
            if str(exc) != self._refused:
                log.error("%s", exc)
                self._refused = str(exc)
            return
        self._refused = None

    def attach(self) -> bool:
        """Publish after every sample; False if the monitor has no ``sample_hooks``."""
        hooks = getattr(self.monitor, "sample_hooks", None)
        if not isinstance(hooks, list):
            log.warning("memtracker: %r has no sample_hooks; its snapshot is published only on demand", self.monitor)
            return False
        if self._hook not in hooks:
            hooks.append(self._hook)
        return True

    def detach(self) -> None:
        try:
            self.monitor.sample_hooks.remove(self._hook)
        except (ValueError, AttributeError):  # not attached, or a monitor without sample_hooks
            pass


_PUBLISHERS: dict[str, WorkerPublisher] = {}
_PUBLISHERS_LOCK = threading.Lock()


def publisher_for(monitor: Any, directory: str | os.PathLike[str]) -> WorkerPublisher | None:
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
            publisher = _new_publisher(monitor, key)
            if publisher is None:
                return None
            _PUBLISHERS[key] = publisher
            publisher.attach()
        elif publisher.monitor is not monitor:
            log.warning("memtracker: another monitor of this process already publishes to %s", key)
            return None
    return publisher


_REFUSED_LOGGED: set[str] = set()


def _new_publisher(monitor: Any, key: str) -> WorkerPublisher | None:
    """A publisher for ``key``, or None (logged once per reason) for an unsafe directory.

    The endpoint asks for its publisher as the app loads, at its first request
    (any request: raising there would fail the app's own) and for every workers
    view, so the refusal is logged, not raised; the view says it too (a note).
    """
    try:
        return WorkerPublisher(monitor, key)
    except UnsafeSharedDir as exc:
        if str(exc) not in _REFUSED_LOGGED:
            _REFUSED_LOGGED.add(str(exc))
            log.error("%s", exc)
        return None


def forget_publisher(monitor: Any, directory: str | os.PathLike[str], *, blocking: bool = True) -> None:
    """Detach ``monitor``'s publisher for ``directory`` and remove this process's
    file there (a server's master after forking its workers). ``blocking=False``
    (in a fork hook): if another thread holds the registry's lock, do nothing."""
    key = os.path.abspath(os.fspath(directory))
    if not _PUBLISHERS_LOCK.acquire(blocking=blocking):
        return
    try:
        publisher = _PUBLISHERS.get(key)
        if publisher is None or publisher.monitor is not monitor:
            return
        del _PUBLISHERS[key]
    finally:
        _PUBLISHERS_LOCK.release()
    publisher.retired = True  # first: a publish under way in another thread removes its file
    publisher.detach()
    _unlink(publisher.path)


def forget_publishers() -> None:
    """Detach every publisher of this process (tests, reloads)."""
    with _PUBLISHERS_LOCK:
        publishers = list(_PUBLISHERS.values())
        _PUBLISHERS.clear()
    for publisher in publishers:
        publisher.detach()


def clear_host_files(directory: str | os.PathLike[str]) -> list[str]:
    """Remove this host's worker files (a new server run: old pids mean nothing)."""
    problem = shared_dir_problem(directory)
    if problem is not None:
        log.error("memtracker: not clearing the shared directory %s: it %s", os.fspath(directory), problem)
        return []
    removed = []
    for path in Path(directory).glob(f"{WORKER_PREFIX}{_safe(hostname())}-*.json"):
        _unlink(path)
        removed.append(path.name)
    return removed


# ---------------------------------------------------------------------------
# the reading side


def _worker_record(data: dict[str, Any]) -> str | None:
    """None if ``data`` is a worker file we can show, else why not.

    Checks what read_workers uses as it is (the pid goes to os.kill, times into
    arithmetic); the snapshot's other values are picked by :func:`worker_row`.
    """
    if data.get("format") != FORMAT:
        return f"unknown format {repr(data.get('format'))[:40]}"
    pid, host, snapshot = data.get("pid"), data.get("host"), data.get("snapshot")
    if not _pid(pid) or not _host(host):
        return "no valid host and pid"
    if not _real(data.get("written_at")):
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
    when = when if _real(when) else data["written_at"]
    interval = snapshot.get("interval")
    interval = float(interval) if _real(interval) and interval > 0 else 60.0
    age = max(0.0, now - when)
    return age, age > STALE_INTERVALS * interval + STALE_GRACE


def read_workers(
    directory: str | os.PathLike[str],
    *,
    now: float | None = None,
    keep_gone: float = KEEP_GONE,
    forget_after: float = FORGET_AFTER,
    cleanup: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every worker file as ``{host, pid, written_at, snapshot, commands, age, stale, gone, file}``,
    sorted by host and pid, plus notes on the files that were skipped.

    With ``cleanup``, removes files of workers gone for ``keep_gone`` seconds,
    of other hosts after ``forget_after`` seconds, and abandoned temp files.
    A directory someone else may write is not read (one note says why).
    """
    now = time.time() if now is None else now
    directory = Path(directory)
    refused = _refusal_note(directory)
    if refused is not None:
        return [], [refused]
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
        data, problem = _read_worker(path)
        if problem is not None:
            notes.append({"file": entry.name, "error": f"skipped: {problem}"})
            if cleanup and _mtime_age(path, now) > forget_after:
                _unlink(path)
            continue
        if data is None:  # removed between listing and reading
            continue
        age, stale = _freshness(data, now)
        local = data["host"] == here
        started = data.get("process_start") if isinstance(data.get("process_start"), str) else None
        gone = local and not pid_alive(data["pid"], started)
        written_age = now - data["written_at"]
        if cleanup and ((gone and written_age > keep_gone) or (not local and written_age > forget_after)):
            _unlink(path)
            continue
        workers.append(
            {
                "host": data["host"],
                "pid": data["pid"],
                "written_at": data["written_at"],
                "snapshot": data["snapshot"],
                "commands": data.get("commands") or {},
                "age": age,
                "stale": stale,
                "gone": gone,
                "file": entry.name,
            }
        )
    workers.sort(key=lambda w: (w["host"], w["pid"]))
    return workers, notes


def _read_worker(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data, None) for a worker file we can show, (None, why not), or (None, None) if gone."""
    try:
        data = read_json(path)
        problem = _worker_record(data)
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # whatever one file holds, the view shows the others
        return None, _why(exc)
    return (data, None) if problem is None else (None, problem)


def _mtime_age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _number(value: Any) -> int | None:
    # bounded: summed over workers, a 4300-digit count would be an int json cannot print
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_NUMBER else None


def _real_or_none(value: Any) -> Any:
    return value if _real(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _type_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": entry["type"],
        "live": _number(entry.get("live")),
        "allocations": _number(entry.get("allocations")),
        "frees": _number(entry.get("frees")),
        "increases": _number(entry.get("increases")),
        "analysing": entry.get("analysing") is True,
        "source": _text(entry.get("source")),
        "live_bytes": _number(entry.get("live_bytes")),
    }


def worker_row(worker: dict[str, Any], *, this: bool = False) -> dict[str, Any]:
    """The JSON row of one worker: status and its types without history or paths.

    Every value is picked by type (another process wrote it): a wrong one is
    shown as null, so the totals, the page and the JSON can take the row as is.
    """
    snapshot = worker["snapshot"]
    types = [_type_row(t) for t in snapshot.get("types") or []]
    process = snapshot.get("process")
    resident = _number(process.get("resident_bytes")) if isinstance(process, dict) else None
    return {
        "pid": worker["pid"],
        "host": worker["host"],
        "self": this,
        "mode": _text(snapshot.get("mode")),
        "sampled_at": _real_or_none(snapshot.get("sampled_at")),
        "written_at": worker["written_at"],
        "age_seconds": round(worker["age"], 3),
        "stale": worker["stale"],
        "gone": worker["gone"],
        "interval": _real_or_none(snapshot.get("interval")),
        "samples": _number(snapshot.get("samples")),
        "resident_bytes": resident,
        "types_count": len(types),
        # (a kept report stands for all of its type's: the same count from workers of any version)
        "leaks_count": sum(report_count(leak) for leak in snapshot.get("leaks") or [] if isinstance(leak, dict)),
        "types": types,
    }


def totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per type over the workers that are not gone: live summed, workers reporting,
    allocations, frees and live_bytes summed over the workers that count them (null if none)."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["gone"]:
            continue
        for t in row["types"]:
            total = merged.setdefault(
                t["type"],
                {"type": t["type"], "live": 0, "workers": 0, "allocations": None, "frees": None, "live_bytes": None},
            )
            total["live"] += t["live"] or 0
            total["workers"] += 1
            for key in ("allocations", "frees", "live_bytes"):
                if t[key] is not None:
                    total[key] = (total[key] or 0) + t[key]
    return sorted(merged.values(), key=lambda t: (-t["live"], t["type"]))


def local_worker(snapshot: dict[str, Any], publisher: WorkerPublisher | None, now: float) -> dict[str, Any]:
    """The answering worker, from its fresh in-memory snapshot."""
    data = {"snapshot": snapshot, "written_at": now}
    age, stale = _freshness(data, now)
    return {
        "host": hostname(),
        "pid": os.getpid(),
        "written_at": now,
        "snapshot": snapshot,
        "commands": publisher.applied() if publisher is not None else {},
        "age": age,
        "stale": stale,
        "gone": False,
        "file": None,
    }


def gather(
    directory: str | os.PathLike[str],
    local_snapshot: dict[str, Any] | None = None,
    publisher: WorkerPublisher | None = None,
    *,
    now: float | None = None,
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


def find_worker(workers: list[dict[str, Any]], pid: int, host: str | None = None) -> list[dict[str, Any]]:
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
        if isinstance(result, dict):  # from the worker's file: picked by type, like worker_row
            row["state"] = "applied" if result.get("ok") is True else "failed"
            row["error"] = _text(result.get("error"))
            row["applied_at"] = _real_or_none(result.get("applied_at"))
        else:
            row["state"] = "gone" if worker["gone"] else "stale" if worker["stale"] else "pending"
        states.append(row)
    count = {s: sum(1 for r in states if r["state"] == s) for s in ("applied", "failed", "pending")}
    return {
        "id": command["id"],
        "action": command["action"],
        "type": command["type"],
        "issued_at": command["issued_at"],
        "issued_by": command.get("issued_by"),
        "workers": states,
        **count,
        "complete": count["pending"] == 0 and any(r["state"] in ("applied", "failed") for r in states),
    }
