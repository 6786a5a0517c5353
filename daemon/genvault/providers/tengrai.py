"""Tengr.ai: ``/v{1,2}/artworks`` offset paging and ``/v{1,2}/artworks/{id}`` detail.

Source: seed 003 (Tengr.ai "Find artworks", v1) and providers.md §4.

* Base URL: **no public default is documented**. ``https://api.tengr.ai`` is a
  guess (providers.md) and must be checked on a live account; set ``base_url``.
  The base URL carries no version: Option ``api_version`` ("v1" default, "v2")
  selects the ``/v1`` or ``/v2`` path prefix.
* Auth: ``Authorization: Bearer <key>``.
* Listing: ``GET /v1/artworks?offset=N&limit=M`` (limit 1-500) -> a **bare JSON
  array** with no total and no echoed offset. The order is not documented; newest
  first is assumed and *checked* by the walk (:mod:`genvault.walk`), which also
  overlaps consecutive windows to notice offsets that shift under it, and reads
  once more past a short page before it believes the end.
* Detail: ``GET /v1/artworks/{id}``; 404 after retention -> NotFoundError.
* Status: v1 ``done``/``failed`` (creation is synchronous, so the list holds only
  terminal items); v2 ``starting``/``processing``/``succeeded``/``failed``/
  ``canceled``. One table serves both: the values do not collide. A success with
  no usable http(s) result is FAILED ("done without results"), because there is
  nothing to archive and nothing will ever appear.
* Times: ``createdAt`` ISO-8601 with ms. No last-change time exists, so
  ``updated_at`` stays None and the sync watermark falls back to ``created_at``.
* Deadline: ``createdAt`` + 8 days (the v2.2.0 retention, applied to v1 too); a
  signed-URL expiry in a result URL is earlier when it is, and the store takes the
  earliest per file.
* Errors: ``{"message", "statusCode", "error"}``. HTTP errors are classified by
  :class:`~genvault.net.api.ApiClient` (its message carries the body, so ``message``
  too); the same body inside an HTTP 200 is mapped here by ``statusCode``.
* Webhook: v2 per-request ``webhook``; the signature scheme is not documented, so
  the receiver authenticates with genvault's own token.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field

from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
    WebhookRejectedError,
)
from genvault.expiry import url_expiry
from genvault.providers import _parse as p
from genvault.providers._parse import dedupe_by_url
from genvault.providers.base import OffsetPaging, Provider, ProviderOptions
from genvault.records import (
    DeadlineSource,
    GenerationRecord,
    GenerationStatus,
    MediaKind,
    MediaRecord,
    MediaRole,
    Page,
)

RETENTION = timedelta(days=8)
MAX_LIMIT = 500

STATUS: dict[str, GenerationStatus] = {
    # v1
    "done": GenerationStatus.SUCCEEDED,
    "failed": GenerationStatus.FAILED,
    # v2
    "starting": GenerationStatus.QUEUED,
    "processing": GenerationStatus.RUNNING,
    "succeeded": GenerationStatus.SUCCEEDED,
    "canceled": GenerationStatus.FAILED,
    "cancelled": GenerationStatus.FAILED,
}
_DURATION_SCALE = {"s": 1.0, "ms": 0.001}


class TengrAIOptions(ProviderOptions):
    api_version: Literal["v1", "v2"] = "v1"
    """Path prefix of every call; v2 also lists artworks still starting/processing."""
    page_limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT)
    """``limit`` of each listing request (the API accepts 1-500)."""
    duration_unit: Literal["s", "ms"] = "s"
    """Unit of ``duration`` (undocumented; seconds assumed), used only for completed_at."""


class TengrAI(Provider):
    name: ClassVar[str] = "tengrai"
    default_base_url: ClassVar[str] = "https://api.tengr.ai"  # a GUESS: see the docstring
    Options: ClassVar[type[ProviderOptions]] = TengrAIOptions
    retention: ClassVar[timedelta | None] = RETENTION
    retention_source: ClassVar[DeadlineSource] = DeadlineSource.RULE  # v2.2.0: 8 days
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "token"

    options: TengrAIOptions

    @classmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    @property
    def paging(self) -> OffsetPaging:
        return OffsetPaging("offset", "limit", self.options.page_limit)

    def _path(self, *parts: str) -> str:
        return "/".join((self.options.api_version, "artworks", *parts))

    def fetch_page(self, stream: str, position: int) -> Page:
        path = self._path()
        items = self.api.get_json(path, self.paging.params(position))
        if not isinstance(items, list):
            raise_error_body(items, path)
            raise MalformedResponseError(f"{path}: expected a JSON array of artworks")
        records, bad = self.parse_items(items)
        return Page(records=tuple(records), position=position, got=len(items), errors=bad)

    def fetch(self, external_id: str) -> GenerationRecord:
        path = self._path(quote(external_id, safe=""))
        body = self.api.get_json(path)
        if isinstance(body, dict) and "id" not in body:
            raise_error_body(body, path)
        return self.parse(body)

    def parse(self, payload: Any) -> GenerationRecord:
        return parse_artwork(payload, duration_unit=self.options.duration_unit)

    def webhook_ids(self, body: bytes, headers: Mapping[str, str]) -> list[str]:
        """The artwork id of a callback: the artwork itself, or ``{"data": artwork}``."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejectedError("tengrai webhook: body is not JSON") from None
        if isinstance(doc, dict):
            for obj in (doc, p.as_dict(doc.get("data"))):
                external_id = p.as_str(obj.get("id"))
                if external_id:
                    return [external_id]
        raise WebhookRejectedError("tengrai webhook: no artwork id in the body")


