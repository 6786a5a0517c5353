"""How people read sizes and times, shared by ``genvault status`` and the status page.

One module so the terminal tables and the web page say "3h 05m" and "1.2 MB"
the same way for the same document; plain strings, no markup, so each renderer
adds its own (rich colours, HTML escaping). :func:`iso` is the machines' side of
the same question: how a datetime is spelled in ``status --json``, exports and
the dry run's countdowns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar, overload

T = TypeVar("T")


@overload
def iso(v: datetime) -> str: ...
@overload
def iso(v: T) -> T: ...
def iso(v: object) -> object:
    """Datetimes as ISO 8601 strings (JSON has no datetime); anything else (None too) as is."""
    return v.isoformat() if isinstance(v, datetime) else v


def human_bytes(n: float) -> str:
    """Decimal units (``1.5 MB``), as storage consoles and ``ls -h --si`` show them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def countdown(iso: str | None, now: datetime | None = None) -> str:
    """Time left to a deadline: ``2d 4h``, ``3h 05m``, ``expired`` once past, ``-`` if none."""
    if not iso:
        return "-"
    when = datetime.fromisoformat(iso)
    secs = (when - (now or datetime.now(UTC))).total_seconds()
    if secs < 0:
        return "expired"
    hours, rem = divmod(int(secs), 3600)
    if hours >= 48:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}h {rem // 60:02d}m"


def until(iso: str | None, now: datetime | None = None) -> str:
    """``in 4m 10s`` / ``in 2h 05m`` to a future time, ``now`` once it has passed."""
    if not iso:
        return "-"
    secs = int((datetime.fromisoformat(iso) - (now or datetime.now(UTC))).total_seconds())
    if secs <= 0:
        return "now"
    hours, rem = divmod(secs, 3600)
    if hours:
        return f"in {hours}h {rem // 60:02d}m"
    return f"in {rem // 60}m {rem % 60:02d}s" if rem >= 60 else f"in {rem}s"


def ago(iso: str | None, now: datetime | None = None) -> str:
    """``12s ago`` / ``5m ago`` / ``3h ago`` / ``2d ago`` since a past time, ``-`` if none.

    Coarse on purpose: "when did this last happen" needs one unit, not a timestamp.
    """
    if not iso:
        return "-"
    secs = int(((now or datetime.now(UTC)) - datetime.fromisoformat(iso)).total_seconds())
    if secs < 60:
        return f"{max(secs, 0)}s ago"
    if secs < 3600:
        return f"{secs // 60}m ago"
    if secs < 48 * 3600:
        return f"{secs // 3600}h ago"
    return f"{secs // 86400}d ago"


def utc_minute(iso: str | None) -> str:
    """``2024-05-01 13:07`` (UTC) from an ISO timestamp; ``-`` if none."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
