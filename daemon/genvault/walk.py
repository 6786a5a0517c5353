"""History walks that check themselves: the one place that decides where a walk starts,
which page it reads next, when a page ends it, and whether it ended complete.

The sync job, ``backfill`` (through the sync job) and ``run --once --dry-run`` all
walk through :class:`Walk`; adapters only fetch the page they are asked for
(:meth:`Provider.fetch_page`) and report what the server said.

A listing is not a snapshot: items are created at the top and deleted anywhere
while we page, servers cap page sizes, ignore parameters and sort in undocumented
orders. So a walk proves each step instead of assuming it:

* **Offsets that shift.** Offset listings (Tengr.ai) are read in *overlapping*
  windows: each window starts :data:`OVERLAP` items before the previous one ended.
  A window continues the walk when it contains one of the previous window's last
  items (or, in a listing seen to be newest-first, starts with an item newer than
  the previous window's last): every item after that anchor is then in this window
  or the next. Otherwise deletions moved items up past us: the walk steps back a
  window and reads again, never skips.
* **Pages that shift.** Page-number listings (GeminiGen, CrowdComputed) give a
  ``total``. New items appear at the top (the order is checked), so a shift that
  could hide items needs deletions above us, and shows as a ``total`` that fell
  since the previous page: the walk keeps a frontier (the position above which it
  has seen everything), moves it with the ``total``, and reads again the page that
  holds it. Without a ``total`` no such check exists; the daily full walk is the net.
* **Short pages.** A page shorter than asked ends a walk only when the ``total``
  says so, or when one more read finds nothing new. A server that caps the page
  size is noticed on the first page (its real size is kept for the next walks); a
  walk from the top that saw fewer items than the final ``total`` ends incomplete.
* **Repeated pages.** A page identical to the previous one means the server
  ignores the paging parameter: the walk ends, incomplete, instead of paging
  forever.
* **Order.** The incremental stop rule ("a page of finished items older than the
  watermark ends the walk") and the ``since`` floor are only right for a
  newest-first listing. Every page's creation times are checked; a listing seen
  oldest-first or unsorted never stops early (the walk reads to the end) and says
  so in the stream's state.
* **A cap.** At most ``max_pages`` requests per pass; a walk that reaches it pauses
  and resumes from its cursor on the next pass.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from genvault.records import GenerationRecord, Page

if TYPE_CHECKING:
    from genvault.config import SyncSettings
    from genvault.providers.base import Provider
    from genvault.store import CursorState

OVERLAP = 5
"""Items each offset window re-reads from the previous one (1 % more requests at 500 a
page), fewer on small pages (:func:`overlap_for`) so the overlap never costs over 10 %."""
MAX_STEP_BACKS = 100
"""Re-reads to repair shifts, beyond one per read that made progress, before the walk
gives up as incomplete (drift): the listing moves faster than it can be read."""


def overlap_for(limit: int) -> int:
    """Items two consecutive offset windows share, so that the overlap costs at most a
    tenth more requests (k / (limit - k) <= 0.1) from 11 items a page up; below that one
    item, the least that proves continuity, costs more (bench/walk.py measures it)."""
    return 0 if limit <= 1 else min(OVERLAP, max(1, limit // 11))


class WalkEnd(enum.StrEnum):
    """Why a walk ended. The first three are complete; the others are not."""

    END = "end"
    """The listing's end, confirmed by its ``total`` or by one more read."""
    WATERMARK = "watermark"
    """An incremental walk reached finished items older than the last complete walk."""
    FLOOR = "floor"
    """Items created before the walk's lower bound (``backfill_days``, ``--since``)."""
    REPEATED_PAGE = "repeated_page"
    """The server answered the next page with the previous one: it ignores the parameter."""
    DRIFT = "drift"
    """Items kept moving under the walk beyond :data:`MAX_STEP_BACKS` re-reads; it read
    on to the end without proof of continuity, saving what it found."""
    SHORT_COUNT = "short_count"
    """The walk reached the end having seen fewer items than the API's ``total``."""

    @property
    def complete(self) -> bool:
        return self in (WalkEnd.END, WalkEnd.WATERMARK, WalkEnd.FLOOR)

    @property
    def reached_end(self) -> bool:
        """Whether the walk saw everything down to its floor (so absent items are gone)."""
        return self in (WalkEnd.END, WalkEnd.FLOOR)

    def explain(self, walk: Walk) -> str:
        """A sentence for ``status`` and the logs."""
        if self is WalkEnd.REPEATED_PAGE:
            return (
                f"the server answered position {walk.last_position} with the same items as "
                "the page before: it ignores the paging parameter, the rest is unreachable"
            )
        if self is WalkEnd.DRIFT:
            return (
                f"the listing kept shifting: {walk.step_backs} re-reads did not keep up, the "
                "rest was read without proof that nothing was skipped"
            )
        if self is WalkEnd.SHORT_COUNT:
            return (
                f"the walk saw {walk.served} items but the API counts {walk.last_total}: "
                "pages are missing (a page size the server applies differently?)"
            )
        return self.value


