"""CPU time of one watch-all read (``_tracker.watch_counts()``), the monitor's per-sample count.

A read's cost should follow the rows it returns (the types seen), not every
class alive: a web app imports thousands of classes. The script imports a web
stack (FastAPI, Starlette, uvicorn) and some more classes, makes objects of
``--classes`` new classes, and times ``--reads`` reads (thread CPU time).

    python bench/watch_read.py [--sample 1] [--classes 200] [--extra-classes 3000] [--reads 200]

Run it with ``PYTHONPATH`` set to each build to compare them side by side.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=1, help="watch-all's sample (1: every object)")
    parser.add_argument("--classes", type=int, default=200, help="classes with objects (rows)")
    parser.add_argument("--extra-classes", type=int, default=3000, help="classes alive without objects")
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()

    import fastapi  # noqa: F401  (the classes a web app has alive)
    import uvicorn  # noqa: F401

    from memtracker_web import _tracker

    idle = [type(f"Idle{i}", (), {}) for i in range(args.extra_classes)]
    _tracker.watch_start(sample=args.sample)
    try:
        classes = [type(f"Used{i}", (), {}) for i in range(args.classes)]
        objects = [cls() for cls in classes for _ in range(64)]
        rows = _tracker.watch_counts()  # (a first read checks new rows)
        started = time.thread_time()
        for _ in range(args.reads):
            rows = _tracker.watch_counts()
        per_read = (time.thread_time() - started) / args.reads
    finally:
        _tracker.watch_stop()
    alive = len(idle) + len(classes)
    print(
        f"sample={args.sample} rows={len(rows)} classes made here={alive} "
        f"objects={len(objects)} read: {per_read * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()
