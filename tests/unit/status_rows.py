"""A stream row of the status report, as the report and the status page tests build it."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def stream_row(name: str, walked_at: datetime, **extra: Any) -> dict[str, Any]:
    """One stream of the status report: walked completely at ``walked_at`` (two hours
    before the age it reports), healthy but for ``extra``."""
    return {
        "account": "main",
        "stream": name,
        "tracked": False,
        "listed": 12,
        "known": 11,
        "gone": 1,
        "archived": 20,
        "pending": 1,
        "awaiting_read": 0,
        "missing": 0,
        "gone_before_capture": 0,
        "last_complete_walk_at": walked_at.isoformat(),
        "last_complete_walk_age_seconds": 7200.0,
        "last_full_walk_at": walked_at.isoformat(),
        "last_walk_complete": True,
        "incomplete_reason": None,
        "error": None,
        "order_seen": "newest_first",
        "page_size_seen": None,
        "walking": False,
        "complete": True,
        "retired": False,
        "problems": [],
        **extra,
    }
