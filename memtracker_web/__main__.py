"""``python -m memtracker_web``; also the ``memtracker-web`` console script (pyproject)."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
