"""Public path of the FastAPI helper (the code: :mod:`memtracker_web.integrations.fastapi`)."""

from .integrations.fastapi import install

__all__ = ["install"]
