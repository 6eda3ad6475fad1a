"""Hostile input to the endpoint, the options and the report CLI (issue 16):
every error is a clear 4xx JSON answer or a ValueError naming the option,
never a 500, a hang, or a monitor that busy-loops."""

from __future__ import annotations

import asyncio
import http.server
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from memtracker_web.endpoint import MAX_MONITORED, Endpoint, EndpointOptions, Request, options_from_mapping
from memtracker_web.integrations import asgi, wsgi
from memtracker_web.monitor import MemoryMonitor, get_default_monitor, reset_default_monitor
from support import FakeMonitor

ROOT = Path(__file__).resolve().parents[2]


def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def wsgi_client(**options: Any) -> Client:
    return Client(wsgi.MemoryTrackerMiddleware(inner, monitor=FakeMonitor(), **options))


# -- 500s that were: every error is JSON with the right 4xx -----------------------------


@pytest.mark.parametrize("refresh", ["%C2%B2", "%D9%A3", "99999999999999999999999999", "-1", "1.5", ""])
def test_a_bad_refresh_is_a_json_400(refresh: str) -> None:
    r = wsgi_client().get(f"/debug/memory?refresh={refresh}", environ_overrides={"REMOTE_ADDR": "127.0.0.1"})
    assert (r.status_code, r.json) == (400, {"error": "refresh must be a whole number of seconds between 1 and 3600"})


@pytest.mark.parametrize("length", ["\xb2", "\u0663", "1e3", "-5", "12 34"])
def test_a_content_length_that_is_not_ascii_digits_is_a_json_400_over_wsgi(length: str) -> None:
    environ = {"REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": length, "CONTENT_TYPE": "application/json"}
    r = wsgi_client().post("/debug/memory/track", environ_overrides=environ, data=b'{"type": "a.B"}')
    assert r.status_code == 400 and r.json == {"error": "Content-Length must be a whole number of bytes"}


# json recurses into nested arrays: 3.11 and 3.12 give up (RecursionError) within the
# body limit, 3.13+ parse 8,000 levels; an unclosed one 3.14+ refuse before recursing.
DEEP = "body is nested too deeply"
NOT_AN_OBJECT = 'body must be a JSON object like {"type": "myapp.models.Order"}'


@pytest.mark.parametrize(
    "body,message",
    [
        (b"[" * 8_000 + b"]" * 8_000, DEEP if sys.version_info < (3, 13) else NOT_AN_OBJECT),
        (b"[" * 16_000, DEEP if sys.version_info < (3, 14) else "body is not valid JSON"),
    ],
)
def test_a_deeply_nested_body_is_a_json_400(body: bytes, message: str) -> None:
    r = wsgi_client().post(
        "/debug/memory/track",
        data=body,
        content_type="application/json",
        environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert (r.status_code, r.json) == (400, {"error": message})


def test_an_unexpected_failure_is_a_json_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeMonitor):
        def snapshot(self, top_paths: int = 5) -> dict[str, Any]:
            raise RuntimeError("boom")

    c = Client(wsgi.MemoryTrackerMiddleware(inner, monitor=Broken()))
    r = c.get("/debug/memory", environ_overrides={"REMOTE_ADDR": "127.0.0.1"})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json == {"error": "internal error of the memory endpoint; see the application's log"}
    assert "RuntimeError: boom" in caplog.text


# -- work proportional to an unauthorised request ---------------------------------------


def run_asgi(app: Any, scope: dict[str, Any], body_messages: list[dict[str, Any]]) -> tuple[list[dict], int]:
    sent: list[dict[str, Any]] = []
    reads = [0]

    async def receive() -> dict[str, Any]:
        reads[0] += 1
        return body_messages.pop(0) if body_messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, reads[0]


def http_scope(
    path: str, *, method: str = "GET", client: str = "127.0.0.1", headers: list[tuple[bytes, bytes]] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": (client, 5000),
        "server": ("127.0.0.1", 8000),
    }


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def test_an_unauthorised_post_has_its_body_never_read_over_asgi() -> None:
    app = asgi.MemoryTrackerMiddleware(_app, monitor=FakeMonitor())
    scope = http_scope(
        "/debug/memory/track",
        method="POST",
        client="203.0.113.9",
        headers=[(b"content-type", b"application/json"), (b"content-length", b"15")],
    )
    sent, reads = run_asgi(app, scope, [{"type": "http.request", "body": b'{"type": "a.B"}'}])
    assert sent[0]["status"] == 403 and reads == 0


