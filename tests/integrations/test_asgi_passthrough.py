"""The ASGI middleware's pass-through: http requests that are not ours reach the
app with no layer of ours in between (the C base in _passthrough.c), every
other call goes to the Python dispatch, and servers still see an ASGI 3 app."""

from __future__ import annotations

import asyncio
import collections
import gc
import inspect
import os
import subprocess
import sys
import textwrap
import weakref
from typing import Any

import pytest

from memtracker_web.asgi import MemoryTrackerMiddleware
from memtracker_web.integrations import asgi
from support import FakeMonitor

# What the C base does (a direct call of the app, _dispatch looked up on the
# instance); the pure-Python base is tested in a subprocess below.
needs_c = pytest.mark.skipif(not asgi._BASE_IN_C, reason="the C extension memtracker_web._passthrough is not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Awaitable:
    """What the fake app returns: awaitable, and recognisable by identity."""

    def __await__(self) -> Any:
        return iter(())


class App:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []
        self.result = Awaitable()

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable:
        self.calls.append((scope, receive, send))
        return self.result


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


def started(app: Any, **options: Any) -> MemoryTrackerMiddleware:
    """A middleware whose first request (which starts it) has been served."""
    mw = MemoryTrackerMiddleware(app, monitor=FakeMonitor(), **options)
    first = mw({"type": "http", "path": "/"}, receive, send)
    assert inspect.iscoroutine(first)  # before the start: the Python dispatch
    asyncio.run(first)
    assert mw._started
    return mw


class Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        return "dispatched"


class StrSub(str):
    pass


@needs_c
def test_an_http_request_not_ours_is_the_apps_own_call() -> None:
    app = App()
    mw = started(app, metrics_path="/metrics")
    assert mw._passthrough_routes == ("/debug/memory", "/metrics")
    scope = {"type": "http", "path": "/orders/7"}
    assert mw(scope, receive, send) is app.result  # the app's awaitable itself: no frame of ours
    assert app.calls[-1] == (scope, receive, send)
    assert all(a is b for a, b in zip(app.calls[-1], (scope, receive, send), strict=True))
    assert asyncio.run(_await(mw(scope, receive, send))) is None


async def _await(awaitable: Any) -> Any:
    return await awaitable


@needs_c
@pytest.mark.parametrize(
    "scope, direct",
    [
        ({"type": "http", "path": "/"}, True),
        ({"type": "http", "path": "/debug/memor"}, True),
        ({"type": "http", "path": "/debug/memory"}, False),
        ({"type": "http", "path": "/debug/memory/types/x.Y"}, False),
        ({"type": "http", "path": "/shop/debug/memoryless"}, False),  # contains the route: Python decides
        ({"type": "http", "path": "/metrics"}, False),
        ({"type": "http", "root_path": "/api", "path": "/api/debug/memory"}, False),
        ({"type": "http", "root_path": "/api", "path": "/api/orders"}, True),
        ({"type": "http", "path": "/api/metrics/today"}, False),
        ({"type": "http"}, False),  # no path
        ({"type": "http", "path": b"/"}, False),  # not a str
        ({"type": "http", "path": StrSub("/")}, False),  # not exactly a str
        ({"type": StrSub("http"), "path": "/"}, False),
        ({"type": "websocket", "path": "/"}, False),
        ({"type": "lifespan"}, False),
        ({"path": "/"}, False),  # no type
        (collections.UserDict({"type": "http", "path": "/"}), False),  # not exactly a dict
    ],
)
def test_what_goes_straight_to_the_app(scope: Any, direct: bool) -> None:
    app = App()
    mw = started(app, metrics_path="/metrics")
    spy = mw._dispatch = Spy()  # the C base looks _dispatch up on the instance
    before = len(app.calls)
    result = mw(scope, receive, send)
    if direct:
        assert result is app.result and len(app.calls) == before + 1 and spy.calls == []
    else:
        assert result == "dispatched" and len(app.calls) == before
        assert spy.calls == [((scope, receive, send), {})]


@needs_c
def test_without_metrics_route_only_the_page_is_ours() -> None:
    app = App()
    mw = started(app, metrics_path=None)
    assert mw._passthrough_routes == ("/debug/memory",)
    mw._dispatch = Spy()
    assert mw({"type": "http", "path": "/metrics"}, receive, send) is app.result


@needs_c
def test_keyword_and_odd_calls_go_to_the_dispatch() -> None:
    app = App()
    mw = started(app)
    spy = mw._dispatch = Spy()
    scope = {"type": "http", "path": "/"}
    assert mw(scope, receive=receive, send=send) == "dispatched"
    assert mw(scope, receive) == "dispatched"
    assert spy.calls == [((scope,), {"receive": receive, "send": send}), ((scope, receive), {})]


@needs_c
def test_before_the_start_every_call_is_dispatched() -> None:
    app = App()
    mw = MemoryTrackerMiddleware(app, monitor=FakeMonitor())
    assert mw._passthrough_routes is None
    spy = mw._dispatch = Spy()
    assert mw({"type": "http", "path": "/"}, receive, send) == "dispatched"
    assert app.calls == [] and len(spy.calls) == 1


def test_errors_surface_from_the_dispatch_as_before() -> None:
    mw = started(App())
    with pytest.raises(KeyError, match="'type'"):
        asyncio.run(_await(mw({}, receive, send)))
    with pytest.raises(TypeError):
        mw()  # no arguments: the dispatch's own signature error


@needs_c
def test_the_app_can_be_replaced() -> None:
    first, second = App(), App()
    mw = started(first)
    assert mw.app is first
    mw.app = second
    assert mw({"type": "http", "path": "/"}, receive, send) is second.result
    del mw.app  # then no direct call: the dispatch raises what Python would
    with pytest.raises(AttributeError, match="app"):
        asyncio.run(_await(mw({"type": "http", "path": "/"}, receive, send)))


def test_a_dropped_middleware_is_freed_without_the_collector() -> None:
    # Its __call__ attribute refers to it weakly: no cycle of its own.
    app = App()
    mw = started(app)
    refs = weakref.ref(mw), weakref.ref(app)
    gc.disable()
    try:
        del mw, app
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


def test_a_cycle_through_the_app_slot_is_collected() -> None:
    # The cycle runs through the C member alone: the collector must see it.
    app = App()
    mw = started(app)
    app.back = mw
    refs = weakref.ref(mw), weakref.ref(app)
    del mw, app
    gc.collect()
    assert [r() for r in refs] == [None, None]


@needs_c
def test_the_app_may_replace_itself_during_its_call() -> None:
    second = App()

    class Swapping(App):
        armed = False

        def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable:
            if self.armed:
                del mw.app  # the middleware holds its own reference for the call
                mw.app = second
                mw._passthrough_routes = ("/",)
            return super().__call__(scope, receive, send)

    first = Swapping()
    mw = started(first)
    first.armed = True
    result = mw({"type": "http", "path": "/x"}, receive, send)
    assert result is first.result
    del first
    spy = mw._dispatch = Spy()
    assert mw({"type": "http", "path": "/x"}, receive, send) == "dispatched"  # "/" is in "/x" now
    assert second.calls == [] and len(spy.calls) == 1


@needs_c
def test_lifespan_startup_opens_the_direct_path() -> None:
    app = App()
    mw = MemoryTrackerMiddleware(app, monitor=FakeMonitor())
    messages = [{"type": "lifespan.startup"}]

    async def lifespan_app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"

    async def lifespan_receive() -> dict[str, Any]:
        return messages.pop(0)

    mw.app = lifespan_app
    asyncio.run(_await(mw({"type": "lifespan"}, lifespan_receive, send)))
    assert mw._passthrough_routes == ("/debug/memory",)
    mw.app = app
    assert mw({"type": "http", "path": "/"}, receive, send) is app.result


def test_a_subclass_call_is_still_called() -> None:
    calls = []

    class Logging(MemoryTrackerMiddleware):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            calls.append(scope["path"])
            await super()._dispatch(scope, receive, send)

    app = App()
    mw = Logging(app, monitor=FakeMonitor())
    scope = {"type": "http", "path": "/"}
    asyncio.run(_await(mw(scope, receive, send)))
    asyncio.run(_await(mw(scope, receive, send)))
    assert calls == ["/", "/"] and len(app.calls) == 2
    assert mw.__call__.__func__ is Logging.__call__  # not replaced by the instance attribute


def test_servers_see_an_asgi3_app() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    is_double_callable = pytest.importorskip("asgiref.compatibility").is_double_callable
    from starlette._utils import is_async_callable

    mw = MemoryTrackerMiddleware(App(), monitor=FakeMonitor())
    assert inspect.iscoroutinefunction(mw.__call__)
    assert is_async_callable(mw)
    assert not is_double_callable(mw)  # asgiref (Django, Daphne): a single callable
    config = uvicorn.Config(mw, log_level="warning")
    config.load()
    assert config.interface == "asgi3"


FALLBACK = textwrap.dedent("""
    import sys, warnings
    sys.modules["memtracker_web._passthrough"] = None      # as if the extension were not built
    from memtracker_web.asgi import MemoryTrackerMiddleware
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    import uvicorn

    async def home(request):
        return PlainTextResponse("home")

    assert MemoryTrackerMiddleware.__mro__[1].__module__ == "memtracker_web.integrations.asgi"
    mw = MemoryTrackerMiddleware(Starlette(routes=[Route("/", home)]), metrics_path="/metrics", track=["x.Y"])
    config = uvicorn.Config(mw, log_level="warning")
    config.load()
    with TestClient(mw, client=("127.0.0.1", 5000), base_url="http://localhost") as c:
        print(config.interface, c.get("/").text, c.get("/debug/memory?format=json").status_code,
              c.get("/metrics").status_code, mw._passthrough_routes)
""")


def test_without_the_extension_the_python_base_serves() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-c", FALLBACK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "asgi3 home 200 200 ('/debug/memory', '/metrics')"
