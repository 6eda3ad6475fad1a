"""A leak in a real app: the Flask shop of bench/orm_apps.py with one route that registers
a SQLAlchemy listener per request (``event.listen(engine, "before_cursor_execute", audit)``
with a closure made there, never removed), under ``gunicorn -w 1`` with the middleware as
README says (``watch_all=True``, ``interval=1.0``, the rest default).

Each run: a fresh sqlite database, 5 s of the rendered page alone, then ``--seconds`` of
the leaking route and the shop's other routes (rendered page, a customer's page, a JSON
search, the aggregate) alternating at 30 requests a second, then one read of
``/debug/memory?format=json``. Recorded: the seconds from the leak's start to the first
report of ``builtins.function``, the top path's first frame and whether it is the
closure's line, and the other types reported or analysed. Its listeners' registry keys
(tuples holding ints), the closures' cells, SQLAlchemy's wrapper of each listener and
the shop's classes warming up as its routes are first used all grow beside it.

    python bench/orm_leak.py [--runs 3] [--seconds 40]

Prints one JSON line a run, then a Markdown table; exits 1 when a run did not report the
function at the closure's line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

sys.path.insert(0, HERE)
from bench_web import alloc_line, free_port, get, wait_for  # noqa: E402

EXPECTED = "builtins.function"
MIX = ["/", "/user/5", "/api/orders?q=note&n=5", "/stats"]


def run(seconds: float, seed: int) -> dict:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(
            os.environ,
            ORM_FRAMEWORK="flask",
            ORM_LEAK="listener",
            ORM_DB=os.path.join(scratch, "shop.db"),
            PYTHONPATH=os.pathsep.join([HERE, ROOT]),
        )
        subprocess.run([sys.executable, "orm_apps.py"], cwd=HERE, env=env, check=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "orm_apps:app"],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(base + "/", "orm_leak", 400)
            began = time.time()
            while time.time() - began < 5:
                get(base + "/")
                time.sleep(1 / 30)
            started, sent = time.time(), 0
            while time.time() - started < seconds:
                at = time.time()
                get(base + ("/leak" if sent % 2 == 0 else rnd.choice(MIX)))
                sent += 1
                time.sleep(max(0.0, 1 / 30 - (time.time() - at)))
            snapshot = json.loads(get(base + "/debug/memory?format=json"))
        finally:
            server.terminate()
            server.wait(timeout=60)
    leaks = {leak["type"]: leak for leak in snapshot["leaks"]}
    row: dict = {"mode": snapshot["mode"], "requests": sent}
    if EXPECTED in leaks:
        leak = leaks[EXPECTED]
        row["reported"] = round(leak["first_detected_at"] - started, 1)
        first_frame = leak["top_paths"][0]["path"][0] if leak["top_paths"] else None
        row["first_frame"] = first_frame
        line = f"orm_apps.py:{alloc_line('orm_apps.py', 'listener')} "
        row["right_line"] = first_frame is not None and first_frame.startswith(line)
    row["other_reports"] = sorted(name for name in leaks if name != EXPECTED)
    row["other_analysed"] = sorted(t["type"] for t in snapshot["types"] if t["analysing"] and t["type"] != EXPECTED)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    rows = []
    for n in range(args.runs):
        row = run(args.seconds, n)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print("| run | first report of builtins.function (s) | top frame | right line | other types reported | analysed |")
    print("|---|---|---|---|---|---|")
    for n, r in enumerate(rows, 1):
        print(
            f"| {n} | {r.get('reported', '-')} | {r.get('first_frame', '-')} | "
            f"{'yes' if r.get('right_line') else 'no'} | {', '.join(r['other_reports']) or '-'} | "
            f"{', '.join(r['other_analysed']) or '-'} |"
        )
    sys.exit(0 if all(r.get("right_line") for r in rows) else 1)


if __name__ == "__main__":
    main()
