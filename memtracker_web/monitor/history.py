"""A type's history of (time, live) points, kept with their JSON text, and its growth.

The monitor keeps each point's JSON text from the sample that appended it and
hands the history out as a :class:`History` (the list of points it always was,
read-only, with its text); :func:`memtracker_web.render.jsontext.dumps` splices
those texts into the JSON of everything else.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_point(point: Any) -> str:
    """A point's JSON text, as ``json`` writes it (a non-finite number refused). A
    monitored type's point, a finite float and an int, is formatted directly: every
    monitored type appends one a sample, and the encoder's call costs several times
    the text."""
    time, live = point
    if type(time) is float and type(live) is int and math.isfinite(time):
        return f"[{float.__repr__(time)},{int.__repr__(live)}]"
    return _encode(point)


class PointRing:
    """The last ``size`` (time, live) points of a type, and their JSON text.

    Kept in arrays and a bytearray changed in place, not as a tuple, a float
    and a string per point: the monitor's own history would otherwise grow the
    app's tuples, floats and strings by one each per monitored type and sample,
    until full, and a bounded cache filling up looks like a leak to the
    monitor itself. Nor is the text a string replaced at each sample: that
    would be a new str of the monitor's, alive, for every monitored type, and
    a verification of the app's growing strs samples new ones alive."""

    _memtracker_bookkeeping = True  # (monitor.retention.BOOKKEEPING: a chain through it is our own)

    __slots__ = ("size", "times", "lives", "lengths", "text")

    def __init__(self, size: int) -> None:
        self.size = size
        self.times = array("d")
        self.lives = array("q")
        self.lengths = array("l")  # each point's share of `text`
        self.text = bytearray()  # each point's JSON (ASCII) and a comma, in order

    def append(self, time: float, live: int) -> None:
        point = (encode_point((time, live)) + ",").encode("ascii")
        if len(self.times) == self.size:
            cut = self.lengths[0]
            del self.times[0], self.lives[0], self.lengths[0]
            del self.text[:cut]
        self.times.append(time)
        self.lives.append(live)
        self.lengths.append(len(point))
        self.text += point

    def __len__(self) -> int:
        return len(self.times)

    def last_lives(self, n: int) -> list[int]:
        return list(self.lives[-n:])

    def last_value(self) -> int | None:
        return self.lives[-1] if self.lives else None

    def history(self) -> History:
        return History(zip(self.times, self.lives, strict=True), "[" + self.text[:-1].decode("ascii") + "]")


class History(list):
    """A type's history points, read-only, with their JSON text."""

    __slots__ = ("json",)

    def __init__(self, points: Iterable[Any], text: str) -> None:
        super().__init__(points)
        self.json = text

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a snapshot's history is read-only (copy it with list(...) to change it)")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy or a pickle is a plain list: mutable, and encoded the usual way.
        return (list, (list(self),))


def growth(entry: Mapping[str, Any]) -> int:
    """Live objects now minus the first sample kept in the history."""
    history = entry.get("history") or []
    live = entry.get("live") or 0
    return live - history[0][1] if history else 0