class Order(enum.StrEnum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"
    UNSORTED = "unsorted"


@dataclass(frozen=True, slots=True)
class WalkPlan:
    """Where a walk starts and what may end it early."""

    stream: str
    full: bool
    """A reconciliation walk: read to the end (or the floor), never stop at the watermark."""
    start: int | None
    """Position to resume an interrupted walk at (None: the first page)."""
    stop_before: datetime | None
    """Incremental walks: finished items older than this end the walk."""
    floor: datetime | None
    """Items created before this end the walk (``backfill_days``, ``--since``)."""
    started_at: datetime
    """When the walk (first) started: items not listed since are gone, once it ends."""
    resumed: bool = False


def plan_walk(
    cursor: CursorState,
    stream: str,
    *,
    now: datetime,
    overlap: timedelta,
    full_walk_every: timedelta,
    backfill_days: int | None,
    full: bool = False,
    since: datetime | None = None,
) -> WalkPlan:
    """Resume the walk in progress (unless a full walk is asked for and the one in
    progress is incremental), or start a new one: full (reconciliation) when asked, on
    the first walk, after a walk that ended incomplete, or when the last complete full
    walk is older than ``full_walk_every``; otherwise incremental."""
    if cursor.scan_position is not None and (cursor.walk_full or not full):
        return WalkPlan(
            stream=stream,
            full=cursor.walk_full,
            start=cursor.scan_position,
            stop_before=None
            if cursor.walk_full or cursor.high_water is None
            else cursor.high_water - overlap,
            floor=cursor.walk_floor,
            started_at=cursor.walk_started_at or now,
            resumed=True,
        )
    due = (
        full
        or cursor.high_water is None
        or cursor.last_walk_complete is False
        or cursor.last_full_walk_at is None
        or now - cursor.last_full_walk_at >= full_walk_every
    )
    floor = since
    if floor is None and backfill_days:
        floor = now - timedelta(days=backfill_days)
    return WalkPlan(
        stream=stream,
        full=due,
        start=None,
        stop_before=None if due or cursor.high_water is None else cursor.high_water - overlap,
        floor=floor,
        started_at=now,
    )


def next_walk(
    provider: Provider,
    cursor: CursorState,
    stream: str,
    settings: SyncSettings,
    *,
    max_pages: int | None = None,
    full: bool = False,
    since: datetime | None = None,
    backfill_days: int | None = None,
) -> Walk:
    """The walk a pass makes of ``stream`` now: planned from its cursor and the sync
    settings (:func:`plan_walk`; ``backfill_days``: the account's own, over the sync
    setting), with what earlier walks learned (order, page size).
    The sync job and the dry run both start here, so they walk alike."""
    from genvault.models import utcnow

    plan = plan_walk(
        cursor,
        stream,
        now=utcnow(),
        overlap=timedelta(seconds=settings.overlap_seconds),
        full_walk_every=timedelta(hours=settings.full_walk_hours),
        backfill_days=backfill_days or settings.backfill_days,
        full=full,
        since=since,
    )
    return Walk(
        provider,
        plan,
        max_pages=settings.max_pages_per_pass if max_pages is None else max_pages,
        order_seen=cursor.order_seen,
        page_size_seen=cursor.page_size_seen,
    )


def within_floor(
    records: tuple[GenerationRecord, ...], floor: datetime | None
) -> tuple[GenerationRecord, ...]:
    """The records a walk bounded by ``floor`` (``backfill_days``, ``--since``) keeps: the
    page that reaches the floor also lists older items, and those were not asked for.
    Items with no creation time are kept (nothing says they are older)."""
    if floor is None:
        return records
    return tuple(r for r in records if r.created_at is None or r.created_at >= floor)


@dataclass(frozen=True, slots=True)
class WalkStep:
    """One page as the walk read it, and what to do after saving it."""

    page: Page
    resume_at: int | None
    """Where to resume if the walk stops after this page (None on the last one)."""
    end: WalkEnd | None = None
    """Set on the walk's last page."""
    reread: bool = False
    """A repair read (a step back): its items were mostly seen already."""


def stamp(r: GenerationRecord) -> datetime | None:
    """The time the watermark follows: the provider's last change, else creation."""
    return r.updated_at or r.created_at


class OrderCheck:
    """Counts creation times going down and up *within* pages.

    Only within a page: across pages, shifts and step-backs make a window start
    with newer items than the last one ended with, which says nothing about order.
    """

    def __init__(self, known: str | None) -> None:
        self.known = known
        self.down = 0
        self.up = 0

    def feed(self, records: Sequence[GenerationRecord]) -> None:
        times = [r.created_at for r in records if r.created_at is not None]
        for a, b in itertools.pairwise(times):
            if b < a:
                self.down += 1
            elif b > a:
                self.up += 1

    @property
    def seen(self) -> Order | None:
        """What this walk saw (None: no evidence either way)."""
        if self.up and self.down:
            return Order.UNSORTED
        if self.up:
            return Order.OLDEST_FIRST
        if self.down:
            return Order.NEWEST_FIRST
        return None

    @property
    def newest_first(self) -> bool:
        """Safe to stop early: nothing in this walk contradicts newest-first, and either
        this walk or the last one that saw anything saw it newest-first (or none did)."""
        if self.up:
            return False
        return bool(self.down) or self.known in (None, Order.NEWEST_FIRST.value)


class Walk:
    """One walk of one stream; iterate it for its pages. Provider errors propagate
    (the caller records them and the cursor resumes at the last saved page)."""

    def __init__(
        self,
        provider: Provider,
        plan: WalkPlan,
        *,
        max_pages: int,
        order_seen: str | None = None,
        page_size_seen: int | None = None,
    ) -> None:
        self.provider = provider
        self.plan = plan
        self.max_pages = max_pages
        self.order = OrderCheck(order_seen)
        self.page_size = page_size_seen
        """The server's real page size when it caps the one asked (page listings)."""
        self.requests = 0
        self.step_backs = 0
        self.advances = 0
        """Reads that reached further down the listing than any before (the repair
        budget grows with them; re-reading ground already covered is no progress)."""
        self.served = 0
        """Items the forward reads were served (page listings; for the count check)."""
        self.last_total: int | None = None
        self.last_position: int | None = None
        self.end: WalkEnd | None = None
        self.capped = False
        """The walk paused at ``max_pages``; it resumes on the next pass."""
        self.unproven = False
        """Repairs gave up: the rest of the walk cannot prove it missed nothing."""

    @property
    def complete(self) -> bool:
        return self.end is not None and self.end.complete

    def __iter__(self) -> Iterator[WalkStep]:
        steps = self._offsets() if self.provider.paging.kind == "offset" else self._pages()
        for step in steps:
            if step.end is not None:
                if self.unproven and step.end.complete:
                    step = dataclasses.replace(step, end=WalkEnd.DRIFT)
                self.end = step.end
            yield step

    # ------------------------------------------------------------------ shared

    def _fetch(self, position: int) -> Page | None:
        """The page at ``position``, or None when the page cap is reached (paused)."""
        if self.requests >= self.max_pages:
            self.capped = True
            return None
        self.requests += 1
        self.last_position = position
        page = self.provider.fetch_page(self.plan.stream, position)
        self.order.feed(page.records)
        if page.total is not None:
            self.last_total = page.total
        return page

    def _ends_early(self, page: Page) -> WalkEnd | None:
        """FLOOR or WATERMARK when the page's items say the walk may stop here."""
        if not page.records or not self.order.newest_first:
            return None
        floor = self.plan.floor
        if floor is not None and all(
            r.created_at is not None and r.created_at < floor for r in page.records
        ):
            return WalkEnd.FLOOR
        before = self.plan.stop_before
        if before is not None and all(
            r.status.terminal and (s := stamp(r)) is not None and s < before for r in page.records
        ):
            return WalkEnd.WATERMARK
        return None

    def _step_back(self) -> bool:
        """Whether to read again to repair a possible gap. No, once repair reads
        outnumber the reads that made progress by :data:`MAX_STEP_BACKS` (the listing
        moves faster than it can be read): from then on the walk reads on without
        proof, saving what it can, and ends incomplete (``drift``)."""
        if self.unproven:
            return False
        self.step_backs += 1
        if self.step_backs > MAX_STEP_BACKS + self.advances:
            self.unproven = True
            return False
        return True

    # ------------------------------------------------------------------ page numbers

    def _pages(self) -> Iterator[WalkStep]:
        """Page numbers: a *frontier* (the listing position above which every item has
        been seen) moves with the ``total``: items created at the top push it down,
        items deleted above it pull it up (every deletion is assumed to be above us,
        the safe side). The next page is the one holding the frontier, so a page whose
        start fell below it is read again, and progress is never lost to a step back.
        """
        paging = self.provider.paging
        first = paging.first
        asked = paging.size
        eff = min(asked, self.page_size) if self.page_size else asked
        pos = self.plan.start if self.plan.start is not None else first
        from_top = self.plan.start is None
        frontier = reached = (pos - first) * eff
        prev: tuple[int, list[str]] | None = None
        """Position and ids of the previous read."""
        prev_total: int | None = None
        short: int | None = None
        """Items on the previous page when it was shorter than a page (end unconfirmed)."""
        while True:
            page = self._fetch(pos)
            if page is None:
                return
            ids = _ids(page)
            if short is not None and prev is not None and set(ids) <= set(prev[1]):
                # The read after a short page found nothing new: the end, confirmed.
                yield WalkStep(page, None, self._count_check(from_top))
                return
            if prev is not None and ids and ids == prev[1] and pos != prev[0]:
                yield WalkStep(page, None, WalkEnd.REPEATED_PAGE)
                return
            if short is not None and pos == first + 1:
                eff = self.page_size = short  # more after a short first page: a size cap
            short = None
            if page.page_size is not None and 0 < page.page_size < eff:
                eff = self.page_size = page.page_size  # the server says it caps our size
            if prev_total is not None and page.total is not None:
                frontier = max(0, frontier + page.total - prev_total)
            if page.total is not None:
                prev_total = page.total
            prev = (pos, ids)
            start = (pos - first) * eff
            if start > frontier and self._step_back():
                # Items vanished above us and the rest moved up past this page's start:
                # read the page that now holds the frontier.
                pos = first + frontier // eff
                yield WalkStep(page, pos, reread=True)
                continue
            if start + page.got > reached:
                reached = start + page.got
                self.advances += 1
            frontier = max(frontier, start + page.got)
            self.served += page.got
            early = self._ends_early(page)
            if early is not None:
                yield WalkStep(page, None, early)
                return
            if page.got == 0 or (page.total is not None and start + page.got >= page.total):
                yield WalkStep(page, None, self._count_check(from_top))
                return
            if page.got < eff:
                if pos == first and page.total is not None:
                    # A first page short of a ``total`` that says more: the server caps
                    # the page size, and numbers its pages by that size.
                    eff = self.page_size = page.got
                else:
                    short = page.got  # unconfirmed: the next page tells
            yield WalkStep(page, pos)
            pos = pos + 1 if short is not None else first + frontier // eff

    def _count_check(self, from_top: bool) -> WalkEnd:
        """END, unless a walk from the top was served fewer items than the API counts."""
        if from_top and self.last_total is not None and self.served < self.last_total:
            return WalkEnd.SHORT_COUNT
        return WalkEnd.END

    # ------------------------------------------------------------------ offsets

    def _offsets(self) -> Iterator[WalkStep]:
        limit = self.provider.paging.size
        k = overlap_for(limit)
        off = reached = self.plan.start if self.plan.start is not None else 0
        prev: Page | None = None
        """The last window accepted as continuing the walk: its tail anchors the next."""
        while True:
            page = self._fetch(off)
            if page is None:
                return
            ids = _ids(page)
            if prev is not None and prev.got < limit and set(ids) <= set(_ids(prev)):
                # The read after a short window found nothing new: the end, confirmed.
                yield WalkStep(page, None, WalkEnd.END)
                return
            if prev is not None and ids and ids == _ids(prev) and off != prev.position:
                yield WalkStep(page, None, WalkEnd.REPEATED_PAGE)
                return
            if prev is not None and not self._continues(prev, page, off, k) and self._step_back():
                # Deletions moved items up past our window: read an earlier one.
                off = max(0, off - max(limit - k, 1))
                yield WalkStep(page, off, reread=True)
                continue
            prev = page
            if off > reached:
                reached = off
                self.advances += 1
            early = self._ends_early(page)
            if early is not None:
                yield WalkStep(page, None, early)
                return
            if page.got == 0:
                yield WalkStep(page, None, WalkEnd.END)
                return
            yield WalkStep(page, off)
            # Overlap the next window with this one's last items (a short window too:
            # the read after it confirms the end or finds what came after).
            off += max(page.got - min(k, page.got), 1) if page.got < limit else page.got - k

    def _continues(self, prev: Page, page: Page, off: int, k: int) -> bool:
        """Whether ``page`` (read at ``off``) starts at or above ``prev``'s last item."""
        if off == 0 or k == 0:
            return True  # the top of the listing; or no overlap to check with
        ids = set(_ids(page))
        anchors = _ids(prev)[-k:]
        if any(a in ids for a in anchors):
            return True
        if page.records and prev.records and self.order.newest_first:
            newest, boundary = page.records[0].created_at, prev.records[-1].created_at
            if newest is not None and boundary is not None and newest > boundary:
                return True  # it starts with an item newer than the previous window's last
        return False


def _ids(page: Page) -> list[str]:
    return [r.external_id for r in page.records]


def read_listing(
    provider: Provider, stream: str, *, max_pages: int = 10_000
) -> tuple[list[GenerationRecord], Walk]:
    """Walk one stream in full, without a database: each listed item once, in listing
    order, and the walk (to check ``walk.complete``). For tools and tests."""
    from genvault.models import utcnow

    plan = WalkPlan(
        stream, full=True, start=None, stop_before=None, floor=None, started_at=utcnow()
    )
    walk = Walk(provider, plan, max_pages=max_pages)
    by_id: dict[str, GenerationRecord] = {}
    for step in walk:
        for r in step.page.records:
            by_id.setdefault(r.external_id, r)
    return list(by_id.values()), walk
