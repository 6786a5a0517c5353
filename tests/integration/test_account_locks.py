"""Replica coordination on a real PostgreSQL: per-account advisory locks, concurrent starts.

Two :class:`Store` objects stand for two replicas (separate engines, separate
server sessions). A lock held by a process that is then ``kill -9``-ed must come
free on its own: the server drops the session and its locks with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from genvault.config import Settings
from genvault.jobs.archive import archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import sync_account
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.simulator.geminigen import GeminiGenSimulator
from genvault.store import Store
from tests.fixtures.sims import SimStarter, sim_account
from tests.integration.store_helpers import media, now_utc, record, save, signed_url

KEY = "sim-locks-key"


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    a, b = Store(postgres_url), Store(postgres_url)
    a.upgrade()
    try:
        yield a, b
    finally:
        a.dispose()
        b.dispose()


@pytest.mark.postgres
def test_one_replica_at_a_time_per_job_and_account(stores: tuple[Store, Store]) -> None:
    a, b = stores
    with a.account_lock("sync", "main") as mine:
        assert mine
        with b.account_lock("sync", "main") as theirs:
            assert not theirs  # never waits: the other replica skips the pass
        assert b.account_lock_taken("sync", "main")
        with b.account_lock("poll", "main") as other_job, b.account_lock("sync", "x") as other:
            assert other_job and other  # other jobs and accounts are independent
    assert not b.account_lock_taken("sync", "main")
    with b.account_lock("sync", "main") as now_theirs:
        assert now_theirs


@pytest.mark.postgres
def test_a_pass_may_wait_for_a_peers_pass_to_end(stores: tuple[Store, Store]) -> None:
    """``run --once`` polls what its own sync saved even when a peer's poll pass began
    first: it waits for that pass to end instead of skipping (the daemon still skips)."""
    import threading
    import time

    a, b = stores
    held = threading.Event()
    release = threading.Event()

    def peer() -> None:
        with a.account_lock("poll", "main") as mine:
            assert mine
            held.set()
            release.wait(10)

    t = threading.Thread(target=peer)
    t.start()
    try:
        assert held.wait(10)
        with b.account_lock("poll", "main") as at_once:
            assert not at_once  # the default never waits
        threading.Timer(0.6, release.set).start()
        started = time.monotonic()
        with b.account_lock("poll", "main", wait=10) as waited:
            assert waited
            assert time.monotonic() - started >= 0.5
    finally:
        release.set()
        t.join(10)
    with a.account_lock("poll", "main") as again:
        assert again  # the waiter released it


@pytest.mark.postgres
def test_a_peek_sees_every_key_and_never_takes_the_lock(stores: tuple[Store, Store]) -> None:
    """Peeks run in a loop while a peer's sync is awaited (``wait_while``); if a peek
    took the lock for an instant, a replica starting its pass at that instant would
    skip it. Many accounts, so keys with the high bit set and clear are both seen."""
    a, b = stores
    for account in (f"acct-{i}" for i in range(16)):
        with a.account_lock("sync", account) as held:
            assert held and b.account_lock_taken("sync", account)
            assert not b.account_lock_taken("poll", account)
        assert not b.account_lock_taken("sync", account)

    stop = threading.Event()

    def peek_forever() -> None:
        while not stop.is_set():
            b.account_lock_taken("sync", "main")

    peekers = [threading.Thread(target=peek_forever) for _ in range(3)]
    for t in peekers:
        t.start()
    try:
        refused = 0
        for _ in range(300):
            with a.account_lock("sync", "main") as got:
                refused += not got
        assert refused == 0, f"{refused} of 300 passes skipped because a peek held the lock"
    finally:
        stop.set()
        for t in peekers:
            t.join()


@pytest.mark.postgres
def test_a_killed_holder_releases_its_lock(postgres_url: str, stores: tuple[Store, Store]) -> None:
    _, b = stores
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from genvault.store import Store
                with Store({postgres_url!r}).account_lock("sync", "main") as got:
                    assert got
                    print("held", flush=True)
                    time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert b.account_lock_taken("sync", "main")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while b.account_lock_taken("sync", "main"):
            assert time.monotonic() < deadline, "the dead replica's lock was never released"
            time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.postgres
def test_replicas_starting_together_on_an_empty_database_all_migrate(postgres_url: str) -> None:
    """Every replica runs the migrations at start: on a fresh database they would race
    to create the same tables without the migration lock."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        store = Store(postgres_url)
        try:
            barrier.wait()
            store.upgrade()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = Store(postgres_url)
    try:
        assert store.count_assets() == 0  # the schema is there and usable
    finally:
        store.dispose()


def test_sqlite_has_one_process_so_the_lock_is_always_ours(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        with store.account_lock("sync", "main") as a, store.account_lock("sync", "main") as b:
            assert a and b
        assert not store.account_lock_taken("sync", "main")
    finally:
        store.dispose()


# --------------------------------------------------------------------------- the jobs


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
        processing_count=2,
        processing_seconds=600,
        failed_count=0,
    )


def _runtime(sim: GeminiGenSimulator, db_url: str, tmp_path: Path) -> Runtime:
    settings = Settings.model_validate(
        {
            "database": {"url": db_url},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "network": {"allow_private": True, "api_retries": 0},
            "server": {"enabled": False},
            "poll": {"backoff_seconds": [0.1]},
            "accounts": [sim_account(sim, "GG_KEY", items_per_page=4)],
        }
    )
    return Runtime.build(settings, {"main": SecretStr(KEY)})


def _requests(sim: GeminiGenSimulator) -> int:
    return int(sim.stats.snapshot()["requests"])


