"""The endpoint's multi-worker side, active when a shared directory is configured.

    GET  {path}                          adds workers, totals and worker_notes
    GET  {path}/workers/{pid}            one worker's published snapshot (?host= when pids clash)
    GET  {path}/workers/{pid}/types/{t}  one type as that worker last published it
    GET  {path}/commands/{id}            which workers applied a track/untrack command
    POST {path}/track, /untrack          applied here at once, then by every other
                                         worker at its next sample

The POST answers at once, without waiting for the other workers: they are
listed as pending and ``command.status_url`` shows them catching up (at most
one sample interval each). Blocking a sync worker for the others' next sample
would hold up the application's requests.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import TYPE_CHECKING, Any

from ..core.naming import MAX_NAME_LENGTH
from ..store import workers

if TYPE_CHECKING:
    from .messages import Request, Response
    from .routes import Endpoint

_PID = re.compile(r"^[1-9][0-9]{0,9}$")
_HOST = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def _shared(ep: Endpoint) -> str | os.PathLike[str]:
    """The shared directory: the routes here are reached only when one is configured."""
    directory = ep.options.shared_dir
    assert directory is not None
    return directory


def overview(ep: Endpoint, snapshot: dict[str, Any]) -> dict[str, Any]:
    found, notes = workers.gather(_shared(ep), snapshot, ep.publisher())
    return workers.cluster_view(found, notes)


def route(ep: Endpoint, request: Request, rest: str) -> Response | None:
    """Answer the multi-worker routes; None if ``rest`` is not one of them."""
    from .messages import HTTPError

    if rest.startswith("/workers/"):
        parts = rest[len("/workers/") :].split("/", 2)
        if len(parts) == 1 or (len(parts) == 3 and parts[1] == "types" and parts[2]):
            if ep.options.shared_dir is None:
                raise HTTPError(404, "no shared directory configured: this process is the only worker shown")
            ep._allow(request.method.upper(), "GET")
            return _worker(ep, request, parts[0], parts[2] if len(parts) == 3 else None)
    if rest.startswith("/commands/") and "/" not in rest[len("/commands/") :]:
        if ep.options.shared_dir is None:
            raise HTTPError(404, "no shared directory configured: commands apply to this process only")
        ep._allow(request.method.upper(), "GET")
        return _command(ep, request, rest[len("/commands/") :])
    return None


def _worker(ep: Endpoint, request: Request, pid_text: str, type_name: str | None) -> Response:
    from ..render.page import render_type, render_worker
    from .messages import HTTPError, html_response, json_response, parse_query, wants_json

    query = parse_query(request.query_string)
    as_json = wants_json(request.headers, query)
    host = query.get("host")
    if not _PID.match(pid_text):
        raise HTTPError(400, "a worker is named by its pid, a positive whole number")
    if host is not None and not _HOST.match(host):
        raise HTTPError(400, "host must be a host name")
    if type_name is not None and len(type_name) > MAX_NAME_LENGTH:
        raise HTTPError(400, f"type name is longer than {MAX_NAME_LENGTH} characters")
    found, _ = workers.gather(_shared(ep), ep.monitor.snapshot(), ep.publisher())
    matches = workers.find_worker(found, int(pid_text), host)
    if not matches:
        raise HTTPError(404, f"no worker with pid {pid_text} has published a snapshot")
    if host is None and len({w["host"] for w in matches}) > 1:
        raise HTTPError(400, f"pid {pid_text} runs on several hosts; add ?host=")
    worker = matches[0]
    row = workers.worker_row(worker, this=worker["file"] is None)
    status = {k: v for k, v in row.items() if k != "types"}
    root = request.script_name + ep.options.path
    base = f"{root}/workers/{worker['pid']}"
    if type_name is None:
        data = dict(worker["snapshot"], worker=status)
        if as_json:
            return json_response(200, data)
        nonce = secrets.token_urlsafe(16)
        return html_response(_render(render_worker, data, root=root, base=base, nonce=nonce), nonce)
    if status["self"]:
        entry = ep.monitor.type_detail(type_name)  # here: every path and the hotspots
    else:
        entry = next((dict(t) for t in worker["snapshot"]["types"] if t["type"] == type_name), None)
    if entry is None:
        raise HTTPError(404, f"worker {pid_text} does not monitor {type_name!r}")
    entry["worker"] = status
    if as_json:
        return json_response(200, entry)
    nonce = secrets.token_urlsafe(16)
    # a search runs in the process that owns the objects: this one's own route, or none
    search_base = root if status["self"] else ""
    return html_response(_render(render_type, entry, base=base, nonce=nonce, search_base=search_base), nonce)


def _render(render: Any, data: dict[str, Any], **kwargs: Any) -> str:
    """Render what another process wrote; a malformed file is its fault, not a 500 here."""
    from .messages import HTTPError

    try:
        return render(data, **kwargs)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, OSError) as exc:
        raise HTTPError(
            502,
            f"the worker's published snapshot cannot be shown ({exc.__class__.__name__}); its JSON is at ?format=json",
        ) from None


def _command(ep: Endpoint, request: Request, command_id: str) -> Response:
    from .messages import HTTPError, json_response

    if not workers.COMMAND_ID.match(command_id):
        raise HTTPError(400, "not a command id")
    command = workers.read_command(_shared(ep), command_id)
    if command is None:
        raise HTTPError(404, f"no command {command_id!r} (unknown, or expired after {workers.COMMAND_TTL:.0f} s)")
    return json_response(200, status(ep, request, command))


def status(ep: Endpoint, request: Request, command: dict[str, Any]) -> dict[str, Any]:
    found, _ = workers.gather(_shared(ep), ep.monitor.snapshot(), ep.publisher())
    result = workers.command_status(command, found)
    result["status_url"] = f"{request.script_name}{ep.options.path}/commands/{command['id']}"
    return result


def tracked_anywhere(ep: Endpoint, type_name: str) -> bool:
    """Whether another worker that is not gone lists ``type_name`` (for untrack's 404)."""
    me = (workers.hostname(), os.getpid())
    found, _ = workers.read_workers(_shared(ep))
    return any(
        not w["gone"]
        and (w["host"], w["pid"]) != me
        and any(t.get("type") == type_name for t in w["snapshot"]["types"])
        for w in found
    )


def broadcast(
    ep: Endpoint, request: Request, action: str, type_name: str, *, analysis: bool = False, threshold: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply a command here, hand it to every other worker; (local result, status)."""
    from .messages import HTTPError

    try:
        workers.check_shared_dir(_shared(ep), create=True)  # first: nothing applied on a refusal
    except OSError as exc:
        raise HTTPError(503, str(exc)) from None
    command = workers.new_command(action, type_name, analysis=analysis, threshold=threshold)
    local = workers.apply_command(ep.monitor, command)

    if not local["ok"]:
        raise HTTPError(400, local["error"])
    if action == "untrack" and not local["was_tracking"] and not tracked_anywhere(ep, type_name):
        raise HTTPError(404, f"{type_name!r} is not being tracked by any worker")
    publisher = ep.publisher()
    if publisher is not None:
        publisher.record(command, local)  # before the file exists: never applied twice here
    workers.write_command(_shared(ep), command)
    if publisher is not None:
        publisher.publish()  # readers see this worker's result now
    return local, status(ep, request, command)
