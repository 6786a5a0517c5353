"""The S3 write path's own multipart upload (storage/s3_multipart.py), against moto over HTTP.

What a wrong implementation would get wrong, each checked on the bytes S3 ends up
holding (downloaded with a separate client), never on what the code says it did:

* a part lost, repeated or put in the wrong place (parts finish out of order here on
  purpose), or a piece of a received chunk dropped at a part boundary;
* the sha256 recorded in the metadata and returned not being the stored bytes';
* a failing part leaving its multipart upload (and the parts already stored) behind,
  or the download carrying on to the end for an upload that is already dead.

The failing part is refused by the server for real: a botocore hook gives that one
request a part number S3 does not accept (above 10,000), and moto answers 400. Hooks
here only delay or alter *requests*; every response is the server's.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from genvault.errors import StorageError
from genvault.storage.s3 import S3Storage
from tests.fixtures.s3 import S3Server, s3_bucket, s3_server  # noqa: F401

MiB = 1024 * 1024
PREFIX = "mp"

pytestmark = pytest.mark.s3


class ChunkSource:
    """A download-like source: ``read1`` hands out received chunks of uneven sizes.

    Chunk sizes cycle through values that do not divide a part (64 KiB, 1 byte,
    100,003 bytes, ...), so part boundaries fall inside chunks; every byte depends on
    its offset, so a dropped, repeated or misplaced piece changes the object's hash.
    """

    SIZES = (64 * 1024, 1, 100_003, 7, 64 * 1024, 333_333)

    def __init__(self, size: int, *, seed: int = 0, fail_at: int | None = None) -> None:
        self.size = size
        self.pos = 0
        self.fail_at = fail_at
        self.raised: BaseException | None = None
        self._rng = random.Random(seed)
        self._data = random.Random(seed).randbytes(MiB + 1)  # period not dividing a part
        self._turn = 0

    def _take(self, n: int) -> bytes:
        if self.fail_at is not None and self.pos >= self.fail_at:
            self.raised = RuntimeError(f"source broke at {self.pos}")
            raise self.raised
        n = min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            at = (self.pos + len(out)) % len(self._data)
            out += self._data[at : at + n - len(out)]
        self.pos += n
        return bytes(out)

    def read1(self, n: int = -1) -> bytes:
        chunk = self.SIZES[self._turn % len(self.SIZES)]
        self._turn += 1
        return self._take(chunk if n is None or n < 0 else min(n, chunk))

    def read(self, n: int = -1) -> bytes:
        return self._take(self.size if n is None or n < 0 else n)

    def readable(self) -> bool:
        return True

    @classmethod
    def digest(cls, size: int, seed: int = 0) -> str:
        return hashlib.sha256(cls(size, seed=seed).read(size)).hexdigest()


def _storage(
    endpoint: str, bucket: str, threshold: int = 5 * MiB, chunk: int = 5 * MiB
) -> S3Storage:
    return S3Storage(
        bucket,
        PREFIX,
        endpoint_url=endpoint,
        region="us-east-1",
        multipart_threshold=threshold,
        multipart_chunk=chunk,
    )


def _stored(server: S3Server, bucket: str, key: str) -> tuple[str, str | None]:
    """(sha256 of the bytes, the sha256 metadata) as S3 has them, via another client."""
    obj = server.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
    return hashlib.sha256(obj["Body"].read()).hexdigest(), obj["Metadata"].get("sha256")


def _count_requests(storage: S3Storage) -> list[str]:
    """The names of the requests ``storage`` sends from now on (observed, not changed)."""
    calls: list[str] = []
    storage.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    return calls


def _open_uploads(server: S3Server, bucket: str) -> list[str]:
    uploads = server.client().list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in uploads.get("Uploads", [])]


def _part_number(request: Any) -> int:
    return int(parse_qs(urlsplit(request.url).query).get("partNumber", ["0"])[0])


@pytest.mark.parametrize(
    ("size", "threshold", "chunk", "parts"),
    [
        (5 * MiB, 5 * MiB, 5 * MiB, 1),  # exactly the threshold: one PutObject
        (5 * MiB + 1, 5 * MiB, 5 * MiB, 2),  # one byte over: a part of 1 byte
        (10 * MiB, 5 * MiB, 5 * MiB, 2),  # ends on a part boundary
        (23 * MiB + 12_345, 5 * MiB, 5 * MiB, 5),
        (11 * MiB, 12 * MiB, 5 * MiB, 1),  # threshold above the part size: still one put
        (13 * MiB, 12 * MiB, 5 * MiB, 3),
        (17 * MiB, 5 * MiB, 6 * MiB, 3),  # threshold below the part size
    ],
)
def test_every_byte_lands_in_order(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    size: int,
    threshold: int,
    chunk: int,
    parts: int,
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket, threshold, chunk)
    calls = _count_requests(storage)
    stored = storage.put("k.bin", ChunkSource(size, seed=size))  # type: ignore[arg-type]
    expected = ChunkSource.digest(size, seed=size)
    assert (stored.size, stored.sha256) == (size, expected)
    assert _stored(s3_server, bucket, "k.bin") == (expected, expected)
    if parts == 1:
        assert calls == ["PutObject"]
    else:
        assert calls.count("UploadPart") == parts and "PutObject" not in calls
    assert _open_uploads(s3_server, bucket) == []


@pytest.mark.parametrize("hint", [MiB, 7 * MiB, 40 * MiB], ids=["short", "right", "long"])
def test_a_wrong_size_hint_changes_nothing(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    hint: int,
) -> None:
    """The hint sizes the first buffer; a stream longer or shorter than announced is
    stored whole all the same (a short hint's buffer is grown, not overrun)."""
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    size = 7 * MiB + 3
    stored = storage.put("h.bin", ChunkSource(size, seed=9), size_hint=hint)  # type: ignore[arg-type]
    expected = ChunkSource.digest(size, seed=9)
    assert (stored.size, stored.sha256) == (size, expected)
    assert _stored(s3_server, bucket, "h.bin") == (expected, expected)


def test_parts_finishing_out_of_order_are_stored_in_order(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    """Part 1 is held back until part 2 has been stored: the object must still be
    part 1 then part 2 (an implementation numbering parts as they finish fails)."""
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    second_stored = threading.Event()
    finished: list[int] = []

    def hold_first(request: Any, **_: Any) -> None:
        if _part_number(request) == 1:
            second_stored.wait(10)

    def note(http_response: Any, parsed: Any, model: Any, **kwargs: Any) -> None:
        number = kwargs["context"].get("genvault_part")
        if number is not None:
            finished.append(number)
            if number == 2:
                second_stored.set()

    def tag(params: Any, context: Any, **_: Any) -> None:
        context["genvault_part"] = params["PartNumber"]

    events = storage.client.meta.events
    events.register("before-send.s3.UploadPart", hold_first)
    events.register("before-parameter-build.s3.UploadPart", tag)
    events.register("after-call.s3.UploadPart", note)
    size = 12 * MiB + 5
    stored = storage.put("o.bin", ChunkSource(size, seed=3))  # type: ignore[arg-type]
    expected = ChunkSource.digest(size, seed=3)
    assert finished[0] == 2 and sorted(finished) == [1, 2, 3]  # part 1 was held back
    assert stored.sha256 == expected
    assert _stored(s3_server, bucket, "o.bin") == (expected, expected)


def test_a_refused_part_aborts_the_upload_and_stops_reading(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    sent: list[tuple[str, int]] = []

    def refuse_second(params: Any, **_: Any) -> None:
        if params["PartNumber"] == 2:
            params["PartNumber"] = 10_001  # S3 accepts 1..10,000: a real 400 from the server

    def record(request: Any, **_: Any) -> None:
        name = request.context.get("genvault_op", "?")
        sent.append((name, _part_number(request)))

    def name_op(model: Any, context: Any, **_: Any) -> None:
        context["genvault_op"] = model.name

    events = storage.client.meta.events
    events.register("before-parameter-build.s3.UploadPart", refuse_second)
    events.register("before-parameter-build.s3.*", name_op)
    events.register("before-send.s3.*", record)
    source = ChunkSource(200 * MiB, seed=4)
    with pytest.raises(StorageError, match=r"S3 upload .*dead\.bin"):
        storage.put("dead.bin", source)  # type: ignore[arg-type]
    assert _open_uploads(s3_server, bucket) == []  # aborted: no parts left behind
    assert storage.stat("dead.bin") is None
    ops = [name for name, _ in sent]
    assert ops.count("AbortMultipartUpload") == 1 and "CompleteMultipartUpload" not in ops
    abort_at = ops.index("AbortMultipartUpload")
    assert "UploadPart" not in ops[abort_at:]  # every part was done before the abort
    # The failure stopped the download within a few parts, not at the end of 200 MB.
    assert source.pos <= 6 * 5 * MiB, source.pos


def test_a_failing_source_mid_part_aborts_with_its_own_error(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    source = ChunkSource(40 * MiB, seed=5, fail_at=17 * MiB + 99)
    with pytest.raises(RuntimeError) as info:
        storage.put("broken.bin", source)  # type: ignore[arg-type]
    assert info.value is source.raised
    assert _open_uploads(s3_server, bucket) == []
    assert storage.stat("broken.bin") is None


def test_concurrent_puts_keep_their_bytes_apart(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    """Four puts at once through one storage (the archive pool's way): part buffers are
    reused within a put, never shared between puts."""
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    sizes = {f"c{i}.bin": 11 * MiB + i * 777 for i in range(4)}
    results: dict[str, str | None] = {}

    def one(key: str) -> None:
        results[key] = storage.put(key, ChunkSource(sizes[key], seed=len(key) + sizes[key])).sha256  # type: ignore[arg-type]

    threads = [threading.Thread(target=one, args=(k,)) for k in sizes]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert time.monotonic() - started < 120
    for key, size in sizes.items():
        expected = ChunkSource.digest(size, seed=len(key) + size)
        assert results[key] == expected
        assert _stored(s3_server, bucket, key) == (expected, expected)
    assert _open_uploads(s3_server, bucket) == []
