"""Every option of memtracker_web, defined once.

:data:`OPTIONS` holds one :class:`Option` per option: its name, default, type,
check, environment variables and a one-line meaning. Three layers take options,
and each takes its defaults, checks and environment reading from here:

- ``monitor``: ``MemoryMonitor(...)``;
- ``default_monitor``: ``get_default_monitor(...)``, where ``None`` leaves
  the process-wide monitor's value as it is;
- ``endpoint``: ``EndpointOptions`` and everything built on it: the ASGI and
  WSGI middlewares, ``memtracker_web.fastapi.install``, the Flask extension
  (``app.config["MEMTRACKER"]``) and the Django middleware
  (``settings.MEMTRACKER``). The options of the monitor the endpoint passes on
  to the default monitor default to ``None`` there, as in ``default_monitor``.

A bad value is one ValueError that names the option, wherever it enters: never
a monitor that busy-loops on NaN or dies on infinity.
tests/test_options.py checks every public signature and every adapter's
docstring against this table.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .core.engine import check_watch_sample

MAX_INTERVAL = 86_400.0  # seconds between samples: a day at most
DEFAULT_PATH = "/debug/memory"
DEFAULT_ALLOW: tuple[str, ...] = ("127.0.0.0/8", "::1")

MONITOR = "monitor"
DEFAULT_MONITOR = "default_monitor"
ENDPOINT = "endpoint"
LAYERS = (MONITOR, DEFAULT_MONITOR, ENDPOINT)

_ROUTE_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$")


class _FromEnv:
    """Marker: read the option from its environment variables when the options are built."""

    def __repr__(self) -> str:
        return "FROM_ENV"


FROM_ENV: Any = _FromEnv()


# -- checks ------------------------------------------------------------------------


def check_whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) from ``low`` to ``high``, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be a whole number {bounds}, got {value!r}")
    return value


def check_interval(value: Any, name: str = "interval") -> float:
    """Seconds between samples: a finite number above 0, at most a day."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_INTERVAL
    ):
        raise ValueError(f"{name} must be a number of seconds above 0 and at most {MAX_INTERVAL:g}, got {value!r}")
    return float(value)


def check_route(value: Any, option: str) -> str:
    """A path the endpoint serves: a leading slash, no trailing one, no empty segment."""
    if not isinstance(value, str) or not _ROUTE_PATH.match(value) or "//" in value:
        raise ValueError(f"{option} must look like '/debug/memory' (leading slash, no trailing slash), got {value!r}")
    return value


def check_networks(values: Iterable[str] | str | None, option: str) -> tuple[Any, ...]:
    """The IP networks in ``values`` (one address or network, or several; None: none)."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = (values,)
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise ValueError(f"{option}: {value!r} is not an IP address or network") from None
    return tuple(nets)


def check_host_patterns(value: Iterable[str] | str | None) -> tuple[str, ...]:
    """allowed_hosts as lower-case patterns without a trailing dot."""
    items = [value] if isinstance(value, str) else list(value or ())
    patterns = []
    for item in items:
        if (
            not isinstance(item, str)
            or not item.strip()
            or any(c in item for c in "/ @\t")
            or (":" in item and not item.startswith("["))
        ):
            raise ValueError(
                f"allowed_hosts: {item!r} is not a host name (like 'myapp.internal', "
                "'.example.com' for its subdomains, or '*')"
            )
        patterns.append(item.strip().lower().rstrip("."))
    return tuple(patterns)


def _check_token(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError("token must be a non-empty string or None")
    return value


def _check_shared_dir(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError("shared_dir must be a directory path or None")
    return os.fspath(value)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, type)):
        return (value,)
    return tuple(value or ())


def _whole(name: str, low: int) -> Callable[[Any], int]:
    return lambda value: check_whole(name, value, low)


# -- the table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option: what it means, its default, how a value is checked and where it is taken.

    ``type`` is the option's annotation in the signatures that take it (outside
    the monitor, the monitor's options add ``| None``). ``check`` returns the
    value as kept (or raises a ValueError naming the option); ``endpoint_check``
    replaces it in the endpoint layer where that is stricter. ``env``: the
    environment variables read, in order, when the value is :data:`FROM_ENV`.
    ``attribute``: the EndpointOptions attribute the checked value goes to,
    when not ``name`` (the given value stays in ``name``). ``settings``: a
    framework setting that gives the value when the framework's memtracker
    settings leave it out (``{"django": "ALLOWED_HOSTS"}``).
    """

    name: str
    default: Any
    type: str
    doc: str
    layers: tuple[str, ...]
    check: Callable[[Any], Any] | None = None
    endpoint_check: Callable[[Any], Any] | None = None
    env: tuple[str, ...] = ()
    default_doc: str | None = None
    attribute: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def of_monitor(self) -> bool:
        """An argument of MemoryMonitor (elsewhere None leaves the monitor's value)."""
        return MONITOR in self.layers

    def default_in(self, layer: str) -> Any:
        """The default in ``layer``'s signatures: None outside the monitor for the monitor's options."""
        if layer not in self.layers:
            raise KeyError(f"{self.name} is not an option of {layer}")
        return None if layer != MONITOR and self.of_monitor else self.default

    def type_in(self, layer: str) -> str:
        """The annotation in ``layer``'s signatures: ``| None`` outside the monitor for the monitor's options."""
        return f"{self.type} | None" if layer != MONITOR and self.of_monitor else self.type

    def from_env(self) -> Any:
        """The value of the first of its environment variables that is set and not empty, else None."""
        for name in self.env:
            value = os.environ.get(name)
            if value:
                return value
        return None

    def take(self, value: Any, layer: str) -> Any:
        """``value`` checked for ``layer``: the environment's for FROM_ENV; None kept where it
        means "leave the monitor's value"."""
        if value is FROM_ENV and self.env:
            return self.from_env()
        if value is None and layer != MONITOR and self.of_monitor:
            return None
        check = self.endpoint_check if layer == ENDPOINT and self.endpoint_check is not None else self.check
        return value if check is None else check(value)

    def describe(self, layer: str) -> str:
        """The option's ``:param:`` text for ``layer``'s docstrings: its meaning and its default."""
        if layer != MONITOR and self.of_monitor:
            default = f"``None``, which keeps the default monitor's (``{self.default!r}`` when it is created)"
        else:
            default = self.default_doc or f"``{self.default!r}``"
        if self.settings:
            default += (
                " ("
                + ", ".join(
                    f"{framework.capitalize()}'s ``{setting}`` under {framework.capitalize()}"
                    for framework, setting in self.settings.items()
                )
                + ")"
            )
        return f"{self.doc} Default: {default}."


