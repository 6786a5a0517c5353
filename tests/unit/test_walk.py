"""The walk's rules on scripted listings: shifts repaired, short pages confirmed, caps
learned, repeated pages and wrong orders caught, early stops only when safe.

The listing here is an in-memory list behind the provider interface, so each rule can
be driven exactly (a deletion between two particular requests); the same rules run
over HTTP against the simulators in tests/acceptance/test_complete_walks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from genvault.providers.base import OffsetPaging, PageNumberPaging, Paging, Provider
from genvault.records import GenerationRecord, GenerationStatus, Page
from genvault.store import CursorState
from genvault.walk import (
    MAX_STEP_BACKS,
    OVERLAP,
    Order,
    Walk,
    WalkEnd,
    WalkPlan,
    overlap_for,
    plan_walk,
    read_listing,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def item(n: int) -> GenerationRecord:
    """Item ``n``, created ``n`` minutes after T0 (higher n = newer)."""
    return GenerationRecord(
        external_id=f"g{n:05d}",
        status=GenerationStatus.SUCCEEDED,
        provider_status="done",
        created_at=T0 + timedelta(minutes=n),
    )


@dataclass
class Listing(Provider):
    """A listing of items, newest first unless ``oldest_first``, paged like a server."""

    items: list[GenerationRecord]
    kind: str = "offset"
    size: int = 10
    cap: int | None = None
    """The server answers at most this many items a page whatever is asked."""
    with_total: bool = True
    ignore_position: bool = False
    after_request: Callable[[Listing, int], None] | None = None
    """Called after answering request number N (1-based): mutate the listing here."""
    requests: list[int] = field(default_factory=list)

    name: ClassVar[str] = "scripted"
    default_base_url: ClassVar[str] = "http://unused"

    def __post_init__(self) -> None:  # Provider.__init__ is not needed here
        self.account = "main"

    @classmethod
    def auth_headers(cls, api_key: str, options: Any) -> dict[str, str]:
        return {}

    @property
    def paging(self) -> Paging:
        if self.kind == "offset":
            return OffsetPaging("offset", "limit", self.size)
        return PageNumberPaging("page", "size", self.size)

    def fetch_page(self, stream: str, position: int) -> Page:
        self.requests.append(position)
        n = min(self.size, self.cap or self.size)
        if self.ignore_position:
            start = 0
        elif self.kind == "offset":
            start = position
        else:
            start = (position - 1) * n
        got = tuple(self.items[start : start + n])
        page = Page(
            records=got,
            position=position,
            got=len(got),
            total=len(self.items) if self.with_total and self.kind == "page" else None,
        )
        if self.after_request is not None:
            self.after_request(self, len(self.requests))
        return page

    def fetch(self, external_id: str) -> GenerationRecord:
        raise NotImplementedError

    def parse(self, payload: Any) -> GenerationRecord:
        raise NotImplementedError

    def delete(self, ids: set[str]) -> None:
        self.items = [r for r in self.items if r.external_id not in ids]

    def insert_top(self, records: list[GenerationRecord]) -> None:
        self.items = records + self.items


def newest_first(n: int) -> list[GenerationRecord]:
    return [item(i) for i in range(n, 0, -1)]


def plan(**changes: Any) -> WalkPlan:
    base: dict[str, Any] = {
        "stream": "all",
        "full": True,
        "start": None,
        "stop_before": None,
        "floor": None,
        "started_at": T0 + timedelta(days=1),
    }
    base.update(changes)
    return WalkPlan(**base)


def walk_ids(provider: Listing, p: WalkPlan | None = None, **kw: Any) -> tuple[set[str], Walk]:
    walk = Walk(provider, p or plan(), max_pages=kw.pop("max_pages", 1000), **kw)
    seen = {r.external_id for step in walk for r in step.page.records}
    return seen, walk


# --------------------------------------------------------------------------- plain walks


@pytest.mark.parametrize("kind", ["offset", "page"])
@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 95, 100])
def test_a_still_listing_is_read_whole_and_ends_complete(kind: str, n: int) -> None:
    listing = Listing(newest_first(n), kind=kind, size=10)
    seen, walk = walk_ids(listing)
    assert seen == {r.external_id for r in listing.items}
    assert walk.end is WalkEnd.END and walk.complete


def test_offset_windows_overlap_by_a_few_items() -> None:
    listing = Listing(newest_first(100), size=55)
    walk_ids(listing)
    # 0, then 50 (5 back); that window is short (50 of 55): one more read, overlapping
    # its last 5, finds nothing new and confirms the end
    assert listing.requests == [0, 55 - OVERLAP, 100 - OVERLAP]
    assert [overlap_for(n) for n in (1, 2, 10, 11, 20, 50, 55, 500)] == [0, 1, 1, 1, 1, 4, 5, 5]


def test_page_listing_with_total_ends_without_an_extra_read() -> None:
    listing = Listing(newest_first(25), kind="page", size=10)
    walk_ids(listing)
    assert listing.requests == [1, 2, 3]


# --------------------------------------------------------------------------- shifts


def test_offset_deletions_above_the_window_are_repaired_not_skipped() -> None:
    """Deleting 12 items near the top after the first window moves items past the next
    window's start: the walk notices (no anchor) and reads an earlier window."""

    def delete_after_first(listing: Listing, request: int) -> None:
        if request == 1:
            listing.delete({f"g{n:05d}" for n in range(300, 288, -1)})

    listing = Listing(newest_first(300), size=10, after_request=delete_after_first)
    seen, walk = walk_ids(listing)
    assert {r.external_id for r in listing.items} <= seen
    assert walk.complete and walk.step_backs >= 1


