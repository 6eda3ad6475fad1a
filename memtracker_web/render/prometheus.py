"""Prometheus exporter for a :class:`MemoryMonitor`'s ``snapshot()``.

Single process: :class:`MemoryCollector` is a custom collector that renders one
snapshot per scrape.

Several processes (gunicorn with ``PROMETHEUS_MULTIPROC_DIR``): prometheus_client's
``MultiProcessCollector`` only reads the per-process mmap files written by its own
``Gauge``/``Counter`` objects, never custom collectors.  :class:`MultiprocessPublisher`
therefore writes the same series into those files after each monitor sample, and
:func:`metrics_registry` builds the registry ``/metrics`` must serve.

Series (all names in base units, counters end in ``_total``)::

    memtracker_live_objects{type}             gauge
    memtracker_live_bytes{type}               gauge    estimate: mean shallow size of 64 live objects x live
    memtracker_resident_memory_bytes          gauge    the process's resident memory (Linux)
    memtracker_allocations_total{type}        counter  (exact mode only)
    memtracker_frees_total{type}              counter  (exact mode only)
    memtracker_growth_increases{type}         gauge    consecutive growing samples
    memtracker_analysis_active{type}          gauge    1 while call paths are recorded
    memtracker_engine_info{mode, python}      gauge    always 1
    memtracker_engine_up                      gauge    0 if the engine is unavailable or displaced
    memtracker_sample_duration_seconds        gauge
    memtracker_types_dropped                  gauge    types cut by the label cap
    memtracker_retained_objects{type, site}   gauge    opt-in (retained_sites)

Multi-process mode
------------------
``multiprocess_mode`` (of :class:`MultiprocessPublisher`) applies to every gauge:

* ``"liveall"`` (default): one series per worker, with the ``pid`` label that
  ``MultiProcessCollector`` adds; sum them in PromQL with ``sum without (pid) (...)``.
* ``"livesum"``: one series per label set, summed over the live workers
  (``memtracker_engine_up`` then counts workers whose engine is up).
* ``"livemax"`` / ``"livemin"``: the largest / smallest worker value.

The ``live*`` modes matter: only their files are deleted by
``mark_process_dead`` (see :func:`child_exit`), so a dead worker's series
disappear.  The non-live modes (``"all"``, ``"sum"``, ...) are accepted but keep a
dead worker's last values until the directory is wiped.  Counters are always
summed over every worker that ever ran (prometheus_client has no per-worker
counters), so they never go backwards when a worker dies.

prometheus_client cannot delete a label set from its files, so a type that
leaves the snapshot is published once more with value 0 and stays at 0 for the
life of that worker.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

__all__ = [
    "MULTIPROC_ENV",
    "MemoryCollector",
    "MultiprocessPublisher",
    "install",
    "metrics_registry",
    "multiprocess_enabled",
]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_MAX_TYPES = 200
DEFAULT_RETAINED_SITES = 5
_LIVE_MODES = frozenset({"liveall", "livesum", "livemax", "livemin", "livemostrecent"})

_HELP = {
    "live_objects": "Live objects of the type at the last monitor sample.",
    "allocations": "Objects of the type allocated since monitoring started.",
    "frees": "Objects of the type freed since monitoring started.",
    "growth_increases": "Consecutive monitor samples in which the live count grew.",
    "analysis_active": "1 while allocation call paths of the type are being recorded.",
    "engine": "Counting engine of the monitor: mode is exact or census.",
    "engine_up": "1 if the exact engine is available and not displaced, else 0.",
    "sample_duration_seconds": "Wall time of the last monitor sample.",
    "types_dropped": "Types left out of the per-type series by the label cap.",
    "retained_objects": "Live objects of an analysed type by allocation site.",
    "live_bytes": (
        "Estimate of the memory the live objects of a tracked type take themselves: "
        "the mean shallow size of up to 64 of them times the live count."
    ),
    "resident_memory_bytes": "Resident memory of the process at the last monitor sample.",
}


# ---------------------------------------------------------------------------
# snapshot -> the values both exporters publish


class _TypeRow(NamedTuple):
    name: str
    live: float
    allocations: float | None
    frees: float | None
    increases: float
    analysing: bool
    live_bytes: float | None


class _View(NamedTuple):
    mode: str
    python: str
    up: bool
    duration: float | None
    resident: float | None
    types: list[_TypeRow]
    dropped: int
    retained: list[tuple[str, str, float]]  # (type, site, count)


def _site_count(value: Any) -> int:
    """``retained_sites`` as a count: True means the default, False/None/0 means off."""
    if value is True:
        return DEFAULT_RETAINED_SITES
    if value is None or value is False:
        return 0
    count = int(value)
    if count < 0:
        raise ValueError(f"retained_sites must be >= 0, got {value!r}")
    return count


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _merge_types(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per type name, one entry; two classes can share a name (e.g. classes made
    in a function), and duplicate label sets would make the exposition invalid."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = str(entry.get("type"))
        seen = merged.get(name)
        if seen is None:
            merged[name] = {
                "live": float(entry.get("live") or 0),
                "allocations": _number(entry.get("allocations")),
                "frees": _number(entry.get("frees")),
                "increases": float(entry.get("increases") or 0),
                "analysing": bool(entry.get("analysing")),
                "top_paths": list(entry.get("top_paths") or ()),
                "live_bytes": _number(entry.get("live_bytes")),
            }
            continue
        seen["live"] += float(entry.get("live") or 0)
        for key in ("allocations", "frees", "live_bytes"):
            value = _number(entry.get(key))
            if value is not None:
                seen[key] = value + (seen[key] or 0.0)
        seen["increases"] = max(seen["increases"], float(entry.get("increases") or 0))
        seen["analysing"] = seen["analysing"] or bool(entry.get("analysing"))
        seen["top_paths"].extend(entry.get("top_paths") or ())
    return merged


def _top_sites(top_paths: Iterable[Mapping[str, Any]], limit: int) -> list[tuple[str, float]]:
    """Retained counts per allocation site (first entry of each path), largest first."""
    sites: dict[str, float] = {}
    for path in top_paths:
        entries = path.get("path") or ()
        if not entries:
            continue
        site = str(entries[0])
        sites[site] = sites.get(site, 0.0) + float(path.get("count") or 0)
    return heapq.nsmallest(limit, sites.items(), key=lambda item: (-item[1], item[0]))


def _view(snapshot: Mapping[str, Any], max_types: int, retained_sites: int) -> _View:
    engine = snapshot.get("engine") or {}
    process = snapshot.get("process")
    merged = _merge_types(snapshot.get("types") or ())
    if len(merged) > max_types:
        # Keep the largest live counts; names break ties so scrapes are stable.
        kept = heapq.nsmallest(max_types, merged, key=lambda name: (-merged[name]["live"], name))
    else:
        kept = list(merged)
    rows = []
    retained = []
    for name in kept:
        entry = merged[name]
        rows.append(
            _TypeRow(
                name,
                entry["live"],
                entry["allocations"],
                entry["frees"],
                entry["increases"],
                entry["analysing"],
                entry["live_bytes"],
            )
        )
        if retained_sites and entry["analysing"]:
            for site, count in _top_sites(entry["top_paths"], retained_sites):
                retained.append((name, site, count))
    return _View(
        mode=str(snapshot.get("mode") or "unknown"),
        python=str(engine.get("python") or ""),
        up=bool(engine.get("available")) and not engine.get("displaced"),
        duration=_number(snapshot.get("sample_duration_seconds")),
        resident=_number(process.get("resident_bytes")) if isinstance(process, dict) else None,
        types=rows,
        dropped=len(merged) - len(kept),
        retained=retained,
    )


def _check_max_types(max_types: int) -> int:
    max_types = int(max_types)
    if max_types < 0:
        raise ValueError(f"max_types must be >= 0, got {max_types}")
    return max_types


# ---------------------------------------------------------------------------
# single process: a custom collector


class MemoryCollector:
    """Renders ``monitor.snapshot()`` on every scrape.

    ``registry=None`` skips registration (register it yourself, or call
    :meth:`collect` directly).  ``retained_sites`` (0 = off, True = 5) enables
    ``memtracker_retained_objects`` for that many sites per analysed type.
    """

    def __init__(
        self,
        monitor: Any,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        max_types: int = DEFAULT_MAX_TYPES,
        retained_sites: int | bool = 0,
    ) -> None:
        self.monitor = monitor
        self.max_types = _check_max_types(max_types)
        self.retained_sites = _site_count(retained_sites)
        if registry is not None:
            registry.register(self)

    def _families(self) -> dict[str, Any]:
        # Any: collect() calls each family's own add_metric, which Metric does not have
        families: dict[str, Any] = {
            "live_objects": GaugeMetricFamily("memtracker_live_objects", _HELP["live_objects"], labels=["type"]),
            "live_bytes": GaugeMetricFamily("memtracker_live_bytes", _HELP["live_bytes"], labels=["type"]),
            "resident_memory_bytes": GaugeMetricFamily(
                "memtracker_resident_memory_bytes", _HELP["resident_memory_bytes"]
            ),
            "allocations": CounterMetricFamily("memtracker_allocations", _HELP["allocations"], labels=["type"]),
            "frees": CounterMetricFamily("memtracker_frees", _HELP["frees"], labels=["type"]),
            "growth_increases": GaugeMetricFamily(
                "memtracker_growth_increases", _HELP["growth_increases"], labels=["type"]
            ),
            "analysis_active": GaugeMetricFamily(
                "memtracker_analysis_active", _HELP["analysis_active"], labels=["type"]
            ),
            "engine": InfoMetricFamily("memtracker_engine", _HELP["engine"]),
            "engine_up": GaugeMetricFamily("memtracker_engine_up", _HELP["engine_up"]),
            "sample_duration_seconds": GaugeMetricFamily(
                "memtracker_sample_duration_seconds", _HELP["sample_duration_seconds"]
            ),
            "types_dropped": GaugeMetricFamily("memtracker_types_dropped", _HELP["types_dropped"]),
        }
        if self.retained_sites:
            families["retained_objects"] = GaugeMetricFamily(
                "memtracker_retained_objects", _HELP["retained_objects"], labels=["type", "site"]
            )
        return families

    def describe(self) -> list[Metric]:
        # Lets the registry check names without taking a snapshot at register().
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        try:
            view = _view(self.monitor.snapshot(), self.max_types, self.retained_sites)
        except Exception:
            # One broken monitor must not take the application's other metrics
            # down with a failed /metrics; report the engine as down instead.
            log.exception("memtracker: snapshot() failed during a Prometheus scrape")
            families["engine_up"].add_metric([], 0)
            yield families["engine_up"]
            return
        # Samples built directly: add_metric() re-zips the labels for each of the
        # ~5 series x max_types, a visible part of a scrape's cost.
        live = families["live_objects"].samples
        allocations = families["allocations"].samples
        frees = families["frees"].samples
        increases = families["growth_increases"].samples
        active = families["analysis_active"].samples
        live_bytes = families["live_bytes"].samples
        for row in view.types:
            labels = {"type": row.name}
            live.append(Sample("memtracker_live_objects", labels, row.live))
            if row.live_bytes is not None:
                live_bytes.append(Sample("memtracker_live_bytes", labels, row.live_bytes))
            if row.allocations is not None:
                allocations.append(Sample("memtracker_allocations_total", labels, row.allocations))
            if row.frees is not None:
                frees.append(Sample("memtracker_frees_total", labels, row.frees))
            increases.append(Sample("memtracker_growth_increases", labels, row.increases))
            active.append(Sample("memtracker_analysis_active", labels, 1.0 if row.analysing else 0.0))
        families["engine"].add_metric([], {"mode": view.mode, "python": view.python})
        families["engine_up"].add_metric([], 1 if view.up else 0)
        if view.duration is not None:
            families["sample_duration_seconds"].add_metric([], view.duration)
        else:
            del families["sample_duration_seconds"]
        if view.resident is not None:
            families["resident_memory_bytes"].add_metric([], view.resident)
        else:
            del families["resident_memory_bytes"]
        if not live_bytes:  # no tracked type has an estimate (census mode, none yet)
            del families["live_bytes"]
        families["types_dropped"].add_metric([], view.dropped)
        if "retained_objects" in families:
            for type_name, site, count in view.retained:
                families["retained_objects"].add_metric([type_name, site], count)
        yield from families.values()


# ---------------------------------------------------------------------------
# several processes: write the series into prometheus_client's mmap files


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def metrics_registry() -> CollectorRegistry:
    """The registry ``/metrics`` should serve.

    ``REGISTRY`` normally; with ``PROMETHEUS_MULTIPROC_DIR`` set, a fresh registry
    whose ``MultiProcessCollector`` merges every worker's files (what
    prometheus_client documents for multi-process mode; cheap to build per request).
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


