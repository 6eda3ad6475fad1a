"""Public path of the Django middleware: ``"memtracker_web.django.MemoryTrackerMiddleware"``
in ``MIDDLEWARE`` (the code: :mod:`memtracker_web.integrations.django`)."""

from .integrations.django import MemoryTrackerMiddleware

__all__ = ["MemoryTrackerMiddleware"]
