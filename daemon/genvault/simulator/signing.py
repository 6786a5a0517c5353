"""Signed CDN URLs: the query that signs a path for a while, and a CDN that checks it.

QuickRouter's relay hands out result URLs signed at query time, S3 SigV4-style
(``X-Amz-Date`` + ``X-Amz-Expires``) or Discord-style (``ex=&is=&hm=``).
:func:`sign_query` makes such a query, :func:`signature_expiry` reads one back, and
:class:`SigningServer` is a :class:`SimServer` whose CDN answers 403 for a signed
path whose signature is missing, forged or expired.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from genvault.simulator.messages import Request, Response
from genvault.simulator.server import SimServer

if TYPE_CHECKING:
    from genvault.simulator.server import _Handler

Signing = Literal["s3", "discord"]


def _digest(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def sign_query(path: str, style: Signing, signed_at: datetime, ttl: int, secret: bytes) -> str:
    """The query string that signs ``path`` from ``signed_at`` for ``ttl`` seconds."""
    at = int(signed_at.timestamp())
    if style == "discord":
        ex, is_ = f"{at + ttl:x}", f"{at:x}"
        return urlencode({"ex": ex, "is": is_, "hm": _digest(secret, path, ex, is_)}) + "&"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return urlencode(
        {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"AKIAQRSIMULATOR0001/{stamp[:8]}/us-east-1/s3/aws4_request",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(ttl),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": _digest(secret, path, stamp, str(ttl)),
        }
    )


def signature_expiry(path: str, query: dict[str, str], secret: bytes) -> datetime | None:
    """When a signed URL stops working, or None if its signature is missing or forged."""
    try:
        if "hm" in query:
            ex, is_ = query.get("ex", ""), query.get("is", "")
            if hmac.compare_digest(query["hm"], _digest(secret, path, ex, is_)):
                return datetime.fromtimestamp(int(ex, 16), UTC)
            return None
        stamp, ttl = query.get("X-Amz-Date", ""), query.get("X-Amz-Expires", "")
        given = query.get("X-Amz-Signature", "")
        if given and hmac.compare_digest(given, _digest(secret, path, stamp, ttl)):
            signed = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed + timedelta(seconds=int(ttl))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _denied(code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response.text(xml, status=403, content_type="application/xml")


class SigningServer(SimServer):
    """A SimServer whose CDN also checks the signature of signed paths (403 when bad/expired)."""

    def __init__(self, *, secret: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secret = secret
        self.signed_paths: set[str] = set()

    def _serve_media(self, h: _Handler, req: Request) -> None:
        if req.path in self.signed_paths and self.media_entry(req.path) is not None:
            expiry = signature_expiry(req.path, req.query, self.secret)
            denied: Response | None = None
            if expiry is None:
                denied = _denied("SignatureDoesNotMatch", "The request signature is invalid")
            elif self.clock.now() >= expiry:
                denied = _denied("AccessDenied", "Request has expired")
            if denied is not None:
                self.stats.record_media(req.path)
                self._send(h, req.method, denied, "media", bandwidth_bps=None)
                self.stats.record("media", 403)
                return
        super()._serve_media(h, req)
