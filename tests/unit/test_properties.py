"""Property-based tests (hypothesis) of what a request or a shared-directory file can carry.

Whatever the method, path, headers, query and body: Endpoint.handle never
raises, answers a documented status, and every error is JSON. Whatever a
worker file holds: the overview renders (JSON and HTML) and says what it
skipped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtracker_web.endpoint import Endpoint, EndpointOptions, Request
from memtracker_web.store import workers
from support import leaky_monitor

DOCUMENTED = {200, 400, 401, 403, 404, 405, 409, 413, 415, 503}
ROUTES = [
    "/debug/memory",
    "/debug/memory/",
    "/debug/memory/track",
    "/debug/memory/untrack",
    "/debug/memory/types/",
    "/debug/memory/workers/",
    "/debug/memory/commands/",
    "/metrics",
]

text = st.text(alphabet=st.characters(codec="latin-1"), max_size=60)
paths = st.one_of(st.sampled_from(ROUTES), st.builds(lambda r, t: r + t, st.sampled_from(ROUTES), text))
header_names = st.one_of(
    st.sampled_from(
        [
            "host",
            "origin",
            "content-type",
            "content-length",
            "accept",
            "authorization",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "sec-fetch-site",
        ]
    ),
    text.map(str.lower),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "type": st.one_of(
                text, st.sampled_from(["json.decoder.JSONDecoder", "builtins.dict", "os.environ", "json.__class__"])
            )
        },
        optional={
            "analysis": st.one_of(st.booleans(), text),
            "threshold": st.one_of(st.integers(), st.floats(allow_nan=True), text),
        },
    ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)

ENDPOINT = Endpoint(EndpointOptions(monitor=leaky_monitor(), metrics_path="/metrics", token="s3cret", shared_dir=None))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]), text),
    path=paths,
    query=text,
    headers=st.dictionaries(header_names, text, max_size=6),
    body=bodies,
    client=st.one_of(st.none(), st.sampled_from(["127.0.0.1", "::1", "10.0.0.1", "203.0.113.9"]), text),
)
def test_the_endpoint_answers_any_request_with_a_documented_status(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, client: str | None
) -> None:
    response = ENDPOINT.handle(
        Request(method=method, path=path, query_string=query, headers=headers, client=client, body=body)
    )
    assert response.status in DOCUMENTED, (response.status, response.body[:300])
    content_type = dict(response.headers).get("Content-Type", "")
    if response.status >= 400:
        assert content_type == "application/json"
        error = json.loads(response.body)
        assert isinstance(error, dict) and isinstance(error["error"], str) and error["error"]


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    ),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)
worker_files = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "format": st.just(workers.FORMAT),
            "host": st.just(workers.hostname()),
            "pid": st.one_of(st.just(os.getpid()), st.integers(), text),
            "written_at": st.one_of(st.just(time.time()), st.floats(), text),
            "snapshot": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {
                        "mode": st.sampled_from(["exact", "census"]),
                        "interval": json_values,
                        "samples": json_values,
                        "types": st.lists(
                            st.dictionaries(
                                st.sampled_from(["type", "live", "history", "top_paths", "increases"]),
                                json_values,
                                max_size=5,
                            ),
                            max_size=3,
                        ),
                        "leaks": json_values,
                    }
                ),
            ),
        },
        optional={"commands": json_values},
    ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    files=st.lists(
        st.tuples(st.sampled_from(["regular", "fifo", "symlink", "directory", "huge", "unreadable"]), worker_files),
        min_size=1,
        max_size=4,
    )
)
def test_the_overview_renders_whatever_the_worker_files_hold(
    tmp_path_factory: Any, files: list[tuple[str, bytes]]
) -> None:
    # any contents, and files that are not regular: a FIFO (whose open would block), a link out of
    # the directory, a directory, one past the 8 MiB cap, one without read permission
    shared: Path = tmp_path_factory.mktemp("shared")
    shared.chmod(0o700)
    outside = tmp_path_factory.mktemp("outside") / "worker.json"
    for i, (kind, content) in enumerate(files):
        path = shared / workers.worker_path(shared, workers.hostname(), 4_000_000 + i).name
        if kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "symlink":
            outside.write_bytes(content)
            path.symlink_to(outside)
        elif kind == "directory":
            path.mkdir()
        elif kind == "huge":
            path.write_bytes(content)
            os.truncate(path, 9 << 20)
        else:
            path.write_bytes(content)
            if kind == "unreadable":
                path.chmod(0)
    ep = Endpoint(EndpointOptions(monitor=leaky_monitor(), shared_dir=str(shared)))
    for accept in ("application/json", "text/html"):
        started = time.monotonic()
        response = ep.handle(
            Request("GET", "/debug/memory", headers={"accept": accept, "host": "127.0.0.1"}, client="127.0.0.1")
        )
        assert time.monotonic() - started < 1.0
        assert response.status == 200, response.body[:500]
        if accept == "application/json":
            json.loads(response.body)
