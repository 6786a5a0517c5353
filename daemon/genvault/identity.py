"""When two sightings are the same thing: a file across re-signed URLs, a listing across reads.

The store keys files by :func:`url_key` and skips unchanged listings by
:func:`fingerprint`; the archive job (matching a refreshed URL to its file) and
the dry run (predicting what a sync would write) need the same answers without
a database, so they live here rather than in :mod:`genvault.store`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from genvault.expiry import SIGNATURE_PARAMS


def url_key(url: str) -> str:
    """Identity of a file: its URL without the parameters that change when re-signed."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in SIGNATURE_PARAMS
    ]
    stable = urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path, urlencode(query), "")
    )
    return hashlib.sha256(stable.encode()).hexdigest()


def fingerprint(raw: dict[str, Any]) -> str:
    """Identity of a listing's content: equal when the provider's JSON is unchanged."""
    return fingerprint_json(raw)[0]


def fingerprint_json(raw: dict[str, Any]) -> tuple[str, str | None]:
    """:func:`fingerprint` and the JSON text it hashes (keys sorted), for a caller that
    also stores ``raw`` as JSON (PostgreSQL's ``COPY`` of a page): serialized once.
    The text is None when ``raw`` is not plain JSON (the fingerprint then hashes the
    ``str()`` of what JSON cannot say, and storing ``raw`` must fail as it would)."""
    try:
        text = json.dumps(raw, sort_keys=True)
    except TypeError:
        return hashlib.sha256(
            json.dumps(raw, sort_keys=True, default=str).encode()
        ).hexdigest(), None
    return hashlib.sha256(text.encode()).hexdigest(), text
