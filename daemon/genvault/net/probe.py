"""Read-only probes for ``genvault doctor``: what API answers say in their headers, and
whether a media URL answers a one-byte Range GET.

Both work on clients made by :func:`~genvault.net.client.build_client`, so every
probe obeys the same address policy (each redirect hop and each connected address
vetted), and :class:`ResponseLog` only *reads* responses: it is a response event
hook, never a request of its own. A media probe carries no credentials (media is
fetched without the account's key, as :func:`~genvault.net.media.open_media` does)
and reads no body.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx

from genvault.net.errors import Fault, map_httpx_errors, short_error
from genvault.net.policy import NetworkPolicy, policy_extensions

RATE_LIMIT_PREFIXES: Final = ("x-ratelimit-", "x-rate-limit-", "ratelimit")
"""Response headers that describe a request quota (``X-RateLimit-Remaining``, the
IETF draft's ``RateLimit``/``RateLimit-Policy``...); ``Retry-After`` is kept too."""
MAX_OBSERVATIONS: Final = 1000
"""Responses a log keeps at most (a doctor run makes a few dozen)."""


def is_rate_limit_header(name: str) -> bool:
    low = name.lower()
    return low == "retry-after" or low.startswith(RATE_LIMIT_PREFIXES)


def http_date(value: str | None) -> datetime | None:
    """A ``Date`` header as an aware datetime, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one response said about the server, beyond its body."""

    status: int
    date: datetime | None
    """The server's ``Date`` header."""
    received_at: datetime
    """The local clock when the headers arrived."""
    rate_headers: tuple[tuple[str, str], ...]
    """Quota headers (name lower-cased, value) in the order received."""

    @property
    def skew_seconds(self) -> float | None:
        """Server clock minus local clock (``Date`` has whole seconds: ±1 s is noise)."""
        if self.date is None:
            return None
        return (self.date - self.received_at).total_seconds()


class ResponseLog:
    """Every response of one client, as :class:`Observation` s (a response event hook)."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self.observations: list[Observation] = []
        self._lock = threading.Lock()

    def attach(self, client: httpx.Client) -> None:
        """Hear every response ``client`` receives, redirect hops included."""
        hooks = client.event_hooks
        client.event_hooks = {**hooks, "response": [*hooks["response"], self.record]}

    def record(self, response: httpx.Response) -> None:
        headers = response.headers
        seen = Observation(
            status=response.status_code,
            date=http_date(headers.get("date")),
            received_at=self.now(),
            rate_headers=tuple(
                (name.lower(), value[:200])
                for name, value in headers.multi_items()
                if is_rate_limit_header(name)
            ),
        )
        with self._lock:
            if len(self.observations) < MAX_OBSERVATIONS:
                self.observations.append(seen)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.observations)


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    """How a media URL answered ``Range: bytes=0-0``."""

    status: int | None
    """HTTP status; None when there was no answer (see :attr:`error`)."""
    content_type: str | None = None
    content_range: str | None = None
    content_length: int | None = None
    """The ``Content-Length`` header (a 200 to a server that ignores ``Range``)."""
    error: str | None = None
    """Why there was no answer: refused by the network policy, unreachable, timed out."""
    refused: bool = False
    """The network policy refused the URL, a redirect hop or the address."""

    @property
    def ok(self) -> bool:
        return self.status in (200, 206)


class _NoAnswer(Exception):
    def __init__(self, fault: Fault, exc: Exception) -> None:
        super().__init__(short_error(exc))
        self.fault = fault


def _no_answer(fault: Fault, exc: Exception) -> Exception:
    return _NoAnswer(fault, exc)


def range_probe(http: httpx.Client, url: str, policy: NetworkPolicy) -> RangeAnswer:
    """GET the first byte of ``url`` under ``policy``; the body is not read.

    A server that ignores ``Range`` answers 200 with the whole file: the connection is
    closed at once, so the probe costs a few kilobytes whatever the file's size.
    """
    try:
        with map_httpx_errors(_no_answer):
            policy.check_url(url)
            with http.stream(
                "GET",
                url,
                headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"},
                extensions=policy_extensions(policy),
            ) as resp:
                ctype = (resp.headers.get("content-type") or "").split(";")[0].strip()
                length = resp.headers.get("content-length", "").strip()
                return RangeAnswer(
                    status=resp.status_code,
                    content_type=ctype.lower() or None,
                    content_range=resp.headers.get("content-range"),
                    content_length=int(length) if length.isdigit() else None,
                )
    except _NoAnswer as exc:
        return RangeAnswer(status=None, error=str(exc), refused=exc.fault is Fault.REFUSED)


__all__ = [
    "Observation",
    "RangeAnswer",
    "ResponseLog",
    "http_date",
    "is_rate_limit_header",
    "range_probe",
]