# ---------------------------------------------------------------------------- errors


def raise_error_body(body: Any, path: str) -> None:
    """Raise the error a ``{"message", "statusCode", "error"}`` body means; else return.

    Only for bodies that arrived with HTTP 200 (the client already classified the
    others): the provider's own ``statusCode`` picks the exception class.
    """
    if not isinstance(body, dict) or not ("statusCode" in body or "message" in body):
        return
    code = p.as_int(body.get("statusCode"))
    message = _message(body.get("message")) or p.as_str(body.get("error")) or "(no message)"
    text = f"{path}: {code if code is not None else '?'}: {message}"
    error: ProviderError
    if code in (401, 403):
        error = AuthError(text, status_code=code)
    elif code == 404:
        error = NotFoundError(text, status_code=code)
    elif code == 429:
        error = RateLimitedError(text)
    elif code is not None and code >= 500:
        error = TransientProviderError(text, status_code=code)
    else:
        error = BusinessError(text, code=code)
    raise error


def _message(v: Any) -> str | None:
    """``message`` is a string, or (NestJS validation) a list of strings."""
    if isinstance(v, list):
        return "; ".join(s for s in map(p.as_str, v) if s) or None
    return p.as_str(v)


# ---------------------------------------------------------------------------- parsing


def parse_artwork(payload: Any, *, duration_unit: str = "s") -> GenerationRecord:
    """One artwork (list and detail share the shape) -> record."""
    item = p.require_dict(payload, "tengrai artwork")
    external_id = p.as_str(item.get("id"))
    if not external_id:
        raise MalformedResponseError("tengrai artwork has no id")
    raw_status = p.as_str(item.get("status"))
    status = STATUS.get((raw_status or "").lower(), GenerationStatus.UNKNOWN)
    created = _timestamp(item.get("createdAt"))
    expires = _plus(created, RETENTION)
    params = p.as_dict(item.get("parameters"))
    media = _media(item) if status is GenerationStatus.SUCCEEDED else ()
    error = None
    if status is GenerationStatus.SUCCEEDED and not media:
        status, error = GenerationStatus.FAILED, f"{raw_status} without results"
    elif status is GenerationStatus.FAILED:
        error = _failure_reason(item, raw_status or "")
    return GenerationRecord(
        external_id=external_id,
        status=status,
        provider_status=str(item.get("status")),
        created_at=created,
        completed_at=_completed(created, item.get("duration"), duration_unit)
        if status is GenerationStatus.SUCCEEDED
        else None,
        updated_at=None,
        expires_at=expires,
        expires_source=DeadlineSource.RULE if expires else None,
        kind=p.as_str(item.get("artworkType")),
        model=p.as_str(params.get("model")),
        prompt=p.as_str(params.get("prompt")),
        error=error,
        media=media,
        raw=item,
        needs_detail=False,
    )


def _timestamp(v: Any) -> datetime | None:
    """ISO text as documented; a number is read as Unix milliseconds (tolerance)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return p.epoch_millis(v)
    return p.iso_datetime(v)


def _plus(start: datetime | None, delta: timedelta) -> datetime | None:
    if start is None:
        return None
    with contextlib.suppress(OverflowError):  # createdAt near datetime.max
        return start + delta
    return None


def _completed(created: datetime | None, duration: Any, unit: str) -> datetime | None:
    """``createdAt + duration`` when duration is a sane number, else ``createdAt``."""
    seconds = _as_float(duration)
    if seconds is None or not 0 <= seconds * _DURATION_SCALE[unit] < 86_400:
        return created
    return _plus(created, timedelta(seconds=seconds * _DURATION_SCALE[unit]))


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return float(v.strip())
    return None


def _failure_reason(item: dict[str, Any], raw_status: str) -> str:
    """No error field is documented; use one if the API ever sends it."""
    for key in ("error", "errorMessage", "message", "failureReason"):
        text = _message(item.get(key)) if key == "message" else p.as_str(item.get(key))
        if text:
            return f"{raw_status}: {text}"
    if raw_status.lower() in ("canceled", "cancelled"):
        return "canceled"
    return "failed (no reason given)"


def _media(item: dict[str, Any]) -> tuple[MediaRecord, ...]:
    """Each http(s) entry of ``results[]``; anything else (the seed's "string") is skipped."""
    found: list[MediaRecord] = []
    for entry in p.as_list(item.get("results")):
        url = p.http_url(entry)
        if url is None and isinstance(entry, dict):  # tolerance: {"url": ...} objects
            url = p.http_url(entry.get("url"))
        if url:
            found.append(
                MediaRecord(
                    url=url,
                    role=MediaRole.RESULT,
                    kind=p.kind_from_url(url, MediaKind.IMAGE),
                    url_expires_at=url_expiry(url),
                )
            )
    return dedupe_by_url(found)
