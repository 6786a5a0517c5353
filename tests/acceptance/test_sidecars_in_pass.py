"""Sidecars are written during the archive pass, not after its last file (issue 14).

A generation's ``generation.json`` is due once all of its files are settled; the
pass writes it between outcome batches instead of after the loop, so a run does
not go on writing sidecars after its last media file. Checked from both sides: the
JSON log's order (``sidecar.written`` before the last ``asset.archived``) and the
folder's mtimes (the earliest sidecar older than the newest media file), on SQLite
and on PostgreSQL. Everything else about the sidecars (content, rewrite on change,
durability order, kills) is covered by ``test_run_once``, ``tests/crash`` and
``test_sidecar_claims``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genvault.simulator import geminigen
from tests.acceptance.helpers import genvault, write_config
from tests.fixtures.sims import SimStarter, sim_account

API_KEY = "gg-test-key-4d1e0b7a93"


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_sidecars_are_written_before_the_pass_last_file(
    db: str, start_sim: SimStarter, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sim = start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=5,
        count=40,
        image_size=20_000,
        video_size=300_000,
        audio_size=20_000,
        processing_count=0,
        failed_count=0,
        max_items_per_page=100,
    )
    db_url = (
        request.getfixturevalue("postgres_url")
        if db == "postgres"
        else f"sqlite:///{tmp_path}/gv.db"
    )
    archive = tmp_path / "archive"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=db_url,
        storage_url=f"file://{archive}",
        accounts=[sim_account(sim, "GG_KEY", items_per_page=100)],
    )
    proc = genvault("--config", str(config), "run", "--once", env={"GG_KEY": API_KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]

    files = [p for p in archive.rglob("*") if p.is_file() and ".genvault-tmp" not in p.parts]
    sidecars = [p.stat().st_mtime_ns for p in files if p.name == "generation.json"]
    media = [p.stat().st_mtime_ns for p in files if p.name != "generation.json"]
    assert len(media) == len(sim.expected_media()) - sum(
        1 for f in sim.expected_media() if f.role == "reference"
    )
    assert len(sidecars) == 40, "every generation has its sidecar"
    assert min(sidecars) < max(media), "the first sidecar came after the last media file"

    events = [json.loads(line).get("event") for line in proc.stderr.splitlines() if line[:1] == "{"]
    last_file = max(i for i, e in enumerate(events) if e == "asset.archived")
    first_sidecar = events.index("sidecar.written")
    assert first_sidecar < last_file, "every sidecar was written after the pass's last file"
