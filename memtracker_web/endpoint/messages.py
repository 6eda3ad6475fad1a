"""The endpoint's messages, free of any web framework: :class:`Request`,
:class:`Response`, :class:`HTTPError` and the responses built from them.

The ASGI, WSGI, Flask and Django adapters translate their request into a
:class:`Request` and the :class:`Response` back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ..render import jsontext

MAX_BODY = 16 * 1024


MAX_BODY = 16 * 1024


@dataclass
class Request:
    method: str
    path: str  # relative to the mount point (PATH_INFO, ASGI path minus root_path)
    query_string: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    client: str | None = None
    body: bytes = b""
    script_name: str = ""  # prefix for links in the HTML page
    raw_path: str | None = None  # the path as sent, still percent-encoded, where the server gives it


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


BASE_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


def json_response(status: int, data: Any, extra: Sequence[tuple[str, str]] = ()) -> Response:
    body = jsontext.dumps(data).encode()
    return Response(status, [("Content-Type", "application/json")] + BASE_HEADERS + list(extra), body)


def error_response(status: int, message: str, extra: Sequence[tuple[str, str]] = ()) -> Response:
    return json_response(status, {"error": message}, extra)


def html_response(page: str, nonce: str) -> Response:
    # No scripts at all; the only inline style block carries the nonce.
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    headers = [("Content-Type", "text/html; charset=utf-8")] + BASE_HEADERS + [("Content-Security-Policy", csp)]
    return Response(200, headers, page.encode())


def parse_query(query_string: str) -> dict[str, str]:
    try:
        pairs = parse_qs(query_string, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError:
        raise HTTPError(400, "too many query parameters") from None
    return {key: values[-1] for key, values in pairs.items()}


def wants_json(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    fmt = query.get("format")
    if fmt is not None:
        if fmt not in ("json", "html"):
            raise HTTPError(400, "format must be 'json' or 'html'")
        return fmt == "json"
    # JSON only when the client names it and does not prefer HTML; */* gets HTML.
    quality = {}
    for part in headers.get("accept", "").split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.strip().lower()] = q
    json_q = quality.get("application/json", 0.0)
    return json_q > 0 and json_q >= quality.get("text/html", 0.0)


def decimal(value: str | None) -> int | None:
    """A header's or query's whole number written in ASCII digits, else None.
    (str.isdigit() accepts "²" and other digits int() refuses.)"""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 20:
        return None
    return int(value)
