"""The tracer's cost on one leak shape's work, in one process, without a server: a
shape's work of ``bench/leak_apps.py`` and the healthy route's (JSON, a bounded
``lru_cache``, a ``__class__`` swap) a round, timed with no tool, with exact
watch-all, and with exact watch-all and the shape's type analysed as the monitor
analyses it. Configurations are interleaved, ``--repeats`` times; the figures are
medians of process time over no tool's.

    python bench/leak_work.py --shapes lru user-class --rounds 20000 --repeats 7

What the server benchmark (bench/leak_shapes.py) measures beside a second app can
be compared with this: what is not here is not the tracer's work in the app's threads.
The task and traceback shapes need a running event loop and are left out.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ["LEAK_NO_TOOL"] = "1"  # the app module without our middleware

import leak_apps  # noqa: E402
import memtracker_web as mt  # noqa: E402
from memtracker_web import _tracker  # noqa: E402
from memtracker_web.core.naming import resolve_type  # noqa: E402

SHAPES = ["user-class", "builtins", "registry", "lru", "slow", "stops"]
# how the monitor analyses each shape's type at about 25 requests a second (see
# MemoryMonitor._sampling): (paths one allocation in, objects followed one in)
SAMPLING = {"slow": (64, 64), "builtins": (4, 4)}


def healthy(n: int) -> str:
    q = leak_apps.clone(leak_apps.Query())
    body = {"page": leak_apps.render(n % 2048), "filters": len(q.where), "items": [{"i": i} for i in range(5)]}
    return json.dumps(body)


def one_run(shape: str, config: str, rounds: int, first: int) -> float:
    work = leak_apps.SHAPES[shape]
    tracker = None
    gc.collect()
    if config != "none":
        _tracker.watch_start(sample=1)
    if config == "analysed":
        tracker = mt.Tracker(depth=10)
        every, objects = SAMPLING.get(shape, (1, 1))
        cls = resolve_type(leak_apps.EXPECTED[shape][0])
        tracker.track_with_analysis(cls, sample_every=every, sample_objects=objects)
    started = time.process_time()
    for n in range(first, first + rounds):
        work(n)
        healthy(n)
    spent = time.process_time() - started
    if tracker is not None:
        tracker.stop()
    if config != "none":
        _tracker.watch_stop()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="*", default=SHAPES, choices=SHAPES)
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    configs = ["none", "watch-all", "analysed"]
    times: dict = {}
    first = 1
    for _ in range(args.repeats):
        for shape in args.shapes:
            for config in configs:
                times.setdefault((shape, config), []).append(one_run(shape, config, args.rounds, first))
                first += args.rounds  # new keys for the caches each run
    print(f"CPython {sys.version.split()[0]}, {args.rounds} rounds, medians of {args.repeats}, over no tool:")
    print("| shape | no tool (ms/round) | exact watch-all | + its type analysed |")
    print("|---|---|---|---|")
    for shape in args.shapes:
        base = statistics.median(times[(shape, "none")])
        ratios = [statistics.median(times[(shape, c)]) / base for c in configs[1:]]
        print(f"| {shape} | {base / args.rounds * 1000:.4f} | " + " | ".join(f"{r:.3f}x" for r in ratios) + " |")


if __name__ == "__main__":
    main()
