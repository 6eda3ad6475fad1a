"""Every worker in the workers view from its start, fork-safe.

The middleware starts its monitor (thread and worker file) as the app loads.
A process that forks before it served (a server's master that loaded the
app: gunicorn --preload) removes its worker file: it is not a worker; one that
forks after it served (a worker starting helpers) keeps it, and its children
start nothing by themselves. Real gunicorn servers show all their workers
before any request: without our config when each worker loads the app, with
it (post_worker_init) under --preload. A fork while the monitor is being
built (an import of a tracked module that forks) does not deadlock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memtracker_web.store import workers
from support import children_of, requires_engine, stop_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not Path("/proc/self/stat").exists(), reason="needs os.fork and /proc"
)


def pids_published(shared: Path) -> set[int]:
    return {w["pid"] for w in workers.read_workers(shared)[0] if not w.get("gone")} if shared.exists() else set()


def run_script(code: str, shared: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "MEMTRACKER_TOKEN")}
    env.update({"PYTHONPATH": str(ROOT), "MEMTRACKER_SHARED_DIR": str(shared)})
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


PRELUDE = """
    import os, sys, time
    from memtracker_web.store import workers
    from memtracker_web.wsgi import MemoryTrackerMiddleware

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def published():
        return sorted(w["pid"] for w in workers.read_workers(os.environ["MEMTRACKER_SHARED_DIR"])[0]
                      if not w.get("gone"))

    def wait_for(condition, seconds=10):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False

    middleware = MemoryTrackerMiddleware(app, interval=0.1)
    monitor = middleware.endpoint.monitor
    assert wait_for(lambda: published() == [os.getpid()]), published()   # in the view at once
"""


def test_a_parent_that_forks_before_serving_is_not_a_worker(tmp_path: Path) -> None:
    out = run_script(
        PRELUDE
        + """
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:                    # a worker of a preloading server: it publishes once it serves
            time.sleep(0.5)
            unpublished = os.getpid() not in published()
            from werkzeug.test import Client
            Client(middleware).get("/")
            ok = unpublished and wait_for(lambda: os.getpid() in published())
            time.sleep(0.3)
            os._exit(0 if ok else 3)
        children.append(pid)
    print("parent published", os.getpid() in published())
    print("exits", [os.waitpid(pid, 0)[1] for pid in children])
    """,
        tmp_path / "shared",
    )
    assert out.split("\n")[:2] == ["parent published False", "exits [0, 0]"]


def test_a_fork_while_the_monitor_is_being_built_does_not_deadlock(tmp_path: Path) -> None:
    # A module named in `track` is imported while the endpoint builds its monitor;
    # if that import forks (subprocess with preexec_fn runs the fork hooks), the
    # hooks must not wait for a lock the forking thread holds.
    (tmp_path / "forky.py").write_text(
        textwrap.dedent("""
        import subprocess, sys
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None, check=True)

        class Thing:
            pass
    """)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "MEMTRACKER_TOKEN")}
    env.update(
        {"PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "MEMTRACKER_SHARED_DIR": str(tmp_path / "shared")}
    )
    code = textwrap.dedent("""
        from memtracker_web.wsgi import MemoryTrackerMiddleware
        middleware = MemoryTrackerMiddleware(lambda e, s: [], track=["forky.Thing"], interval=0.2)
        print("built", middleware.endpoint.monitor.running)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "built True\n"), proc.stderr[-2000:]


def test_a_fork_while_another_thread_holds_a_default_lock_does_not_deadlock_the_child(tmp_path: Path) -> None:
    out = run_script(
        """
    import os, threading, time
    from memtracker_web.core import tracker
    from memtracker_web.monitor import monitor

    held, done = threading.Event(), threading.Event()

    def hold():
        with monitor._default_lock, tracker._default_lock:
            held.set()
            done.wait()

    threading.Thread(target=hold).start()
    held.wait()
    pid = os.fork()
    if pid == 0:        # the holder does not exist here: its holds must not either
        ok = monitor.get_default_monitor() is monitor.get_default_monitor() and tracker.default_tracker() is not None
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        status = os.waitpid(pid, 0)[1]
    done.set()
    exited = os.WIFEXITED(status)
    print("child", "exited" if exited else "killed", os.WEXITSTATUS(status) if exited else "")
    """,
        tmp_path / "shared",
    )
    assert out == "child exited 0\n"


def test_a_worker_that_forks_after_serving_keeps_its_monitor_and_its_child_starts_none(tmp_path: Path) -> None:
    out = run_script(
        PRELUDE
        + """
    from werkzeug.test import Client
    assert Client(middleware).get("/").status_code == 200      # it served: a worker
    pid = os.fork()
    if pid == 0:                        # a helper (multiprocessing, say): no monitor of its own
        time.sleep(1.0)
        os._exit(0 if not monitor.running and os.getpid() not in published() else 3)
    print("parent running", monitor.running)
    time.sleep(0.3)
    print("published", published() == [os.getpid()])
    print("child exit", os.waitpid(pid, 0)[1])
    """,
        tmp_path / "shared",
    )
    assert out.split("\n")[:3] == ["parent running True", "published True", "child exit 0"]


