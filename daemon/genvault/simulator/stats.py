"""Request counters of one simulator, so tests can assert what the daemon actually did.

The server, the CDN and the fault injectors all count into one :class:`Stats`;
``GET /_sim/stats`` serves a snapshot to tests in another process.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """Thread-safe request counters, so tests can assert what the daemon actually did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.routes: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.faults: Counter[str] = Counter()
            self.media_hits: Counter[str] = Counter()
            self.media_bytes = 0

    def record(self, route: str, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.routes[route] += 1
            self.statuses[status] += 1

    def record_fault(self, reason: str) -> None:
        with self._lock:
            self.faults[reason] += 1

    def record_media(self, path: str) -> None:
        with self._lock:
            self.media_hits[path] += 1

    def add_media_bytes(self, count: int) -> None:
        with self._lock:
            self.media_bytes += count

    def snapshot(self) -> dict[str, Any]:
        """Counters as plain JSON-ready dicts (admin requests are not counted)."""
        with self._lock:
            return {
                "requests": self.requests,
                "routes": dict(self.routes),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "faults": dict(self.faults),
                "media_hits": dict(self.media_hits),
                "media_bytes": self.media_bytes,
            }
