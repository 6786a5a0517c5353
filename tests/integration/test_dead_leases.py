"""A dead worker's leases go back at once, not when they expire (``archive.lease_seconds``).

* SQLite: the process that holds the database's lock voids every other worker's
  lease when it starts (:meth:`Store.void_other_leases`, called by
  :meth:`Runtime.build`); without the lock nothing is voided.
* PostgreSQL: each worker holds an advisory lock tied to its session
  (:meth:`Store.hold_worker_lock`); :meth:`Store.reap_dead_leases` frees the leases
  of workers whose lock is gone: a session that closed, a process that was
  SIGKILLed. A live worker's leases are never reaped; neither are an older
  genvault's, which hold no lock and still expire as before. A worker whose lock
  connection was cut notices it, takes the lock again and keeps what it still has.

``status`` counts a pending file as held only while a live worker holds it.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from rich.console import Console

from genvault.config import AccountSettings, DatabaseSettings, Settings, StorageSettings
from genvault.instance import lock_held, single_process
from genvault.jobs.archive import archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import sync_account
from genvault.records import AssetState
from genvault.report import render_status
from genvault.runtime import Runtime, new_worker_id
from genvault.simulator import geminigen
from genvault.status import read_status
from genvault.store import WORKER_LOCK_TAG, Store, worker_lock_key
from tests.acceptance.helpers import sim_account
from tests.fixtures.lock_holder import hold_lock
from tests.integration.store_helpers import media, now_utc, record, save, url

LEGACY = "old-host-0a1b2c3d4e5f"
"""A lease owner as genvault 0.1.0 names it: no WORKER_LOCK_TAG, no worker lock."""


def _files(store: Store, n: int = 12) -> list[int]:
    now = now_utc()
    save(
        store,
        [
            record(
                f"g{i:02d}",
                created_at=now - timedelta(days=1),
                expires_at=now + timedelta(hours=i + 1),
                media_=[media(url(f"{i}.png"))],
            )
            for i in range(n)
        ],
        now=now,
    )
    return [a["id"] for a in store.assets()]


def _owners(store: Store) -> dict[int, str | None]:
    return {a["id"]: a["lease_owner"] for a in store.assets()}


def _lease(store: Store, owner: str, n: int, seconds: float = 900) -> set[int]:
    return {a.id for a in store.leases.acquire(owner, limit=n, lease_seconds=seconds)}


# --------------------------------------------------------------------------- SQLite


def test_worker_ids_are_random_and_tagged() -> None:
    a, b = new_worker_id(), new_worker_id()
    assert a != b
    assert a.endswith(WORKER_LOCK_TAG) and b.endswith(WORKER_LOCK_TAG)
    assert len(a) <= 64  # asset.lease_owner


def test_sqlite_void_other_leases_keeps_only_the_callers(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    store.upgrade()
    try:
        _files(store)
        me, dead = new_worker_id(), new_worker_id()
        mine = _lease(store, me, 3)
        theirs = _lease(store, dead, 4) | _lease(store, LEGACY, 2)
        assert store.void_other_leases(me) == 6
        owners = _owners(store)
        assert {i for i, o in owners.items() if o is not None} == mine
        assert all(a["lease_until"] is None for a in store.assets() if a["id"] in theirs)
        assert store.void_other_leases(me) == 0
        assert _lease(store, new_worker_id(), 100) == set(owners) - mine  # leasable at once
        with store.engine.connect() as conn:  # the partial index on lease_owner serves it
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN UPDATE asset SET lease_owner = NULL"
                    " WHERE lease_owner IS NOT NULL AND lease_owner != 'x'"
                )
            )
        assert "ix_asset_lease_owner" in plan, plan
    finally:
        store.dispose()


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'gv.db'}"),
        storage=StorageSettings(url=f"file://{tmp_path / 'archive'}"),
    )


def test_sqlite_a_process_taking_the_lock_voids_a_dead_runs_leases(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = Store(settings.database.url)
    store.upgrade()
    try:
        _files(store)
        dead = new_worker_id()
        held = _lease(store, dead, 5)

        # without the process lock (a library user, a test): leases are left alone
        rt = Runtime.build(settings, {})
        rt.close()
        assert {i for i, o in _owners(store).items() if o == dead} == held
        assert not lock_held(settings.database.url)

        with single_process(settings.database.url):
            assert lock_held(settings.database.url)
            rt = Runtime.build(settings, {})
            try:
                assert all(o is None for o in _owners(store).values())
                assert _lease(store, rt.worker_id, 100) == set(_owners(store))
            finally:
                rt.close()
        assert not lock_held(settings.database.url)
    finally:
        store.dispose()


def test_sqlite_lock_held_sees_another_process_without_taking_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gv.db'}"
    holder = hold_lock(url, 60)
    try:
        for _ in range(20):  # asking never takes it, so the holder is never disturbed
            assert lock_held(url)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not lock_held(url)
    with single_process(url):  # and nobody was left holding it
        pass


def test_sqlite_status_counts_leases_only_while_a_process_runs(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    store.upgrade()
    try:
        _files(store)
        _lease(store, new_worker_id(), 3)
        assert store.held_by_live_workers(process_alive=False) == {}
        assert store.held_by_live_workers(process_alive=True) == {"main": 3}
        assert store.reap_dead_leases() == 0  # PostgreSQL only
        assert store.hold_worker_lock(new_worker_id()) is False
    finally:
        store.dispose()


# --------------------------------------------------------------------------- PostgreSQL


def _backend_of(store: Store, owner: str) -> int:
    """The pid of the session that holds ``owner``'s worker lock."""
    key = worker_lock_key(owner) & 0xFFFFFFFFFFFFFFFF
    with store.engine.connect() as conn:
        pid = conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
                " AND classid::text::bigint = :hi AND objid::text::bigint = :lo AND granted"
            ),
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
        ).scalar()
    assert pid is not None, f"nobody holds {owner}'s lock"
    return int(pid)