@pytest.mark.postgres
def test_sync_and_poll_skip_an_account_another_replica_is_working_on(
    sim: GeminiGenSimulator, postgres_url: str, tmp_path: Path
) -> None:
    rt = _runtime(sim, postgres_url, tmp_path)
    peer = Store(postgres_url)
    try:
        acc = rt.accounts["main"]
        assert sync_account(rt, acc).pages > 0  # items in progress are now due for polls
        before = _requests(sim)
        with peer.account_lock("sync", "main"), peer.account_lock("poll", "main"):
            synced = sync_account(rt, acc, full=True)
            polled = poll_account(rt, acc)
        assert synced.elsewhere and synced.pages == 0
        assert polled.elsewhere and polled.polled == 0
        assert _requests(sim) == before  # not one request: the peer is doing it
        assert poll_account(rt, acc).polled > 0  # the peer is gone: this replica polls
    finally:
        peer.dispose()
        rt.close()


@pytest.mark.postgres
def test_an_idle_archive_pass_waits_while_a_peer_still_syncs(
    sim: GeminiGenSimulator, postgres_url: str, tmp_path: Path
) -> None:
    """``run --once`` replicas: the pass that skipped the sync keeps taking files until
    the replica that holds the sync lock is done (its sync, then the poll that reads
    what it saved), instead of exiting with none."""
    rt = _runtime(sim, postgres_url, tmp_path)
    peer_rt = _runtime(sim, postgres_url, tmp_path)

    def peer_pass() -> None:  # three pages, 0.5 s apart, then their detail reads
        sync_account(peer_rt, peer_rt.accounts["main"], on_page=lambda *_: time.sleep(0.5))
        poll_account(peer_rt, peer_rt.accounts["main"])

    slow_pages = threading.Thread(target=peer_pass)
    slow_pages.start()
    try:
        deadline = time.monotonic() + 10
        while not rt.store.account_lock_taken("sync", "main"):
            assert slow_pages.is_alive(), "the peer's sync ended before it was seen"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        result = archive_pending(
            rt,
            wait_while=lambda: any(
                rt.store.account_lock_taken(job, "main") for job in ("sync", "poll")
            ),
        )
        waited = time.monotonic() - started
        slow_pages.join(10)
        assert waited >= 1.0, "the pass ended before the peer's sync did"
        assert result.archived == rt.store.count_assets(AssetState.ARCHIVED) > 0
        assert rt.store.count_assets(AssetState.PENDING) == 0  # every page's files, one pass
    finally:
        slow_pages.join()
        peer_rt.close()
        rt.close()


# ------------------------------------------------------------------ a race between replicas


@pytest.mark.postgres
def test_a_resigned_url_never_reopens_a_file_a_peer_just_archived(postgres_url: str) -> None:
    """Replica B saves a page with a re-signed URL for a file replica A is archiving.

    B reads the file as pending, A commits it as archived, then B's update lands. An
    unconditional update would put the file back to pending and it would be archived
    a second time (seen as 2008 uploads for 2000 files in the replica test). The
    order is forced with a row lock, not with timing: A holds the row until B waits.
    """
    store_a, store_b = Store(postgres_url), Store(postgres_url)
    store_a.upgrade()
    n = now_utc()
    first = signed_url("v/out.mp4", "sig-one", n + timedelta(hours=2))
    second = signed_url("v/out.mp4", "sig-two", n + timedelta(hours=5))
    save(store_a, [record("g1", created_at=n, raw={"v": 1}, media_=[media(first)])], now=n)
    errors: list[BaseException] = []
    try:
        with store_a.engine.connect() as archiver:
            tx = archiver.begin()
            archiver.execute(sa.text("UPDATE asset SET state = 'archived' WHERE id = 1"))

            def resave() -> None:
                try:
                    save(
                        store_b, [record("g1", created_at=n, raw={"v": 2}, media_=[media(second)])]
                    )
                except BaseException as exc:
                    errors.append(exc)

            b = threading.Thread(target=resave)
            b.start()
            deadline = time.monotonic() + 10
            with store_a.engine.connect() as watcher:  # B is blocked on A's row lock
                while not watcher.execute(
                    sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ).scalar():
                    assert b.is_alive() and time.monotonic() < deadline, "B never waited"
                    time.sleep(0.02)
            tx.commit()
            b.join(10)
        assert errors == []
        with store_a.engine.connect() as conn:
            state, source_url = conn.execute(
                sa.text("SELECT state, source_url FROM asset WHERE id = 1")
            ).one()
        assert state == "archived" and source_url == first
    finally:
        store_a.dispose()
        store_b.dispose()


@pytest.mark.postgres
def test_a_write_the_server_aborts_as_a_conflict_is_run_again(postgres_url: str) -> None:
    """PostgreSQL rolls back a deadlock victim (40P01) or a serialization failure
    (40001); the store repeats such a write instead of failing the job. The error
    here is the server's own, raised with that SQLSTATE; other errors still raise."""
    from genvault.store.base import retry_conflicts

    engine = sa.create_engine(postgres_url)
    calls: list[str] = []

    @retry_conflicts
    def write(code: str, failures: int) -> str:
        calls.append(code)
        with engine.begin() as conn:
            if len(calls) <= failures:
                conn.execute(
                    sa.text(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; END $$")
                )
        return "done"

    try:
        assert write("40P01", 2) == "done" and len(calls) == 3
        calls.clear()
        with pytest.raises(sa.exc.OperationalError):
            write("40001", 3)  # three attempts at most
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(sa.exc.DBAPIError):
            write("23505", 1)  # not a conflict: raised at once
        assert len(calls) == 1
    finally:
        engine.dispose()
