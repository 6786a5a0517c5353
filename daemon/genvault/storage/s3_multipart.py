"""The large-file write path of :class:`~genvault.storage.s3.S3Storage`: our own
multipart upload, fed from reused part buffers.

Why not boto3's managed transfer (``upload_fileobj``), which this replaced: a profile of
``bench throughput`` (``bench/profiles/s3.before.*``) put a sixth of genvault's CPU in
page faults and ``munmap``/``madvise`` of a fresh 8 MiB ``bytes`` per part (the join of
~128 received chunks, then s3transfer's copies), and another sixth in s3transfer's
futures and ``ReadFileChunk``, which botocore then reads three times over in 1 MiB and
16 KiB pieces (SigV4 payload hash, CRC32, and a 16 KiB ``send`` each), after an
``Expect: 100-continue`` round trip per part. Here:

* the thread that downloads copies each received chunk once, straight into a
  ``bytearray`` part buffer (the chunk was already hashed by
  :class:`~genvault.storage.base.HashingReader` in that same thread, as it arrived);
* a full buffer is handed to ``upload_part`` as is: botocore hashes and checksums a
  buffer in one call each and urllib3 sends it with one ``sendall``, no copy;
* buffers are reused: :data:`PARTS_IN_FLIGHT` uploading plus the one being filled is
  all the memory a file takes (3 x 8 MiB by default), allocated once per file.

All or nothing: any failure (the source's, a part's, completion's) waits for the parts
still in flight and then aborts the upload, so no part survives it; the caller re-raises
the source's exception as itself and maps S3's to :class:`StorageError`.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import botocore.exceptions

from genvault.crashpoints import crash_point
from genvault.errors import StorageError
from genvault.storage.base import HashingReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

PART_WORKERS = 16
"""Threads that upload parts, shared by every put of one storage (twice the default
``archive.concurrency``): a pool per file started two threads per file, which the
profile showed (``Thread.start`` under ``submit``). Beyond 8 files at once, parts
queue for a thread; each file still holds at most ``PARTS_IN_FLIGHT + 1`` buffers."""
PARTS_IN_FLIGHT = 2
"""Parts uploading at once per file while the next one fills: what boto3's transfer
did here before (``max_in_memory_upload_chunks = 2`` capped its four threads at two
parts), and the memory bench's budget (a 2 GB file within 150 MB peak RSS)."""
MAX_PARTS = 10_000
CHECKSUM = "CRC32"
"""Asked for per part when the client computes flexible checksums (as s3transfer did):
each part then carries its CRC32, and completion lists them."""


def as_body(buf: bytearray) -> bytes:
    """``buf`` as a request body, uncopied. botocore accepts a ``bytearray`` (its
    validator lists it; the type stubs do not) and treats it best: hashed and
    checksummed in one call each, sent with one ``sendall``, no ``Expect: 100-continue``.
    A ``bytes`` body would be wrapped in a ``BytesIO`` and read in 16 KiB pieces."""
    return cast("bytes", buf)


def fill(reader: HashingReader, buf: bytearray, filled: int, limit: int) -> int:
    """Copy the source into ``buf[filled:limit]`` piece by piece; the new fill level.

    Less than ``limit`` only at the end of the source. Each piece is one received chunk
    (``read1``), so the only copy of a byte between the socket's chunk and S3 is this one.
    """
    while filled < limit:
        piece = reader.read1(limit - filled)
        if not piece:
            break
        end = filled + len(piece)
        buf[filled:end] = piece
        filled = end
    return filled


@dataclass
class Probe:
    """The head of a stream, read before deciding how to store it (:func:`probe`)."""

    full: list[bytearray]
    """Full parts of ``part_size`` bytes (one with the default settings), in order."""
    buf: bytearray
    filled: int
    """``buf[:filled]`` follows the full parts."""
    at_end: bool
    """The stream ended within the threshold: one PutObject of :meth:`body` stores it."""

    def body(self) -> bytearray:
        """All the bytes probed, as one buffer: ``buf`` itself (shrunk in place, no copy)
        unless the threshold is larger than a part."""
        if not self.full:
            del self.buf[self.filled :]
            return self.buf
        out = bytearray()
        for part in self.full:
            out += part
        out += memoryview(self.buf)[: self.filled]
        return out


def probe(reader: HashingReader, threshold: int, part_size: int, size_hint: int | None) -> Probe:
    """Read up to ``threshold + 1`` bytes: at most ``threshold`` means a small object.

    Nothing is sent before this decides, so a source that fails early leaves nothing
    behind. The bytes go straight into part buffers, which become the first parts if
    the stream is longer. A file announced as small gets a buffer of its size (plus the
    byte that proves the end) instead of a whole part; if it turns out longer than
    announced, that buffer is copied once into a full-size one.
    """
    small = size_hint is not None and size_hint < min(threshold, part_size)
    buf = bytearray(size_hint + 1 if small and size_hint is not None else part_size)
    full: list[bytearray] = []
    filled = total = 0
    while total <= threshold:
        if filled == len(buf):
            if len(buf) < part_size:  # announced smaller than it is
                grown = bytearray(part_size)
                grown[:filled] = buf
                buf = grown
            else:
                full.append(buf)
                buf, filled = bytearray(part_size), 0
        piece = reader.read1(min(len(buf) - filled, threshold + 1 - total))
        if not piece:
            return Probe(full, buf, filled, at_end=True)
        end = filled + len(piece)
        buf[filled:end] = piece
        filled = end
        total += len(piece)
    return Probe(full, buf, filled, at_end=False)


