"""The fake CDN every simulator serves its media from, with a real CDN's manners.

The daemon downloads generated files from CDNs that answer Range and If-Range,
HEAD, ETags, 404 for unknown keys, 403 once a signed URL or retention expires, and
XML error bodies; media faults make them fail the ways CDNs do (error statuses,
HTML error pages with 200, truncated or slow bodies). This module owns the media
table and turns one media request into its answer; the server only writes it.
"""

from __future__ import annotations

import email.utils
import hashlib
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Final

from genvault.simulator import media
from genvault.simulator.clock import SimClock
from genvault.simulator.faults import Faults, MediaErrorPage
from genvault.simulator.messages import Request, Response
from genvault.simulator.stats import Stats


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


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """How to answer one media request: the response, its pacing and whether to cut it."""

    response: Response
    bandwidth_bps: int | None = None
    truncate: bool = False


class MediaTable:
    """The files a simulator's CDN serves, by absolute path.

    Adding and removing are single dict operations, atomic against the lookups of
    the request threads, so media can change while the server runs.
    """

    def __init__(self) -> None:
        self._entries: dict[str, MediaEntry] = {}

    def add(self, path: str, entry: MediaEntry) -> None:
        """Serve ``entry`` at ``path`` (an absolute path, e.g. ``/cdn/images/x.jpg``)."""
        if not path.startswith("/"):
            raise ValueError(f"media path must start with '/': {path!r}")
        self._entries[path] = entry

    def remove(self, path: str) -> MediaEntry | None:
        """Stop serving ``path``; returns the entry it served, or None."""
        return self._entries.pop(path, None)

    def get(self, path: str) -> MediaEntry | None:
        return self._entries.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def answer(self, req: Request, clock: SimClock, faults: Faults, stats: Stats) -> MediaAnswer:
        """The answer to a GET or HEAD of a media path, counted in ``stats``.

        Unknown (or not yet rendered) files are a 404 and expired ones a 403, before
        any media fault; then media faults; then the file, whole or by Range.
        """
        stats.record_media(req.path)
        entry = self._entries.get(req.path)
        if entry is None or clock.elapsed() < entry.available_after_s:
            stats.record("media", 404)
            return MediaAnswer(_cdn_error(404, "NoSuchKey", "The specified key does not exist."))
        if entry.expires_at is not None and clock.now() >= entry.expires_at:
            stamp = email.utils.format_datetime(entry.expires_at, usegmt=True)
            stats.record("media", 403)
            return MediaAnswer(
                _cdn_error(
                    403, "AccessDenied", "Request has expired", f"<Expires>{stamp}</Expires>"
                )
            )
        fault = faults.decide_media_error()
        if fault.status is not None:
            stats.record_fault("media_status")
            stats.record("media", fault.status)
            return MediaAnswer(_media_status_error(fault.status))
        if fault.error_page is not None:
            stats.record_fault(f"media_error_page:{fault.error_page}")
            resp = _media_error_page(fault.error_page)
            stats.record("media", resp.status)
            return MediaAnswer(resp)
        return _serve_file(entry, req, faults, stats)


def _serve_file(entry: MediaEntry, req: Request, faults: Faults, stats: Stats) -> MediaAnswer:
    """The file itself: 200, 206 for a satisfiable Range (unless If-Range is stale), or 416."""
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
        stats.record("media", 416)
        return MediaAnswer(resp)
    if byte_range is None:
        start, stop, status = 0, spec.size, 200
    else:
        (start, stop), status = byte_range, 206
        base_headers["Content-Range"] = f"bytes {start}-{stop - 1}/{spec.size}"
    chunk = media.DEFAULT_CHUNK
    bps = faults.bandwidth_bps
    if bps:
        chunk = max(1024, min(chunk, bps // 20))
    body = media.iter_bytes(spec, start, stop, chunk=chunk)
    resp = Response(status, base_headers, body, length=stop - start)
    truncate = req.method != "HEAD" and faults.decide_media_truncate()
    if truncate:
        stats.record_fault("media_truncate")
    stats.record("media", status)
    return MediaAnswer(resp, bandwidth_bps=bps, truncate=truncate)
