"""An S3 bucket (AWS or any S3-compatible endpoint) as the archive.

Two write paths, chosen by how long the stream turns out to be, because the
size is often unknown up front (chunked HTTP responses):

* **small** (ends within ``multipart_threshold``): the bytes are already in
  memory after the probe read, so one ``PutObject`` carries data, content type
  and the sha256 metadata. Nothing is sent before the source reached EOF, so a
  failing source leaves nothing behind. With ``durable=False`` (the archive pass)
  that request is handed to the storage's uploader threads and ``put`` returns at
  once, size and sha256 known from the probe: the worker's provider connection goes
  on to the next download while the PUT runs, and :meth:`S3Storage.sync` waits for
  it and reports its failure (:mod:`genvault.storage.s3_deferred`: guarantees, caps).
* **large**: our own streaming multipart upload (:mod:`genvault.storage.s3_multipart`):
  the probed bytes are the first part, the rest is copied chunk by chunk into reused
  part buffers, at most three per file, while two parts upload (never the whole
  file). The sha256 is only known at the end, so it is written afterwards by an
  in-place ``CopyObject`` with ``MetadataDirective=REPLACE`` (a server-side metadata
  update, no data transfer through us), after checking that the object is ours and
  has exactly the size read. Any failure aborts the multipart upload once the parts
  in flight are done; the source's exception is re-raised as itself.

The sha256 of the object is computed as the bytes arrive, in the thread that
downloads them (:class:`~genvault.storage.base.HashingReader`), never by re-reading.

Credentials come from boto3's standard chain (env, profile, instance role),
never from genvault's config. For S3-compatible services that reject boto3's
default CRC checksums, set ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``
in the environment; botocore honours it without code changes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import secrets
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import boto3
import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from genvault.crashpoints import crash_point
from genvault.errors import StorageError
from genvault.storage.base import HashingReader, StoredObject
from genvault.storage.keys import MAX_KEY_BYTES, check_key
from genvault.storage.s3_deferred import MAX_BYTES, MAX_UPLOADS, DeferredUploads
from genvault.storage.s3_multipart import (
    MAX_PARTS,
    PART_WORKERS,
    MultipartUpload,
    as_body,
    probe,
    upload_parts,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

MiB = 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024**3
"""CopyObject's limit; larger objects need a multipart (managed) copy."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"
METADATA_BUDGET = 2048
"""S3 limits user metadata (keys plus values) to 2 KB."""
_UPLOAD_TOKEN = "genvault-upload"
PROBE_CONNECT_TIMEOUT = 5.0
PROBE_READ_TIMEOUT = 10.0
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{code} (HTTP {status}): {err.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


_BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    boto3.exceptions.Boto3Error,
)


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turn botocore/boto3 failures into StorageError (transient for the jobs)."""
    try:
        yield
    except _BACKEND_ERRORS as exc:
        raise StorageError(f"S3 {what}: {_describe(exc)}") from exc


def _is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _NOT_FOUND or status == 404


class _BodyStream(io.RawIOBase):
    """A GetObject body as a raw stream whose read failures are StorageErrors."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _s3_errors(f"reading {self._key}"):
            data: bytes = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


def _clean_metadata(user: Mapping[str, str] | None, fixed: Mapping[str, str]) -> dict[str, str]:
    """User metadata made acceptable to S3, plus ``fixed`` entries kept verbatim.

    S3 metadata travels in HTTP headers: keys are lower-cased header tokens,
    values are percent-encoded unless printable ASCII, and the whole set must
    fit in 2 KB, so the longest values (say a signed source URL) are cut rather
    than failing the archive of a file over a label.
    """
    out: dict[str, str] = {}
    for raw_key, raw_value in (user or {}).items():
        key = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in raw_key)
        key = key.lower().strip("-") or "x"
        value = str(raw_value)
        if not all(" " <= c <= "~" for c in value):
            value = quote(value, safe=_PRINTABLE_ASCII)
        out[key] = value.strip()
    out.update(fixed)

    def size() -> int:
        return sum(len(k) + len(v) for k, v in out.items())

    while size() > METADATA_BUDGET:
        cuttable = [k for k in out if k not in fixed and len(out[k]) > 3]
        if not cuttable:
            raise StorageError("S3 metadata keys alone exceed the 2 KB limit")
        longest = max(cuttable, key=lambda k: len(out[k]))
        keep = max(0, len(out[longest]) - (size() - METADATA_BUDGET) - 3)
        out[longest] = out[longest][:keep] + "..."
    return out


