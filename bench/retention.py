"""What a retention search costs on a big heap, beside objgraph's find_backref_chain.

    python bench/retention.py --objects 1000000        # from the repository root

Builds a heap of about ``--objects`` objects the collector tracks (instances with a
__dict__, lists, dicts), hides 20 leaked objects four containers below a module
global, and times, on the same heap: memtracker-web's search from 20 of them
(whole search, and the longest single pass, which is the longest the GIL is held
in one go), and objgraph.find_backref_chain from one of them to a module.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

from memtracker_web.monitor import retention


class Item:
    def __init__(self, n: int) -> None:
        self.n = n
        self.tags = [n]


class Leaked:
    pass


HOLDER: dict = {}


def build(objects: int) -> list:
    heap = []
    # each Item is 3 tracked objects: itself, its __dict__ (on some versions) and a list
    for block in range(objects // 3 // 1000):
        heap.append([Item(block * 1000 + i) for i in range(1000)])
    leaked = [Leaked() for _ in range(20)]
    HOLDER["cache"] = {"by_user": [{"entries": leaked}]}
    return heap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    options = parser.parse_args()
    heap = build(options.objects)
    gc.collect()
    tracked = len(gc.get_objects())
    print(f"{sys.version.split()[0]}: {tracked:,} objects tracked by the collector")
    targets = list(HOLDER["cache"]["by_user"][0]["entries"])

    longest = 0.0
    real = gc.get_referrers

    def timed(*objects):
        nonlocal longest
        start = time.perf_counter()
        try:
            return real(*objects)
        finally:
            longest = max(longest, time.perf_counter() - start)

    retention.gc.get_referrers = timed
    start = time.perf_counter()
    found = retention.find_retainers(targets, budget_seconds=30.0)
    total = time.perf_counter() - start
    retention.gc.get_referrers = real
    print(
        f"memtracker-web find_retainers, 20 objects: {total:.3f} s in {found['levels']} passes, "
        f"longest pass {longest * 1000:.1f} ms; chains: {found['chains']}"
    )

    try:
        import objgraph
    except ImportError:
        print("objgraph is not installed: pip install objgraph")
        return
    start = time.perf_counter()
    chain = objgraph.find_backref_chain(targets[0], objgraph.is_proper_module)
    total = time.perf_counter() - start
    print(
        f"objgraph.find_backref_chain, 1 object: {total:.3f} s (one gc.get_referrers pass per object "
        f"visited), chain of {len(chain)}: {[type(o).__name__ for o in chain]}"
    )
    del heap


if __name__ == "__main__":
    main()
