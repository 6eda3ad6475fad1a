"""The framework-free endpoint: options, auth, routing, errors, negotiation, HTML.

FakeMonitor follows docs/CONTRACTS.md exactly; the adapter tests import it
from here so every layer is tested against the same contract.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from memtracker_web.endpoint import MAX_BODY, Endpoint, EndpointOptions, options_from_mapping
from memtracker_web.render import page
from support import (
    JSON,
    LEAK_PATH,
    ORDER,
    POST_JSON,
    Basket,
    FakeMonitor,
    Order,
    call,
    endpoint,
    leaky_monitor,
    make_entry,
)


def test_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMTRACKER_TOKEN", raising=False)
    opts = EndpointOptions()
    assert opts.path == "/debug/memory"
    assert opts.metrics_path is None
    assert opts.token is None
    assert [str(n) for n in opts.allow_networks] == ["127.0.0.0/8", "::1/128"]
    assert opts.proxy_networks == ()
    assert opts.track == ()


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTRACKER_TOKEN", "s3cret")
    assert EndpointOptions().token == "s3cret"
    assert EndpointOptions(token=None).token is None
    assert EndpointOptions(token="other").token == "other"
    monkeypatch.setenv("MEMTRACKER_TOKEN", "")
    assert EndpointOptions().token is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "debug"}, "path must look like"),
        ({"path": "/debug/"}, "path must look like"),
        ({"path": "/"}, "path must look like"),
        ({"path": "/a//b"}, "path must look like"),
        ({"metrics_path": "/debug/memory/metrics"}, "metrics_path must not be inside path"),
        ({"metrics_path": "metrics"}, "metrics_path must look like"),
        ({"token": ""}, "token must be a non-empty string"),
        ({"allow": ["localhost"]}, "allow: 'localhost' is not an IP address"),
        ({"trusted_proxies": "10.0.0.300"}, "trusted_proxies: '10.0.0.300'"),
        ({"threshold": 0}, "threshold must be a whole number >= 1, got 0"),
        ({"increases": True}, "increases must be a whole number >= 1, got True"),
        ({"interval": 0}, "interval must be a number of seconds above 0 and at most 86400, got 0"),
        ({"watch_sample": 0}, "watch_sample must be an integer from 1 (every object) to 65536"),
        ({"watch_sample": 65537}, "watch_sample must be an integer from 1"),
        ({"watch_sample": True}, "watch_sample must be an integer from 1"),
        ({"monitor": FakeMonitor(), "watch_sample": 1}, "watch_sample configure the default monitor"),
        (
            {"monitor": FakeMonitor(), "interval": 1.0, "threshold": 5},
            "threshold, interval configure the default monitor",
        ),
    ],
)
def test_options_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        EndpointOptions(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "/debug/memory",
        "/debug/memory/types/x.Y",
        "/metrics",
        "/app/debug/memory",
        "/app/metrics",
        "/debug/memoryx",
        "/debug",
        "/",
        "/other/metrics/x",
        "",
    ],
)
def test_may_own_never_refuses_a_path_owns_accepts(path: str) -> None:
    ep = endpoint(metrics_path="/metrics")
    for root in ("", "/app"):
        full = root + path if path.startswith(root) or not root else path
        route = full[len(root) :] if root and full.startswith(root) else full
        if ep.owns(route):
            assert ep.may_own(full), (root, path)
    assert ep.may_own("/debug/memory") and ep.may_own("/metrics")
    assert not ep.may_own("/") and not ep.may_own("/api/orders") and not endpoint().may_own("/metrics")


def test_options_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError) as info:
        options_from_mapping({"path": "/mem", "tokn": "x"})
    assert str(info.value).startswith("unknown memtracker option(s): tokn; known: ")
    assert options_from_mapping({"path": "/mem"}, token="t").token == "t"


def test_track_applies_to_a_given_monitor() -> None:
    monitor = FakeMonitor()
    ep = Endpoint(EndpointOptions(monitor=monitor, track=[Order, f"{__name__}.Basket"]))
    assert monitor.calls == []  # nothing happens before first use
    ep.start()
    assert monitor.calls == [("start_monitoring", Order, None, False), ("start_monitoring", Basket, None, False)]
    assert monitor.running and ep.started_monitor


def test_start_and_stop_only_what_we_started() -> None:
    monitor = FakeMonitor()
    monitor.start()
    ep = endpoint(monitor)
    ep.start()
    assert (monitor.starts, ep.started_monitor) == (1, False)
    ep.stop()
    assert (monitor.stops, monitor.running) == (0, True)

    fresh = FakeMonitor()
    ep = endpoint(fresh)
    ep.start()
    ep.start()
    assert fresh.starts == 1
    ep.stop()
    ep.stop()
    assert (fresh.stops, fresh.running) == (1, False)


# -- routing and ownership -----------------------------------------------------


def test_owns_only_its_paths() -> None:
    ep = endpoint(metrics_path="/metrics")
    assert [ep.owns(p) for p in ("/debug/memory", "/debug/memory/", "/debug/memory/types/x", "/metrics")] == [True] * 4
    assert [ep.owns(p) for p in ("/debug/memoryX", "/debug", "/", "/metrics/x", "/api")] == [False] * 5
    assert not endpoint().owns("/metrics")


def test_snapshot_as_json() -> None:
    monitor = leaky_monitor()
    status, headers, body = call(endpoint(monitor), headers=JSON)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert json.loads(body) == monitor.snapshot()


@pytest.mark.parametrize(
    "accept, query, is_json",
    [
        ("application/json", "", True),
        ("application/json;q=0.9, text/html;q=0.8", "", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", False),
        ("*/*", "", False),
        ("", "", False),
        ("text/html, application/json;q=0.5", "", False),
        ("application/json;q=0", "", False),
        ("text/html", "format=json", True),
        ("application/json", "format=html", False),
    ],
)
def test_negotiation(accept: str, query: str, is_json: bool) -> None:
    status, headers, body = call(endpoint(), headers={"accept": accept}, query=query)
    assert status == 200
    expected = "application/json" if is_json else "text/html; charset=utf-8"
    assert headers["content-type"] == expected
    assert body.startswith(b"{") if is_json else body.startswith(b"<!DOCTYPE html>")


def test_trailing_slash_is_the_overview() -> None:
    status, _, body = call(endpoint(), path="/debug/memory/", headers=JSON)
    assert status == 200 and json.loads(body)["pid"] == 4242


def test_type_detail_json() -> None:
    monitor = leaky_monitor()
    status, headers, body = call(endpoint(monitor), path="/debug/memory/types/shop.cache.Entry", headers=JSON)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == monitor.type_detail("shop.cache.Entry")
    assert json.loads(body)["hotspots"][0]["lineno"] == 17


def test_type_detail_html() -> None:
    status, headers, body = call(endpoint(), path="/debug/memory/types/shop.cache.Entry")
    text = body.decode()
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1><code>shop.cache.Entry</code></h1>" in text
    assert '<table id="hotspots">' in text
    assert "<code>shop/cache.py:17</code> in <code>remember</code>" in text
    assert '<a href="/debug/memory">&larr; all types</a>' in text


def test_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry, Counter

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    registry = CollectorRegistry()
    Counter("app_requests", "Requests.", registry=registry).inc(3)
    ep = endpoint(metrics_path="/metrics", registry=registry)
    status, headers, body = call(ep, path="/metrics")
    text = body.decode()
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    assert headers["cache-control"] == "no-store"
    assert "app_requests_total 3.0" in text
    # memtracker_web.prometheus is in the tree: the monitor's series are exported once.
    assert 'memtracker_live_objects{type="shop.cache.Entry"} 300.0' in text
    status, _, body = call(ep, path="/metrics")
    assert body.decode().count("# TYPE memtracker_live_objects gauge") == 1


def test_metrics_multiprocess_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # prometheus_client picked in-process values at import, so nothing is in
    # the directory: the served registry must be the (empty) multiprocess view.
    assert not getattr(values.ValueClass, "_multiprocess", False)
    ep = endpoint(metrics_path="/metrics")
    status, _, body = call(ep, path="/metrics")
    assert status == 200
    assert body == b""
    # The exporter refuses (values live in process memory); the scrape still works.
    assert [r.getMessage() for r in caplog.records] == ["memtracker: exporting the monitor to Prometheus failed"]


# -- POST track / untrack --------------------------------------------------------


def test_track_and_untrack() -> None:
    monitor = FakeMonitor()
    ep = endpoint(monitor)
    body = json.dumps({"type": ORDER, "analysis": True}).encode()
    status, headers, out = call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=body)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(out) == {"type": ORDER, "tracking": True, "analysis": True}
    assert monitor.calls == [("start_monitoring", Order, None, True)]

    body = json.dumps({"type": ORDER, "threshold": 7}).encode()
    status, _, out = call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=body)
    assert (status, json.loads(out)) == (200, {"type": ORDER, "tracking": True, "analysis": False})
    assert monitor.calls[-1] == ("start_monitoring", Order, 7, False)

    status, _, out = call(
        ep, "POST", "/debug/memory/untrack", headers=POST_JSON, body=json.dumps({"type": ORDER}).encode()
    )
    assert (status, json.loads(out)) == (200, {"type": ORDER, "tracking": False})
    status, _, out = call(
        ep, "POST", "/debug/memory/untrack", headers=POST_JSON, body=json.dumps({"type": ORDER}).encode()
    )
    assert (status, json.loads(out)) == (404, {"error": f"{ORDER!r} is not being tracked"})


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b"\xff\xfe", 400, "body is not valid JSON"),
        (b"[1, 2]", 400, 'body must be a JSON object like {"type": "myapp.models.Order"}'),
        (b'{"type": "x.Y", "eval": 1}', 400, "unknown field(s): eval; allowed: analysis, threshold, type"),
        (b'{"analysis": true}', 400, "'type' must be a dotted name like 'myapp.models.Order'"),
        (
            b"{\"type\": \"__import__('os').system('id')\"}",
            400,
            "'type' must be a dotted name like 'myapp.models.Order'",
        ),
        (b'{"type": "Order"}', 400, "'type' must be a dotted name like 'myapp.models.Order'"),
        (b'{"type": "x.Y", "analysis": "yes"}', 400, "'analysis' must be true or false"),
        (b'{"type": "x.Y", "threshold": -1}', 400, "'threshold' must be a positive integer"),
        (b'{"type": "x.Y", "threshold": true}', 400, "'threshold' must be a positive integer"),
        (b'{"type": "no_such_module_xyz.Thing"}', 404, "no class named 'no_such_module_xyz.Thing' is loaded"),
        # one answer for whatever is not a class we can track: no oracle on what else is there
        (b'{"type": "json.dumps"}', 404, "no class named 'json.dumps' is loaded"),
        (b'{"type": "json.decoder.__class__"}', 404, "no class named 'json.decoder.__class__' is loaded"),
        (b'{"type": "json.JSONDecoder.__init__"}', 404, "no class named 'json.JSONDecoder.__init__' is loaded"),
    ],
)
def test_track_errors(body: bytes, status: int, message: str) -> None:
    monitor = FakeMonitor()
    got, headers, out = call(endpoint(monitor), "POST", "/debug/memory/track", headers=POST_JSON, body=body)
    assert (got, json.loads(out)) == (status, {"error": message})
    assert headers["content-type"] == "application/json"
    assert monitor.calls == []


def test_untrack_rejects_extra_fields() -> None:
    status, _, out = call(
        endpoint(), "POST", "/debug/memory/untrack", headers=POST_JSON, body=b'{"type": "x.Y", "analysis": true}'
    )
    assert (status, json.loads(out)) == (400, {"error": "unknown field(s): analysis; allowed: type"})


def test_track_requires_json_content_type() -> None:
    status, _, out = call(
        endpoint(),
        "POST",
        "/debug/memory/track",
        headers={"content-type": "text/plain"},
        body=json.dumps({"type": ORDER}).encode(),
    )
    assert (status, json.loads(out)) == (415, {"error": "Content-Type must be application/json"})


def test_body_limit() -> None:
    monitor = FakeMonitor()
    ep = endpoint(monitor)
    padded = json.dumps({"type": ORDER, "analysis": False}).encode()
    exact = padded[:-1] + b" " * (MAX_BODY - len(padded)) + b"}"
    assert len(exact) == MAX_BODY
    status, _, _ = call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=exact)
    assert status == 200
    status, _, out = call(ep, "POST", "/debug/memory/track", headers=POST_JSON, body=exact + b" ")
    assert (status, json.loads(out)) == (413, {"error": "request body is larger than 16384 bytes"})
    status, _, out = call(
        ep, "POST", "/debug/memory/track", headers={**POST_JSON, "content-length": str(MAX_BODY + 1)}, body=b""
    )
    assert status == 413
    assert len(monitor.calls) == 1


# -- errors: routes and methods -----------------------------------------------


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("POST", "/debug/memory", "GET"),
        ("DELETE", "/debug/memory/types/shop.cache.Entry", "GET"),
        ("GET", "/debug/memory/track", "POST"),
        ("PUT", "/debug/memory/untrack", "POST"),
        ("POST", "/metrics", "GET"),
    ],
)
def test_wrong_method(method: str, path: str, allow: str) -> None:
    status, headers, out = call(endpoint(metrics_path="/metrics"), method, path, headers=POST_JSON, body=b"{}")
    assert status == 405
    assert headers["allow"] == allow
    assert json.loads(out) == {"error": f"method {method} not allowed; use {allow}"}


@pytest.mark.parametrize(
    "path, message",
    [
        ("/debug/memory/nope", "no route '/debug/memory/nope'; see /debug/memory"),
        ("/debug/memory/types/", "no route '/debug/memory/types/'; see /debug/memory"),
        ("/debug/memory/types/no.such.Type", "unknown type 'no.such.Type': it is not tracked or seen by the monitor"),
    ],
)
def test_not_found(path: str, message: str) -> None:
    status, headers, out = call(endpoint(), path=path, headers=JSON)
    assert (status, json.loads(out)) == (404, {"error": message})
    assert headers["cache-control"] == "no-store"


def test_bad_query_parameters() -> None:
    status, _, out = call(endpoint(), query="format=xml")
    assert (status, json.loads(out)) == (400, {"error": "format must be 'json' or 'html'"})
    status, _, out = call(endpoint(), query="refresh=0")
    assert (status, json.loads(out)) == (400, {"error": "refresh must be a whole number of seconds between 1 and 3600"})
    status, _, out = call(endpoint(), query="&".join(f"k{i}=v" for i in range(30)))
    assert (status, json.loads(out)) == (400, {"error": "too many query parameters"})
    status, _, out = call(endpoint(), path="/debug/memory/types/" + "a." * 200 + "B", headers=JSON)
    assert (status, json.loads(out)) == (400, {"error": "type name is longer than 300 characters"})


# -- auth matrix ----------------------------------------------------------------


@pytest.mark.parametrize(
    "client, token, authorization, headers, status, error",
    [
        ("127.0.0.1", None, None, {}, 200, None),
        ("127.10.0.3", None, None, {}, 200, None),
        ("::1", None, None, {}, 200, None),
        ("::ffff:127.0.0.1", None, None, {}, 200, None),
        ("203.0.113.9", None, None, {}, 403, "client address not allowed; configure 'allow' or a token"),
        (None, None, None, {}, 403, "client address not allowed; configure 'allow' or a token"),
        ("testclient", None, None, {}, 403, "client address not allowed; configure 'allow' or a token"),
        ("203.0.113.9", None, "Bearer guess", {}, 403, "client address not allowed; configure 'allow' or a token"),
        ("203.0.113.9", "s3cret", None, {}, 401, "missing token: send 'Authorization: Bearer <token>'"),
        ("203.0.113.9", "s3cret", "Basic dXNlcjpwdw==", {}, 401, "missing token: send 'Authorization: Bearer <token>'"),
        ("203.0.113.9", "s3cret", "Bearer s3cret", {}, 200, None),
        ("203.0.113.9", "s3cret", "bearer s3cret", {}, 200, None),
        ("203.0.113.9", "s3cret", "Bearer wrong", {}, 403, "invalid token"),
        ("127.0.0.1", "s3cret", "Bearer wrong", {}, 403, "invalid token"),
        ("127.0.0.1", "s3cret", None, {}, 200, None),
        # A proxy on loopback forwarding a stranger: loopback alone is not enough.
        (
            "127.0.0.1",
            None,
            None,
            {"x-forwarded-for": "203.0.113.9"},
            403,
            "client address not allowed; configure 'allow' or a token",
        ),
        (
            "127.0.0.1",
            "s3cret",
            None,
            {"forwarded": "for=203.0.113.9"},
            401,
            "missing token: send 'Authorization: Bearer <token>'",
        ),
        ("127.0.0.1", "s3cret", "Bearer s3cret", {"x-real-ip": "203.0.113.9"}, 200, None),
    ],
)
def test_auth_matrix(
    client: str | None,
    token: str | None,
    authorization: str | None,
    headers: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    monitor = leaky_monitor()
    ep = endpoint(monitor, token=token)
    hdrs = {**JSON, **headers}
    if authorization:
        hdrs["authorization"] = authorization
    got, out_headers, body = call(ep, client=client, headers=hdrs)
    assert got == status
    assert out_headers["cache-control"] == "no-store"
    if error is None:
        assert json.loads(body)["pid"] == 4242
    else:
        assert json.loads(body) == {"error": error}
        assert ("www-authenticate" in out_headers) == (status == 401)


def test_auth_is_checked_before_routing() -> None:
    status, _, out = call(endpoint(), "POST", "/debug/memory/nope", client="203.0.113.9")
    assert status == 403
    status, _, out = call(endpoint(token="t"), "GET", "/debug/memory/track", client="203.0.113.9")
    assert status == 401


def test_custom_allow_list() -> None:
    ep = endpoint(allow=["10.0.0.0/8"])
    assert call(ep, client="10.1.2.3", headers=JSON)[0] == 200
    assert call(ep, client="127.0.0.1", headers=JSON)[0] == 403
    assert call(endpoint(allow=None), client="127.0.0.1", headers=JSON)[0] == 403
    assert call(endpoint(allow="192.0.2.7"), client="192.0.2.7", headers=JSON)[0] == 200


@pytest.mark.parametrize(
    "peer, forwarded, status",
    [
        ("10.0.0.5", "127.0.0.1", 200),  # trusted proxy says loopback
        ("10.0.0.5", "203.0.113.9", 403),  # trusted proxy says stranger
        ("10.0.0.5", "127.0.0.1, 10.0.0.6", 200),  # chain of our proxies
        ("10.0.0.5", "127.0.0.1, 203.0.113.9", 403),  # stranger spoofed a loopback hop on the left
        ("10.0.0.5", "garbage", 403),
        ("10.0.0.5", None, 403),  # the proxy itself is not allowed
        ("198.51.100.1", "127.0.0.1", 403),  # untrusted peer: header ignored
    ],
)
def test_trusted_proxies(peer: str, forwarded: str | None, status: int) -> None:
    ep = endpoint(trusted_proxies=["10.0.0.0/24"])
    headers = dict(JSON)
    if forwarded is not None:
        headers["x-forwarded-for"] = forwarded
    assert call(ep, client=peer, headers=headers)[0] == status


# -- HTML -------------------------------------------------------------------------


def test_html_overview_content_and_headers() -> None:
    status, headers, body = call(endpoint(), script_name="/app")
    text = body.decode()
    assert status == 200
    csp = headers["content-security-policy"]
    nonce = re.search(r"style-src 'nonce-([^']+)'", csp).group(1)
    assert csp == (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    assert f'<style nonce="{nonce}">' in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    assert 'style="' not in text  # inline style attributes would be blocked by the CSP
    assert '<span class="badge exact">exact mode</span>' in text
    assert "pid 4242" in text
    rows = re.findall(
        r"<tr><td><a href=\"([^\"]+)\"><code>([^<]+)</code></a></td>"
        r"<td class=\"num\">([^<]+)</td><td class=\"num\">([^<]+)</td>"
        r"<td class=\"num[^\"]*\">([^<]+)</td>"
        r"<td class=\"num\">([^<]+)</td><td>(yes|no)</td>",
        text,
    )
    assert rows == [
        ("/app/debug/memory/types/shop.cache.Entry", "shop.cache.Entry", "300", "–", "+200", "3", "yes"),
        ("/app/debug/memory/types/builtins.dict", "builtins.dict", "49", "–", "-1", "2", "no"),
    ]
    assert text.count('<svg class="spark"') == 2
    assert '<polyline points="2.0,22.0 40.7,17.0 79.3,10.0 118.0,2.0"/>' in text
    assert "<code>shop/cache.py:17</code> in <code>remember</code>" in text
    assert "<code>shop/views.py:40</code> in <code>checkout</code>" in text
    assert "120 live of 130 allocated" in text
    # its stacks are in its leak report: not printed again under "where the analysed types are allocated"
    assert text.count("<code>shop/cache.py:17</code> in <code>remember</code>") == 1
    assert '<section class="analysed">' not in text
    assert "deeper frames were not recorded" not in text
    assert '<span class="badge leak">leak</span>' in text


def test_html_census_mode() -> None:
    status, _, body = call(endpoint(leaky_monitor("census")))
    text = body.decode()
    assert status == 200
    assert '<span class="badge census">census mode</span>' in text
    assert "123,456 objects scanned in 50.0 ms per sample" in text
    assert "No type has grown past its threshold yet." in text
    assert "Where the analysed types are allocated" not in text


@pytest.mark.parametrize(
    "sample, says",
    [
        (64, "about one object in 64 is counted (by address) and scaled: estimates"),
        (1, "every object is counted"),
    ],
)
def test_html_says_how_watch_all_counts(sample: int, says: str) -> None:
    monitor = leaky_monitor()
    snapshot = monitor.snapshot
    monitor.snapshot = lambda: {
        **snapshot(),
        "watch": {"candidates": 1234, "promoted": 2, "sample": sample, "estimated": sample > 1},
    }
    _, _, body = call(endpoint(monitor))
    text = body.decode()
    assert f"Watch-all looks for growing types nobody named: {says}. 1,234 types seen, 2 nominated" in text
    _, _, body = call(endpoint(leaky_monitor()))
    assert "Watch-all" not in body.decode()


def test_html_refresh() -> None:
    _, _, body = call(endpoint(), query="refresh=5")
    assert b'<meta http-equiv="refresh" content="5">' in body
    _, _, body = call(endpoint())
    assert b'http-equiv="refresh"' not in body


def test_html_escapes_everything() -> None:
    monitor = FakeMonitor()
    evil = "<script>alert(1)</script>"
    entry = make_entry(
        f"m.{evil}",
        [1, 2],
        analysing=True,
        top_paths=[
            {
                "count": 1,
                "total_count": 1,
                "path": [f"{evil}:1 in f"],
                "frames": [{"filename": '"><img src=x onerror=alert(1)>', "lineno": 1, "function": evil}],
            }
        ],
    )
    monitor.tracked[entry["type"]] = entry
    monitor.leaks.append({"type": evil, "live": 2, "increases": 1, "detected_at": 0.0, "top_paths": entry["top_paths"]})
    snapshot = monitor.snapshot()
    snapshot["engine"]["reason"] = evil
    text = page.render_overview(snapshot, base="/debug/memory", nonce='"x', refresh=None)
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '<style nonce="&quot;x">' in text
    assert "/debug/memory/types/m.%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in text
    detail = page.render_type(
        {**entry, "hotspots": [{"filename": evil, "lineno": 1, "function": "f"}]}, base="/debug/memory", nonce="n"
    )
    assert "<script>" not in detail and "<img" not in detail


def test_sparkline_edges() -> None:
    assert page.sparkline([]) == (
        '<svg class="spark" role="img" aria-label="live objects, 0 samples" width="120" '
        'height="24" viewBox="0 0 120 24" xmlns="http://www.w3.org/2000/svg">'
        "<title>live objects, 0 samples</title></svg>"
    )
    flat = page.sparkline([[0, 5], [1, 5]])
    assert '<polyline points="2.0,22.0 118.0,22.0"/>' in flat
    one = page.sparkline([[0, 7]])
    assert '<polyline points="2.0,22.0"/><circle cx="2.0" cy="22.0" r="2"/>' in one


def test_truncated_path_is_marked() -> None:
    text = page.stack({**LEAK_PATH, "truncated": True})
    assert text.endswith('</ol><p class="note">deeper frames were not recorded</p></div>')
    assert page.stack({"count": 2, "total_count": None, "path": ["a.py:1 in f"]}) == (
        '<div class="path"><div class="count">2 live since analysis began</div><ol class="stack">'
        "<li><code>a.py:1 in f</code></li></ol></div>"
    )


def test_growth() -> None:
    assert page.growth({"live": 10, "history": [[0, 4], [1, 10]]}) == 6
    assert page.growth({"live": 10, "history": []}) == 0


def test_the_page_shows_bytes_and_resident_memory_and_counts_samples_in_words():
    from memtracker_web.render.page import render_overview, render_type, size_text

    assert [size_text(v) for v in (0, 1023, 1536, 5 * 2**20, 3.5 * 2**30, None, -1, True, "1", float("inf"))] == [
        "0 B",
        "1,023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.5 GiB",
        "–",
        "–",
        "–",
        "–",
        "–",
    ]
    snap = {
        "mode": "exact",
        "engine": {"available": True},
        "pid": 1,
        "samples": 1,
        "interval": 1.0,
        "sampled_at": 1764115200.0,
        "types": [
            {
                "type": "shop.Order",
                "live": 1000,
                "live_bytes": 72000,
                "live_bytes_measured": 64,
                "history": [[1.0, 900], [2.0, 1000]],
                "increases": 2,
                "analysing": False,
                "source": "tracked",
            }
        ],
        "leaks": [],
        "process": {"resident_bytes": 52428800, "history": [[1.0, 50000000], [2.0, 52428800]]},
    }
    page = render_overview(snap, base="/debug/memory", nonce="n")
    assert "pid 1 · 1 sample every" in page
    assert '<td class="num">1,000</td><td class="num">70.3 KiB</td>' in page
    assert (
        '<p class="meta" id="resident">resident memory 50.0 MiB <svg class="spark" role="img" '
        'aria-label="resident bytes, 2 samples: 50,000,000 to 52,428,800"' in page
    )
    detail = render_type(snap["types"][0], base="/debug/memory", nonce="n")
    assert "<tr><th>bytes</th><td>70.3 KiB (estimate from 64 objects, shallow)</td></tr>" in detail
    assert "<th>reported as</th>" not in detail
    folded = dict(snap["types"][0], same_leak_as="builtins.dict")
    detail = render_type(folded, base="/debug/memory", nonce="n")
    assert "<tr><th>reported as</th><td>part of the leak of builtins.dict</td></tr>" in detail


def test_a_stack_marks_the_app_s_frames_and_folds_library_runs() -> None:
    frames = [
        {"filename": f, "lineno": n, "function": fn}
        for f, n, fn in (
            ("json/decoder.py", 353, "raw_decode"),
            ("json/__init__.py", 346, "loads"),
            ("shop/cache.py", 17, "remember"),
            ("shop/views.py", 30, "order"),
            ("django/core/handlers/base.py", 197, "_get_response"),
            ("django/core/handlers/exception.py", 55, "inner"),
        )
    ]
    text = page.stack({"count": 3, "total_count": 5, "frames": frames, "app_frames": [2, 3], "app_frame": 2})
    items = re.findall(r'<li( class="(?:app|lib)")?>(?:<details><summary>([^<]+)</summary>)?', text)
    assert [(cls, summary) for cls, summary in items] == [
        ("", ""),
        (' class="lib"', "1 library frame"),
        ("", ""),
        (' class="app"', ""),
        (' class="app"', ""),
        (' class="lib"', "2 library frames"),
        ("", ""),
        ("", ""),
    ]
    assert text.startswith('<div class="path"><div class="count">3 live of 5 allocated since analysis began</div>')
    # paths stored before app_frames existed, or a worker file's odd value: every frame shown, none marked
    for marked in (None, "all", [True]):
        plain = page.stack({"count": 1, "frames": frames, "app_frames": marked})
        assert "<details>" not in plain and 'class="app"' not in plain and plain.count("<li>") == 6


def test_the_page_shows_types_that_could_not_be_monitored_and_a_report_s_count_then_and_now() -> None:
    from memtracker_web.monitor import MemoryMonitor, start_monitoring_logged
    from memtracker_web.render.page import render_overview, render_type

    monitor = MemoryMonitor(interval=3600.0)
    assert start_monitoring_logged(monitor, "shop.models.Nope") is False
    snap = monitor.snapshot()
    assert snap["config_errors"] == [
        {"type": "shop.models.Nope", "error": "no class named 'shop.models.Nope' could be found"}
    ]
    snap["types"] = [{"type": "shop.Order", "live": 1200, "history": []}]
    snap["leaks"] = [{"type": "shop.Order", "live": 1000, "increases": 1, "detected_at": 1764115200.0, "top_paths": []}]
    text = render_overview(snap, base="/debug/memory", nonce="n")
    assert (
        '<p class="note" id="config-errors"><strong>Not monitored:</strong> <code>shop.models.Nope</code>: '
        "no class named &#x27;shop.models.Nope&#x27; could be found</p>"
    ) in text
    assert re.search(r"1,000 live when detected [^,]+, after 1 increase; 1,200 live now</p>", text), text
    detail = render_type(
        {
            "type": "shop.Order",
            "live": 3,
            "hotspots": [
                {
                    "filename": "shop/cache.py",
                    "lineno": 17,
                    "function": "remember",
                    "count": 3,
                    "self_count": 2,
                    "total_count": 9,
                }
            ],
        },
        base="/debug/memory",
        nonce="n",
    )
    assert ('<td class="num">3</td><td class="num">2</td><td class="num">9</td></tr>') in detail
    assert "<th>live, made here</th>" in detail
    monitor.close()


class Parcel:
    pass


PARCELS: list = []


def test_who_holds_a_type_s_objects_on_demand_in_json_and_on_its_page():
    from memtracker_web.monitor import MemoryMonitor, retention

    monitor = MemoryMonitor(interval=3600.0)
    ep = endpoint(monitor)
    name = f"{__name__}.Parcel"
    try:
        status, _, body = call(ep, path=f"/debug/memory/types/{name}/retainers", headers=JSON)
        assert status == 404
        monitor.start_monitoring(Parcel)
        PARCELS[:] = [Parcel() for _ in range(30)]
        monitor.sample()
        status, _, body = call(ep, path=f"/debug/memory/types/{name}/retainers", headers=JSON)
        if monitor.mode != "exact":
            assert status == 409 and "census mode" in json.loads(body)["error"]
            return
        assert status == 200
        found = json.loads(body)
        assert found["chains"] == [{"chain": f"{__name__}.PARCELS -> builtins.list[i] -> {name}", "count": 20}]
        assert (found["objects"], found["unreachable"], found["hidden"], found["stopped"]) == (20, 0, 0, "")
        status, _, body = call(ep, path=f"/debug/memory/types/{name}")
        page = body.decode()
        assert '<table id="retainers">' in page
        assert f"<code>{__name__}.PARCELS -&gt; builtins.list[i] -&gt; {name}</code>" in page
        status, _, body = call(ep, path=f"/debug/memory/types/{name}/retainers", method="POST")
        assert status == 405
        assert retention._lock.acquire(blocking=False)  # another search is running
        try:
            status, _, body = call(ep, path=f"/debug/memory/types/{name}/retainers", headers=JSON)
        finally:
            retention._lock.release()
        assert status == 409
        assert json.loads(body)["error"] == "a retention search is already running in this process"
        assert call(ep, path="/debug/memory/types//retainers")[0] == 404
    finally:
        PARCELS.clear()
        monitor.close()


def test_a_leak_report_shows_who_held_them_once_searched_and_an_unreported_type_keeps_its_stacks() -> None:
    from memtracker_web.render.page import render_overview

    path = {"count": 5, "total_count": 9, "frames": [{"filename": "shop/a.py", "lineno": 3, "function": "f"}]}
    snap = {
        "mode": "exact",
        "engine": {"available": True},
        "pid": 1,
        "samples": 3,
        "interval": 1.0,
        "types": [
            {"type": "shop.Order", "live": 9, "analysing": True, "top_paths": [path], "history": []},
            {"type": "shop.Line", "live": 4, "analysing": True, "top_paths": [path], "history": []},
        ],
        "leaks": [
            {
                "type": "shop.Order",
                "live": 9,
                "increases": 3,
                "detected_at": 1764115200.0,
                "top_paths": [path],
                "retainers": {
                    "chains": [{"chain": "shop.cache.HOARD -> builtins.list[i] -> shop.Order", "count": 20}],
                    "computed_at": 1764115100.0,
                },
            }
        ],
    }
    text = render_overview(snap, base="/debug/memory", nonce="n")
    assert (
        '<ul class="held"><li>20 <code>shop.cache.HOARD -&gt; builtins.list[i] -&gt; shop.Order</code></li></ul>'
        in text
    )
    assert text.count('<section class="analysed">') == 1 and "shop.Line</code></a></h3>" in text


@pytest.mark.parametrize(
    ("kept", "shown"),
    [
        ({"reports": 3, "first_detected_at": 1764115080.0}, "(3 reports since "),
        ({"reports": 1, "first_detected_at": 1764115200.0}, None),
        ({}, None),  # from a monitor that kept one entry per report
        ({"reports": "many"}, None),
        ({"reports": -2}, None),
        ({"reports": True}, None),
        ({"reports": 2, "first_detected_at": "yesterday"}, "(2 reports since "),
    ],
)
def test_a_kept_leak_report_says_how_many_the_type_had(kept: dict, shown: str | None) -> None:
    from memtracker_web.render.page import render_overview
    from memtracker_web.render.report import leaks_by_type

    report = {"type": "shop.Order", "live": 9, "increases": 3, "detected_at": 1764115200.0, "top_paths": []}
    snap = {"mode": "exact", "engine": {"available": True}, "pid": 1, "samples": 3, "interval": 1.0, "types": []}
    snap["leaks"] = [dict(report, **kept)]
    text = render_overview(snap, base="/debug/memory", nonce="n")
    assert '<section class="leak-report">' in text
    assert (" reports since " in text) is (shown is not None)
    if shown is not None:
        assert shown + page._when(kept["first_detected_at"]) + ")" in text  # the first report's time
    count = kept["reports"] if shown else 1
    assert leaks_by_type(snap)["shop.Order"][1] == count
    # the older kind of list, one entry per report, still counts them
    snap["leaks"] = [report, dict(report, live=12)]
    assert leaks_by_type(snap)["shop.Order"] == (snap["leaks"][1], 2)
    assert "(2 reports since " in render_overview(snap, base="/debug/memory", nonce="n")


def test_the_type_page_chart_labels_both_axes_and_survives_odd_points() -> None:
    import time as _time

    from memtracker_web.render.page import history_chart

    start = 1764115200.0
    svg = history_chart([[start, 100], [start + 60, 250], [start + 120, 300]])
    assert 'aria-label="live objects, 3 samples: 100 to 300"' in svg
    assert '<text x="60" y="16" text-anchor="end">300</text>' in svg
    assert '<text x="60" y="128" text-anchor="end">100</text>' in svg
    assert f'<text x="64" y="144">{_time.strftime("%H:%M:%S", _time.localtime(start))}</text>' in svg
    assert svg.count('<line class="axis"') == 2
    odd = history_chart([[start, "many"], ["x", 3], [1e300, 5], [start, True], None, [start, 7, 8]])
    assert 'aria-label="live objects, 1 sample: 5 to 5"' in odd and "<text" in odd
    assert "no samples yet" in history_chart([])


def test_the_type_page_says_what_a_search_could_not_trace() -> None:
    from memtracker_web.render.page import render_type

    page = render_type(
        {
            "type": "shop.Order",
            "live": 5,
            "retainers": {
                "chains": [],
                "objects": 5,
                "unreachable": 2,
                "hidden": 2,
                "unresolved": 1,
                "stopped": "time budget spent",
                "seconds": 2.0,
                "computed_at": 1764115200.0,
            },
        },
        base="/debug/memory",
        nonce="n",
    )
    assert (
        "2 unreachable, waiting for the garbage collector (nothing holds them from outside a reference cycle)" in page
    )
    assert "2 held where the collector cannot see: a running function's local variable, or C code" in page
    assert "1 not traced to a root before the search stopped" in page
    assert "stopped: time budget spent" in page and '<table id="retainers">' not in page