def test_an_unauthorised_post_has_its_body_never_read_over_wsgi() -> None:
    class Unreadable:
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body of a refused request was read")

    environ = {
        "REMOTE_ADDR": "203.0.113.9",
        "CONTENT_LENGTH": "15",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": Unreadable(),
    }
    r = wsgi_client().post("/debug/memory/track", environ_overrides=environ)
    assert r.status_code == 403


def test_repeated_headers_are_joined_in_linear_time() -> None:
    app = asgi.MemoryTrackerMiddleware(_app, monitor=FakeMonitor())

    def seconds(n: int) -> float:
        scope = http_scope("/debug/memory", client="203.0.113.9", headers=[(b"x-a", b"v")] * n)
        started = time.perf_counter()
        sent, _ = run_asgi(app, scope, [])
        assert sent[0]["status"] == 403
        return time.perf_counter() - started

    seconds(1000)  # warm up
    small, large = min(seconds(20_000) for _ in range(3)), min(seconds(200_000) for _ in range(3))
    assert large / small < 40, (small, large)  # 10x the headers: ~10x the time (quadratic: ~100x)


def test_repeated_headers_are_joined_as_a_comma_list() -> None:
    seen: list[Request] = []
    app = asgi.MemoryTrackerMiddleware(_app, monitor=FakeMonitor())
    original = app.endpoint.handle
    app.endpoint.handle = lambda request, **kw: seen.append(request) or original(request, **kw)  # type: ignore
    run_asgi(app, http_scope("/debug/memory", headers=[(b"X-A", b"1"), (b"x-a", b"2"), (b"x-b", b"3")]), [])
    assert {k: v for k, v in seen[0].headers.items() if k.startswith("x-")} == {"x-a": "1, 2", "x-b": "3"}


# -- links under ASGI root_path "/" -----------------------------------------------------


def test_root_path_slash_gives_links_on_this_host() -> None:
    app = asgi.MemoryTrackerMiddleware(_app, monitor=FakeMonitor())
    scope = dict(http_scope("/debug/memory"), root_path="/")
    sent, _ = run_asgi(app, scope, [])
    page = sent[1]["body"].decode()
    assert 'href="/debug/memory?format=json"' in page and "//debug" not in page


# -- numeric options --------------------------------------------------------------------

BAD_INTERVALS = [math.nan, math.inf, -math.inf, 1e300, 0, -1, "1", True, None]


@pytest.mark.parametrize("interval", BAD_INTERVALS, ids=repr)
def test_a_bad_interval_is_refused_everywhere_options_enter(interval: Any) -> None:
    message = "interval must be a number of seconds above 0 and at most 86400"
    with pytest.raises(ValueError, match=message):
        MemoryMonitor(interval=interval)
    if interval is None:
        return  # None means "the default" in the options below
    with pytest.raises(ValueError, match=message):
        options_from_mapping({"interval": interval})
    with pytest.raises(ValueError, match=message):
        wsgi.MemoryTrackerMiddleware(inner, interval=interval)
    with pytest.raises(ValueError, match=message):
        asgi.MemoryTrackerMiddleware(_app, interval=interval)


