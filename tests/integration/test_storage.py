"""One behavioural suite for every storage backend: a folder, and S3 over real HTTP.

The contract that matters to the archive job: a put either stores all bytes
with the right size and sha256, or leaves nothing (no object, no temp file, no
open multipart upload) and lets the source's own exception through, so a
truncated download is retried as a download problem, not a storage one.

S3 runs against moto's standalone server on loopback (see tests/fixtures/s3.py);
botocore event hooks are used to *observe* which requests were sent, never to
fake responses.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import genvault
from genvault.config import StorageSettings
from genvault.errors import ConfigError, StorageError, TransientDownloadError
from genvault.storage.base import Storage
from genvault.storage.factory import open_storage
from genvault.storage.local import TMP_DIR, LocalStorage
from genvault.storage.posix import XATTR_SHA256
from genvault.storage.s3 import S3Storage
from tests.fixtures.s3 import S3Server, s3_bucket, s3_server  # noqa: F401

MiB = 1024 * 1024
PREFIX = "archive/v1"


class GeneratedStream:
    """A file-like source producing deterministic bytes on demand, never all at once.

    Each MiB is a different pseudo-random block (so misordered parts change the
    hash), reads are short (like an HTTP body), and the stream can raise at a
    given offset to play a download that breaks halfway.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        fail_at: int | None = None,
        max_read: int = 256 * 1024,
    ) -> None:
        self.size = size
        self.seed = seed
        self.fail_at = fail_at
        self.max_read = max_read
        self.pos = 0
        self.raised: BaseException | None = None
        self._block_index = -1
        self._block = b""

    def _block_at(self, index: int) -> bytes:
        if index != self._block_index:
            self._block = random.Random(self.seed * 1_000_003 + index).randbytes(MiB)
            self._block_index = index
        return self._block

    def read(self, n: int = -1) -> bytes:
        if self.fail_at is not None and self.pos >= self.fail_at:
            self.raised = TransientDownloadError(f"connection reset at byte {self.pos}")
            raise self.raised
        limit = self.size - self.pos
        if self.fail_at is not None:
            limit = min(limit, self.fail_at - self.pos)
        n = self.max_read if n is None or n < 0 else min(n, self.max_read)
        n = min(n, limit)
        if n <= 0:
            return b""
        index, offset = divmod(self.pos, MiB)
        out = self._block_at(index)[offset : offset + n]
        self.pos += len(out)
        return out

    def readable(self) -> bool:
        return True

    @staticmethod
    def digest(size: int, seed: int = 0) -> str:
        stream = GeneratedStream(size, seed=seed, max_read=MiB)
        h = hashlib.sha256()
        while chunk := stream.read(MiB):
            h.update(chunk)
        return h.hexdigest()


# --------------------------------------------------------------------------- backends


class Backend:
    """A storage under test plus the backend-specific ways to look behind it."""

    def __init__(self, storage: Storage, kind: str, server: S3Server | None = None) -> None:
        self.storage = storage
        self.kind = kind
        self.server = server

    def leftovers(self) -> list[str]:
        """Temp files (local) or open multipart uploads (S3) anywhere in the bucket/root."""
        if isinstance(self.storage, LocalStorage):
            tmp = self.storage.root / TMP_DIR
            return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
        assert isinstance(self.storage, S3Storage)
        uploads = self.storage.client.list_multipart_uploads(Bucket=self.storage.bucket)
        return [u["Key"] for u in uploads.get("Uploads", [])]

    def raw_metadata(self, key: str) -> dict[str, str]:
        assert isinstance(self.storage, S3Storage) and self.server is not None
        client = self.server.client()
        head = client.head_object(Bucket=self.storage.bucket, Key=f"{PREFIX}/{key}")
        return dict(head["Metadata"]) | {"content-type": head["ContentType"]}


def _make_s3(request: pytest.FixtureRequest, **kwargs: Any) -> Backend:
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    server = request.getfixturevalue("s3_server")
    storage = S3Storage(
        bucket,
        PREFIX,
        endpoint_url=endpoint,
        region="us-east-1",
        multipart_threshold=kwargs.get("threshold", 5 * MiB),
        multipart_chunk=kwargs.get("chunk", 5 * MiB),
    )
    return Backend(storage, "s3", server)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend(LocalStorage(tmp_path / "archive"), "local")
    return _make_s3(request)


