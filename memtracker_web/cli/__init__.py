"""Command line: ``python -m memtracker_web`` / ``memtracker-web``.

Exit codes: 0 fine, 1 ``report`` found a leak (so a CI job can fail on it),
2 usage or runtime error, printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..options import OPTIONS

EXIT_OK, EXIT_LEAK, EXIT_ERROR = 0, 1, 2


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535; 0 picks a free one)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def _prog() -> str:
    return "python -m memtracker_web" if os.path.basename(sys.argv[0]) == "__main__.py" else "memtracker-web"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Find memory leaks in running Python web apps (CPython's reference tracer).",
        epilog="Exit codes: 0 ok, 1 report found a leak, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"memtracker-web {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="serve an example app with a deliberate leak and watch it being found",
        description="Serve a small app whose /leak endpoint leaks, load it from a background thread, and "
        "watch the monitor find the leaking line on the /debug/memory page. Ctrl-C stops it.",
    )
    demo.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000; 0 = any free)")
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; the page answers loopback "
        "clients, others need MEMTRACKER_TOKEN)",
    )
    demo.add_argument("--duration", type=_seconds, metavar="S", help="stop by itself after S seconds")
    demo.add_argument(
        "--interval", type=_seconds, default=1.0, metavar="S", help="seconds between monitor samples (default 1)"
    )
    demo.add_argument(
        "--server",
        choices=("auto", "uvicorn", "wsgiref"),
        default="auto",
        help="auto (default): uvicorn with the ASGI app if installed, else wsgiref with the WSGI app",
    )

    report = commands.add_parser(
        "report",
        help="print a running app's /debug/memory as a terminal report",
        description="Fetch the JSON of a /debug/memory endpoint and print types, growth and leak call paths. "
        "Exits 1 when the monitor has reported a leak, so a CI job can gate on it.",
    )
    report.add_argument("url", metavar="URL", help="the endpoint, e.g. http://127.0.0.1:8000/debug/memory")
    report.add_argument(
        "--token", default=OPTIONS["token"].from_env(), help="bearer token (default: $MEMTRACKER_TOKEN)"
    )
    report.add_argument("--timeout", type=_seconds, default=10.0, metavar="S", help="seconds to wait (default 10)")
    report.add_argument("--json", action="store_true", help="print the snapshot JSON instead of the report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        return _report(args)
    except KeyboardInterrupt:  # Ctrl-C during a fetch: not an error worth a traceback
        print(f"memtracker-web {args.command}: interrupted", file=sys.stderr)
        return EXIT_ERROR


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, run

    try:
        return run(args.host, args.port, duration=args.duration, server=args.server, interval=args.interval)
    except DemoError as exc:
        print(f"memtracker-web demo: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _report(args: argparse.Namespace) -> int:
    from ..render.report import ReportError, fetch, leaks_by_type, render, snapshot_url

    try:
        snapshot = fetch(args.url, token=args.token, timeout=args.timeout)
        shown = snapshot_url(args.url)
    except ReportError as exc:
        print(f"memtracker-web report: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    try:
        text = json.dumps(snapshot, indent=2) if args.json else render(snapshot, shown)
        leaked = bool(leaks_by_type(snapshot))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a snapshot fetch() let through
        print(
            f"memtracker-web report: error: {shown} answered a snapshot this report cannot read "
            f"({type(exc).__name__}: {exc})",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ERROR
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `report URL | head`: the exit code still tells
        from .demo import silence_stdout

        silence_stdout()
    return EXIT_LEAK if leaked else EXIT_OK
