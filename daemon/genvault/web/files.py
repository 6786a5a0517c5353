"""``GET /files/{asset_id}``: an archived image, streamed from storage for the page.

Only what the thumbnail grid needs, and nothing an attacker could steer:

* the asset is looked up by its numeric id (never by a key or a path from the
  URL), and served only when it is **archived** with an ``image/*`` type; every
  other id is a plain 404 (the same answer for "absent" and "not an image", so
  ids of videos or failed files cannot be told apart);
* the bytes are streamed in chunks from :meth:`Storage.open`, never read whole:
  an archive may hold multi-megabyte upscales, and a page of 24 thumbnails must
  not hold 24 of them in the daemon's memory;
* the content type comes from the database (what the CDN sent when it was
  archived), checked to be a well-formed ``image/...`` token so nothing odd
  reaches a header; ``nosniff`` and a sandboxing CSP make the browser treat the
  bytes as that image type only (an SVG opened directly runs no script);
* ``Cache-Control: private, max-age=86400``: an asset id's bytes never change
  once archived, and ``private`` keeps shared caches from storing what sits
  behind the token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from genvault.store import Store
from genvault.store.queries.activity import StoredFile

CHUNK = 64 * 1024
"""Bytes per write: small enough to bound memory per request, big enough to be fast."""

_IMAGE_TYPE = re.compile(r"image/[a-z0-9][a-z0-9.+-]{0,62}", re.IGNORECASE)

FILE_HEADERS: dict[str, str] = {
    "Cache-Control": "private, max-age=86400",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class ImageFile:
    key: str
    content_type: str
    """Without parameters, lower case: ``image/jpeg``."""
    size: int | None
    """From the database (verified when archived); None: ask the storage."""


def find_image(store: Store, asset_id: int) -> ImageFile | None:
    """The archived image ``asset_id``, or None when it is not one we serve."""
    row: StoredFile | None = store.stored_file(asset_id)
    if row is None or not row.content_type:
        return None
    content_type = row.content_type.split(";", 1)[0].strip().lower()
    if not _IMAGE_TYPE.fullmatch(content_type):
        return None
    return ImageFile(key=row.storage_key, content_type=content_type, size=row.size)


class ShortFileError(Exception):
    """The stored object ended before the size the database recorded."""


def iter_chunks(stream: BinaryIO, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``stream`` in pieces of at most ``chunk`` bytes.

    Raises :class:`ShortFileError` if the object is shorter: the response already
    announced ``size`` in ``Content-Length``, so the caller must drop the
    connection rather than let the client wait for bytes that never come.
    """
    left = size
    while left > 0:
        data = stream.read(min(chunk, left))
        if not data:
            raise ShortFileError(f"{left} of {size} bytes missing")
        left -= len(data)
        yield data
