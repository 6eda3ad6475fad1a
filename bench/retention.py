"""What a retention search costs on a big heap, beside objgraph's find_backref_chain.

    python bench/retention.py --objects 1000000 [--leaked 20]       # from the repository root

Builds a heap of about ``--objects`` objects the collector tracks (instances with a
__dict__, lists, dicts), hides ``--leaked`` objects below a module global, each in
a cache entry of its own (``HOLDER["cache"]["by_user"][i]["entries"]``: the search's
frontier is as wide as that for its first levels), and times, on the same heap:
memtracker-web's search from all of them, a pass a level with the extension's
``referrers`` and with ``gc.get_referrers`` (what it does where the extension is not
loaded; whole search, and the longest single pass, which is the longest the GIL is
held in one go), and objgraph.find_backref_chain from one of them to a module.
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
    return heap


def leak(count: int) -> list:
    leaked = [Leaked() for _ in range(count)]
    HOLDER["cache"] = {"by_user": [{"entries": [obj]} for obj in leaked]}
    return leaked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--leaked", type=int, default=20)
    options = parser.parse_args()
    heap = build(options.objects)
    targets = leak(options.leaked)
    gc.collect()
    tracked = len(gc.get_objects())
    print(f"{sys.version.split()[0]}: {tracked:,} objects tracked by the collector")

    real_pass, real_extension = retention._referrers_of, retention.referrers
    for how in ("the extension's referrers", "gc.get_referrers"):
        longest = 0.0

        def timed(frontier):
            nonlocal longest
            start = time.perf_counter()
            try:
                return real_pass(frontier)
            finally:
                longest = max(longest, time.perf_counter() - start)

        retention._referrers_of = timed
        if how == "gc.get_referrers":
            retention.referrers = lambda objects: None
        try:
            start = time.perf_counter()
            found = retention.find_retainers(targets, budget_seconds=60.0)
            total = time.perf_counter() - start
        finally:
            retention._referrers_of, retention.referrers = real_pass, real_extension
        print(
            f"memtracker-web find_retainers, {len(targets)} objects, a pass a level with {how}: {total:.3f} s "
            f"in {found['levels']} passes, longest pass {longest * 1000:.1f} ms; chains: {found['chains']}"
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
