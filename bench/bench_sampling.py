"""Accuracy of sampled watch-all: estimated net allocations of 100,000 objects per type.

    PYTHONPATH=. python bench/bench_sampling.py

Types of several pymalloc size classes (slotted classes of 0-24 slots), a plain
class and list; for each rate, the estimate (sampled net count x rate) over the
true count, then the same after freeing half. Addresses decide what is sampled,
so results move a little from run to run.
"""

from __future__ import annotations

import gc

from memtracker_web import _tracker

N = 100_000


def main() -> None:
    classes = [type(f"Slots{n}", (), {"__slots__": tuple(f"a{i}" for i in range(n))}) for n in range(0, 27, 3)]
    plain = type("Plain", (), {})
    kinds = classes + [plain, list]
    print(f"{N:,} objects per type; estimate / true count (all alive | half freed)")
    for sample in (16, 64, 1000):
        _tracker.watch_start(sample=sample)
        try:
            keep = {cls: [cls() for _ in range(N)] for cls in kinds}
            full = {cls: (new - free) * sample for cls, new, free in _tracker.watch_counts()}
            for cls in kinds:
                del keep[cls][: N // 2]
            half = {cls: (new - free) * sample for cls, new, free in _tracker.watch_counts()}
            errors = [abs(full[cls] / N - 1) for cls in kinds] + [abs(half[cls] / (N // 2) - 1) for cls in kinds]
            print(
                f"1/{sample}: worst error {max(errors):.1%}, mean {sum(errors) / len(errors):.1%}; "
                + " ".join(f"{full[cls] / N:.3f}|{half[cls] / (N // 2):.3f}" for cls in kinds)
            )
            del keep
            gc.collect()
        finally:
            _tracker.watch_stop()


if __name__ == "__main__":
    main()
