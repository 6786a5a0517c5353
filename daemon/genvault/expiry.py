"""Deadlines: when a provider will stop serving a file, and how genvault knows.

Two sources, and an asset's deadline is the earlier of them: the provider's
rule (an ``expired_at`` field, or a documented retention such as Akool's 7
days) and the expiry signed into the URL itself (S3 SigV4, CloudFront,
Discord-style CDNs), which is often much shorter. Each deadline keeps its
:class:`~genvault.records.DeadlineSource`, so a guess never passes for a fact.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from genvault.records import DeadlineSource, MediaRecord

# Query parameters that make a URL *signed*: they change on every refresh of
# the same file, so they are dropped when deciding whether two URLs are one file.
SIGNATURE_PARAMS = frozenset(
    p.lower()
    for p in (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "Key-Pair-Id",
        "Policy",
        "ex",
        "is",
        "hm",
        "exp",
        "expires",
        "token",
        "sig",
        "se",
        "sp",
        "sv",
        "sr",
        "st",
        "X-Goog-Algorithm",
        "X-Goog-Credential",
        "X-Goog-Date",
        "X-Goog-Expires",
        "X-Goog-SignedHeaders",
        "X-Goog-Signature",
    )
)


def url_expiry(url: str) -> datetime | None:
    """The expiry encoded in a signed URL, or None when it carries none.

    Handles S3/GCS SigV4 (``X-Amz-Date`` + ``X-Amz-Expires``), S3 SigV2 and
    CloudFront (``Expires=<unix>``), and Discord-style CDNs (``ex=<hex unix>``).
    """
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return None
    q = {k.lower(): v[0] for k, v in query.items() if v}
    found: list[datetime] = []
    for date_key, exp_key in (("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires")):
        if date_key in q and exp_key in q:
            with contextlib.suppress(ValueError, OverflowError):  # huge X-Amz-Expires
                signed = datetime.strptime(q[date_key], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                found.append(signed + timedelta(seconds=int(q[exp_key])))
    for key in ("expires", "exp"):
        if key in q and q[key].isdigit():
            with contextlib.suppress(ValueError, OverflowError, OSError):
                found.append(datetime.fromtimestamp(int(q[key]), UTC))
    if "ex" in q:
        with contextlib.suppress(ValueError, OverflowError, OSError):
            found.append(datetime.fromtimestamp(int(q["ex"], 16), UTC))
    return min(found) if found else None


def earliest(*candidates: datetime | None) -> datetime | None:
    """The earliest of the given deadlines that are set."""
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def file_deadline(
    generation: Any, media: MediaRecord, retention: timedelta, retention_source: DeadlineSource
) -> tuple[datetime, str | None]:
    """A file's deadline and where it comes from: the expiry signed into its URL when
    that is the earlier, else its generation's (``expires_at`` with its
    ``expires_source``), else the account's retention rule after ``created_at``.
    ``generation`` is a stored row or a fresh :class:`~genvault.records.GenerationRecord`
    (whose ``created_at`` must be set)."""
    signed = media.url_expires_at
    if signed is not None and (generation.expires_at is None or signed < generation.expires_at):
        return signed, DeadlineSource.SIGNED_URL.value
    if generation.expires_at is not None:
        source = generation.expires_source
        return generation.expires_at, source.value if isinstance(source, DeadlineSource) else source
    return generation.created_at + retention, retention_source.value
