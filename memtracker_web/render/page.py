"""The HTML pages of the endpoint: self-contained, no scripts, no external assets.

Every value from the snapshot goes through :func:`esc`; the only inline style
block carries the CSP nonce chosen by the endpoint.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import quote

from ..monitor.history import growth
from .leaks import report_count

SPARK_WIDTH = 120
SPARK_HEIGHT = 24

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1b1f24;background:#fff}
h1{font-size:1.35rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.meta{color:#57606a;margin:.2rem 0}.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-weight:600}
.exact{background:#dafbe1;color:#116329}.census{background:#fff8c5;color:#7d4e00}.leak{background:#ffebe9;color:#a40e26}
table{border-collapse:collapse;width:100%;max-width:72rem}\
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.grow{color:#a40e26}.shrink{color:#116329}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}h1 code{font-size:inherit}
ol.stack li.app code{font-weight:600;color:#0550ae}ol.stack li.lib summary{color:#57606a;cursor:pointer}
ol.stack li.lib ol{padding-left:1.2rem;margin:.1rem 0}
ol.stack{margin:.3rem 0 .8rem;padding-left:1.6rem}ol.stack li{margin:.1rem 0}
.path{border-left:3px solid #d0d7de;padding:.2rem .8rem;margin:.5rem 0}.count{color:#57606a}
svg.spark polyline{fill:none;stroke:#0969da;stroke-width:1.5}svg.spark circle{fill:#0969da}
svg.chart polyline{fill:none;stroke:#0969da;stroke-width:1.5}svg.chart circle{fill:#0969da}
svg.chart line.axis{stroke:#8c959f}svg.chart text{font:11px system-ui,sans-serif;fill:#57606a}
.note{color:#57606a;max-width:72rem}a{color:#0969da}
.stale{background:#fff8c5;color:#7d4e00}.gone{background:#eaeef2;color:#57606a}.ok{background:#dafbe1;color:#116329}
tr.gone td{color:#8c959f}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "never"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):  # from a foreign or corrupt snapshot file
        return "invalid time"


def _num(value: Any) -> str:
    return "–" if value is None else esc(f"{value:,}" if isinstance(value, int) else value)


def _ms(seconds: Any) -> str:
    """Seconds as milliseconds ("12.30 ms"); a dash for anything that is not a duration."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
        return "–"
    return f"{seconds * 1000:.2f} ms"


def size_text(value: Any) -> str:
    """Bytes in IEC units ("1.5 MiB"); a dash for anything that is not a size."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**70:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return "–"


def _plural(count: Any, noun: str) -> str:
    return f"{_num(count)} {noun}" + ("" if count == 1 else "s")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(history: Iterable[Any], *, timed: bool = False) -> list[Any]:
    """The (time, value) points of a history whose value (and time, if ``timed``) is a
    number; anything else (another process wrote it) is left out."""
    return [
        p
        for p in history or []
        if isinstance(p, (list, tuple)) and len(p) == 2 and _is_number(p[1]) and (not timed or _is_number(p[0]))
    ]


def _svg_open(kind: str, what: str, values: list[Any], width: int, height: int) -> str:
    label = f"{what}, {len(values)} sample{'' if len(values) == 1 else 's'}"
    if values:
        label += f": {values[0]:,} to {values[-1]:,}"
    return (
        f'<svg class="{kind}" role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{esc(label)}</title>'
    )


def sparkline(
    history: Iterable[Any], *, width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT, what: str = "live objects"
) -> str:
    """Inline SVG of live counts (or ``what``) over time; scaled to the history's own range."""
    values = [v for _t, v in _series(history)]
    head = _svg_open("spark", what, values, width, height)
    if not values:
        return head + "</svg>"
    low, high = min(values), max(values)
    span = (high - low) or 1
    pad = 2
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = [(pad + i * step, height - pad - (v - low) / span * (height - 2 * pad)) for i, v in enumerate(values)]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    return head + f'<polyline points="{coords}"/><circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2"/></svg>'


