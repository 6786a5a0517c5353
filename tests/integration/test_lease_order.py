"""Lease order (earliest deadline first vs FIFO) and the sync's generation lookup.

``LeaseOrder.FIFO`` exists only so the deadlines benchmark can compare genvault's
order with a naive archiver's on identical inputs; these tests pin down what each
order hands out, in the store (both databases) and through the archive job against
a real simulator. The last tests cover the page lookup of the sync write path on
PostgreSQL, which must probe the unique index however stale the statistics are.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    ArchiveSettings,
    DatabaseSettings,
    NetworkSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.archive import archive_pending
from genvault.jobs.sync import sync_account
from genvault.records import AssetState, MediaKind, MediaRole
from genvault.runtime import Runtime
from genvault.simulator import tengrai
from genvault.store import LeasedAsset, LeaseOrder, Outcome, Store
from tests.fixtures.sims import SimStarter, sim_account
from tests.integration.store_helpers import (
    media,
    now_utc,
    record,
    save,
    url,
)

KEY = "sim-tengrai-lease-order-key"


def _ids(leased: list[LeasedAsset]) -> list[str]:
    return [a.external_id for a in leased]


def _three_generations(store: Store) -> None:
    """old/mid/new by creation time, with deadlines in the opposite order."""
    now = now_utc()
    for name, age_h, deadline_h in (("old", 3, 30), ("mid", 2, 20), ("new", 1, 10)):
        save(
            store,
            [
                record(
                    name,
                    media_=[media(url(f"{name}.png"))],
                    created_at=now - timedelta(hours=age_h),
                    expires_at=now + timedelta(hours=deadline_h),
                )
            ],
        )


def test_deadline_order_is_the_default_and_takes_the_earliest_deadline(store: Store) -> None:
    _three_generations(store)
    assert _ids(store.leases.acquire("w", limit=10, lease_seconds=60)) == ["new", "mid", "old"]


@pytest.mark.parametrize(
    ("order", "expected"),
    [(LeaseOrder.DEADLINE, ["new", "mid", "old"]), (LeaseOrder.FIFO, ["old", "mid", "new"])],
)
def test_each_order_picks_its_first_files_in_sql_not_only_when_sorting(
    store: Store, order: LeaseOrder, expected: list[str]
) -> None:
    # one at a time: which rows the query picks, not just how a batch is sorted
    _three_generations(store)
    picked = [
        _ids(store.leases.acquire(f"w{i}", limit=1, lease_seconds=60, order=order))
        for i in range(3)
    ]
    assert picked == [[e] for e in expected]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (LeaseOrder.FIFO, ["expired-old", "live-new"]),
        (LeaseOrder.DEADLINE, ["live-new", "expired-old"]),
    ],
)
def test_fifo_tries_expired_files_in_line_and_deadline_order_tries_them_last(
    store: Store, order: LeaseOrder, expected: list[str]
) -> None:
    now = now_utc()
    save(
        store,
        [
            record(
                "expired-old",
                media_=[media(url("a.png"))],
                created_at=now - timedelta(hours=5),
                expires_at=now - timedelta(minutes=1),
            ),
            record(
                "live-new",
                media_=[media(url("b.png"))],
                created_at=now - timedelta(hours=1),
                expires_at=now + timedelta(hours=1),
            ),
        ],
    )
    assert _ids(store.leases.acquire("w", limit=10, lease_seconds=60, order=order)) == expected


def test_fifo_skips_leased_and_finished_files_like_the_deadline_order(store: Store) -> None:
    _three_generations(store)
    first = store.leases.acquire("w1", limit=1, lease_seconds=60, order=LeaseOrder.FIFO)
    assert _ids(first) == ["old"]
    store.leases.finish("w1", [Outcome(first[0].id, AssetState.LOST, error="gone")])
    second = store.leases.acquire("w2", limit=1, lease_seconds=60, order=LeaseOrder.FIFO)
    assert _ids(second) == ["mid"]
    rest = store.leases.acquire("w3", limit=10, lease_seconds=60, order=LeaseOrder.FIFO)
    assert _ids(rest) == ["new"]  # "mid" is leased to w2, "old" is settled


# --------------------------------------------------------------------------- the archive job


@pytest.fixture
def sim(start_sim: SimStarter) -> tengrai.TengrAISimulator:
    """Some artworks signed for an hour, the others kept 8 days; all done, real HTTP."""
    return start_sim(
        tengrai.create,
        api_key=KEY,
        seed=3,
        count=10,
        signed_count=4,
        image_size=2_000,
        processing_count=0,
        failed_count=0,
        canceled_count=0,
    )


def _runtime(sim: tengrai.TengrAISimulator, db_url: str, folder: Path) -> Runtime:
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(url=f"file://{folder}"),
        network=NetworkSettings(allow_private=True),
        archive=ArchiveSettings(concurrency=1, thumbnails=False),
        accounts=(AccountSettings(**sim_account(sim, "UNUSED", name="t")),),
    )
    return Runtime.build(settings, {"t": SecretStr(KEY)})


def _poll_due(store: Store, external_id: str, when: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE generation SET next_poll_at = :when WHERE external_id = :ext"),
            {"when": when, "ext": external_id},
        )


def test_a_file_waits_while_its_generation_awaits_its_detail_read(store: Store) -> None:
    """The detail read may correct a listed file's role (and so its storage key): leased
    before it, the file was stored under the listing's key, and again under the right
    one after a kill. It waits for the read, unless the read backs off past the hold or
    the file's own deadline is near."""
    now = now_utc()
    video = media(url("v.jpg"), role=MediaRole.RESULT, kind=MediaKind.IMAGE)
    save(
        store,
        [
            record(
                "needs-read", media_=[video], expires_at=now + timedelta(days=2), needs_detail=True
            ),
            record("plain", media_=[media(url("p.png"))], expires_at=now + timedelta(days=3)),
        ],
    )
    assert _ids(store.leases.acquire("w", limit=10, lease_seconds=60)) == ["plain"]
    store.leases.release("w")

    _poll_due(store, "needs-read", now + timedelta(hours=1))  # the read keeps failing
    assert _ids(store.leases.acquire("w", limit=10, lease_seconds=60)) == ["needs-read", "plain"]
    store.leases.release("w")

    _poll_due(store, "needs-read", now)  # due again; but its deadline is 30 minutes away
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE asset SET expires_at = :at WHERE source_url = :u"),
            {"at": now + timedelta(minutes=30), "u": url("v.jpg")},
        )
    assert _ids(store.leases.acquire("w", limit=10, lease_seconds=60)) == ["needs-read", "plain"]
    store.leases.release("w")

    _poll_due(store, "needs-read", None)  # read: nothing holds it
    assert "needs-read" in _ids(store.leases.acquire("w", limit=10, lease_seconds=60))


