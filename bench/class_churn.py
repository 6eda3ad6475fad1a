"""What counting or analysing a class made by the thousand costs under exact watch-all:
the slow leak shape's work (500 objects of a class made and dropped a round, 300 dicts,
3 objects kept) in a loop, with one configuration of the tracker. Run under callgrind,
one process a configuration, and compare the instruction counts with ``watch``'s:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/class_churn.py count8 --rounds 300

Configurations: ``none`` (no tool), ``watch`` (exact watch-all alone), ``countN`` (the
class counted, one object in N followed by address; 1: every object), ``pathsSxN`` (its
paths one allocation in S, one object in N followed). Without valgrind it prints the
process time of the loop.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import memtracker_web as mt  # noqa: E402
from memtracker_web import _tracker  # noqa: E402


class Item:
    def __init__(self, n: int) -> None:
        self.n = n


KEPT: list = []


def work(n: int) -> None:
    batch = [Item(i) for i in range(500)]
    payloads = [{"a": i, "b": str(i)} for i in range(300)]
    KEPT.extend(Item(n) for _ in range(3))
    del batch, payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="none, watch, countN or pathsSxN")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    counted = re.fullmatch(r"count(\d+)", args.config)
    analysed = re.fullmatch(r"paths(\d+)x(\d+)", args.config)
    if args.config not in ("none", "watch") and not counted and not analysed:
        parser.error(f"unknown configuration {args.config!r}")
    if args.config != "none":
        _tracker.watch_start(sample=1)
    tracker = mt.Tracker(depth=10)
    if counted:
        tracker.track(Item, sample_objects=int(counted.group(1)))
    elif analysed:
        every, objects = int(analysed.group(1)), int(analysed.group(2))
        tracker.track_with_analysis(Item, sample_every=every, sample_objects=objects)
    started = time.process_time()
    for i in range(args.rounds):
        work(i)
    print(f"{args.config}: {time.process_time() - started:.3f} s process time, {args.rounds} rounds")
    tracker.stop()
    if args.config != "none":
        _tracker.watch_stop()


if __name__ == "__main__":
    main()
