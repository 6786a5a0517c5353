"""The Storage protocol: where archived files go.

A backend receives a readable byte stream and must either store *all* of it
under the key or leave nothing behind (a temp file renamed into place, a
multipart upload completed or aborted). It computes size and sha256 while the
bytes pass through, so callers never need a second read to verify.

Backends: :mod:`genvault.storage.local` (a folder) and :mod:`genvault.storage.s3`
(boto3, any S3-compatible endpoint). :func:`open_storage` picks one from a URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

CHUNK_SIZE = 1024 * 1024
"""The most bytes one read of a source may return (``HashingReader.read1``)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a backend reports about one stored object."""

    key: str
    size: int
    sha256: str | None
    """Hex digest; None only when an existing object carries no genvault metadata."""


@runtime_checkable
class Storage(Protocol):
    """Where archived media and sidecars are written."""

    url: str
    """The configured location, e.g. ``file:///srv/archive`` or ``s3://bucket/prefix``."""

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        size_hint: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Stream ``source`` to ``key`` until EOF; all or nothing.

        An exception raised by ``source.read`` (a truncated download, say)
        aborts the write and propagates unchanged; nothing is left at ``key``
        or in temporary space. ``metadata`` gains ``sha256`` where the backend
        can record it. ``durable=False``: the object may still be in the page
        cache (a folder) or on its way (S3) when this returns, until :meth:`sync` is
        called for ``key`` (a folder then flushes a whole batch at once instead of each
        file and folder on its own; S3's worker goes on while its upload runs).
        """
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Store a small object held in memory (sidecars)."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """Size and recorded sha256 of ``key``, or None when absent."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the stored bytes (for ``verify`` and the status page)."""
        ...

    def location(self, key: str) -> str:
        """A URI a person can use to find ``key`` (``s3://b/p/k``, ``file:///…``)."""
        ...

    def cleanup(self, older_than_seconds: float = ...) -> int:
        """Remove leftovers of interrupted writes (temp files, open multipart uploads).

        Only those older than ``older_than_seconds`` (each backend has its own default,
        see ``storage.stale_upload_seconds``), so a peer's write in flight survives.
        Returns how many were removed. Called at start-up, when no write of this
        process is in flight.
        """
        ...

    def check(self) -> None:
        """Raise StorageError unless the backend is reachable and writable (readiness)."""
        ...

    def sync(self, keys: Iterable[str] | None = None) -> None:
        """Make the objects written with ``put(..., durable=False)`` under ``keys`` (every
        such object when None) durable; StorageError if one may not be.

        A caller that defers durability must call this, and see it return, before it
        records anywhere that those objects are stored. A folder fsyncs them here; S3
        waits for the PutObjects of small objects, which ``put`` handed to uploader
        threads and did not wait for (multipart uploads are complete when ``put``
        returns). A :class:`~genvault.errors.SyncError` names the keys that failed (the
        other keys are durable); a plain StorageError leaves every key in doubt.
        """
        ...


class HashingReader:
    """Wraps a binary stream, counting bytes and hashing them as they are read."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._read1 = getattr(source, "read1", None) or source.read
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def read1(self, n: int = CHUNK_SIZE) -> bytes:
        """At most ``n`` bytes, as they arrive (``b""`` only at EOF).

        For a source with ``read1`` (a download hands out each received chunk) this
        joins nothing: the chunk is hashed and handed on as it came, so a writer
        copies it once, into the file. Other sources are read with ``read(n)``.
        """
        data = self._read1(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    def readinto1(self, buffer: memoryview) -> int:
        """Receive up to ``len(buffer)`` bytes into ``buffer`` and hash them (0 only at EOF).

        A writer that owns one reusable buffer hashes and writes each piece from it: a
        download read from the socket lands there directly (``MediaStream.readinto1``).
        Sources without ``readinto1`` are read with ``read1`` and copied in.
        """
        readinto1 = getattr(self._source, "readinto1", None)
        if readinto1 is not None:
            n: int = readinto1(buffer)
        else:
            data = self._read1(len(buffer))
            n = len(data)
            buffer[:n] = data
        if n:
            self._hash.update(buffer[:n])
            self.size += n
        return n

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()
