"""The metadata store against real databases: every test runs on SQLite and PostgreSQL.

``genvault.store`` holds all of genvault's SQL, so this suite drives it directly:
schema/migrations, the page upsert and its asset identity rules, the sync cursor and
its transaction, the poll queue, asset leasing (including a two-worker race on
PostgreSQL), sidecar bookkeeping, the reports, and a 5,000-row page.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa

from genvault.identity import url_key
from genvault.net.throttle import CircuitState, HealthSnapshot
from genvault.records import AssetState, GenerationStatus, MediaKind, MediaRole
from genvault.store import CursorUpdate, LeasedAsset, Outcome, Store
from tests.integration.store_helpers import (
    ACCOUNT,
    DEFAULT_ROLES,
    POLL_HORIZON,
    PROVIDER,
    RETENTION,
    assets_of,
    generation,
    media,
    now_utc,
    polled,
    record,
    save,
    signed_url,
    url,
)

S = GenerationStatus
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _one_asset(store: Store, external_id: str) -> dict[str, Any]:
    rows = assets_of(store, external_id)
    assert len(rows) == 1, rows
    return rows[0]


def _register(store: Store, ids: list[str], source: str = "track", **kw: Any) -> int:
    return store.register_tasks(
        provider=PROVIDER,
        account=ACCOUNT,
        items=[{"id": i} for i in ids],
        source=source,
        poll_horizon=POLL_HORIZON,
        **kw,
    )


def _lease(
    store: Store, owner: str, *, limit: int = 100, lease_seconds: float = 60, **kw: Any
) -> list[LeasedAsset]:
    return store.leases.acquire(owner, limit=limit, lease_seconds=lease_seconds, **kw)


def _archived(asset_id: int, size: int = 1234) -> Outcome:
    return Outcome(
        asset_id,
        AssetState.ARCHIVED,
        size=size,
        sha256="ab" * 32,
        content_type="image/png",
        storage_key=f"k/{asset_id}.png",
    )


# --------------------------------------------------------------------------- schema


def test_upgrade_is_idempotent_and_creates_tables_and_indexes(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.upgrade()
        store.upgrade()  # a second start must be a no-op, not an error
        insp = sa.inspect(store.engine)
        assert {
            "generation",
            "asset",
            "sync_cursor",
            "provider_health",
            "alembic_version",
        } <= set(insp.get_table_names())
        asset_ix = {ix["name"]: ix for ix in insp.get_indexes("asset")}
        gen_ix = {ix["name"]: ix for ix in insp.get_indexes("generation")}
        assert asset_ix["ix_asset_lease"]["column_names"] == ["expires_at", "created_at"]
        assert gen_ix["ix_generation_poll"]["column_names"] == ["next_poll_at"]
        # both are partial indexes: only pending assets / generations with a poll due
        where_lease = asset_ix["ix_asset_lease"]["dialect_options"].get(
            f"{store.engine.dialect.name}_where"
        )
        where_poll = gen_ix["ix_generation_poll"]["dialect_options"].get(
            f"{store.engine.dialect.name}_where"
        )
        assert "pending" in str(where_lease)
        assert "next_poll_at" in str(where_poll).lower()
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert [v[0] for v in versions] == ["0005"]
        # the schema is usable after the double upgrade
        assert save(store, [record("g1")]).generations_new == 1
    finally:
        store.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations build exactly the models
    (and the search index of 0003, which the models cannot declare)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from genvault.store.queries.search import is_search_schema

    def modelled(name: str | None, type_: str, _parents: object) -> bool:
        return not is_search_schema(name, type_)

    with store.engine.connect() as conn:
        opts = {"compare_type": True, "include_name": modelled}
        ctx = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(ctx, SQLModel.metadata) == []


# --------------------------------------------------------------------------- save_page


def test_save_page_inserts_generations_and_assets(store: Store) -> None:
    n = now_utc()
    recs = [
        record(
            "g1",
            media_=[media(url("g1/a.png")), media(url("g1/t.jpg"), MediaRole.THUMBNAIL)],
            created_at=n - HOUR,
            expires_at=n + 10 * DAY,
        ),
        record("g2", S.RUNNING, created_at=n - HOUR),
        record("g3", S.FAILED, created_at=n - 2 * HOUR, error="nsfw"),
    ]
    res = save(store, recs, now=n)
    assert (res.generations_new, res.generations_changed, res.assets_new) == (3, 0, 2)

    g1 = generation(store, "g1")
    assert g1["status"] == "succeeded" and g1["provider"] == PROVIDER
    assert g1["created_at"] == n - HOUR and g1["created_at"].utcoffset() == timedelta(0)
    assert g1["expires_at"] == n + 10 * DAY
    assert g1["first_seen_at"] == n and g1["updated_at"] == n
    assert g1["sidecar_due"] is True and g1["next_poll_at"] is None
    assert g1["raw"] == recs[0].raw
    assert generation(store, "g3")["error"] == "nsfw"
    running = generation(store, "g2")
    assert running["sidecar_due"] is False and running["poll_until"] == n + POLL_HORIZON

    rows = assets_of(store, "g1")
    assert [(a["role"], a["kind"], a["state"], a["position"]) for a in rows] == [
        ("result", "image", "pending", 0),
        ("thumbnail", "image", "pending", 1),
    ]
    assert all(a["created_at"] == n - HOUR and a["attempts"] == 0 for a in rows)
    assert rows[0]["url_key"] == url_key(url("g1/a.png"))
    assert store.count_assets() == 2 and store.count_assets(AssetState.PENDING) == 2


def test_resaving_the_same_page_is_a_noop(store: Store) -> None:
    n = now_utc()
    recs = [record(f"g{i}", media_=[media(url(f"{i}.png"))], created_at=n - DAY) for i in range(3)]
    assert save(store, recs, now=n).generations_new == 3
    before_gens = store.generations()
    before_assets = store.assets()

    res = save(store, recs, now=n + HOUR)
    assert (res.generations_new, res.generations_changed, res.assets_new) == (0, 0, 0)
    assert store.generations() == before_gens  # updated_at and everything else unchanged
    assert store.assets() == before_assets
    assert all(g["updated_at"] == n for g in store.generations())


def test_changed_payload_updates_row_and_creates_assets(store: Store) -> None:
    n = now_utc()
    created = n - HOUR
    save(store, [record("g1", S.RUNNING, created_at=created)], now=n)
    assert store.count_assets() == 0
    row = generation(store, "g1")
    assert row["status"] == "running" and row["raw"]["status"] == 1

    done = record(
        "g1",
        S.SUCCEEDED,
        created_at=created,
        completed_at=n + HOUR,
        media_=[media(url("g1/out.mp4"), kind=MediaKind.VIDEO, size=999)],
    )
    res = save(store, [done], now=n + HOUR)
    assert (res.generations_new, res.generations_changed, res.assets_new) == (0, 1, 1)
    row2 = generation(store, "g1")
    assert row2["id"] == row["id"]
    assert row2["status"] == "succeeded" and row2["raw"]["status"] == 2
    assert row2["updated_at"] == n + HOUR and row2["first_seen_at"] == n
    assert row2["completed_at"] == n + HOUR
    assert row2["next_poll_at"] is None and row2["sidecar_due"] is True
    asset = _one_asset(store, "g1")
    assert (asset["kind"], asset["expected_size"], asset["state"]) == ("video", 999, "pending")


def test_duplicate_url_in_one_record_is_one_asset(store: Store) -> None:
    n = now_utc()
    rec = record(
        "g1",
        created_at=n,
        media_=[
            media(url("g1/a.png")),
            media(url("g1/a.png"), MediaRole.THUMBNAIL),
            media(url("g1/b.png")),
        ],
    )
    res = save(store, [rec], now=n)
    assert res.assets_new == 2  # the count matches the rows
    rows = assets_of(store, "g1")
    assert [a["source_url"] for a in rows] == [url("g1/a.png"), url("g1/b.png")]
    assert [a["position"] for a in rows] == [0, 1]  # no hole left by the duplicate


def test_same_url_in_listing_and_detail_is_one_asset(store: Store) -> None:
    n = now_utc()
    listing = record(
        "v1",
        S.SUCCEEDED,
        created_at=n - HOUR,
        needs_detail=True,
        media_=[media(url("v1/thumb.jpg"), MediaRole.THUMBNAIL)],
    )
    assert save(store, [listing], now=n).assets_new == 1
    detail = record(
        "v1",
        S.SUCCEEDED,
        created_at=n - HOUR,
        raw={"detail": True},
        media_=[
            media(url("v1/video.mp4"), kind=MediaKind.VIDEO),
            media(url("v1/thumb.jpg"), MediaRole.THUMBNAIL),
            media(url("v1/video.mp4"), kind=MediaKind.VIDEO),
        ],
    )
    res = polled(store, detail, next_poll_at=None, now=n + HOUR)
    assert res.assets_new == 1
    rows = assets_of(store, "v1")
    assert [(a["position"], a["source_url"]) for a in rows] == [
        (0, url("v1/thumb.jpg")),
        (1, url("v1/video.mp4")),
    ]
    # the same listing again is still a no-op: the detail read kept its fingerprint
    again = save(store, [listing], now=n + 2 * HOUR)
    assert (again.generations_changed, again.assets_new) == (0, 0)
    assert generation(store, "v1")["raw"] == {"detail": True}


def test_resigned_url_updates_the_pending_asset(store: Store) -> None:
    n = now_utc()
    gen_exp = n + 30 * DAY
    first = signed_url("v/out.mp4", "sig-one", n + 2 * HOUR, quality="hd")
    second = signed_url("v/out.mp4", "sig-two", n + 5 * HOUR, quality="hd")
    assert first != second and url_key(first) == url_key(second)
    assert url_key(url("v/out.mp4", quality="sd")) != url_key(first)

    save(
        store,
        [
            record(
                "g1",
                created_at=n,
                expires_at=gen_exp,
                raw={"v": 1},
                media_=[media(first, url_expires_at=n + 2 * HOUR)],
            )
        ],
        now=n,
    )
    asset = _one_asset(store, "g1")
    assert asset["expires_at"] == n + 2 * HOUR

    res = save(
        store,
        [
            record(
                "g1",
                created_at=n,
                expires_at=gen_exp,
                raw={"v": 2},
                media_=[media(second, url_expires_at=n + 5 * HOUR)],
            )
        ],
        now=n + HOUR,
    )
    assert res.assets_new == 0
    updated = _one_asset(store, "g1")
    assert updated["id"] == asset["id"] and updated["position"] == 0
    assert updated["source_url"] == second
    assert updated["expires_at"] == n + 5 * HOUR
    assert updated["updated_at"] == n + HOUR and updated["state"] == "pending"


def test_unwanted_roles_are_skipped_until_enabled(store: Store) -> None:
    n = now_utc()
    media_ = [media(url("g/out.png")), media(url("g/ref.png"), MediaRole.REFERENCE)]
    save(store, [record("g1", created_at=n, raw={"v": 1}, media_=media_)], now=n)
    states = {a["role"]: a["state"] for a in assets_of(store, "g1")}
    assert states == {"result": "pending", "reference": "skipped"}
    assert store.count_assets(AssetState.SKIPPED) == 1
    # skipped assets are never leased
    assert [a.role for a in _lease(store, "w1", lease_seconds=7200, now=n)] == ["result"]

    roles = DEFAULT_ROLES | {MediaRole.REFERENCE.value}
    res = save(
        store, [record("g1", created_at=n, raw={"v": 2}, media_=media_)], roles=roles, now=n + HOUR
    )
    assert res.assets_new == 0
    rows = assets_of(store, "g1")
    assert [(a["role"], a["state"], a["position"]) for a in rows] == [
        ("result", "pending", 0),
        ("reference", "pending", 1),
    ]
    assert [a.role for a in _lease(store, "w2", now=n + HOUR)] == ["reference"]


def test_enabling_a_role_later_queues_its_skipped_files_without_a_resync(store: Store) -> None:
    """An unchanged listing is a no-op upsert, so the config change itself must queue them."""
    n = now_utc()
    media_ = [media(url("g/out.png")), media(url("g/ref.png"), MediaRole.REFERENCE)]
    save(store, [record("g1", created_at=n, media_=media_)], now=n)
    wider = DEFAULT_ROLES | {MediaRole.REFERENCE.value}
    assert store.apply_archive_choice(ACCOUNT, DEFAULT_ROLES, None, now=n) == (0, 0)
    assert store.apply_archive_choice(ACCOUNT, wider, None, now=n) == (1, 0)
    states = {a["role"]: a["state"] for a in assets_of(store, "g1")}
    assert states == {"result": "pending", "reference": "pending"}
    assert store.apply_archive_choice(ACCOUNT, wider, None, now=n) == (0, 0)


def test_narrowing_a_choice_skips_pending_files_but_not_leased_ones(store: Store) -> None:
    n = now_utc()
    media_ = [media(url("g/out.png")), media(url("g/clip.mp4"), kind=MediaKind.VIDEO)]
    save(store, [record("g1", created_at=n, media_=media_)], now=n)
    assert store.apply_archive_choice(ACCOUNT, DEFAULT_ROLES, ["video"], now=n) == (0, 1)
    states = {a["kind"]: a["state"] for a in assets_of(store, "g1")}
    assert states == {"image": "skipped", "video": "pending"}
    leased = _lease(store, "w1", now=n)
    assert [a.kind for a in leased] == ["video"]
    # a file held by a live worker is left to finish, whatever the choice now says
    assert store.apply_archive_choice(ACCOUNT, DEFAULT_ROLES, ["image"], now=n) == (1, 0)
    states = {a["kind"]: a["state"] for a in assets_of(store, "g1")}
    assert states == {"image": "pending", "video": "pending"}


def test_positions_are_unique_and_stable_across_resaves(store: Store) -> None:
    n = now_utc()
    a, b, c, d = (url(f"g/{x}.png") for x in "abcd")
    save(store, [record("g1", created_at=n, media_=[media(a), media(b)])], now=n)
    save(store, [record("g1", created_at=n, media_=[media(c), media(b), media(a)])], now=n)
    save(store, [record("g1", created_at=n, media_=[media(d), media(c)])], now=n)
    rows = assets_of(store, "g1")
    assert {r["source_url"]: r["position"] for r in rows} == {a: 0, b: 1, c: 2, d: 3}
    assert len({r["position"] for r in rows}) == len(rows) == 4
    # another generation numbers its own files from zero
    save(store, [record("g2", created_at=n, media_=[media(a)])], now=n)
    assert [r["position"] for r in assets_of(store, "g2")] == [0]


def test_asset_deadline_is_the_earliest_known(store: Store) -> None:
    n = now_utc()
    gen_exp = n + 7 * DAY
    save(
        store,
        [
            record(
                "g1",
                created_at=n - DAY,
                expires_at=gen_exp,
                media_=[
                    media(url("1/short.png"), url_expires_at=n + HOUR),
                    media(url("1/long.png"), url_expires_at=n + 9 * DAY),
                    media(url("1/plain.png")),
                ],
            ),
            record(
                "g2",
                created_at=n - DAY,
                media_=[
                    media(url("2/plain.png")),
                    media(url("2/signed.png"), url_expires_at=n + HOUR),
                ],
            ),
        ],
        now=n,
    )
    deadlines = {a["source_url"]: a["expires_at"] for a in store.assets()}
    assert deadlines == {
        url("1/short.png"): n + HOUR,
        url("1/long.png"): gen_exp,
        url("1/plain.png"): gen_exp,
        url("2/plain.png"): n - DAY + RETENTION,
        url("2/signed.png"): n + HOUR,
    }
    assert generation(store, "g2")["expires_at"] == n - DAY + RETENTION
    # no created_at at all: first seen counts as creation
    save(store, [record("g3", media_=[media(url("3/a.png"))])], now=n)
    assert generation(store, "g3")["created_at"] == n
    assert _one_asset(store, "g3")["expires_at"] == n + RETENTION


# --------------------------------------------------------------------------- cursor


def test_cursor_progress_then_completion(store: Store) -> None:
    n = now_utc()
    empty = store.get_cursor(ACCOUNT, "all")
    assert (empty.high_water, empty.scan_position, empty.scan_high_water) == (None, None, None)

    save(store, [record("g1", created_at=n)], cursor=CursorUpdate("all", 2, n), now=n)
    cur = store.get_cursor(ACCOUNT, "all")
    assert (cur.scan_position, cur.scan_high_water, cur.high_water) == (2, n, None)
    # streams and accounts are independent
    assert store.get_cursor(ACCOUNT, "other").scan_position is None
    assert store.get_cursor("someone-else", "all").scan_position is None

    save(
        store, [record("g2", created_at=n)], cursor=CursorUpdate("all", 3, n, complete=True), now=n
    )
    cur = store.get_cursor(ACCOUNT, "all")
    assert (cur.high_water, cur.scan_position, cur.scan_high_water) == (n, None, None)
    summary = store.summary()[ACCOUNT]
    assert summary["last_sync"] == n and summary["last_error"] is None


def test_high_water_never_moves_backwards(store: Store) -> None:
    n = now_utc()
    save(store, [], cursor=CursorUpdate("all", None, n, complete=True), now=n)
    assert store.get_cursor(ACCOUNT, "all").high_water == n

    save(store, [], cursor=CursorUpdate("all", None, n - DAY, complete=True), now=n)
    assert store.get_cursor(ACCOUNT, "all").high_water == n

    save(store, [], cursor=CursorUpdate("all", None, None, complete=True), now=n)
    assert store.get_cursor(ACCOUNT, "all").high_water == n

    save(store, [], cursor=CursorUpdate("all", None, n + HOUR, complete=True), now=n)
    assert store.get_cursor(ACCOUNT, "all").high_water == n + HOUR


def test_failed_cursor_write_rolls_back_the_page(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = now_utc()
    save(store, [record("g0", created_at=n)], cursor=CursorUpdate("all", 2, n), now=n)

    def broken(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise RuntimeError("cursor write failed")

    monkeypatch.setattr(Store, "_write_cursor", broken)
    page = [record("g1", created_at=n, media_=[media(url("g1.png"))]), record("g2", S.RUNNING)]
    with pytest.raises(RuntimeError, match="cursor write failed"):
        save(store, page, cursor=CursorUpdate("all", 3, n + HOUR), now=n)
    assert [g["external_id"] for g in store.generations()] == ["g0"]
    assert store.count_assets() == 0
    cur = store.get_cursor(ACCOUNT, "all")
    assert (cur.scan_position, cur.scan_high_water) == (2, n)


def test_failed_upsert_leaves_the_cursor_alone(store: Store) -> None:
    n = now_utc()
    save(store, [record("g0", created_at=n)], cursor=CursorUpdate("all", 2, n), now=n)
    bad = record("g2", created_at=n, raw={"not json": object()})
    page = [record("g1", created_at=n, media_=[media(url("g1.png"))]), bad]
    with pytest.raises((TypeError, sa.exc.StatementError)):
        save(store, page, cursor=CursorUpdate("all", 3, n + HOUR, complete=True), now=n)
    cur = store.get_cursor(ACCOUNT, "all")
    assert (cur.high_water, cur.scan_position, cur.scan_high_water) == (None, 2, n)
    assert [g["external_id"] for g in store.generations()] == ["g0"]
    assert store.count_assets() == 0


def test_naive_datetimes_are_refused_and_nothing_is_written(store: Store) -> None:
    """Both write paths (SQLite's executemany, PostgreSQL's COPY) refuse a naive time."""
    n = now_utc()
    naive = record("g1", created_at=n.replace(tzinfo=None))
    with pytest.raises((ValueError, sa.exc.StatementError), match="naive datetime"):
        save(store, [record("g0", created_at=n), naive], cursor=CursorUpdate("all", 2, n), now=n)
    assert store.generations() == []
    assert store.get_cursor(ACCOUNT, "all").scan_position is None


def test_pages_in_a_row_keep_their_order_and_nothing_of_each_other(store: Store) -> None:
    """Ids follow the page's order; a page's rows never leak into the next (PostgreSQL
    stages each page in a temporary table that the commit empties)."""
    n = now_utc()
    for page in range(3):
        ids = [f"p{page}-{i}" for i in (3, 1, 2)]
        recs = [record(e, created_at=n, media_=[media(url(f"{e}.png"))]) for e in ids]
        saved = save(store, recs, now=n)
        assert (saved.generations_new, saved.assets_new) == (3, 3)
    gens = sorted(store.generations(), key=lambda g: g["id"])
    assert [g["external_id"] for g in gens] == [f"p{p}-{i}" for p in range(3) for i in (3, 1, 2)]
    assert store.count_assets() == 9


# --------------------------------------------------------------------------- poll queue


def test_poll_queue_from_listing(store: Store) -> None:
    n = now_utc()
    save(
        store,
        [
            record("queued", S.QUEUED, created_at=n),
            record("running", S.RUNNING, created_at=n),
            record("unknown", S.UNKNOWN, created_at=n),
            record("done", S.SUCCEEDED, created_at=n),
            record("failed", S.FAILED, created_at=n),
            record("video", S.SUCCEEDED, created_at=n, needs_detail=True),
        ],
        now=n,
    )
    due = store.due_for_poll(ACCOUNT, n, 100)
    assert {d.external_id for d in due} == {"queued", "running", "unknown", "video"}
    assert {d.status for d in due if d.external_id == "video"} == {"succeeded"}
    assert all(d.poll_attempts == 0 for d in due)
    poll_until = {d.external_id: d.poll_until for d in due}
    assert poll_until["running"] == n + POLL_HORIZON and poll_until["video"] is None
    assert store.due_for_poll(ACCOUNT, n - timedelta(seconds=1), 100) == []
    assert store.due_for_poll("someone-else", n, 100) == []
    assert len(store.due_for_poll(ACCOUNT, n, 2)) == 2
    assert store.outstanding_work() == (4, 0)


def test_save_polled_reschedules_then_settles(store: Store) -> None:
    n = now_utc()
    save(store, [record("g1", S.RUNNING, created_at=n)], now=n)
    # still running: next read in a minute; the give-up horizon is kept from the first sighting
    still = record("g1", S.RUNNING, created_at=n, raw={"progress": 50})
    polled(store, still, next_poll_at=n + timedelta(minutes=1), attempts=1, now=n + HOUR)
    assert store.due_for_poll(ACCOUNT, n + timedelta(seconds=59), 10) == []
    [item] = store.due_for_poll(ACCOUNT, n + timedelta(minutes=1), 10)
    assert (item.poll_attempts, item.status, item.poll_until) == (1, "running", n + POLL_HORIZON)

    done = record(
        "g1", S.SUCCEEDED, created_at=n, raw={"progress": 100}, media_=[media(url("g1/out.png"))]
    )
    res = polled(store, done, next_poll_at=None, attempts=2, now=n + 2 * HOUR)
    assert res.assets_new == 1 and res.generations_changed == 1
    assert store.due_for_poll(ACCOUNT, n + 30 * DAY, 10) == []
    row = generation(store, "g1")
    assert (row["status"], row["poll_attempts"], row["next_poll_at"]) == ("succeeded", 2, None)
    assert row["raw"] == {"progress": 100}
    assert store.outstanding_work() == (0, 1)


def test_poll_error_reschedules_or_gives_up(store: Store) -> None:
    n = now_utc()
    save(store, [record("a", S.RUNNING, created_at=n), record("b", S.QUEUED, created_at=n)], now=n)
    ids = {d.external_id: d.id for d in store.due_for_poll(ACCOUNT, n, 10)}

    store.poll_error(
        ids["a"], error="timeout", next_poll_at=n + HOUR, poll_attempts=3, give_up=False
    )
    row = generation(store, "a")
    assert (row["status"], row["next_poll_at"], row["poll_attempts"]) == ("running", n + HOUR, 3)
    assert row["error"] is None

    store.poll_error(
        ids["b"], error="x" * 3000, next_poll_at=n + HOUR, poll_attempts=4, give_up=True
    )
    row = generation(store, "b")
    assert (row["status"], row["next_poll_at"], row["poll_attempts"]) == ("failed", None, 4)
    assert row["error"] == "x" * 2000
    assert [d.external_id for d in store.due_for_poll(ACCOUNT, n + DAY, 10)] == ["a"]
    assert store.outstanding_work() == (1, 0)


def test_register_tasks(store: Store) -> None:
    n = now_utc()
    assert _register(store, ["t1", "t2"], now=n) == 2
    assert _register(store, ["t1", "t2"], now=n + HOUR) == 0
    assert _register(store, ["t2", "t3", "t3"], now=n + HOUR) == 1
    due = store.due_for_poll(ACCOUNT, n + HOUR, 10)
    assert [d.external_id for d in due] == ["t1", "t2", "t3"]
    t1 = generation(store, "t1")
    assert (t1["status"], t1["source"], t1["poll_until"]) == ("queued", "track", n + POLL_HORIZON)
    assert t1["next_poll_at"] == n and t1["created_at"] == n  # re-registering did not touch it
    assert (
        store.register_tasks(
            provider=PROVIDER, account=ACCOUNT, items=[], source="track", poll_horizon=POLL_HORIZON
        )
        == 0
    )


def test_webhook_makes_a_running_task_due_again(store: Store) -> None:
    n = now_utc()
    assert _register(store, ["run", "done"], now=n) == 2
    polled(store, record("run", S.RUNNING, created_at=n), next_poll_at=n + DAY, now=n)
    polled(store, record("done", S.SUCCEEDED, created_at=n), next_poll_at=None, now=n)
    assert store.due_for_poll(ACCOUNT, n + HOUR, 10) == []

    later = n + HOUR
    assert _register(store, ["run", "done", "new"], source="webhook", now=later) == 1
    due = store.due_for_poll(ACCOUNT, later, 10)
    assert sorted(d.external_id for d in due) == ["new", "run"]
    assert generation(store, "run")["next_poll_at"] == later
    assert generation(store, "done")["next_poll_at"] is None  # settled stays settled
    assert generation(store, "new")["source"] == "webhook"
    # a webhook that repeats an id in one batch is fine too
    assert _register(store, ["run", "run"], source="webhook", now=later) == 0


# --------------------------------------------------------------------------- leasing


def _deadline_dataset(store: Store, n: datetime) -> dict[str, int]:
    """Five pending assets with known deadlines; returns asset id by name."""
    spec = {
        "h5": n + 5 * HOUR,
        "h1": n + HOUR,
        "h3": n + 3 * HOUR,
        "x1": n - HOUR,
        "x3": n - 3 * HOUR,
    }
    save(
        store,
        [
            record(name, created_at=n - DAY, expires_at=exp, media_=[media(url(f"{name}.png"))])
            for name, exp in spec.items()
        ],
        now=n,
    )
    return {a["external_id"]: a["id"] for a in store.assets()}


def test_lease_order_is_earliest_deadline_first_then_expired(store: Store) -> None:
    n = now_utc()
    ids = _deadline_dataset(store, n)
    leased = _lease(store, "w1", limit=10, now=n)
    assert [a.external_id for a in leased] == ["h1", "h3", "h5", "x1", "x3"]
    first = leased[0]
    assert (first.id, first.provider, first.account, first.role, first.position) == (
        ids["h1"],
        PROVIDER,
        ACCOUNT,
        "result",
        0,
    )
    assert first.source_url == url("h1.png") and first.expires_at == n + HOUR
    assert first.generation_created_at == n - DAY and first.attempts == 0
    row = next(a for a in store.assets() if a["id"] == first.id)
    assert row["lease_owner"] == "w1" and row["lease_until"] == n + timedelta(seconds=60)


def test_lease_respects_limit_and_accounts(store: Store) -> None:
    n = now_utc()
    _deadline_dataset(store, n)
    save(
        store,
        [record("alt1", created_at=n, expires_at=n + 10 * HOUR, media_=[media(url("alt1.png"))])],
        account="alt",
        now=n,
    )
    assert [a.external_id for a in _lease(store, "w1", limit=2, now=n)] == ["h1", "h3"]
    assert [a.external_id for a in _lease(store, "w2", limit=2, now=n)] == ["h5", "alt1"]
    assert [a.external_id for a in _lease(store, "w3", limit=1, now=n, accounts=[ACCOUNT])] == [
        "x1"
    ]
    assert _lease(store, "w4", limit=10, now=n, accounts=["alt"]) == []
    assert [a.external_id for a in _lease(store, "w4", limit=10, now=n)] == ["x3"]
    assert _lease(store, "w5", limit=10, now=n) == []


def test_lease_is_exclusive_until_it_expires(store: Store) -> None:
    n = now_utc()
    _deadline_dataset(store, n)
    assert len(_lease(store, "w1", limit=10, lease_seconds=60, now=n)) == 5
    assert _lease(store, "w2", now=n + timedelta(seconds=59)) == []
    taken = _lease(store, "w2", now=n + timedelta(seconds=61))
    assert len(taken) == 5
    assert {a["lease_owner"] for a in store.assets()} == {"w2"}


def test_next_attempt_at_hides_an_asset(store: Store) -> None:
    n = now_utc()
    ids = _deadline_dataset(store, n)
    [a] = _lease(store, "w1", limit=1, now=n)
    retry = Outcome(a.id, AssetState.PENDING, error="HTTP 503", retry_at=n + 10 * HOUR)
    assert store.leases.finish("w1", [retry]) == 1
    row = next(r for r in store.assets() if r["id"] == ids["h1"])
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")
    assert row["lease_owner"] is None and row["next_attempt_at"] == n + 10 * HOUR

    others = _lease(store, "w2", lease_seconds=86400, now=n)  # held through the next step
    assert {x.external_id for x in others} == {"h3", "h5", "x1", "x3"}
    # ten hours on, the retry is due (and the deadline has passed: last-chance pass)
    again = _lease(store, "w3", now=n + 10 * HOUR)
    assert [x.external_id for x in again] == ["h1"] and again[0].attempts == 1


def test_finish_archived_records_the_file(store: Store) -> None:
    n = now_utc()
    save(store, [record("g1", created_at=n, media_=[media(url("g1.png"))])], now=n)
    gen = generation(store, "g1")
    store.sidecar_written(gen["id"], gen["updated_at"])
    assert generation(store, "g1")["sidecar_due"] is False

    [a] = _lease(store, "w1", now=n)
    before = now_utc()
    assert store.leases.finish("w1", [_archived(a.id, size=4321)]) == 1
    row = _one_asset(store, "g1")
    assert row["state"] == "archived"
    assert (row["size"], row["sha256"], row["storage_key"], row["content_type"]) == (
        4321,
        "ab" * 32,
        f"k/{a.id}.png",
        "image/png",
    )
    assert row["lease_owner"] is None and row["lease_until"] is None
    assert row["archived_at"] is not None and row["archived_at"] >= before - timedelta(seconds=1)
    assert generation(store, "g1")["sidecar_due"] is True
    assert store.count_assets(AssetState.ARCHIVED) == 1
    assert _lease(store, "w2", now=n + DAY) == []  # archived is never leased again


def test_finish_from_a_lost_lease_is_dropped(store: Store) -> None:
    n = now_utc()
    save(store, [record("g1", created_at=n, media_=[media(url("g1.png"))])], now=n)
    [a] = _lease(store, "w1", lease_seconds=60, now=n)
    [b] = _lease(store, "w2", lease_seconds=600, now=n + timedelta(seconds=120))
    assert a.id == b.id

    assert store.leases.finish("w1", [_archived(a.id)]) == 0
    row = _one_asset(store, "g1")
    assert (row["state"], row["lease_owner"], row["storage_key"]) == ("pending", "w2", None)
    assert store.leases.finish("w1", [Outcome(a.id, AssetState.LOST, error="gone")]) == 0
    assert _one_asset(store, "g1")["state"] == "pending"

    assert store.leases.finish("w2", [_archived(b.id)]) == 1
    assert _one_asset(store, "g1")["state"] == "archived"
    assert store.leases.finish("w2", []) == 0


def test_finish_failure_states_and_url_refresh(store: Store) -> None:
    n = now_utc()
    save(
        store,
        [
            record(
                "g1",
                created_at=n,
                expires_at=n + DAY,
                media_=[media(url("1.png")), media(url("2.png")), media(url("3.png"))],
            )
        ],
        now=n,
    )
    leased = {a.position: a for a in _lease(store, "w1", now=n)}
    fresh = url("1.png", v="fresh")
    applied = store.leases.finish(
        "w1",
        [
            Outcome(
                leased[0].id,
                AssetState.PENDING,
                error="403 (URL refreshed)",
                retry_at=n,
                new_url=fresh,
            ),
            Outcome(leased[1].id, AssetState.FAILED, error="not media"),
            Outcome(leased[2].id, AssetState.LOST, error="deadline passed"),
        ],
    )
    assert applied == 3
    rows = {a["position"]: a for a in assets_of(store, "g1")}
    assert (rows[0]["state"], rows[0]["source_url"], rows[0]["url_refreshed"]) == (
        "pending",
        fresh,
        True,
    )
    assert rows[0]["attempts"] == 0  # a refresh is not counted as a failed attempt
    assert (rows[1]["state"], rows[1]["attempts"], rows[1]["last_error"]) == (
        "failed",
        1,
        "not media",
    )
    assert rows[2]["state"] == "lost"
    [again] = _lease(store, "w2", now=n)
    assert again.source_url == fresh and again.url_refreshed is True


def test_release_and_extend_leases(store: Store) -> None:
    n = now_utc()
    _deadline_dataset(store, n)
    mine = _lease(store, "w1", limit=3, lease_seconds=5)
    theirs = _lease(store, "w2", limit=2, lease_seconds=5)
    assert len(mine) == 3 and len(theirs) == 2

    store.leases.extend("w1", [a.id for a in mine], 3600)
    store.leases.extend("w1", [a.id for a in theirs], 3600)  # not ours: ignored
    store.leases.extend("w1", [], 3600)
    rows = {a["id"]: a for a in store.assets()}
    soon = now_utc() + timedelta(seconds=10)
    assert all(rows[a.id]["lease_until"] > now_utc() + timedelta(seconds=3500) for a in mine)
    assert all(rows[a.id]["lease_until"] < soon for a in theirs)
    assert all(rows[a.id]["lease_owner"] == "w2" for a in theirs)
    # after the original 5 s lease would have run out, w1's assets are still held
    later = now_utc() + timedelta(seconds=30)
    assert {a.id for a in _lease(store, "w3", now=later)} == {a.id for a in theirs}

    assert store.leases.release("w1") == 3
    assert store.leases.release("w1") == 0
    released = {a["id"]: a for a in store.assets()}
    assert all(released[a.id]["lease_owner"] is None for a in mine)
    assert all(released[a.id]["lease_until"] is None for a in mine)
    assert {a.id for a in _lease(store, "w4")} == {a.id for a in mine}


@pytest.mark.postgres
def test_two_workers_never_lease_the_same_asset(postgres_url: str) -> None:
    setup = Store(postgres_url)
    setup.upgrade()
    n = now_utc()
    recs = [
        record(
            f"g{i:03d}",
            created_at=n,
            expires_at=n + timedelta(minutes=i % 50 + 1),
            media_=[media(url(f"{i}.png"))],
        )
        for i in range(500)
    ]
    assert save(setup, recs, now=n).assets_new == 500
    all_ids = {a["id"] for a in setup.assets()}
    setup.dispose()

    workers = [Store(postgres_url), Store(postgres_url)]
    for w in workers:
        w.check()  # connect before the race starts
    got: list[list[int]] = [[], []]
    archived = [0, 0]
    dropped = [0, 0]  # outcomes refused because the lease had moved to the other worker
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(i: int) -> None:
        try:
            start.wait(timeout=10)
            owner = f"worker-{i}"
            while True:
                batch = workers[i].leases.acquire(owner, limit=20, lease_seconds=300)
                if not batch:
                    return
                got[i].extend(a.id for a in batch)
                # finish half of each batch, as the archive job does while leasing more
                done = [_archived(a.id) for a in batch[::2]]
                applied = workers[i].leases.finish(owner, done)
                archived[i] += applied
                dropped[i] += len(done) - applied
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert len(got[0]) == len(set(got[0])) and len(got[1]) == len(set(got[1]))
        assert set(got[0]).isdisjoint(got[1])
        assert set(got[0]) | set(got[1]) == all_ids
        assert got[0] and got[1], "both workers should have leased something"
        assert dropped == [0, 0]
        owners = {a["lease_owner"] for a in workers[0].assets() if a["state"] == "pending"}
        assert owners <= {"worker-0", "worker-1"}
        assert workers[0].count_assets(AssetState.ARCHIVED) == sum(archived) >= 250
    finally:
        for w in workers:
            w.dispose()


# --------------------------------------------------------------------------- sidecars


def test_sidecars_due_waits_for_every_asset(store: Store) -> None:
    n = now_utc()
    save(
        store,
        [
            record(
                "g1",
                created_at=n,
                media_=[
                    media(url("1a.png")),
                    media(url("1b.png")),
                    media(url("1r.png"), MediaRole.REFERENCE),
                ],
            ),
            record("g2", S.RUNNING, created_at=n),
            record("g3", S.FAILED, created_at=n),
        ],
        now=n,
    )
    assert store.sidecars_due(100) == []  # g1 has pending files; g2, g3 have no flag

    a, b = sorted(_lease(store, "w1", now=n), key=lambda x: x.position)
    store.leases.finish("w1", [_archived(a.id)])
    assert store.sidecars_due(100) == []  # b is still pending (b is leased, not settled)
    store.leases.finish("w1", [Outcome(b.id, AssetState.FAILED, error="too big")])

    [due] = store.sidecars_due(100)
    assert due["external_id"] == "g1" and due["sidecar_due"] is True
    assert [(f["position"], f["state"]) for f in due["assets"]] == [
        (0, "archived"),
        (1, "failed"),
        (2, "skipped"),
    ]
    assert due["assets"][0]["storage_key"] == f"k/{a.id}.png"
    assert store.sidecars_due(100, accounts=["alt"]) == []
    assert len(store.sidecars_due(100, accounts=[ACCOUNT])) == 1

    store.sidecar_written(due["id"], due["updated_at"])
    assert store.sidecars_due(100) == []
    assert generation(store, "g1")["sidecar_due"] is False


def test_sidecar_written_keeps_the_flag_after_a_change(store: Store) -> None:
    n = now_utc()
    save(store, [record("g1", created_at=n, raw={"v": 1})], now=n)
    [due] = store.sidecars_due(10)
    assert due["updated_at"] == n

    # the provider changed the item while the sidecar was being written
    save(store, [record("g1", created_at=n, raw={"v": 2})], now=n + HOUR)
    store.sidecar_written(due["id"], due["updated_at"])
    [again] = store.sidecars_due(10)
    assert again["id"] == due["id"] and again["raw"] == {"v": 2}
    assert again["updated_at"] == n + HOUR

    store.sidecar_written(again["id"], again["updated_at"])
    assert store.sidecars_due(10) == []


# --------------------------------------------------------------------------- reports


def test_summary_at_risk_and_outstanding_work(store: Store) -> None:
    n = now_utc()
    save(
        store,
        [
            record(
                "ok",
                created_at=n - DAY,
                expires_at=n + 6 * DAY,
                media_=[
                    media(url("ok/out.png"), url_expires_at=n + HOUR),
                    media(url("ok/thumb.jpg"), MediaRole.THUMBNAIL, url_expires_at=n + 2 * HOUR),
                    media(url("ok/ref.png"), MediaRole.REFERENCE),
                ],
            ),
            record(
                "late",
                created_at=n - 30 * DAY,
                expires_at=n - HOUR,
                media_=[media(url("late/out.png"))],
            ),
            record("run", S.RUNNING, created_at=n),
        ],
        cursor=CursorUpdate("all", None, n, complete=True),
        now=n,
    )
    save(
        store,
        [
            record("bad", S.FAILED, created_at=n, error="policy"),
            record("fine", created_at=n, expires_at=n + 10 * DAY, media_=[media(url("fine.png"))]),
        ],
        account="alt",
        now=n,
    )
    store.sync_failed(PROVIDER, "alt", "all", "HTTP 500 from /histories")
    [first] = _lease(store, "w1", limit=1, now=n)
    assert first.source_url == url("ok/out.png")
    assert store.leases.finish("w1", [_archived(first.id, size=100)]) == 1

    summary = store.summary()
    assert set(summary) == {ACCOUNT, "alt"}
    main, alt = summary[ACCOUNT], summary["alt"]
    assert main["generations"] == {"succeeded": 2, "running": 1}
    assert main["assets"] == {"archived": 1, "pending": 2, "skipped": 1}
    assert main["bytes_archived"] == 100
    assert main["next_deadline"] == n - HOUR
    assert main["last_sync"] == n and main["last_error"] is None
    assert alt["generations"] == {"failed": 1, "succeeded": 1}
    assert alt["assets"] == {"pending": 1}
    assert alt["bytes_archived"] == 0 and alt["next_deadline"] == n + 10 * DAY
    assert alt["last_sync"] is None and alt["last_error"] == "HTTP 500 from /histories"

    risky = store.at_risk(3 * HOUR, now=n)
    assert [(r["external_id"], r["role"], r["expires_at"]) for r in risky] == [
        ("late", "result", n - HOUR),
        ("ok", "thumbnail", n + 2 * HOUR),
    ]
    assert risky[0]["account"] == ACCOUNT and risky[0]["provider"] == PROVIDER
    assert [r["external_id"] for r in store.at_risk(30 * DAY, now=n)] == ["late", "ok", "fine"]
    assert [r["external_id"] for r in store.at_risk(30 * DAY, limit=1, now=n)] == ["late"]
    assert store.at_risk(timedelta(0), now=n - 2 * HOUR) == []

    assert store.outstanding_work() == (1, 3)
    assert store.count_assets() == 5


def test_empty_store_reports(store: Store) -> None:
    assert store.summary() == {}
    assert store.at_risk(DAY) == []
    assert store.outstanding_work() == (0, 0)
    assert store.sidecars_due(10) == []
    assert _lease(store, "w1") == []
    assert store.leases.release("w1") == 0


# --------------------------------------------------------------------------- provider health


def test_provider_health_round_trip_and_upsert(store: Store) -> None:
    """The breaker/budget snapshot survives the database exactly (UTC-aware times)."""
    n = now_utc()
    assert store.provider_health() == {}
    opened = HealthSnapshot(
        circuit=CircuitState.OPEN,
        consecutive_failures=5,
        opened_at=n,
        retry_at=n + timedelta(minutes=5),
        last_error="TransientProviderError: histories: HTTP 503: " + "x" * 400,
        budget_interval=7.5,
        rate_limited_until=n + HOUR,
    )
    store.save_provider_health(ACCOUNT, PROVIDER, opened, now=n)
    row = store.provider_health()[ACCOUNT]
    assert (row.account, row.provider, row.updated_at) == (ACCOUNT, PROVIDER, n)
    assert row.health.circuit is CircuitState.OPEN
    assert row.health.retry_at == n + timedelta(minutes=5)
    assert row.health.retry_at is not None and row.health.retry_at.utcoffset() == timedelta(0)
    assert row.health.rate_limited_until == n + HOUR and row.health.budget_interval == 7.5
    assert opened.last_error is not None and row.health.last_error == opened.last_error[:300]
    assert row.health == dataclasses.replace(opened, last_error=opened.last_error[:300])

    # one row per account: the next snapshot replaces the last
    closed = HealthSnapshot(consecutive_failures=0, last_error="TransientProviderError: x")
    store.save_provider_health(ACCOUNT, PROVIDER, closed, now=n + HOUR)
    store.save_provider_health("other", "akool", opened, now=n)
    both = store.provider_health()
    assert set(both) == {ACCOUNT, "other"}
    assert both[ACCOUNT].health == closed and both[ACCOUNT].updated_at == n + HOUR
    assert list(store.provider_health("other")) == ["other"]
    assert store.provider_health("nobody") == {}


# --------------------------------------------------------------------------- volume


def test_five_thousand_generations_in_one_page(store: Store) -> None:
    n = now_utc()
    count = 5000
    recs = [
        record(
            f"bulk-{i:05d}",
            created_at=n - timedelta(seconds=i),
            expires_at=n + 30 * DAY,
            media_=[media(signed_url(f"bulk/{i}.png", f"s{i}", n + DAY))],
        )
        for i in range(count)
    ]
    started = time.perf_counter()
    res = save(store, recs, cursor=CursorUpdate("all", 1, n), now=n)
    elapsed = time.perf_counter() - started
    print(
        f"\n{store.engine.dialect.name}: {count} generations + {count} assets in "
        f"{elapsed:.2f}s ({count / elapsed:,.0f} generations/s)"
    )
    assert (res.generations_new, res.generations_changed, res.assets_new) == (count, 0, count)
    assert store.count_assets(AssetState.PENDING) == count
    assert store.get_cursor(ACCOUNT, "all").scan_position == 1
    assert elapsed < 10, f"one 5,000-item page took {elapsed:.1f}s"

    started = time.perf_counter()
    again = save(store, recs, now=n + HOUR)
    assert (again.generations_new, again.generations_changed, again.assets_new) == (0, 0, 0)
    assert time.perf_counter() - started < 5
