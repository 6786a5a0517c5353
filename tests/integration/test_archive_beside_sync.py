"""The archive pass that runs beside ``run --once``'s syncs and polls ends only after
they have, and then looks once more: files saved just before they ended are archived
in the same pass (``archive_pending``'s ``wait_while`` and ``wake``)."""

from __future__ import annotations

from pathlib import Path
from threading import Event

import pytest
from pydantic import SecretStr

from genvault.config import Settings
from genvault.jobs.archive import archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import sync_account
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.simulator.geminigen import GeminiGenSimulator
from tests.fixtures.sims import SimStarter, sim_account

KEY = "beside-sync-key-0123456789"


@pytest.fixture
def sim(start_sim: SimStarter) -> GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        count=12,
        image_size=2_000,
        video_size=3_000,
        audio_size=2_000,
        thumbnail_size=500,
        processing_count=0,
        failed_count=0,
    )


def _runtime(sim: GeminiGenSimulator, db_url: str, tmp_path: Path) -> Runtime:
    settings = Settings.model_validate(
        {
            "database": {"url": db_url},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "network": {"allow_private": True, "api_retries": 0},
            "server": {"enabled": False},
            "accounts": [sim_account(sim, "GG_KEY", items_per_page=4)],
        }
    )
    return Runtime.build(settings, {"main": SecretStr(KEY)})


def test_files_saved_as_the_feeders_end_are_archived_in_the_same_pass(
    sim: GeminiGenSimulator, db_url: str, tmp_path: Path
) -> None:
    """The worst order, forced: the pass finds nothing, then the whole sync and poll run
    and end (inside ``wait_while``, so no wake-up and no later look-again comes); the
    pass must still take every file they saved before it ends."""
    rt = _runtime(sim, db_url, tmp_path)
    asked = 0

    def feeders_busy() -> bool:
        nonlocal asked
        asked += 1
        if asked == 1:  # the queue was empty; now everything arrives and the feeders end
            acc = rt.accounts["main"]
            assert sync_account(rt, acc).pages > 0
            poll_account(rt, acc)
        return False

    try:
        result = archive_pending(rt, wait_while=feeders_busy, wake=Event())
        archived = rt.store.count_assets(AssetState.ARCHIVED)
        assert asked >= 1
        assert result.archived == archived > 0
        assert rt.store.count_assets(AssetState.PENDING) == 0
    finally:
        rt.close()


def test_an_idle_pass_waits_while_the_feeders_go(
    sim: GeminiGenSimulator, db_url: str, tmp_path: Path
) -> None:
    """An idle pass whose feeders still go waits (for ``wake``: a saved page) rather
    than ending: it takes what they save while ``wait_while`` still answers True, and
    ends once it answers False."""
    rt = _runtime(sim, db_url, tmp_path)
    wake = Event()
    feeding = Event()
    feeding.set()
    archived_while_feeding: list[int] = []
    looks = 0

    def busy() -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:
            acc = rt.accounts["main"]
            sync_account(rt, acc)
            poll_account(rt, acc)
            wake.set()  # as run_once's page callback does
        elif rt.store.count_assets(AssetState.PENDING) == 0:
            archived_while_feeding.append(rt.store.count_assets(AssetState.ARCHIVED))
            feeding.clear()
        return feeding.is_set()

    try:
        result = archive_pending(rt, wait_while=busy, wake=wake)
        assert archived_while_feeding and archived_while_feeding[0] == result.archived > 0
    finally:
        rt.close()
