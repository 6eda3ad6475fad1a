"""What one sample of the monitor costs its thread, with watch-all on, in process.

The leak app of bench/leak_apps.py (a shape's) is driven in process by
starlette's TestClient: a round of ``/work`` and ``/`` requests between samples,
``--rounds`` of them, then ``MemoryMonitor.sample()`` timed by the thread's CPU
clock. The first ``--warm`` samples are left out (watch-all's baseline, the
nominations and verification searches of the start). Printed: milliseconds a
sample (median and mean), and of it watch-all's pass over every type it sees
(``_discover``), and how many types that pass saw.

    python bench/monitor_sample.py [--shape healthy] [--samples 60] [--warm 20] [--rounds 30] [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="healthy")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30, help="rounds of /work and / between samples")
    parser.add_argument("--log", default=os.devnull, help="where the monitor's log goes (INFO)")
    args = parser.parse_args()
    os.environ["LEAK_SHAPE"] = args.shape
    os.environ["LEAK_NO_TOOL"] = "1"  # the monitor is made here, sampled by this thread
    sys.path.insert(0, HERE)
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx`")  # (starlette's TestClient)
    from starlette.testclient import TestClient

    import leak_apps

    # the monitor's reports formatted as in a server (written nowhere unless --log)
    log = logging.getLogger("memtracker_web")
    log.addHandler(logging.StreamHandler(open(args.log, "w")))  # noqa: SIM115
    log.setLevel(logging.INFO)
    log.propagate = False

    from memtracker_web.monitor.monitor import MemoryMonitor

    monitor = MemoryMonitor(watch_all=True, interval=1.0)
    discover = monitor._discover
    spent = {"discover": 0}

    def timed_discover(census):  # type: ignore[no-untyped-def]
        started = time.thread_time_ns()
        try:
            return discover(census)
        finally:
            spent["discover"] += time.thread_time_ns() - started

    monitor._discover = timed_discover  # type: ignore[method-assign]
    client = TestClient(leak_apps.app)
    whole, passes = [], []
    try:
        for n in range(args.warm + args.samples):
            for _ in range(args.rounds):
                client.get("/work")
                client.get("/")
            spent["discover"] = 0
            started = time.thread_time_ns()
            monitor.sample()
            if n >= args.warm:
                whole.append((time.thread_time_ns() - started) / 1e6)
                passes.append(spent["discover"] / 1e6)
        reported = sorted({leak["type"] for leak in monitor.snapshot()["leaks"]})
    finally:
        monitor.stop()
    print(
        f"{args.shape}: a sample {statistics.median(whole):.3f} ms (median; mean {statistics.mean(whole):.3f}), "
        f"watch-all's pass {statistics.median(passes):.3f} ms (mean {statistics.mean(passes):.3f}) "
        f"over {len(monitor._watch)} types, {args.samples} samples; reported: {', '.join(reported) or 'nothing'}"
    )


if __name__ == "__main__":
    main()
