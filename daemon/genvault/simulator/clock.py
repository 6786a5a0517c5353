"""The simulator's notion of "now", shared by a server, its CDN and its provider data.

Tasks change status with the time elapsed since the server started, and media
expire at simulated instants; tests must be able to jump past both without
sleeping, and a fixed anchor makes every timestamp of a run reproducible. One
small class owns that, so nothing else in the simulator reads the wall clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """The simulator's "now": the real UTC wall clock, plus an offset tests can advance.

    With ``anchor`` the clock starts at that instant instead of the wall clock, which
    makes every timestamp of a simulation reproducible. ``elapsed()`` counts from
    :meth:`mark_started` (server start), including any advance, so status transitions
    ("processing for 2 s") follow both real time and :meth:`advance`.
    """

    def __init__(self, anchor: datetime | None = None) -> None:
        if anchor is not None and anchor.tzinfo is None:
            raise ValueError("clock anchor must be timezone-aware")
        self._anchor = anchor
        self._mono0 = time.monotonic()
        self._offset = 0.0
        self._started: float | None = None
        self._started_at: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Current simulated time, timezone-aware UTC."""
        if self._anchor is None:
            base = datetime.now(UTC)
        else:
            base = self._anchor + timedelta(seconds=time.monotonic() - self._mono0)
        return base + timedelta(seconds=self._offset)

    def mark_started(self) -> None:
        """Record the server start; ``elapsed()`` counts from here (idempotent)."""
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()
                self._started_at = self.now()

    @property
    def started_at(self) -> datetime | None:
        """Simulated time at server start (before any later advance), or None."""
        return self._started_at

    def elapsed(self) -> float:
        """Seconds since server start, plus any advance; only the advance before start."""
        started = self._started
        real = 0.0 if started is None else time.monotonic() - started
        return real + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the clock forward (e.g. past processing delays or media expiry)."""
        if seconds < 0:
            raise ValueError("the simulator clock only moves forward")
        with self._lock:
            self._offset += seconds
