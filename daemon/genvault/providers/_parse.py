"""Tolerant coercions shared by the parsers.

Provider JSON is third-party input: numbers arrive as strings, lists as null,
timestamps in seconds, milliseconds or ISO text. These helpers return None for
what they cannot read instead of raising, so one odd field never loses an item;
parsers raise MalformedResponseError only when the item is unusable (no id).
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from genvault.errors import MalformedResponseError
from genvault.records import MediaKind, MediaRecord

_EXT_KIND = {
    "jpg": MediaKind.IMAGE,
    "jpeg": MediaKind.IMAGE,
    "png": MediaKind.IMAGE,
    "webp": MediaKind.IMAGE,
    "gif": MediaKind.IMAGE,
    "bmp": MediaKind.IMAGE,
    "mp4": MediaKind.VIDEO,
    "webm": MediaKind.VIDEO,
    "mov": MediaKind.VIDEO,
    "mkv": MediaKind.VIDEO,
    "mp3": MediaKind.AUDIO,
    "wav": MediaKind.AUDIO,
    "ogg": MediaKind.AUDIO,
    "m4a": MediaKind.AUDIO,
    "flac": MediaKind.AUDIO,
    "aac": MediaKind.AUDIO,
}


def require_dict(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise MalformedResponseError(f"{what}: expected an object, got {type(payload).__name__}")
    return payload


def as_str(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    if isinstance(v, bool):
        return str(v).lower()
    s = str(v).strip()
    return s or None


def as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return int(v.strip())
    return None


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def iso_datetime(v: Any) -> datetime | None:
    """ISO-8601 text (``2025-09-27T13:30:05.089Z``) -> aware UTC datetime."""
    s = as_str(v)
    if not s:
        return None
    with contextlib.suppress(ValueError, OverflowError):  # year 1 at +01:00 overflows to UTC
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return None


def epoch_seconds(v: Any) -> datetime | None:
    n = as_int(v)
    if n is None or n <= 0:
        return None
    with contextlib.suppress(ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(n, UTC)
    return None


def epoch_millis(v: Any) -> datetime | None:
    n = as_int(v)
    if n is None or n <= 0:
        return None
    with contextlib.suppress(ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(n / 1000, UTC)
    return None


def http_url(v: Any, base: str | None = None) -> str | None:
    """An absolute http(s) URL, resolving relative paths against ``base`` when given."""
    s = as_str(v)
    if not s:
        return None
    try:  # urlsplit/urljoin raise ValueError on e.g. "http://[bad"
        if base and not urlsplit(s).scheme:
            s = urljoin(base if base.endswith("/") else base + "/", s.lstrip("/"))
        return s if urlsplit(s).scheme in ("http", "https") else None
    except ValueError:
        return None


def kind_from_url(url: str, default: MediaKind = MediaKind.OTHER) -> MediaKind:
    path = urlsplit(url).path.lower()
    ext = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    return _EXT_KIND.get(ext, default)


def dedupe_by_url(media: list[MediaRecord]) -> tuple[MediaRecord, ...]:
    """Keep the first record of each URL (earlier entries carry the better role)."""
    seen: dict[str, MediaRecord] = {}
    for m in media:
        prev = seen.get(m.url)
        if prev is None:
            seen[m.url] = m
        elif prev.size is None and m.size is not None:
            seen[m.url] = dataclasses.replace(prev, size=m.size)  # keep the known size
    return tuple(seen.values())
