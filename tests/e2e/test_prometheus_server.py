"""A real Prometheus server scrapes an app served by uvicorn and its HTTP API
returns memtracker_live_objects of the leaking type with the right value.

The app (prometheus_app.py's ``make_app``) runs in a uvicorn subprocess, imported
with ``--factory``, so that its monitor and tracer stay out of the test process;
``MEMTRACKER_TEST_MONITOR`` picks its monitor ("real" or "counting").
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_app import FIRST_LEAK, MORE_LEAK

from support import free_ports, http_get, stop_process, subprocess_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
MONITORS = ["counting", "real"]


# ---------------------------------------------------------------------------
# the test


@pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="prometheus server not installed (Debian package 'prometheus')"
)
@pytest.mark.parametrize("monitor_kind", MONITORS)
def test_prometheus_scrapes_live_objects_of_the_leaking_type(tmp_path, monitor_kind):
    app_port, prom_port = free_ports(2)
    app_log, prom_log = tmp_path / "uvicorn.log", tmp_path / "prometheus.log"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: app\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n"
    )
    app = prom = None
    try:
        with app_log.open("wb") as out:
            app = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "prometheus_app:make_app",
                    "--app-dir",
                    str(Path(__file__).parent),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(app_port),
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=subprocess_env(MEMTRACKER_TEST_MONITOR=monitor_kind),
            )
        with prom_log.open("wb") as out:
            prom = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        logs, procs = [app_log, prom_log], (app, prom)
        app_url, prom_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{prom_port}"

        exposition = wait_for(
            "the app's /metrics", lambda: http_get(app_url + "/metrics").decode(), logs, processes=procs
        )
        assert 'memtracker_live_objects{type="prometheus_app.LeakyRecord"}' in exposition
        wait_for("Prometheus to be ready", lambda: http_get(prom_url + "/-/ready"), logs, processes=procs)

        def query(promql: str) -> list[dict]:
            url = prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            answer = json.loads(http_get(url))
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        live = 'memtracker_live_objects{type="prometheus_app.LeakyRecord"}'

        def live_value(expected: float):
            result = query(live)
            return result if result and float(result[0]["value"][1]) == expected else None

        result = wait_for(f"{live} == {FIRST_LEAK}", lambda: live_value(FIRST_LEAK), logs, processes=procs)
        assert len(result) == 1
        assert result[0]["metric"] == {
            "__name__": "memtracker_live_objects",
            "instance": f"127.0.0.1:{app_port}",
            "job": "app",
            "type": "prometheus_app.LeakyRecord",
        }

        # The leak grows: the next scrapes carry the new count.
        assert json.loads(http_get(f"{app_url}/leak?n={MORE_LEAK}"))["live"] == FIRST_LEAK + MORE_LEAK
        wait_for(
            f"{live} == {FIRST_LEAK + MORE_LEAK}", lambda: live_value(FIRST_LEAK + MORE_LEAK), logs, processes=procs
        )

        info = query("memtracker_engine_info")
        assert len(info) == 1 and info[0]["metric"]["mode"] in ("exact", "census")
        assert platform.python_version() in info[0]["metric"]["python"]
        up = query("memtracker_engine_up")
        assert len(up) == 1 and up[0]["value"][1] in ("0", "1")
        # Scrapes were clean: Prometheus recorded no errors for the target.
        targets = json.loads(http_get(prom_url + "/api/v1/targets"))["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        assert targets[0]["lastError"] == ""
    finally:
        stop_process(prom)
        stop_process(app)
