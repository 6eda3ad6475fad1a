"""Requests per second of a trivial endpoint, bare versus behind our middleware
(monitor running, watch-all on), same server, same run; and the /debug/memory
JSON render time with 200 monitored types.

Two uvicorn servers (one worker each, pinned to core 0) on 127.0.0.1, wrk
(pinned to core 1) against each in alternating rounds so drift hits both alike;
the loss is 1 - median(tracked) / median(bare). Throughput on this shared VM
swings by +-10% between rounds, so the server's CPU time per request (from
/proc) is reported too: it is the steadier measure of what the middleware adds.

    python bench/bench_web.py [--rounds 5] [--seconds 5]
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(mode: str, interval: float = 1.0) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, BENCH_MODE=mode, BENCH_INTERVAL=str(interval), PYTHONPATH=ROOT)
    # Server on core 0, wrk on core 1: the two would otherwise fight for both cores.
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "uvicorn", "bench.web_app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{mode} server did not start")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")    # utime + stime


def wrk(port: int, seconds: int, pid: int | None = None) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    used = cpu_seconds(pid) - before if pid else 0.0
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), used / requests * 1e6


def json_render_ms(n_types: int = 200) -> float:
    sys.path.insert(0, ROOT)
    import logging

    logging.getLogger("memtracker_web").setLevel(logging.ERROR)   # the leak reports this causes
    from memtracker_web.endpoint import Endpoint, EndpointOptions, Request
    from memtracker_web.monitor import MemoryMonitor

    monitor = MemoryMonitor(threshold=10, increases=3)
    classes = [type(f"Model{i:03d}", (), {"__module__": "bench_models"}) for i in range(n_types)]
    keep = []
    for cls in classes:
        monitor.start_monitoring(cls)
    for round_ in range(120):                   # a full history per type
        for cls in classes[: 1 + round_ % 50]:
            keep.append(cls())
        monitor.sample()
    endpoint = Endpoint(EndpointOptions(monitor=monitor, allow=["127.0.0.1"]))
    request = Request(method="GET", path="/debug/memory", query_string="format=json",
                      headers={"accept": "application/json"}, client="127.0.0.1")
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        response = endpoint.handle(request)
        times.append(time.perf_counter() - t0)
        assert response.status == 200, response.body[:200]
    monitor.close()
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    bare, bare_port = start("bare")
    tracked, tracked_port = start("tracked")
    try:
        wrk(bare_port, 2)
        wrk(tracked_port, 2)                    # warm up both
        results = {"bare": [], "tracked": []}
        cpu = {"bare": [], "tracked": []}
        for _ in range(args.rounds):
            for name, proc, port in (("bare", bare, bare_port), ("tracked", tracked, tracked_port)):
                rps, us = wrk(port, args.seconds, proc.pid)
                results[name].append(rps)
                cpu[name].append(us)
        with urllib.request.urlopen(f"http://127.0.0.1:{tracked_port}/debug/memory?format=json") as r:
            mode = __import__("json").loads(r.read())["mode"]
    finally:
        for proc in (bare, tracked):
            proc.terminate()
            proc.wait(10)
    b, t = statistics.median(results["bare"]), statistics.median(results["tracked"])
    print(f"{sys.implementation.name} {sys.version.split()[0]}, engine mode {mode}, "
          f"{args.rounds} alternating wrk rounds of {args.seconds}s (-t1 -c32)")
    print(f"bare app:             {b:10.0f} req/s  (rounds: {', '.join(f'{x:.0f}' for x in results['bare'])})")
    print(f"middleware+watch-all: {t:10.0f} req/s  (rounds: {', '.join(f'{x:.0f}' for x in results['tracked'])})")
    print(f"loss: {100 * (1 - t / b):.1f}%")
    cb, ct = statistics.median(cpu["bare"]), statistics.median(cpu["tracked"])
    print(f"server CPU per request: bare {cb:.0f} us, middleware+watch-all {ct:.0f} us: {ct / cb:.3f}x")
    print(f"/debug/memory JSON with 200 types (120 history points each): {json_render_ms():.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