class MultipartUpload:
    """One open multipart upload and the parts on their way; see the module docstring.

    Use: :meth:`start`, then :meth:`send` each part in order and take the next buffer
    to fill from :meth:`buffer` (which waits while :data:`PARTS_IN_FLIGHT` parts are
    uploading), then :meth:`complete`; on any exception :meth:`abort`. Part numbers
    follow the order of :meth:`send`, so the object is the parts in the order they were
    read, whatever order they finish in.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        part_size: int,
        *,
        checksums: bool,
        pool: ThreadPoolExecutor,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._checksums = checksums
        self.upload_id: str | None = None
        self._pool = pool
        self._in_flight: dict[Future[CompletedPartTypeDef], bytearray] = {}
        self._done: list[CompletedPartTypeDef] = []
        self._spare: list[bytearray] = []
        self._next_number = 1

    def start(self, content_type: str, metadata: dict[str, str]) -> None:
        args: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata}
        if self._checksums:
            args["ChecksumAlgorithm"] = CHECKSUM
        response = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key, **args)
        self.upload_id = response["UploadId"]

    def send(self, buf: bytearray) -> None:
        """Queue ``buf`` as the next part. Raises the first failure of an earlier part
        (then :meth:`abort`), so a dead upload stops the download within a part or two."""
        assert self.upload_id is not None, "start() first"
        number = self._next_number
        if number > MAX_PARTS:
            raise StorageError(f"S3 upload {self._key}: more than {MAX_PARTS} parts")
        self._next_number += 1
        self._in_flight[self._pool.submit(self._upload, number, buf)] = buf
        self._collect(block=False)

    def buffer(self) -> bytearray:
        """A buffer of ``part_size`` bytes to fill next: a part's that has been uploaded,
        or a new one while fewer than :data:`PARTS_IN_FLIGHT` are uploading; otherwise
        wait for one. So a file never holds more than ``PARTS_IN_FLIGHT + 1`` buffers."""
        while not self._spare and len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._collect(block=True)
        return self._spare.pop() if self._spare else bytearray(self._part_size)

    def _upload(self, number: int, body: bytearray) -> CompletedPartTypeDef:
        args: dict[str, Any] = {"ChecksumAlgorithm": CHECKSUM} if self._checksums else {}
        assert self.upload_id is not None
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=as_body(body),
            **args,
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if self._checksums and "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def _collect(self, *, block: bool) -> None:
        """Take in finished parts (waiting for one when ``block``); their buffers are
        free again. Re-raises a part's failure."""
        if not self._in_flight:
            return
        if block:
            finished, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)
        else:
            finished = {f for f in self._in_flight if f.done()}
        for fut in finished:
            buf = self._in_flight.pop(fut)
            self._done.append(fut.result())  # raises the part's own error
            self._spare.append(buf)

    def complete(self) -> None:
        """Wait for every part, then complete the upload with the parts in order."""
        while self._in_flight:
            self._collect(block=True)
        parts = sorted(self._done, key=lambda p: p["PartNumber"])
        if [p["PartNumber"] for p in parts] != list(range(1, self._next_number)):
            raise StorageError(f"S3 upload {self._key}: a part is missing")
        assert self.upload_id is not None
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        """Let the parts in flight finish (a part landing after the abort would outlive
        it), then abort the upload. Never raises: the caller re-raises the original
        failure, and start-up ``cleanup`` removes an upload whose abort failed here."""
        for fut in list(self._in_flight):
            fut.cancel()
        wait(self._in_flight)
        self._in_flight.clear()
        if self.upload_id is None:
            return
        with contextlib.suppress(
            botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError
        ):
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self.upload_id
            )


def upload_parts(
    upload: MultipartUpload,
    reader: HashingReader,
    full: list[bytearray],
    buf: bytearray,
    filled: int,
    part_size: int,
) -> None:
    """Send the probe's ``full`` parts, then fill and send the rest of the source.

    ``buf`` already holds ``filled`` bytes (the probe's look past the threshold). The
    crash point ``s3.multipart_read`` is hit before each part past the probe is read and
    once more when the end is found, with the last part on its way: at least twice per
    file, as with the managed transfer before (the kill harness counts on it).
    """
    for part in full:
        upload.send(part)
    full.clear()
    at_end = False
    while True:
        crash_point("s3.multipart_read")
        if at_end:
            return
        filled = fill(reader, buf, filled, part_size)
        if filled == 0:
            return
        at_end = filled < part_size
        if at_end:
            del buf[filled:]  # the last part: shrunk in place, never reused
        upload.send(buf)
        if not at_end:
            buf = upload.buffer()
            filled = 0
