"""gunicorn settings for exporting memtracker metrics from several workers.

    mkdir -p /tmp/memtracker-prom
    PROMETHEUS_MULTIPROC_DIR=/tmp/memtracker-prom gunicorn -c examples/gunicorn.conf.py myapp:app

The variable must be set before gunicorn starts (prometheus_client chooses its
file-backed storage when first imported).  In the app, per worker (without
``preload_app`` the app module is imported in each worker):

    from memtracker_web.monitor import get_default_monitor
    from memtracker_web.prometheus import install, metrics_registry

    monitor = get_default_monitor(track=["myapp.models.Order"])
    monitor.start()
    install(monitor, multiprocess_mode="liveall")  # or "livesum" for totals only
    # serve prometheus_client.make_wsgi_app(metrics_registry()) at /metrics

With ``preload_app = True`` the app module runs in the master: call ``install()``
from a ``post_fork(server, worker)`` hook instead, or the master publishes series
under its own pid that no child_exit ever removes.

One view of all workers on /debug/memory: each worker publishes its snapshot
to MEMTRACKER_SHARED_DIR (default: PROMETHEUS_MULTIPROC_DIR), and whichever
worker answers shows all of them. Each worker's monitor starts as the app
loads in it (with preload_app, as the master forks it), so a worker that has
not served a request yet is in that view too; ``post_worker_init`` below also
installs the endpoint's metrics exporter before the first request.

Command-line options (-w, -b) override the values below.
"""

from __future__ import annotations

import glob
import os

# Called by the gunicorn master when a worker exits or is killed: removes that
# worker's live gauges so its series disappear from /metrics.
from memtracker_web.prometheus import child_exit  # noqa: F401
from memtracker_web.workers import clear_host_files, post_worker_init, shared_dir_from_env  # noqa: F401

bind = "127.0.0.1:8000"
workers = 2


def on_starting(server):
    # Files of a previous run would show its workers' series, counts and snapshots.
    shared = shared_dir_from_env()
    if shared and os.path.isdir(shared):
        clear_host_files(shared)
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        server.log.warning("PROMETHEUS_MULTIPROC_DIR is not set: each worker exports only itself")
        return
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