def test_offset_churn_on_every_request_misses_nothing_that_stayed() -> None:
    """Random-ish deletions and insertions at every request: every item that was never
    deleted is seen (the items inserted during the walk may or may not be)."""
    counter = iter(range(10_000, 20_000))
    deleted: set[str] = set()

    def churn(listing: Listing, request: int) -> None:
        victims = {r.external_id for r in listing.items[3 : 3 + 7 * request : request or 1]}
        victims = set(list(victims)[:6])
        deleted.update(victims)
        listing.delete(victims)
        listing.insert_top([item(next(counter)) for _ in range(2)])

    original = newest_first(600)
    listing = Listing(list(original), size=50, after_request=churn)
    seen, walk = walk_ids(listing)
    stayed = {r.external_id for r in original} - deleted
    assert stayed <= seen
    assert walk.complete


def test_page_deletions_show_as_a_falling_total_and_are_re_read() -> None:
    def delete_after_second(listing: Listing, request: int) -> None:
        if request == 2:
            listing.delete({f"g{n:05d}" for n in range(100, 96, -1)})  # 4 near the top

    original = newest_first(100)
    listing = Listing(list(original), kind="page", size=10, after_request=delete_after_second)
    seen, walk = walk_ids(listing)
    assert {r.external_id for r in listing.items} <= seen
    assert walk.complete and walk.step_backs == 1
    assert listing.requests[:4] == [1, 2, 3, 2]  # page 3 saw the total fall: page 2 again


def test_page_insertions_at_the_top_only_repeat_items() -> None:
    counter = iter(range(1000, 2000))

    def insert(listing: Listing, request: int) -> None:
        listing.insert_top([item(next(counter)) for _ in range(3)])

    original = newest_first(60)
    listing = Listing(list(original), kind="page", size=10, after_request=insert)
    seen, walk = walk_ids(listing)
    assert {r.external_id for r in original} <= seen
    assert walk.complete and walk.step_backs == 0


def test_a_listing_that_never_settles_ends_as_drift_not_forever() -> None:
    def delete_many(listing: Listing, request: int) -> None:
        listing.delete({r.external_id for r in listing.items[:15]})
        listing.insert_top([item(5000 + request * 20 + i) for i in range(15)])

    listing = Listing(newest_first(400), size=10, after_request=delete_many)
    _, walk = walk_ids(listing, max_pages=10_000)
    assert walk.end is WalkEnd.DRIFT and not walk.complete
    assert walk.step_backs == MAX_STEP_BACKS + 1


# --------------------------------------------------------------------------- short pages, caps


def test_a_page_cap_with_a_total_is_learned_and_the_walk_goes_on() -> None:
    listing = Listing(newest_first(35), kind="page", size=100, cap=10)
    seen, walk = walk_ids(listing)
    assert len(seen) == 35 and walk.complete
    assert walk.page_size == 10
    assert listing.requests == [1, 2, 3, 4]


def test_a_short_page_without_a_total_is_confirmed_by_one_more_read() -> None:
    listing = Listing(newest_first(35), kind="page", size=100, cap=10, with_total=False)
    seen, walk = walk_ids(listing)
    assert len(seen) == 35 and walk.complete
    assert walk.page_size == 10  # learned when page 2 was not empty


