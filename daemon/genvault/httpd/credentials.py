"""Reading the secret a request offers, and comparing it with the one configured.

Every door of the server (the intake, each account's webhook, ``/metrics``, the
status page) is opened by a secret: these are the only copies of the parsing and the
comparison, so no door can differ in how it reads a token or leak, through its
response time, how much of a guess matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def bearer(value: str | None) -> bytes | None:
    """The raw token of an ``Authorization: Bearer <token>`` header value, if it is one.

    WSGI hands header values over decoded as latin-1, so encoding back gives the bytes
    sent (anything else that cannot be latin-1 becomes ``?``: no token of ours).
    """
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1", "replace")


def query_token(query: Mapping[str, list[str]]) -> bytes | None:
    """The first ``?token=`` of a parsed query string, as UTF-8."""
    values = query.get("token")
    return values[0].encode("utf-8", "replace") if values else None


def same_secret(offered: bytes | None, expected: bytes) -> bool:
    """Constant time: how much of a guess matched must not show in the response time."""
    return offered is not None and hmac.compare_digest(offered, expected)
