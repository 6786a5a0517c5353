"""Deadlines: when a provider will stop serving a file.

Two sources, and an asset's deadline is the earlier of them: the provider's
rule (an ``expired_at`` field, or a documented retention such as Akool's 7
days) and the expiry signed into the URL itself (S3 SigV4, CloudFront,
Discord-style CDNs), which is often much shorter.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

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