def test_an_offset_cap_is_walked_through_by_offsets() -> None:
    listing = Listing(newest_first(95), size=50, cap=20)
    seen, walk = walk_ids(listing)
    assert len(seen) == 95 and walk.complete


def test_fewer_items_than_the_total_is_incomplete() -> None:
    """A server that caps items but numbers pages by the size asked skips items: the count
    check catches it."""

    class SkippingServer(Listing):
        def fetch_page(self, stream: str, position: int) -> Page:
            self.requests.append(position)
            start = (position - 1) * self.size  # by the size asked...
            got = tuple(self.items[start : start + 10])  # ...but only 10 served
            return Page(got, position, got=len(got), total=len(self.items))

    listing = SkippingServer(newest_first(250), kind="page", size=100)
    _, walk = walk_ids(listing)
    assert walk.end is WalkEnd.SHORT_COUNT and not walk.complete


# --------------------------------------------------------------------------- repeats, order


@pytest.mark.parametrize("kind", ["offset", "page"])
def test_a_server_that_ignores_the_position_ends_incomplete_after_one_repeat(kind: str) -> None:
    listing = Listing(newest_first(300), kind=kind, size=10, ignore_position=True)
    seen, walk = walk_ids(listing)
    assert walk.end is WalkEnd.REPEATED_PAGE and not walk.complete
    assert len(listing.requests) == 2 and len(seen) == 10


def test_ignoring_the_position_on_a_one_page_listing_is_harmless() -> None:
    listing = Listing(newest_first(7), size=10, ignore_position=True)
    seen, walk = walk_ids(listing)
    assert len(seen) == 7 and walk.complete


def test_the_page_cap_pauses_the_walk() -> None:
    listing = Listing(newest_first(300), size=10)
    _, walk = walk_ids(listing, max_pages=5)
    assert walk.capped and walk.end is None and len(listing.requests) == 5


def test_incremental_walk_stops_at_the_watermark_only_when_newest_first() -> None:
    items = newest_first(200)
    watermark = T0 + timedelta(minutes=150)  # items 1..149 are older
    incremental = plan(full=False, stop_before=watermark)
    listing = Listing(list(items), size=20)
    _, walk = walk_ids(listing, incremental)
    assert walk.end is WalkEnd.WATERMARK and walk.complete
    # windows of 20 overlapping by 1: 200..181, 181..162, 162..143, then 143..124 all old
    assert len(listing.requests) == 4

    oldest = Listing(list(reversed(items)), size=20)
    seen, walk = walk_ids(oldest, incremental)
    assert walk.end is WalkEnd.END and len(seen) == 200  # no early stop: read it all
    assert walk.order.seen is Order.OLDEST_FIRST


def test_a_previous_walk_that_saw_oldest_first_keeps_early_stops_off() -> None:
    one_per_page = Listing(newest_first(5), size=1)  # no evidence within a page
    p = plan(full=False, stop_before=T0 + timedelta(days=1))
    _, walk = walk_ids(one_per_page, p, order_seen=Order.OLDEST_FIRST.value)
    assert walk.end is WalkEnd.END
    _, walk = walk_ids(Listing(newest_first(5), size=1), p, order_seen=None)
    assert walk.end is WalkEnd.WATERMARK


def test_floor_ends_a_newest_first_walk() -> None:
    listing = Listing(newest_first(100), size=10)
    _, walk = walk_ids(listing, plan(floor=T0 + timedelta(minutes=80)))
    # windows of 10 overlapping by 1: 100..91, 91..82, 82..73, then 73..64 all below 80
    assert walk.end is WalkEnd.FLOOR and walk.complete and len(listing.requests) == 4


def test_read_listing_gives_each_item_once() -> None:
    listing = Listing(newest_first(57), size=10)
    records, walk = read_listing(listing, "all")
    assert [r.external_id for r in records] == [r.external_id for r in listing.items]
    assert walk.complete


# --------------------------------------------------------------------------- planning


def cursor(**kw: Any) -> CursorState:
    base: dict[str, Any] = {"high_water": None, "scan_position": None, "scan_high_water": None}
    base.update(kw)
    return CursorState(**base)


def planned(c: CursorState, **kw: Any) -> WalkPlan:
    return plan_walk(
        c,
        "all",
        now=T0,
        overlap=timedelta(hours=1),
        full_walk_every=timedelta(hours=24),
        backfill_days=kw.pop("backfill_days", None),
        **kw,
    )