class S3Storage:
    """Archive into ``s3://bucket/prefix``; see the module docstring for the write paths."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 8 * MiB,
        multipart_chunk: int = 8 * MiB,
        deferred_uploads: int = MAX_UPLOADS,
        deferred_bytes: int = MAX_BYTES,
    ) -> None:
        if not bucket:
            raise ValueError("bucket must not be empty")
        if multipart_threshold < 5 * MiB or multipart_chunk < 5 * MiB:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk = multipart_chunk
        config = Config(
            max_pool_connections=64,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        # A private session: boto3's default session is not safe to share across threads.
        session = boto3.session.Session()
        self._client: S3Client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        # Probes (readiness, the storage breaker) get one try and short timeouts: a
        # probe is repeated anyway, and behind the five retries of the client above a
        # refused connection took seconds to report, a blackholed one minutes.
        self._probe_client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=config.merge(
                Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=PROBE_CONNECT_TIMEOUT,
                    read_timeout=PROBE_READ_TIMEOUT,
                    max_pool_connections=2,
                )
            ),
        )
        # Threads start on first use and then serve every multipart upload of this storage.
        self._part_pool = ThreadPoolExecutor(PART_WORKERS, thread_name_prefix="s3-part")
        # One-part objects put with durable=False, sent here while the worker goes on.
        self._deferred = DeferredUploads(max_uploads=deferred_uploads, max_bytes=deferred_bytes)
        # AWS_REQUEST_CHECKSUM_CALCULATION=when_required marks a server that
        # mishandles flexible checksums; then we request none ourselves either.
        self._checksums = (
            getattr(self._client.meta.config, "request_checksum_calculation", None)
            != "when_required"
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    @property
    def client(self) -> S3Client:
        """The underlying boto3 client (tests and ``verify`` tooling)."""
        return self._client

    def _full_key(self, key: str) -> str:
        check_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode()) > MAX_KEY_BYTES:
            raise StorageError(f"storage key with prefix exceeds {MAX_KEY_BYTES} bytes: {key!r}")
        return full

    def _transfer_config(self, chunk: int) -> TransferConfig:
        """For boto3's managed copy (objects over 5 GB: see :meth:`_record_sha256`)."""
        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=chunk,
            max_concurrency=4,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        return config

    # ------------------------------------------------------------------ protocol

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
        """Stream ``source`` to ``key``: one PutObject when small, multipart when large.

        ``size_hint`` sizes the first buffer of a small file, and widens the part size
        when 10,000 parts would not hold the announced size; the actual length is
        whatever the stream has.

        ``durable=False`` and a one-part object: the PutObject is queued to the uploader
        threads and this returns without waiting for it (possibly first waiting for
        room under the caps, or for an earlier upload of ``key``); the object exists
        once :meth:`sync` of ``key`` returned. While a deferred upload has failed
        unreported, puts are synchronous (a storage outage surfaces in the worker).
        Otherwise, and for every multipart upload, S3 has stored the object when this
        returns.
        """
        full_key = self._full_key(key)
        self._deferred.wait_for(key)  # an older deferred PUT of the key must not land last
        ctype = content_type or DEFAULT_CONTENT_TYPE
        reader = HashingReader(source)  # hashes each chunk in this thread, as it arrives
        part_size = self.multipart_chunk
        if size_hint:
            part_size = max(part_size, math.ceil(size_hint / (MAX_PARTS * 0.9)))
        head = probe(reader, self.multipart_threshold, part_size, size_hint)
        if head.at_end:
            meta = _clean_metadata(metadata, {"sha256": reader.sha256})
            body = head.body()
            if durable or self._deferred.failing:  # failing: judged in the worker again
                self._put_object(full_key, body, ctype, meta)
            else:
                send = functools.partial(self._put_deferred, full_key, body, ctype, meta)
                self._deferred.submit(key, len(body), send)
            return StoredObject(key=key, size=reader.size, sha256=reader.sha256)
        token = secrets.token_hex(16)
        upload = MultipartUpload(
            self._client,
            self.bucket,
            full_key,
            part_size,
            checksums=self._checksums,
            pool=self._part_pool,
        )
        try:
            upload.start(ctype, _clean_metadata(metadata, {_UPLOAD_TOKEN: token}))
            # The probe's buffers become the first parts, then are refilled.
            upload_parts(upload, reader, head.full, head.buf, head.filled, part_size)
            upload.complete()
        except BaseException as exc:
            upload.abort()
            if isinstance(exc, _BACKEND_ERRORS):
                raise StorageError(f"S3 upload {full_key}: {_describe(exc)}") from exc
            raise  # the source's own exception (a TransientDownloadError, say), as itself
        crash_point("s3.before_sha256_copy")
        self._record_sha256(full_key, token, reader, ctype, metadata)
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def _put_object(self, full: str, body: bytearray, ctype: str, meta: dict[str, str]) -> None:
        """One PutObject of a whole object (in the caller's thread or an uploader's)."""
        with _s3_errors(f"put {full}"):
            self._client.put_object(
                Bucket=self.bucket, Key=full, Body=as_body(body), ContentType=ctype, Metadata=meta
            )

    def _put_deferred(self, full: str, body: bytearray, ctype: str, meta: dict[str, str]) -> None:
        """:meth:`_put_object` on an uploader thread (``put(..., durable=False)``)."""
        crash_point("s3.deferred_put")
        self._put_object(full, body, ctype, meta)

    def _record_sha256(
        self,
        full: str,
        token: str,
        reader: HashingReader,
        ctype: str,
        metadata: dict[str, str] | None,
    ) -> None:
        """Write the sha256 into the metadata of the object just uploaded.

        The copy is conditional on the ETag of *our* upload (recognised by a
        random token) and on its size being what was read, so a concurrent
        writer's bytes (or an upload short of a part) never get our hash. If
        it fails, the object is removed: an object without its hash would be
        trusted by nobody, and the caller retries the whole put.
        """
        final_meta = _clean_metadata(metadata, {"sha256": reader.sha256})
        try:
            with _s3_errors(f"recording sha256 of {full}"):
                head = self._client.head_object(Bucket=self.bucket, Key=full)
                if head.get("Metadata", {}).get(_UPLOAD_TOKEN) != token:
                    raise StorageError(f"S3 object {full} was overwritten during the upload")
                if int(head["ContentLength"]) != reader.size:
                    # A part lost between our reads and the completed object.
                    raise StorageError(
                        f"S3 object {full} holds {head['ContentLength']} bytes, "
                        f"{reader.size} were read"
                    )
                etag = head["ETag"]
                source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": full}
                args: dict[str, Any] = {
                    "CopySourceIfMatch": etag,
                    "MetadataDirective": "REPLACE",
                    "Metadata": final_meta,
                    "ContentType": ctype,
                }
                if self._checksums:
                    # Without it, moto 5.2 keeps the parts' composite CRC32 on the
                    # copy and every later GET fails boto3's checksum validation.
                    # Asking for a fresh full-object CRC32 is right on AWS too.
                    args["ChecksumAlgorithm"] = "CRC32"
                if reader.size <= MAX_SINGLE_COPY:
                    self._client.copy_object(
                        Bucket=self.bucket, Key=full, CopySource=source, **args
                    )
                else:
                    self._client.copy(
                        source,
                        self.bucket,
                        full,
                        ExtraArgs=args,
                        Config=self._transfer_config(self.multipart_chunk),
                    )
        except StorageError:
            with contextlib.suppress(*_BACKEND_ERRORS):
                current = self._client.head_object(Bucket=self.bucket, Key=full)
                if current.get("Metadata", {}).get(_UPLOAD_TOKEN) == token:
                    self._client.delete_object(Bucket=self.bucket, Key=full)
            raise

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Store a small in-memory object (sidecars); one request below the threshold,
        deferred like :meth:`put`'s when ``durable=False``."""
        return self.put(
            key,
            io.BytesIO(data),
            size_hint=len(data),
            content_type=content_type,
            metadata=metadata,
            durable=durable,
        )

    def sync(self, keys: Iterable[str] | None = None) -> None:
        """Wait for the deferred PutObjects of ``keys`` (all when None); SyncError naming
        each key whose request failed (the others are stored). Other writes are durable
        when their request (or the multipart completion) returned: nothing to wait for."""
        self._deferred.sync(keys)

    def close(self) -> None:
        """Finish the deferred uploads (unreported ones are logged) and stop the threads;
        the storage accepts no deferred put afterwards."""
        self._deferred.close()
        self._part_pool.shutdown(wait=True)

    def stat(self, key: str) -> StoredObject | None:
        """HeadObject: size and the ``sha256`` metadata; None when absent."""
        full = self._full_key(key)
        with _s3_errors(f"head {full}"):
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=full)
            except botocore.exceptions.ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
        sha = head.get("Metadata", {}).get("sha256")
        return StoredObject(key=key, size=int(head["ContentLength"]), sha256=sha or None)

    def open(self, key: str) -> BinaryIO:
        """A buffered stream of the object's bytes; StorageError when absent or on failure."""
        full = self._full_key(key)
        with _s3_errors(f"get {full}"):
            response = self._client.get_object(Bucket=self.bucket, Key=full)
        return io.BufferedReader(_BodyStream(response["Body"], full), buffer_size=1024 * 1024)

    def location(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        return f"s3://{self.bucket}/{self._full_key(key)}"

    def cleanup(self, older_than_seconds: float = 3600) -> int:
        """Abort multipart uploads under the prefix started over ``older_than_seconds`` ago.

        The age guard matters with several replicas: a peer's upload in flight
        right now is younger than an hour and is left alone. Returns the count.
        """
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        list_prefix = f"{self.prefix}/" if self.prefix else ""
        aborted = 0
        with _s3_errors(f"cleanup of {self.url}"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
                for upload in page.get("Uploads", []):
                    initiated = upload.get("Initiated")
                    if initiated is None or initiated > cutoff:
                        continue
                    try:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except botocore.exceptions.ClientError as exc:
                        if _is_not_found(exc) or "NoSuchUpload" in _describe(exc):
                            continue  # a peer aborted or completed it meanwhile
                        raise
                    aborted += 1
        return aborted

    def check(self) -> None:
        """HeadBucket: the endpoint answers, the bucket exists, credentials are accepted.

        One request, no retries, a few seconds at most (see ``_probe_client``).
        """
        with _s3_errors(f"head bucket {self.bucket}"):
            self._probe_client.head_bucket(Bucket=self.bucket)
