"""The issue's numbers: 324 files, 8 SIGKILLs mid-archive, then one clean run saves them all.

Reported: after ``run --once`` was SIGKILLed mid-archive 8 times, two clean runs
archived 285 of 324 files and exited 0. The rest were leased by the dead runs and
left alone for ``archive.lease_seconds`` (15 minutes, the default, as here), long
enough to pass a deadline. Now a run that starts after a crash takes over what
the crashed runs held at once, on SQLite and on PostgreSQL.

Each killed run dies mid-archive, right after recording a few outcomes
(``archive.after_commit``), while the rest of its window of leases
(``archive.concurrency`` x 2) is still downloading.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from genvault.crashpoints import ENV_VAR
from genvault.simulator import simulator_factory
from tests.acceptance.helpers import GENVAULT, sim_account, write_config
from tests.crash.harness import FolderView

pytestmark = [pytest.mark.slow]

KEY = "stranded-leases-key-24ch"
FILES = 324
KILLS = 8
ROLES = {"result", "thumbnail", "last_frame"}
"""What genvault archives by default."""


def _run(config: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRANDED_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    env.pop(ENV_VAR, None)
    if crash_at:
        env[ENV_VAR] = crash_at
    return subprocess.run(
        [*GENVAULT, "--config", str(config), "run", "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def _states(db_url: str) -> tuple[Counter[str], int]:
    """(asset rows by state, rows still leased)."""
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            states = Counter(
                dict(
                    conn.execute(sa.text("SELECT state, count(*) FROM asset GROUP BY state")).all()
                )
            )
            leased = conn.execute(
                sa.text("SELECT count(*) FROM asset WHERE lease_owner IS NOT NULL")
            ).scalar_one()
    finally:
        engine.dispose()
    return states, int(leased)


def test_eight_kills_mid_archive_then_one_clean_run_archives_all_324_files(
    tmp_path: Path, db_url: str
) -> None:
    sim = simulator_factory("geminigen")(
        api_key=KEY,
        count=141,
        image_size=2_000,
        video_size=4_000,
        audio_size=3_000,
        thumbnail_size=1_000,
        processing_count=0,
        failed_count=0,
    )
    sim.start()
    try:
        truth = [f for f in sim.expected_media() if f.role in ROLES]
        assert len(truth) == FILES
        archive = tmp_path / "archive"
        config = write_config(
            tmp_path / "genvault.toml",
            db_url=db_url,
            storage_url=f"file://{archive}",
            accounts=[sim_account(sim, "STRANDED_KEY")],
        )  # archive.lease_seconds: the default, 900
        archived_before = 0
        for kill in range(KILLS):
            # right after the 3rd to 6th commit of outcomes: some files are recorded, the
            # rest of the window is still downloading
            proc = _run(config, f"archive.after_commit:{3 + kill % 4}")
            assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, proc.stderr[-2000:])
            states, leased = _states(db_url)
            assert states["archived"] > archived_before, f"kill {kill} archived nothing"
            assert leased > 0, f"kill {kill} died holding no lease"
            archived_before = states["archived"]
        assert archived_before < FILES

        states, stranded = _states(db_url)
        print(f"after {KILLS} kills: {dict(states)}, {stranded} files leased by dead runs")
        clean = _run(config)
        assert clean.returncode == 0, clean.stderr[-3000:]
        states, leased = _states(db_url)
        assert states == Counter({"archived": FILES, "skipped": states["skipped"]}), states
        assert leased == 0

        stored = Counter(
            (size, digest)
            for key, (size, digest, _) in FolderView(archive).objects().items()
            if not key.endswith("generation.json")
        )
        assert stored == Counter((f.size, f.sha256) for f in truth)
    finally:
        sim.stop()
