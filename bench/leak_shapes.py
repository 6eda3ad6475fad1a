"""Leak shapes through a real server: does the monitor find each leak by itself, name its
type and the line, and how fast? And does a healthy app stay quiet?

For each shape of bench/leak_apps.py: uvicorn serves the app (our middleware with
watch_all=True, the rest default but interval=1 s), a client sends ``/work`` and
``/`` at about 30 requests/s each.
Recorded: seconds and samples until the expected type was nominated, analysed and
first reported; whether the report's top path starts at the allocating line (the
``# ALLOC`` marker); which other types were reported (a report naming a type that
does not explain the leak is noise). The healthy run counts reports and
escalations of any type. All of it is read from the monitor's log (INFO), not
by polling the page, so the server spends no CPU time on the benchmark's
questions (the page is read once, after the first report, for its sample count).

    python bench/leak_shapes.py [--shapes user-class lru ...] [--seconds 60] [--healthy-seconds 180]

The same app without our middleware runs beside it, in the same seconds: each
round of the load goes to both, one request to one and the same to the other,
so the two share whatever else the machine does meanwhile (a baseline run
minutes apart moved the ratio by up to 17 points). A third copy, the floor (from
CPython 3.13), is the app alone with a reference tracer that does nothing: what
any tool built on CPython's tracer costs before doing anything. Compared: the
app's CPU time per request (the server process's, in nanoseconds) with the tool over without it,
in each phase of the tooled run: before the expected type was nominated, while
it was only counted, while it was analysed. The same split by thread (Linux names Python's threads from 3.14):
the threads serving requests, where the tracer's work in every allocation
is, and the monitor's sampling thread, whose work is per sample (one a second
here, sixty times fewer at the default interval) and does not grow with the
load.

Prints a Markdown table (RESULTS.md keeps one with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_web import alloc_line, free_port, get  # noqa: E402
from leak_apps import EXPECTED  # noqa: E402


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time of a process (every thread it ran, ended ones too), or of one of its
    threads, so far, to the nanosecond. Not /proc/<pid>/stat's user and system times:
    those count 10 ms ticks, +-1% of a half-minute phase at this load before any
    other noise. A process: Linux's CPU-time clock of another process, the clock id
    clock_getcpuclockid(3) makes (CPUCLOCK_SCHED of the pid). A thread: the time the
    scheduler ran it, from /proc (that clock exists for threads of one's own process
    only)."""
    if tid is None:
        return time.clock_gettime_ns((~pid << 3) | 2) / 1e9
    with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9


MONITOR_THREAD = "memtracker-moni"  # the monitor thread's name as Linux keeps it (15 bytes; set since 3.14)


def monitor_thread(pid: int) -> int | None:
    """The thread id of the monitor's sampling thread, or None (not started, or an
    interpreter before 3.14, which does not name its threads for the system)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                if fh.read().strip() == MONITOR_THREAD:
                    return int(tid)
        except OSError:
            continue
    return None


# Where each server's numbers are in a timeline point: (seconds, then cpu seconds and
# requests of each server, then the monitor thread's cpu seconds)
COLUMNS = {"tool": (1, 2), "alone": (3, 4), "floor": (5, 6)}
MONITOR_COLUMN = 7


def cpu_per_request(timeline: list, start: float, end: float, serving: bool = False, app: str = "tool") -> float | None:
    """CPU seconds per request between two times of a run's timeline, or None when
    too few requests fell there (or the server did not run). ``app``: the app with
    the tool, ``alone`` (without it, beside it) or ``floor`` (without it, with a
    reference tracer that does nothing: what CPython's call of a tracer costs by
    itself). ``serving``: the tool's app without the monitor thread's time (what
    the threads serving requests spent, the tracer's work in them included)."""
    inside = [p for p in timeline if start <= p[0] <= end]
    cpu, requests = COLUMNS[app]
    if len(inside) < 2 or inside[0][cpu] is None or inside[-1][requests] - inside[0][requests] < 100:
        return None
    spent = inside[-1][cpu] - inside[0][cpu]
    if serving:
        if inside[0][MONITOR_COLUMN] is None or inside[-1][MONITOR_COLUMN] is None:
            return None  # the monitor thread not found (yet): no split
        spent -= inside[-1][MONITOR_COLUMN] - inside[0][MONITOR_COLUMN]
    if spent <= 0:
        # (a clock that did not advance over 100 requests: not a cost, a reading that
        # failed; run 85's str-set shape read none for the app alone over one phase,
        # and its ratio divided by zero)
        return None
    return spent / (inside[-1][requests] - inside[0][requests])


def monitor_ms_per_second(timeline: list, start: float, end: float) -> float | None:
    """The monitor thread's CPU milliseconds per second of the run between two times."""
    inside = [p for p in timeline if start <= p[0] <= end]
    if (
        len(inside) < 2
        or inside[-1][0] - inside[0][0] < 1.0
        or inside[0][MONITOR_COLUMN] is None
        or inside[-1][MONITOR_COLUMN] is None
    ):
        return None
    return (inside[-1][MONITOR_COLUMN] - inside[0][MONITOR_COLUMN]) * 1000 / (inside[-1][0] - inside[0][0])


def has_floor() -> bool:
    """Whether the floor can run here: it needs the engine's reference tracer (CPython
    3.13+, not a free-threaded build), which a child with this interpreter has too."""
    from memtracker_web.core.engine import engine_status

    return bool(engine_status()["available"])


def start_server(shape: str, tool: bool, log: bool, floor: bool = False) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, LEAK_SHAPE=shape, LEAK_INTERVAL="1.0", LEAK_LOG="1")
    if not tool:
        env["LEAK_NO_TOOL"] = "1"
    if floor:
        env["LEAK_NOOP_TRACER"] = "1"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            HERE,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "leak_apps:app",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if log else subprocess.DEVNULL,
        text=True,
    )
    return server, f"http://127.0.0.1:{port}"


