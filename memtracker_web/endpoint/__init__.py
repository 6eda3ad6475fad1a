"""The /debug/memory endpoint, free of any web framework.

:mod:`.messages` (Request, Response, HTTPError and the responses built from them),
:mod:`.auth` (client addresses, Host and Origin checks), :mod:`.routes` (Endpoint,
EndpointOptions: authorisation and the single-process routes) and :mod:`.cluster`
(the multi-worker routes). The integrations translate their framework's request
into a :class:`Request`, call :meth:`Endpoint.handle` and translate the
:class:`Response` back.
"""

from .messages import MAX_BODY, HTTPError, Request, Response, json_response
from .routes import MAX_MONITORED, Endpoint, EndpointOptions, options_from_mapping, start_endpoints

__all__ = [
    "MAX_BODY",
    "MAX_MONITORED",
    "Endpoint",
    "EndpointOptions",
    "HTTPError",
    "Request",
    "Response",
    "json_response",
    "options_from_mapping",
    "start_endpoints",
]
