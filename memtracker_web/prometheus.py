"""Public path of the Prometheus export (the code: :mod:`memtracker_web.render.prometheus`;
gunicorn's ``child_exit`` hook: :mod:`memtracker_web.integrations.gunicorn`)."""

from .integrations.gunicorn import child_exit
from .render.prometheus import (
    MULTIPROC_ENV,
    MemoryCollector,
    MultiprocessPublisher,
    install,
    metrics_registry,
    multiprocess_enabled,
)

__all__ = [
    "MULTIPROC_ENV",
    "MemoryCollector",
    "MultiprocessPublisher",
    "child_exit",
    "install",
    "metrics_registry",
    "multiprocess_enabled",
]
