"""Requests per second of a trivial endpoint, bare versus behind our middleware
(monitor running, watch-all on), same server, same run; and the /debug/memory
JSON render time with 200 monitored types.

Two uvicorn servers (one worker each, pinned to core 0) on 127.0.0.1, wrk
(pinned to core 1) against each in alternating rounds so drift hits both alike;
the loss is 1 - median(tracked) / median(bare). Throughput on this shared VM
swings by +-10% between rounds, so the server's CPU time per request (from
/proc) is reported too: it is the steadier measure of what the middleware adds.

    python bench/bench_web.py [--rounds 5] [--seconds 5]
        [--servers bare middleware watch-all watch-all-exact watch-all-1s] [--paired-rounds 15]

With --paired-rounds, each server is also loaded at the same time as a bare
one (both on core 0, two wrk on core 1, both processes fresh each round): the
ratio of their requests/s in one window is free of the drift between windows.
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


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(url: str, what: str, tries: int) -> None:
    """Ask ``url`` every 50 ms until a server started meanwhile answers; after ``tries``
    asks, RuntimeError naming ``what``."""
    for _ in range(tries):
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what}: the server did not answer")


def alloc_line(source: str, marker: str) -> int:
    """The line of bench/``source`` that ends with ``# ALLOC <marker>``: where a leak
    app allocates what leaks, the first frame its report's top path must name."""
    with open(os.path.join(ROOT, "bench", source)) as fh:
        for number, text in enumerate(fh, 1):
            if re.search(rf"# ALLOC {re.escape(marker)}$", text.rstrip()):
                return number
    raise LookupError(marker)


def start(mode: str, interval: float = 60.0, sample: int = 64) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(
        os.environ, BENCH_MODE=mode, BENCH_INTERVAL=str(interval), BENCH_WATCH_SAMPLE=str(sample), PYTHONPATH=ROOT
    )
    # Server on core 0, wrk on core 1: the two would otherwise fight for both cores.
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "uvicorn",
            "bench.web_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
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
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(port: int, seconds: int, pid: int | None = None) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    return wrk_together([(port, pid)], seconds)[0]


def wrk_together(targets: list[tuple[int, int | None]], seconds: int) -> list[tuple[float, float]]:
    """wrk against every (port, pid) at once: (requests/s, CPU us per request) each."""
    before = [cpu_seconds(pid) if pid else 0.0 for _, pid in targets]
    procs = [
        subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for port, _ in targets
    ]
    outs = [proc.communicate(timeout=seconds + 30)[0] for proc in procs]
    results = []
    for (_port, pid), start, out in zip(targets, before, outs, strict=True):
        used = cpu_seconds(pid) - start if pid else 0.0
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        results.append((float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), used / requests * 1e6))
    return results


