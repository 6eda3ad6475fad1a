"""Requests per second of a trivial endpoint, bare versus behind our middleware
(monitor running, watch-all on), same server, same run; and the /debug/memory
JSON render time with 200 monitored types.

Two uvicorn servers (one worker each) on 127.0.0.1, wrk against each in
alternating rounds so drift hits both alike; the loss is 1 - median(tracked) /
median(bare).

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


def start(mode: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, BENCH_MODE=mode, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.web_app:app", "--host", "127.0.0.1",
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


def wrk(port: int, seconds: int) -> float:
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


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
        for _ in range(args.rounds):
            results["bare"].append(wrk(bare_port, args.seconds))
            results["tracked"].append(wrk(tracked_port, args.seconds))
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
    print(f"/debug/memory JSON with 200 types (120 history points each): {json_render_ms():.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
