"""Leaks of other shapes than bench/leak_apps.py's, in Flask and Django apps served by
gunicorn, for bench/wsgi_leaks.py.

    LEAK_FRAMEWORK=flask LEAK_SHAPE=closure gunicorn -w 1 wsgi_leak_apps:app   (from bench/)

Each app answers ``/`` (healthy work: a JSON body, a bounded cache) and ``/work``,
which also does the shape's work once. The middleware is added as README says,
through each framework's adapter: ``watch_all=True``, ``interval=1.0``, the rest
default. Both frameworks make garbage in reference cycles every request of their
own (Flask's router: werkzeug's recursive matcher closure), so a leak of functions
or cells shares its type with a count that saws between the collector's passes.
bench/wsgi_leaks.py's ``EXPECTED[shape]``: the type a report must name and the
``# ALLOC`` marker of the line its top path must start at (for a library's objects, the
logger and the metric label, the line of the app's own code its top path names first).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import uuid

from prometheus_client import CollectorRegistry, Counter

FRAMEWORK = os.environ.get("LEAK_FRAMEWORK", "flask")
SHAPE = os.environ.get("LEAK_SHAPE", "healthy")
MEMTRACKER = {"path": "/debug/memory", "watch_all": True, "interval": 1.0}


# -- the shapes ---------------------------------------------------------------

HANDLERS: list = []
BLOBS: dict = {}
SEEN: set = set()
CHECKOUTS = Counter("checkouts", "Checkouts by path", ["path"], registry=CollectorRegistry())


def closure(n: int) -> None:
    HANDLERS.append(lambda: n)  # ALLOC closure


def keyed_bytes(n: int) -> None:
    BLOBS[uuid.uuid4().hex] = os.urandom(64)  # ALLOC bytes


@dataclasses.dataclass
class Visit:
    path: str
    n: int


class Registry:
    by_user: collections.defaultdict = collections.defaultdict(list)


def dataclass_in_class_attribute(n: int) -> None:
    Registry.by_user[n % 7].append(Visit("/work", n))  # ALLOC dataclass


def frozensets(n: int) -> None:
    SEEN.add(frozenset({n, -n}))  # ALLOC frozenset


class Handler:
    def __init__(self, n: int) -> None:
        self.n = n

    def on_event(self, **kwargs) -> int:
        return self.n


def bound_method(n: int) -> None:
    HANDLERS.append(Handler(n).on_event)  # ALLOC method


def partial(n: int) -> None:
    HANDLERS.append(functools.partial(print, n))  # ALLOC partial


def signal_receiver(n: int) -> None:
    if FRAMEWORK == "django":
        from django.dispatch import Signal

        signal = _SIGNALS.setdefault("order_placed", Signal())
        signal.connect(lambda sender, **kw: n, weak=False)  # ALLOC signal-django
    else:
        from blinker import Signal as BlinkerSignal

        signal = _SIGNALS.setdefault("order_placed", BlinkerSignal())
        signal.connect(lambda sender, **kw: n, weak=False)  # ALLOC signal-flask


_SIGNALS: dict = {}


def logger_per_call(n: int) -> None:
    # a logger named after the request: logging's manager keeps every one for ever
    logging.getLogger(f"shop.checkout.{n}").debug("start")  # ALLOC logger


def metric_label(n: int) -> None:
    # a label value per distinct URL: prometheus_client keeps a child metric for each
    CHECKOUTS.labels(path=f"/cart/{n}").inc()  # ALLOC metric-label


_ENGINE: list = []


def sqlalchemy_listener(n: int) -> None:
    # a listener registered per request: SQLAlchemy's event registry keeps it, its
    # key and a wrapper for as long as the engine lives, and calls each at every query
    from sqlalchemy import create_engine, event, text

    if not _ENGINE:
        _ENGINE.append(create_engine("sqlite://"))
    engine = _ENGINE[0]
    event.listen(engine, "after_cursor_execute", lambda *args: n)  # ALLOC sqlalchemy-listener
    with engine.connect() as connection:
        connection.execute(text("select 1"))


SHAPES = {
    "closure": closure,
    "bytes": keyed_bytes,
    "dataclass": dataclass_in_class_attribute,
    "frozenset": frozensets,
    "method": bound_method,
    "partial": partial,
    "signal": signal_receiver,
    "logger": logger_per_call,
    "metric-label": metric_label,
    "sqlalchemy-listener": sqlalchemy_listener,
    "healthy": lambda n: None,
}

# -- healthy work every request does ------------------------------------------


@functools.lru_cache(maxsize=1024)
def render(n: int) -> str:
    return f"<p>{n}</p>" * 3


COUNTER = {"n": 0}


def index_body() -> dict:
    COUNTER["n"] += 1
    n = COUNTER["n"]
    return {"page": render(n % 2048), "items": [{"i": i, "name": f"row{i}"} for i in range(30)]}


def work_body() -> dict:
    COUNTER["n"] += 1
    SHAPES[SHAPE](COUNTER["n"])
    return {"ok": True, "n": COUNTER["n"]}


if FRAMEWORK == "flask":
    from flask import Flask

    from memtracker_web.flask import MemoryTracker

    app = Flask(__name__)
    app.config["MEMTRACKER"] = MEMTRACKER
    MemoryTracker(app)
    app.add_url_rule("/", "index", index_body)
    app.add_url_rule("/work", "work", work_body)
else:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import JsonResponse
    from django.urls import path

    settings.configure(
        SECRET_KEY="bench-only",
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["memtracker_web.django.MemoryTrackerMiddleware", "django.middleware.common.CommonMiddleware"],
        MEMTRACKER=MEMTRACKER,
    )
    django.setup()
    urlpatterns = [
        path("", lambda request: JsonResponse(index_body())),
        path("work", lambda request: JsonResponse(work_body())),
    ]
    app = get_wsgi_application()
