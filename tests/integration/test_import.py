"""``import_folder``: files downloaded earlier adopted as archived files.

A GeminiGen simulator on loopback, synced the real way (a pass whose every media
request fails, so it learns every generation and archives nothing), and a folder
prepared as a user would have it: downloads named by the CDN, by generation id, by
genvault's own names, one with a JSON sidecar, one cut short, an HTML error page
saved as ``.jpg``, a file of no known generation, a thumbnail of a generation the
provider no longer serves (so its size cannot be checked: taken, with a note) and
another one cut short (refused by its own format), hidden and unfinished files and a
link out of the folder. The archive must hold exactly the good copies, byte for
byte (local folder and S3 via moto's server); the next pass must not fetch them; a
second import must change nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    DatabaseSettings,
    NetworkSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.pipeline import run_once
from genvault.ops.importer import ImportReport, Verdict, import_folder, import_runtime
from genvault.runtime import Runtime
from genvault.simulator import geminigen, media
from genvault.simulator.base import ExpectedFile
from genvault.store import Store
from tests.fixtures.sims import SimStarter, sim_account

KEY = "gg-import-key-7a41"


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=11,
        count=12,
        image_size=6_000,
        video_size=20_000,
        audio_size=5_000,
        thumbnail_size=3_000,
        processing_count=0,
        failed_count=1,
        expired_count=2,
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StorageSettings:
    if request.param == "local":
        return StorageSettings(url=f"file://{tmp_path / 'archive'}")
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return StorageSettings(url=f"s3://{bucket}/vault", endpoint_url=endpoint)


@dataclass
class World:
    sim: geminigen.GeminiGenSimulator
    settings: Settings
    folder: Path
    expected: dict[str, ExpectedFile]
    """By URL path."""
    good: dict[str, ExpectedFile]
    """Local file (relative path) -> the file it is a good copy of."""
    unchecked: str
    """The good copy whose size the provider can no longer confirm."""

    @property
    def account(self) -> AccountSettings:
        return self.settings.accounts[0]

    def store(self) -> Store:
        return Store(self.settings.database.url)


def _bytes(sim: geminigen.GeminiGenSimulator, f: ExpectedFile) -> bytes:
    entry = sim.server.media_entry(urlsplit(f.url).path)
    assert entry is not None
    return media.read_all(entry.spec)


def _url_name(f: ExpectedFile) -> str:
    return urlsplit(f.url).path.rsplit("/", 1)[-1]


@pytest.fixture
def world(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path, storage_settings: StorageSettings
) -> Iterator[World]:
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'gv.db'}"),
        storage=storage_settings,
        network=NetworkSettings(allow_private=True),
        accounts=(AccountSettings(**sim_account(sim, "UNUSED")),),
    )
    rt = Runtime.build(settings, {"main": SecretStr(KEY)})
    try:
        sim.faults.media_status_next = 1_000_000  # learn everything, archive nothing
        run_once(rt)
    finally:
        rt.close()
        sim.faults.reset()
    now = datetime.now(UTC)
    files = sim.expected_media()
    live = [f for f in files if f.expires_at is None or f.expires_at > now]
    expired = [f for f in files if f.expires_at is not None and f.expires_at <= now]
    by_gen: dict[str, list[ExpectedFile]] = {}
    for f in live:
        by_gen.setdefault(f.generation_id, []).append(f)

    def first(role: str, kind: str, *, skip: set[str]) -> ExpectedFile:
        return next(
            f for f in live if f.role == role and f.kind == kind and f.generation_id not in skip
        )

    folder = tmp_path / "downloads"
    (folder / "by hand").mkdir(parents=True)
    good: dict[str, ExpectedFile] = {}
    used: set[str] = set()

    # Named as the CDN named them (a browser's "save as").
    image = first("result", "image", skip=used)
    used.add(image.generation_id)
    good[_url_name(image)] = image
    thumb = next(f for f in by_gen[image.generation_id] if f.role == "thumbnail")
    good[_url_name(thumb)] = thumb
    # A video with no id in its name, but a JSON sidecar (another tool's metadata).
    video = first("result", "video", skip=used)
    used.add(video.generation_id)
    good["by hand/clip.mp4"] = video
    (folder / "by hand/clip.mp4.json").write_text(
        json.dumps({"uuid": video.generation_id, "prompt": "whatever", "likes": 3})
    )
    # genvault's own layout (a copy of an old archive): the id is the folder's name.
    audio = first("result", "audio", skip=used)
    used.add(audio.generation_id)
    good[f"old-archive/{audio.generation_id}/00-result.mp3"] = audio
    # Named by the id with a sanitised prefix and a role word.
    video_thumb = next(f for f in by_gen[video.generation_id] if f.role == "thumbnail")
    good[f"by hand/gg_{video.generation_id}_thumb.jpg"] = video_thumb
    # A thumbnail the provider no longer serves (the generation expired).
    thumbs = [f for f in expired if f.role == "thumbnail"]
    single = [f for f in thumbs if [t.generation_id for t in thumbs].count(f.generation_id) == 1]
    gone = single[0]
    gone_short = next(f for f in thumbs if f.generation_id != gone.generation_id)
    good[f"{gone.generation_id}_thumbnail.jpg"] = gone

    for rel, f in good.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(_bytes(sim, f))

    # Cut short: the provider still serves it (refused by size) ...
    short = first("result", "image", skip=used)
    used.add(short.generation_id)
    (folder / _url_name(short)).write_bytes(_bytes(sim, short)[: short.size - 1000])
    # ... and one it no longer serves (refused by the JPEG's missing end marker).
    (folder / _url_name(gone_short)).write_bytes(_bytes(sim, gone_short)[: gone_short.size - 100])
    # An error page saved under a media name, with a good id.
    html = first("result", "image", skip=used)
    used.add(html.generation_id)
    (folder / _url_name(html)).write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    # A real JPEG of no generation this account knows.
    (folder / "00000000-dead-4bee-8000-000000000000.jpg").write_bytes(_bytes(sim, image))
    # Left alone: hidden, unfinished, not media by name, a link out of the folder.
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / f"{short.generation_id}.jpg.part").write_bytes(b"\xff\xd8\xff")
    (folder / "notes.txt").write_text("downloaded by hand in May")
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(_bytes(sim, short))
    os.symlink(outside, folder / "link-out.jpg")
    yield World(
        sim,
        settings,
        folder,
        {urlsplit(f.url).path: f for f in files},
        good,
        f"{gone.generation_id}_thumbnail.jpg",
    )


def _import(w: World, *, dry_run: bool = False) -> ImportReport:
    rt = import_runtime(w.settings, dry_run=dry_run)
    try:
        return import_folder(rt, w.account, w.folder, dry_run=dry_run)
    finally:
        rt.close()


def _by_path(report: ImportReport) -> dict[str, Any]:
    return {f.path: f for f in report.files}


def _assets(w: World) -> dict[str, dict[str, Any]]:
    store = w.store()
    try:
        return {urlsplit(a["source_url"]).path: a for a in store.assets()}
    finally:
        store.dispose()


def _read(w: World, key: str) -> bytes:
    from genvault.storage import open_storage

    with open_storage(w.settings.storage).open(key) as fh:
        return fh.read()


def test_import_adopts_good_copies_and_refuses_the_rest(world: World) -> None:
    w = world
    before = _assets(w)
    assert before and all(a["state"] in ("pending", "lost", "skipped") for a in before.values())

    # A dry run says what would happen and writes nothing.
    dry = _import(w, dry_run=True)
    assert _assets(w) == before
    assert {f.path for f in dry.of(Verdict.IMPORTED)} == set(w.good)

    report = _import(w)
    files = _by_path(report)
    assert {f.path for f in report.of(Verdict.IMPORTED)} == set(w.good), report.as_dict()
    assert [(f.path, f.verdict) for f in dry.files] == [(f.path, f.verdict) for f in report.files]
    refused = {f.path: f.reason for f in report.of(Verdict.REFUSED)}
    assert len(refused) == 3, refused
    assert any("partial download" in r for r in refused.values())
    assert any("HTML page" in r for r in refused.values())
    assert any("JPEG without its end marker" in r for r in refused.values())
    unmatched = files["00000000-dead-4bee-8000-000000000000.jpg"]
    assert unmatched.verdict is Verdict.UNMATCHED and "no id" in unmatched.reason
    assert files["link-out.jpg"].verdict is Verdict.SKIPPED
    assert "leading out" in files["link-out.jpg"].reason
    assert report.ignored == 4  # .DS_Store, .part, notes.txt, the video's .json sidecar
    assert int(report.exit_code) == 3  # something was refused
    assert report.sidecars >= 1

    after = _assets(w)
    for rel, exp in w.good.items():
        row = after[urlsplit(exp.url).path]
        assert row["state"] == "archived", (rel, row)
        assert (row["size"], row["sha256"]) == (exp.size, exp.sha256)
        assert row["id"] == files[rel].asset_id and row["storage_key"] == files[rel].key
        stored = _read(w, row["storage_key"])
        assert hashlib.sha256(stored).hexdigest() == exp.sha256
        assert row["last_error"].startswith("import:")
        if rel == w.unchecked:
            assert files[rel].size_check == "unchecked"
            assert "size not checked" in row["last_error"]
        else:
            assert files[rel].size_check in ("served", "announced")
    assert sum(1 for a in after.values() if a["state"] == "archived") == len(w.good)

    # The next pass fetches none of them again (and archives what is left).
    w.sim.stats.reset()
    rt = Runtime.build(w.settings, {"main": SecretStr(KEY)})
    try:
        rt.store.requeue_assets("main", failed=False, lost=False)  # the 503s' backoff: due now
        run_once(rt)
    finally:
        rt.close()
    hits = w.sim.stats.snapshot()["media_hits"]
    assert hits, "the pass downloaded nothing at all"
    for exp in w.good.values():
        assert urlsplit(exp.url).path not in hits
    final = _assets(w)
    for exp in w.good.values():
        assert final[urlsplit(exp.url).path]["sha256"] == exp.sha256

    # Importing the same folder again changes nothing.
    again = _import(w)
    assert not again.of(Verdict.IMPORTED) and not again.of(Verdict.FAILED)
    assert {f.path for f in again.of(Verdict.ALREADY)} >= set(w.good)
    assert _assets(w) == final


# --------------------------------------------------------------------------- the store


def test_import_holds_a_file_and_records_it_only_after_the_write(store: Store) -> None:
    """The import's write path on SQLite and PostgreSQL: a file an archive worker holds
    cannot be claimed; a claimed one is recorded archived (note, sha256, sidecar due)
    only by its claimant, once; an archived one is never claimed again."""
    from genvault.records import AssetState
    from genvault.store import Outcome
    from tests.integration.store_helpers import media, record, save, url

    save(store, [record("g-1", media_=[media(url("a.jpg")), media(url("b.jpg"))])])
    gen_id, _ = store.known_generations("main")[0]
    a, b = store.generation_files(gen_id)
    assert (a.state, b.state) == (AssetState.PENDING, AssetState.PENDING)
    worker = store.leases.acquire("worker-1", limit=1, lease_seconds=60)
    held = worker[0].id
    free = b.id if held == a.id else a.id
    assert not store.claim_for_import("import-x", held, 60)
    assert store.claim_for_import("import-x", free, 60)
    assert not store.claim_for_import("import-y", free, 60)  # ours until it expires

    done = Outcome(
        free,
        AssetState.ARCHIVED,
        error="a local copy",
        size=3,
        sha256="ab" * 32,
        content_type="image/jpeg",
        storage_key="k/00-result.jpg",
    )
    assert not store.record_import("import-y", done)  # not the claimant
    assert store.record_import("import-x", done)
    assert not store.record_import("import-x", done)  # the hold is gone with the commit
    row = next(c for c in store.generation_files(gen_id) if c.id == free)
    assert row.state is AssetState.ARCHIVED and row.imported and not row.leased
    assert (row.size, row.storage_key) == (3, "k/00-result.jpg")
    assert not store.claim_for_import("import-z", free, 60)  # archived: never again
    assert any(c.id == held and c.leased for c in store.generation_files(gen_id))

    store.release_import("import-x", held)  # not ours: the worker keeps it
    assert any(c.id == held and c.leased for c in store.generation_files(gen_id))
