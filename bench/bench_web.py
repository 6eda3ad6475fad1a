"""Requests per second of a trivial endpoint, bare versus behind our middleware
(monitor running, watch-all on), same server, same run; and the /debug/memory
JSON render time with 200 monitored types.

Two uvicorn servers (one worker each, pinned to core 0) on 127.0.0.1, wrk
(pinned to core 1) against each in alternating rounds so drift hits both alike;
the loss is 1 - median(tracked) / median(bare). Throughput on this shared VM
swings by +-10% between rounds, so the server's CPU time per request (from
/proc) is reported too: it is the steadier measure of what the middleware adds.

    python bench/bench_web.py [--rounds 5] [--seconds 5] [--servers bare middleware watch-all watch-all-exact watch-all-1s]
"""
from __future__ import annotations

import argparse
import json
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


def start(mode: str, interval: float = 60.0, sample: int = 64) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, BENCH_MODE=mode, BENCH_INTERVAL=str(interval), BENCH_WATCH_SAMPLE=str(sample),
               PYTHONPATH=ROOT)
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


SERVERS = {
    "bare": ("bare", 60.0, 64, "bare Starlette app"),
    "middleware": ("middleware", 60.0, 64, "+ middleware, monitor (2 tracked types, 60 s interval)"),
    "watch-all": ("tracked", 60.0, 64, "+ watch-all sampled 1/64 (the default), 60 s interval"),
    "watch-all-exact": ("tracked", 60.0, 1, "+ watch-all exact (watch_sample=1), 60 s interval"),
    "watch-all-1s": ("tracked", 1.0, 64, "+ watch-all sampled 1/64, 1 s interval"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--servers", nargs="*", default=list(SERVERS), choices=list(SERVERS))
    args = parser.parse_args()
    names = args.servers if "bare" in args.servers else ["bare", *args.servers]
    running = {}
    try:
        for name in names:
            mode, interval, sample, _ = SERVERS[name]
            running[name] = start(mode, interval, sample)
        for proc, port in running.values():
            wrk(port, 2)                        # warm up
        results = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:                  # alternating: drift hits every server alike
                proc, port = running[name]
                rps, us = wrk(port, args.seconds, proc.pid)
                results[name].append(rps)
                cpu[name].append(us)
        modes = {}
        for name in names:
            if name != "bare":
                with urllib.request.urlopen(f"http://127.0.0.1:{running[name][1]}/debug/memory?format=json") as r:
                    modes[name] = json.loads(r.read())["mode"]
    finally:
        for proc, _ in running.values():
            proc.terminate()
            proc.wait(10)
    print(f"{sys.implementation.name} {sys.version.split()[0]}, engine modes {sorted(set(modes.values()))}, "
          f"{args.rounds} alternating wrk rounds of {args.seconds}s (-t1 -c32)")
    b, cb = statistics.median(results["bare"]), statistics.median(cpu["bare"])
    print(f"| server | requests/s (median) | loss | server CPU per request |")
    print(f"|---|---|---|---|")
    for name in names:
        rps, us = statistics.median(results[name]), statistics.median(cpu[name])
        loss = "" if name == "bare" else f"{100 * (1 - rps / b):.1f}%"
        print(f"| {SERVERS[name][3]} | {rps:,.0f} | {loss} | {us:.0f} us ({us / cb:.3f}x) |")
    for name in names:
        print(f"  {name} rounds: {', '.join(f'{x:.0f}' for x in results[name])}")
    print(f"/debug/memory JSON with 200 types (120 history points each): {json_render_ms():.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
