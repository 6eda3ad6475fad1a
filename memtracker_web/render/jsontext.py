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
from typing import Any

from ..monitor.history import History

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


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
    except RecursionError:  # a cycle or very deep data: json's own answer (ValueError, or its text)
        return _encode(data)
    if not texts:
        return skeleton
    if len(_SLOT_TEXT.findall(skeleton)) != len(texts):
        return _encode(data)  # the data itself holds a placeholder-like string
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
