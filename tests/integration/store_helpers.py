"""Record builders and thin wrappers for the store integration suite.

The store never sees provider JSON, only :class:`GenerationRecord`; these builders
make records that look like what an adapter produces (GeminiGen-style ``raw`` with a
numeric ``status``), so each test states only what it is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from genvault.records import (
    GenerationRecord,
    GenerationStatus,
    MediaKind,
    MediaRecord,
    MediaRole,
)
from genvault.store import CursorUpdate, SaveResult, Store

PROVIDER = "geminigen"
ACCOUNT = "main"
RETENTION = timedelta(days=30)
POLL_HORIZON = timedelta(hours=24)
DEFAULT_ROLES = frozenset({MediaRole.RESULT.value, MediaRole.THUMBNAIL.value})
CDN = "https://cdn.example.test"

# GeminiGen's numeric status codes, as they appear in ``raw``.
STATUS_CODE = {
    GenerationStatus.QUEUED: 0,
    GenerationStatus.RUNNING: 1,
    GenerationStatus.SUCCEEDED: 2,
    GenerationStatus.FAILED: 3,
    GenerationStatus.UNKNOWN: 9,
}


def now_utc() -> datetime:
    """The current time, truncated to whole milliseconds (stable round trips)."""
    n = datetime.now(UTC)
    return n.replace(microsecond=n.microsecond // 1000 * 1000)


def url(path: str, **query: str) -> str:
    """An unsigned CDN URL."""
    q = f"?{urlencode(query)}" if query else ""
    return f"{CDN}/{path.lstrip('/')}{q}"


def signed_url(path: str, signature: str, expires: datetime, **extra: str) -> str:
    """An S3 SigV2/CloudFront-style signed URL (``Expires`` + ``Signature``)."""
    query = {**extra, "Expires": str(int(expires.timestamp())), "X-Amz-Signature": signature}
    return f"{CDN}/{path.lstrip('/')}?{urlencode(query)}"


def media(
    link: str,
    role: MediaRole = MediaRole.RESULT,
    kind: MediaKind = MediaKind.IMAGE,
    *,
    size: int | None = None,
    url_expires_at: datetime | None = None,
) -> MediaRecord:
    return MediaRecord(url=link, role=role, kind=kind, size=size, url_expires_at=url_expires_at)


def record(
    external_id: str,
    status: GenerationStatus = GenerationStatus.SUCCEEDED,
    *,
    media_: Sequence[MediaRecord] = (),
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
    expires_at: datetime | None = None,
    needs_detail: bool = False,
    raw: dict[str, Any] | None = None,
    prompt: str | None = "a cat",
    error: str | None = None,
    completed_at: datetime | None = None,
) -> GenerationRecord:
    """A generation as an adapter would normalize it.

    ``raw`` defaults to a payload derived from the arguments, so two records built
    with the same arguments have the same fingerprint and different ones differ.
    """
    if raw is None:
        raw = {
            "uuid": external_id,
            "status": STATUS_CODE[status],
            "input_text": prompt,
            "created_at": created_at.isoformat() if created_at else None,
            "expired_at": expires_at.isoformat() if expires_at else None,
            "media": [m.url for m in media_],
        }
    return GenerationRecord(
        external_id=external_id,
        status=status,
        provider_status=str(STATUS_CODE[status]),
        created_at=created_at,
        completed_at=completed_at,
        updated_at=updated_at,
        expires_at=expires_at,
        kind="image",
        model="imagen-4",
        prompt=prompt,
        error=error,
        media=tuple(media_),
        raw=raw,
        needs_detail=needs_detail,
    )


def save(
    store: Store,
    records: Sequence[GenerationRecord],
    *,
    cursor: CursorUpdate | None = None,
    roles: frozenset[str] = DEFAULT_ROLES,
    now: datetime | None = None,
    account: str = ACCOUNT,
    retention: timedelta = RETENTION,
) -> SaveResult:
    """``save_page`` with the suite's defaults."""
    return store.save_page(
        provider=PROVIDER,
        account=account,
        records=records,
        cursor=cursor,
        archive_roles=roles,
        retention=retention,
        poll_horizon=POLL_HORIZON,
        now=now,
    )


def polled(
    store: Store,
    rec: GenerationRecord,
    *,
    next_poll_at: datetime | None,
    attempts: int = 1,
    roles: frozenset[str] = DEFAULT_ROLES,
    now: datetime | None = None,
) -> SaveResult:
    """``save_polled`` with the suite's defaults."""
    return store.save_polled(
        provider=PROVIDER,
        account=ACCOUNT,
        record=rec,
        next_poll_at=next_poll_at,
        poll_attempts=attempts,
        archive_roles=roles,
        retention=RETENTION,
        poll_horizon=POLL_HORIZON,
        now=now,
    )


def generation(store: Store, external_id: str, account: str = ACCOUNT) -> dict[str, Any]:
    """The one generation row with this external id."""
    rows = [g for g in store.generations(account) if g["external_id"] == external_id]
    assert len(rows) == 1, f"expected one generation {external_id!r}, found {len(rows)}"
    return rows[0]


def assets_of(store: Store, external_id: str) -> list[dict[str, Any]]:
    """Asset rows of one generation, by position."""
    rows = [a for a in store.assets() if a["external_id"] == external_id]
    return sorted(rows, key=lambda a: a["position"])
