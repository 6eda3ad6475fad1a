"""Prometheus exporter: exposition, label cap, census/engine states, multi-process
publishing, and the example configs checked by promtool."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from memtracker_web import prometheus as prom
from memtracker_web.prometheus import MemoryCollector, MultiprocessPublisher
from memtracker_web.render import prometheus as prometheus_code

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (Debian package 'prometheus')"
)


# ---------------------------------------------------------------------------
# a monitor stand-in whose snapshot() has exactly the documented shape


def type_entry(
    name, live, *, allocations=None, frees=None, increases=0, analysing=False, source="tracked", top_paths=()
):
    return {
        "type": name,
        "live": live,
        "allocations": allocations,
        "frees": frees,
        "high_water": live,
        "increases": increases,
        "analysing": analysing,
        "source": source,
        "history": [[1764115140.0, max(live - 1, 0)], [1764115200.0, live]],
        "top_paths": list(top_paths),
    }


def top_path(count, *sites):
    frames = []
    for site in sites:
        location, _, function = site.partition(" in ")
        filename, _, lineno = location.rpartition(":")
        frames.append({"filename": filename, "lineno": int(lineno), "function": function})
    return {"count": count, "total_count": count + 7, "path": list(sites), "frames": frames}


def snapshot(types, *, mode="exact", available=True, displaced=False, python="3.13.5", duration=0.00025):
    snap = {
        "mode": mode,
        "engine": {
            "available": available,
            "reason": "" if available else "needs CPython 3.13",
            "displaced": displaced,
            "python": python,
        },
        "pid": 4242,
        "sampled_at": 1764115200.0,
        "interval": 60.0,
        "sample_duration_seconds": duration,
        "samples": 42,
        "types": types,
        "leaks": [],
    }
    if mode == "census":
        snap["census"] = {
            "cost_seconds": 0.05,
            "objects_scanned": 123456,
            "blind_spots": "objects the garbage collector does not track (most str, int, float, ...) are not counted",
        }
    return snap


def exact_snapshot():
    return snapshot(
        [
            type_entry(
                "myapp.models.Order",
                1500,
                allocations=9000,
                frees=7500,
                increases=10,
                analysing=True,
                top_paths=[
                    top_path(1200, "myapp/cache.py:17 in remember", "myapp/views.py:30 in order"),
                    top_path(100, "myapp/cache.py:17 in remember", "myapp/jobs.py:8 in nightly"),
                    top_path(250, 'myapp/views.py:5 in "index"'),
                    top_path(3, "myapp/admin.py:2 in export"),
                ],
            ),
            type_entry("builtins.dict", 20, allocations=30, frees=10, source="watch_all"),
        ]
    )


def census_snapshot():
    return snapshot(
        [
            type_entry("myapp.models.Order", 1500, increases=4, source="census"),
            type_entry("builtins.dict", 20, source="census"),
        ],
        mode="census",
        available=False,
        python="3.11.7",
        duration=0.05,
    )


class FakeMonitor:
    def __init__(self, snap):
        self.snap = snap
        self.calls = 0
        self.sample_hooks = []

    def snapshot(self):
        self.calls += 1
        return copy.deepcopy(self.snap)


def exposition(monitor, **options):
    registry = CollectorRegistry()
    MemoryCollector(monitor, registry, **options)
    return generate_latest(registry).decode()


def samples(text):
    """{(sample name, frozenset(labels)): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def promtool(*args, stdin=None):
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------------
# MemoryCollector


EXPECTED_EXACT = """\
# HELP memtracker_live_objects Live objects of the type at the last monitor sample.
# TYPE memtracker_live_objects gauge
memtracker_live_objects{type="myapp.models.Order"} 1500.0
memtracker_live_objects{type="builtins.dict"} 20.0
# HELP memtracker_allocations_total Objects of the type allocated since monitoring started.
# TYPE memtracker_allocations_total counter
memtracker_allocations_total{type="myapp.models.Order"} 9000.0
memtracker_allocations_total{type="builtins.dict"} 30.0
# HELP memtracker_frees_total Objects of the type freed since monitoring started.
# TYPE memtracker_frees_total counter
memtracker_frees_total{type="myapp.models.Order"} 7500.0
memtracker_frees_total{type="builtins.dict"} 10.0
# HELP memtracker_growth_increases Consecutive monitor samples in which the live count grew.
# TYPE memtracker_growth_increases gauge
memtracker_growth_increases{type="myapp.models.Order"} 10.0
memtracker_growth_increases{type="builtins.dict"} 0.0
# HELP memtracker_analysis_active 1 while allocation call paths of the type are being recorded.
# TYPE memtracker_analysis_active gauge
memtracker_analysis_active{type="myapp.models.Order"} 1.0
memtracker_analysis_active{type="builtins.dict"} 0.0
# HELP memtracker_engine_info Counting engine of the monitor: mode is exact or census.
# TYPE memtracker_engine_info gauge
memtracker_engine_info{mode="exact",python="3.13.5"} 1.0
# HELP memtracker_engine_up 1 if the exact engine is available and not displaced, else 0.
# TYPE memtracker_engine_up gauge
memtracker_engine_up 1.0
# HELP memtracker_sample_duration_seconds Wall time of the last monitor sample.
# TYPE memtracker_sample_duration_seconds gauge
memtracker_sample_duration_seconds 0.00025
# HELP memtracker_types_dropped Types left out of the per-type series by the label cap.
# TYPE memtracker_types_dropped gauge
memtracker_types_dropped 0.0
"""


def test_exposition_exact_text():
    monitor = FakeMonitor(exact_snapshot())
    assert exposition(monitor) == EXPECTED_EXACT
    assert monitor.calls == 1


def test_retained_sites_grouped_by_first_path_entry_and_limited():
    text = exposition(FakeMonitor(exact_snapshot()), retained_sites=2)
    retained = [line for line in text.splitlines() if line.startswith("memtracker_retained_objects{")]
    # The two paths through cache.py:17 add up; admin.py (3) is past the limit of 2;
    # builtins.dict is not analysed.  Quotes in a site are escaped.
    assert retained == [
        'memtracker_retained_objects{site="myapp/cache.py:17 in remember",type="myapp.models.Order"} 1300.0',
        'memtracker_retained_objects{site="myapp/views.py:5 in \\"index\\"",type="myapp.models.Order"} 250.0',
    ]
    assert "# TYPE memtracker_retained_objects gauge" in text


def test_retained_sites_true_means_five_and_default_is_off():
    snap = exact_snapshot()
    snap["types"][0]["top_paths"] = [top_path(100 - i, f"myapp/m.py:{i} in f") for i in range(8)]
    on = samples(exposition(FakeMonitor(snap), retained_sites=True))
    sites = sorted(dict(labels)["site"] for name, labels in on if name == "memtracker_retained_objects")
    assert sites == [f"myapp/m.py:{i} in f" for i in range(5)]
    assert "memtracker_retained_objects" not in exposition(FakeMonitor(snap))
    with pytest.raises(ValueError):
        MemoryCollector(FakeMonitor(snap), None, retained_sites=-1)


def test_cardinality_cap_keeps_largest_live_counts_and_counts_the_rest():
    types = [type_entry(f"app.T{i:03d}", i, allocations=i, frees=0) for i in range(250)]
    monitor = FakeMonitor(snapshot(types))
    got = samples(exposition(monitor))
    live = {dict(labels)["type"]: value for (name, labels), value in got.items() if name == "memtracker_live_objects"}
    assert len(live) == 200
    assert set(live) == {f"app.T{i:03d}" for i in range(50, 250)}
    assert live["app.T249"] == 249.0
    assert got[("memtracker_types_dropped", frozenset())] == 50.0
    counters = [key for key in got if key[0] == "memtracker_allocations_total"]
    assert len(counters) == 200

    small = samples(exposition(monitor, max_types=3))
    kept = sorted(dict(labels)["type"] for name, labels in small if name == "memtracker_growth_increases")
    assert kept == ["app.T247", "app.T248", "app.T249"]
    assert small[("memtracker_types_dropped", frozenset())] == 247.0


def test_cap_ties_are_broken_by_name_so_scrapes_are_stable():
    types = [type_entry(name, 5) for name in ("z.Z", "a.A", "m.M")] + [type_entry("big.B", 9)]
    got = samples(exposition(FakeMonitor(snapshot(types)), max_types=2))
    kept = {dict(labels)["type"] for name, labels in got if name == "memtracker_live_objects"}
    assert kept == {"big.B", "a.A"}


def test_census_snapshot_has_no_counters_and_engine_down():
    got = samples(exposition(FakeMonitor(census_snapshot())))
    assert not [key for key in got if key[0] in ("memtracker_allocations_total", "memtracker_frees_total")]
    assert got[("memtracker_live_objects", frozenset({("type", "myapp.models.Order")}))] == 1500.0
    assert got[("memtracker_growth_increases", frozenset({("type", "myapp.models.Order")}))] == 4.0
    assert got[("memtracker_analysis_active", frozenset({("type", "builtins.dict")}))] == 0.0
    assert got[("memtracker_engine_info", frozenset({("mode", "census"), ("python", "3.11.7")}))] == 1.0
    assert got[("memtracker_engine_up", frozenset())] == 0.0
    assert got[("memtracker_sample_duration_seconds", frozenset())] == 0.05


@pytest.mark.parametrize(
    "available, displaced, up", [(True, False, 1.0), (True, True, 0.0), (False, False, 0.0), (False, True, 0.0)]
)
def test_engine_up_is_zero_when_unavailable_or_displaced(available, displaced, up):
    snap = snapshot([type_entry("a.A", 1)], available=available, displaced=displaced)
    assert samples(exposition(FakeMonitor(snap)))[("memtracker_engine_up", frozenset())] == up


def test_no_sample_yet_omits_duration():
    snap = snapshot([], duration=None)
    text = exposition(FakeMonitor(snap))
    assert "memtracker_sample_duration_seconds" not in text
    got = samples(text)
    assert got[("memtracker_types_dropped", frozenset())] == 0.0
    assert not [key for key in got if key[0] == "memtracker_live_objects"]


def test_duplicate_type_names_are_merged_into_one_series():
    snap = snapshot(
        [
            type_entry("app.Local", 3, allocations=5, frees=2, increases=1),
            type_entry("app.Local", 4, allocations=6, frees=2, increases=7, analysing=True),
        ]
    )
    got = samples(exposition(FakeMonitor(snap)))
    label = frozenset({("type", "app.Local")})
    assert got[("memtracker_live_objects", label)] == 7.0
    assert got[("memtracker_allocations_total", label)] == 11.0
    assert got[("memtracker_growth_increases", label)] == 7.0
    assert got[("memtracker_analysis_active", label)] == 1.0


def test_snapshot_failure_reports_engine_down_and_logs(caplog):
    class Broken:
        def snapshot(self):
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="memtracker_web.prometheus"):
        text = exposition(Broken())
    assert samples(text) == {("memtracker_engine_up", frozenset()): 0.0}
    assert "snapshot() failed" in caplog.text