def paired(names: list[str], rounds: int, seconds: int) -> None:
    """Each server against a bare one at the same time, both on core 0: the
    scheduler splits the core between them, so the ratio of their requests/s
    is the ratio of their costs per request, and the machine's drift, which
    swings alternating rounds by +-15%, hits both alike. Both processes are
    started afresh every round (two identical long-lived servers differed by
    2%: heap and code layout of a process), and which of the two starts first
    alternates (of two fresh bare servers, the one started second served 1%
    more)."""
    print(f"paired: each server and a bare one loaded at once, fresh processes, {rounds} rounds of {seconds}s")
    print(
        "| server | requests/s ratio to bare (geometric mean) | loss | server CPU a request, ratio to bare "
        "| rounds (odd ones: started first) |"
    )
    print("|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {name: [] for name in names if name != "bare"}
    # The scheduler's split of the core between the two adds its own noise to
    # the requests/s ratio; the ratio of CPU time a request has not that term.
    cpu_ratios: dict[str, list[float]] = {name: [] for name in ratios}
    for round_ in range(rounds):
        for name in ratios:
            if round_ % 2:
                other = start(*SERVERS[name][:3])
                pair = [start("bare"), other]
            else:
                pair = [start("bare"), start(*SERVERS[name][:3])]
            try:
                targets = [(port, proc.pid) for proc, port in pair]
                wrk_together(targets, 1)  # warm up
                (b, b_us), (x, x_us) = wrk_together(targets, seconds)
                ratios[name].append(x / b)
                cpu_ratios[name].append(x_us / b_us)
            finally:
                for proc, _ in pair:
                    proc.terminate()
                    proc.wait(10)
    for name, values in ratios.items():
        ratio = statistics.geometric_mean(values)  # over both start orders alike
        print(
            f"| {SERVERS[name][3]} | {ratio:.3f} | {100 * (1 - ratio):.1f}% | "
            f"{statistics.geometric_mean(cpu_ratios[name]):.3f} | {', '.join(f'{r:.3f}' for r in values)} |"
        )


def json_render_ms(n_types: int = 200) -> float:
    sys.path.insert(0, ROOT)
    import logging

    logging.getLogger("memtracker_web").setLevel(logging.ERROR)  # the leak reports this causes
    from memtracker_web.endpoint import Endpoint, EndpointOptions, Request
    from memtracker_web.monitor import MemoryMonitor

    monitor = MemoryMonitor(threshold=10, increases=3)
    classes = [type(f"Model{i:03d}", (), {"__module__": "bench_models"}) for i in range(n_types)]
    keep = []
    for cls in classes:
        monitor.start_monitoring(cls)
    for round_ in range(120):  # a full history per type
        for cls in classes[: 1 + round_ % 50]:
            keep.append(cls())
        monitor.sample()
    endpoint = Endpoint(EndpointOptions(monitor=monitor, allow=["127.0.0.1"]))
    request = Request(
        method="GET",
        path="/debug/memory",
        query_string="format=json",
        headers={"accept": "application/json"},
        client="127.0.0.1",
    )
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
    "bare-again": ("bare", 60.0, 64, "a second bare app (checks the method: should be ~0%)"),
    "noop-tracer": ("noop-tracer", 60.0, 64, "bare app with a no-op reference tracer (CPython's tracer call alone)"),
    "middleware-idle": (
        "middleware-idle",
        60.0,
        64,
        "middleware, monitor with nothing to count (no tracer: our layer alone)",
    ),
    "middleware": ("middleware", 60.0, 64, "+ middleware, monitor (2 tracked types, 60 s interval)"),
    "watch-only": (
        "watch-only",
        60.0,
        64,
        "middleware, monitor with watch-all sampled 1/64 (the default), no type named",
    ),
    "watch-all": ("tracked", 60.0, 64, "+ watch-all sampled 1/64 (the default), 60 s interval"),
    "watch-all-exact": ("tracked", 60.0, 1, "+ watch-all exact (watch_sample=1), 60 s interval"),
    "watch-all-1s": ("tracked", 1.0, 64, "+ watch-all sampled 1/64, 1 s interval"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--servers", nargs="*", default=list(SERVERS), choices=list(SERVERS))
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=0,
        help="also load each server together with the bare one, this many rounds",
    )
    args = parser.parse_args()
    names = args.servers if "bare" in args.servers else ["bare", *args.servers]
    running = {}
    try:
        for name in names:
            mode, interval, sample, _ = SERVERS[name]
            running[name] = start(mode, interval, sample)
        for _proc, port in running.values():
            wrk(port, 2)  # warm up
        results = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:  # alternating: drift hits every server alike
                proc, port = running[name]
                rps, us = wrk(port, args.seconds, proc.pid)
                results[name].append(rps)
                cpu[name].append(us)
        modes = {}
        for name in names:
            if SERVERS[name][0] not in ("bare", "noop-tracer"):
                with urllib.request.urlopen(f"http://127.0.0.1:{running[name][1]}/debug/memory?format=json") as r:
                    modes[name] = json.loads(r.read())["mode"]
    finally:
        for proc, _ in running.values():
            proc.terminate()
            proc.wait(10)
    if args.paired_rounds:
        paired(names, args.paired_rounds, args.seconds)
    print(
        f"{sys.implementation.name} {sys.version.split()[0]}, engine modes {sorted(set(modes.values()))}, "
        f"{args.rounds} alternating wrk rounds of {args.seconds}s (-t1 -c32)"
    )
    b, cb = statistics.median(results["bare"]), statistics.median(cpu["bare"])
    print("| server | requests/s (median) | loss | server CPU per request |")
    print("|---|---|---|---|")
    for name in names:
        rps, us = statistics.median(results[name]), statistics.median(cpu[name])
        loss = "" if name == "bare" else f"{100 * (1 - rps / b):.1f}%"
        print(f"| {SERVERS[name][3]} | {rps:,.0f} | {loss} | {us:.0f} us ({us / cb:.3f}x) |")
    for name in names:
        print(f"  {name} rounds: {', '.join(f'{x:.0f}' for x in results[name])}")
    print(f"/debug/memory JSON with 200 types (120 history points each): {json_render_ms():.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
