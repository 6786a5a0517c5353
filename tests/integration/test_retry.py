"""``Store.requeue_assets`` (``genvault retry``) on SQLite and PostgreSQL.

Files are brought into each state through the store's own lease and finish path
(a backoff, a permanent failure, a loss, an archive), then requeued; the test
checks what moved, what stayed, that another account is untouched, and that the
requeued files are really leasable by the next archive pass.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from genvault.records import AssetState
from genvault.store import Outcome, Store
from genvault.store.base import A
from tests.integration.store_helpers import media, now_utc, record, save, url


def _by_name(store: Store) -> dict[str, dict[str, Any]]:
    return {a["external_id"]: a for a in store.assets()}


def test_retry_makes_backoff_due_and_requeues_failed_and_lost_on_request(store: Store) -> None:
    now = now_utc()
    names = ("backoff", "leased", "failed", "lost", "archived", "held")
    save(store, [record(n, media_=[media(url(f"{n}.png"))]) for n in names])
    save(store, [record("theirs", media_=[media(url("theirs.png"))])], account="other")
    leased = {a.external_id: a for a in store.leases.acquire("w1", limit=20, lease_seconds=3600)}
    later = now + timedelta(hours=1)
    store.leases.finish(
        "w1",
        [
            Outcome(leased["backoff"].id, AssetState.PENDING, error="503", retry_at=later),
            Outcome(leased["leased"].id, AssetState.PENDING, error="503", retry_at=later),
            Outcome(leased["theirs"].id, AssetState.PENDING, error="503", retry_at=later),
            Outcome(leased["failed"].id, AssetState.FAILED, error="PermanentDownloadError: big"),
            Outcome(leased["lost"].id, AssetState.LOST, error="deadline passed: gone"),
            Outcome(
                leased["archived"].id,
                AssetState.ARCHIVED,
                size=3,
                sha256="0" * 64,
                storage_key="k/archived.png",
            ),
        ],
    )
    # "held" keeps w1's lease (a download in flight); "leased" is in backoff *and* held
    # by another worker (it took it in the last moment before its backoff was set).
    with store.tx() as conn:
        conn.execute(
            A.update()
            .where(A.c.id == leased["leased"].id)
            .values(lease_owner="w2", lease_until=later)
        )
        conn.execute(
            A.update()
            .where(A.c.id.in_([leased["failed"].id, leased["lost"].id]))
            .values(attempts=5, url_refreshed=True)
        )
    assert store.leases.acquire("probe", limit=20, lease_seconds=1) == []  # nothing due yet

    plain = store.requeue_assets("main")
    assert (plain.made_due, plain.failed_requeued, plain.lost_requeued) == (2, 0, 0)
    assert (plain.failed_left, plain.lost_left) == (1, 1)
    rows = _by_name(store)
    assert rows["backoff"]["next_attempt_at"] <= now_utc()
    assert rows["leased"]["next_attempt_at"] <= now_utc()
    assert (rows["leased"]["lease_owner"], rows["leased"]["lease_until"]) == ("w2", later)
    assert rows["held"]["lease_owner"] == "w1"
    assert rows["failed"]["state"] == "failed" and rows["lost"]["state"] == "lost"
    assert rows["theirs"]["next_attempt_at"] == later, "another account's file was touched"

    full = store.requeue_assets("main", failed=True, lost=True)
    assert (full.made_due, full.failed_requeued, full.lost_requeued) == (0, 1, 1)
    rows = _by_name(store)
    for name in ("failed", "lost"):
        row = rows[name]
        assert row["state"] == "pending" and row["attempts"] == 0
        assert row["next_attempt_at"] <= now_utc() and row["lease_owner"] is None
    assert rows["failed"]["last_error"] == "PermanentDownloadError: big"  # until the next try
    assert rows["failed"]["url_refreshed"] is True
    assert rows["lost"]["url_refreshed"] is False  # one more refresh of the URL
    assert rows["archived"]["state"] == "archived"

    again = {a.external_id for a in store.leases.acquire("w3", limit=20, lease_seconds=60)}
    assert again == {"backoff", "failed", "lost"}


def test_retry_of_an_account_with_nothing_to_do_changes_nothing(store: Store) -> None:
    save(store, [record("a", media_=[media(url("a.png"))])])
    before = store.assets()
    result = store.requeue_assets("main", failed=True, lost=True)
    assert (result.made_due, result.failed_requeued, result.lost_requeued) == (0, 0, 0)
    assert store.assets() == before
    assert store.requeue_assets("nobody") == type(result)()
