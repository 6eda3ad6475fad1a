"""Small apps with one leak each, the shapes of public leak reports, for bench/leak_shapes.py.

    LEAK_SHAPE=user-class uvicorn bench.leak_apps:app

Every app answers ``/`` (healthy work: a JSON body, a bounded cache, ``__class__``
swaps as Django's query cloning does) and ``/work``, which does the shape's
work once. ``EXPECTED[shape]`` is the type a report must name and the line (a
``# ALLOC`` marker in this file) its top path must start at. The middleware is
added as README says: ``watch_all=True``, ``interval`` from LEAK_INTERVAL (1 s).
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

SHAPE = os.environ.get("LEAK_SHAPE", "healthy")


# -- the shapes ---------------------------------------------------------------


class Order:
    def __init__(self, n: int) -> None:
        self.n = n
        self.lines = [{"sku": f"sku-{n}-{i}", "qty": i} for i in range(3)]


ORDERS: list = []


def user_class(n: int) -> None:
    ORDERS.append(Order(n))  # ALLOC user-class


PAYLOADS: list = []


def builtins_only(n: int) -> None:
    PAYLOADS.append({"request": n, "tag": "x"})  # ALLOC builtins


class Receiver:
    """A signal receiver, connected per request and never disconnected."""

    def __init__(self, handler) -> None:
        self.handler = handler


class Signal:
    def __init__(self) -> None:
        self.receivers: list = []

    def connect(self, handler) -> None:
        self.receivers.append(Receiver(handler))  # ALLOC registry


request_started = Signal()


def registry(n: int) -> None:
    request_started.connect(lambda sender: n)


class QueryResult:
    def __init__(self, rows) -> None:
        self.rows = rows


class Repository:
    @functools.cache  # noqa: B019 -- the leak this app shows: keeps every query (and self) for ever
    def find(self, key: str) -> QueryResult:
        return QueryResult([{"id": key, "v": i} for i in range(2)])  # ALLOC lru


REPO = Repository()


def unbounded_cache(n: int) -> None:
    REPO.find(f"user-{n}")


class Subscription:
    def __init__(self, n: int) -> None:
        self.n = n


async def _listen(sub: Subscription) -> None:
    await asyncio.Event().wait()  # never set: the task never ends


TASKS: set = set()


def never_ending_task(n: int) -> None:
    TASKS.add(asyncio.get_running_loop().create_task(_listen(Subscription(n))))  # ALLOC task


class NotReady(Exception):
    pass


LAST_ERROR = NotReady("not ready")


def traceback_chain(n: int) -> None:
    # re-raising one module-level exception appends to its traceback every time
    try:
        raise LAST_ERROR  # ALLOC traceback
    except NotReady:
        pass


class Item:
    def __init__(self, n: int) -> None:
        self.n = n


KEPT_ITEMS: list = []


def slow_leak(n: int) -> None:
    batch = [Item(i) for i in range(500)]  # a large churning population of the same type
    KEPT_ITEMS.extend(Item(n) for _ in range(3))  # ALLOC slow
    del batch


SESSION_IDS: set = set()


def str_set(n: int) -> None:
    # a set of session ids nobody prunes: strs only, amid every request's churn of strs
    SESSION_IDS.add(f"session-{n}-{uuid.uuid4().hex}")  # ALLOC str-set


STOP_AFTER = 600  # requests: about 20 s of load, twice the 10 increases a report needs
SESSIONS: list = []


class Session:
    pass


def leak_that_stops(n: int) -> None:
    if n < STOP_AFTER:
        SESSIONS.append(Session())  # ALLOC stops


SHAPES = {
    "user-class": user_class,
    "builtins": builtins_only,
    "registry": registry,
    "lru": unbounded_cache,
    "task": never_ending_task,
    "traceback": traceback_chain,
    "slow": slow_leak,
    "str-set": str_set,
    "stops": leak_that_stops,
    "healthy": lambda n: None,
}

# shape => (the type a report must name, the ALLOC marker its top path starts at, or None)
EXPECTED = {
    "user-class": ("leak_apps.Order", "user-class"),
    "builtins": ("builtins.dict", "builtins"),
    "registry": ("leak_apps.Receiver", "registry"),
    "lru": ("leak_apps.QueryResult", "lru"),
    "task": ("leak_apps.Subscription", "task"),
    "traceback": ("builtins.traceback", "traceback"),
    "slow": ("leak_apps.Item", "slow"),
    "str-set": ("builtins.str", "str-set"),
    "stops": ("leak_apps.Session", "stops"),
    "healthy": (None, None),
}


# -- healthy work every request does ------------------------------------------


class Empty:
    pass


class Query:
    def __init__(self) -> None:
        self.where: list = []


def clone(query: Query) -> Query:
    copy = Empty()
    copy.__class__ = Query  # Django's Query.clone()
    copy.where = list(query.where)
    return copy


@functools.lru_cache(maxsize=1024)
def render(n: int) -> str:
    return f"<p>{n}</p>" * 3


COUNTER = {"n": 0}


async def index(request):
    COUNTER["n"] += 1
    n = COUNTER["n"]
    q = clone(Query())
    body = {"page": render(n % 2048), "filters": len(q.where), "items": [{"i": i} for i in range(5)]}
    return JSONResponse(body)


async def work(request):
    COUNTER["n"] += 1
    SHAPES[SHAPE](COUNTER["n"])
    return JSONResponse({"ok": True, "n": COUNTER["n"]})


app = Starlette(routes=[Route("/", index), Route("/work", work)])

if os.environ.get("LEAK_LOG"):  # the monitor's log on stderr, for bench/leak_shapes.py
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("memtracker_web").setLevel(logging.INFO)

if os.environ.get("LEAK_NOOP_TRACER"):  # with LEAK_NO_TOOL=1: the floor, CPython's tracer call alone
    from memtracker_web import _tracker

    _tracker._noop_tracer(True)

if not os.environ.get("LEAK_NO_TOOL"):  # LEAK_NO_TOOL=1: the app alone, CPU time's baseline
    from memtracker_web.asgi import MemoryTrackerMiddleware

    options = {"watch_all": True, "interval": float(os.environ.get("LEAK_INTERVAL", "1.0"))}
    if os.environ.get("LEAK_WATCH_SAMPLE"):  # another rate than the default, to compare
        options["watch_sample"] = int(os.environ["LEAK_WATCH_SAMPLE"])
    app.add_middleware(MemoryTrackerMiddleware, **options)