_OPTIONS = (
    # the endpoint's own
    Option(
        "path",
        DEFAULT_PATH,
        "str",
        "Where the page and its JSON are served (a leading slash, no trailing one).",
        (ENDPOINT,),
        check=lambda v: check_route(v, "path"),
    ),
    Option(
        "metrics_path",
        None,
        "str | None",
        "Where Prometheus metrics are served; ``None`` serves none.",
        (ENDPOINT,),
        check=lambda v: None if v is None else check_route(v, "metrics_path"),
    ),
    Option(
        "token",
        FROM_ENV,
        "str | None",
        "A Bearer token that admits a request from any address; ``None``: no token.",
        (ENDPOINT,),
        check=_check_token,
        env=("MEMTRACKER_TOKEN",),
        default_doc="``$MEMTRACKER_TOKEN``, else ``None``",
    ),
    Option(
        "allow",
        DEFAULT_ALLOW,
        "Iterable[str] | str | None",
        "Addresses and networks admitted without a token.",
        (ENDPOINT,),
        check=lambda v: check_networks(v, "allow"),
        attribute="allow_networks",
        default_doc="loopback, ``('127.0.0.0/8', '::1')``",
    ),
    Option(
        "allowed_hosts",
        (),
        "Iterable[str] | str | None",
        "``Host`` names besides IP addresses and ``localhost`` that a request admitted by its address may "
        "carry (``'.example.com'`` for its subdomains, ``'*'`` for any).",
        (ENDPOINT,),
        check=check_host_patterns,
        settings={"django": "ALLOWED_HOSTS", "flask": "TRUSTED_HOSTS"},
        default_doc="none",
    ),
    Option(
        "trusted_proxies",
        (),
        "Iterable[str] | str | None",
        "Peers whose ``X-Forwarded-For`` header is believed.",
        (ENDPOINT,),
        check=lambda v: check_networks(v, "trusted_proxies"),
        attribute="proxy_networks",
        default_doc="none",
    ),
    Option(
        "monitor",
        None,
        "Any",
        "A monitor of your own (the default monitor's options are then refused); ``None`` uses the "
        "process-wide default monitor.",
        (ENDPOINT,),
    ),
    Option(
        "track",
        (),
        "Iterable[type | str]",
        "Classes or ``'module.QualName'`` names to monitor.",
        (DEFAULT_MONITOR, ENDPOINT),
        check=_as_tuple,
    ),
    # the monitor's, which the endpoint passes on to the default monitor
    Option(
        "watch_all",
        False,
        "bool",
        "Count every type, so that growing types are found without being named.",
        (MONITOR, DEFAULT_MONITOR, ENDPOINT),
    ),
    Option(
        "watch_sample",
        1,
        "int",
        "Watch-all counts about one object in this many and scales (1: every object, exactly; at most 65536).",
        (MONITOR, DEFAULT_MONITOR, ENDPOINT),
        check=check_watch_sample,
    ),
    Option(
        "threshold",
        100,
        "int",
        "Growth above a type's high-water mark that counts as an increase (0 counts every rise; the "
        "endpoint's options ask for at least 1).",
        (MONITOR, DEFAULT_MONITOR, ENDPOINT),
        check=_whole("threshold", 0),
        endpoint_check=_whole("threshold", 1),
    ),
    Option(
        "increases",
        10,
        "int",
        "Increases before a leak report; call-path analysis starts then.",
        (MONITOR, DEFAULT_MONITOR, ENDPOINT),
        check=_whole("increases", 1),
    ),
    Option(
        "interval",
        60.0,
        "float",
        "Seconds between samples (above 0, at most a day).",
        (MONITOR, DEFAULT_MONITOR, ENDPOINT),
        check=check_interval,
    ),
    # the endpoint's own again
    Option(
        "shared_dir",
        FROM_ENV,
        "str | os.PathLike[str] | None",
        "Directory where worker processes publish their snapshots and read commands; ``None``: this process alone.",
        (ENDPOINT,),
        check=_check_shared_dir,
        env=("MEMTRACKER_SHARED_DIR", "PROMETHEUS_MULTIPROC_DIR"),
        default_doc="``$MEMTRACKER_SHARED_DIR``, else ``$PROMETHEUS_MULTIPROC_DIR``, else ``None``",
    ),
    Option(
        "registry",
        None,
        "Any",
        "The registry ``metrics_path`` serves; ``None``: prometheus_client's ``REGISTRY`` (a multiprocess one "
        "when ``$PROMETHEUS_MULTIPROC_DIR`` is set).",
        (ENDPOINT,),
    ),
    # the monitor's alone
    Option(
        "tracker", None, "Tracker | None", "The Tracker that counts; ``None`` makes one with ``depth``.", (MONITOR,)
    ),
    Option("depth", 10, "int", "Frames kept of each allocation's call path.", (MONITOR,), check=_whole("depth", 1)),
    Option(
        "max_analyzed", 3, "int", "Types in call-path analysis at once.", (MONITOR,), check=_whole("max_analyzed", 0)
    ),
    Option(
        "history",
        120,
        "int",
        "Samples kept of each type's count and of resident memory.",
        (MONITOR,),
        check=_whole("history", 2),
    ),
    Option(
        "calm_samples",
        30,
        "int",
        "Samples without growth after which a type's analysis ends and its increases start afresh.",
        (MONITOR,),
        check=_whole("calm_samples", 1),
    ),
    Option(
        "discover_after",
        3,
        "int",
        "Increases after which watch-all nominates a type to be counted exactly.",
        (MONITOR,),
        check=_whole("discover_after", 1),
    ),
    Option(
        "max_watch_promotions",
        50,
        "int",
        "Types nominated by watch-all that are monitored at once.",
        (MONITOR,),
        check=_whole("max_watch_promotions", 0),
    ),
    Option(
        "leak_reports",
        50,
        "int",
        "Leak reports kept: the latest of each type, for this many types.",
        (MONITOR,),
        check=_whole("leak_reports", 1),
    ),
)