def history_chart(history: Iterable[Any], *, width: int = 560, height: int = 150) -> str:
    """The type page's chart: live objects over time with both axes labelled
    (lowest and highest count; first and last sample's time)."""
    points = _series(history, timed=True)
    head = _svg_open("chart", "live objects", [v for _t, v in points], width, height)
    if not points:
        return head + f'<text x="8" y="{height // 2}">no samples yet</text></svg>'
    left, right, top, bottom = 64, 8, 8, 22  # room for the axes' values
    values = [v for _t, v in points]
    low, high = min(values), max(values)
    span = (high - low) or 1
    step = (width - left - right) / max(len(points) - 1, 1)
    xy = [(left + i * step, top + (high - v) / span * (height - top - bottom)) for i, v in enumerate(values)]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base_y = height - bottom
    axes = (
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base_y}"/>'
        f'<line class="axis" x1="{left}" y1="{base_y}" x2="{width - right}" y2="{base_y}"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{esc(f"{high:,}")}</text>'
        f'<text x="{left - 4}" y="{base_y}" text-anchor="end">{esc(f"{low:,}")}</text>'
        f'<text x="{left}" y="{height - 6}">{esc(_clock(points[0][0]))}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{esc(_clock(points[-1][0]))}</text>'
    )
    last_x, last_y = xy[-1]
    return head + axes + f'<polyline points="{coords}"/><circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2.5"/></svg>'


def _clock(ts: float) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return "?"


def _frame_text(frame: Mapping[str, Any]) -> str:
    return (
        f"<code>{esc(frame.get('filename', '?'))}:{esc(frame.get('lineno', '?'))}</code>"
        f" in <code>{esc(frame.get('function', '?'))}</code>"
    )


def stack(top_path: Mapping[str, Any]) -> str:
    """One allocation path as a readable stack: the allocating line first, then its callers.
    The app's own frames stand out; runs of other frames (the stdlib's, libraries') after the
    allocating line fold into one line that opens on a click."""
    frames = top_path.get("frames")
    if frames:
        marked = top_path.get("app_frames")
        valid = isinstance(marked, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in marked)
        # an odd value (another process wrote it): fold nothing
        app = set(marked) if valid and isinstance(marked, list) else None
        items: list[str] = []
        folded: list[str] = []

        def fold() -> None:
            if folded:
                items.append(
                    f'<li class="lib"><details><summary>{_plural(len(folded), "library frame")}'
                    f"</summary><ol>{''.join(folded)}</ol></details></li>"
                )
                folded.clear()

        for i, frame in enumerate(frames):
            mine = app is not None and i in app
            line = f'<li class="app">{_frame_text(frame)}</li>' if mine else f"<li>{_frame_text(frame)}</li>"
            if app is None or mine or i == 0:
                fold()
                items.append(line)
            else:
                folded.append(line)
        fold()
        text = "".join(items)
    else:
        text = "".join(f"<li><code>{esc(line)}</code></li>" for line in top_path.get("path") or [])
    count = top_path.get("count")
    total = top_path.get("total_count")
    counts = f"{_num(count)} live"
    if total is not None:
        counts += f" of {_num(total)} allocated"
    counts += " since analysis began"
    more = '<p class="note">deeper frames were not recorded</p>' if top_path.get("truncated") else ""
    return f'<div class="path"><div class="count">{counts}</div><ol class="stack">{text}</ol>{more}</div>'


def type_link(base: str, name: str) -> str:
    href = f"{base}/types/{quote(name, safe='.')}"
    return f'<a href="{esc(href)}"><code>{esc(name)}</code></a>'


def _page(title: str, body: str, nonce: str, refresh: int | None = None) -> str:
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta_refresh}'
        f'<meta name="referrer" content="no-referrer">'
        f'<title>{esc(title)}</title><style nonce="{esc(nonce)}">{_CSS}</style></head>'
        f"<body>{body}</body></html>"
    )