def test_registration_describes_without_snapshot_and_rejects_duplicates():
    monitor = FakeMonitor(exact_snapshot())
    registry = CollectorRegistry()
    MemoryCollector(monitor, registry)
    assert monitor.calls == 0
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        MemoryCollector(monitor, registry)
    unregistered = MemoryCollector(monitor, None)
    assert list(CollectorRegistry().collect()) == []
    assert [family.name for family in unregistered.collect()][0] == "memtracker_live_objects"
    generate_latest(registry)
    generate_latest(registry)
    assert monitor.calls == 3  # one snapshot per scrape


def test_scrape_reflects_the_current_snapshot():
    monitor = FakeMonitor(exact_snapshot())
    registry = CollectorRegistry()
    MemoryCollector(monitor, registry)
    first = samples(generate_latest(registry).decode())
    monitor.snap["types"][1]["live"] = 21
    second = samples(generate_latest(registry).decode())
    key = ("memtracker_live_objects", frozenset({("type", "builtins.dict")}))
    assert (first[key], second[key]) == (20.0, 21.0)


# ---------------------------------------------------------------------------
# promtool: exposition, example config, rules, dashboard queries


@needs_promtool
@pytest.mark.parametrize("snap", [exact_snapshot(), census_snapshot()], ids=["exact", "census"])
def test_promtool_check_metrics(snap):
    text = exposition(FakeMonitor(snap), retained_sites=True)
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


