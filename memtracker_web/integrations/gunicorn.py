"""gunicorn's server hooks, for a gunicorn config file (see ``examples/gunicorn.conf.py``).

``post_worker_init`` starts the memory endpoints built in a worker; ``child_exit``
drops a dead worker's live Prometheus gauges. Both are also importable where they
always were: ``memtracker_web.workers.post_worker_init`` and
``memtracker_web.prometheus.child_exit``.
"""

from __future__ import annotations

from typing import Any

from ..endpoint.routes import start_endpoints

__all__ = ["child_exit", "post_worker_init"]


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: start the memory endpoints built in this worker now.

    The monitor and the worker file start as the app loads (Endpoint.start_at_load);
    this also installs the metrics exporter before the first request.
    """
    start_endpoints()


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` hook: drop the dead worker's live gauges.

    Use in a gunicorn config file: ``from memtracker_web.prometheus import child_exit``.
    """
    # imported here: prometheus_client must first be imported after PROMETHEUS_MULTIPROC_DIR is set
    from prometheus_client.multiprocess import mark_process_dead

    from ..render.prometheus import multiprocess_enabled

    if multiprocess_enabled():
        mark_process_dead(worker.pid)