def run_shape(
    shape: str,
    seconds: float,
    rate: float,
    after_report: float = 0.0,
    log_dir: str | None = None,
    control: bool = False,
) -> dict:
    server, base = start_server(shape, tool=not control, log=True)
    alone, alone_base = start_server(shape, tool=False, log=False)
    floor, floor_base = start_server(shape, tool=False, log=False, floor=True) if has_floor() else (None, None)
    # each server, its address and its place in `sent`
    servers = [(server, base, 0), (alone, alone_base, 1)] + ([(floor, floor_base, 2)] if floor else [])
    targets = [(where, which) for _, where, which in servers]
    stop = threading.Event()
    sent = [0, 0, 0]  # requests answered by the app with the tool, by the app alone, by the floor's

    def load() -> None:
        period = 1.0 / rate
        turn = 0
        while not stop.is_set():
            # the same requests to each; first in a round (just after the pause, when
            # caches are cold) each in turn
            order = targets[turn % len(targets) :] + targets[: turn % len(targets)]
            turn += 1
            for path in ("/work", "/"):
                for where, which in order:
                    try:
                        get(where + path)
                        sent[which] += 1
                    except OSError:
                        pass
            stop.wait(period)

    result = {
        "shape": shape,
        "expected": EXPECTED[shape][0],
        "nominated": None,
        "verified": None,
        "analysing": None,
        "reported": None,
        "right_line": None,
        "first_frame": None,
        "other_reports": set(),
        "escalated_others": set(),
        "samples_at_report": None,
        "timeline": [],
        "nominations": set(),
        "set_aside": set(),
    }
    want, marker = EXPECTED[shape]
    line = alloc_line("leak_apps.py", marker) if marker else None
    clock = {"started": None}
    tail: list = []

    def read_log() -> None:
        # The monitor's log (leak_apps.py turns on INFO): nominations, analyses and
        # reports as they happen, read here instead of polling the page, whose
        # answers would cost the server CPU time the app alone does not spend.
        report = None
        log = open(os.path.join(log_dir, f"{shape}.log"), "w") if log_dir else None  # noqa: SIM115
        for text in server.stderr:
            if log is not None:
                log.write(text)
                log.flush()
            tail.append(text)
            del tail[:-50]
            if clock["started"] is None:
                continue
            now = round(time.monotonic() - clock["started"], 1)
            if report is not None and text.startswith(" "):
                if text.startswith("    <- ") and report["first"] is None:
                    report["first"] = text[7:].split(" in ")[0].strip()
                    settle(report)
                continue
            if report is not None and report["first"] is None:
                settle(report)  # a report without paths
            report = None
            if found := re.search(r"watch-all found (\S+) growing", text):
                result["nominations"].add(found[1])
                if found[1] == want and result["nominated"] is None:
                    result["nominated"] = now
            elif found := re.search(r"memtracker_web: (\S+) grew \d+ times; recording", text):
                if found[1] == want:
                    result["analysing"] = result["analysing"] if result["analysing"] is not None else now
                else:
                    result["escalated_others"].add(found[1])
            elif found := re.search(r"memtracker_web: (\S+) grows and its new objects are kept by", text):
                if found[1] == want and result["verified"] is None:
                    result["verified"] = now
            elif found := re.search(r"memtracker_web: (\S+) grows, not a leak for now: (.*)", text):
                result["set_aside"].add(f"{found[1]} ({found[2].strip()})")
            elif found := re.search(r"MEMORY LEAK DETECTED: (\S+): ", text):
                report = {"type": found[1], "at": now, "first": None}

    def settle(report: dict) -> None:
        if report["type"] != want:
            result["other_reports"].add(f"{report['type']} ({report['first']})")
        elif result["reported"] is None:
            result["reported"] = report["at"]
            result["first_frame"] = report["first"]
            result["right_line"] = report["first"] == f"leak_apps.py:{line}"

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        for process, where, _ in servers:
            while True:
                try:
                    get(where + "/")
                    break
                except OSError as err:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"{shape}: the server did not start: {''.join(tail)[-2000:]}") from err
                    time.sleep(0.2)
        loader = threading.Thread(target=load, daemon=True)
        monitor_tid = None
        started = clock["started"] = time.monotonic()
        loader.start()
        stop_at = started + seconds
        while time.monotonic() < stop_at:
            time.sleep(0.5)
            now = round(time.monotonic() - started, 1)
            if monitor_tid is None:
                monitor_tid = monitor_thread(server.pid)
            watcher = cpu_seconds(server.pid, monitor_tid) if monitor_tid is not None else None
            floor_cpu = cpu_seconds(floor.pid) if floor else None
            result["timeline"].append(
                (now, cpu_seconds(server.pid), sent[0], cpu_seconds(alone.pid), sent[1], floor_cpu, sent[2], watcher)
            )
            if want is not None and result["reported"] is not None and result["samples_at_report"] is None:
                # once: how many samples the monitor had taken by then
                snap = json.loads(get(base + "/debug/memory?format=json"))
                result["samples_at_report"] = snap["samples"] - round(now - result["reported"])
                stop_at = min(stop_at, started + result["reported"] + after_report)
        result["requests"] = sent[0]
        result["seconds"] = round(time.monotonic() - started, 1)
        if not control:
            # after the measured seconds: how long verification searches held the app's threads off
            snap = json.loads(get(base + "/debug/memory?format=json"))
            result["held_off"] = snap.get("watch", {}).get("held_off")
    finally:
        stop.set()
        for process, _, _ in servers:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return result


