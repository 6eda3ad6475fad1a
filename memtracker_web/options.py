"""Checks for the numeric options, wherever they enter (constructors, middleware,
Django and Flask settings, environment variables): one clear ValueError that
names the option, never a monitor that busy-loops on NaN or dies on infinity."""
from __future__ import annotations

import math
from typing import Any

MAX_INTERVAL = 86_400.0         # seconds between samples: a day at most


def check_whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) from ``low`` to ``high``, else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be a whole number {bounds}, got {value!r}")
    return value


def check_interval(value: Any, name: str = "interval") -> float:
    """Seconds between samples: a finite number above 0, at most a day."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_INTERVAL:
        raise ValueError(f"{name} must be a number of seconds above 0 and at most {MAX_INTERVAL:g}, got {value!r}")
    return float(value)