def _engine(snapshot: Mapping[str, Any]) -> str:
    mode = snapshot.get("mode", "?")
    engine = snapshot.get("engine") or {}
    parts = [f'<span class="badge {esc(mode) if mode in ("exact", "census") else ""}">{esc(mode)} mode</span>']
    available = engine.get("available")
    parts.append(f"reference tracer {'available' if available else 'unavailable'}")
    if engine.get("reason"):
        parts.append(esc(engine["reason"]))
    if engine.get("displaced"):
        parts.append("<strong>another tool replaced our tracer</strong>")
    if engine.get("python"):
        parts.append(f"Python {esc(engine['python'])}")
    line = " · ".join(parts)
    stats = (
        f"pid {esc(snapshot.get('pid', '?'))} · {_plural(snapshot.get('samples'), 'sample')} every "
        f"{esc(snapshot.get('interval', '?'))} s · last sample {_when(snapshot.get('sampled_at'))}"
    )
    took = _ms(snapshot.get("sample_duration_seconds"))
    if took != "–":
        stats += f" · took {took}"
    out = f'<p class="meta">{line}</p><p class="meta">{stats}</p>'
    process = snapshot.get("process")
    if isinstance(process, Mapping) and process.get("resident_bytes") is not None:
        history = process.get("history")
        if not isinstance(history, list):
            history = []
        out += (
            f'<p class="meta" id="resident">resident memory {size_text(process.get("resident_bytes"))} '
            f"{sparkline(history, what='resident bytes')}</p>"
        )
    problems = [p for p in snapshot.get("config_errors") or [] if isinstance(p, Mapping)]
    if problems:
        out += (
            '<p class="note" id="config-errors"><strong>Not monitored:</strong> '
            + "; ".join(f"<code>{esc(p.get('type', '?'))}</code>: {esc(p.get('error', ''))}" for p in problems)
            + "</p>"
        )
    census = snapshot.get("census")
    if mode == "census" and isinstance(census, Mapping):
        out += (
            f'<p class="note">Census mode counts objects with the garbage collector: '
            f"{_num(census.get('objects_scanned'))} objects scanned in "
            f"{esc(round(float(census.get('cost_seconds') or 0) * 1000, 1))} ms per sample; "
            f"{esc(census.get('blind_spots', ''))}. No allocation paths are recorded.</p>"
        )
    watch = snapshot.get("watch")
    if isinstance(watch, Mapping):
        how = (
            f"about one object in {_num(watch.get('sample'))} is counted (by address) and scaled: estimates"
            if watch.get("estimated")
            else "every object is counted"
        )
        out += (
            f'<p class="note">Watch-all looks for growing types nobody named: {how}. '
            f"{_num(watch.get('candidates'))} types seen, {_num(watch.get('promoted'))} nominated now "
            f"(a nominated type is counted exactly from then on), {_num(watch.get('recycled'))} "
            f"dropped again after a calm spell.</p>"
        )
        held = watch.get("held_off")
        held = held if isinstance(held, Mapping) else {}
        times = held.get("times")
        if isinstance(times, int) and not isinstance(times, bool) and times > 0:
            out += (
                f'<p class="note">Verifying a nominated type held the app\'s threads off '
                f"{_plural(times, 'time')}, {_ms(held.get('seconds'))} in all, "
                f"{_ms(held.get('longest_seconds'))} at most: a retention search holds objects of the app's, "
                f"which must not outlive their last reference meanwhile.</p>"
            )
    return out


def _leaks(snapshot: Mapping[str, Any], base: str) -> str:
    leaks = snapshot.get("leaks") or []
    now = {t.get("type"): t.get("live") for t in snapshot.get("types") or [] if isinstance(t, Mapping)}
    if not leaks:
        return '<h2>Leak reports</h2><p class="note">No type has grown past its threshold yet.</p>'
    # A leaking type files a report at every growth: show its latest one, and how many there were
    # (the monitor keeps the latest with its count; a list with several of one type counts them).
    latest: dict[str, Mapping[str, Any]] = {}
    counts: dict[str, int] = {}
    first: dict[str, Any] = {}
    for leak in leaks:
        name = str(leak.get("type", "?"))
        counts[name] = counts.get(name, 0) + report_count(leak)
        first.setdefault(name, leak.get("first_detected_at", leak.get("detected_at")))
        latest[name] = leak
    rows = []
    for name, leak in sorted(latest.items(), key=lambda kv: -(kv[1].get("detected_at") or 0)):
        paths = "".join(stack(p) for p in leak.get("top_paths") or [])
        if not paths and leak.get("note"):
            paths = f'<p class="note">{esc(leak.get("note"))}</p>'
        seen = f" ({counts[name]} reports since {_when(first[name])})" if counts[name] > 1 else ""
        held = leak.get("retainers")
        if isinstance(held, Mapping):
            chains = [c for c in held.get("chains") or [] if isinstance(c, Mapping)][:3]
            if chains:
                paths = (
                    '<p class="note">Held by (from the last search, '
                    f'{_when(held.get("computed_at"))}):</p><ul class="held">'
                    + "".join(f"<li>{_num(c.get('count'))} <code>{esc(c.get('chain', ''))}</code></li>" for c in chains)
                    + "</ul>"
                    + paths
                )
        together = [str(t) for t in leak.get("grows_with") or []]
        if together:
            paths = (
                '<p class="note">Grows in step with '
                + ", ".join(type_link(base, t) for t in together)
                + ": one leak may drag the others along.</p>"
                + paths
            )
        rows.append(
            f'<section class="leak-report"><p><span class="badge leak">leak</span> '
            f"{type_link(base, name)}: {_num(leak.get('live'))} live when detected "
            f"{_when(leak.get('detected_at'))}, after {_plural(leak.get('increases'), 'increase')}"
            f"{esc(seen)}; {_num(now.get(name))} live now</p>{paths}</section>"
        )
    return "<h2>Leak reports</h2>" + "".join(rows)