@pytest.mark.parametrize("order", [LeaseOrder.DEADLINE, LeaseOrder.FIFO])
def test_archive_pending_downloads_in_the_order_asked_for(
    sim: tengrai.TengrAISimulator, db_url: str, tmp_path: Path, order: LeaseOrder
) -> None:
    rt = _runtime(sim, db_url, tmp_path / "archive")
    try:
        assert sync_account(rt, rt.accounts["t"]).complete
        rows = rt.store.assets()
        # the precondition that makes the two orders differ: a signed (short-lived)
        # file that is not among the oldest
        soonest = min(rows, key=lambda a: a["expires_at"])
        assert soonest["created_at"] > min(a["created_at"] for a in rows)

        seen: list[LeasedAsset] = []
        result = archive_pending(rt, order=order, on_outcome=lambda _o, a: seen.append(a))
    finally:
        rt.close()

    assert result.archived == len(rows) == len(seen) and result.lost == 0
    created = [a.generation_created_at for a in seen]
    deadlines = [a.expires_at for a in seen]
    if order is LeaseOrder.FIFO:
        assert created == sorted(created)
        assert deadlines != sorted(deadlines)
    else:
        assert deadlines == sorted(deadlines)
        assert created != sorted(created)


# --------------------------------------------------------------------------- page lookup


def _reltuples(store: Store, table: str) -> float:
    with store.engine.connect() as conn:
        return float(
            conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                {"t": table},
            ).scalar_one()
        )


def test_a_backfill_keeps_postgres_statistics_current_for_the_page_lookups(
    postgres_url: str,
) -> None:
    """Without statistics (a fresh table, never ANALYZEd, as in a first backfill) the
    planner took the page lookup for a scan of the account's whole index range with
    the ids as a filter, so each page cost more as the table grew (~130 ms a page at
    15,000 rows). The store ANALYZEs a table it has doubled since the last ANALYZE."""
    s = Store(postgres_url)
    s.upgrade()
    try:
        assert _reltuples(s, "generation") < 1  # never analyzed (-1) or empty
        for page in range(6):
            save(
                s,
                [
                    record(f"p{page}-{i}", media_=[media(url(f"{page}-{i}.png"))])
                    for i in range(500)
                ],
            )
        # ANALYZEd after 1,000 and 2,000 rows (then due again at 4,000)
        assert _reltuples(s, "generation") == 2000
        assert _reltuples(s, "asset") == 2000

        sent: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_rest: Any) -> None:
            if statement.startswith("SELECT generation.id, generation.external_id"):
                sent.append((statement, params))

        wanted = [f"p1-{i}" for i in range(0, 500, 2)] + [f"new-{i}" for i in range(250)]
        sa.event.listen(s.engine, "before_cursor_execute", capture)
        save(s, [record(i, media_=[]) for i in wanted])
        statement, params = sent[0]  # the lookup of the page's stored generations
        with s.engine.connect() as conn:
            plan = "\n".join(
                r[0] for r in conn.exec_driver_sql("EXPLAIN ANALYZE " + statement, params)
            )
    finally:
        s.dispose()
    # the pathological plan: an index range scan of the account, the ids as a filter
    pathological = r"Index Cond: [^\n]*account[^\n]*\n\s*Filter: [^\n]*external_id"
    assert not re.search(pathological, plan), plan
    assert "rows=500 loops=1" in plan.splitlines()[0], plan  # (the page is stored by now)


def test_sqlite_needs_no_analyze(store: Store) -> None:
    """The ANALYZE bookkeeping is PostgreSQL's alone (SQLite probes its index per id)."""
    save(store, [record(f"g{i}", media_=[]) for i in range(1500)])
    assert store._rows_since_analyze == 0
