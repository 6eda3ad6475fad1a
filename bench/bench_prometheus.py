"""Cost of a Prometheus scrape with memtracker's collector (200 types).

    PYTHONPATH=. python bench/bench_prometheus.py [--types 200] [--rounds 200]

Times ``generate_latest`` (what every /metrics request runs) for an empty
registry, prometheus_client's default collectors, and MemoryCollector over a
200-type snapshot; the budget is 10 ms per scrape.  Rows:

* snapshot dict: a monitor whose snapshot() returns a prepared dict in the
  documented shape (history of 120 samples, 3 top paths per type): exporter only
  (``collect()`` builds the families, ``generate_latest`` formats ~1000 samples);
* real monitor: MemoryMonitor tracking 200 classes (skipped if not importable);
* multiprocess: MultiprocessPublisher.publish() and the MultiProcessCollector
  scrape of 2 workers' files (run in a subprocess, since PROMETHEUS_MULTIPROC_DIR
  must be set before prometheus_client is imported).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BUDGET_MS = 10.0


def fake_snapshot(n_types: int) -> dict:
    types = []
    for i in range(n_types):
        live = 1000 + 37 * i
        types.append(
            {
                "type": f"myapp.models.Model{i:03d}",
                "live": live,
                "allocations": live * 3,
                "frees": live * 2,
                "high_water": live,
                "increases": i % 12,
                "analysing": i < 3,
                "source": "tracked",
                "history": [[1764115200.0 + 60 * k, live - 120 + k] for k in range(120)],
                "top_paths": [
                    {
                        "count": live // (p + 2),
                        "total_count": live,
                        "path": [f"myapp/module{i}.py:{10 + p} in make", "myapp/views.py:20 in handler"],
                        "frames": [{"filename": f"myapp/module{i}.py", "lineno": 10 + p, "function": "make"}],
                    }
                    for p in range(3)
                ],
            }
        )
    return {
        "mode": "exact",
        "engine": {"available": True, "reason": "", "displaced": False, "python": "3.13.5"},
        "pid": os.getpid(),
        "sampled_at": 1764115200.0,
        "interval": 60.0,
        "sample_duration_seconds": 0.002,
        "samples": 120,
        "types": types,
        "leaks": [],
    }


class DictMonitor:
    """snapshot() returns a prepared dict (the exporters never modify it), so
    these rows time the exporter alone; the real-monitor row adds snapshot()."""

    def __init__(self, snap: dict) -> None:
        self.snap = snap

    def snapshot(self) -> dict:
        return self.snap


def timings(fns: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """{label: (median ms, min ms)}; the functions take turns each round, so a
    busy machine slows all of them alike instead of whichever ran at that moment."""
    times: dict[str, list[float]] = {label: [] for label in fns}
    for fn in fns.values():
        fn()  # warm up
    for _ in range(rounds):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {label: (statistics.median(t) * 1000.0, min(t) * 1000.0) for label, t in times.items()}


def real_monitor(n_types: int):
    try:
        from memtracker_web.monitor import MemoryMonitor
    except ImportError as exc:
        return None, f"memtracker_web.monitor not importable: {exc}"
    monitor = MemoryMonitor(interval=3600.0)
    keep = []
    for i in range(n_types):
        cls = type(f"Bench{i:03d}", (), {"__module__": "bench_prometheus"})
        monitor.start_monitoring(cls)
        keep.extend(cls() for _ in range(5 + i % 7))
    monitor.sample()
    monitor._bench_keep = keep  # the instances stay alive for the scrapes
    return monitor, monitor.mode


def multiprocess_rows(n_types: int, rounds: int) -> list[tuple[str, float, float]]:
    """Runs this file in a child with PROMETHEUS_MULTIPROC_DIR set; returns its rows."""
    with tempfile.TemporaryDirectory() as path:
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=path)
        out = subprocess.run(
            [sys.executable, __file__, "--types", str(n_types), "--rounds", str(rounds), "--multiprocess-child"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    return [tuple(row) for row in json.loads(out.stdout)]


def multiprocess_child(n_types: int, rounds: int) -> None:
    from prometheus_client import generate_latest, values

    from memtracker_web.prometheus import MultiprocessPublisher, metrics_registry

    snap = fake_snapshot(n_types)
    publishers = []
    for pid in (1001, 1002):  # two workers' files, written from one process
        values.ValueClass = values.MultiProcessValue(lambda pid=pid: pid)
        publishers.append(MultiprocessPublisher(DictMonitor(snap)))
        publishers[-1].publish()
    registry = metrics_registry()
    result = timings(
        {
            "multiprocess publish() per sample, 1 worker": publishers[-1].publish,
            "multiprocess scrape, 2 workers (liveall)": lambda: generate_latest(registry),
        },
        rounds,
    )
    json.dump([[label, *ms] for label, ms in result.items()], sys.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--multiprocess-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.multiprocess_child:
        multiprocess_child(args.types, args.rounds)
        return 0

    from prometheus_client import (
        GC_COLLECTOR,
        PLATFORM_COLLECTOR,
        PROCESS_COLLECTOR,
        CollectorRegistry,
        generate_latest,
    )

    from memtracker_web.prometheus import MemoryCollector

    empty = CollectorRegistry()
    defaults = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        defaults.register(collector)
    plain, retained = CollectorRegistry(), CollectorRegistry()
    MemoryCollector(DictMonitor(fake_snapshot(args.types)), plain)
    MemoryCollector(DictMonitor(fake_snapshot(args.types)), retained, retained_sites=5)
    collector = MemoryCollector(DictMonitor(fake_snapshot(args.types)), None)
    fns = {
        "empty registry": lambda: generate_latest(empty),
        "prometheus_client default collectors": lambda: generate_latest(defaults),
        f"MemoryCollector, {args.types} types (snapshot dict)": lambda: generate_latest(plain),
        "  + retained_sites=5": lambda: generate_latest(retained),
        "  of which collect()": lambda: list(collector.collect()),
    }
    monitor, note = real_monitor(args.types)
    if monitor is not None:
        real = CollectorRegistry()
        MemoryCollector(monitor, real)
        fns[f"MemoryCollector, {args.types} types (real monitor, {note})"] = lambda: generate_latest(real)
        fns["  of which monitor.snapshot()"] = monitor.snapshot
    rows = [(label, *ms) for label, ms in timings(fns, args.rounds).items()]
    rows += [(label, median, low) for label, median, low in multiprocess_rows(args.types, args.rounds)]
    empty_ms = rows[0][1]

    print(f"Python {sys.version.split()[0]}, {args.rounds} scrapes each, budget {BUDGET_MS:.0f} ms (median)")
    width = max(len(row[0]) for row in rows)
    print(f"{'scrape':<{width}}  {'median ms':>9}  {'min ms':>8}  {'x empty':>8}")
    for label, median, low in rows:
        print(f"{label:<{width}}  {median:9.3f}  {low:8.3f}  {median / empty_ms:8.0f}")
    if monitor is None:
        print(f"(real monitor row skipped: {note})")
    # Budget rows: full scrapes through MemoryCollector (not the "of which" parts).
    worst = max(median for label, median, _ in rows if label.startswith(("MemoryCollector", "  +")))
    print(
        f"slowest MemoryCollector scrape: {worst:.3f} ms "
        f"({'within' if worst <= BUDGET_MS else 'OVER'} the {BUDGET_MS:.0f} ms budget)"
    )
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
