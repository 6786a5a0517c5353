"""Streaming download of one media file, verified while the bytes flow.

:func:`open_media` yields a :class:`MediaStream`, a file-like object that
storage reads from, so a file is never held in memory. While it streams it
checks what a trusted archive must never take on trust:

* **that it is media at all**: a 200 whose body is an HTML or JSON page (a
  login wall, a CDN error, a JSON error envelope) is refused, whatever its
  Content-Type says and however its first bytes are split into packets;
  rclone and gallery-dl both once stored such pages as files. The type the
  first bytes prove replaces a Content-Type that disagrees, and names the
  stored file's extension;
* **that it is complete**: a body that ends before its Content-Length, or
  overruns it, is an error, never a stored file. Media is asked for
  unencoded; a gzip/deflate body sent anyway is decoded here, in bounded
  pieces, and must reach its end-of-stream marker;
* **that it stays within bounds**: a size cap, and a low-speed limit in the
  manner of curl's ``--speed-limit``/``--speed-time``, because a server that
  drips one byte at a time never trips a read timeout.

**Resume.** When the connection breaks or times out mid-body and the server
offers ``Accept-Ranges: bytes`` with a validator (ETag or Last-Modified), the
stream asks for the rest with ``Range`` + ``If-Range`` and carries on, so the
reader (and the sha256 it computes) never notices. A 200 instead of a 206
means the file changed: the download fails and is retried from the start.
Resume works *within* a run only. After a crash the download starts over:
resuming across processes would need the partial bytes' hash state and, for
S3, the open multipart upload id persisted from worker threads, that is, DB
writes before the side effect they describe. Re-streaming keeps every
committed row true; files are small enough (most under 100 MB) that the cost
is one re-download after a crash.
"""

from __future__ import annotations

import contextlib
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import httpx

from genvault.errors import (
    DownloadError,
    MediaGoneError,
    PermanentDownloadError,
    TransientDownloadError,
)
from genvault.logs import get_logger
from genvault.net.errors import Fault, map_httpx_errors
from genvault.net.policy import NetworkPolicy, policy_extensions
from genvault.net.rawbody import RawBody

log = get_logger("genvault.download")

_NOT_MEDIA_TYPES = ("text/html", "application/json", "text/xml", "application/xml", "text/plain")
_NOT_MEDIA_PREFIXES = (
    b"<!doctype",
    b"<html",
    b"<?xml",
    b"{",
    b"[",
    b"<head",
    b"<body",
    b"<!--",
    b"<title",
    b"<script",
)
_SNIFF_BYTES = 512
"""How much of the body, after leading whitespace, is judged before any byte is handed out."""
_SNIFF_MAX_BYTES = 4096
"""Give up waiting for non-whitespace after this many bytes: no media file starts with a
run of whitespace, so a body that is nothing else this far is no media either."""
_WHITESPACE = b" \t\r\n\x0b\x0c"
_BOM = b"\xef\xbb\xbf"
_ZLIB_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
"""The content encodings genvault decodes itself (RFC 9110: ``deflate`` is the zlib
format). Anything else is refused: it could be neither bounded nor verified."""
_DECODE_CHUNK = 1024 * 1024
"""Most decoded bytes produced from one step of a compressed body."""
_EXPANSION_ALLOWANCE = 1024 * 1024
"""Decoded bytes allowed beyond ``max_expansion`` times the compressed ones (headers,
a short file's fixed overhead)."""
_IDENTITY = {"Accept-Encoding": "identity"}
"""Media is stored as sent, so it is asked for unencoded (httpx asks for gzip by default)."""
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    """The bounds one download must stay within (from ``[network]``)."""

    max_bytes: int = 10 * 1024**3
    low_speed_bps: int = 1024
    """Fail when fewer bytes than this per second arrive, averaged over ``low_speed_seconds``."""
    low_speed_seconds: float = 60.0
    resume_attempts: int = 3
    """How many times one download may resume after a broken connection."""
    max_expansion: int = 100
    """A compressed body (sent despite ``Accept-Encoding: identity``) may decode to at
    most this many times its size (plus 1 MiB). Media is compressed already: a gzip
    of a PNG or an MP4 hardly shrinks, and 1 MB expanding to 1 GiB is a bomb."""


@dataclass(frozen=True, slots=True)
class _Validator:
    """What makes a resumed range provably part of the same file."""

    etag: str | None
    last_modified: str | None

    @property
    def if_range(self) -> str | None:
        # Weak ETags are not allowed in If-Range (RFC 9110 13.1.5).
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


