"""Replicas share the sidecars due on PostgreSQL (``Store.claim_sidecars``).

Three ``run --once`` replicas used to rewrite every sidecar of the run each
(benchmark 6). A claim locks its batch ``FOR UPDATE SKIP LOCKED`` for as long as
its sidecars are being written, so a second claim at the same time takes other
generations, and the flags are cleared in the claim's own transaction: a failure
rolls them back and the sidecars are written again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from genvault.store import Store
from tests.integration.store_helpers import now_utc, record, save

pytestmark = pytest.mark.postgres
HOUR = timedelta(hours=1)


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    s = Store(postgres_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.dispose()


def _six_due(store: Store) -> set[str]:
    n = now_utc()
    names = {f"g{i}" for i in range(6)}
    save(store, [record(name, created_at=n) for name in sorted(names)], now=n)
    assert {g["external_id"] for g in store.sidecars_due(100)} == names
    return names


def test_two_claims_at_once_take_different_generations(pg_store: Store) -> None:
    names = _six_due(pg_store)
    with pg_store.claim_sidecars(4) as first, pg_store.claim_sidecars(4) as second:
        one = {g["external_id"] for g in first.generations}
        two = {g["external_id"] for g in second.generations}
        assert len(one) == 4 and len(two) == 2
        assert one | two == names and not one & two
        for claim in (first, second):
            claim.written = [(g["id"], g["updated_at"]) for g in claim.generations]
    assert pg_store.sidecars_due(100) == []


def test_a_claim_clears_only_the_flags_it_was_told_were_written(pg_store: Store) -> None:
    _six_due(pg_store)
    with pg_store.claim_sidecars(10) as claim:
        kept = claim.generations[0]["external_id"]
        claim.written = [(g["id"], g["updated_at"]) for g in claim.generations[1:]]
    assert [g["external_id"] for g in pg_store.sidecars_due(100)] == [kept]


def test_a_failed_claim_leaves_every_flag_set(pg_store: Store) -> None:
    names = _six_due(pg_store)
    with pytest.raises(RuntimeError), pg_store.claim_sidecars(10) as claim:
        claim.written = [(g["id"], g["updated_at"]) for g in claim.generations]
        raise RuntimeError("storage went away mid-batch")
    assert {g["external_id"] for g in pg_store.sidecars_due(100)} == names


def test_a_generation_changed_during_the_claim_stays_due(pg_store: Store) -> None:
    n = now_utc()
    save(pg_store, [record("g1", created_at=n, raw={"v": 1})], now=n)
    with pg_store.claim_sidecars(10) as claim:
        [gen] = claim.generations
        claim.written = [(gen["id"], gen["updated_at"])]
        seen = gen["updated_at"]
    assert pg_store.sidecars_due(10) == []
    save(pg_store, [record("g1", created_at=n, raw={"v": 2})], now=n + HOUR)
    with pg_store.claim_sidecars(10) as claim:
        [gen] = claim.generations
        assert gen["updated_at"] == n + HOUR != seen
        claim.written = [(gen["id"], seen)]  # what was read before the change
    assert [g["raw"] for g in pg_store.sidecars_due(10)] == [{"v": 2}]


def test_a_pass_claims_only_the_generations_it_names(pg_store: Store) -> None:
    """An archive pass asks about the generations whose files it just recorded; a
    generation another replica holds is skipped, not waited for (that one writes it)."""
    _six_due(pg_store)
    ids = {g["external_id"]: g["id"] for g in pg_store.sidecars_due(100)}
    mine = [ids["g1"], ids["g2"], ids["g3"]]
    with pg_store.claim_sidecars(10, generations=[ids["g2"]]) as other:
        with pg_store.claim_sidecars(10, generations=mine) as claim:
            assert {g["external_id"] for g in claim.generations} == {"g1", "g3"}
            claim.written = [(g["id"], g["updated_at"]) for g in claim.generations]
        other.written = [(g["id"], g["updated_at"]) for g in other.generations]
    assert {g["external_id"] for g in pg_store.sidecars_due(100)} == {"g0", "g4", "g5"}
    assert pg_store.sidecars_due(100, generations=mine) == []
