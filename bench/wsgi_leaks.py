"""Leaks of other shapes, in Flask and Django under gunicorn: does the monitor find each
by itself, name its type and the line, and how fast? And do both apps stay quiet
when healthy?

For each framework and shape of bench/wsgi_leak_apps.py: ``gunicorn -w 1`` serves the
app (its framework's adapter, ``watch_all=True``, ``interval=1.0``, the rest default),
a client sends ``/work`` and ``/`` at up to 30 rounds a second for ``--seconds``,
then reads ``/debug/memory?format=json`` once. Recorded: the seconds from the first
``/work`` to the expected type's first report (one sample a second), whether that
report's top path starts at the allocating line (the ``# ALLOC`` marker; for objects a
library makes, a logger or a metric's child, its first frame of the app's code), and every
other type reported or analysed (a report of a type that does not explain the leak is
noise; on the healthy app, any is a false alarm).

    python bench/wsgi_leaks.py [--frameworks flask django] [--shapes closure ...] [--seconds 40]

Prints a Markdown table (RESULTS.md keeps one with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# shape => the type a report must name and the ALLOC marker (in wsgi_leak_apps.py) of
# the line its top path must start at; by framework where they differ
EXPECTED: dict = {
    "closure": ("builtins.function", "closure"),
    "bytes": ("builtins.bytes", "bytes"),
    "dataclass": ("wsgi_leak_apps.Visit", "dataclass"),
    "frozenset": ("builtins.frozenset", "frozenset"),
    "method": ("builtins.method", "method"),
    "partial": ("functools.partial", "partial"),
    # Django keeps a receiver as a tuple in Signal.receivers, made in connect();
    # blinker keeps the function itself in a dict
    "signal": {"django": ("builtins.tuple", "signal-django"), "flask": ("builtins.function", "signal-flask")},
    # made by a library called from the app's line: its top path starts in the library,
    # and the app's own frame in it (the report's app_frame) is the line to name
    "logger": ("logging.Logger", "logger"),
    "metric-label": ("prometheus_client.metrics.Counter", "metric-label"),
    # the app's closure; SQLAlchemy wraps it in a function of its own and keys both by
    # a tuple in its registry
    "sqlalchemy-listener": ("builtins.function", "sqlalchemy-listener"),
    "healthy": (None, None),
}
# shapes whose objects a library makes: the right line is the top path's first frame of
# the app's own code, not its first frame
MADE_BY_A_LIBRARY = {"logger", "metric-label"}
SHAPES = list(EXPECTED)

sys.path.insert(0, HERE)
from bench_web import alloc_line, free_port, get, wait_for  # noqa: E402


def run(framework: str, shape: str, seconds: float) -> dict:
    port = free_port()
    env = dict(os.environ, LEAK_FRAMEWORK=framework, LEAK_SHAPE=shape, PYTHONPATH=os.pathsep.join([HERE, ROOT]))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi_leak_apps:app"],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/", f"{framework} {shape}", 200)
        started = time.time()
        rounds = 0
        while time.time() - started < seconds:
            began = time.time()
            get(base + "/work")
            get(base + "/")
            rounds += 1
            time.sleep(max(0.0, 1 / 30 - (time.time() - began)))
        snapshot = json.loads(get(base + "/debug/memory?format=json"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected, marker = EXPECTED[shape][framework] if isinstance(EXPECTED[shape], dict) else EXPECTED[shape]
    leaks = {leak["type"]: leak for leak in snapshot["leaks"]}
    row: dict = {"framework": framework, "shape": shape, "expected": expected, "rounds": rounds}
    if expected is not None and expected in leaks:
        leak = leaks[expected]
        row["reported"] = round(leak["first_detected_at"] - started, 1)
        top = leak["top_paths"][0] if leak["top_paths"] else None
        first_frame = top["path"][0] if top else None
        row["first_frame"] = first_frame
        if shape in MADE_BY_A_LIBRARY and top is not None:
            row["app_frame"] = top["path"][top["app_frame"]] if top["app_frame"] is not None else None
        line = f"wsgi_leak_apps.py:{alloc_line('wsgi_leak_apps.py', marker)} "
        named = row.get("app_frame") if shape in MADE_BY_A_LIBRARY else first_frame
        row["right_line"] = named is not None and named.startswith(line)
    row["other_reports"] = sorted(name for name in leaks if name != expected)
    row["other_verdicts"] = {name: leaks[name]["verdict"] for name in row["other_reports"]}
    row["other_analysed"] = sorted(t["type"] for t in snapshot["types"] if t["analysing"] and t["type"] != expected)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", default=["flask", "django"], choices=["flask", "django"])
    parser.add_argument("--shapes", nargs="+", default=SHAPES, choices=SHAPES)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    rows = []
    for framework in args.frameworks:
        for shape in args.shapes:
            row = run(framework, shape, args.seconds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(
        "| framework | shape | expected type | first report (s) | top frame | right line | other types reported "
        "| other types analysed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['framework']} | {r['shape']} | {r['expected'] or '(none)'} | {r.get('reported', '-')} | "
            f"{r.get('first_frame') or '-'}{' (app: ' + r['app_frame'] + ')' if r.get('app_frame') else ''} | "
            f"{'yes' if r.get('right_line') else 'no' if r['expected'] else '-'} | "
            f"{', '.join(r['other_reports']) or '-'} | {', '.join(r['other_analysed']) or '-'} |"
        )


if __name__ == "__main__":
    main()
