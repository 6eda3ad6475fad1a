"""Instructions a request of the whole uvicorn server, by web_app mode: the
web benchmark's question answered without the wall clock's noise.

    python bench/server_instructions.py [--requests 2000] [--connections 1] [--modes bare noop-tracer ...]

Each mode's server (uvicorn, one worker, bench/web_app.py) runs twice under
valgrind --tool=callgrind and serves 50 warm-up requests and then 0 or N
keep-alive `GET /` on loopback, from one connection or from several at once
(like wrk's -c, but every connection makes an exact number of requests, so N is
known exactly); the difference of the two
runs' totals over N is the server's instructions a request: uvicorn's HTTP
parsing, asyncio, Starlette, the app, and what our middleware and tracer add
to all of them (the tracer runs for uvicorn's objects too). The kernel's share
of a request (socket calls, loopback TCP) is not counted, so the ratio to bare
here is an upper bound on the loss in requests/s, whose denominator includes
that share. The monitor's interval is an hour: no sample lands in the run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time

from bench_web import free_port  # the sibling script's (this one runs as bench/server_instructions.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {
    "bare": "bare Starlette app",
    "noop-tracer": "bare app with a no-op reference tracer (CPython's tracer call alone)",
    "middleware-idle": "middleware, monitor with nothing to count (no tracer: our layer alone)",
    "middleware": "middleware, monitor counting 2 types",
    "watch-only": "middleware, monitor with watch-all sampled 1/64 (the default), no type named",
    "tracked": "middleware, monitor counting 2 types + watch-all sampled 1/64",
}


def serve(mode: str, requests: int, connections: int = 1, sample: int = 64, keep: str | None = None) -> int:
    """Total instructions of a server that answered 50 + `requests` requests."""
    port = free_port()
    env = dict(
        os.environ,
        BENCH_MODE=mode,
        BENCH_INTERVAL="3600",
        BENCH_WATCH_SAMPLE=str(sample),
        PYTHONPATH=ROOT,
        PYTHONHASHSEED="0",
    )
    out = os.path.join(keep, f"callgrind.{mode}.{requests}") if keep else "/dev/null"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "uvicorn",
            "bench.web_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conn = connect(port, proc)
        for _ in range(50 if connections > 1 else 50 + requests):
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or b"hello" not in body:
                raise RuntimeError(f"{mode}: unexpected answer {response.status} {body[:80]!r}")
        conn.close()
        if connections > 1 and requests:
            asyncio.run(load(port, connections, requests // connections))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    found = re.search(r"Collected : (\d+)", err)
    if not found:
        raise RuntimeError(f"{mode}: no callgrind total:\n{err[-2000:]}")
    return int(found.group(1))


async def load(port: int, connections: int, each: int) -> None:
    """`connections` keep-alive connections at once, `each` GET / on every one."""

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(each):
            writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {head[:80]!r}")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(one() for _ in range(connections)))


def connect(port: int, proc: subprocess.Popen) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 300  # startup under valgrind is slow
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            return http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=1, help="connections at once (a multiple of it is sent)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind profiles there (for callgrind_annotate)")
    args = parser.parse_args()
    modes = args.modes if "bare" in args.modes else ["bare", *args.modes]
    requests = args.requests - args.requests % args.connections
    per_request = {}
    for mode in modes:
        per_request[mode] = (
            serve(mode, requests, args.connections, keep=args.keep) - serve(mode, 0, args.connections, keep=args.keep)
        ) / requests
        print(f"  {mode}: {per_request[mode]:,.0f}", file=sys.stderr, flush=True)
    bare = per_request["bare"]
    print(
        f"{sys.implementation.name} {sys.version.split()[0]}, uvicorn one worker, {requests} keep-alive "
        f"requests on {args.connections} connection(s) at once after 50 warm-up, callgrind (user space only)"
    )
    print("| server | instructions a request | over bare |")
    print("|---|---|---|")
    for mode in modes:
        over = "" if mode == "bare" else f"{100 * (per_request[mode] / bare - 1):+.1f}%"
        print(f"| {MODES[mode]} | {per_request[mode]:,.0f} | {over} |")


if __name__ == "__main__":
    main()