_ISO_BMFF_BRANDS = {
    b"qt  ": ("video/quicktime",),
    b"M4A ": ("audio/mp4", "audio/x-m4a"),
    b"M4B ": ("audio/mp4", "audio/x-m4a"),
    b"avif": ("image/avif",),
    b"avis": ("image/avif",),
    b"heic": ("image/heic", "image/heif"),
    b"heix": ("image/heic", "image/heif"),
}
_ISO_BMFF = ("video/mp4", "audio/mp4", "audio/x-m4a", "video/quicktime")
"""Any other ``ftyp`` brand (isom, mp41, mp42, avc1, dash...): MP4, audio or video."""


def sniff_media_type(head: bytes) -> tuple[str, ...]:
    """The media types the first bytes of a file prove, the likeliest first; () if unknown.

    Several types come back where the bytes cannot tell them apart (an ``isom`` MP4
    holds video or only audio): a Content-Type among them is believed, one outside
    them is not. Only formats genvault archives are recognised; the storage key's
    extension comes from this (see :func:`genvault.storage.keys.extension_for`).
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("image/png",)
    if head.startswith(b"\xff\xd8\xff"):
        return ("image/jpeg", "image/jpg", "image/pjpeg")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ("image/gif",)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ("image/webp",)
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
    if head[4:8] == b"ftyp":
        return _ISO_BMFF_BRANDS.get(head[8:12], _ISO_BMFF)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, or WebM by its doctype
        if b"webm" in head[:64]:
            return ("video/webm", "audio/webm")
        return ("video/x-matroska",)
    if head.startswith(b"OggS"):
        return ("audio/ogg", "video/ogg")
    if head.startswith(b"fLaC"):
        return ("audio/flac", "audio/x-flac")
    sync = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if head.startswith(b"ID3") or (sync and head[1] & 0x06 in (0x02, 0x04)):
        return ("audio/mpeg", "audio/mp3")  # an ID3 tag, or an MPEG audio layer III/II frame
    if sync and head[1] & 0xF6 == 0xF0:
        return ("audio/aac",)  # an ADTS frame (layer bits 00)
    return ()


def _content_encoding(resp: httpx.Response) -> str | None:
    """The one encoding genvault must undo (None: identity), or PermanentDownloadError."""
    header: str = resp.headers.get("content-encoding", "")
    codings = [
        c for c in (p.strip().lower() for p in header.split(",")) if c not in ("", "identity")
    ]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _ZLIB_WBITS:
        return codings[0]
    raise PermanentDownloadError(
        f"media sent with content encoding {', '.join(codings)!r} although identity was "
        "asked for; only gzip and deflate can be decoded and verified"
    )


def _decoded(raw: Iterator[bytes], encoding: str, max_expansion: int) -> Iterator[bytes]:
    """Undo ``gzip``/``deflate`` ourselves, in bounded pieces, and prove the stream is whole.

    httpx's own decoder hands out whatever one network read expands to (a 64 KiB
    read of zeros is 64 MiB) and, fed a stream cut short with no Content-Length,
    ends quietly, so half a file passed as a whole one. Here each step yields at
    most :data:`_DECODE_CHUNK` bytes, the expansion is capped, the end-of-stream
    marker (and with it the gzip CRC and length) must have been seen when the
    connection ends, and nothing may follow it.
    """
    z = zlib.decompressobj(_ZLIB_WBITS[encoding])
    raw_total = decoded_total = 0
    for data in raw:
        raw_total += len(data)
        while data or not z.eof:
            if z.eof:
                raise TransientDownloadError(f"data after the end of the {encoding} stream")
            try:
                out = z.decompress(data, _DECODE_CHUNK)
            except zlib.error as exc:
                raise TransientDownloadError(f"corrupt {encoding} body: {exc}") from None
            data = z.unconsumed_tail
            if z.eof and z.unused_data:
                raise TransientDownloadError(f"data after the end of the {encoding} stream")
            if out:
                decoded_total += len(out)
                if decoded_total > _EXPANSION_ALLOWANCE + max_expansion * raw_total:
                    raise PermanentDownloadError(
                        f"{encoding} body expands more than {max_expansion} times "
                        f"({raw_total} bytes to over {decoded_total}): refused"
                    )
                yield out
            if not data and len(out) < _DECODE_CHUNK:
                break  # this input is used up and zlib holds no more output for it
    if not z.eof:
        raise TransientDownloadError(
            f"{encoding} body ended before its end-of-stream marker "
            f"(truncated after {raw_total} bytes)"
        )


def _checked_status(resp: httpx.Response) -> None:
    status = resp.status_code
    if status in (403, 404, 410):
        raise MediaGoneError(f"HTTP {status} from media URL", status_code=status)
    if status == 429 or status >= 500 or status == 408:
        raise TransientDownloadError(f"HTTP {status} from media URL", status_code=status)
    if status >= 400 or status < 200 or status == 204:
        raise PermanentDownloadError(f"HTTP {status} from media URL", status_code=status)


class _Interrupted(Exception):
    """A read that failed mid-body; never leaves :meth:`MediaStream._next_chunk`, which
    resumes or raises a :class:`TransientDownloadError` with its text."""


def _resume_failed(reason: str, fault: Fault, exc: Exception) -> DownloadError | None:
    """A resume request that failed on the wire; the rest is left to :func:`_download_error`
    (the stream is read inside :func:`open_media`)."""
    if fault is Fault.TIMED_OUT:
        return TransientDownloadError(f"{reason}; resume timed out ({type(exc).__name__})")
    if fault.transport:
        return TransientDownloadError(f"{reason}; resume failed: {type(exc).__name__}")
    return None


def _download_error(fault: Fault, exc: Exception) -> DownloadError | None:
    """What a failed media request becomes (the table in :mod:`genvault.net`)."""
    match fault:
        case Fault.REFUSED:
            return PermanentDownloadError(str(exc))
        case Fault.TIMED_OUT:
            return TransientDownloadError(f"timed out ({type(exc).__name__})")
        case Fault.TOO_MANY_REDIRECTS:
            return PermanentDownloadError("too many redirects")
        case Fault.UNSUPPORTED_SCHEME:
            return PermanentDownloadError(f"refused redirect: {exc}")
        case Fault.MALFORMED_REDIRECT:
            return PermanentDownloadError(f"malformed URL in a redirect: {exc}"[:300])
        case Fault.BROKEN:
            return TransientDownloadError(f"{type(exc).__name__}: {exc}")
        case Fault.MALFORMED_URL:
            return None


@dataclass
class MediaStream:
    """A verified, bounded byte stream of one media file; readable like a file.

    Reading raises :class:`TransientDownloadError` if the body ends before its
    Content-Length (or overruns it), breaks beyond repair, or is too slow, and
    :class:`PermanentDownloadError` if it exceeds the size cap or turns out to
    be a document rather than media.
    """

    url: str
    content_type: str | None
    content_length: int | None
    _http: httpx.Client
    _limits: DownloadLimits
    _validator: _Validator | None
    _extensions: dict[str, object]
    _responses: contextlib.ExitStack
    _chunks: Iterator[bytes]
    _raw: RawBody | None = None
    """The body read from the socket (:mod:`genvault.net.rawbody`); then ``_chunks`` too."""
    _rest: bytes = b""
    """Received bytes beyond what the last read asked for."""
    _received: int = 0
    _eof: bool = False
    resumes: int = 0
    _window_start: float = field(default_factory=time.monotonic)
    _window_bytes: int = 0
    _on_status: Callable[[int], None] | None = None
    """Told each response's status (the first one and every resume's): metrics."""

    # ------------------------------------------------------------------ reading

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all of them for ``n < 0``); fewer only at the end.

        Each read is assembled with one ``join`` of the received chunks (growing,
        slicing and converting a bytearray copied every byte three times, CPU and peak
        memory both). Only the overshoot of the last chunk is kept for the next read.
        The archive's writers read chunk-wise instead (``read1``, ``readinto1``).
        """
        parts: list[bytes] = [self._rest] if self._rest else []
        size = len(self._rest)
        self._rest = b""
        while (n is None or n < 0 or size < n) and not self._eof:
            chunk = self._next_chunk()
            parts.append(chunk)
            size += len(chunk)
        if n is not None and 0 <= n < size:
            last = parts[-1]
            keep = len(last) - (size - n)
            parts[-1], self._rest = last[:keep], last[keep:]
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)  # (b"" when nothing is left)

    def read1(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes as they came off the wire: one received chunk, never joined.

        For a writer that hashes and writes each piece as it comes (a local folder):
        ``read`` would copy every byte once more into a joined buffer, and its large
        writes cost the kernel more than the chunks' own (bench/PROFILE.md, finding A).
        ``b""`` only at the end; every check of ``read`` applies.
        """
        data = self._rest or (b"" if self._eof else self._next_chunk())
        if n is not None and 0 <= n < len(data):
            self._rest = data[n:]
            return data[:n]
        self._rest = b""
        return data

    def readinto1(self, buffer: memoryview) -> int:
        """Up to ``len(buffer)`` bytes into ``buffer``; 0 only at the end; every check of ``read``.

        For a writer with a reusable buffer (a local folder): a body read from the socket
        (:mod:`genvault.net.rawbody`) lands in it with no copy in between; one httpx reads
        (chunked, encoded, a resume the raw reader declined) is copied in from ``read1``."""
        while self._raw is not None and not self._rest and not self._eof:
            raw = self._raw
            try:
                with map_httpx_errors(self._interrupted):
                    n = raw.recv_into(buffer)
            except _Interrupted as exc:
                self._resume_or_raise(str(exc))
                continue
            if n:
                self._count(n)
                return n
            self._rest = self._next_chunk()  # the end: the checks of any stream's end
        data = self.read1(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def readable(self) -> bool:
        return True

    @property
    def received(self) -> int:
        return self._received

    def check_head(self) -> None:
        """Read the first bytes of the body and refuse it if it is a document, not media.

        The head is gathered whatever the packets: at least :data:`_SNIFF_BYTES` past
        any leading whitespace (or byte-order mark), up to :data:`_SNIFF_MAX_BYTES`, or
        the whole body if shorter. Judging the first chunk alone let ``"\\n"``, a pause,
        then ``<!DOCTYPE html>`` through as an image. :func:`open_media` calls this
        before handing the stream out; the head is then read like any other bytes.
        """
        parts: list[bytes] = []
        size = 0
        text = b""
        while not self._eof and size < _SNIFF_MAX_BYTES and len(text) < _SNIFF_BYTES:
            chunk = self._next_chunk()
            parts.append(chunk)
            size += len(chunk)
            text = b"".join(parts).removeprefix(_BOM).lstrip(_WHITESPACE)
        head = b"".join(parts)
        self._rest = head
        if head and not text:
            raise PermanentDownloadError(
                f"body starts with {size} bytes of whitespace and nothing else: not media"
            )
        if text[:64].lower().startswith(_NOT_MEDIA_PREFIXES):
            raise PermanentDownloadError(f"body looks like a document, not media: {text[:40]!r}")
        proven = sniff_media_type(head)
        if proven and self.content_type not in proven:
            # The bytes say what the file is; a CDN's label (octet-stream, or simply
            # wrong) does not get to choose the stored type and extension.
            self.content_type = proven[0]

    @property
    def _progress(self) -> str:
        total = "?" if self.content_length is None else str(self.content_length)
        return f"{self._received} of {total} bytes"

    # ------------------------------------------------------------------ chunks

    def _next_chunk(self) -> bytes:
        while True:
            try:
                with map_httpx_errors(self._interrupted):
                    chunk = next(self._chunks)
            except StopIteration:
                if self.content_length is not None and self._received < self.content_length:
                    self._resume_or_raise(
                        f"truncated: received {self._received} of {self.content_length} bytes"
                    )
                    continue
                self._eof = True
                return b""
            except _Interrupted as exc:
                self._resume_or_raise(str(exc))
                continue
            if chunk:
                return self._accept(chunk)

    def _interrupted(self, fault: Fault, exc: Exception) -> _Interrupted | None:
        """Why the body stopped arriving, for :meth:`_resume_or_raise` (h11 reports a
        body cut short of its Content-Length as a transport error, too)."""
        if fault is Fault.TIMED_OUT:
            return _Interrupted(f"read timed out after {self._progress} ({type(exc).__name__})")
        if fault.transport:
            return _Interrupted(f"connection broke after {self._progress} ({type(exc).__name__})")
        return None

    def _accept(self, chunk: bytes) -> bytes:
        self._count(len(chunk))
        return chunk

    def _count(self, n: int) -> None:
        self._received += n
        if self._received > self._limits.max_bytes:
            raise PermanentDownloadError(f"file exceeds the cap of {self._limits.max_bytes} bytes")
        if self.content_length is not None and self._received > self.content_length:
            raise TransientDownloadError(
                f"overrun: received more than the announced {self.content_length} bytes"
            )
        self._check_speed(n)

    def _check_speed(self, count: int) -> None:
        self._window_bytes += count
        elapsed = time.monotonic() - self._window_start
        if elapsed < self._limits.low_speed_seconds:
            return
        rate = self._window_bytes / elapsed
        if rate < self._limits.low_speed_bps:
            raise TransientDownloadError(
                f"too slow: {rate:.0f} B/s over {elapsed:.0f} s "
                f"(limit {self._limits.low_speed_bps} B/s)"
            )
        self._window_start = time.monotonic()
        self._window_bytes = 0

    # ------------------------------------------------------------------ resume

    def _resume_or_raise(self, reason: str) -> None:
        """Continue from the next byte with a Range request, or raise a transient error."""
        can_resume = (
            self._validator is not None
            and self._validator.if_range is not None
            and self.content_length is not None
            and 0 < self._received < self.content_length
            and self.resumes < self._limits.resume_attempts
        )
        if not can_resume:
            raise TransientDownloadError(reason)
        assert self._validator is not None and self._validator.if_range is not None
        assert self.content_length is not None
        self.resumes += 1
        self._responses.close()
        self._raw = None
        self._responses = contextlib.ExitStack()
        headers = {
            "Range": f"bytes={self._received}-",
            "If-Range": self._validator.if_range,
            **_IDENTITY,
        }
        log.info(
            "download.resume",
            url_host=httpx.URL(self.url).host,
            offset=self._received,
            attempt=self.resumes,
            reason=reason,
        )
        with map_httpx_errors(partial(_resume_failed, reason)):
            resp = self._responses.enter_context(
                self._http.stream("GET", self.url, headers=headers, extensions=self._extensions)
            )
        if self._on_status is not None:
            self._on_status(resp.status_code)
        _checked_status(resp)
        match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if _content_encoding(resp) is not None:
            raise TransientDownloadError(
                f"{reason}; the server encoded its answer to a Range request"
            )
        if resp.status_code != 206 or match is None:
            raise TransientDownloadError(
                f"{reason}; the server sent HTTP {resp.status_code} to a Range request "
                "(the file changed or ranges are not served): starting over next attempt"
            )
        start, total = int(match.group(1)), match.group(3)
        if start != self._received or (total != "*" and int(total) != self.content_length):
            raise TransientDownloadError(
                f"{reason}; resume answered {match.group(0)!r}, "
                f"wanted bytes {self._received}- of {self.content_length}"
            )
        self._raw = RawBody.take(resp, self.content_length - self._received)
        self._chunks = self._raw or resp.iter_raw()

    def close(self) -> None:
        self._responses.close()


@contextlib.contextmanager
def open_media(
    http: httpx.Client,
    url: str,
    *,
    policy: NetworkPolicy,
    limits: DownloadLimits,
    on_status: Callable[[int], None] | None = None,
) -> Iterator[MediaStream]:
    """Start downloading ``url``; yield a :class:`MediaStream` once the headers are in.

    ``on_status`` is told the HTTP status of every response (metrics count them).
    """
    responses = contextlib.ExitStack()
    with responses, map_httpx_errors(_download_error):
        policy.check_url(url)
        extensions = policy_extensions(policy)
        resp = responses.enter_context(
            http.stream("GET", url, headers=_IDENTITY, extensions=extensions)
        )
        if on_status is not None:
            on_status(resp.status_code)
        _checked_status(resp)
        ctype = (resp.headers.get("content-type") or "").split(";")[0].strip().lower() or None
        if ctype in _NOT_MEDIA_TYPES:
            raise PermanentDownloadError(f"media URL answered with {ctype}, not media")
        declared = resp.headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else None
        encoding = _content_encoding(resp)
        encoded = encoding is not None
        if encoded:
            length = None  # Content-Length counts encoded bytes; we read decoded ones
        if length is not None and length > limits.max_bytes:
            raise PermanentDownloadError(
                f"file of {length} bytes exceeds the cap of {limits.max_bytes}"
            )
        ranges = resp.headers.get("accept-ranges", "").strip().lower() == "bytes"
        validator = (
            _Validator(resp.headers.get("etag"), resp.headers.get("last-modified"))
            if ranges and not encoded and resp.status_code == 200
            else None
        )
        raw = None if encoding is not None else RawBody.take(resp, length)
        stream = MediaStream(
            url=url,
            content_type=ctype,
            content_length=length,
            _http=http,
            _limits=limits,
            _validator=validator,
            _extensions=extensions,
            _responses=responses,
            _chunks=(
                _decoded(resp.iter_raw(), encoding, limits.max_expansion)
                if encoding is not None
                else raw or resp.iter_raw()
            ),
            _raw=raw,
            _on_status=on_status,
        )
        try:
            stream.check_head()
            yield stream
        finally:
            stream.close()


__all__ = ["DownloadLimits", "MediaStream", "open_media"]
