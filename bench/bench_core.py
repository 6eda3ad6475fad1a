"""Overhead of the tracking core, side by side in one run.

Workloads: an allocation-heavy loop (dicts, lists, tuples, small user
objects, str, a JSON round trip) and a request-handling loop (a JSON API
handler building and serialising a response). Configurations: baseline, a
no-op tracer (what CPython's hook itself costs), ours count-only on 3 types,
ours with watch-all, ours analysing a user class, ours analysing dict,
tracemalloc with 1 and 10 frames. Rounds are interleaved so drift hits every
configuration alike; each ratio is the median time over the baseline's median.

    python bench/bench_core.py [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc

import memtracker_web as mt
from memtracker_web import _tracker


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


class Order:
    def __init__(self, order_id, items):
        self.id = order_id
        self.items = items


class Customer:
    pass


def allocation_heavy(n=20000):
    keep = []
    for i in range(n):
        d = {"id": i, "name": "item", "tags": [i, i + 1]}
        t = (i, str(i), d)
        p = Point(i, i * 2)
        s = "-".join(("a", str(i)))
        if i % 100 == 0:
            keep.append((t, p, s))
        if i % 500 == 0:
            json.loads(json.dumps(d))
    return len(keep)


def handle_request(order_id):
    orders = [Order(order_id * 10 + k, [{"sku": f"S{k}{j}", "qty": j} for j in range(5)]) for k in range(10)]
    body = {
        "orders": [{"id": o.id, "items": o.items, "total": sum(i["qty"] for i in o.items)} for o in orders],
        "count": len(orders),
    }
    return json.dumps(body)


def request_handling(n=2000):
    size = 0
    for i in range(n):
        size += len(handle_request(i))
    return size


WORKLOADS = {"allocation-heavy": allocation_heavy, "request-handling": request_handling}


class Config:
    def __init__(self, name, start, stop):
        self.name, self.start, self.stop = name, start, stop


def _capture_config(name, types, analyse=None):
    state = {}

    def start():
        tracker = mt.Tracker(depth=10)
        for cls in types:
            tracker.track(cls)
        if analyse is not None:
            tracker.track_with_analysis(analyse)
        state["t"] = tracker

    def stop():
        state.pop("t").stop()

    return Config(name, start, stop)


def _watch_config(sample: int, types=()):
    state = {}

    def start():
        _tracker.watch_start(sample=sample)
        if types:
            tracker = mt.Tracker(depth=10)
            for cls in types:
                tracker.track(cls)
            state["t"] = tracker

    def stop():
        if "t" in state:
            state.pop("t").stop()
        _tracker.watch_stop()

    name = "ours: watch-all, exact" if sample == 1 else f"ours: watch-all, sampled 1/{sample}"
    return Config(name + (f" + count-only, {len(types)} user types" if types else ""), start, stop)


def _watch_analysis_config(name, classes, sample_every, by_address, watch_sample=64):
    state = {}

    def start():
        _tracker.watch_start(sample=watch_sample)
        tracker = mt.Tracker(depth=10)
        for cls in classes:
            tracker.track_with_analysis(
                cls, sample_every=sample_every, sample_objects=sample_every if by_address else 1
            )
        state["t"] = tracker

    def stop():
        state.pop("t").stop()
        _tracker.watch_stop()

    return Config(name, start, stop)


CONFIGS = [
    Config("baseline", lambda: None, lambda: None),
    Config("no-op tracer (floor)", lambda: _tracker._noop_tracer(True), lambda: _tracker._noop_tracer(False)),
    _capture_config("ours: count-only, 3 user types", [Point, Order, Customer]),
    _capture_config("ours: count-only, dict + 2 user types", [dict, Point, Order]),
    _watch_config(1),
    _watch_config(64),
    _watch_config(64, [Point, Order, Customer]),
    _capture_config("ours: analysis of a user class", [], analyse=Order),
    _capture_config("ours: analysis of dict", [], analyse=dict),
    # what the monitor runs while a leak of dicts is analysed: sampled watch-all, and
    # dict's paths one allocation in 64, every dict tabled (before) or one in about
    # 64 tabled and counted, by address (sample_objects)
    _watch_analysis_config("ours: watch-all 1/64 + paths of dict 1/64, every dict tabled", [dict], 64, False),
    _watch_analysis_config("ours: watch-all 1/64 + dict sampled 1/64 by address", [dict], 64, True),
    # what it runs while a class made by the thousand a second is analysed (the slow
    # leak shape): exact watch-all, the class's paths one allocation in 64, every
    # object tabled (a class's objects can change class: none is sampled by address);
    # Point is made 20,000 times a run of the allocation-heavy workload, Order 20,000
    # times a run of the request one
    _watch_analysis_config("ours: watch-all exact + paths of 2 classes 1/64", [Point, Order], 64, False, 1),
    # the same, one object of each class in about 64 followed by address (each with its path)
    _watch_analysis_config("ours: watch-all exact + 2 classes sampled 1/64 by address", [Point, Order], 64, True, 1),
    # and while a leak of dicts is (the builtins leak shape, exact watch-all)
    _watch_analysis_config("ours: watch-all exact + dict sampled 1/64 by address", [dict], 64, True, 1),
    Config("tracemalloc(1)", lambda: tracemalloc.start(1), tracemalloc.stop),
    Config("tracemalloc(10)", lambda: tracemalloc.start(10), tracemalloc.stop),
]


def run(rounds: int) -> dict:
    results: dict = {}
    for wname, workload in WORKLOADS.items():
        workload()  # warm up: specialise the bytecode
        times = {c.name: [] for c in CONFIGS}
        for _ in range(rounds):
            for config in CONFIGS:
                gc.collect()
                config.start()
                try:
                    t0 = time.perf_counter()
                    workload()
                    times[config.name].append(time.perf_counter() - t0)
                finally:
                    config.stop()
        base = statistics.median(times["baseline"])
        results[wname] = {name: statistics.median(ts) / base for name, ts in times.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", help="also write the ratios here")
    args = parser.parse_args()
    if not mt.engine_status()["available"]:
        sys.exit(f"needs the exact engine: {mt.engine_status()['reason']}")
    results = run(args.rounds)
    print(
        f"{sys.implementation.name} {sys.version.split()[0]}, {args.rounds} interleaved rounds, "
        "median time / baseline median"
    )
    names = [c.name for c in CONFIGS]
    width = max(map(len, names))
    print(f"{'configuration':<{width}}  " + "  ".join(f"{w:>17}" for w in WORKLOADS))
    for name in names:
        print(f"{name:<{width}}  " + "  ".join(f"{results[w][name]:>16.3f}x" for w in WORKLOADS))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
