"""Census mode: live objects per type from a walk of the garbage collector's list.

The fallback where the exact engine cannot run. It costs a walk of every
GC-tracked object each sample (so it runs in the monitor's thread, never in a
request) and it is blind to objects the collector does not track.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any

BLIND_SPOTS = (
    "objects the garbage collector does not track are not counted: most str, bytes, int and "
    "float objects, and dicts/tuples holding only such atoms (CPython untracks them); "
    "counts include objects created before monitoring began; no call paths"
)


def take_census() -> tuple[Counter, dict[str, Any]]:
    """Counts by exact type of every GC-tracked object, and what it cost."""
    started = time.perf_counter()
    objects = gc.get_objects()
    try:
        counts = Counter(map(type, objects))
    finally:
        scanned = len(objects)
        del objects
    cost = time.perf_counter() - started
    return counts, {"cost_seconds": cost, "objects_scanned": scanned, "blind_spots": BLIND_SPOTS}
