"""Machinery shared by every provider simulator: a real loopback HTTP server.

genvault cannot reach real providers in tests, so each provider API is simulated by
a real HTTP server on 127.0.0.1. Talking real HTTP (keep-alive, Content-Length,
Range, slow and truncated bodies) is the point: the daemon's HTTP stack is exercised
exactly as in production, with no mocks.

Pieces:

* :class:`SimServer` - a ``ThreadingHTTPServer`` with a route table
  ``(method, regex) -> handler(Request) -> Response``, a media table served with
  Range/HEAD/expiry semantics of a CDN, fault injection and request statistics.
* :class:`Faults` - runtime-mutable, thread-safe fault settings (429, 5xx, malformed
  bodies, truncated media, latency, bandwidth). Tests in another process steer them
  through ``POST /_sim/faults``.
* :class:`SimClock` - the simulator's notion of "now"; tasks change status based on
  the time elapsed since the server started, and tests can advance it.
* :class:`ProviderSim` - the small base class the per-provider simulators extend.

Only the standard library is used, so simulators add no dependencies.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import email.utils
import hashlib
import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Protocol, Self, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

from genvault.simulator import media

log = logging.getLogger(__name__)

MAX_BODY: Final = 2 * 1024 * 1024
"""Request bodies above this are refused with 413 (the simulator is not a sink)."""

RouteKind = Literal["api", "media", "admin"]
MalformedMode = Literal["html", "truncated", "wrong_types", "bad_item", "business_error"]
MediaErrorPage = Literal["html", "json", "html_as_image"]
Role = Literal["result", "thumbnail", "last_frame", "upscale", "reference"]

Handler = Callable[["Request"], "Response"]
ErrorFactory = Callable[[int, str, str], "Response"]
"""``(status, error_code, message) -> Response`` in the provider's own error shape."""
BusinessErrorFactory = Callable[[], "Response"]
"""``() -> Response``: the provider's in-band error envelope, answered with HTTP 200."""


