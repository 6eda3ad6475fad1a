"""gunicorn, 2 workers, PROMETHEUS_MULTIPROC_DIR: each worker's series appear,
totals add up, and a killed worker's series disappear through the child_exit
hook of examples/gunicorn.conf.py.

gunicorn imports prometheus_app.py's ``make_gunicorn_app()`` in each worker;
``MEMTRACKER_TEST_MONITOR`` picks its monitor ("real" or "counting").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_app import WORKER_LEAK

from support import children_of, free_port, http_get, stop_process, subprocess_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
TYPE = "prometheus_app.LeakyRecord"


# ---------------------------------------------------------------------------
# helpers


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(http_get(url).decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def live_by_pid(samples) -> dict[int, float]:
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in samples.items()
        if name == "memtracker_live_objects" and dict(labels).get("type") == TYPE
    }


def live_total(samples) -> float | None:
    return samples.get(("memtracker_live_objects", frozenset({("type", TYPE)})))


MONITORS = ["counting", "real"]


# ---------------------------------------------------------------------------
# the test


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find gunicorn workers")
@pytest.mark.parametrize("mode", ["liveall", "livesum"])
@pytest.mark.parametrize("monitor_kind", MONITORS)
def test_gunicorn_workers_series_totals_and_dead_worker_cleanup(tmp_path, mode, monitor_kind):
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    (multiproc / "gauge_liveall_1.db").write_bytes(b"stale")  # wiped by on_starting
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    master = None
    try:
        with log.open("wb") as out:
            master = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(ROOT / "examples" / "gunicorn.conf.py"),
                    "-w",
                    "2",
                    "-b",
                    f"127.0.0.1:{port}",
                    "--graceful-timeout",
                    "5",
                    "--pythonpath",
                    f"{Path(__file__).parent},{ROOT / 'tests'}",
                    "prometheus_app:make_gunicorn_app()",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=subprocess_env(
                    PROMETHEUS_MULTIPROC_DIR=str(multiproc),
                    MEMTRACKER_TEST_MONITOR=monitor_kind,
                    MEMTRACKER_TEST_MODE=mode,
                ),
            )
        logs, procs = [log], (master,)

        def published(expected_pids: set[int] | None = None):
            """(worker pids, scrape) once exactly two workers run and both have published."""
            pids = children_of(master.pid)
            files = {p.name for p in multiproc.glob(f"gauge_{mode}_*.db")}
            if len(pids) != 2 or files != {f"gauge_{mode}_{pid}.db" for pid in pids}:
                return None
            if expected_pids is not None and not expected_pids <= pids:
                return None
            samples = scrape(url + "/metrics")
            if mode == "liveall" and set(live_by_pid(samples)) != pids:
                return None
            return pids, samples

        pids, samples = wait_for("both workers to publish", published, logs, processes=procs)
        if mode == "liveall":
            assert live_by_pid(samples) == {pid: WORKER_LEAK for pid in pids}
            assert {int(dict(labels)["pid"]) for (name, labels) in samples if name == "memtracker_engine_up"} == pids
        else:
            assert live_total(samples) == 2 * WORKER_LEAK
            # livesum: the info gauge counts the workers running that engine.
            assert [value for (name, _), value in samples.items() if name == "memtracker_engine_info"] == [2]

        # Leak more in whichever workers take the requests; remember each one's count.
        latest = {pid: WORKER_LEAK for pid in pids}
        for n in range(1, 9):
            answer = json.loads(http_get(f"{url}/leak?n={n}"))
            latest[answer["pid"]] = answer["live"]
        assert sum(latest.values()) == 2 * WORKER_LEAK + sum(range(1, 9))
        samples = scrape(url + "/metrics")
        if mode == "liveall":
            assert live_by_pid(samples) == latest
        else:
            assert live_total(samples) == sum(latest.values())
        allocations = samples.get(("memtracker_allocations_total", frozenset({("type", TYPE)})))
        if allocations is not None:  # exact mode: counters are summed over workers
            assert allocations == sum(latest.values())

        # A worker dies: gunicorn's master calls child_exit, its gauges go away,
        # and the replacement worker publishes its own.
        victim = max(latest, key=latest.get)
        survivor = next(pid for pid in pids if pid != victim)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            result = published({survivor})
            return result if result and victim not in result[0] else None

        new_pids, samples = wait_for("the killed worker to be replaced", replaced, logs, processes=procs)
        newcomer = next(pid for pid in new_pids if pid != survivor)
        assert not (multiproc / f"gauge_{mode}_{victim}.db").exists()
        assert not [key for key in samples if ("pid", str(victim)) in key[1]]
        if mode == "liveall":
            assert live_by_pid(samples) == {survivor: latest[survivor], newcomer: WORKER_LEAK}
        else:
            assert live_total(samples) == latest[survivor] + WORKER_LEAK
        if allocations is not None:
            # The dead worker's allocations still count: counters never go back.
            after = samples[("memtracker_allocations_total", frozenset({("type", TYPE)}))]
            assert after == allocations + WORKER_LEAK
        assert "child_exit" not in log.read_text()  # the hook ran without an error traceback
    finally:
        if master is not None:
            if master.poll() is None:
                master.send_signal(signal.SIGTERM)
            stop_process(master)
