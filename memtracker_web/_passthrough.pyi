"""Types of memtracker_web._passthrough (memtracker_web/_passthrough.c): the ASGI
middleware's per-request pass-through test, in C.

A Passthrough instance is called with (scope, receive, send) like any ASGI app. An
http request whose path contains none of ``_passthrough_routes`` goes straight to
``app`` (the result is the app's own awaitable); every other call goes to the
subclass's ``_dispatch(scope, receive, send)``, whatever its arguments.
"""

from typing import Any

class Passthrough:
    """ASGI app base: calls app directly for http requests outside _passthrough_routes,
    everything else through self._dispatch."""

    # `app` raises AttributeError until it is set (T_OBJECT_EX); a new instance's
    # _passthrough_routes is None (every call goes to _dispatch).
    app: Any
    _passthrough_routes: tuple[str, ...] | None
    def __new__(cls, *args: Any, **kwargs: Any) -> Passthrough: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
