"""The core: the C engine's loader (engine), Capture, Tracker, census mode and type names.

The C extension itself is built as ``memtracker_web._tracker`` (see setup.py);
nothing here imports a layer above (``pyproject.toml``'s import-linter contracts).
"""
