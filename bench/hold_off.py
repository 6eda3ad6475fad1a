"""What holding the app's threads off costs them: the latency a thread that sleeps 1 ms
at a time sees around a block of ``retention.app_threads_held_off`` (a verification
search's), beside a thread that computes without pause, against the same block's
work run without it.

    python bench/hold_off.py --rounds 20 --block-ms 20

The sleeper's lateness is how long it waited for the GIL after its sleep: with the
switch interval at 5 ms, the computing thread gives it up within about 5 ms; while a
block waits to start, the interval is HOLD_OFF_INTERVAL (50 ms), and during the block
itself no thread runs. Each round's figure is the sleeper's worst lateness over the
block and 50 ms after it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from memtracker_web.monitor import retention  # noqa: E402


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block-ms", type=float, default=20.0, help="CPU time of the block's own work")
    args = parser.parse_args()
    stop = threading.Event()
    late: list[float] = []

    def compute() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    def sleeper() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            late.append(time.perf_counter() - started - 0.001)

    threads = [threading.Thread(target=compute), threading.Thread(target=sleeper)]
    for thread in threads:
        thread.start()
    results: dict[str, list[float]] = {"without": [], "held off": []}
    try:
        time.sleep(0.2)
        for _ in range(args.rounds):
            for name in results:  # alternated, so that both see the same machine
                late.clear()
                if name == "held off":
                    with retention.app_threads_held_off():
                        spin(args.block_ms / 1000)
                else:
                    spin(args.block_ms / 1000)
                time.sleep(0.05)
                results[name].append(max(late) * 1000)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(
        f"CPython {sys.version.split()[0]}, a block of {args.block_ms:g} ms, {args.rounds} rounds, "
        f"HOLD_OFF_INTERVAL {retention.HOLD_OFF_INTERVAL * 1000:g} ms"
    )
    print("| sleeper's worst lateness (ms) | median | max |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
