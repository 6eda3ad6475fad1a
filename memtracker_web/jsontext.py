"""JSON text of snapshots, with each type's history encoded once, as it grows.

A snapshot of 200 types carries 24,000 `(time, live)` history points, and
printing their float timestamps was nearly all of the time it took to encode
(38 of 39 ms in bench_web.py's render). The monitor keeps each point's JSON
text from the sample that appended it, hands the history out as a `History`
(the list of points it always was, read-only, with its text), and `dumps`
splices those texts into the JSON of everything else. The output is the same
text `json.dumps(data, separators=(",", ":"), allow_nan=False)` gives.
"""
from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterable
from typing import Any, NoReturn

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_point(point: Any) -> str:
    return _encode(point)


class PointRing:
    """The last ``size`` (time, live) points of a type, and their JSON text.

    Kept in two arrays and one string, not as a tuple, a float and a string
    per point: the monitor's own history would otherwise grow the app's
    tuples, floats and strings by one each per monitored type and sample,
    until full, and a bounded cache filling up looks like a leak to the
    monitor itself. A sample replaces the string and the arrays' contents;
    the number of objects kept stays the same."""

    __slots__ = ("size", "times", "lives", "lengths", "text")

    def __init__(self, size: int) -> None:
        self.size = size
        self.times = array("d")
        self.lives = array("q")
        self.lengths = array("l")       # each point's share of `text`
        self.text = ""                  # each point's JSON and a comma, in order

    def append(self, time: float, live: int) -> None:
        point = encode_point((time, live)) + ","
        if len(self.times) == self.size:
            cut = self.lengths[0]
            del self.times[0], self.lives[0], self.lengths[0]
            self.text = self.text[cut:]
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
        return History(zip(self.times, self.lives, strict=True), "[" + self.text[:-1] + "]")


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


# Placeholders, which json writes as "\u0000history:N\u0000". Type names and
# code locations hold no NUL, but other data might: a skeleton with more
# placeholder-like strings than placeholders is not spliced (see dumps).
_SLOT = "\x00history:{}\x00"
_SLOT_TEXT = re.compile(r'"\\u0000history:(\d+)\\u0000"')


def dumps(data: Any) -> str:
    """`json.dumps(data, separators=(",", ":"), allow_nan=False)`, faster for snapshots."""
    texts: list[str] = []
    try:
        skeleton = _encode(_swap(data, texts))
    except RecursionError:      # a cycle or very deep data: json's own answer (ValueError, or its text)
        return _encode(data)
    if not texts:
        return skeleton
    if len(_SLOT_TEXT.findall(skeleton)) != len(texts):
        return _encode(data)    # the data itself holds a placeholder-like string
    return _SLOT_TEXT.sub(lambda found: texts[int(found.group(1))], skeleton)


def _swap(value: Any, texts: list[str]) -> Any:
    """`value` with the Histories in it replaced by placeholder strings (copies, never edits).

    Histories sit in dicts (a type's entry), and those in dicts or in lists of
    dicts; other lists (points, paths) are left whole. A History it does not
    reach is still encoded right, as the list it is, only not faster."""
    if type(value) is History:
        texts.append(value.json)
        return _SLOT.format(len(texts) - 1)
    if isinstance(value, dict):
        return {key: _swap(item, texts) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
        return [_swap(item, texts) for item in value]
    return value
