"""Completeness end to end: every file of every generation, and walks that know when
they missed something (``run --once`` as a separate process, over HTTP, defaults).

Each test reproduces one way genvault used to miss files while reporting success:

1. GeminiGen's own seed example: the detail lists files the listing does not;
2. offsets that shift while a Tengr.ai history is paged (deletions and creations);
3. a GeminiGen server that caps the page size below the one asked;
4. one rejected CrowdComputed workflow stopping the others;
5. a server that ignores the page parameter (paged until stopped from outside);
(6, stranded leases after a kill, lives in tests/crash and tests/acceptance/test_replicas.py.)
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.simulator import crowdcomputed, geminigen, media, tengrai
from genvault.simulator.base import ExpectedFile
from genvault.simulator.media import MediaSpec
from genvault.store import Store
from tests.acceptance.helpers import genvault, local_config, sim_account
from tests.fixtures.origin import Origin, Reply

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"
KEY = "complete-walks-key-8e21"
ENV = {"SIM_KEY": KEY}


def _store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'gv.db'}")


def _archived_urls(tmp_path: Path, account: str = "main") -> dict[str, dict[str, Any]]:
    store = _store(tmp_path)
    try:
        return {
            a["source_url"]: a
            for a in store.assets(account)
            if a["state"] == AssetState.ARCHIVED.value
        }
    finally:
        store.dispose()


def _run_once(config: Path) -> Any:
    return genvault("--config", str(config), "run", "--once", env=ENV, timeout=300)


def _sha_by_url(files: list[ExpectedFile]) -> dict[str, str]:
    return {f.url: f.sha256 for f in files}


def _assert_archived(tmp_path: Path, expected: list[ExpectedFile], account: str = "main") -> None:
    """Every expected file of the roles archived by default (not references) is archived."""
    expected = [f for f in expected if f.role != "reference"]
    archived = _archived_urls(tmp_path, account)
    missing = sorted(set(_sha_by_url(expected)) - set(archived))
    assert not missing, f"{len(missing)} of {len(expected)} files not archived: {missing[:5]}"
    for url, sha in _sha_by_url(expected).items():
        assert archived[url]["sha256"] == sha


# --------------------------------------------------------------------------- 1. seed 001


def _seed_origin() -> Origin:
    """The seed 001 listing and detail, dated to now, with the CDN on the same server."""
    now = utcnow()
    stamps = {
        "created_at": now - timedelta(hours=2),
        "updated_at": now - timedelta(hours=2),
        "expired_at": now + timedelta(days=28),
    }
    kinds: dict[str, media.MediaKind] = {".jpg": "image", ".mp4": "video", ".mp3": "audio"}

    def dated(doc: Any) -> Any:
        if isinstance(doc, dict):
            return {
                k: (
                    stamps[k].isoformat().replace("+00:00", "Z")
                    if k in stamps and isinstance(v, str)
                    else dated(v)
                )
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [dated(v) for v in doc]
        return doc

    origin: Origin

    def script(request: httpx.Request) -> Reply:
        base = origin.url
        path = request.url.path
        if path.endswith("/histories"):
            # The seed's page shows one item with "total": 25; served as a history of
            # that one item, so the listing is consistent (page 2 is empty).
            listing = json.loads((SEEDS / "geminigen_histories.json").read_text())
            listing["total"] = len(listing["result"])
            if request.url.params.get("page", "1") != "1":
                listing["result"] = []
            text = json.dumps(listing)
        elif path.endswith("/history/hist_abc123def456"):
            text = (SEEDS / "geminigen_history_detail.json").read_text()
        elif path.startswith("/cdn/"):
            spec = MediaSpec(f"seed001{path}", 30_000, kinds[Path(path).suffix])
            return Reply(
                headers={"Content-Type": spec.content_type},
                body=media.read_all(spec),
            )
        else:
            return Reply(status=404, body=b'{"detail": "not found"}')
        text = text.replace("https://cdn.geminigen.ai/", f"{base}/cdn/")
        body = json.dumps(dated(json.loads(text))).encode()
        return Reply(headers={"Content-Type": "application/json"}, body=body)

    origin = Origin(script)  # serving at once; stopped after the test (tests/conftest.py)
    return origin


def test_geminigen_seed_example_archives_every_file_the_detail_lists(tmp_path: Path) -> None:
    """Default config: the listing names one image; the detail a second image (with a
    thumbnail), a video (with its last frame) and an audio. All of them are archived."""
    origin = _seed_origin()
    account = {
        "name": "main",
        "provider": "geminigen",
        "api_key_env": "SIM_KEY",
        "base_url": f"{origin.url}/uapi/v1",
        "media_base": f"{origin.url}/cdn/",
    }
    proc = _run_once(local_config(tmp_path, [account]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {re.sub(r"^.*/cdn/", "", url) for url in _archived_urls(tmp_path)}
    assert {
        "images/hist_abc123def456.jpg",  # the one the listing names
        "images/img_ghi345jkl678.jpg",  # the detail's generated_image
        "thumbnails/thumb_jkl901mno234_small.jpg",  # ... and its thumbnail
        "videos/vid_def789ghi012.mp4",  # the detail's generated_video
        "frames/vid_def789ghi012_last.jpg",  # ... and its last frame
        "audio/aud_mno567pqr890.mp3",  # the detail's generated_audio
        "thumbnails/hist_abc123def456_thumb.jpg",
    } <= names
    assert any(r.url.path.endswith("/history/hist_abc123def456") for r in origin.requests)


def test_geminigen_files_only_in_the_detail_are_archived(tmp_path: Path) -> None:
    with geminigen.create(
        api_key=KEY, seed=31, count=12, processing_count=0, failed_count=0, detail_only_count=4
    ) as sim:
        proc = _run_once(local_config(tmp_path, [sim_account(sim, "SIM_KEY")]))
        assert proc.returncode == 0, proc.stderr[-3000:]
        _assert_archived(tmp_path, sim.expected_media())


# --------------------------------------------------------------------------- 2. shifting offsets


def test_tengrai_offsets_shifting_during_the_first_sync_skip_nothing(tmp_path: Path) -> None:
    """1,200 artworks paged 100 at a time while the user deletes 15 and creates 5 between
    every two requests: every artwork that was never deleted is archived by the first
    run, and the artworks created meanwhile by the second."""
    with tengrai.create(
        api_key=KEY,
        seed=32,
        count=1200,
        image_size=1_500,
        processing_count=0,
        failed_count=0,
        canceled_count=0,
        churn_delete_per_request=15,
        churn_insert_per_request=5,
        churn_requests=10,
    ) as sim:
        before = {f.generation_id for f in sim.expected_media()}
        account = {**sim_account(sim, "SIM_KEY"), "page_limit": 100}
        config = local_config(tmp_path, [account])
        proc = _run_once(config)
        deleted = set(sim.deleted_ids)
        assert len(deleted) == 150
        stayed = [f for f in sim.expected_media() if f.generation_id in before - deleted]
        _assert_archived(tmp_path, stayed)
        # Artworks listed and then deleted before their files were fetched answer 404: they
        # wait for a retry (exit 3), never given up before their deadline.
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
        assert _waiting_generations(tmp_path) <= deleted
        proc = _run_once(config)
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
        _assert_archived(tmp_path, sim.expected_media())
        assert _waiting_generations(tmp_path) <= deleted


def _waiting_generations(tmp_path: Path) -> set[str]:
    """External ids of generations with a file still pending."""
    store = _store(tmp_path)
    try:
        return {
            a["external_id"] for a in store.assets("main") if a["state"] == AssetState.PENDING.value
        }
    finally:
        store.dispose()


# --------------------------------------------------------------------------- 3. a page cap


def test_geminigen_server_page_cap_is_walked_through(tmp_path: Path) -> None:
    """items_per_page asks 100; the server answers 10 at most (its total is right)."""
    with geminigen.create(
        api_key=KEY, seed=33, count=37, processing_count=0, failed_count=0, max_items_per_page=10
    ) as sim:
        config = local_config(tmp_path, [sim_account(sim, "SIM_KEY")])
        proc = _run_once(config)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _assert_archived(tmp_path, sim.expected_media())
        store = _store(tmp_path)
        try:
            cursor = store.get_cursor("main", "all")
        finally:
            store.dispose()
        assert cursor.page_size_seen == 10 and cursor.last_walk_complete


# --------------------------------------------------------------------------- 4. one bad stream


def test_a_rejected_crowdcomputed_workflow_fails_alone_and_is_named(tmp_path: Path) -> None:
    workflows = ["text-to-image", "upscaler", "ghibli-style"]
    with crowdcomputed.create(
        api_key=KEY,
        seed=34,
        count=18,
        processing_count=0,
        workflows=workflows,
        rejected_workflows=("upscaler",),
    ) as sim:
        config = local_config(tmp_path, [sim_account(sim, "SIM_KEY")])
        proc = _run_once(config)
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "upscaler" in proc.stderr
        good = [f for f in sim.expected_media() if sim.workflow_of[f.generation_id] != "upscaler"]
        assert good
        _assert_archived(tmp_path, good)
        store = _store(tmp_path)
        try:
            failed = store.get_cursor("main", "upscaler")
            fine = [store.get_cursor("main", w) for w in ("text-to-image", "ghibli-style")]
        finally:
            store.dispose()
        assert all(c.last_walk_complete for c in fine)
        assert failed.last_walk_complete is not True


# --------------------------------------------------------------------------- 5. ignored paging


def test_a_server_that_ignores_the_offset_ends_the_walk_incomplete(tmp_path: Path) -> None:
    """600 artworks, page_limit 100, offset ignored: two listing requests, not 300, and
    the run says the sync was incomplete (exit 3)."""
    with tengrai.create(
        api_key=KEY,
        seed=35,
        count=600,
        image_size=1_500,
        processing_count=0,
        ignore_offset=True,
    ) as sim:
        account = {**sim_account(sim, "SIM_KEY"), "page_limit": 100}
        proc = _run_once(local_config(tmp_path, [account]))
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "repeated_page" in proc.stderr
        listing_hits = sum(
            n for route, n in sim.stats.snapshot()["routes"].items() if route.endswith("artworks")
        )
        assert listing_hits == 2
        store = _store(tmp_path)
        try:
            cursor = store.get_cursor("main", "all")
        finally:
            store.dispose()
        assert cursor.last_walk_complete is False and cursor.scan_position is None