@needs_promtool
def test_promtool_flags_a_bad_exposition():
    # The check above can fail: a counter without _total is reported.
    bad = "# HELP bad_count x\n# TYPE bad_count counter\nbad_count 1\n"
    result = promtool("check", "metrics", stdin=bad)
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


@needs_promtool
def test_promtool_check_example_config_and_rules():
    config = promtool("check", "config", str(EXAMPLES / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout
    rules = promtool("check", "rules", str(EXAMPLES / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


ALERT_TESTS = """\
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'memtracker_growth_increases{{job="app", instance="a:8000", type="app.Leaky"}}'
        values: '0+1x15'
      - series: 'memtracker_growth_increases{{job="app", instance="a:8000", type="app.Fine"}}'
        values: '0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3'
      - series: 'memtracker_analysis_active{{job="app", instance="a:8000", type="app.Leaky"}}'
        values: '0x9 1x6'
      - series: 'memtracker_analysis_active{{job="app", instance="a:8000", type="app.Fine"}}'
        values: '0x15'
      - series: 'memtracker_engine_up{{job="app", instance="a:8000"}}'
        values: '1 1 0x13'
      - series: 'memtracker_engine_up{{job="app", instance="b:8000"}}'
        values: '1x15'
    alert_rule_test:
      - eval_time: 9m
        alertname: MemtrackerTypeGrowing
        exp_alerts: []
      - eval_time: 12m
        alertname: MemtrackerTypeGrowing
        exp_alerts:
          - exp_labels: {{severity: warning, job: app, instance: "a:8000", type: app.Leaky}}
            exp_annotations:
              summary: "app.Leaky grew for 12 consecutive samples on a:8000"
              description: "Live objects of app.Leaky increased in 12 consecutive memtracker samples.  See memtracker_retained_objects or the middleware's detail view for the allocation sites."
      - eval_time: 12m
        alertname: MemtrackerAnalysisActive
        exp_alerts:
          - exp_labels: {{severity: info, job: app, instance: "a:8000", type: app.Leaky}}
            exp_annotations:
              summary: "memtracker is recording allocation paths of app.Leaky on a:8000"
              description: "Call-path analysis was switched on for app.Leaky (suspected leak or manual request); it adds overhead to allocations of that type until it calms down."
      - eval_time: 5m
        alertname: MemtrackerEngineDown
        exp_alerts: []
      - eval_time: 8m
        alertname: MemtrackerEngineDown
        exp_alerts:
          - exp_labels: {{severity: warning, job: app, instance: "a:8000"}}
            exp_annotations:
              summary: "memtracker's exact engine is not running on a:8000"
              description: "The reference tracer is unavailable (Python older than 3.13, or the extension did not load) or was displaced by another tool; counts come from the slower census fallback, if any.  memtracker_engine_info shows the current mode."
  - interval: 5m
    input_series:
      - series: 'memtracker_live_objects{{job="app", instance="a:8000", pid="7", type="app.Leaky"}}'
        values: '100+10x40'
      - series: 'memtracker_live_objects{{job="app", instance="a:8000", pid="8", type="app.Leaky"}}'
        values: '50+1x40'
      - series: 'memtracker_live_objects{{job="app", instance="a:8000", pid="7", type="app.Recent"}}'
        values: '100x24 110+10x16'
      - series: 'memtracker_live_objects{{job="app", instance="a:8000", pid="7", type="app.Sawtooth"}}'
        values: '100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200 300 100 200'
    alert_rule_test:
      - eval_time: 3h
        alertname: MemtrackerTypeGrowingSteadily
        exp_alerts:
          - exp_labels: {{severity: warning, job: app, instance: "a:8000", type: app.Leaky}}
            exp_annotations:
              summary: "app.Leaky has grown in every 15 minute interval for 2 hours"
"""  # noqa: E501 -- promtool's test file as written: the alerts' descriptions are one line each


@needs_promtool
def test_alert_rules_fire_as_documented(tmp_path):
    # promtool's rule unit tests: the growth, analysis and engine alerts fire for the
    # right series at the right time, and not for a type that keeps coming back down.
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(ALERT_TESTS.format(alerts=EXAMPLES / "alerts.yml"))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def dashboard_queries():
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [var["query"]["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"]
    return dashboard, queries


def test_dashboard_covers_live_objects_growth_and_analysis_with_exported_metrics():
    dashboard, queries = dashboard_queries()
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Live objects per type", "Consecutive growing samples", "Call-path analysis"} <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exported = set()
    for family in text_string_to_metric_families(exposition(FakeMonitor(exact_snapshot()), retained_sites=True)):
        exported.update(sample.name for sample in family.samples)
    used = set(re.findall(r"\bmemtracker_[a-z_]+", " ".join(queries)))
    assert used and used <= exported, used - exported
    alerts = (EXAMPLES / "alerts.yml").read_text()
    assert set(re.findall(r"\bmemtracker_[a-z_]+(?=[\s){\[])", alerts)) <= exported


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    _, queries = dashboard_queries()
    rules = []
    for i, query in enumerate(queries):
        if query.startswith("label_values("):
            # Grafana's function: label_values(selector, label); check the selector.
            query = re.match(r"label_values\((.*),\s*\w+\)$", query).group(1)
        query = query.replace("$__rate_interval", "1m").replace("$job", ".*")
        query = query.replace("$instance", ".*").replace("$type", ".*")
        rules.append({"record": f"dashboard:query{i}", "expr": query})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# ---------------------------------------------------------------------------
# multi-process: publisher, registry, child_exit


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    path = tmp_path / "multiproc"
    path.mkdir()
    monkeypatch.setenv(prom.MULTIPROC_ENV, str(path))
    opened = []

    def as_worker(pid):
        # What prometheus_client picks at import when the variable is set, with a
        # fixed process id so one test process can stand in for several workers.
        value_class = values.MultiProcessValue(lambda: pid)
        opened.append(value_class)
        monkeypatch.setattr(values, "ValueClass", value_class)

    yield path, as_worker
    for value_class in opened:
        value_class.close_all_files()


def merged(path=None):
    return samples(generate_latest(prom.metrics_registry()).decode())


def test_metrics_registry_is_the_default_without_multiproc_dir(monkeypatch):
    monkeypatch.delenv(prom.MULTIPROC_ENV, raising=False)
    assert prom.metrics_registry() is REGISTRY
    assert not prom.multiprocess_enabled()


def test_publisher_needs_the_multiproc_dir_before_prometheus_client_import(monkeypatch, tmp_path):
    monkeypatch.delenv(prom.MULTIPROC_ENV, raising=False)
    with pytest.raises(RuntimeError, match="is not set"):
        MultiprocessPublisher(FakeMonitor(exact_snapshot()))
    monkeypatch.setenv(prom.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    with pytest.raises(RuntimeError, match="imported before"):
        MultiprocessPublisher(FakeMonitor(exact_snapshot()))


def test_publisher_rejects_unknown_mode(multiproc_dir):
    _, as_worker = multiproc_dir
    as_worker(11)
    with pytest.raises(ValueError, match="multiprocess_mode"):
        MultiprocessPublisher(FakeMonitor(exact_snapshot()), multiprocess_mode="average")


def worker_snapshot(live, allocations):
    return snapshot(
        [
            type_entry(
                "app.Leaky",
                live,
                allocations=allocations,
                frees=allocations - live,
                increases=2,
                analysing=True,
                top_paths=[top_path(live, "app/leak.py:3 in keep")],
            ),
            type_entry("builtins.list", 5, allocations=9, frees=4),
        ]
    )


def test_liveall_publishes_one_series_per_worker_and_child_exit_removes_it(multiproc_dir):
    path, as_worker = multiproc_dir
    as_worker(101)
    first = MultiprocessPublisher(FakeMonitor(worker_snapshot(30, 40)), retained_sites=True)
    first.publish()
    as_worker(102)
    second = MultiprocessPublisher(FakeMonitor(worker_snapshot(12, 12)), retained_sites=True)
    second.publish()

    got = merged()
    leaky = ("type", "app.Leaky")
    assert got[("memtracker_live_objects", frozenset({leaky, ("pid", "101")}))] == 30.0
    assert got[("memtracker_live_objects", frozenset({leaky, ("pid", "102")}))] == 12.0
    assert (
        got[("memtracker_retained_objects", frozenset({leaky, ("site", "app/leak.py:3 in keep"), ("pid", "102")}))]
        == 12.0
    )
    assert got[("memtracker_engine_info", frozenset({("mode", "exact"), ("python", "3.13.5"), ("pid", "101")}))] == 1.0
    assert got[("memtracker_engine_up", frozenset({("pid", "102")}))] == 1.0
    # Counters have no per-worker series: prometheus_client sums them.
    assert got[("memtracker_allocations_total", frozenset({leaky}))] == 52.0
    assert got[("memtracker_frees_total", frozenset({("type", "builtins.list")}))] == 8.0

    prom.child_exit(None, type("Worker", (), {"pid": 101})())
    got = merged()
    assert not [key for key in got if ("pid", "101") in key[1]]
    assert got[("memtracker_live_objects", frozenset({leaky, ("pid", "102")}))] == 12.0
    assert got[("memtracker_allocations_total", frozenset({leaky}))] == 52.0  # never goes back
    assert sorted(p.name for p in path.iterdir()) == ["counter_101.db", "counter_102.db", "gauge_liveall_102.db"]


def test_livesum_publishes_totals(multiproc_dir):
    _, as_worker = multiproc_dir
    as_worker(201)
    MultiprocessPublisher(FakeMonitor(worker_snapshot(30, 40)), multiprocess_mode="livesum").publish()
    as_worker(202)
    MultiprocessPublisher(FakeMonitor(worker_snapshot(12, 12)), multiprocess_mode="livesum").publish()
    got = merged()
    assert got[("memtracker_live_objects", frozenset({("type", "app.Leaky")}))] == 42.0
    assert got[("memtracker_live_objects", frozenset({("type", "builtins.list")}))] == 10.0
    assert got[("memtracker_engine_up", frozenset())] == 2.0  # workers with the engine up
    assert not [key for key in got if "pid" in dict(key[1])]
    prom.child_exit(None, type("Worker", (), {"pid": 201})())
    assert merged()[("memtracker_live_objects", frozenset({("type", "app.Leaky")}))] == 12.0


def test_publisher_counts_deltas_zeroes_departed_types_and_handles_restarts(multiproc_dir):
    _, as_worker = multiproc_dir
    as_worker(301)
    monitor = FakeMonitor(worker_snapshot(30, 40))
    publisher = MultiprocessPublisher(monitor)
    publisher.publish()
    publisher.publish()  # same snapshot twice: counters do not double
    leaky = frozenset({("type", "app.Leaky")})
    assert merged()[("memtracker_allocations_total", leaky)] == 40.0

    monitor.snap = worker_snapshot(35, 50)
    monitor.snap["types"].pop()  # builtins.list no longer monitored
    publisher.publish()
    got = merged()
    assert got[("memtracker_allocations_total", leaky)] == 50.0
    assert got[("memtracker_live_objects", frozenset({("type", "app.Leaky"), ("pid", "301")}))] == 35.0
    assert got[("memtracker_live_objects", frozenset({("type", "builtins.list"), ("pid", "301")}))] == 0.0
    assert got[("memtracker_allocations_total", frozenset({("type", "builtins.list")}))] == 9.0

    monitor.snap = worker_snapshot(2, 6)  # type re-monitored: its counters restarted at 0
    publisher.publish()
    assert merged()[("memtracker_allocations_total", leaky)] == 56.0


def test_publisher_in_a_forked_child_adds_only_new_counts(multiproc_dir, monkeypatch):
    # gunicorn preload_app: the master published, then a worker forked from it.
    current = {"pid": 801}
    value_class = values.MultiProcessValue(lambda: current["pid"])
    monkeypatch.setattr(values, "ValueClass", value_class)
    try:
        monitor = FakeMonitor(worker_snapshot(30, 40))
        publisher = MultiprocessPublisher(monitor)
        publisher.publish()
        parent_lock = publisher._lock
        current["pid"] = 802  # prometheus_client switches to the child's files
        monitor.snap = worker_snapshot(35, 45)
        child_pid = os.getpid() + 1
        with monkeypatch.context() as patch:
            patch.setattr(os, "getpid", lambda: child_pid)
            publisher.publish()
        assert publisher._lock is not parent_lock
        got = merged()
    finally:
        value_class.close_all_files()
    leaky = ("type", "app.Leaky")
    assert got[("memtracker_allocations_total", frozenset({leaky}))] == 45.0  # not 40 + 45
    assert got[("memtracker_live_objects", frozenset({leaky, ("pid", "802")}))] == 35.0


def test_publisher_census_mode_and_cap(multiproc_dir):
    _, as_worker = multiproc_dir
    as_worker(401)
    snap = census_snapshot()
    snap["types"] += [type_entry(f"app.T{i}", i, source="census") for i in range(5)]
    MultiprocessPublisher(FakeMonitor(snap), max_types=3).publish()
    got = merged()
    kept = sorted(dict(labels)["type"] for name, labels in got if name == "memtracker_live_objects")
    assert kept == ["app.T4", "builtins.dict", "myapp.models.Order"]
    assert got[("memtracker_types_dropped", frozenset({("pid", "401")}))] == 4.0
    assert got[("memtracker_engine_up", frozenset({("pid", "401")}))] == 0.0
    assert not [key for key in got if key[0].startswith(("memtracker_allocations", "memtracker_frees"))]


@needs_promtool
def test_promtool_check_metrics_multiprocess(multiproc_dir):
    _, as_worker = multiproc_dir
    as_worker(501)
    MultiprocessPublisher(FakeMonitor(exact_snapshot()), retained_sites=True).publish()
    result = promtool("check", "metrics", stdin=generate_latest(prom.metrics_registry()).decode())
    assert result.returncode == 0, result.stdout + result.stderr


def test_attach_publishes_from_the_sample_hooks_and_survives_errors(multiproc_dir, caplog):
    _, as_worker = multiproc_dir
    as_worker(601)
    monitor = FakeMonitor(worker_snapshot(3, 3))
    publisher = MultiprocessPublisher(monitor)
    assert publisher.attach() and publisher.attach()
    assert len(monitor.sample_hooks) == 1
    for hook in monitor.sample_hooks:
        hook(monitor)  # what MemoryMonitor.sample() does after a sample
    assert merged()[("memtracker_live_objects", frozenset({("type", "app.Leaky"), ("pid", "601")}))] == 3.0

    monitor.snap = None  # a broken snapshot must not raise into the sampling thread
    with caplog.at_level(logging.ERROR, logger="memtracker_web.prometheus"):
        monitor.sample_hooks[0](monitor)
    assert "publishing Prometheus metrics failed" in caplog.text
    publisher.detach()
    assert monitor.sample_hooks == []

    class OnSample:
        def __init__(self):
            self.on_sample = []

        def snapshot(self):
            return worker_snapshot(1, 1)

    other = OnSample()
    assert MultiprocessPublisher(other).attach() and len(other.on_sample) == 1
    del other.on_sample
    assert MultiprocessPublisher(other).attach() is False


def test_install_picks_collector_or_publisher(multiproc_dir, monkeypatch):
    _, as_worker = multiproc_dir
    as_worker(701)
    monitor = FakeMonitor(worker_snapshot(4, 4))
    publisher = prom.install(monitor, multiprocess_mode="livesum")
    assert isinstance(publisher, MultiprocessPublisher)
    assert monitor.sample_hooks == [publisher._hook]
    assert merged()[("memtracker_live_objects", frozenset({("type", "app.Leaky")}))] == 4.0

    monkeypatch.delenv(prom.MULTIPROC_ENV)
    registry = CollectorRegistry()
    collector = prom.install(monitor, registry, max_types=1)
    assert isinstance(collector, MemoryCollector)
    got = samples(generate_latest(registry).decode())
    assert got[("memtracker_types_dropped", frozenset())] == 1.0


def test_example_gunicorn_config_wires_child_exit_and_wipes_stale_files(multiproc_dir):
    path, _ = multiproc_dir
    config = {}
    exec(compile((ROOT / "examples" / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), config)
    assert config["child_exit"] is prom.child_exit
    (path / "gauge_liveall_999.db").write_bytes(b"")
    (path / "keep.txt").write_text("not ours")
    config["on_starting"](type("Server", (), {"log": logging.getLogger("test")})())
    assert [p.name for p in path.iterdir()] == ["keep.txt"]


def test_module_docstring_documents_the_modes():
    doc = textwrap.dedent(prometheus_code.__doc__)
    for mode in ("liveall", "livesum", "mark_process_dead"):
        assert mode in doc


# ---------------------------------------------------------------------------
# the real MemoryMonitor behind the collector


class RealOrder:
    pass


def remember_orders(keep, count):
    for _ in range(count):
        keep.append(RealOrder())  # the allocation site of the retained-objects test


@pytest.fixture
def real_monitor():
    monitor_module = pytest.importorskip("memtracker_web.monitor")
    monitor = monitor_module.MemoryMonitor(interval=3600.0)
    try:
        yield monitor
    finally:
        monitor.close()


def test_real_monitor_exposition(real_monitor):
    from memtracker_web.core.engine import engine_status

    real_monitor.start_monitoring(RealOrder)
    keep = [RealOrder() for _ in range(30)]
    del keep[25:]
    real_monitor.sample()
    text = exposition(real_monitor)
    got = samples(text)
    label = frozenset({("type", "test_prometheus.RealOrder")})
    assert got[("memtracker_live_objects", label)] == 25.0
    assert got[("memtracker_growth_increases", label)] == 0.0
    assert got[("memtracker_analysis_active", label)] == 0.0
    status = engine_status()
    info = frozenset({("mode", real_monitor.mode), ("python", status["python"])})
    assert got[("memtracker_engine_info", info)] == 1.0
    exact = real_monitor.mode == "exact"
    assert got[("memtracker_engine_up", frozenset())] == (1.0 if exact and not status["displaced"] else 0.0)
    if exact:
        assert got[("memtracker_allocations_total", label)] == 30.0
        assert got[("memtracker_frees_total", label)] == 5.0
    else:
        assert not [key for key in got if key[0].startswith(("memtracker_allocations", "memtracker_frees"))]
    if Path(PROMTOOL).exists():
        result = promtool("check", "metrics", stdin=text)
        assert result.returncode == 0, result.stdout + result.stderr


def test_real_monitor_retained_sites(real_monitor):
    if real_monitor.mode != "exact":
        pytest.skip("call paths need the exact engine (CPython 3.13); census mode has none")
    real_monitor.start_monitoring(RealOrder, analysis=True)
    keep = []
    remember_orders(keep, 12)
    real_monitor.sample()
    got = samples(exposition(real_monitor, retained_sites=True))
    sites = {
        dict(labels)["site"]: value for (name, labels), value in got.items() if name == "memtracker_retained_objects"
    }
    line = next(
        number
        for number, text in enumerate(Path(__file__).read_text().splitlines(), 1)
        if "the allocation site of the retained-objects test" in text
    )
    [(site, value)] = sites.items()
    assert site.endswith(f"test_prometheus.py:{line} in remember_orders")
    assert value == 12.0
    assert got[("memtracker_analysis_active", frozenset({("type", "test_prometheus.RealOrder")}))] == 1.0


def test_bytes_gauges_come_from_the_estimates_and_the_resident_memory():
    snap = exact_snapshot()
    snap["types"][0]["live_bytes"] = 72000
    snap["types"][1]["live_bytes"] = None  # no estimate: no series, not a zero
    snap["process"] = {"resident_bytes": 52428800, "history": [[1764115200.0, 52428800]]}
    text = exposition(FakeMonitor(snap))
    assert (
        "# HELP memtracker_live_bytes Estimate of the memory the live objects of a tracked type take "
        "themselves: the mean shallow size of up to 64 of them times the live count.\n"
        "# TYPE memtracker_live_bytes gauge\n"
        'memtracker_live_bytes{type="myapp.models.Order"} 72000.0\n'
    ) in text
    assert ("# TYPE memtracker_resident_memory_bytes gauge\nmemtracker_resident_memory_bytes 5.24288e+07\n") in text
    assert 'memtracker_live_bytes{type="builtins.dict"}' not in text
    if Path(PROMTOOL).exists():  # (without it, the assertions above still run)
        assert promtool("check", "metrics", stdin=text).returncode == 0


def test_multiprocess_bytes_per_worker_and_summed(multiproc_dir):
    _, as_worker = multiproc_dir
    for pid, live in ((301, 30), (302, 12)):
        as_worker(pid)
        snap = worker_snapshot(live, live)
        snap["types"][0]["live_bytes"] = live * 48
        snap["process"] = {"resident_bytes": pid * 1000, "history": []}
        MultiprocessPublisher(FakeMonitor(snap)).publish()
    got = merged()
    leaky = ("type", "app.Leaky")
    assert got[("memtracker_live_bytes", frozenset({leaky, ("pid", "301")}))] == 30 * 48
    assert got[("memtracker_live_bytes", frozenset({leaky, ("pid", "302")}))] == 12 * 48
    assert got[("memtracker_resident_memory_bytes", frozenset({("pid", "302")}))] == 302000
    assert not [key for key in got if key[0] == "memtracker_live_bytes" and ("type", "builtins.list") in key[1]]
