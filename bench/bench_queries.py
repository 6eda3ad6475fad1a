"""Query cost and memory of the tracking core at 10^4 and 10^6 live tracked objects.

- count_for(): time per call (timeit, best of 5), alongside an objgraph.count()
  heap scan (gc.get_objects() filtered by type name) on the same heap, and the ratio.
- Memory per tracked live object: the capture's own accounting (object table
  bytes / live objects) and the process RSS growth when tracking is on versus off
  for the same objects.
- The same for call-path analysis (table + call tree, per analysed live object).

    python bench/bench_queries.py
"""

from __future__ import annotations

import gc
import os
import sys
import timeit

import memtracker_web as mt

try:
    import objgraph
except ImportError:  # the scan is then done the same way objgraph does it
    objgraph = None


class Item:
    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def scan_count() -> int:
    if objgraph is not None:
        return objgraph.count("Item")
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "Item")


def measure(n: int, analysis: bool) -> dict:
    gc.collect()
    tracker = mt.Tracker(depth=10)
    if analysis:
        tracker.track_with_analysis(Item)
    else:
        tracker.track(Item)
    before = rss_bytes()
    objs = [Item(i) for i in range(n)]
    with_tracking = rss_bytes() - before
    assert tracker.count(Item) == n
    count_for = tracker.capture.count_for
    per_call = min(timeit.repeat(lambda: count_for(Item), number=100_000, repeat=5)) / 100_000
    scan = min(timeit.repeat(scan_count, number=1, repeat=3))
    stats = tracker.capture.statistics()
    tracker.stop()
    del objs
    gc.collect()
    before = rss_bytes()
    objs = [Item(i) for i in range(n)]
    without_tracking = rss_bytes() - before
    del objs
    return {
        "n": n,
        "count_for_us": per_call * 1e6,
        "scan_ms": scan * 1e3,
        "scan_ratio": scan / per_call,
        "table_bytes_per_object": stats["object_table_bytes"] / n,
        "engine_bytes_per_object": (stats["object_table_bytes"] + stats["call_tree_bytes"]) / n,
        "rss_bytes_per_object": (with_tracking - without_tracking) / n,
    }


def main() -> None:
    if not mt.engine_status()["available"]:
        sys.exit(f"needs the exact engine: {mt.engine_status()['reason']}")
    print(f"CPython {sys.version.split()[0]}; objgraph {'installed' if objgraph else 'absent (same scan inline)'}")
    print(
        f"{'mode':<14}{'live objects':>13}{'count_for':>12}{'heap scan':>12}{'scan/count':>12}"
        f"{'table B/obj':>13}{'engine B/obj':>14}{'RSS B/obj':>11}"
    )
    for analysis in (False, True):
        for n in (10_000, 1_000_000):
            r = measure(n, analysis)
            print(
                f"{'analysis' if analysis else 'count-only':<14}{n:>13,d}{r['count_for_us']:>10.3f}us"
                f"{r['scan_ms']:>10.2f}ms{r['scan_ratio']:>11,.0f}x{r['table_bytes_per_object']:>13.1f}"
                f"{r['engine_bytes_per_object']:>14.1f}{r['rss_bytes_per_object']:>11.1f}"
            )


if __name__ == "__main__":
    main()
