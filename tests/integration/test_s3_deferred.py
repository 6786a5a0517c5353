"""Deferred one-part uploads (``S3Storage.put(..., durable=False)``), against moto over HTTP.

What the overlap must never cost: an object reported durable (``sync`` returned, the
archive pass recorded its file) that S3 does not hold with the right bytes and sha256;
a refused upload that goes unnoticed; an older upload of a key landing after a newer
one; memory without a bound; an upload dropped at close.

Requests are held back with a botocore ``before-send`` hook that waits on an event
(so "the put returned while its request had not been sent" is a fact, not a timing
guess), or refused for real: a hook points the request at a bucket that does not
exist and moto answers 404 NoSuchBucket. Every response is the server's.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from genvault.config import Settings
from genvault.errors import StorageError, SyncError
from genvault.jobs.archive import archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import sync_account
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.storage.s3 import S3Storage
from genvault.store import LeasedAsset, Outcome
from tests.fixtures.s3 import S3Server, s3_bucket, s3_server  # noqa: F401
from tests.fixtures.sims import SimStarter, sim_account

MiB = 1024 * 1024
PREFIX = "deferred"
WAIT = 10.0
"""Seconds a step that must happen (a put returning) is given before the test fails."""

pytestmark = pytest.mark.s3


def _storage(endpoint: str, bucket: str, **kwargs: Any) -> S3Storage:
    return S3Storage(
        bucket,
        PREFIX,
        endpoint_url=endpoint,
        region="us-east-1",
        multipart_threshold=5 * MiB,
        multipart_chunk=5 * MiB,
        **kwargs,
    )


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _stored(server: S3Server, bucket: str, key: str) -> tuple[bytes, str | None] | None:
    """(bytes, sha256 metadata) as S3 holds them, via another client; None when absent."""
    client = server.client()
    try:
        obj = client.get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
    except client.exceptions.NoSuchKey:
        return None
    return obj["Body"].read(), obj["Metadata"].get("sha256")


class Gate:
    """Holds back every PutObject the storage sends (``before-send``) until :meth:`open`;
    counts the requests held. Only PutObject: HeadObject and the rest pass."""

    def __init__(self, storage: S3Storage, *, only_first: bool = False) -> None:
        self._open = threading.Event()
        self.held = 0
        self._only_first = only_first
        self._lock = threading.Lock()
        self.entered = threading.Event()
        storage.client.meta.events.register("before-send.s3.PutObject", self._hold)

    def _hold(self, **_: Any) -> None:
        with self._lock:
            self.held += 1
            first = self.held == 1
        self.entered.set()
        if first or not self._only_first:
            self._open.wait(60)  # never forever, should a test fail with it shut

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    """Gates are opened after the test whatever happened (no thread left waiting)."""
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.open()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Event, list[Any]]:
    """Run ``fn`` in a thread; (set when it returned or raised, [its result or error])."""
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


def _put(storage: S3Storage, key: str, data: bytes, *, durable: bool = False) -> Any:
    return storage.put(key, io.BytesIO(data), size_hint=len(data), durable=durable)


def test_a_deferred_put_returns_before_its_request_and_sync_waits_for_it(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    gates: list[Gate],
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    gate = Gate(storage)
    gates.append(gate)
    data = _data(MiB, 1)
    returned, out = _in_thread(lambda: _put(storage, "a.bin", data))
    assert returned.wait(WAIT), "put(durable=False) waited for its PutObject"
    stored = out[0]
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert gate.entered.wait(WAIT)  # the request is on its way, held before it is sent
    assert storage.stat("a.bin") is None
    synced, sync_out = _in_thread(lambda: storage.sync(["a.bin"]))
    assert not synced.wait(0.3), "sync returned while the PutObject was held"
    gate.open()
    assert synced.wait(WAIT) and sync_out == [None]
    assert _stored(s3_server, bucket, "a.bin") == (data, stored.sha256)
    storage.close()


def test_sync_makes_every_deferred_object_readable_with_its_sha256(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    sizes = [0, 1, 1000, MiB, 3 * MiB + 7, 5 * MiB]  # up to the threshold: one part each
    files = {f"f{i}.bin": _data(size, i) for i, size in enumerate(sizes)}
    results = {key: _put(storage, key, data) for key, data in files.items()}
    side = storage.put_bytes(
        "g/generation.json", b'{"a": 1}', content_type="application/json", durable=False
    )
    storage.sync([*files, "g/generation.json"])
    for key, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        assert results[key].sha256 == sha and results[key].size == len(data)
        assert _stored(s3_server, bucket, key) == (data, sha)
        stat = storage.stat(key)
        assert stat is not None and (stat.size, stat.sha256) == (len(data), sha)
    assert _stored(s3_server, bucket, "g/generation.json") == (b'{"a": 1}', side.sha256)
    assert storage._deferred.pending_keys() == []  # reported, then forgotten
    storage.close()


def _refuse(storage: S3Storage, keys: set[str]) -> None:
    """Send the PutObject of ``keys`` to a bucket that does not exist: a real 404."""

    def redirect(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", "").removeprefix(f"{PREFIX}/") in keys:
            params["Bucket"] = "genvault-no-such-bucket"

    storage.client.meta.events.register("before-parameter-build.s3.PutObject", redirect)


def test_a_refused_deferred_upload_fails_sync_naming_its_key_only(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    _refuse(storage, {"bad.bin"})
    good, bad = _data(2000, 1), _data(3000, 2)
    _put(storage, "good.bin", good)
    _put(storage, "bad.bin", bad)  # returns: S3's answer comes later
    with pytest.raises(SyncError, match=r"put deferred/bad\.bin: NoSuchBucket") as err:
        storage.sync(["good.bin", "bad.bin"])
    assert err.value.keys == frozenset({"bad.bin"})
    assert "good.bin" not in str(err.value)
    assert _stored(s3_server, bucket, "good.bin") == (good, hashlib.sha256(good).hexdigest())
    assert _stored(s3_server, bucket, "bad.bin") is None
    storage.sync(["good.bin", "bad.bin"])  # reported once, then forgotten
    storage.close()


def test_after_a_refused_upload_puts_are_synchronous_until_sync_reports_it(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
) -> None:
    """So a storage outage still surfaces in a worker's put (and the breaker's probe
    stops the downloads) instead of only at the next flush."""
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    _refuse(storage, {"bad.bin"})
    data = _data(2000, 5)
    _put(storage, "bad.bin", data)
    storage._deferred.wait_for("bad.bin")  # its request came back (refused)
    assert storage._deferred.failing
    _put(storage, "next.bin", data)  # synchronous: stored when put returns
    assert _stored(s3_server, bucket, "next.bin") == (data, hashlib.sha256(data).hexdigest())
    with pytest.raises(StorageError, match="NoSuchBucket"):
        _put(storage, "bad.bin", data)  # refused in the put itself
    with pytest.raises(SyncError) as err:
        storage.sync(["bad.bin", "next.bin"])
    assert err.value.keys == frozenset({"bad.bin"})
    assert not storage._deferred.failing  # reported: puts are deferred again
    storage.close()


def test_the_caps_make_a_put_wait_and_sync_without_keys_waits_for_all(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    gates: list[Gate],
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket, deferred_uploads=2, deferred_bytes=64 * MiB)
    gate = Gate(storage)
    gates.append(gate)
    files = {f"c{i}.bin": _data(100_000, i) for i in range(3)}
    _put(storage, "c0.bin", files["c0.bin"])
    _put(storage, "c1.bin", files["c1.bin"])
    assert storage._deferred.running == (2, 200_000)
    third, _ = _in_thread(lambda: _put(storage, "c2.bin", files["c2.bin"]))
    assert not third.wait(0.5), "a put went past the cap of 2 unfinished uploads"
    synced, sync_out = _in_thread(storage.sync)
    assert not synced.wait(0.3), "sync() returned while uploads were held"
    gate.open()
    assert third.wait(WAIT)
    assert synced.wait(WAIT) and sync_out == [None]
    storage.sync()  # c2's upload, queued after sync() had looked: waited for here
    for key, data in files.items():
        assert _stored(s3_server, bucket, key) == (data, hashlib.sha256(data).hexdigest())
    assert storage._deferred.running == (0, 0)
    storage.close()


def test_the_byte_cap_makes_a_put_wait(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    gates: list[Gate],
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket, deferred_uploads=16, deferred_bytes=3 * MiB)
    gate = Gate(storage)
    gates.append(gate)
    first, second = _data(2 * MiB, 1), _data(2 * MiB, 2)
    _put(storage, "b1.bin", first)
    waiting, _ = _in_thread(lambda: _put(storage, "b2.bin", second))
    assert not waiting.wait(0.5), "4 MiB of bodies held under a 3 MiB cap"
    gate.open()
    assert waiting.wait(WAIT)
    storage.sync(["b1.bin", "b2.bin"])
    assert _stored(s3_server, bucket, "b2.bin") == (second, hashlib.sha256(second).hexdigest())
    storage.close()


def test_a_key_put_again_waits_for_its_earlier_upload_and_the_last_put_wins(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    gates: list[Gate],
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    gate = Gate(storage, only_first=True)  # holds the first PutObject only
    gates.append(gate)
    old, new = _data(5000, 1), _data(6000, 2)
    returned, _ = _in_thread(lambda: _put(storage, "k.bin", old))
    assert returned.wait(WAIT), "put(durable=False) waited for its PutObject"
    again, _ = _in_thread(lambda: _put(storage, "k.bin", new))
    assert not again.wait(0.5), "a second upload of k.bin went out while the first was held"
    gate.open()
    assert again.wait(WAIT)
    storage.sync(["k.bin"])
    assert _stored(s3_server, bucket, "k.bin") == (new, hashlib.sha256(new).hexdigest())
    storage.close()


def test_close_finishes_the_uploads_in_flight_and_refuses_new_ones(
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    gates: list[Gate],
) -> None:
    endpoint, bucket = s3_bucket
    storage = _storage(endpoint, bucket)
    gate = Gate(storage)
    gates.append(gate)
    data = _data(4000, 3)
    _put(storage, "z.bin", data)
    closed, _ = _in_thread(storage.close)
    assert not closed.wait(0.3), "close returned with an upload held"
    gate.open()
    assert closed.wait(WAIT)
    assert _stored(s3_server, bucket, "z.bin") == (data, hashlib.sha256(data).hexdigest())
    with pytest.raises(StorageError, match="closed"):
        _put(storage, "late.bin", data)


# ---------------------------------------------------------------------- archive pass

API_KEY = "deferred-upload-key-24ch"


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=API_KEY,
        count=10,
        image_size=20_000,
        video_size=40_000,
        audio_size=30_000,
        thumbnail_size=10_000,
        processing_count=0,
        failed_count=0,
    )


def _runtime(tmp_path: Path, endpoint: str, bucket: str, sim: Any) -> Runtime:
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'gv.db'}"},
            "storage": {"url": f"s3://{bucket}/{PREFIX}", "endpoint_url": endpoint},
            "network": {"allow_private": True},
            "server": {"enabled": False},
            "accounts": [sim_account(sim, "GG_KEY")],
        }
    )
    return Runtime.build(settings, {"main": SecretStr(API_KEY)})


def test_an_archive_pass_records_a_file_only_once_s3_holds_it_and_retries_a_refused_one(
    tmp_path: Path,
    s3_bucket: tuple[str, str],  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    sim: geminigen.GeminiGenSimulator,
) -> None:
    """Every PutObject is slowed (so the uploads are still running when their workers
    report), and two files' are refused by S3. At the moment the pass counts a file
    archived (``on_outcome``, just before the commit) its object must be in the bucket
    with the recorded sha256; the refused files are found at the flush, stay pending
    with their attempts unchanged, and the next pass archives them, once each."""
    endpoint, bucket = s3_bucket
    rt = _runtime(tmp_path, endpoint, bucket, sim)
    try:
        storage = rt.storage
        assert isinstance(storage, S3Storage)
        sync_account(rt, rt.accounts["main"])
        poll_account(rt, rt.accounts["main"])
        media = [a for a in rt.store.assets() if a["state"] == "pending"]
        assert len(media) >= 10
        refused_ids = {media[0]["id"], media[3]["id"]}
        refused = {r["source_url"][:1024]: r["id"] for r in media if r["id"] in refused_ids}
        keys_of: dict[int, str] = {}
        slow = threading.Event()

        def delay(**_: Any) -> None:
            slow.wait(0.15)  # never set: each PutObject waits 150 ms before it is sent

        def redirect(params: dict[str, Any], **_: Any) -> None:
            asset_id = refused.get(params.get("Metadata", {}).get("source-url", ""))
            if asset_id is not None:  # one of the two files S3 refuses (a real 404)
                keys_of[asset_id] = params["Key"].removeprefix(f"{PREFIX}/")
                params["Bucket"] = "genvault-no-such-bucket"

        events = storage.client.meta.events
        events.register("before-send.s3.PutObject", delay)
        events.register("before-parameter-build.s3.PutObject", redirect)
        checked: list[int] = []
        missing: list[str] = []

        def at_outcome(outcome: Outcome, asset: LeasedAsset) -> None:
            """Called as the pass counts a file, before its commit: S3 must hold it."""
            if outcome.state is not AssetState.ARCHIVED:
                return
            assert outcome.storage_key is not None
            got = _stored(s3_server, bucket, outcome.storage_key)
            if got is None or hashlib.sha256(got[0]).hexdigest() != outcome.sha256:
                missing.append(outcome.storage_key)
            checked.append(asset.id)

        with capture_logs() as logs:
            first = archive_pending(rt, on_outcome=at_outcome)
        rows = {a["id"]: a for a in rt.store.assets()}
        assert not missing, f"recorded archived before S3 held them: {missing}"
        assert set(keys_of) == refused_ids
        assert {rows[i]["state"] for i in refused_ids} == {"pending"}
        assert {rows[i]["attempts"] for i in refused_ids} == {0}
        assert all("NoSuchBucket" in (rows[i]["last_error"] or "") for i in refused_ids)
        flush_failed = [e for e in logs if e["event"] == "archive.flush_failed"]
        assert flush_failed, "the refusal was not found at the flush (was the put deferred?)"
        archived = {i for i, r in rows.items() if r["state"] == "archived"}
        assert archived == set(checked) and archived.isdisjoint(refused_ids)
        assert first.archived == len(archived) and first.failed == first.lost == 0
        assert not first.storage_down and rt.storage_guard.state.value == "closed"

        # S3 accepts them again: the next pass (their backoff made due) stores them.
        refused.clear()
        rt.store.requeue_assets("main")
        second = archive_pending(rt, on_outcome=at_outcome)
        assert not missing
        rows = {a["id"]: a for a in rt.store.assets()}
        assert {r["state"] for i, r in rows.items() if i in {m["id"] for m in media}} == {
            "archived"
        }
        assert second.archived == len(refused_ids)
        for i in refused_ids:
            got = _stored(s3_server, bucket, keys_of[i])
            assert got is not None and got[1] == rows[i]["sha256"]
        hits = dict(sim.stats.snapshot()["media_hits"])
        assert max(hits.values()) <= 2  # a refused file downloaded again, once
    finally:
        rt.close()
