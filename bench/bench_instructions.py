"""Instruction counts (valgrind callgrind) of the core's workloads per configuration.

Wall-clock ratios on a shared 2-core machine are noisy; instructions executed
are repeatable whatever else runs. Each configuration runs the workload in a
fresh interpreter under callgrind twice, with n=0 and with the full size; the
difference is the workload's own instruction count.

One heap layout is not enough: with a given hash seed, where objects land
decides how often obmalloc empties and refills pools, which moves a run by up
to 1-2% whatever is being measured (one seed gave our count-only request run
1.041x, three others 1.030x). So each configuration runs under several
PYTHONHASHSEED values; a ratio is taken to the baseline of the same seed and
the median over seeds is reported.

    python bench/bench_instructions.py [--configs NAME ...] [--seeds 1 2 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import sys
sys.path.insert(0, {bench!r})
import bench_core as b
config = next(c for c in b.CONFIGS if c.name == {config!r})
workload = b.WORKLOADS[{workload!r}]
workload(50)                     # specialise
config.start()
try:
    workload({n})
finally:
    config.stop()
"""

SIZES = {"allocation-heavy": 20000, "request-handling": 1000}


def instructions(config: str, workload: str, n: int, seed: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        code = CHILD.format(bench=HERE, config=config, workload=workload, n=n)
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=os.path.dirname(HERE),
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        match = re.search(r"Collected : (\d+)", proc.stderr)
        return int(match.group(1))


def workload_instructions(config: str, workload: str, seed: int) -> int:
    return instructions(config, workload, SIZES[workload], seed) - instructions(config, workload, 0, seed)


def main() -> None:
    sys.path.insert(0, HERE)
    import bench_core as b

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", default=[c.name for c in b.CONFIGS])
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    configs = args.configs if "baseline" in args.configs else ["baseline", *args.configs]
    jobs = [(w, c, seed) for w in SIZES for c in configs for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: workload_instructions(job[1], job[0], job[2]), jobs), strict=True))
    print(f"seeds {args.seeds}; ratio = median over seeds of (config / baseline of the same seed)")
    for workload in SIZES:
        for config in configs:
            ratios = [counts[(workload, config, s)] / counts[(workload, "baseline", s)] for s in args.seeds]
            median_count = statistics.median(counts[(workload, config, s)] for s in args.seeds)
            print(
                f"{workload:>17} {config:<40} {median_count:>14,.0f}  {statistics.median(ratios):.3f}x"
                f"  (seeds: {' '.join(f'{r:.3f}' for r in ratios)})",
                flush=True,
            )


if __name__ == "__main__":
    main()