# --------------------------------------------------------------------------- request/response


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (HTTP header names are case-insensitive)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, str] = {}
        for key, value in items:
            low = key.lower()
            self._items[low] = f"{self._items[low]}, {value}" if low in self._items else value

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, str]
    """First value of each query parameter (blank values kept)."""
    headers: Headers
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    """Named groups of the route regex that matched the path."""

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` if it is not)."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass(slots=True)
class Response:
    """What a handler returns. ``body`` is bytes, or an iterable of chunks with ``length``.

    ``payload`` keeps the JSON object behind a JSON body so the ``wrong_types`` fault can
    re-encode it with mangled types; ``close`` ends the keep-alive connection afterwards.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None
    payload: Any = None
    close: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.body, bytes | bytearray):
            self.body = bytes(self.body)
            self.length = len(self.body)
        elif self.length is None:
            raise ValueError("a streamed Response needs a known length")

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A JSON response (UTF-8, compact enough, with the payload kept for faults)."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return cls(status=status, headers=hdrs, body=body, payload=payload)

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A text response (HTML error pages, XML CDN errors, plain messages)."""
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        return cls(status=status, headers=hdrs, body=text.encode("utf-8"))


def default_error(status: int, code: str, message: str) -> Response:
    """Generic JSON error shape, used when a simulator does not supply its own."""
    return Response.json({"error": {"code": code, "message": message}}, status=status)


def default_business_error() -> Response:
    """Generic in-band error (HTTP 200), used when a simulator does not supply its own.

    Many APIs report failures inside a successful HTTP answer; a client that only
    looks at the status code would take this for data.
    """
    return Response.json(
        {"success": False, "error": {"code": "BUSINESS_ERROR", "message": "request failed"}}
    )


# --------------------------------------------------------------------------- clock


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


# --------------------------------------------------------------------------- faults


_MALFORMED_MODES: Final = ("html", "truncated", "wrong_types", "bad_item", "business_error")
_MEDIA_ERROR_PAGES: Final = ("html", "json", "html_as_image")
FAULT_FIELDS: Final = (
    "rate_limit",
    "retry_after",
    "error_rate",
    "malformed",
    "media_truncate",
    "latency_s",
    "bandwidth_bps",
    "fail_next",
    "reset_next",
    "rate_limit_next",
    "pass_next",
    "api_drip_bps",
    "media_truncate_next",
    "media_error_page",
    "media_status_next",
    "media_status",
)
_DEFAULTS: Final[dict[str, Any]] = {
    "rate_limit": False,
    "retry_after": None,
    "error_rate": 0.0,
    "malformed": None,
    "media_truncate": False,
    "latency_s": 0.0,
    "bandwidth_bps": None,
    "fail_next": 0,
    "reset_next": 0,
    "rate_limit_next": 0,
    "pass_next": 0,
    "api_drip_bps": None,
    "media_truncate_next": 0,
    "media_error_page": None,
    "media_status_next": 0,
    "media_status": 503,
}
"""Every fault setting's "no fault" value (``reset`` goes back to these)."""


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to inject into one API request, decided atomically."""

    status: int | None
    """429/500/502/503 to answer instead of calling the handler, or None."""
    reason: str = ""
    retry_after: str | None = None
    reset: bool = False
    """Answer nothing: abort the TCP connection with a RST (``status`` is None then)."""
    exempt: bool = False
    """``pass_next``: answer normally, without malformed bodies or a slow drip."""


@dataclass(frozen=True, slots=True)
class MediaFaultDecision:
    """What to inject into one media request (one that would otherwise succeed)."""

    status: int | None = None
    """Answer this HTTP status with an XML CDN error instead of the file, or None."""
    error_page: MediaErrorPage | None = None
    """Answer HTTP 200 with this kind of error document instead of the file, or None."""


class Faults:
    """Runtime-mutable fault settings of one simulator; safe to change from any thread.

    Plain attribute assignment works (``sim.faults.rate_limit = True``); :meth:`update`
    validates, and is what ``POST /_sim/faults`` uses. Counters (``*_next``) count down
    by one per request they affect and then stop.

    API faults, in order of precedence:

    * ``pass_next: int`` - the next N API requests are answered normally whatever
      else is set (no fault, malformed body or drip); the faults start after them,
      which lets a test break a history walk in the middle;
    * ``reset_next: int`` - the next N API requests get no answer at all: the socket
      is closed with ``SO_LINGER (1, 0)``, so the client sees a TCP RST (a crashed
      load balancer, a dropped keep-alive);
    * ``fail_next: int`` - the next N API requests answer 503;
    * ``rate_limit_next: int`` / ``rate_limit: bool`` - the next N / every API request
      answers 429, with ``Retry-After: <retry_after>`` when that is set (seconds or an
      HTTP-date, sent verbatim);
    * ``error_rate: float`` - that share of requests answer 500/502/503 (502 is an
      nginx HTML page), drawn from a seeded RNG so runs are reproducible;
    * ``malformed`` - the handler's answer is spoiled: ``"html"`` (an HTML page with
      HTTP 200), ``"truncated"`` (the JSON cut in half), ``"wrong_types"`` (the
      simulator's type mangler), ``"bad_item"`` (exactly one item of the first
      non-empty list of objects gets wrong-typed values, the rest stays valid) or
      ``"business_error"`` (the provider's in-band error envelope with HTTP 200);
    * ``api_drip_bps: int | None`` - API bodies are written at this many bytes per
      second (headers at once): a slow-drip server that never trips a read timeout.

    Media faults, applied to media requests that would otherwise succeed (unknown
    and expired files keep their 404/403), in order of precedence:

    * ``media_status_next: int`` - the next N answer ``media_status`` (default 503)
      with a small S3-style XML error body;
    * ``media_error_page`` - HTTP 200 with an error document instead of the file:
      ``"html"`` (text/html), ``"json"`` (application/json) or ``"html_as_image"``
      (an HTML page labelled ``Content-Type: image/png``, a lying CDN);
    * ``media_truncate: bool`` / ``media_truncate_next: int`` - every / the next N
      bodies (200 or 206) stop after half their length and the connection closes;
    * ``bandwidth_bps: int | None`` - media bodies are paced to this rate.

    ``latency_s`` delays every API and media response.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.RLock()
        self._seed = seed
        self._rng = random.Random(seed)
        self.rate_limit: bool = False
        self.retry_after: str | None = None
        self.error_rate: float = 0.0
        self.malformed: MalformedMode | None = None
        self.media_truncate: bool = False
        self.latency_s: float = 0.0
        self.bandwidth_bps: int | None = None
        self.fail_next: int = 0
        self.reset_next: int = 0
        self.rate_limit_next: int = 0
        self.pass_next: int = 0
        self.api_drip_bps: int | None = None
        self.media_truncate_next: int = 0
        self.media_error_page: MediaErrorPage | None = None
        self.media_status_next: int = 0
        self.media_status: int = 503

    def update(self, **changes: Any) -> None:
        """Validate and apply several settings at once (unknown names raise ``ValueError``)."""
        clean = {name: _validate_fault(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in clean.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """Back to no faults, with the error RNG re-seeded."""
        with self._lock:
            self.update(**_DEFAULTS)
            self._rng.seed(self._seed)

    def as_dict(self) -> dict[str, Any]:
        """Current settings, JSON-ready."""
        with self._lock:
            return {name: getattr(self, name) for name in FAULT_FIELDS}

    def decide_api(self) -> FaultDecision:
        """Decide, atomically, whether this API request is answered by a fault."""
        with self._lock:
            if self.pass_next > 0:
                self.pass_next -= 1
                return FaultDecision(None, "pass_next", exempt=True)
            if self.reset_next > 0:
                self.reset_next -= 1
                return FaultDecision(None, "reset_next", reset=True)
            if self.fail_next > 0:
                self.fail_next -= 1
                return FaultDecision(503, "fail_next")
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return FaultDecision(429, "rate_limit_next", self.retry_after)
            if self.rate_limit:
                return FaultDecision(429, "rate_limit", self.retry_after)
            if self.error_rate > 0 and self._rng.random() < self.error_rate:
                return FaultDecision(self._rng.choice((500, 502, 503)), "error_rate")
            return FaultDecision(None)

    def decide_media_error(self) -> MediaFaultDecision:
        """Decide, atomically, whether a servable media request gets an error instead."""
        with self._lock:
            if self.media_status_next > 0:
                self.media_status_next -= 1
                return MediaFaultDecision(status=self.media_status)
            if self.media_error_page is not None:
                return MediaFaultDecision(error_page=self.media_error_page)
            return MediaFaultDecision()

    def decide_media_truncate(self) -> bool:
        """Decide, atomically, whether this media body (200/206) is cut off halfway."""
        with self._lock:
            if self.media_truncate_next > 0:
                self.media_truncate_next -= 1
                return True
            return self.media_truncate


def _validate_fault(name: str, value: Any) -> Any:
    """Check one fault setting's type and range; returns the normalized value."""
    if name in ("rate_limit", "media_truncate"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "retry_after":
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(int(value)) if float(value).is_integer() else str(value)
        raise ValueError("retry_after must be a string, a number or null")
    if name in ("error_rate", "latency_s"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        if value < 0 or (name == "error_rate" and value > 1):
            raise ValueError(f"{name} out of range: {value}")
        return float(value)
    if name == "malformed":
        if value is not None and value not in _MALFORMED_MODES:
            raise ValueError(f"malformed must be null or one of {_MALFORMED_MODES}")
        return value
    if name == "media_error_page":
        if value is not None and value not in _MEDIA_ERROR_PAGES:
            raise ValueError(f"media_error_page must be null or one of {_MEDIA_ERROR_PAGES}")
        return value
    if name == "media_status":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("media_status must be an integer")
        if not 400 <= value <= 599:
            raise ValueError(f"media_status must be an HTTP error status (4xx/5xx): {value}")
        return value
    if name in (
        "bandwidth_bps",
        "api_drip_bps",
        "fail_next",
        "reset_next",
        "rate_limit_next",
        "pass_next",
        "media_truncate_next",
        "media_status_next",
    ):
        rate = name.endswith("_bps")
        if value is None and rate:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        if value < 0 or (rate and value == 0):
            raise ValueError(f"{name} out of range: {value}")
        return value
    raise ValueError(f"unknown fault setting {name!r}; known: {', '.join(FAULT_FIELDS)}")


# --------------------------------------------------------------------------- stats


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


# --------------------------------------------------------------------------- media table


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """One servable file: its bytes recipe and its lifetime on the fake CDN."""

    spec: media.MediaSpec
    expires_at: datetime | None = None
    """After this simulated time the CDN answers 403 (signed URL / retention expired)."""
    available_after_s: float = 0.0
    """Seconds after server start before the file exists (404 before: still rendering)."""

    @property
    def etag(self) -> str:
        key = f"{self.spec.seed}|{self.spec.size}|{self.spec.kind}".encode()
        return '"' + hashlib.md5(key, usedforsecurity=False).hexdigest() + '"'


@dataclass(frozen=True, slots=True)
class ExpectedFile:
    """Ground truth for one media URL a simulator exposes; tests compare archives to it."""

    url: str
    size: int
    sha256: str
    kind: media.MediaKind
    role: Role
    generation_id: str
    """The provider's external id of the generation (e.g. GeminiGen ``uuid``)."""
    expires_at: datetime | None
    content_type: str
    source_field: str
    """Where the URL appears in the payload, e.g. ``generated_video[].last_frame``."""

    @property
    def generation_uuid(self) -> str:
        """Alias of ``generation_id`` for providers whose ids are uuids."""
        return self.generation_id


class _Unsatisfiable(Exception):
    """A Range header that cannot be served for this size (416)."""


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``Range: bytes=...`` into ``(start, stop_exclusive)``.

    Returns None when the header should be ignored (absent, not bytes, multi-range or
    malformed: RFC 9110 lets a server answer those with the whole file), and raises
    :class:`_Unsatisfiable` when the range starts past the end.
    """
    if not value:
        return None
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix < 0:
                return None
            if suffix == 0 or size == 0:
                raise _Unsatisfiable
            return max(0, size - suffix), size
        start = int(first)
        stop = max(size, start + 1) if last == "" else int(last) + 1
    except ValueError:
        return None
    if start < 0 or stop <= start:
        return None  # syntactically invalid (last < first): ignore the header
    if start >= size:
        raise _Unsatisfiable
    return start, min(stop, size)


def _cdn_error(status: int, code: str, message: str, extra: str = "") -> Response:
    """An S3/CloudFront-style XML error, as real CDNs send for dead or unknown media."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}</Error>"
    )
    return Response.text(xml, status=status, content_type="application/xml")


_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_MALFORMED_HTML: Final = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    "<h1>Something went wrong</h1><p>Please try again later. Error reference 1020.</p>"
    "</body></html>"
)


_MEDIA_STATUS_CODES: Final = {
    400: "InvalidRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    410: "Gone",
    429: "SlowDown",
    500: "InternalError",
    503: "ServiceUnavailable",
}
_MEDIA_ERROR_HTML: Final = (
    "<!DOCTYPE html><html><head><title>Error</title></head><body>"
    "<h1>This content is no longer available</h1>"
    "<p>The link you followed may have expired.</p></body></html>"
)


def _media_status_error(status: int) -> Response:
    """The ``media_status_next`` answer: an S3-style XML error with that status."""
    code = _MEDIA_STATUS_CODES.get(status, "Error")
    try:
        message = HTTPStatus(status).phrase
    except ValueError:
        message = "Error"
    return _cdn_error(status, code, message)


def _media_error_page(mode: MediaErrorPage) -> Response:
    """The ``media_error_page`` answer: HTTP 200 with an error document, not the file."""
    if mode == "json":
        return Response.json({"error": {"code": "NOT_FOUND", "message": "file not found"}})
    content_type = "image/png" if mode == "html_as_image" else "text/html; charset=utf-8"
    return Response.text(_MEDIA_ERROR_HTML, content_type=content_type)


def _abort_connection(h: _Handler) -> None:
    """Drop the connection with a TCP RST and no answer (``reset_next``).

    ``SO_LINGER (1, 0)`` makes close() discard the socket and send RST instead of FIN.
    The request's read file holds a reference to the socket, so it is closed first or
    close() would not release the descriptor.
    """
    h.close_connection = True
    conn = h.connection
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        h.rfile.close()
    with contextlib.suppress(OSError):
        conn.close()


def _is_id_key(key: str) -> bool:
    low = key.lower()
    return low in ("id", "_id", "uuid") or low.endswith(("_id", "id", "uuid"))


def _wrong_typed(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of one item with every value of the wrong type (the ``bad_item`` fault)."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if _is_id_key(key) or isinstance(value, bool | int | float) or value is None:
            out[key] = {"value": value}  # ids and numbers become objects
        elif isinstance(value, str):
            out[key] = [value]
        elif isinstance(value, list):
            out[key] = {"items": value}
        else:  # a nested object becomes a list
            out[key] = [value]
    return out


def _first_item_list(value: Any) -> list[Any] | None:
    """The first non-empty list whose elements are all objects, depth-first (pre-order)."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return value
        children: Iterable[Any] = value
    elif isinstance(value, dict):
        children = value.values()
    else:
        return None
    for child in children:
        found = _first_item_list(child)
        if found is not None:
            return found
    return None


def spoil_one_item(payload: Any) -> Any | None:
    """``bad_item`` fault: a copy of ``payload`` where exactly one item is wrong-typed.

    Element 0 of the first non-empty list of objects (depth-first) is replaced by a
    copy whose values all have the wrong type; everything else stays valid, so a
    parser that isolates item failures keeps the rest of the page. Returns None when
    the payload has no such list (nothing to spoil).
    """
    spoiled = copy.deepcopy(payload)
    items = _first_item_list(spoiled)
    if items is None:
        return None
    items[0] = _wrong_typed(items[0])
    return spoiled


def mangle_types(value: Any) -> Any:
    """Default ``wrong_types`` fault: every number becomes a string, recursively.

    Provider simulators can pass a more targeted mangler; this one is enough to make
    a strict parser reject the payload.
    """
    if isinstance(value, dict):
        return {k: mangle_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mangle_types(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its SimServer and its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Thin adapter: all logic lives in :meth:`SimServer._handle`."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections and stuck writes end eventually
    server_version = "genvault-sim/1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def handle(self) -> None:
        # A client (or stop()) dropping a keep-alive connection is routine, not an error.
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def setup(self) -> None:
        super().setup()
        srv = cast(_HTTPServer, self.server)
        with srv.connections_lock:
            srv.connections.add(self.connection)

    def finish(self) -> None:
        srv = cast(_HTTPServer, self.server)
        with srv.connections_lock:
            srv.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _dispatch(self) -> None:
        cast(_HTTPServer, self.server).sim._handle(self)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class SimServer:
    """A provider simulator's HTTP server: routes, fake CDN, faults, stats, clock.

    The socket is bound lazily (on :meth:`start` or the first ``base_url`` access), so
    URLs are known before serving starts. Media paths are looked up in the media table
    first; an unknown path under one of ``media_prefixes`` is a CDN 404, anything else
    goes through the route table. ``/_sim/...`` is the admin API (never faulted).
    """

    ADMIN_PREFIX: ClassVar[str] = "/_sim/"

    @classmethod
    def for_config(cls, name: str, config: Any, **options: Any) -> Self:
        """A server from a simulator config's ``port``, ``seed`` and ``clock_anchor``."""
        return cls(
            name=name,
            port=config.port,
            seed=config.seed,
            clock=SimClock(config.clock_anchor),
            **options,
        )

    def __init__(
        self,
        *,
        name: str = "sim",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: SimClock | None = None,
        media_prefixes: tuple[str, ...] = ("/cdn/",),
        max_body: int = MAX_BODY,
        error_response: ErrorFactory | None = None,
        wrong_types: Callable[[Any], Any] | None = None,
        business_error: BusinessErrorFactory | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.clock = clock or SimClock()
        self.faults = Faults(seed)
        self.stats = Stats()
        self.media_prefixes = media_prefixes
        self.max_body = max_body
        self.error_response: ErrorFactory = error_response or default_error
        self.wrong_types: Callable[[Any], Any] = wrong_types or mangle_types
        self.business_error: BusinessErrorFactory = business_error or default_business_error
        """The ``malformed="business_error"`` answer; replaceable at any time."""
        self._routes: list[Route] = []
        self._media: dict[str, MediaEntry] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def _bind(self) -> _HTTPServer:
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"simulator {self.name} was stopped; create a new one")
            if self._httpd is None:
                self._httpd = _HTTPServer((self.host, self.port), self)
                self.port = int(self._httpd.server_address[1])
            return self._httpd

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (binds the socket if needed; still readable after stop)."""
        if not self._stopped:
            self._bind()
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL. Idempotent."""
        httpd = self._bind()
        with self._lock:
            if self._thread is None:
                self.clock.mark_started()
                self._thread = threading.Thread(
                    target=httpd.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name=f"sim-{self.name}",
                    daemon=True,
                )
                self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections, close the socket. Idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._stopped = True
            self._httpd = None
            self._thread = None
        if httpd is None:
            return
        if thread is not None:
            httpd.shutdown()
            thread.join(timeout=5)
        with httpd.connections_lock:
            conns = list(httpd.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ registration

    def route(self, method: str, pattern: str, handler: Handler, *, name: str = "") -> None:
        """Register ``handler`` for ``method`` and a full-match path regex.

        A GET route also answers HEAD (without the body). ``name`` keys the stats.
        """
        self._routes.append(
            Route(method.upper(), re.compile(pattern), handler, name or f"{method} {pattern}")
        )

    def add_media(
        self,
        path: str,
        spec: media.MediaSpec,
        *,
        expires_at: datetime | None = None,
        available_after_s: float = 0.0,
    ) -> None:
        """Serve ``spec`` at ``path`` (absolute path, e.g. ``/cdn/images/x.jpg``).

        Does not bind the socket, so simulators can register media while building
        their data; :meth:`url` turns the path into an absolute URL later.
        """
        if not path.startswith("/"):
            raise ValueError(f"media path must start with '/': {path!r}")
        self._media[path] = MediaEntry(spec, expires_at, available_after_s)

    def remove_media(self, path: str) -> MediaEntry | None:
        """Stop serving ``path``: from now on the CDN answers 404 ``NoSuchKey`` for it,
        as S3 does for a deleted object. Returns the entry it served, or None.

        Safe while serving: one dict operation, atomic against the lookups of the
        request threads (as :meth:`add_media` is).
        """
        return self._media.pop(path, None)

    def media_entry(self, path: str) -> MediaEntry | None:
        return self._media.get(path)

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return self.base_url + path

    # ------------------------------------------------------------------ request handling

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = Headers(h.headers.items())
        try:
            body_or_error = self._read_body(h, headers)
            if isinstance(body_or_error, Response):
                self._send(h, "GET", body_or_error, "api", bandwidth_bps=None)
                return
            req = Request(h.command.upper(), path, query, headers, body_or_error)
            if path.startswith(self.ADMIN_PREFIX):
                self._send(h, req.method, self._admin(req), "admin", bandwidth_bps=None)
            elif req.method in ("GET", "HEAD") and (
                path in self._media or path.startswith(self.media_prefixes)
            ):
                self._serve_media(h, req)
            else:
                self._serve_api(h, req)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            h.close_connection = True

    def _read_body(self, h: _Handler, headers: Headers) -> bytes | Response:
        if "transfer-encoding" in headers:
            resp = self.error_response(411, "LENGTH_REQUIRED", "chunked bodies not supported")
            resp.close = True
            return resp
        raw = headers.get("content-length", "0").strip() or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            resp = self.error_response(400, "BAD_REQUEST", "invalid Content-Length")
            resp.close = True
            return resp
        if length > self.max_body:
            resp = self.error_response(413, "PAYLOAD_TOO_LARGE", "request body too large")
            resp.close = True
            return resp
        return h.rfile.read(length) if length else b""

    def _serve_api(self, h: _Handler, req: Request) -> None:
        route, params = self._match(req)
        if route is None:
            self.stats.record("unmatched", 404)
            resp = self.error_response(404, "NOT_FOUND", f"no route for {req.method} {req.path}")
            self._send(h, req.method, resp, "api", bandwidth_bps=None)
            return
        decision = self.faults.decide_api()
        if decision.reset:
            self.stats.record_fault(decision.reason)
            self.stats.record(route.name, 0)  # status 0: no answer at all
            _abort_connection(h)
            return
        if decision.status is not None:
            self.stats.record_fault(decision.reason)
            resp = self._fault_response(decision)
        else:
            try:
                resp = route.handler(
                    Request(req.method, req.path, req.query, req.headers, req.body, params)
                )
            except Exception as exc:  # a simulator bug must not kill the connection thread
                log.exception("simulator %s: handler %s failed", self.name, route.name)
                resp = self.error_response(500, "SIM_HANDLER_ERROR", repr(exc))
            if not decision.exempt:
                resp = self._apply_malformed(resp)
        self.stats.record(route.name, resp.status)
        drip = None if decision.exempt else self.faults.api_drip_bps
        if drip:
            self.stats.record_fault("api_drip")
        self._send(h, req.method, resp, "api", bandwidth_bps=drip)

    def _match(self, req: Request) -> tuple[Route | None, dict[str, str]]:
        wanted = ("GET", "HEAD") if req.method == "HEAD" else (req.method,)
        for route in self._routes:
            if route.method in wanted:
                match = route.pattern.fullmatch(req.path)
                if match:
                    return route, {k: v for k, v in match.groupdict().items() if v is not None}
        return None, {}

    def _fault_response(self, decision: FaultDecision) -> Response:
        status = decision.status or 503
        if status == 429:
            resp = self.error_response(429, "RATE_LIMIT_ERROR", "Too many requests, slow down")
            if decision.retry_after is not None:
                resp.headers["Retry-After"] = decision.retry_after
            return resp
        if status == 502:  # a gateway in front of the API answers, not the API itself
            page = _GATEWAY_HTML.format(status=502, reason="Bad Gateway")
            return Response.text(page, status=502, content_type="text/html")
        if status == 500:
            return self.error_response(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        return self.error_response(503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable")

    def _apply_malformed(self, resp: Response) -> Response:
        mode = self.faults.malformed
        if mode is None:
            return resp
        if mode == "bad_item":  # counted only when the answer has an item to spoil
            spoiled = spoil_one_item(resp.payload) if resp.payload is not None else None
            if spoiled is None:
                return resp
            self.stats.record_fault("malformed:bad_item")
            mangled = Response.json(spoiled, resp.status)
            mangled.headers = {**resp.headers, **mangled.headers}
            return mangled
        self.stats.record_fault(f"malformed:{mode}")
        if mode == "html":
            return Response.text(_MALFORMED_HTML, status=200, content_type="text/html")
        if mode == "truncated" and isinstance(resp.body, bytes):
            return Response(resp.status, dict(resp.headers), resp.body[: len(resp.body) // 2])
        if mode == "wrong_types" and resp.payload is not None:
            mangled = Response.json(self.wrong_types(resp.payload), resp.status)
            mangled.headers = {**resp.headers, **mangled.headers}
            return mangled
        if mode == "business_error":
            return self.business_error()
        return resp

    # ------------------------------------------------------------------ media

    def _serve_media(self, h: _Handler, req: Request) -> None:
        self.stats.record_media(req.path)
        entry = self._media.get(req.path)
        if entry is None or self.clock.elapsed() < entry.available_after_s:
            resp = _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
            self._send(h, req.method, resp, "media", bandwidth_bps=None)
            self.stats.record("media", 404)
            return
        if entry.expires_at is not None and self.clock.now() >= entry.expires_at:
            stamp = email.utils.format_datetime(entry.expires_at, usegmt=True)
            resp = _cdn_error(
                403, "AccessDenied", "Request has expired", f"<Expires>{stamp}</Expires>"
            )
            self._send(h, req.method, resp, "media", bandwidth_bps=None)
            self.stats.record("media", 403)
            return
        fault = self.faults.decide_media_error()
        if fault.status is not None:
            self.stats.record_fault("media_status")
            resp = _media_status_error(fault.status)
            self.stats.record("media", fault.status)
            self._send(h, req.method, resp, "media", bandwidth_bps=None)
            return
        if fault.error_page is not None:
            self.stats.record_fault(f"media_error_page:{fault.error_page}")
            resp = _media_error_page(fault.error_page)
            self.stats.record("media", resp.status)
            self._send(h, req.method, resp, "media", bandwidth_bps=None)
            return
        spec = entry.spec
        base_headers = {
            "Content-Type": spec.content_type,
            "Accept-Ranges": "bytes",
            "ETag": entry.etag,
            "Cache-Control": "public, max-age=86400",
        }
        rng_header = req.headers.get("range")
        if_range = req.headers.get("if-range")
        if if_range is not None and if_range.strip() != entry.etag:
            rng_header = None  # the client's partial copy is stale: send everything
        try:
            byte_range = parse_range(rng_header, spec.size)
        except _Unsatisfiable:
            resp = _cdn_error(416, "InvalidRange", "The requested range is not satisfiable")
            resp.headers["Content-Range"] = f"bytes */{spec.size}"
            self._send(h, req.method, resp, "media", bandwidth_bps=None)
            self.stats.record("media", 416)
            return
        if byte_range is None:
            start, stop, status = 0, spec.size, 200
        else:
            (start, stop), status = byte_range, 206
            base_headers["Content-Range"] = f"bytes {start}-{stop - 1}/{spec.size}"
        chunk = media.DEFAULT_CHUNK
        bps = self.faults.bandwidth_bps
        if bps:
            chunk = max(1024, min(chunk, bps // 20))
        body = media.iter_bytes(spec, start, stop, chunk=chunk)
        resp = Response(status, base_headers, body, length=stop - start)
        truncate = req.method != "HEAD" and self.faults.decide_media_truncate()
        if truncate:
            self.stats.record_fault("media_truncate")
        self.stats.record("media", status)
        self._send(h, req.method, resp, "media", bandwidth_bps=bps, truncate=truncate)

    # ------------------------------------------------------------------ writing

    def _send(
        self,
        h: _Handler,
        method: str,
        resp: Response,
        kind: RouteKind,
        bandwidth_bps: int | None,
        truncate: bool = False,
    ) -> None:
        """Write status, headers and body, applying latency/truncation/bandwidth faults.

        ``bandwidth_bps`` paces the body (media bandwidth, API slow drip); ``truncate``
        stops after half the body and hangs up.
        """
        if kind != "admin":
            delay = self.faults.latency_s
            if delay > 0:
                time.sleep(delay)
        length = resp.length or 0
        h.send_response(resp.status)
        for key, value in resp.headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(length))
        if resp.close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if method == "HEAD":
            return
        is_media_body = kind == "media" and resp.status in (200, 206)
        limit = length // 2 if truncate else length
        body: Iterable[bytes] = [resp.body] if isinstance(resp.body, bytes) else resp.body
        if bandwidth_bps and isinstance(resp.body, bytes):
            # one write would defeat the pacing: about 20 writes per second instead
            step = max(1, bandwidth_bps // 20)
            body = [resp.body[i : i + step] for i in range(0, len(resp.body), step)]
        sent = 0
        began = time.monotonic()
        for piece in body:
            if sent >= limit:
                break
            piece = piece[: limit - sent]
            # counted before the write: a client that has read the last byte must
            # already see it in the stats (counting after raced with fast readers)
            if is_media_body:
                self.stats.add_media_bytes(len(piece))
            try:
                h.wfile.write(piece)
            except OSError:
                if is_media_body:
                    self.stats.add_media_bytes(-len(piece))
                raise
            sent += len(piece)
            if bandwidth_bps:
                ahead = sent / bandwidth_bps - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if sent < length:  # promised more than we sent: the only honest end is to hang up
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ admin

    def _admin(self, req: Request) -> Response:
        """``/_sim/*``: steer a simulator running in another process."""
        sub = req.path[len(self.ADMIN_PREFIX) :].rstrip("/")
        if sub == "health" and req.method in ("GET", "HEAD"):
            return Response.json({"ok": True, "name": self.name})
        if sub == "faults":
            if req.method == "POST":
                try:
                    data = req.json()
                    if not isinstance(data, dict):
                        raise ValueError("body must be a JSON object of fault settings")
                    self.faults.update(**data)
                except ValueError as exc:
                    return Response.json({"error": str(exc)}, status=400)
            elif req.method not in ("GET", "HEAD"):
                return Response.json({"error": "method not allowed"}, status=405)
            return Response.json(self.faults.as_dict())
        if sub == "stats" and req.method in ("GET", "HEAD"):
            return Response.json(self.stats.snapshot())
        if sub == "reset" and req.method == "POST":
            self.faults.reset()
            self.stats.reset()
            return Response.json({"ok": True})
        if sub == "clock":
            if req.method == "POST":
                try:
                    data = req.json()
                    self.clock.advance(float(data.get("advance_s", 0)))
                except (ValueError, TypeError, AttributeError) as exc:
                    return Response.json({"error": f"bad clock request: {exc}"}, status=400)
            return Response.json(
                {"now": self.clock.now().isoformat(), "elapsed_s": self.clock.elapsed()}
            )
        return Response.json({"error": f"unknown admin endpoint {req.path}"}, status=404)


# --------------------------------------------------------------------------- provider base


# --------------------------------------------------------------------------- config helpers

_C = TypeVar("_C")


def check_non_negative(config: Any) -> None:
    """Refuse a negative numeric knob in a simulator config dataclass (bools excepted)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{f.name} must be >= 0, got {value}")


def config_from_knobs(
    config_cls: type[_C], *, api_key: str | None, seed: int, count: int | None, knobs: Any
) -> _C:
    """The config every ``create(api_key=, seed=, count=, **knobs)`` factory builds:
    ``None`` means "the config's default" for api_key and count."""
    settings: dict[str, Any] = dict(knobs, seed=seed)
    if api_key is not None:
        settings["api_key"] = api_key
    if count is not None:
        settings["count"] = count
    return config_cls(**settings)


class Simulator(Protocol):
    """What the CLI demo and tests rely on, whatever the provider."""

    api_key: str

    @property
    def name(self) -> str: ...
    @property
    def server(self) -> SimServer: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_base(self) -> str: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def account_options(self) -> dict[str, Any]: ...
    def start(self) -> str: ...
    def stop(self) -> None: ...
    def expected_media(self) -> list[ExpectedFile]: ...


class SimulatorFactory(Protocol):
    """Uniform constructor: ``create(api_key=..., seed=..., count=..., port=..., **knobs)``."""

    def __call__(
        self,
        *,
        api_key: str | None = None,
        seed: int = 0,
        count: int | None = None,
        **knobs: Any,
    ) -> Simulator: ...


class ProviderSim:
    """Base of the per-provider simulators: owns a :class:`SimServer`, adds the API.

    Subclasses set ``name`` and ``api_path`` (e.g. ``/uapi/v1``), register routes and
    media in ``__init__``, and implement :meth:`expected_media`.
    """

    name: ClassVar[str] = "sim"
    api_path: ClassVar[str] = ""

    def __init__(self, server: SimServer, api_key: str) -> None:
        self._server = server
        self.api_key = api_key

    @property
    def server(self) -> SimServer:
        return self._server

    @property
    def faults(self) -> Faults:
        return self._server.faults

    @property
    def stats(self) -> Stats:
        return self._server.stats

    @property
    def clock(self) -> SimClock:
        return self._server.clock

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def api_base(self) -> str:
        """The URL to configure the API client with (base URL + provider API path)."""
        return self._server.base_url + self.api_path

    def start(self) -> str:
        """Start serving; returns the base URL."""
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def account_options(self) -> dict[str, Any]:
        """Provider option keys an account needs to archive from this simulator (demo/tests)."""
        return {}

    def expected_media(self) -> list[ExpectedFile]:
        raise NotImplementedError

    def media_sha256(self, url: str) -> str:
        """SHA-256 of the file a URL of this server serves (``KeyError`` if unknown)."""
        entry = self._server.media_entry(urlsplit(url).path)
        if entry is None:
            raise KeyError(url)
        return media.sha256(entry.spec)


def iso_ms(value: datetime) -> str:
    """``2025-09-27T13:30:05.089Z``: ISO-8601 UTC with milliseconds, as several APIs use."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
