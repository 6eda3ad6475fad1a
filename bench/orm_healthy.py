"""Healthy apps with an ORM, templates and sessions under gunicorn: does the monitor stay
quiet? (SQLAlchemy is needed for the Flask and FastAPI apps: ``pip install -e ".[bench]"``.)

For each framework of bench/orm_apps.py: a fresh sqlite database, ``gunicorn -w 2``
serving the app (the middleware as README says: ``watch_all=True``, ``interval=1.0``),
and four clients with their own session cookies sending a mix of requests (30% the
rendered page, 20% a customer's page, 20% a JSON search whose query string varies,
15% new orders, 10% notes edited, 5% an aggregate) at ``--rate`` requests a second in
all, for ``--seconds``. Recorded, from both workers' logs: types watch-all nominated,
types verified as kept by the app, types analysed (call paths recorded), leak
reports; and the requests that failed. On a healthy app every analysis and every
report is a false alarm.

    python bench/orm_healthy.py [--frameworks flask fastapi django] [--seconds 600] [--rate 30]

Prints one JSON line per framework, then a Markdown table (RESULTS.md keeps one with the
command); exits 1 if any type was analysed or reported, a request failed, or the
monitor ran in census mode (no engine: nothing would be analysed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

sys.path.insert(0, HERE)
from bench_web import free_port, get, wait_for  # noqa: E402

CLIENTS = 4
FRAMEWORKS = ["flask", "fastapi", "django"]
# (what the monitor logs: see memtracker_web/monitor/monitor.py)
NOMINATED = re.compile(r"^(\d+) memtracker_web: watch-all found (\S+) growing")
VERIFIED = re.compile(r"^(\d+) memtracker_web: (\S+) grows and its new objects are (.*)$")
ANALYSED = re.compile(r"^(\d+) memtracker_web: (\S+) grew \d+ times; recording its allocation call paths")
REPORTED = re.compile(r"^(\d+) MEMORY LEAK DETECTED: (\S+):")


def request_of(rnd: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
    """One request of the mix: method, path, body, headers."""
    pick = rnd.random()
    if pick < 0.3:
        return "GET", "/", None, {}
    if pick < 0.5:
        return "GET", f"/user/{rnd.randrange(1, 230)}", None, {}  # (some are no customer: 404)
    if pick < 0.7:
        query = rnd.choice(["", "note 1", "x" * rnd.randrange(5), f"note {rnd.randrange(3000)}"])
        return "GET", "/api/orders?" + urllib.parse.urlencode({"q": query, "n": rnd.randrange(5, 40)}), None, {}
    if pick < 0.85:
        items = [[f"SKU{rnd.randrange(400)}", rnd.randrange(1, 4)] for _ in range(rnd.randrange(1, 5))]
        body = json.dumps({"user": rnd.randrange(1, 201), "note": f"n{rnd.randrange(10**6)}", "items": items})
        return "POST", "/order", body.encode(), {"Content-Type": "application/json"}
    if pick < 0.95:
        body = urllib.parse.urlencode({"note": f"edited {rnd.randrange(10**6)}"})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return "POST", f"/order/{rnd.randrange(1, 4000)}/note", body.encode(), headers
    return "GET", "/stats", None, {}


def client(port: int, seed: int, seconds: float, rate: float, counts: dict, lock: threading.Lock) -> None:
    """Send the mix at ``rate`` requests a second for ``seconds``, keeping the session
    cookie the app sets; count the answers (an error other than 404, or none: failed)."""
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cookie = None
    end = next_at = time.monotonic()
    end += seconds
    while time.monotonic() < end:
        method, path, body, headers = request_of(rnd)
        if cookie:
            headers["Cookie"] = cookie
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            cookie = (response.getheader("Set-Cookie") or cookie or "").split(";")[0] or None
            # (a customer or order that is not there is a 404; any other 4xx is a broken request)
            outcome = "answered" if response.status < 400 or response.status == 404 else "failed"
        except (OSError, http.client.HTTPException):
            outcome = "failed"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            counts[outcome] += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))


def run(framework: str, seconds: float, rate: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        env = dict(
            os.environ,
            ORM_FRAMEWORK=framework,
            ORM_DB=os.path.join(scratch, "shop.db"),
            PYTHONPATH=os.pathsep.join([HERE, ROOT]),
        )
        subprocess.run([sys.executable, "orm_apps.py"], cwd=HERE, env=env, check=True)
        port = free_port()
        log_path = os.path.join(scratch, "server.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "orm_apps:app"]
                + (["-k", "uvicorn_worker.UvicornWorker"] if framework == "fastapi" else []),
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(f"http://127.0.0.1:{port}/stats", framework, 400)
            counts, lock = {"answered": 0, "failed": 0}, threading.Lock()
            clients = [
                threading.Thread(target=client, args=(port, seed, seconds, rate / CLIENTS, counts, lock))
                for seed in range(CLIENTS)
            ]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            # (census mode, an engine that did not load, would be quiet for want of paths)
            mode = json.loads(get(f"http://127.0.0.1:{port}/debug/memory?format=json"))["mode"]
        finally:
            server.terminate()
            server.wait(timeout=60)
        with open(log_path) as fh:
            lines = fh.read().splitlines()
    row: dict = {"framework": framework, "mode": mode, "seconds": seconds, **counts}
    for key, pattern in (
        ("nominated", NOMINATED),
        ("verified", VERIFIED),
        ("analysed", ANALYSED),
        ("reported", REPORTED),
    ):
        row[key] = sorted({f"{m[2]} ({m[1]})" for m in map(pattern.match, lines) if m})
    row["verdicts"] = sorted({f"{m[2]}: {m[3]}" for m in map(VERIFIED.match, lines) if m})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", default=FRAMEWORKS, choices=FRAMEWORKS)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=30.0, help="requests a second, all clients together")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for framework in args.frameworks:
        row = run(framework, args.seconds, args.rate, args.workers)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print("| framework | mode | requests (failed) | types nominated | verified as kept | analysed | reported |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['framework']} | {r['mode']} | {r['answered'] + r['failed']} ({r['failed']}) | "
            f"{len(r['nominated'])} | "
            f"{', '.join(r['verdicts']) or '-'} | {', '.join(r['analysed']) or '-'} | "
            f"{', '.join(r['reported']) or '-'} |"
        )
    sys.exit(1 if any(r["analysed"] or r["reported"] or r["failed"] or r["mode"] != "exact" for r in rows) else 0)


if __name__ == "__main__":
    main()
