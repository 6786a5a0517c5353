"""Fault injection: which faults a simulator can inject, and what each one answers.

Tests break the daemon's HTTP stack on purpose (429s, 5xx, resets, malformed
bodies, truncated or lying media). The settings are runtime-mutable and validated
(``POST /_sim/faults`` takes them from another process), the per-request decisions
are atomic, and the spoiled answers (gateway pages, mangled JSON, one bad item) are
built here, so the server only asks "what now?" and writes what it is told.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from genvault.simulator.messages import BusinessErrorFactory, ErrorFactory, Response

MalformedMode = Literal["html", "truncated", "wrong_types", "bad_item", "business_error"]
MediaErrorPage = Literal["html", "json", "html_as_image"]


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


def fault_response(decision: FaultDecision, error_response: ErrorFactory) -> Response:
    """The answer of an API request a fault decided on (429, 500, 502 or 503)."""
    status = decision.status or 503
    if status == 429:
        resp = error_response(429, "RATE_LIMIT_ERROR", "Too many requests, slow down")
        if decision.retry_after is not None:
            resp.headers["Retry-After"] = decision.retry_after
        return resp
    if status == 502:  # a gateway in front of the API answers, not the API itself
        page = _GATEWAY_HTML.format(status=502, reason="Bad Gateway")
        return Response.text(page, status=502, content_type="text/html")
    if status == 500:
        return error_response(500, "INTERNAL_SERVER_ERROR", "Internal server error")
    return error_response(503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable")


def malformed_answer(
    resp: Response,
    mode: MalformedMode | None,
    wrong_types: Callable[[Any], Any],
    business_error: BusinessErrorFactory,
) -> tuple[Response, str | None]:
    """``resp`` spoiled by the ``malformed`` fault, and the fault to count (None: none).

    ``bad_item`` counts only when the answer has an item to spoil; the other modes
    count whenever they are set, even where they leave this answer as it was.
    """
    if mode is None:
        return resp, None
    if mode == "bad_item":
        spoiled = spoil_one_item(resp.payload) if resp.payload is not None else None
        if spoiled is None:
            return resp, None
        mangled = Response.json(spoiled, resp.status)
        mangled.headers = {**resp.headers, **mangled.headers}
        return mangled, "malformed:bad_item"
    reason = f"malformed:{mode}"
    if mode == "html":
        return Response.text(_MALFORMED_HTML, status=200, content_type="text/html"), reason
    if mode == "truncated" and isinstance(resp.body, bytes):
        return Response(resp.status, dict(resp.headers), resp.body[: len(resp.body) // 2]), reason
    if mode == "wrong_types" and resp.payload is not None:
        mangled = Response.json(wrong_types(resp.payload), resp.status)
        mangled.headers = {**resp.headers, **mangled.headers}
        return mangled, reason
    if mode == "business_error":
        return business_error(), reason
    return resp, reason


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


UNCHANGED: Final = object()
"""What a :func:`mangle_keys` rule returns for an entry it does not spoil."""


def mangle_keys(payload: Any, rule: Callable[[str, Any], Any]) -> Any:
    """A provider's targeted ``wrong_types`` fault: lists and dicts are walked, and each
    dict entry becomes ``rule(key, value)``, or, where the rule answers
    :data:`UNCHANGED`, its own value walked the same way."""
    if isinstance(payload, list):
        return [mangle_keys(v, rule) for v in payload]
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        spoiled = rule(key, value)
        out[key] = mangle_keys(value, rule) if spoiled is UNCHANGED else spoiled
    return out