@pytest.mark.parametrize("preload", [False, True], ids=["per-worker-load", "preload-with-our-config"])
def test_gunicorn_workers_are_in_the_view_before_any_request(tmp_path: Path, preload: bool) -> None:
    shared = tmp_path / "shared"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MEMTRACKER_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "PYTHONWARNINGS")
    }
    env.update({"PYTHONPATH": str(ROOT), "MEMTRACKER_INTERVAL": "0.2", "MEMTRACKER_SHARED_DIR": str(shared)})
    log = open(tmp_path / "gunicorn.log", "wb")
    command = (
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "3",
            "-b",
            "127.0.0.1:0",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        + (["--preload", "-c", str(ROOT / "examples" / "gunicorn.conf.py")] if preload else [])
        + ["examples.flask_app:app"]
    )
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        seen: tuple = ()
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            children = children_of(proc.pid)
            seen = (children, pids_published(shared))
            if len(children) == 3 and seen[1] == children:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"workers not all published: {seen}\n{(tmp_path / 'gunicorn.log').read_text()[-3000:]}")
        assert proc.pid not in pids_published(shared)  # the master is not a worker
    finally:
        stop_process(proc)
        log.close()


_FORK_WHILE_HELD = """
import os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # (forking a process with threads, on purpose)
from memtracker_web import Tracker
class Obj:
    pass

tracker = Tracker(depth=2)
seen = []
tracker.track_with_analysis(Obj, callback=lambda cls, event, data: seen.append(event))
tracker.stats(Obj)  # (a view of its tree kept)
held, release = threading.Event(), threading.Event()

def hold():  # a thread in the middle of a read, and of a flush, when the fork comes
    with tracker._lock:
        tracker._views[id(Obj)].parents.append(0)  # (a node half added)
        tracker.capture._flush_lock.acquire()
        tracker.capture._flushing = threading.get_ident()
        held.set()
        release.wait()
        tracker.capture._flushing = None
        tracker.capture._flush_lock.release()

holder = threading.Thread(target=hold)
holder.start()
held.wait()
keep = [Obj() for _ in range(3)]
pid = os.fork()
if pid == 0:
    finished = []
    def read():
        stats = tracker.stats(Obj)  # (takes the tracker's lock, flushes, reads the tree afresh)
        finished.append(stats["live_count"])
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    os.write(1, f"child {finished} {seen.count('new')}\\n".encode())
    os._exit(0 if finished else 3)
release.set()
holder.join()
print("parent exit", os.waitpid(pid, 0)[1])
"""


@requires_engine
def test_a_child_forked_while_another_thread_reads_or_flushes_does_not_wait_for_it(tmp_path: Path) -> None:
    out = run_script(_FORK_WHILE_HELD, tmp_path / "shared")
    # the child read at once, and delivered the events the gone thread's flush held back
    assert out.strip().split("\n") == ["child [3] 3", "parent exit 0"], out


_FORK_FROM_THE_HOLDER = """
import os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)
from memtracker_web import Tracker
from memtracker_web.monitor import MemoryMonitor

class Obj:
    pass

monitor = MemoryMonitor(interval=3600.0)
tracker = monitor.tracker
forked = []
# (the engine's pending call may run the flush: what it raises is only "ignored", so say it)
sys.unraisablehook = lambda u: os.write(1, f"unraisable {u.exc_type.__name__}: {u.exc_value}\\n".encode())

def callback(cls, event, data):  # a callback that forks (multiprocessing, a subprocess)
    if event == "new" and not forked:
        with tracker._lock:  # (inside a read of its own as well)
            pid = os.fork()
            if pid == 0:  # the child reads the monitor there and then (its fork check runs)
                os.write(1, f"child forked, {len(monitor.snapshot()['types'])} types\\n".encode())
        forked.append(pid)

tracker.track_with_analysis(Obj, callback=callback)
keep = [Obj() for _ in range(3)]
tracker.capture.flush()  # the callback forks inside this flush, and the child goes on in it
keep.append(Obj())
stats = tracker.stats(Obj)
snapshot = monitor.snapshot()
line = f"{'child' if forked[0] == 0 else 'parent'} reading {tracker._reading} live {stats['live_count']}"
os.write(1, (line + "\\n").encode())
if forked[0] == 0:
    os._exit(0)
print("parent exit", os.waitpid(forked[0], 0)[1])
"""


@requires_engine
def test_a_fork_from_the_thread_that_holds_the_locks_keeps_them_its_own(tmp_path: Path) -> None:
    out = run_script(_FORK_FROM_THE_HOLDER, tmp_path / "shared")
    lines = out.strip().split("\n")
    # the child finished the flush and the read it forked in, and reads and flushes after them
    assert sorted(lines) == sorted(
        ["child forked, 0 types", "child reading 0 live 4", "parent reading 0 live 4", "parent exit 0"]
    ), out