PHASES = ("before nomination", "counting", "analysing")


def phase_costs(row: dict) -> dict:
    """Per phase, the app's CPU time per request with the tool over the app alone's
    in the same seconds, and the floor's (a no-op reference tracer) over the app
    alone's (None: the phase was too short to measure)."""
    end = row["seconds"]
    nominated = row["nominated"] if row["nominated"] is not None else end
    analysing = row["analysing"] if row["analysing"] is not None else end
    windows = {"before nomination": (0.0, nominated), "counting": (nominated, analysing), "analysing": (analysing, end)}
    costs = {}
    for phase, (start, stop) in windows.items():
        ours = cpu_per_request(row["timeline"], start, stop)
        alone = cpu_per_request(row["timeline"], start, stop, app="alone")
        floor = cpu_per_request(row["timeline"], start, stop, app="floor")
        serving = cpu_per_request(row["timeline"], start, stop, serving=True)
        costs[phase] = None if ours is None or alone is None else round(ours / alone, 3)
        costs[phase + " floor"] = None if floor is None or alone is None else round(floor / alone, 3)
        costs[phase + " serving"] = None if serving is None or alone is None else round(serving / alone, 3)
        # the monitor thread's work is per sample: at the default interval (60 s, not
        # the 1 s here) a sixtieth of it, over the same requests
        costs[phase + " at 60 s"] = (
            None
            if ours is None or serving is None or alone is None
            else round((serving + (ours - serving) / 60) / alone, 3)
        )
        costs[phase + " monitor"] = monitor_ms_per_second(row["timeline"], start, stop)
        costs[phase + " seconds"] = round(stop - start, 1)
    whole = cpu_per_request(row["timeline"], 0.0, end, app="alone")
    costs["baseline ms/request"] = None if whole is None else round(whole * 1000, 3)
    return costs