OPTIONS: Mapping[str, Option] = {option.name: option for option in _OPTIONS}


def names(layer: str) -> tuple[str, ...]:
    """The options ``layer`` takes, in the table's order."""
    return tuple(option.name for option in _OPTIONS if layer in option.layers)


def defaults(layer: str) -> dict[str, Any]:
    """``{name: default}`` of the options ``layer`` takes, as its signatures give them."""
    return {name: OPTIONS[name].default_in(layer) for name in names(layer)}


# Options of the monitor that the endpoint passes on to the default monitor.
MONITOR_OPTIONS = tuple(name for name in names(ENDPOINT) if OPTIONS[name].of_monitor)


def take(layer: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked for ``layer``, in their order (the first bad one raises)."""
    return {name: OPTIONS[name].take(value, layer) for name, value in values.items()}


def with_framework_settings(framework: str, values: dict[str, Any], setting: Callable[[str], Any]) -> dict[str, Any]:
    """``values`` plus, for each option they leave out that a setting of ``framework``
    gives (``Option.settings``), that setting's value when it is set and not empty."""
    for option in _OPTIONS:
        name = option.settings.get(framework)
        if name is not None and option.name not in values:
            given = setting(name)
            if given:
                values[option.name] = list(given)
    return values


def param_docs(layer: str, names_: Iterable[str] | None = None, indent: int = 4, width: int = 110) -> str:
    """``:param name: meaning. Default: ...`` lines for docstrings (tests/test_options.py
    checks that every adapter's docstring says what this says)."""
    lines = []
    for name in names(layer) if names_ is None else names_:
        text = f":param {name}: {OPTIONS[name].describe(layer)}"
        lines.extend(
            textwrap.wrap(
                text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4), break_on_hyphens=False
            )
        )
    return "\n".join(lines)
