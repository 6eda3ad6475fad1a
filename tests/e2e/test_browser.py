"""The HTML page in a real browser: headless Chromium renders it from a local server.

Checks the rendered DOM (types table, sparklines, stacks) and keeps a screenshot
in tests/artifacts/ (gitignored). The CSP is in force, so a style that did not
apply or a blocked resource would show up here and not in the unit tests.
"""

from __future__ import annotations

import html.parser
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from memtracker_web.wsgi import MemoryTrackerMiddleware
from support import LEAK_PATH, leaky_monitor

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


def not_found(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


@pytest.fixture
def base_url() -> Iterator[str]:
    app = MemoryTrackerMiddleware(not_found, monitor=leaky_monitor())
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


class DomReader(html.parser.HTMLParser):
    """Collects what the checks need from the serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.svgs: list[dict[str, Any]] = []
        self.stacks: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._stack: list[str] | None = None
        self._item: list[str] | None = None
        self._in_types = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "types":
            self._in_types = True
        elif tag == "tr" and self._in_types:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self.svgs.append({"label": a.get("aria-label"), "points": None})
        elif tag == "polyline" and self.svgs:
            self.svgs[-1]["points"] = a.get("points")
        elif tag == "ol" and a.get("class") == "stack":
            self._stack = []
        elif tag == "li" and self._stack is not None:
            self._item = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_types = False
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None
        elif tag == "li" and self._item is not None and self._stack is not None:
            self._stack.append("".join(self._item).strip())
            self._item = None
        elif tag == "ol" and self._stack is not None:
            self.stacks.append(self._stack)
            self._stack = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._item is not None:
            self._item.append(data)


def test_page_renders_in_chromium(base_url: str, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", f"{base_url}/debug/memory").stdout
    assert dom.startswith('<!DOCTYPE html>\n<html lang="en">')
    reader = DomReader()
    reader.feed(dom)
    assert [row[:7] for row in reader.rows] == [
        ["shop.cache.Entry", "300", "–", "+200", "3", "yes", "tracked"],
        ["builtins.dict", "49", "–", "-1", "2", "no", "watch_all"],
    ]
    assert reader.svgs == [
        {"label": "live objects, 4 samples: 100 to 300", "points": "2.0,22.0 40.7,17.0 79.3,10.0 118.0,2.0"},
        {"label": "live objects, 3 samples: 50 to 49", "points": "2.0,2.0 60.0,2.0 118.0,22.0"},
    ]
    expected_stack = ["shop/cache.py:17 in remember", "shop/views.py:40 in checkout"]
    assert expected_stack == [f"{f['filename']}:{f['lineno']} in {f['function']}" for f in LEAK_PATH["frames"]]
    # Once, in the leak report: not again under "where the analysed types are allocated".
    assert reader.stacks == [expected_stack]
    assert "<script" not in dom


def test_detail_page_and_screenshot(base_url: str, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", f"{base_url}/debug/memory/types/shop.cache.Entry").stdout
    reader = DomReader()
    reader.feed(dom)
    assert reader.stacks == [["shop/cache.py:17 in remember", "shop/views.py:40 in checkout"]]
    assert reader.svgs[0]["label"] == "live objects, 4 samples: 100 to 300"
    assert '<table id="hotspots">' in dom

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "debug-memory.png"
    shot.unlink(missing_ok=True)
    chromium(
        tmp_path, f"--screenshot={shot}", "--window-size=1280,1100", "--hide-scrollbars", f"{base_url}/debug/memory"
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 1100)


class Crate:
    pass


CRATES: list = []


def test_a_type_page_says_how_much_it_weighs_and_who_holds_it(tmp_path: Path) -> None:
    from memtracker_web.monitor import MemoryMonitor
    from support import ENGINE

    if not ENGINE["available"]:
        pytest.skip(f"needs the exact engine: {ENGINE['reason']}")
    monitor = MemoryMonitor(interval=3600.0)
    monitor.start_monitoring(Crate)
    CRATES[:] = [Crate() for _ in range(500)]
    monitor.sample()
    app = MemoryTrackerMiddleware(not_found, monitor=monitor)
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    name = f"{__name__}.Crate"
    try:
        url = f"http://127.0.0.1:{server.server_port}/debug/memory/types/{name}/retainers"
        dom = chromium(tmp_path, "--dump-dom", url).stdout
        assert f"<code>{__name__}.CRATES -&gt; builtins.list[i] -&gt; {name}</code>" in dom
        assert '<table id="retainers">' in dom and "20 live objects searched" in dom
        assert "<tr><th>bytes</th><td>" in dom and "(estimate from 64 objects, shallow)</td></tr>" in dom
        assert re.search(r'aria-label="live objects, \d+ samples?: 500 to 500"', dom)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "type-page-retainers.png"
        shot.unlink(missing_ok=True)
        chromium(
            tmp_path,
            f"--screenshot={shot}",
            "--window-size=1280,1100",
            "--hide-scrollbars",
            url.removesuffix("/retainers"),
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        CRATES.clear()
        monitor.close()
