"""Public path of the multi-worker helpers a gunicorn config file uses (see
``examples/gunicorn.conf.py``; the code: :mod:`memtracker_web.store.workers` and
:mod:`memtracker_web.integrations.gunicorn`)."""

from .integrations.gunicorn import post_worker_init
from .store.workers import clear_host_files, shared_dir_from_env

__all__ = ["clear_host_files", "post_worker_init", "shared_dir_from_env"]
