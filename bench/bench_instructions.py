"""Instruction counts (valgrind callgrind) of the core's workloads per configuration.

Wall-clock ratios on a shared 2-core machine are noisy; instructions executed
are repeatable whatever else runs. Each configuration runs the workload in a
fresh interpreter under callgrind twice, with n=0 and with the full size; the
difference is the workload's own instruction count. Ratios are to baseline.

    python bench/bench_instructions.py [--configs NAME ...]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

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


def instructions(config: str, workload: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        code = CHILD.format(bench=HERE, config=config, workload=workload, n=n)
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
            capture_output=True, text=True, env=env, cwd=os.path.dirname(HERE),
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        match = re.search(r"Collected : (\d+)", proc.stderr)
        return int(match.group(1))


def main() -> None:
    sys.path.insert(0, HERE)
    import bench_core as b

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", default=[c.name for c in b.CONFIGS])
    args = parser.parse_args()
    results: dict = {}
    for workload, n in SIZES.items():
        base = None
        for config in args.configs:
            count = instructions(config, workload, n) - instructions(config, workload, 0)
            if config == "baseline":
                base = count
            results.setdefault(config, {})[workload] = count
            print(f"{workload:>17} {config:<32} {count:>14,d}"
                  + (f"  {count / base:.3f}x" if base else ""), flush=True)


if __name__ == "__main__":
    main()
