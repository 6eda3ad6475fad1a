"""What a snapshot's leak reports stand for, read the same way by the page, the
report CLI and the workers view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def report_count(report: Mapping[str, Any]) -> int:
    """How many reports of its type one kept report stands for (the monitor keeps a
    type's latest with its count; a snapshot from before that has one per report)."""
    count = report.get("reports", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 1 else 1