@pytest.fixture
def s3(request: pytest.FixtureRequest) -> Backend:
    return _make_s3(request)


def _xattrs_work(path: Path) -> bool:
    probe = path / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.genvault.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        probe.unlink()
    return True


def _expected_stat_sha(backend: Backend, sha: str) -> str | None:
    """Local storage keeps the sha256 in an xattr; without xattrs, stat reports None."""
    if isinstance(backend.storage, LocalStorage):
        root = backend.storage.root
        root.mkdir(parents=True, exist_ok=True)
        return sha if _xattrs_work(root) else None
    return sha


def _read_all(storage: Storage, key: str) -> bytes:
    with storage.open(key) as fh:
        return fh.read()


# --------------------------------------------------------------------------- behaviour


def test_put_stat_open_round_trip(backend: Backend) -> None:
    storage = backend.storage
    key = "openai/main/2024/05/06/task_1/00-result.png"
    size = 3 * MiB + 17
    stored = storage.put(key, GeneratedStream(size, seed=1), content_type="image/png")  # type: ignore[arg-type]
    expected = GeneratedStream.digest(size, seed=1)
    assert (stored.key, stored.size, stored.sha256) == (key, size, expected)

    stat = storage.stat(key)
    assert stat is not None
    assert (stat.key, stat.size, stat.sha256) == (key, size, _expected_stat_sha(backend, expected))
    assert hashlib.sha256(_read_all(storage, key)).hexdigest() == expected
    assert storage.stat("openai/main/missing.png") is None
    assert backend.leftovers() == []

    if isinstance(storage, S3Storage):
        assert storage.location(key) == f"s3://{storage.bucket}/{PREFIX}/{key}"
        assert backend.raw_metadata(key)["content-type"] == "image/png"
    else:
        assert isinstance(storage, LocalStorage)
        assert storage.location(key) == (storage.root / key).as_uri()
        assert storage.location(key).startswith("file:///")


def test_empty_object(backend: Backend) -> None:
    stored = backend.storage.put("a/empty.bin", io.BytesIO(b""))
    assert stored.size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert _read_all(backend.storage, "a/empty.bin") == b""


def test_large_object_goes_multipart(backend: Backend) -> None:
    storage = backend.storage
    calls: list[str] = []
    copies: list[dict[str, Any]] = []
    if isinstance(storage, S3Storage):
        storage.client.meta.events.register(
            "before-call.s3.*", lambda model, **_: calls.append(model.name)
        )
        storage.client.meta.events.register(
            "before-call.s3.CopyObject", lambda params, **_: copies.append(params)
        )
    size = 20 * MiB + 123
    key = "p/a/big/00-result.mp4"
    stored = storage.put(key, GeneratedStream(size, seed=2), content_type="video/mp4")  # type: ignore[arg-type]
    expected = GeneratedStream.digest(size, seed=2)
    assert (stored.size, stored.sha256) == (size, expected)

    stat = storage.stat(key)
    assert stat is not None and stat.size == size
    assert stat.sha256 == _expected_stat_sha(backend, expected)
    assert hashlib.sha256(_read_all(storage, key)).hexdigest() == expected
    assert backend.leftovers() == []
    if isinstance(storage, S3Storage):
        assert calls.count("CreateMultipartUpload") == 1
        assert calls.count("UploadPart") == 5  # 20 MiB + 123 B in 5 MiB parts
        assert calls.count("CompleteMultipartUpload") == 1
        assert "PutObject" not in calls
        # The in-place copy that records the sha256 asks for a fresh full-object CRC32.
        assert [c["headers"].get("x-amz-checksum-algorithm") for c in copies] == ["CRC32"]
        meta = backend.raw_metadata(key)
        assert meta["sha256"] == expected
        assert meta["content-type"] == "video/mp4"
        assert "genvault-upload" not in meta  # the upload token is replaced by the sha256


