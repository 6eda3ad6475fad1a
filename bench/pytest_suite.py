"""What the pytest plugin adds to a test suite's run time: this project's own suite,
run plain, with ``--memtracker-leaks`` on named classes, with watch-all, and with
pytest-memray's ``--memray`` (what its ``limit_leaks`` marker needs), interleaved.

    python bench/pytest_suite.py --rounds 2          # from the repository root

The python running it must have the package (editable) and, for the memray
variant, pytest-memray installed. The plugin's own tests are left out: they run
pytest in subprocesses that no option of the outer run reaches.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

NAMED = ["--memtracker-leaks",
         "--memtracker-type", "memtracker_web.monitor.MemoryMonitor",
         "--memtracker-type", "memtracker_web.capture.Capture",
         "--memtracker-type", "memtracker_web.tracker.Tracker"]
VARIANTS = {
    "plain": [],
    "named classes": NAMED,
    "watch-all": ["--memtracker-leaks", "--memtracker-watch-all"],
    "pytest-memray --memray": ["--memray"],
}


def run(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "dev", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--ignore", "tests/test_pytest_plugin.py", *args],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return elapsed, re.sub(r" in [\d.]+s.*", "", summary.strip("= "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", action="append", default=[], help="a variant to leave out")
    options = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS if name not in options.skip}
    outcomes: dict[str, str] = {}
    for round_ in range(options.rounds):
        for name in times:
            elapsed, outcome = run(VARIANTS[name])
            times[name].append(elapsed)
            outcomes[name] = outcome
            print(f"round {round_ + 1}: {name}: {elapsed:.1f} s ({outcome})", flush=True)
    base = min(times["plain"])
    print(f"\n| variant | wall, best of {options.rounds} | vs plain | outcome |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.1f} s | {min(values) / base:.3f}x | {outcomes[name]} |")


if __name__ == "__main__":
    main()
