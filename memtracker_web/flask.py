"""Public path of the Flask extension (the code: :mod:`memtracker_web.integrations.flask`)."""

from .integrations.flask import MemoryTracker

__all__ = ["MemoryTracker"]