@pytest.mark.s3
def test_small_object_is_one_request(s3: Backend) -> None:
    storage = s3.storage
    assert isinstance(storage, S3Storage)
    calls: list[str] = []
    storage.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    # Exactly at the threshold: still one PutObject (the probe read one byte more and hit EOF).
    stored = storage.put("p/five.bin", GeneratedStream(5 * MiB, seed=3), content_type="image/png")  # type: ignore[arg-type]
    assert calls == ["PutObject"]
    assert s3.raw_metadata("p/five.bin")["sha256"] == stored.sha256


@pytest.mark.parametrize(
    "fail_at",
    [0, 3 * MiB, 12 * MiB],
    ids=["first-read", "within-threshold", "mid-multipart"],
)
def test_failing_source_leaves_nothing(backend: Backend, fail_at: int) -> None:
    storage = backend.storage
    key = "p/a/broken/00-result.mp4"
    source = GeneratedStream(20 * MiB, seed=4, fail_at=fail_at)
    with pytest.raises(TransientDownloadError) as info:
        storage.put(key, source, content_type="video/mp4")  # type: ignore[arg-type]
    assert info.value is source.raised  # the source's own exception object, not a wrapper
    assert storage.stat(key) is None
    assert backend.leftovers() == []


def test_failing_overwrite_keeps_the_old_object(backend: Backend) -> None:
    storage = backend.storage
    key = "p/a/keep/00-result.bin"
    old = storage.put_bytes(key, b"old bytes", content_type="application/octet-stream")
    with pytest.raises(TransientDownloadError):
        storage.put(key, GeneratedStream(20 * MiB, fail_at=8 * MiB))  # type: ignore[arg-type]
    assert _read_all(storage, key) == b"old bytes"
    stat = storage.stat(key)
    assert stat is not None and stat.size == old.size
    assert backend.leftovers() == []


def test_put_bytes(backend: Backend) -> None:
    storage = backend.storage
    body = json.dumps({"external_id": "task_1", "prompt": "a cat, ünïcödé"}).encode()
    key = "openai/main/2024/05/06/task_1/generation.json"
    stored = storage.put_bytes(key, body, content_type="application/json")
    assert stored.size == len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert _read_all(storage, key) == body
    if isinstance(storage, S3Storage):
        assert backend.raw_metadata(key)["content-type"] == "application/json"


def test_overwrite_is_idempotent(backend: Backend) -> None:
    storage = backend.storage
    key = "p/a/same/00-result.jpg"
    first = storage.put(key, GeneratedStream(2 * MiB, seed=5))  # type: ignore[arg-type]
    second = storage.put(key, GeneratedStream(2 * MiB, seed=5))  # type: ignore[arg-type]
    assert first == second
    assert storage.stat(key) == storage.stat(key)
    third = storage.put(key, GeneratedStream(1 * MiB, seed=6))  # type: ignore[arg-type]
    stat = storage.stat(key)
    assert stat is not None and stat.size == MiB == third.size
    assert hashlib.sha256(_read_all(storage, key)).hexdigest() == third.sha256
    assert backend.leftovers() == []
    if isinstance(storage, LocalStorage):
        assert [p.name for p in (storage.root / key).parent.iterdir()] == ["00-result.jpg"]


def test_cleanup_removes_leftovers(backend: Backend) -> None:
    storage = backend.storage
    if isinstance(storage, LocalStorage):
        tmp = storage.root / TMP_DIR
        tmp.mkdir(parents=True)
        (tmp / "put-crashed.part").write_bytes(b"partial")
        (tmp / "put-other.part").write_bytes(b"partial")
        (tmp / "stray-dir").mkdir()
        (tmp / "stray-dir" / "x").write_bytes(b"x")
        assert storage.cleanup() == 3
        assert list(tmp.iterdir()) == []
    else:
        assert isinstance(storage, S3Storage) and backend.server is not None
        client = backend.server.client()
        client.create_multipart_upload(Bucket=storage.bucket, Key=f"{PREFIX}/p/crashed.mp4")
        client.create_multipart_upload(Bucket=storage.bucket, Key="not-ours/other.mp4")
        assert storage.cleanup(older_than_seconds=0) == 1
        assert backend.leftovers() == ["not-ours/other.mp4"]  # outside our prefix: untouched
    assert storage.cleanup() == 0


