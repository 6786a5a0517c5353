"""``verify_archive``: archived objects read back and checked against the database.

The archive is made the real way (a GeminiGen simulator on loopback, the real
pipeline) into a folder and into S3 (moto's server over HTTP); then objects are
damaged behind genvault's back, the way a disk or a careless operator would:
one overwritten with other bytes of the same length (only the sha256 can tell),
one deleted, one cut short. The report must name exactly those keys.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from genvault.config import (
    AccountSettings,
    DatabaseSettings,
    NetworkSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.pipeline import run_once
from genvault.ops.verify import ProblemKind, verify_archive, verify_with_progress
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.storage import Storage, open_storage
from genvault.store import Outcome, Store
from tests.fixtures.s3 import S3Server
from tests.fixtures.sims import SimStarter, sim_account
from tests.integration.store_helpers import media, record, save, url

KEY = "gg-verify-key-5d1e"


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=5,
        count=6,
        image_size=6_000,
        video_size=20_000,
        audio_size=5_000,
        processing_count=0,
        failed_count=0,
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    if request.param == "local":
        return StorageSettings(url=f"file://{tmp_path / 'archive'}")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return StorageSettings(url=f"s3://{bucket}/vault", endpoint_url=endpoint)


def _archive(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path, storage: StorageSettings
) -> Runtime:
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'gv.db'}"),
        storage=storage,
        network=NetworkSettings(allow_private=True),
        accounts=(AccountSettings(**sim_account(sim, "UNUSED")),),
    )
    rt = Runtime.build(settings, {"main": SecretStr(KEY)})
    report = run_once(rt)
    assert int(report.exit_code) == 0
    return rt


def _damage(storage: Storage, key: str, how: str, s3: Any = None, bucket: str = "") -> None:
    """Change a stored object without going through genvault's write path."""
    if s3 is None:
        path = Path(storage.location(key).removeprefix("file://"))
        data = bytearray(path.read_bytes())
        if how == "corrupt":  # same length, other bytes; the sha256 xattr stays as it was
            data[len(data) // 2] ^= 0xFF
            with path.open("r+b") as fh:
                fh.write(bytes(data))
        elif how == "truncate":
            path.write_bytes(bytes(data[:-100]))
        else:
            path.unlink()
        return
    full = storage.location(key).removeprefix(f"s3://{bucket}/")
    if how == "delete":
        s3.delete_object(Bucket=bucket, Key=full)
        return
    obj = s3.get_object(Bucket=bucket, Key=full)
    data = bytearray(obj["Body"].read())
    if how == "corrupt":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[:-100]
    # the recorded sha256 metadata is put back unchanged: verify must read the bytes
    s3.put_object(Bucket=bucket, Key=full, Body=bytes(data), Metadata=obj["Metadata"])


def test_verify_reads_back_every_object_and_names_exactly_the_damaged_ones(
    sim: geminigen.GeminiGenSimulator,
    tmp_path: Path,
    storage_settings: StorageSettings,
    request: pytest.FixtureRequest,
) -> None:
    rt = _archive(sim, tmp_path, storage_settings)
    try:
        archived = [a for a in rt.store.assets() if a["state"] == AssetState.ARCHIVED.value]
        assert len(archived) >= 6
        clean = verify_archive(rt.store, rt.storage)
        assert clean.ok and clean.problems == []
        assert clean.checked == len(archived)
        assert clean.bytes == sum(a["size"] for a in archived)

        s3, bucket = None, ""
        if storage_settings.url.startswith("s3://"):
            server: S3Server = request.getfixturevalue("s3_server")
            s3, bucket = server.client(), storage_settings.url.removeprefix("s3://").split("/")[0]
        corrupt, deleted, truncated = (a["storage_key"] for a in archived[:3])
        _damage(rt.storage, corrupt, "corrupt", s3, bucket)
        _damage(rt.storage, deleted, "delete", s3, bucket)
        _damage(rt.storage, truncated, "truncate", s3, bucket)
        stat = rt.storage.stat(corrupt)
        assert stat is not None and stat.size == archived[0]["size"]

        report = verify_archive(rt.store, rt.storage, workers=3)
        assert not report.ok
        assert report.checked == len(archived)
        found = {(p.kind, p.key) for p in report.problems}
        assert found == {
            (ProblemKind.SHA256_MISMATCH, corrupt),
            (ProblemKind.MISSING, deleted),
            (ProblemKind.SIZE_MISMATCH, truncated),
        }
        bad = {p.key: p for p in report.problems}
        assert bad[corrupt].actual_sha256 != bad[corrupt].expected_sha256 == archived[0]["sha256"]
        assert bad[truncated].actual_size == archived[2]["size"] - 100
        assert all(p.key is not None and p.key in p.describe() for p in report.problems)
        assert "expected " + str(archived[2]["size"]) in bad[truncated].describe()
        doc = report.as_dict()
        assert doc["counts"] == {
            "missing": 1,
            "size_mismatch": 1,
            "sha256_mismatch": 1,
            "unreadable": 0,
        }
    finally:
        rt.close()


def _archived_rows(store: Store, storage: Storage, n: int) -> dict[int, str]:
    """``n`` generations with one archived file each, written through the store's own
    lease/finish path and the storage backend; returns asset id -> key."""
    save(store, [record(f"g{i:02d}", media_=[media(url(f"g{i:02d}.png"))]) for i in range(n)])
    leased = store.leases.acquire("tester", limit=n, lease_seconds=60)
    outcomes, keys = [], {}
    for a in leased:
        data = f"file {a.external_id}".encode() * 50
        key = f"t/{a.external_id}.png"
        stored = storage.put(key, io.BytesIO(data))
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        outcomes.append(
            Outcome(
                a.id, AssetState.ARCHIVED, size=stored.size, sha256=stored.sha256, storage_key=key
            )
        )
        keys[a.id] = key
    assert store.leases.finish("tester", outcomes) == n
    return keys


def test_sample_draws_distinct_random_files_on_both_databases(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    store.upgrade()
    try:
        storage = open_storage(StorageSettings(url=f"file://{tmp_path / 'a'}"))
        keys = _archived_rows(store, storage, 10)
        assert store.archived_totals() == (
            10,
            sum(s.size for s in map(storage.stat, keys.values()) if s),
        )

        batches = list(store.iter_archived(batch_size=3))
        assert [len(b) for b in batches] == [3, 3, 3, 1]
        assert [f.id for b in batches for f in b] == sorted(keys)

        draws = [tuple(sorted(f.id for f in store.sample_archived(3))) for _ in range(12)]
        assert all(len(set(d)) == 3 and set(d) <= set(keys) for d in draws)
        assert len(set(draws)) > 1, "twelve samples of 3 out of 10 were all the same"
        assert {f.id for f in store.sample_archived(50)} == set(keys)

        report = verify_archive(store, storage, sample=4)
        assert report.ok and report.sampled and report.checked == 4
        screen = io.StringIO()
        shown = verify_with_progress(
            store, storage, console=Console(file=screen, force_terminal=True, width=120)
        )
        assert shown.ok and shown.checked == 10 and "verifying" in screen.getvalue()

        victim = next(iter(keys.values()))
        (tmp_path / "a" / victim).unlink()
        full = verify_archive(store, storage)
        assert [(p.kind, p.key) for p in full.problems] == [(ProblemKind.MISSING, victim)]
    finally:
        store.dispose()