def dash(value: float | None) -> str:
    return "-" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="*", default=[s for s in EXPECTED if s != "healthy"])
    parser.add_argument("--seconds", type=float, default=60.0, help="per leak shape, at most")
    parser.add_argument("--healthy-seconds", type=float, default=180.0)
    parser.add_argument("--rate", type=float, default=30.0, help="rounds of /work and / per second")
    parser.add_argument(
        "--after-report",
        type=float,
        default=15.0,
        help="seconds a shape runs on after its first report (the analysing phase's CPU time)",
    )
    parser.add_argument("--log-dir", help="keep each shape's server log (the monitor's INFO lines) here")
    parser.add_argument(
        "--control",
        action="store_true",
        help="both apps without the tool: what the comparison reads when nothing differs (its noise)",
    )
    args = parser.parse_args()
    if args.log_dir:
        # Made here, before any server starts: the log reader runs in a thread, where a
        # missing directory would end it silently and lose every nomination after.
        os.makedirs(args.log_dir, exist_ok=True)
    rows = []
    runs = [(shape, args.seconds) for shape in args.shapes]
    if args.healthy_seconds > 0:
        runs.append(("healthy", args.healthy_seconds))
    for shape, seconds in runs:
        row = run_shape(
            shape, seconds, args.rate, after_report=args.after_report, log_dir=args.log_dir, control=args.control
        )
        row["costs"] = phase_costs(row)
        rows.append(row)
        print(
            json.dumps({k: sorted(v) if isinstance(v, set) else v for k, v in row.items() if k != "timeline"}),
            flush=True,
        )
    print()
    print(
        "| shape | expected type | nominated (s) | verified (s) | analysing (s) | first report (s, samples) "
        "| top frame | right line | other types reported | other types analysed | set aside (why) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        report = "-" if r["reported"] is None else f"{r['reported']} ({r['samples_at_report']})"
        print(
            f"| {r['shape']} | {r['expected'] or '(none)'} | {dash(r['nominated'])} | {dash(r['verified'])} "
            f"| {dash(r['analysing'])} | {report} | {r['first_frame'] or '-'} "
            f"| {'yes' if r['right_line'] else 'no' if r['right_line'] is False else '-'} "
            f"| {', '.join(sorted(r['other_reports'])) or '-'} | {', '.join(sorted(r['escalated_others'])) or '-'} "
            f"| {'; '.join(sorted(r['set_aside'])) or '-'} |"
        )
    print()
    print("CPU time per request with the tool / the app alone beside it, in the same seconds (how long the")
    print("phase lasted), and after the slash the floor's: the app alone with a reference tracer that does")
    print("nothing, what CPython's call of a tracer at every allocation and release costs by itself:")
    print()
    print("| shape | app alone (ms/request) | " + " | ".join(f"{p}: tool (s) / floor" for p in PHASES) + " |")
    print("|---|---|" + "---|" * len(PHASES))
    for r in rows:
        c = r["costs"]
        cells = [
            f"{c[p]:.3f}x ({c[p + ' seconds']} s) / {dash(c[p + ' floor'])}{'x' if c[p + ' floor'] else ''}"
            if c[p] is not None
            else "-"
            for p in PHASES
        ]
        print(
            f"| {r['shape']} | {c['baseline ms/request'] if c['baseline ms/request'] is not None else '-'} | "
            + " | ".join(cells)
            + " |"
        )
    print()
    print("The same split by thread: the threads serving requests (the tracer's work in each allocation is")
    print("there) over the app alone, and the monitor thread's CPU milliseconds per second (its samples, one")
    print("a second here: verification searches, reports; at the default interval of 60 s, a sixtieth):")
    print()
    print(
        "| shape | "
        + " | ".join(f"{p}: serving / monitor ms/s / whole at a 60 s interval (computed)" for p in PHASES)
        + " |"
    )
    print("|---|" + "---|" * len(PHASES))
    for r in rows:
        c = r["costs"]
        cells = [
            f"{c[p + ' serving']:.3f}x / {c[p + ' monitor']:.1f} / {c[p + ' at 60 s']:.3f}x"
            if c[p + " serving"] is not None and c[p + " monitor"] is not None and c[p + " at 60 s"] is not None
            else "-"
            for p in PHASES
        ]
        print(f"| {r['shape']} | " + " | ".join(cells) + " |")
    print()
    print("Verification searches, during which no app thread runs (the snapshot's watch.held_off):")
    print()
    print("| shape | searches | held off in all (ms) | longest (ms) |")
    print("|---|---|---|---|")
    for r in rows:
        held = r.get("held_off") or {}
        if held:
            print(
                f"| {r['shape']} | {held['times']} | {held['seconds'] * 1000:.1f} "
                f"| {held['longest_seconds'] * 1000:.1f} |"
            )


if __name__ == "__main__":
    main()