def test_cleanup_of_a_fresh_local_archive(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path / "never-written").cleanup() == 0


class _PeerStartsMidWrite:
    """A source that, halfway through, lets another process's start-up cleanup run on the
    same folder (a replica starting while this one writes), then carries on."""

    def __init__(self, data: bytes, peer: LocalStorage) -> None:
        self._data = io.BytesIO(data)
        self._peer = peer
        self.peer_removed: int | None = None

    def read(self, n: int = -1) -> bytes:
        chunk = self._data.read(min(n, 4096) if n and n > 0 else 4096)
        if self.peer_removed is None and self._data.tell() > 8192:
            self.peer_removed = self._peer.cleanup()  # the default: no age guard
        return chunk

    def readable(self) -> bool:
        return True


def test_local_cleanup_by_a_peer_leaves_a_write_in_flight_alone(tmp_path: Path) -> None:
    """Replicas on one folder: a peer's start-up cleanup used to remove this write's
    temp file ("moving … into place: No such file or directory")."""
    root = tmp_path / "shared"
    writer, peer = LocalStorage(root), LocalStorage(root)
    tmp = root / TMP_DIR
    tmp.mkdir(parents=True)
    (tmp / "put-dead-writer.part").write_bytes(b"left by a killed run")  # nobody holds it
    data = random.Random(3).randbytes(64 * 1024)
    source = _PeerStartsMidWrite(data, peer)
    stored = writer.put("a/b.bin", source)  # type: ignore[arg-type]
    assert source.peer_removed == 1  # the dead writer's file, not ours
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (root / "a/b.bin").read_bytes() == data
    assert list(tmp.iterdir()) == []


def test_local_cleanup_skips_a_temp_file_whose_lock_is_held(tmp_path: Path) -> None:
    """The lock, not the name or the age, says whether a writer lives: held, the file
    stays whatever its age; released (the writer died), it goes."""
    storage = LocalStorage(tmp_path / "archive")
    tmp = storage.root / TMP_DIR
    tmp.mkdir(parents=True)
    held = tmp / "put-live.part"
    held.write_bytes(b"in flight")
    os.utime(held, (0, 0))  # as old as can be
    with held.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert storage.cleanup() == 0
        assert storage.cleanup(older_than_seconds=1) == 0
        assert held.exists()
    assert storage.cleanup() == 1
    assert not held.exists()


