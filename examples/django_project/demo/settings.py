"""Minimal settings for the memtracker-web Django example (no database, no apps)."""

from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    "memtracker_web.django.MemoryTrackerMiddleware",  # first: it does its own auth
    "django.middleware.common.CommonMiddleware",
]

MEMTRACKER = {
    "path": "/debug/memory",
    "metrics_path": "/metrics",
    "track": ["demo.views.CacheEntry"],
    "threshold": 50,  # small numbers so a few dozen /leak calls escalate it
    "increases": 3,
    "interval": float(os.environ.get("MEMTRACKER_INTERVAL", "1.0")),
}