class MultiprocessPublisher:
    """Publishes the snapshot through multiprocess-capable ``Gauge``/``Counter``.

    Call :meth:`publish` after each sample; :meth:`attach` does that for you
    through the monitor's ``sample_hooks``.  ``PROMETHEUS_MULTIPROC_DIR``
    must be set before prometheus_client is first imported (it picks its value
    storage at import).  See the module docstring for ``multiprocess_mode``.
    """

    def __init__(
        self,
        monitor: Any,
        *,
        multiprocess_mode: str = "liveall",
        max_types: int = DEFAULT_MAX_TYPES,
        retained_sites: int | bool = 0,
    ) -> None:
        from prometheus_client import Counter, Gauge, values

        if not multiprocess_enabled():
            raise RuntimeError(f"{MULTIPROC_ENV} is not set; use MemoryCollector in a single process")
        if not getattr(values.ValueClass, "_multiprocess", False):
            raise RuntimeError(
                f"prometheus_client was imported before {MULTIPROC_ENV} was set, so its "
                "metrics live in process memory; set the variable before starting the server"
            )
        if multiprocess_mode not in Gauge._MULTIPROC_MODES:
            raise ValueError(
                f"unknown multiprocess_mode {multiprocess_mode!r}; expected one of {sorted(Gauge._MULTIPROC_MODES)}"
            )
        if multiprocess_mode not in _LIVE_MODES:
            log.warning(
                "memtracker: multiprocess_mode %r keeps dead workers' series; "
                "use a live* mode to have child_exit remove them",
                multiprocess_mode,
            )
        self.monitor = monitor
        self.multiprocess_mode = multiprocess_mode
        self.max_types = _check_max_types(max_types)
        self.retained_sites = _site_count(retained_sites)

        def gauge(name: str, key: str, labels: tuple[str, ...] = ()) -> Any:
            # registry=None: these metrics reach /metrics through the files only.
            return Gauge(name, _HELP[key], labels, registry=None, multiprocess_mode=multiprocess_mode)  # type: ignore[arg-type]  # checked above

        self._live = gauge("memtracker_live_objects", "live_objects", ("type",))
        self._live_bytes = gauge("memtracker_live_bytes", "live_bytes", ("type",))
        self._resident = gauge("memtracker_resident_memory_bytes", "resident_memory_bytes")
        self._increases = gauge("memtracker_growth_increases", "growth_increases", ("type",))
        self._analysing = gauge("memtracker_analysis_active", "analysis_active", ("type",))
        self._info = gauge("memtracker_engine_info", "engine", ("mode", "python"))
        self._up = gauge("memtracker_engine_up", "engine_up")
        self._duration = gauge("memtracker_sample_duration_seconds", "sample_duration_seconds")
        self._dropped = gauge("memtracker_types_dropped", "types_dropped")
        self._retained = gauge("memtracker_retained_objects", "retained_objects", ("type", "site"))
        self._allocations = Counter("memtracker_allocations", _HELP["allocations"], ("type",), registry=None)
        self._frees = Counter("memtracker_frees", _HELP["frees"], ("type",), registry=None)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._published: dict[Any, set[tuple[str, ...]]] = {}
        self._counted: dict[tuple[Any, str], float] = {}
        self._attached_to: list[Any] | None = None

    def publish(self) -> None:
        """Take one snapshot and write every series into this process's files."""
        if os.getpid() != self._pid:
            # Forked (gunicorn preload_app): a lock held by a parent thread would
            # never be released here.  The counts already published stay counted:
            # they are in the parent's file, the child adds only what comes after.
            self._pid = os.getpid()
            self._lock = threading.Lock()
        snapshot = self.monitor.snapshot()
        with self._lock:
            self._write(_view(snapshot, self.max_types, self.retained_sites))

    def _write(self, view: _View) -> None:
        seen: dict[Any, set[tuple[str, ...]]] = {}

        def put(gauge: Any, labels: tuple[str, ...], value: float) -> None:
            gauge.labels(*labels).set(value)
            seen.setdefault(gauge, set()).add(labels)

        labels: tuple[str, ...]
        for row in view.types:
            labels = (row.name,)
            put(self._live, labels, row.live)
            if row.live_bytes is not None:
                put(self._live_bytes, labels, row.live_bytes)
            put(self._increases, labels, row.increases)
            put(self._analysing, labels, 1 if row.analysing else 0)
            self._count(self._allocations, row.name, row.allocations)
            self._count(self._frees, row.name, row.frees)
        for type_name, site, count in view.retained:
            put(self._retained, (type_name, site), count)
        put(self._info, (view.mode, view.python), 1)
        self._up.set(1 if view.up else 0)
        if view.duration is not None:
            self._duration.set(view.duration)
        if view.resident is not None:
            self._resident.set(view.resident)
        self._dropped.set(view.dropped)
        # Label sets cannot be deleted from the files: zero the ones that left.
        for gauge, labelsets in self._published.items():
            for labels in labelsets - seen.get(gauge, set()):
                gauge.labels(*labels).set(0)
        self._published = seen

    def _count(self, counter: Any, type_name: str, value: float | None) -> None:
        if value is None:
            return
        key = (counter, type_name)
        last = self._counted.get(key, 0.0)
        # A smaller value means the monitor's counter restarted (type re-monitored).
        delta = value - last if value >= last else value
        if delta:
            counter.labels(type_name).inc(delta)
        elif key not in self._counted:
            counter.labels(type_name)  # publish the series at 0
        self._counted[key] = value

    def _hook(self, *_args: Any, **_kwargs: Any) -> None:
        # Runs on the monitor's sampling thread: never let an export error stop sampling.
        try:
            self.publish()
        except Exception:
            log.exception("memtracker: publishing Prometheus metrics failed")

    def attach(self) -> bool:
        """Publish after every sample via the monitor's hook list
        (``MemoryMonitor.sample_hooks``, each called with the monitor); False if
        it has none (then call :meth:`publish` yourself)."""
        hooks = getattr(self.monitor, "sample_hooks", None)
        if not isinstance(hooks, list):
            hooks = getattr(self.monitor, "on_sample", None)
        if not isinstance(hooks, list):
            return False
        if self._hook not in hooks:
            hooks.append(self._hook)
        self._attached_to = hooks
        return True

    def detach(self) -> None:
        if self._attached_to is not None and self._hook in self._attached_to:
            self._attached_to.remove(self._hook)
        self._attached_to = None


def install(
    monitor: Any, registry: CollectorRegistry | None = REGISTRY, *, multiprocess_mode: str = "liveall", **options: Any
) -> MemoryCollector | MultiprocessPublisher:
    """Export ``monitor`` the right way for this process.

    With ``PROMETHEUS_MULTIPROC_DIR`` set: a :class:`MultiprocessPublisher`,
    attached to the monitor's ``sample_hooks`` when it has them, and published
    once now.  Otherwise a :class:`MemoryCollector` registered on ``registry``.
    ``options``: ``max_types``, ``retained_sites``.  Serve :func:`metrics_registry`.
    """
    if multiprocess_enabled():
        publisher = MultiprocessPublisher(monitor, multiprocess_mode=multiprocess_mode, **options)
        publisher.attach()
        publisher.publish()
        return publisher
    return MemoryCollector(monitor, registry, **options)
