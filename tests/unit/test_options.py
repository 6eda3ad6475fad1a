"""The option table (memtracker_web.options) against every place that takes options:
signatures, the settings readers, the docstrings users read, README's table."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memtracker_web import asgi, endpoint, monitor, options, wsgi
from memtracker_web.options import DEFAULT_MONITOR, ENDPOINT, FROM_ENV, MONITOR, OPTIONS

ROOT = Path(__file__).resolve().parents[2]


def _same(a: Any, b: Any) -> bool:
    return a is b if FROM_ENV in (a, b) else type(a) is type(b) and a == b


def mismatches(
    fn: Callable[..., Any], layer: str, others: tuple[str, ...] = (), keyword_only: bool = True
) -> list[str]:
    """How ``fn``'s parameters differ from the table's options of ``layer`` (names, defaults,
    keyword-only), ``others`` being its parameters that are not options."""
    params = {name: p for name, p in inspect.signature(fn).parameters.items() if name != "self"}
    wrong = [
        f"{name} is not an option of {layer} in the table"
        for name in params
        if name not in others and name not in options.names(layer)
    ]
    for name in options.names(layer):
        param = params.get(name)
        if param is None:
            wrong.append(f"{name} is missing")
            continue
        if not _same(param.default, options.defaults(layer)[name]):
            wrong.append(f"{name} defaults to {param.default!r}, the table to {options.defaults(layer)[name]!r}")
        if param.annotation != OPTIONS[name].type_in(layer):
            wrong.append(f"{name} is annotated {param.annotation!r}, the table says {OPTIONS[name].type_in(layer)!r}")
        if keyword_only and param.kind is not inspect.Parameter.KEYWORD_ONLY:
            wrong.append(f"{name} is not keyword-only")
    return wrong


def test_the_checker_finds_what_differs() -> None:
    def drifted(
        app: Any, *, path: str = "/elsewhere", tokn: Any = None, monitor: object = None, registry: Any = None
    ) -> None: ...

    found = mismatches(drifted, ENDPOINT, others=("app",))
    assert "tokn is not an option of endpoint in the table" in found
    assert "path defaults to '/elsewhere', the table to '/debug/memory'" in found
    assert "token is missing" in found and "interval is missing" in found
    assert "monitor is annotated 'object', the table says 'Any'" in found
    assert not any(m.startswith("registry") for m in found)
    assert "interval defaults to 60, the table to 60.0" in mismatches(lambda *, interval=60: None, MONITOR)
    assert "interval is not keyword-only" in mismatches(lambda interval=60.0: None, MONITOR)


@pytest.mark.parametrize(
    "fn, layer, others, keyword_only",
    [
        (monitor.MemoryMonitor.__init__, MONITOR, (), False),
        (monitor.get_default_monitor, DEFAULT_MONITOR, (), True),
        (asgi.MemoryTrackerMiddleware.__init__, ENDPOINT, ("app",), True),
        (wsgi.MemoryTrackerMiddleware.__init__, ENDPOINT, ("app",), True),
        (endpoint.EndpointOptions, ENDPOINT, (), False),
    ],
    ids=["MemoryMonitor", "get_default_monitor", "asgi", "wsgi", "EndpointOptions"],
)
def test_public_signatures_match_the_table(
    fn: Callable[..., Any], layer: str, others: tuple[str, ...], keyword_only: bool
) -> None:
    assert mismatches(fn, layer, others, keyword_only) == []


def test_the_endpoint_layer_passes_the_monitors_options_on() -> None:
    # What the endpoint hands to get_default_monitor, and what a monitor of the
    # caller's own makes it refuse.
    assert options.MONITOR_OPTIONS == tuple(n for n in options.names(DEFAULT_MONITOR) if n != "track")
    assert set(options.names(DEFAULT_MONITOR)) <= set(options.names(ENDPOINT))
    assert all(OPTIONS[n].of_monitor for n in options.MONITOR_OPTIONS)
    assert {f.name for f in dataclasses.fields(endpoint.EndpointOptions) if not f.init} == {
        OPTIONS[n].attribute for n in options.names(ENDPOINT) if OPTIONS[n].attribute
    }


def test_every_option_is_taken_somewhere_and_documented() -> None:
    for option in OPTIONS.values():
        assert option.layers and set(option.layers) <= set(options.LAYERS), option.name
        assert option.doc.endswith(".") and "\n" not in option.doc, option.name
        if option.default is FROM_ENV:
            assert option.env, option.name


def _unknown_option_error(call: Callable[[], Any]) -> str:
    with pytest.raises(ValueError, match="unknown memtracker option") as info:
        call()
    return str(info.value)


def _known(message: str) -> set[str]:
    return set(message.split("; known: ", 1)[1].split(", "))


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building an adapter starts the default monitor as the app loads; not here.
    monkeypatch.setattr(endpoint.Endpoint, "start_at_load", lambda self: None)


def test_the_flask_extension_takes_the_tables_options(no_start: None, monkeypatch: pytest.MonkeyPatch) -> None:
    flask = pytest.importorskip("flask")
    from memtracker_web.flask import MemoryTracker

    params = inspect.signature(MemoryTracker.__init__).parameters
    assert list(params) == ["self", "app", "options"] and params["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert _known(_unknown_option_error(lambda: MemoryTracker(paht="/x"))) == set(options.names(ENDPOINT))
    monkeypatch.delenv("MEMTRACKER_TOKEN", raising=False)
    monkeypatch.delenv("MEMTRACKER_SHARED_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = flask.Flask(__name__)
    assert MemoryTracker().init_app(app).endpoint.options == endpoint.EndpointOptions()
    app = flask.Flask(__name__)
    app.config["TRUSTED_HOSTS"] = ["shop.example"]
    assert MemoryTracker().init_app(app).endpoint.options.allowed_hosts == ("shop.example",)


def test_the_django_settings_reader_takes_the_tables_options(no_start: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("django")
    from memtracker_web.integrations import django as adapter

    monkeypatch.delenv("MEMTRACKER_TOKEN", raising=False)
    monkeypatch.delenv("MEMTRACKER_SHARED_DIR", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def build(**settings: Any) -> Any:
        monkeypatch.setattr(adapter, "settings", types.SimpleNamespace(**settings))
        return adapter.MemoryTrackerMiddleware(lambda request: None)

    assert _known(_unknown_option_error(lambda: build(MEMTRACKER={"pth": "/x"}))) == set(options.names(ENDPOINT))
    assert build().endpoint.options == endpoint.EndpointOptions()
    assert build(ALLOWED_HOSTS=["shop.example"]).endpoint.options.allowed_hosts == ("shop.example",)
    given = build(MEMTRACKER={"allowed_hosts": ["ops.example"]}, ALLOWED_HOSTS=["shop.example"])
    assert given.endpoint.options.allowed_hosts == ("ops.example",)


def test_fastapi_install_takes_the_tables_options() -> None:
    fastapi = pytest.importorskip("fastapi")
    from memtracker_web.fastapi import install

    params = inspect.signature(install).parameters
    assert list(params) == ["app", "options"] and params["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert _known(_unknown_option_error(lambda: install(fastapi.FastAPI(), pth="/x"))) == set(options.names(ENDPOINT))
    app = fastapi.FastAPI()
    install(app, path="/ops/memory", interval=5.0)
    assert app.user_middleware[0].cls is asgi.MemoryTrackerMiddleware
    assert app.user_middleware[0].kwargs == {"path": "/ops/memory", "interval": 5.0}


def test_environment_variables_are_read_in_the_tables_order(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = OPTIONS["shared_dir"]
    assert shared.env == ("MEMTRACKER_SHARED_DIR", "PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/prom")
    monkeypatch.setenv("MEMTRACKER_SHARED_DIR", "")
    assert shared.take(FROM_ENV, ENDPOINT) == "/tmp/prom"
    monkeypatch.setenv("MEMTRACKER_SHARED_DIR", "/tmp/mine")
    assert shared.take(FROM_ENV, ENDPOINT) == "/tmp/mine"
    monkeypatch.setenv("MEMTRACKER_TOKEN", "s3cret")
    assert OPTIONS["token"].take(FROM_ENV, ENDPOINT) == "s3cret"
    from memtracker_web.cli import build_parser

    assert build_parser().parse_args(["report", "http://127.0.0.1:1/debug/memory"]).token == "s3cret"


def test_a_layer_checks_by_the_table() -> None:
    # None keeps the monitor's value outside the monitor; the monitor itself refuses it.
    assert OPTIONS["interval"].take(None, ENDPOINT) is None
    with pytest.raises(ValueError, match="^interval must be a number of seconds"):
        OPTIONS["interval"].take(None, MONITOR)
    # threshold: 0 counts every rise in a monitor; the endpoint's options ask for at least 1
    assert OPTIONS["threshold"].take(0, MONITOR) == 0
    with pytest.raises(ValueError, match=r"^threshold must be a whole number >= 1, got 0"):
        OPTIONS["threshold"].take(0, ENDPOINT)
    assert options.take(MONITOR, {"interval": 5, "depth": 3}) == {"interval": 5.0, "depth": 3}


# -- docstrings ------------------------------------------------------------------------


def _params(doc: str) -> dict[str, str]:
    """``{name: text}`` of the ``:param name: text`` fields in ``doc`` (text on one line)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^\s*:param (\w+):(.*?)(?=^\s*:param |^\s*$|\Z)", doc, re.M | re.S):
        assert match.group(1) not in found, f"{match.group(1)} is documented twice"
        found[match.group(1)] = " ".join(match.group(2).split())
    return found


