"""The package's layers (docs/CONTRACTS.md): import-linter's contracts in pyproject.toml
hold, and the import paths users write still lead to the same objects."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> list[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        return [str(script)]
    found = shutil.which("lint-imports")
    if found:
        return [found]
    pytest.skip("import-linter is not installed (pip install -e '.[dev]' brings it): the layers are not checked")


def test_imports_point_down_only():
    command = _lint_imports() + ["--no-cache"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


# The public import paths (README, examples/, docs): module -> names -> where the code lives.
PUBLIC = {
    "memtracker_web.asgi": {"MemoryTrackerMiddleware": "memtracker_web.integrations.asgi"},
    "memtracker_web.wsgi": {"MemoryTrackerMiddleware": "memtracker_web.integrations.wsgi"},
    "memtracker_web.flask": {"MemoryTracker": "memtracker_web.integrations.flask"},
    "memtracker_web.django": {"MemoryTrackerMiddleware": "memtracker_web.integrations.django"},
    "memtracker_web.fastapi": {"install": "memtracker_web.integrations.fastapi"},
    "memtracker_web.prometheus": {
        "MemoryCollector": "memtracker_web.render.prometheus",
        "MultiprocessPublisher": "memtracker_web.render.prometheus",
        "install": "memtracker_web.render.prometheus",
        "metrics_registry": "memtracker_web.render.prometheus",
        "child_exit": "memtracker_web.integrations.gunicorn",
    },
    "memtracker_web.workers": {
        "post_worker_init": "memtracker_web.integrations.gunicorn",
        "clear_host_files": "memtracker_web.store.workers",
        "shared_dir_from_env": "memtracker_web.store.workers",
    },
    "memtracker_web.monitor": {
        "MemoryMonitor": "memtracker_web.monitor.monitor",
        "get_default_monitor": "memtracker_web.monitor.monitor",
    },
    "memtracker_web.endpoint": {
        "Endpoint": "memtracker_web.endpoint.routes",
        "EndpointOptions": "memtracker_web.endpoint.routes",
        "Request": "memtracker_web.endpoint.messages",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_import_paths_still_work(module):
    public = importlib.import_module(module)
    for name, home in PUBLIC[module].items():
        assert getattr(public, name) is getattr(importlib.import_module(home), name), f"{module}.{name}"
        assert name in public.__all__


def test_django_settings_string_resolves():
    pytest.importorskip("django")
    from django.utils.module_loading import import_string

    from memtracker_web.integrations.django import MemoryTrackerMiddleware

    assert import_string("memtracker_web.django.MemoryTrackerMiddleware") is MemoryTrackerMiddleware


def test_entry_points_are_where_pyproject_says():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'memtracker = "memtracker_web.pytest_plugin"' in text
    assert 'memtracker-web = "memtracker_web.__main__:main"' in text
    assert callable(importlib.import_module("memtracker_web.__main__").main)
    importlib.import_module("memtracker_web.pytest_plugin")