@pytest.mark.postgres
def test_postgres_void_other_leases_refuses(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        with pytest.raises(RuntimeError, match="SQLite"):
            store.void_other_leases(new_worker_id())
        with pytest.raises(ValueError, match=re.escape(WORKER_LOCK_TAG)):
            store.hold_worker_lock("no-tag")
    finally:
        store.dispose()


@pytest.mark.postgres
def test_postgres_reaps_the_leases_of_a_closed_session_never_a_live_ones(
    postgres_url: str,
) -> None:
    reaper, other = Store(postgres_url), Store(postgres_url)
    reaper.upgrade()
    try:
        _files(reaper)
        me, them = new_worker_id(), new_worker_id()
        assert reaper.hold_worker_lock(me) is True
        assert reaper.hold_worker_lock(me) is False  # held: nothing to do
        assert other.hold_worker_lock(them) is True
        mine, theirs = _lease(reaper, me, 3), _lease(other, them, 4)
        legacy = _lease(other, LEGACY, 2)

        for _ in range(3):  # everyone alive: nothing is reaped, however often it runs
            assert reaper.reap_dead_leases() == 0
        assert reaper.live_workers([me, them, LEGACY]) == {me, them}
        assert reaper.held_by_live_workers() == {"main": 9}

        other.drop_worker_lock()  # the session closes, as it does when a process dies
        assert reaper.live_workers([me, them]) == {me}
        assert reaper.held_by_live_workers() == {"main": 5}  # legacy: until it expires
        assert reaper.reap_dead_leases() == 4
        owners = _owners(reaper)
        assert {i for i, o in owners.items() if o == me} == mine
        assert {i for i, o in owners.items() if o == LEGACY} == legacy  # left to expire
        assert all(owners[i] is None for i in theirs)
        assert theirs <= _lease(reaper, me, 100)  # taken over at once
        assert reaper.reap_dead_leases() == 0
    finally:
        other.dispose()
        reaper.dispose()


@pytest.mark.postgres
def test_postgres_a_sigkilled_worker_process_is_reaped_within_seconds(
    postgres_url: str,
) -> None:
    store = Store(postgres_url)
    store.upgrade()
    try:
        ids = set(_files(store))
        owner = new_worker_id()
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import time
                    from genvault.store import Store
                    s = Store({postgres_url!r})
                    s.hold_worker_lock({owner!r})
                    n = len(s.leases.acquire({owner!r}, limit=5, lease_seconds=900))
                    print(n, flush=True)
                    time.sleep(60)
                    """
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "5"
        assert store.reap_dead_leases() == 0
        child.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        child.wait()
        while (freed := store.reap_dead_leases()) == 0:
            assert time.monotonic() - killed < 5, "the dead worker's lock is still held"
            time.sleep(0.05)
        assert freed == 5
        assert all(o is None for o in _owners(store).values())
        assert _lease(store, new_worker_id(), 100) == ids
    finally:
        store.dispose()


@pytest.mark.postgres
def test_postgres_a_worker_whose_lock_connection_died_takes_it_again(
    postgres_url: str,
) -> None:
    worker, peer = Store(postgres_url), Store(postgres_url)
    worker.upgrade()
    try:
        _files(worker)
        me, them = new_worker_id(), new_worker_id()
        worker.hold_worker_lock(me)
        peer.hold_worker_lock(them)
        held = sorted(_lease(worker, me, 4))
        with peer.engine.connect() as conn:  # an idle timeout, a failover, a network cut
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": _backend_of(worker, me)})
        deadline = time.monotonic() + 5
        while me in peer.live_workers([me]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert peer.reap_dead_leases() == 4  # the peer cannot tell it from a dead worker
        [stolen] = _lease(peer, them, 1)  # and takes one of those files meanwhile

        assert worker.hold_worker_lock(me) is True  # noticed: the lock is taken again
        assert _backend_of(worker, me) > 0 and worker.hold_worker_lock(me) is False
        # still downloading three of them (the fourth finished): take back what is free
        assert worker.reclaim_leases(me, held[:3], 900) == (3 if stolen not in held[:3] else 2)
        owners = _owners(worker)
        assert owners[stolen] == them
        assert {i for i, o in owners.items() if o == me} == set(held[:3]) - {stolen}
        assert peer.reap_dead_leases() == 0
        # at the start of a pass (nothing in flight), leftovers of this worker are given up
        assert worker.reclaim_leases(me, [], 900) == 0
        assert me not in _owners(worker).values()
    finally:
        peer.dispose()
        worker.dispose()


# --------------------------------------------------------------------------- status


def _status_settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(url=f"file://{tmp_path / 'archive'}"),
        accounts=(AccountSettings(name="main", provider="geminigen", api_key_env="GG_KEY"),),
    )


def _status_row(doc: dict[str, Any]) -> dict[str, Any]:
    [account] = doc["accounts"]
    return account


def test_status_shows_files_held_by_live_workers_apart_from_waiting_ones(
    db_url: str, tmp_path: Path
) -> None:
    settings = _status_settings(db_url, tmp_path)
    store, worker = Store(db_url), Store(db_url)
    store.upgrade()
    try:
        _files(store)  # 12 pending
        live, dead = new_worker_id(), new_worker_id()
        worker.hold_worker_lock(live)  # PostgreSQL: a live worker; SQLite: no-op
        _lease(worker, live, 3)
        _lease(store, dead, 4)  # PostgreSQL: no lock, its process is gone
        _lease(store, LEGACY, 2, seconds=900)  # an older genvault: held until it expires
        _lease(store, "expired-legacy", 1, seconds=-1)

        def held_and_waiting() -> tuple[int, int, int]:
            row = _status_row(read_status(store, settings, timedelta(hours=1)))
            return row["held"], row["waiting"], row["assets"]["pending"]

        if store.is_sqlite:
            # no process holds the database's lock: every lease is a dead run's
            assert held_and_waiting() == (0, 12, 12)
            with single_process(db_url):  # the daemon runs (and its page asks)
                assert held_and_waiting() == (9, 3, 12)  # unexpired leases: its own
        else:
            assert held_and_waiting() == (5, 7, 12)
            worker.drop_worker_lock()
            assert held_and_waiting() == (2, 10, 12)

        console = Console(record=True, width=200)
        render_status(read_status(store, settings, timedelta(hours=1)), console)
        table = console.export_text()
        assert "held / waiting" in table
        held, waiting, _ = held_and_waiting()
        assert f"{held} / {waiting}" in table
    finally:
        worker.dispose()
        store.dispose()


def test_the_archive_plan_counts_a_dead_workers_files_as_leasable(db_url: str) -> None:
    """``run --once --dry-run`` and backfill's progress total: a killed run's leases do
    not hold the next pass back, so the plan lists those files as to be downloaded."""
    store, worker = Store(db_url), Store(db_url)
    store.upgrade()
    try:
        _files(store)  # 12 pending
        live, dead = new_worker_id(), new_worker_id()
        worker.hold_worker_lock(live)
        _lease(worker, live, 2)
        _lease(store, dead, 4)
        before = store.archive_plan(limit=0)
        assert (before.leasable, before.leased) == (6, 6)
        if store.is_sqlite:  # no process runs: both are dead runs' leases
            assert store.dead_lease_owners(process_alive=True) == []
            owners = store.dead_lease_owners(process_alive=False)
            assert owners == sorted([live, dead])
            expected = (12, 0)
        else:
            owners = store.dead_lease_owners()
            assert owners == [dead]
            expected = (10, 2)
        plan = store.archive_plan(limit=0, dead_owners=owners)
        assert (plan.leasable, plan.leased) == expected
    finally:
        worker.dispose()
        store.dispose()


@pytest.mark.postgres
def test_an_archive_pass_whose_lock_connection_is_cut_takes_it_again_and_finishes(
    postgres_url: str, tmp_path: Path, info_json_log: io.StringIO
) -> None:
    """The lock's session is terminated mid-pass (a failover, an idle-session timeout):
    within a heartbeat the pass notices, takes its lock again, re-asserts the leases of
    the files it is downloading, and every file is archived once, none left leased."""
    sim = geminigen.create(
        api_key="dead-leases-key",
        count=16,
        image_size=2_000,
        video_size=3_000,
        audio_size=2_000,
        thumbnail_size=500,
        processing_count=0,
        failed_count=0,
    )
    sim.start()
    try:
        sim.faults.update(latency_s=0.25)  # the pass lasts several heartbeats
        settings = Settings.model_validate(
            {
                "database": {"url": postgres_url},
                "storage": {"url": f"file://{tmp_path / 'archive'}"},
                "network": {"allow_private": True},
                "server": {"enabled": False},
                "archive": {"concurrency": 2, "batch_size": 4},
                "accounts": [sim_account(sim, "GG_KEY")],
            }
        )
        rt = Runtime.build(settings, {"main": SecretStr("dead-leases-key")})
        killer = Store(postgres_url)
        try:
            sync_account(rt, rt.accounts["main"])
            poll_account(rt, rt.accounts["main"])  # the detail reads, as run --once does
            files = rt.store.count_assets(AssetState.PENDING)
            assert files > 20
            cut: list[int] = []

            def cut_once(_outcome: Any, _asset: Any) -> None:
                if not cut:
                    pid = _backend_of(killer, rt.worker_id)
                    with killer.engine.connect() as conn:
                        conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                    cut.append(pid)

            result = archive_pending(rt, on_outcome=cut_once)
            assert cut
            assert result.archived == files and result.outcome.value == "success"
            assert rt.store.count_assets(AssetState.ARCHIVED) == files
            assert rt.store.lease_owners() == []
            assert _backend_of(killer, rt.worker_id) != cut[0]  # held again, new session
            events = [json.loads(line) for line in info_json_log.getvalue().splitlines()]
            [lost] = [e for e in events if e["event"] == "lease.worker_lock_lost"]
            [retaken] = [e for e in events if e["event"] == "lease.worker_lock_retaken"]
            assert lost["level"] == retaken["level"] == "warning"
            assert retaken["kept"] == retaken["in_flight"] > 0  # nobody else took them
        finally:
            killer.dispose()
            rt.close()
    finally:
        sim.stop()


def test_waiting_files_counts_what_no_live_worker_holds(store: Store) -> None:
    """``run --once``'s verdict: pending files count as left undone unless a live worker
    holds them; a lease that expired, or (PostgreSQL) whose worker's lock is gone,
    holds nothing. ``backing_off`` counts only files whose next attempt is ahead."""
    from tests.integration.store_helpers import media, now_utc, record, save, url

    now = now_utc()
    save(
        store,
        [
            record(f"g{i}", media_=[media(url(f"f{i}.png"))], expires_at=now + timedelta(days=2))
            for i in range(4)
        ],
    )
    live = new_worker_id() + WORKER_LOCK_TAG
    dead = new_worker_id() + WORKER_LOCK_TAG  # its lock is never taken: a dead worker
    if not store.is_sqlite:
        store.hold_worker_lock(live)  # this process is the live worker
    held = store.leases.acquire(live, limit=1, lease_seconds=600)
    orphaned = store.leases.acquire(dead, limit=1, lease_seconds=600)
    assert held and orphaned
    # SQLite: one process per database, so every unexpired lease is a live one
    assert store.waiting_files(["main"]) == {"main": 2 if store.is_sqlite else 3}
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE asset SET lease_until = :past WHERE lease_owner = :o"),
            {"past": now - timedelta(seconds=1), "o": live},
        )
    assert store.waiting_files(["main"]) == {"main": 3 if store.is_sqlite else 4}
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE asset SET next_attempt_at = :at WHERE lease_owner IS NULL"),
            {"at": now + timedelta(minutes=10)},
        )
    assert store.waiting_files(["main"], backing_off=True) == {"main": 2}
    assert store.waiting_files(["other"]) == {}