def _types_table(types: list[Mapping[str, Any]], base: str) -> str:
    if not types:
        return '<h2>Types</h2><p class="note">No types are tracked yet.</p>'
    rows = []
    for entry in types:
        grown = growth(entry)
        cls = "grow" if grown > 0 else "shrink" if grown < 0 else ""
        rows.append(
            f"<tr><td>{type_link(base, entry.get('type', '?'))}</td>"
            f'<td class="num">{_num(entry.get("live"))}</td>'
            f'<td class="num">{size_text(entry.get("live_bytes"))}</td>'
            f'<td class="num {cls}">{"+" if grown > 0 else ""}{grown:,}</td>'
            f'<td class="num">{_num(entry.get("increases"))}</td>'
            f"<td>{'yes' if entry.get('analysing') else 'no'}</td>"
            f"<td>{esc(entry.get('source', ''))}</td>"
            f"<td>{sparkline(entry.get('history') or [])}</td></tr>"
        )
    return (
        '<h2>Types</h2><table id="types"><thead><tr><th>type</th><th>live</th>'
        '<th title="estimate: mean shallow size of up to 64 live objects, times the live count">'
        "bytes (est.)</th><th>growth</th><th>increases</th><th>analysing</th><th>source</th>"
        "<th>history</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _reported(snapshot: Mapping[str, Any]) -> set[str]:
    return {str(leak.get("type")) for leak in snapshot.get("leaks") or [] if isinstance(leak, Mapping)}


def _analysed(types: list[Mapping[str, Any]], base: str, reported: AbstractSet[str] = frozenset()) -> str:
    sections = []
    for entry in types:
        # a type with a leak report has its stacks there: the same stack is not printed twice
        if entry.get("analysing") and entry.get("top_paths") and entry.get("type") not in reported:
            paths = "".join(stack(p) for p in entry["top_paths"])
            sections.append(
                f'<section class="analysed"><h3>{type_link(base, entry.get("type", "?"))}</h3>{paths}</section>'
            )
    if not sections:
        return ""
    return (
        "<h2>Where the analysed types are allocated</h2>"
        '<p class="note">Each stack starts at the line that created the objects, followed by its callers.</p>'
        + "".join(sections)
    )


def _worker_status(row: Mapping[str, Any]) -> str:
    if row.get("gone"):
        return '<span class="badge gone">gone</span>'
    badge = '<span class="badge stale">stale</span>' if row.get("stale") else '<span class="badge ok">ok</span>'
    return badge + (" this worker" if row.get("self") else "")


def _worker_href(root: str, row: Mapping[str, Any]) -> str:
    return f"{root}/workers/{int(row.get('pid') or 0)}?host={quote(str(row.get('host', '')), safe='')}"


def _workers_table(rows: list[Mapping[str, Any]], root: str) -> str:
    out = []
    for row in rows:
        age = row.get("age_seconds")
        out.append(
            f'<tr class="{"gone" if row.get("gone") else "stale" if row.get("stale") else ""}">'
            f'<td><a href="{esc(_worker_href(root, row))}">{esc(row.get("pid"))}</a></td>'
            f"<td>{esc(row.get('host', '?'))}</td><td>{_worker_status(row)}</td><td>{esc(row.get('mode', '?'))}</td>"
            f"<td>{_when(row.get('sampled_at'))}</td>"
            f'<td class="num">{esc(f"{age:.1f} s") if isinstance(age, (int, float)) else "–"}</td>'
            f'<td class="num">{_num(row.get("samples"))}</td><td class="num">{_num(row.get("types_count"))}</td>'
            f'<td class="num">{_num(row.get("leaks_count"))}</td></tr>'
        )
    return (
        '<h2>Workers</h2><table id="workers"><thead><tr><th>pid</th><th>host</th><th>status</th><th>mode</th>'
        "<th>last sample</th><th>age</th><th>samples</th><th>types</th><th>leak reports</th></tr></thead>"
        f"<tbody>{''.join(out)}</tbody></table>"
    )


def _totals_table(cluster: Mapping[str, Any], local: set[str], base: str) -> str:
    rows = [r for r in cluster.get("workers") or [] if not r.get("gone")]
    per_worker = [{t["type"]: t.get("live") for t in r.get("types") or []} for r in rows]
    totals = cluster.get("totals") or []
    if not totals:
        return '<h2>Totals across workers</h2><p class="note">No worker tracks a type yet.</p>'
    head = "".join(f"<th>pid {esc(r.get('pid'))}</th>" for r in rows)
    out = []
    for total in totals:
        name = total.get("type", "?")
        label = type_link(base, name) if name in local else f"<code>{esc(name)}</code>"
        cells = "".join(f'<td class="num">{_num(live.get(name))}</td>' for live in per_worker)
        out.append(
            f'<tr><td>{label}</td><td class="num">{_num(total.get("live"))}</td>'
            f'<td class="num">{_num(total.get("workers"))}</td>'
            f'<td class="num">{_num(total.get("allocations"))}</td>'
            f'<td class="num">{_num(total.get("frees"))}</td>{cells}</tr>'
        )
    return (
        '<h2>Totals across workers</h2><p class="note">Summed over the workers that are not gone; '
        'a stale worker counts with its last snapshot.</p><table id="totals"><thead><tr><th>type</th>'
        f"<th>live</th><th>workers</th><th>allocations</th><th>frees</th>{head}</tr></thead>"
        f"<tbody>{''.join(out)}</tbody></table>"
    )


def _cluster(cluster: Mapping[str, Any], snapshot: Mapping[str, Any], base: str) -> str:
    rows = list(cluster.get("workers") or [])
    local = {t.get("type") for t in snapshot.get("types") or []}
    notes = "".join(
        f"<li><code>{esc(n.get('file', '?'))}</code>: {esc(n.get('error', ''))}</li>"
        for n in cluster.get("worker_notes") or []
    )
    skipped = f'<p class="note">Files skipped:</p><ul class="note" id="worker-notes">{notes}</ul>' if notes else ""
    return (
        _workers_table(rows, base)
        + skipped
        + _totals_table(cluster, local, base)
        + f"<h2>This worker (pid {esc(snapshot.get('pid', '?'))})</h2>"
    )


def render_overview(
    snapshot: Mapping[str, Any],
    *,
    base: str,
    nonce: str,
    refresh: int | None = None,
    cluster: Mapping[str, Any] | None = None,
) -> str:
    types = list(snapshot.get("types") or [])
    workers = _cluster(cluster, snapshot, base) if cluster is not None else ""
    body = (
        f"<h1>Memory: live objects by type</h1>{workers}{_engine(snapshot)}{_leaks(snapshot, base)}"
        f"{_types_table(types, base)}{_analysed(types, base, _reported(snapshot))}"
        f'<p class="note">Shows type names, counts and code locations only, never object contents. '
        f'<a href="{esc(base)}?format=json">JSON</a></p>'
    )
    return _page("memtracker: memory", body, nonce, refresh)


def render_worker(snapshot: Mapping[str, Any], *, root: str, base: str, nonce: str) -> str:
    """One worker's published snapshot; ``root`` is the overview, ``base`` this worker's page."""
    row = snapshot.get("worker") or {}
    types = list(snapshot.get("types") or [])
    body = (
        f'<p><a href="{esc(root)}">&larr; all workers</a></p>'
        f"<h1>Worker {esc(row.get('pid', '?'))} on {esc(row.get('host', '?'))} {_worker_status(row)}</h1>"
        f'<p class="meta">snapshot written {_when(row.get("written_at"))}</p>'
        f"{_engine(snapshot)}{_leaks(snapshot, base)}{_types_table(types, base)}"
        f"{_analysed(types, base, _reported(snapshot))}"
        f'<p class="note"><a href="{esc(base)}?format=json">JSON</a></p>'
    )
    return _page(f"memtracker: worker {row.get('pid', '?')}", body, nonce)


def _retainers(found: Any, base: str, name: str) -> str:
    """Who holds the type's live objects: the last retention search, and a link to run one
    (``base`` "": another process's type, which only that process can search)."""
    href = f"{base}/types/{quote(name, safe='.')}/retainers"
    link = (
        f'<a href="{esc(href)}">find who holds them now</a>'
        if base
        else "only that worker can search its own objects (its page, on a request it answers)"
    )
    if not isinstance(found, Mapping):
        return (
            f'<h2>Who holds them</h2><p class="note" id="retainers">Not searched yet: {link} '
            "(walks the heap back from up to 20 live objects; at most 2 s, one search at a time).</p>"
        )
    chains = [c for c in found.get("chains") or [] if isinstance(c, Mapping)]
    rows = "".join(
        f'<tr><td class="num">{_num(c.get("count"))}</td><td><code>{esc(c.get("chain", ""))}</code></td></tr>'
        for c in chains
    )
    table = (
        (
            f'<table id="retainers"><thead><tr><th>objects</th><th>held by (root first)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
        if rows
        else ""
    )
    notes = []
    for key, text in (
        (
            "unreachable",
            "unreachable, waiting for the garbage collector (nothing holds them from outside a reference cycle)",
        ),
        ("hidden", "held where the collector cannot see: a running function's local variable, or C code"),
        ("unresolved", "not traced to a root before the search stopped"),
    ):
        count = found.get(key)
        if isinstance(count, int) and count > 0:
            notes.append(f"{_num(count)} {text}")
    stopped = found.get("stopped")
    seconds = found.get("seconds")
    meta = (
        f"{_plural(found.get('objects'), 'live object')} searched {_when(found.get('computed_at'))}"
        + (f" in {seconds:.2f} s" if isinstance(seconds, (int, float)) else "")
        + (f"; stopped: {esc(stopped)}" if stopped else "")
        + ". "
        + "; ".join(notes)
    )
    return f'<h2>Who holds them</h2>{table}<p class="note">{meta} {link}.</p>'


def render_type(detail: Mapping[str, Any], *, base: str, nonce: str, search_base: str | None = None) -> str:
    name = detail.get("type", "?")
    history = detail.get("history") or []
    measured = detail.get("live_bytes_measured")
    size = size_text(detail.get("live_bytes"))
    if size != "–":
        size += f" (estimate from {_plural(measured, 'object')}, shallow)"
    facts = [
        ("live", detail.get("live")),
        ("bytes", size),
        ("growth", growth(detail)),
        ("allocations", detail.get("allocations")),
        ("frees", detail.get("frees")),
        ("high water", detail.get("high_water")),
        ("increases", detail.get("increases")),
        ("analysing", "yes" if detail.get("analysing") else "no"),
        ("source", detail.get("source")),
        ("verdict", detail.get("verdict")),
    ]
    if detail.get("same_leak_as"):
        facts.append(("reported as", f"part of the leak of {detail['same_leak_as']}"))
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td>{_num(v)}</td></tr>" for k, v in facts)
    paths = "".join(stack(p) for p in detail.get("top_paths") or [])
    if not paths:
        paths = '<p class="note">No allocation paths recorded (the type is not being analysed, or census mode).</p>'
    hotspots = detail.get("hotspots") or []
    if hotspots:
        rows = "".join(
            f'<tr><td>{_frame_text(h)}</td><td class="num">{_num(h.get("count"))}</td>'
            f'<td class="num">{_num(h.get("self_count"))}</td>'
            f'<td class="num">{_num(h.get("total_count"))}</td></tr>'
            for h in hotspots
        )
        hot = (
            '<h2>Hotspots</h2><p class="note">Lines on the paths of live objects: live under the line '
            "(it or its callees made them), live made by the line itself, and all it made since "
            'analysis began.</p><table id="hotspots"><thead><tr><th>line</th><th>live</th>'
            f"<th>live, made here</th><th>allocated</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        hot = ""
    body = (
        f'<p><a href="{esc(base)}">&larr; all types</a></p><h1><code>{esc(name)}</code></h1>'
        f'<table id="facts">{facts_html}</table>'
        f"<h2>History</h2>{history_chart(history)}"
        f"{_retainers(detail.get('retainers'), base if search_base is None else search_base, str(name))}"
        f"<h2>Allocation paths</h2>{paths}{hot}"
    )
    return _page(f"memtracker: {name}", body, nonce)
