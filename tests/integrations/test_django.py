"""Django middleware through Django's test client; options from settings.MEMTRACKER."""

from __future__ import annotations

import json
from typing import Any

import django
import pytest
from django.conf import settings
from django.http import HttpResponse
from django.urls import path
from prometheus_client import CollectorRegistry

from support import ORDER, FakeMonitor, Order, leaky_monitor

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        SECRET_KEY="test-only",
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "memtracker_web.django.MemoryTrackerMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        INSTALLED_APPS=[],
        DATABASES={},
    )
    django.setup()

from django.test import Client, override_settings  # noqa: E402  (needs configured settings)


def home(request: Any) -> HttpResponse:
    return HttpResponse("home", headers={"X-App": "1"})


urlpatterns = [path("", home)]
JSON = {"HTTP_ACCEPT": "application/json"}


def test_serves_endpoint_and_passes_through() -> None:
    monitor = leaky_monitor()
    with override_settings(
        MEMTRACKER={"monitor": monitor, "metrics_path": "/metrics", "registry": CollectorRegistry()}
    ):
        c = Client()
        r = c.get("/debug/memory", **JSON)
        assert r.status_code == 200
        assert json.loads(r.content) == monitor.snapshot()
        assert r["Cache-Control"] == "no-store"
        assert r["X-Content-Type-Options"] == "nosniff"
        assert r["Content-Type"] == "application/json"
        r = c.get("/")
        assert (r.status_code, r.content, r["X-App"]) == (200, b"home", "1")
        assert c.get("/metrics")["Content-Type"].startswith("text/plain; version=")
        assert c.get("/nope").status_code == 404
        assert monitor.running


def test_html_and_detail() -> None:
    with override_settings(MEMTRACKER={"monitor": leaky_monitor()}):
        c = Client()
        r = c.get("/debug/memory")
        assert r["Content-Type"] == "text/html; charset=utf-8"
        assert "frame-ancestors 'none'" in r["Content-Security-Policy"]
        assert b'<a href="/debug/memory/types/shop.cache.Entry">' in r.content
        r = c.get("/debug/memory/types/shop.cache.Entry", {"format": "json"})
        assert json.loads(r.content)["hotspots"][0]["function"] == "remember"


def test_post_bypasses_csrf_but_needs_json() -> None:
    monitor = FakeMonitor()
    with override_settings(MEMTRACKER={"monitor": monitor}):
        c = Client(enforce_csrf_checks=True)
        r = c.post("/debug/memory/track", {"type": ORDER, "analysis": True}, content_type="application/json")
        assert (r.status_code, json.loads(r.content)) == (200, {"type": ORDER, "tracking": True, "analysis": True})
        assert monitor.calls == [("start_monitoring", Order, None, True)]
        r = c.post("/debug/memory/track", "type=x", content_type="application/x-www-form-urlencoded")
        assert (r.status_code, json.loads(r.content)) == (415, {"error": "Content-Type must be application/json"})
        r = c.post("/debug/memory/track", b" " * 20000, content_type="application/json")
        assert (r.status_code, json.loads(r.content)) == (413, {"error": "request body is larger than 16384 bytes"})
        r = c.post("/debug/memory/untrack", "[", content_type="application/json")
        assert (r.status_code, json.loads(r.content)) == (400, {"error": "body is not valid JSON"})
        r = c.get("/debug/memory/untrack")
        assert (r.status_code, r["Allow"]) == (405, "POST")
        assert len(monitor.calls) == 1


@pytest.mark.parametrize(
    "addr, token, headers, status",
    [
        ("127.0.0.1", None, {}, 200),
        ("192.0.2.1", None, {}, 403),
        ("192.0.2.1", "tok", {}, 401),
        ("192.0.2.1", "tok", {"HTTP_AUTHORIZATION": "Bearer tok"}, 200),
        ("192.0.2.1", "tok", {"HTTP_AUTHORIZATION": "Bearer bad"}, 403),
        ("127.0.0.1", None, {"HTTP_X_FORWARDED_FOR": "192.0.2.1"}, 403),
    ],
)
def test_auth(addr: str, token: str | None, headers: dict[str, str], status: int) -> None:
    with override_settings(MEMTRACKER={"monitor": leaky_monitor(), "token": token}):
        c = Client()
        assert c.get("/debug/memory", REMOTE_ADDR=addr, **JSON, **headers).status_code == status
        assert c.get("/", REMOTE_ADDR=addr).status_code == 200


def test_settings_options_and_errors() -> None:
    with override_settings(MEMTRACKER={"monitor": leaky_monitor(), "path": "/ops/mem"}):
        c = Client()
        assert c.get("/ops/mem", **JSON).status_code == 200
        assert c.get("/debug/memory").status_code == 404
    with override_settings(MEMTRACKER={"monitor": FakeMonitor(), "pth": "/x"}):
        with pytest.raises(ValueError, match="unknown memtracker option"):
            Client().get("/")


def test_the_monitor_starts_as_the_middleware_loads() -> None:
    from memtracker_web.django import MemoryTrackerMiddleware

    monitor = FakeMonitor()
    with override_settings(MEMTRACKER={"monitor": monitor}):
        mw = MemoryTrackerMiddleware(home)
        assert (monitor.starts, mw.endpoint.serving) == (1, False)
        Client().get("/")
        assert monitor.starts == 1
    assert mw.endpoint.options.monitor is monitor


def test_allowed_hosts_applies_to_the_endpoint_unless_memtracker_sets_its_own() -> None:
    # DNS rebinding: a request admitted by address must name this server
    with override_settings(MEMTRACKER={"monitor": leaky_monitor()}):
        assert Client().get("/debug/memory", HTTP_HOST="evil.example", **JSON).status_code == 403
        assert Client().get("/debug/memory", HTTP_HOST="testserver", **JSON).status_code == 200  # ALLOWED_HOSTS
    with override_settings(MEMTRACKER={"monitor": leaky_monitor(), "allowed_hosts": ["ops.internal"]}):
        assert Client().get("/debug/memory", HTTP_HOST="ops.internal", **JSON).status_code == 200
        assert Client().get("/debug/memory", HTTP_HOST="testserver", **JSON).status_code == 403
