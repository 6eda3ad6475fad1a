"""``python -m memtracker_web report URL``: a /debug/memory snapshot as a terminal report.

Standard library only (urllib), so it runs anywhere the package is
installed, e.g. as a CI step against a staging server.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..monitor.history import growth
from .leaks import report_count

MAX_BYTES = 64 * 1024 * 1024
_SNAPSHOT_KEYS = ("mode", "types", "leaks")


class ReportError(Exception):
    """Unreachable, refused or not a snapshot; shown as one line, exit code 2."""


def snapshot_url(url: str) -> str:
    """The JSON form of the endpoint at ``url`` (a bare host means /debug/memory)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ReportError(f"{url!r} is not an http(s) URL like http://127.0.0.1:8000/debug/memory")
    path = parts.path if parts.path not in ("", "/") else "/debug/memory"
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "format"]
    query.append(("format", "json"))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would resend the Authorization header to wherever a redirect
    # points; a token must only go to the URL the user named.
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise ReportError(f"{req.full_url} redirects to {newurl}; run the report against that URL")


def fetch(url: str, *, token: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    target = snapshot_url(url)
    headers = {"Accept": "application/json", "User-Agent": f"memtracker-web/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:
            raise ReportError(_http_error(target, err.code, err.reason, err.read(64 * 1024))) from None
    except urllib.error.URLError as err:
        raise ReportError(f"cannot reach {target}: {_reason(err.reason)}") from None
    except TimeoutError:
        raise ReportError(f"no answer from {target} within {timeout:g} s") from None
    except OSError as err:
        raise ReportError(f"cannot reach {target}: {_reason(err)}") from None
    if len(body) > MAX_BYTES:
        raise ReportError(f"{target} answered with more than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        data = json.loads(body)
    except ValueError:
        raise ReportError(
            f"{target} did not answer with JSON (Content-Type {content_type or 'missing'}); "
            "is it a memtracker /debug/memory endpoint?"
        ) from None
    if not isinstance(data, dict) or any(key not in data for key in _SNAPSHOT_KEYS):
        raise ReportError(
            f"{target} answered JSON that is not a memtracker snapshot (expected the keys {', '.join(_SNAPSHOT_KEYS)})"
        )
    problem = malformed(data)
    if problem:
        raise ReportError(f"{target} answered a memtracker snapshot this report cannot read: {problem}")
    return data


def malformed(data: Mapping[str, Any]) -> str | None:
    """What makes a snapshot unreadable for render() and the exit code, or None."""
    for key in ("types", "leaks"):
        items = data.get(key)
        if not isinstance(items, list):
            return f"{key!r} is not a list"
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                return f"an entry of {key!r} has no type name"
            for field in ("live", "increases"):
                value = item.get(field, 0)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    return f"{item['type']!r} has a {field} that is not a number"
            if not isinstance(item.get("top_paths", []), list) or not isinstance(item.get("history", []), list):
                return f"{item['type']!r} has top_paths or history that is not a list"
            for path in item.get("top_paths", []):
                if not isinstance(path, dict) or not isinstance(path.get("path", []), list):
                    return f"{item['type']!r} has a top path that is not an object with a list of frames"
    return None


def _reason(reason: Any) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _http_error(url: str, code: int, reason: str, body: bytes) -> str:
    message = ""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            message = data["error"]
    except ValueError:
        pass
    text = f"{url} answered {code} {reason}" + (f": {message}" if message else "")
    if code == 401:
        text += " (pass --token or set MEMTRACKER_TOKEN)"
    return text


def leaks_by_type(snapshot: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], int]]:
    """The latest leak report of each type, with how many reports the type has."""
    latest: dict[str, tuple[dict[str, Any], int]] = {}
    for report in snapshot.get("leaks") or []:
        _, seen = latest.get(report["type"], (report, 0))
        latest[report["type"]] = (report, seen + report_count(report))  # oldest first: the last one wins
    return latest


def render(snapshot: Mapping[str, Any], url: str) -> str:
    lines = [f"memtracker report: {url}"]
    engine = snapshot.get("engine") or {}
    mode = snapshot.get("mode")
    lines.append(f"mode:    {mode} ({engine.get('python', 'unknown interpreter')})")
    if mode != "exact" or not engine.get("available", True):
        lines.append(f"engine:  {engine.get('reason', 'no reason given')}")
    sampled = snapshot.get("sampled_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(sampled)) if sampled else "no sample yet"
    lines.append(
        f"process: pid {snapshot.get('pid')}, {snapshot.get('samples', 0)} samples every "
        f"{snapshot.get('interval', 0):g} s, last at {when}"
    )
    census = snapshot.get("census")
    if census:
        cost = census.get("cost_seconds")
        scanned = census.get("objects_scanned")
        lines.append(
            f"census:  {'?' if cost is None else f'{cost:.3f}'} s per sample, "
            f"{'?' if scanned is None else f'{scanned:,}'} objects scanned; "
            f"not counted: {census.get('blind_spots', '')}"
        )
    lines.append("")
    lines.extend(_types_table(snapshot.get("types") or []))
    lines.append("")
    lines.extend(_leaks(snapshot))
    return "\n".join(lines)


def _types_table(types: list[Mapping[str, Any]]) -> list[str]:
    if not types:
        return ["no types monitored"]
    header = ("TYPE", "LIVE", "GROWTH", "INCREASES", "ANALYSING")
    rows = [
        (
            entry["type"],
            f"{entry.get('live', 0):,}",
            f"{growth(entry):+,}",
            str(entry.get("increases", 0)),
            "yes" if entry.get("analysing") else "no",
        )
        for entry in types
    ]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return [f"types ({len(types)}; growth over the kept history):", line(header)] + [line(row) for row in rows]


def _leaks(snapshot: Mapping[str, Any]) -> list[str]:
    leaks = leaks_by_type(snapshot)
    if not leaks:
        return ["no leak reported"]
    lines = [f"LEAKS: {len(leaks)} type(s) reported"]
    for name, (report, count) in leaks.items():
        detected = time.strftime("%H:%M:%S UTC", time.gmtime(report.get("detected_at") or 0))
        lines.append(
            f"{name}: {report.get('live', 0):,} live, grew {report.get('increases', 0)} times "
            f"({count} report(s), last at {detected})"
        )
        if report.get("verdict"):
            lines.append(f"  {report['verdict']}")
        together = report.get("grows_with") or []
        if together:
            lines.append(f"  grows in step with: {', '.join(str(t) for t in together)}")
        paths = report.get("top_paths") or []
        if not paths:
            lines.append(f"  {report.get('note') or 'no call path recorded'}")
        for path in paths:
            lines.append(
                f"  {path.get('count', 0):,} retained ({path.get('total_count', 0):,} allocated), "
                "allocated at (innermost first):"
            )
            lines.extend(f"    {frame}" for frame in path.get("path") or [])
            if path.get("truncated"):
                lines.append("    ... deeper frames were not recorded")
    return lines