@pytest.mark.parametrize(
    "name,value",
    [
        ("threshold", -1),
        ("threshold", 1.5),
        ("threshold", math.nan),
        ("increases", 0),
        ("increases", True),
        ("history", 1),
        ("calm_samples", 0),
        ("max_analyzed", -1),
        ("depth", 0),
        ("discover_after", "3"),
        ("leak_reports", 0),
    ],
)
def test_bad_whole_number_options_name_themselves(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a whole number"):
        MemoryMonitor(**{name: value})


def test_the_default_monitor_validates_options_given_later() -> None:
    reset_default_monitor()
    try:
        get_default_monitor(interval=30.0)
        with pytest.raises(ValueError, match="interval must be"):
            get_default_monitor(interval=math.nan)
        with pytest.raises(ValueError, match="threshold must be"):
            get_default_monitor(threshold=-3)
        assert get_default_monitor().interval == 30.0
    finally:
        reset_default_monitor()


def test_a_monitor_with_the_largest_interval_closes_at_once() -> None:
    monitor = MemoryMonitor(interval=86_400)
    monitor.start()
    started = time.monotonic()
    monitor.close()
    assert not monitor.running and time.monotonic() - started < 5


# -- the type cap -----------------------------------------------------------------------


def test_track_at_the_endpoints_cap_is_a_409_and_the_monitor_keeps_sampling() -> None:
    monitor = MemoryMonitor(interval=60.0)
    ep = Endpoint(EndpointOptions(monitor=monitor, shared_dir=None))
    made = [type(f"T{i}", (), {}) for i in range(MAX_MONITORED)]
    try:
        for cls in made:
            monitor.start_monitoring(cls)
        body = json.dumps({"type": "json.decoder.JSONDecoder"}).encode()
        r = ep.handle(
            Request(
                "POST",
                "/debug/memory/track",
                headers={"content-type": "application/json"},
                client="127.0.0.1",
                body=body,
            )
        )
        assert r.status == 409
        assert json.loads(r.body) == {"error": f"{MAX_MONITORED} types are monitored already; untrack one first"}
        monitor.sample()  # still samples
        assert len(monitor.monitored()) == MAX_MONITORED
    finally:
        monitor.close()


def test_a_type_the_engine_refuses_is_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = MemoryMonitor(interval=60.0)
    try:
        if monitor.mode != "exact":
            pytest.skip("the engine's cap applies to the exact engine")

        def full(cls: type) -> None:
            raise OverflowError("a capture tracks at most 4095 types")

        monkeypatch.setattr(monitor.tracker, "track", full)
        cls = type("Refused", (), {})
        with pytest.raises(OverflowError):
            monitor.start_monitoring(cls)
        assert monitor.monitored() == []
        monitor.sample()  # no state left behind to fail every sample
    finally:
        monkeypatch.undo()
        monitor.close()


# -- report on a malformed snapshot ------------------------------------------------------


class _Snapshot(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def snapshot_server() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Snapshot)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "snapshot,problem",
    [
        ({"mode": "exact", "types": [], "leaks": [{"live": 3}]}, "an entry of 'leaks' has no type name"),
        ({"mode": "exact", "types": {}, "leaks": []}, "'types' is not a list"),
        (
            {"mode": "exact", "types": [{"type": "a.B", "live": "many"}], "leaks": []},
            "'a.B' has a live that is not a number",
        ),
        (
            {"mode": "exact", "types": [], "leaks": [{"type": "a.B", "top_paths": [3]}]},
            "'a.B' has a top path that is not an object with a list of frames",
        ),
    ],
)
def test_report_on_a_malformed_snapshot_exits_2_with_one_line(
    snapshot_server: Any, snapshot: dict, problem: str
) -> None:
    _Snapshot.body = json.dumps(snapshot).encode()
    url = f"http://127.0.0.1:{snapshot_server.server_address[1]}/debug/memory"
    proc = subprocess.run(
        [sys.executable, "-m", "memtracker_web", "report", url], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().endswith(f"answered a memtracker snapshot this report cannot read: {problem}")
    assert "Traceback" not in proc.stderr


# -- DNS rebinding and cross-site POSTs ---------------------------------------------------


def rebinding_get(host: str | None, **options: Any) -> int:
    environ = {"REMOTE_ADDR": "127.0.0.1"}
    if host is not None:
        environ["HTTP_HOST"] = host
    return wsgi_client(**options).get("/debug/memory", environ_overrides=environ).status_code


@pytest.mark.parametrize(
    "host,status",
    [
        ("127.0.0.1:8000", 200),
        ("localhost", 200),
        ("LOCALHOST:80", 200),
        ("app.localhost:8000", 200),
        ("[::1]:8000", 200),
        ("10.1.2.3", 200),
        ("evil.example", 403),
        ("evil.example:8000", 403),
        ("localhost.evil.example", 403),
        ("127.0.0.1.nip.io", 403),
    ],
)
def test_a_request_admitted_by_address_must_name_this_server(host: str, status: int) -> None:
    assert rebinding_get(host) == status


def test_the_refusal_says_what_to_do() -> None:
    r = wsgi_client().get("/debug/memory", environ_overrides={"REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "evil.example"})
    assert r.json == {
        "error": "Host 'evil.example' is not allowed for requests admitted by address; "
        "add it to allowed_hosts, or send a token"
    }


@pytest.mark.parametrize(
    "allowed,host,status",
    [
        (["myapp.internal"], "myapp.internal:8000", 200),
        (["myapp.internal"], "other.internal", 403),
        ([".example.com"], "a.b.example.com", 200),
        ([".example.com"], "example.com", 200),
        ([".example.com"], "badexample.com", 403),
        (["*"], "anything.at.all", 200),
        ("myapp.internal", "myapp.internal", 200),
    ],
)
def test_allowed_hosts(allowed: Any, host: str, status: int) -> None:
    assert rebinding_get(host, allowed_hosts=allowed) == status


def test_a_token_admits_whatever_the_host() -> None:
    c = wsgi_client(token="s3cret")
    r = c.get(
        "/debug/memory",
        headers={"Authorization": "Bearer s3cret", "Host": "evil.example"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("bad", ["my host", "http://x", "a@b", "x:80", "", 3])
def test_allowed_hosts_are_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="allowed_hosts: .* is not a host name"):
        EndpointOptions(allowed_hosts=[bad])


def track_post(headers: dict[str, str]) -> int:
    monitor = MemoryMonitor(interval=60.0)
    try:
        c = Client(wsgi.MemoryTrackerMiddleware(inner, monitor=monitor))
        return c.post(
            "/debug/memory/track",
            data=json.dumps({"type": "json.decoder.JSONDecoder"}),
            content_type="application/json",
            headers={"Host": "127.0.0.1:8000", **headers},
            environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code
    finally:
        monitor.close()


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 200),
        ({"Origin": "http://127.0.0.1:8000"}, 200),
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://127.0.0.1:9999"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
    ],
)
def test_a_post_admitted_by_address_must_not_be_cross_site(headers: dict[str, str], status: int) -> None:
    assert track_post(headers) == status


def test_django_allowed_hosts_and_flask_trusted_hosts_apply_to_the_endpoint() -> None:
    flask = pytest.importorskip("flask")
    from memtracker_web.flask import MemoryTracker

    app = flask.Flask("t")
    app.config["TRUSTED_HOSTS"] = ["shop.internal"]
    MemoryTracker(app, monitor=FakeMonitor())
    c = app.test_client()
    assert (
        c.get(
            "/debug/memory", headers={"Host": "shop.internal"}, environ_overrides={"REMOTE_ADDR": "127.0.0.1"}
        ).status_code
        == 200
    )
    assert app.extensions["memtracker"].endpoint.options.allowed_hosts == ("shop.internal",)


# -- proxies: only X-Forwarded-For is parsed ---------------------------------------------


@pytest.mark.parametrize("extra", [{"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}])
def test_a_trusted_proxy_that_also_sends_other_headers_admits_nobody_by_address(extra: dict[str, str]) -> None:
    # The client wrote "X-Forwarded-For: 127.0.0.1" itself; this proxy writes Forwarded/X-Real-IP
    # and passes that header on untouched.
    c = wsgi_client(trusted_proxies=["10.0.0.1"])
    r = c.get(
        "/debug/memory",
        headers={"X-Forwarded-For": "127.0.0.1", **extra},
        environ_overrides={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert r.status_code == 403
    ok = c.get("/debug/memory", headers={"X-Forwarded-For": "127.0.0.1"}, environ_overrides={"REMOTE_ADDR": "10.0.0.1"})
    assert ok.status_code == 200


# -- routing on the path as sent ---------------------------------------------------------


@pytest.mark.parametrize("raw", ["/debug%2Fmemory", "/debug/%6Demory", "/debug%2Fmemory%2Ftrack", "/met%72ics"])
def test_a_percent_encoded_path_is_refused_over_asgi(raw: str) -> None:
    from urllib.parse import unquote

    app = asgi.MemoryTrackerMiddleware(_app, monitor=FakeMonitor(), metrics_path="/metrics")
    scope = dict(http_scope(unquote(raw)), raw_path=raw.encode())
    sent, _ = run_asgi(app, scope, [])
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "error": "percent-encoded paths are not served by the memory endpoint; send the path as it is"
    }


@pytest.mark.parametrize("key", ["RAW_URI", "REQUEST_URI"])
def test_a_percent_encoded_path_is_refused_over_wsgi_where_the_server_gives_it(key: str) -> None:
    c = wsgi_client()
    # (werkzeug's test client sets both keys itself: the other one is blanked, as a server that gives one)
    other = {"RAW_URI": "REQUEST_URI", "REQUEST_URI": "RAW_URI"}[key]
    r = c.get("/debug/memory", environ_overrides={"REMOTE_ADDR": "127.0.0.1", other: "", key: "/debug%2Fmemory?x=%41"})
    assert r.status_code == 400
    plain = c.get(
        "/debug/memory", environ_overrides={"REMOTE_ADDR": "127.0.0.1", other: "", key: "/debug/memory?x=%41"}
    )
    assert plain.status_code == 200  # (a query may be encoded)


def test_post_track_with_a_shared_dir_others_can_write_is_a_503_and_applies_nothing(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monitor = MemoryMonitor(interval=60.0)
    try:
        ep = Endpoint(EndpointOptions(monitor=monitor, shared_dir=str(shared)))
        r = ep.handle(
            Request(
                "POST",
                "/debug/memory/track",
                headers={"content-type": "application/json"},
                client="127.0.0.1",
                body=b'{"type": "json.decoder.JSONDecoder"}',
            )
        )
        assert r.status == 503
        assert json.loads(r.body)["error"].startswith(
            f"memtracker: the shared directory {str(shared)!r} is writable by its group or by others (mode 0o777)"
        )
        assert monitor.monitored() == [] and list(shared.iterdir()) == []
    finally:
        monitor.close()
