"""Full walks reconcile the ledger with the listing: on a schedule, after an incomplete
walk, and what they no longer find is recorded as gone (SQLite and PostgreSQL, the
Tengr.ai simulator over HTTP, the sync job in process)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    DatabaseSettings,
    NetworkSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.sync import sync_account
from genvault.models import SyncCursor, utcnow
from genvault.runtime import Runtime
from genvault.simulator import tengrai
from tests.fixtures.sims import SimStarter, sim_account

KEY = "sim-tengrai-reconcile-key"


@pytest.fixture
def sim(start_sim: SimStarter) -> tengrai.TengrAISimulator:
    return start_sim(
        tengrai.create,
        api_key=KEY,
        seed=41,
        count=60,
        image_size=1_000,
        processing_count=0,
        failed_count=0,
        canceled_count=0,
    )


@pytest.fixture
def rt(sim: tengrai.TengrAISimulator, db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(url=f"file://{tmp_path / 'archive'}"),
        network=NetworkSettings(allow_private=True),
        accounts=(AccountSettings(**sim_account(sim, "UNUSED", name="t", page_limit=20)),),
    )
    runtime = Runtime.build(settings, {"t": SecretStr(KEY)})
    try:
        yield runtime
    finally:
        runtime.close()


def _age_full_walk(rt: Runtime, hours: float) -> None:
    """Pretend the last complete full walk ended ``hours`` ago."""
    c = SyncCursor.__table__.c  # type: ignore[attr-defined]
    with rt.store.tx() as conn:
        conn.execute(
            sa.update(SyncCursor.__table__)  # type: ignore[arg-type]
            .where(c.account == "t")
            .values(last_full_walk_at=utcnow() - timedelta(hours=hours))
        )


def _gone(rt: Runtime) -> set[str]:
    return {g["external_id"] for g in rt.store.generations("t") if g["gone_at"] is not None}


def test_first_walk_is_full_and_records_what_it_listed(
    rt: Runtime, sim: tengrai.TengrAISimulator
) -> None:
    result = sync_account(rt, rt.accounts["t"])
    assert result.complete and [s.full for s in result.streams] == [True]
    cursor = rt.store.get_cursor("t", "all")
    assert cursor.last_full_walk_at is not None and cursor.last_walk_complete
    assert all(g["stream"] == "all" and g["listed_at"] for g in rt.store.generations("t"))
    with rt.store.engine.connect() as conn:
        listed = conn.execute(sa.text("SELECT listed FROM sync_cursor")).scalar_one()
    assert listed == len(sim.live_ids) == 60


def test_incremental_walks_between_full_walks_and_a_full_one_when_due(
    rt: Runtime, sim: tengrai.TengrAISimulator
) -> None:
    acc = rt.accounts["t"]
    sync_account(rt, acc)
    before = sim.stats.snapshot()["routes"]
    second = sync_account(rt, acc)
    assert second.complete and [s.full for s in second.streams] == [False]
    assert second.streams[0].end is not None and second.streams[0].end.value == "watermark"
    listing = sum(n for r, n in sim.stats.snapshot()["routes"].items() if r.endswith("artworks"))
    # the first page holds the newest items (not older than the watermark), the second
    # is all older: the walk stops there, instead of reading all 4 pages again
    assert listing - sum(n for r, n in before.items() if r.endswith("artworks")) == 2

    _age_full_walk(rt, 25)  # sync.full_walk_hours = 24 by default
    third = sync_account(rt, acc)
    assert [s.full for s in third.streams] == [True] and third.complete


def test_a_full_walk_records_deleted_items_as_gone_and_a_reappearing_one_as_back(
    rt: Runtime, sim: tengrai.TengrAISimulator
) -> None:
    acc = rt.accounts["t"]
    sync_account(rt, acc)
    victims = sim.live_ids[10:15]
    sim.delete_artworks(victims)
    sync_account(rt, acc)  # incremental: stops at the watermark, says nothing of deletions
    assert _gone(rt) == set()
    sync_account(rt, acc, full=True)  # what backfill runs, and what the schedule runs daily
    assert _gone(rt) == set(victims)
    cursor = rt.store.get_cursor("t", "all")
    assert cursor.last_walk_complete
    with rt.store.engine.connect() as conn:
        listed = conn.execute(sa.text("SELECT listed FROM sync_cursor")).scalar_one()
    assert listed == 55


def test_a_walk_that_ended_incomplete_makes_the_next_one_full(
    rt: Runtime, sim: tengrai.TengrAISimulator
) -> None:
    acc = rt.accounts["t"]
    sync_account(rt, acc)
    sim.config = dataclasses.replace(sim.config, ignore_offset=True)  # read per request
    broken = sync_account(rt, acc, full=True)
    assert not broken.complete
    (stream,) = broken.streams
    assert stream.end is not None and stream.end.value == "repeated_page"
    cursor = rt.store.get_cursor("t", "all")
    assert cursor.last_walk_complete is False and cursor.scan_position is None
    sim.config = dataclasses.replace(sim.config, ignore_offset=False)
    healed = sync_account(rt, acc)  # not asked to be full: it is, after an incomplete walk
    assert [s.full for s in healed.streams] == [True] and healed.complete
