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

NAMED = [
    "--memtracker-leaks",
    "--memtracker-type",
    "memtracker_web.monitor.MemoryMonitor",
    "--memtracker-type",
    "memtracker_web.core.capture.Capture",
    "--memtracker-type",
    "memtracker_web.core.tracker.Tracker",
]
VARIANTS = {
    "plain": [],
    "named classes": NAMED,
    "watch-all": ["--memtracker-leaks", "--memtracker-watch-all"],
    "pytest-memray --memray": ["--memray"],
}


def run(args: list[str], log: str = "") -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ignore",
            "tests/integrations/test_pytest_plugin.py",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if log:
        with open(log, "w") as out:
            out.write(done.stdout + done.stderr)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
    return elapsed, re.sub(r" in [\d.]+s.*", "", summary.strip("= "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", action="append", default=[], help="a variant to leave out")
    parser.add_argument("--log-dir", default="", help="keep each run's pytest output there")
    options = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS if name not in options.skip}
    outcomes: dict[str, str] = {}
    for round_ in range(options.rounds):
        for name in times:
            log = f"{options.log_dir}/{name.replace(' ', '_')}.{round_ + 1}.log" if options.log_dir else ""
            elapsed, outcome = run(VARIANTS[name], log)
            times[name].append(elapsed)
            outcomes[name] = outcome
            print(f"round {round_ + 1}: {name}: {elapsed:.1f} s ({outcome})", flush=True)
    base = min(times["plain"]) if "plain" in times else float("nan")
    print(f"\n| variant | wall, best of {options.rounds} | vs plain | outcome |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.1f} s | {min(values) / base:.3f}x | {outcomes[name]} |")


if __name__ == "__main__":
    main()