def test_local_temp_folder_that_is_a_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    """Cleanup would empty the link's target; writes would land outside the archive."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    (precious / "sub").mkdir()
    (precious / "sub" / "deep.txt").write_text("also mine")
    root = tmp_path / "archive"
    root.mkdir()
    (root / TMP_DIR).symlink_to(precious, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(StorageError, match="is a symlink"):
        storage.cleanup()
    with pytest.raises(StorageError, match="is a symlink"):
        storage.put_bytes("a/x.txt", b"x", content_type="text/plain")
    with pytest.raises(StorageError, match="is a symlink"):
        storage.check()
    assert sorted(str(p.relative_to(precious)) for p in precious.rglob("*")) == [
        "keep.txt",
        "sub",
        "sub/deep.txt",
    ]
    assert not (root / "a").exists()


def test_local_cleanup_removes_a_symlink_inside_the_temp_folder_not_its_target(
    tmp_path: Path,
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    storage = LocalStorage(tmp_path / "archive")
    tmp = storage.root / TMP_DIR
    tmp.mkdir(parents=True)
    (tmp / "put-x.part").symlink_to(precious)
    assert storage.cleanup() == 1
    assert precious.read_text() == "mine" and list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "key",
    ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "a//b", "./a", "", "a/..", "a\x00b"],
)
def test_unsafe_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(StorageError):
        backend.storage.put_bytes(key, b"x", content_type="text/plain")
    with pytest.raises(StorageError):
        backend.storage.stat(key)
    if isinstance(backend.storage, LocalStorage):
        parent = backend.storage.root.parent
        assert not (parent / "escape.txt").exists()


def test_local_symlink_cannot_escape_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "archive"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(StorageError, match="escapes"):
        storage.put_bytes("link/x.txt", b"x", content_type="text/plain")
    assert list(outside.iterdir()) == []
    with pytest.raises(StorageError, match="reserved"):
        storage.put_bytes(f"{TMP_DIR}/x", b"x", content_type="text/plain")


def test_local_files_are_durable_and_readable(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    stored = storage.put_bytes("a/b/c.txt", b"hello", content_type="text/plain")
    path = storage.root / "a/b/c.txt"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    if _xattrs_work(storage.root):
        assert os.getxattr(path, XATTR_SHA256).decode() == stored.sha256
    # A file that was not written by genvault reports no sha256 rather than a wrong one.
    (storage.root / "a/foreign.txt").write_bytes(b"foreign")
    foreign = storage.stat("a/foreign.txt")
    assert foreign is not None and foreign.sha256 is None and foreign.size == 7


@pytest.mark.s3
def test_s3_object_without_genvault_metadata(s3: Backend) -> None:
    storage = s3.storage
    assert isinstance(storage, S3Storage) and s3.server is not None
    s3.server.client().put_object(Bucket=storage.bucket, Key=f"{PREFIX}/foreign", Body=b"abc")
    stat = storage.stat("foreign")
    assert stat is not None and stat.size == 3 and stat.sha256 is None


@pytest.mark.s3
def test_s3_metadata_is_made_acceptable(s3: Backend) -> None:
    """Non-ASCII values are percent-encoded; a 3 KB signed URL is cut to fit S3's 2 KB."""
    storage = s3.storage
    long_url = "https://cdn.example/x.png?X-Amz-Security-Token=" + "A" * 3000
    metadata = {"source_url": long_url, "Prompt": "un chat, ünïcödé", "provider": "openai"}
    small = storage.put_bytes("p/m.bin", b"x", content_type="image/png", metadata=metadata)
    large = storage.put("p/l.bin", GeneratedStream(6 * MiB), metadata=metadata)  # type: ignore[arg-type]
    for key, stored in (("p/m.bin", small), ("p/l.bin", large)):
        meta = s3.raw_metadata(key)
        assert meta["sha256"] == stored.sha256
        assert meta["provider"] == "openai"
        assert meta["prompt"] == "un chat, %C3%BCn%C3%AFc%C3%B6d%C3%A9"
        assert meta["source_url"].startswith("https://cdn.example/x.png?")
        assert meta["source_url"].endswith("...")
        assert sum(len(k) + len(v) for k, v in meta.items() if k != "content-type") <= 2048


@pytest.mark.s3
def test_s3_without_flexible_checksums(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The escape hatch for S3-compatible servers that reject boto3's CRC checksums."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    backend = _make_s3(request)
    storage = backend.storage
    assert isinstance(storage, S3Storage)
    calls: list[dict[str, Any]] = []
    storage.client.meta.events.register(
        "before-call.s3.CopyObject", lambda params, **_: calls.append(params)
    )
    stored = storage.put("p/plain.bin", GeneratedStream(12 * MiB, seed=8))  # type: ignore[arg-type]
    assert len(calls) == 1 and "x-amz-checksum-algorithm" not in calls[0]["headers"]
    assert hashlib.sha256(_read_all(storage, "p/plain.bin")).hexdigest() == stored.sha256
    assert backend.raw_metadata("p/plain.bin")["sha256"] == stored.sha256


@pytest.mark.s3
def test_s3_backend_errors_become_storage_errors(s3_bucket: tuple[str, str]) -> None:  # noqa: F811
    endpoint, _ = s3_bucket
    missing = S3Storage("genvault-no-such-bucket", "p", endpoint_url=endpoint, region="us-east-1")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        missing.put_bytes("k", b"x", content_type="text/plain")
    with pytest.raises(StorageError, match="NoSuchBucket"):
        missing.put(  # the multipart path maps errors too
            "k",
            GeneratedStream(9 * MiB),  # type: ignore[arg-type]
        )
    with pytest.raises(StorageError):
        missing.check()
    with pytest.raises(StorageError):
        missing.open("k")


def test_check(backend: Backend) -> None:
    assert isinstance(backend.storage, Storage)
    backend.storage.check()


def test_local_check_fails_when_root_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError):
        LocalStorage(blocker / "archive").check()