def _adapters() -> list[tuple[str, Any, str, tuple[str, ...], list[str]]]:
    """(label, documented object, layer, its parameters that are not options, the options it takes)."""
    endpoint_names = list(options.names(ENDPOINT))
    found = [
        ("MemoryMonitor", monitor.MemoryMonitor, MONITOR, (), list(options.names(MONITOR))),
        ("get_default_monitor", monitor.get_default_monitor, DEFAULT_MONITOR, (), list(options.names(DEFAULT_MONITOR))),
        (
            "asgi",
            asgi.MemoryTrackerMiddleware,
            ENDPOINT,
            ("app",),
            [
                p
                for p in inspect.signature(asgi.MemoryTrackerMiddleware.__init__).parameters
                if p not in ("self", "app")
            ],
        ),
        (
            "wsgi",
            wsgi.MemoryTrackerMiddleware,
            ENDPOINT,
            ("app",),
            [
                p
                for p in inspect.signature(wsgi.MemoryTrackerMiddleware.__init__).parameters
                if p not in ("self", "app")
            ],
        ),
    ]
    try:
        from memtracker_web.flask import MemoryTracker

        found.append(("flask", MemoryTracker, ENDPOINT, ("app",), endpoint_names))
    except ImportError:
        pass
    try:
        from memtracker_web.django import MemoryTrackerMiddleware

        found.append(("django", MemoryTrackerMiddleware, ENDPOINT, ("get_response",), endpoint_names))
    except ImportError:
        pass
    try:
        from memtracker_web.fastapi import install

        found.append(("fastapi", install, ENDPOINT, ("app",), endpoint_names))
    except ImportError:
        pass
    return found


@pytest.mark.parametrize("label, target, layer, others, taken", [pytest.param(*a, id=a[0]) for a in _adapters()])
def test_docstrings_document_every_option_as_the_table_says(
    label: str, target: Any, layer: str, others: tuple[str, ...], taken: list[str]
) -> None:
    documented = _params(inspect.getdoc(target) or "")
    assert sorted(documented) == sorted([*others, *taken]), f"{label}: documented {sorted(documented)}"
    wrong = [name for name in taken if documented[name] != " ".join(OPTIONS[name].describe(layer).split())]
    assert not wrong, (
        f"{label}: the docstring differs from the table for {wrong}; it should say:\n"
        + options.param_docs(layer, taken)
    )
    for name in others:
        assert documented[name], f"{label}: {name} has no description"


def test_readme_configuration_table_lists_every_endpoint_option() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = section.strip().split("\n\n")[0]  # one table, no blank line in it
    rows = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(rows) == sorted(options.names(ENDPOINT))
