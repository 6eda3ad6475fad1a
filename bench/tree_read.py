"""What a leak report's read of its type's call tree costs the monitor, read whole
or through the view the Tracker keeps between reads.

A leak is reported at every growth, so the monitor reads the analysed type's call
tree every sample. Read whole, the engine builds a tuple and two ints a node
(``CaptureCore.tree``) and ``build_stats`` works out every node's depth, app depth
and ownership again; the Tracker's ``stats`` takes only the nodes made since its
last read (``CaptureCore.tree_update``) and every node's counts as one buffer.

One of ``bench/leak_apps.py``'s shapes runs in process under starlette's
TestClient with the monitor as the benchmark configures it (watch-all, one sample
a round); once the leaking type is analysed, each round of requests is followed by
both reads, in alternating order, each timed in the thread's CPU time, then the
monitor's sample. Prints the medians and their ratio.

    python bench/tree_read.py [--shape builtins] [--rounds 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import types
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"builtins": dict, "traceback": types.TracebackType, "user-class": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="builtins")
    parser.add_argument("--rounds", type=int, default=40, help="rounds of requests, both reads after each")
    parser.add_argument("--requests", type=int, default=30, help="rounds of /work and / a sample")
    args = parser.parse_args()
    os.environ["LEAK_SHAPE"] = args.shape
    os.environ["LEAK_NO_TOOL"] = "1"  # (the monitor is made here)
    sys.path.insert(0, HERE)
    warnings.filterwarnings("ignore")
    logging.getLogger("memtracker_web").disabled = True
    from starlette.testclient import TestClient

    import leak_apps
    from memtracker_web.core.tracker import build_stats
    from memtracker_web.monitor import MemoryMonitor

    cls = SHAPES[args.shape] or leak_apps.Order
    monitor = MemoryMonitor(watch_all=True, interval=1.0)
    client = TestClient(leak_apps.app)
    tracker = monitor.tracker

    def load() -> None:
        for _ in range(args.requests):
            client.get("/work")
            client.get("/")

    for _ in range(60):
        load()
        monitor.sample()
        if tracker.is_analysing(cls):
            break
    else:
        raise SystemExit(f"{cls.__qualname__} was not analysed within 60 samples")

    def whole() -> dict:
        with tracker._lock:
            nodes, meta = tracker.capture._tree(cls)
            allocations = tracker.capture.allocations(cls)
        return build_stats(nodes, meta, allocations.new_count, allocations.retained_count, limit=3, hotspot_limit=0)

    def kept() -> dict | None:
        return tracker.stats(cls, limit=3, hotspots=0)

    took: dict = {whole: [], kept: []}
    for n in range(args.rounds):
        load()
        for read in (whole, kept) if n % 2 else (kept, whole):
            started = time.thread_time_ns()
            read()
            took[read].append(time.thread_time_ns() - started)
        monitor.sample()
    nodes = len(tracker._views[id(cls)])
    monitor.stop()
    old, new = statistics.median(took[whole]), statistics.median(took[kept])
    print(
        f"{args.shape}: {cls.__module__}.{cls.__qualname__}, {nodes} nodes; a read whole {old / 1e6:.3f} ms, "
        f"through the kept view {new / 1e6:.3f} ms (median of {args.rounds}): {new / old:.2f}x"
    )


if __name__ == "__main__":
    main()