# --------------------------------------------------------------------------- factory


def test_open_storage_local_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = open_storage(StorageSettings(url="file://./rel/archive"))
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "rel/archive").resolve()
    storage2 = open_storage(StorageSettings(url=f"file://{tmp_path}/abs"))
    assert isinstance(storage2, LocalStorage) and storage2.root == (tmp_path / "abs").resolve()


@pytest.mark.s3
def test_open_storage_s3(s3_bucket: tuple[str, str]) -> None:  # noqa: F811
    endpoint, bucket = s3_bucket
    settings = StorageSettings(
        url=f"s3://{bucket}/some/prefix/",
        endpoint_url=endpoint,
        region="us-east-1",
        multipart_threshold_mb=16,
        multipart_chunk_mb=6,
    )
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.url) == (
        bucket,
        "some/prefix",
        f"s3://{bucket}/some/prefix",
    )
    assert (storage.multipart_threshold, storage.multipart_chunk) == (16 * MiB, 6 * MiB)
    storage.check()
    storage.put_bytes("k.txt", b"x", content_type="text/plain")
    assert storage.location("k.txt") == f"s3://{bucket}/some/prefix/k.txt"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        (lambda: StorageSettings(url="file://relative/no-dot"), "storage.url"),
        (lambda: StorageSettings(url="s3://Bad_Bucket/x"), "storage.url"),
        (lambda: StorageSettings(url="s3://bucket/a/../b"), "storage.url"),
        (lambda: StorageSettings(url="s3://bucket/x?versionId=1"), "storage.url"),
        (lambda: StorageSettings(key_template="{nope}"), "storage.key_template"),
        (lambda: StorageSettings(key_template="{provider}/{role}.{ext}"), "storage.key_template"),
    ],
)
def test_open_storage_refuses_bad_config(settings: Callable[[], StorageSettings], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_storage(settings())
    assert info.value.key == key


# --------------------------------------------------------------------------- memory

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, random, resource, sys, tracemalloc
    from genvault.storage.s3 import S3Storage

    MiB = 1024 * 1024
    endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Generated:
        def __init__(self, size):
            self.size, self.pos = size, 0
            self.block = random.Random(7).randbytes(MiB)
        def read(self, n=-1):
            n = min(256 * 1024 if n is None or n < 0 else n, 256 * 1024, self.size - self.pos)
            self.pos += n
            return self.block[:n] if n > 0 else b""

    def peak_rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    storage = S3Storage(bucket, "mem", endpoint_url=endpoint, region="us-east-1",
                        multipart_threshold=5 * MiB, multipart_chunk=5 * MiB)
    # Warm up: imports, connection pool, s3transfer threads, one small multipart upload.
    storage.put("warm", Generated(11 * MiB))
    before = peak_rss_mib()
    tracemalloc.start()
    stored = storage.put("big", Generated(size))
    traced_peak = tracemalloc.get_traced_memory()[1] / MiB
    tracemalloc.stop()
    after = peak_rss_mib()
    print(json.dumps({"rss_growth": after - before, "traced_peak": traced_peak,
                      "size": stored.size}))
    """
)


@pytest.mark.s3
@pytest.mark.slow
def test_s3_put_streams_without_buffering(s3_bucket: tuple[str, str]) -> None:  # noqa: F811
    """60 MB through S3Storage.put must hold a few parts in memory, never the object.

    Measured in a child process: moto runs inside the test process and keeps
    every uploaded byte in memory, which would swamp the client's own figure.
    tracemalloc gives the precise Python-heap peak; peak RSS is the coarse
    cross-check (it also counts malloc arenas of s3transfer's fresh threads).
    """
    endpoint, bucket = s3_bucket
    size = 60 * MiB
    env = dict(os.environ)
    daemon_dir = str(Path(genvault.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [daemon_dir, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, endpoint, bucket, str(size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["size"] == size
    # By design: the 5 MiB probe plus at most ~3 parts of 5 MiB (two queued for
    # upload, one being read) and request buffers: ~23 MiB measured. Buffering
    # the object would need 60 MiB or more.
    assert figures["traced_peak"] < 32, figures
    assert figures["rss_growth"] < 45, figures