def test_plan_first_walk_is_full() -> None:
    p = planned(cursor())
    assert p.full and p.stop_before is None and p.start is None


def test_plan_incremental_after_a_recent_complete_full_walk() -> None:
    c = cursor(high_water=T0, last_full_walk_at=T0 - timedelta(hours=2), last_walk_complete=True)
    p = planned(c)
    assert not p.full and p.stop_before == T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    "changes",
    [
        {"last_full_walk_at": T0 - timedelta(hours=25), "last_walk_complete": True},
        {"last_full_walk_at": T0 - timedelta(hours=1), "last_walk_complete": False},
        {"last_full_walk_at": None, "last_walk_complete": True},
    ],
)
def test_plan_full_when_due_or_after_an_incomplete_walk(changes: dict[str, Any]) -> None:
    assert planned(cursor(high_water=T0, **changes)).full


def test_plan_resumes_the_walk_in_progress_as_the_same_kind() -> None:
    started = T0 - timedelta(minutes=5)
    c = cursor(
        high_water=T0,
        scan_position=40,
        walk_full=True,
        walk_started_at=started,
        walk_floor=T0 - timedelta(days=3),
        last_full_walk_at=T0,
    )
    p = planned(c)
    assert (p.start, p.full, p.started_at, p.floor, p.resumed) == (
        40,
        True,
        started,
        T0 - timedelta(days=3),
        True,
    )


def test_plan_floor_from_backfill_days() -> None:
    assert planned(cursor(), backfill_days=3).floor == T0 - timedelta(days=3)


def test_plan_a_full_walk_asked_for_resumes_a_full_walk_but_not_an_incremental_one() -> None:
    full_in_progress = cursor(high_water=T0, scan_position=40, walk_full=True)
    assert planned(full_in_progress, full=True).start == 40
    incremental_in_progress = cursor(high_water=T0, scan_position=40, walk_full=False)
    p = planned(incremental_in_progress, full=True)
    assert p.full and p.start is None


def _burst(deleted: set[str], counter: Any) -> Callable[[Listing, int], None]:
    """15 deleted (spread over the listing) and 5 created after each of the first 10
    requests: what bench/walk.py calls burst churn."""

    def churn(listing: Listing, request: int) -> None:
        if request > 10:
            return
        victims = {r.external_id for r in listing.items[::7][:15]}
        deleted.update(victims)
        listing.delete(victims)
        listing.insert_top([item(next(counter)) for _ in range(5)])

    return churn


@pytest.mark.parametrize("kind", ["offset", "page"])
def test_burst_churn_misses_nothing_that_stayed(kind: str) -> None:
    deleted: set[str] = set()
    original = newest_first(1000)
    listing = Listing(
        list(original), kind=kind, size=100, after_request=_burst(deleted, iter(range(9000, 9999)))
    )
    seen, walk = walk_ids(listing)
    assert {r.external_id for r in original} - deleted <= seen
    assert walk.complete and walk.step_backs > 0


def test_deletions_below_the_walk_cost_one_re_read_and_nothing_else() -> None:
    """A total that falls cannot say where the items went: the walk assumes above it and
    reads a page again; finding that page as it was is a re-read, not a server that
    ignores the page parameter (which would end the walk incomplete)."""

    def delete_below(listing: Listing, request: int) -> None:
        if request == 2:  # items deleted far below: the total falls, nothing above moved
            listing.delete({f"g{n:05d}" for n in range(5, 1, -1)})

    listing = Listing(newest_first(100), kind="page", size=10, after_request=delete_below)
    seen, walk = walk_ids(listing)
    assert walk.complete and len(seen) == 96 and walk.step_backs == 1


def test_steady_deletions_on_a_page_listing_end_as_drift_and_say_so() -> None:
    """One item deleted at the top after every request: page numbers can never prove the
    next page follows the last, so the walk ends incomplete (reported, retried as a
    full walk) instead of claiming completeness."""

    def one_by_one(listing: Listing, request: int) -> None:
        listing.items = listing.items[1:]

    listing = Listing(newest_first(5000), kind="page", size=100, after_request=one_by_one)
    seen, walk = walk_ids(listing, max_pages=10_000)
    assert walk.end is WalkEnd.DRIFT and not walk.complete
    # past the repair budget it reads on without proof: most of what stayed is saved
    stayed = {r.external_id for r in listing.items}
    assert len(stayed & seen) >= 0.95 * len(stayed)
