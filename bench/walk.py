"""8. Walk: what the self-checking walk and the daily full walk cost in listing requests.

The issue: "a benchmark under ``bench/`` reports what the self-checking walk and the
daily full walk cost in API requests per 1,000 items, next to today's walk (target:
at most 1.1x the requests of today's incremental walk, plus one full walk a day)."

Two walkers page the same simulator over loopback HTTP through the same adapter:

* **today's walk**: the walk genvault had before :mod:`genvault.walk`, reproduced
  here as a small labelled baseline (:func:`todays_walk`), because the comparison
  needs it and the daemon no longer has it;
* **the new walk**: :class:`genvault.walk.Walk` on a plan made by
  :func:`genvault.walk.plan_walk`, from a cursor kept the way the store keeps it
  (watermark, last full walk, order and page size seen), so the plan decides as the
  sync job does whether a walk is full or incremental.

Listing requests are counted **at the simulator** (its per-route counters), not only
by the walkers; a difference from the walkers' own counts is reported as a note.
Detail reads (GeminiGen's ``/history/{uuid}`` for every new or changed item) are not
walk requests and are not counted: both walks would cause the same ones.

Four listings: Tengr.ai (offsets, no ``total``) at ``page_limit`` 500 (the default),
100 and 20 (a small page: the overlap is then a tenth of it, the most
:func:`genvault.walk.overlap_for` allows), and GeminiGen (page numbers with a
``total``) at ``items_per_page`` 100 (the default). Per listing:

1. the first walk of a history of ``items`` (full for both): requests per 1,000 items;
2. incremental walks after 0, 50 and 1,000 new items at the top, each from the
   watermark of the walk before (``sync.overlap_seconds`` re-read under it);
3. a day: ``schedule.sync_seconds`` (900 s) makes 96 passes; ``plan_walk`` is asked
   which of them are full (one: ``sync.full_walk_hours`` is 24), so the new walk's
   day is 95 incremental walks and one full walk, today's is 96 incremental walks.
   The target's budget is 1.1 x today's day plus one full walk (at today's price);
4. churn: a first walk while the user deletes and creates items between listing
   requests (the simulators' churn knobs), on two identical simulators, one per
   walker: requests, and how many of the items that were there all along (listed
   before the walk, never deleted) each walker never saw. Two shapes: a *burst*
   (15 deleted and 5 created after each of the first 10 requests, the shape of
   ``tests/acceptance/test_complete_walks.py``) and a *steady* one (one item deleted
   after every request, for as long as the walk runs).

No time is measured: request counts do not depend on the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Final, Literal

from bench.core import Result, Scale
from genvault.config import NetworkSettings, ScheduleSettings, SyncSettings
from genvault.models import utcnow
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers.base import Provider
from genvault.providers.geminigen import GeminiGen, GeminiGenOptions
from genvault.providers.tengrai import TengrAI, TengrAIOptions
from genvault.records import GenerationRecord, Page
from genvault.simulator import geminigen, tengrai
from genvault.simulator.geminigen import GeminiGenSimulator
from genvault.simulator.tengrai import TengrAISimulator
from genvault.store import CursorState
from genvault.walk import Walk, plan_walk, stamp

NAME: Final = "walk"
TITLE: Final = "self-checking walk + daily full walk vs today's walk: listing requests"
API_KEY: Final = "bench-walk-key"
STREAM: Final = "all"
SEED: Final = 8
NEW_ITEMS: Final = (0, 50, 1000)
"""New items at the top before each incremental walk, in this order."""
TARGET: Final = 1.1

Kind = Literal["tengrai", "geminigen"]
Sim = TengrAISimulator | GeminiGenSimulator


@dataclass(frozen=True)
class Listing:
    key: str
    """Short name in labels."""
    kind: Kind
    page: int
    """``page_limit`` (Tengr.ai) or ``items_per_page`` (GeminiGen)."""


LISTINGS: Final = (
    Listing("tengrai/500", "tengrai", 500),  # the default page_limit (the API's maximum)
    Listing("tengrai/100", "tengrai", 100),
    Listing("tengrai/20", "tengrai", 20),  # a small page_limit: the overlap is 2 of 20
    Listing("geminigen/100", "geminigen", 100),  # the default items_per_page
)


CHURNS: Final = ("burst", "steady")
"""Churn scenarios (:data:`PLANS` says what each does)."""


def _ratio_labels(key: str) -> tuple[str, ...]:
    return (
        f"{key}: first walk: new / today's",
        *(f"{key}: incr. +{k:,} new: new / today's" for k in NEW_ITEMS),
        f"{key}: a day: new / today's (+50 a pass)",
        f"{key}: a day: new / budget (worst case)",
        *(f"{key}: {c} churn: new / today's requests" for c in CHURNS),
    )


RATIOS: Final = tuple(label for listing in LISTINGS for label in _ratio_labels(listing.key))
"""Labels of the ratios every run reports (the CI smoke test checks them)."""


@dataclass(frozen=True)
class Churn:
    """What the user does between listing requests while a first walk pages."""

    requests: int
    """After how many listing requests (the first ones); 0: after every one."""
    delete: int
    """Items deleted after each of them, anywhere in the listing (seeded)."""
    insert: int
    """Items created at the top after each of them."""

    def describe(self) -> str:
        when = (
            f"each of the first {self.requests} listing requests"
            if self.requests
            else "every listing request"
        )
        return f"{self.delete} deleted + {self.insert} created after {when}"


@dataclass(frozen=True)
class Plan:
    items: int
    """Items in the history before the first walk."""
    churns: dict[str, Churn]


PLANS: Final = {
    Scale.FULL: Plan(
        items=5_000,
        churns={
            # tests/acceptance/test_complete_walks.py's shape: a clean-up burst
            "burst": Churn(requests=10, delete=15, insert=5),
            # a user deleting one item after another for as long as the walk runs
            "steady": Churn(requests=0, delete=1, insert=0),
        },
    ),
    Scale.SMOKE: Plan(
        items=600,
        churns={
            "burst": Churn(requests=3, delete=15, insert=5),
            "steady": Churn(requests=0, delete=1, insert=0),
        },
    ),
}


# --------------------------------------------------------------------------- today's walk


@dataclass
class Walked:
    """One walk as measured: requests at the simulator, what it saw, how it ended."""

    requests: int = 0
    """Listing requests the simulator answered during the walk."""
    own_count: int = 0
    """Listing requests the walker itself counted."""
    seen: set[str] = field(default_factory=set)
    high: datetime | None = None
    """The newest stamp seen (the next watermark, once complete)."""
    full: bool = True
    end: str = "end"
    complete: bool = True
    rereads: int = 0

    def feed(self, records: tuple[GenerationRecord, ...]) -> None:
        self.seen.update(r.external_id for r in records)
        stamps = [s for s in map(stamp, records) if s is not None]
        if stamps:
            self.high = max([*stamps, self.high] if self.high else stamps)


def _todays_next(provider: Provider, page: Page) -> int | None:
    """TODAY'S paging (``next_position`` of providers/base.py before genvault.walk)."""
    paging = provider.paging
    if paging.kind == "offset":
        return None if page.got < paging.size else page.position + page.got
    if page.got == 0 or page.got < paging.size:
        return None
    if page.total is not None and (page.position - paging.first + 1) * paging.size >= page.total:
        return None
    return page.position + 1


def todays_walk(provider: Provider, stop_before: datetime | None) -> Walked:
    """TODAY'S WALK, the baseline: genvault's walk before :mod:`genvault.walk` (the loop
    of ``jobs/sync.py`` and ``next_position`` of ``providers/base.py`` at commit
    5d9371c^), kept here only to be compared with.

    From the first page: page + 1 (page numbers) or offset + items got (offsets), until
    a short page (page numbers also stop when the ``total`` says the last page was
    read); an incremental walk (``stop_before``: the last walk's watermark minus
    ``sync.overlap_seconds``) also stops at the first page whose items are all finished
    and older than that. No overlap, no re-read, no confirming read.
    """
    walked = Walked(full=stop_before is None)
    position: int | None = provider.paging.first
    while position is not None:
        page = provider.fetch_page(STREAM, position)
        walked.own_count += 1
        walked.feed(page.records)
        position = _todays_next(provider, page)
        if (
            position is not None
            and page.records
            and stop_before is not None
            and all(
                r.status.terminal and (s := stamp(r)) is not None and s < stop_before
                for r in page.records
            )
        ):
            walked.end = "watermark"
            position = None
    return walked


# --------------------------------------------------------------------------- the new walk


def new_walk(provider: Provider, cursor: CursorState, now: datetime) -> tuple[Walked, CursorState]:
    """One :class:`Walk` as the sync job plans it, and the cursor as the store leaves it."""
    sync = SyncSettings()
    plan = plan_walk(
        cursor,
        STREAM,
        now=now,
        overlap=timedelta(seconds=sync.overlap_seconds),
        full_walk_every=timedelta(hours=sync.full_walk_hours),
        backfill_days=sync.backfill_days,
    )
    walk = Walk(
        provider,
        plan,
        max_pages=sync.max_pages_per_pass,
        order_seen=cursor.order_seen,
        page_size_seen=cursor.page_size_seen,
    )
    walked = Walked(full=plan.full)
    for step in walk:
        walked.feed(step.page.records)
        walked.rereads += step.reread
    walked.own_count = walk.requests
    walked.end = walk.end.value if walk.end is not None else "paused"
    walked.complete = walk.complete
    high = cursor.high_water
    if walk.complete and walked.high is not None and (high is None or walked.high > high):
        high = walked.high  # the store never moves the watermark back
    after = replace(
        cursor,
        high_water=high,
        last_walk_complete=walk.complete,
        last_full_walk_at=now if plan.full and walk.complete else cursor.last_full_walk_at,
        order_seen=walk.order.seen.value if walk.order.seen is not None else cursor.order_seen,
        page_size_seen=walk.page_size,
    )
    return walked, after


def _first_new_walk(provider: Provider) -> Walked:
    first = CursorState(high_water=None, scan_position=None, scan_high_water=None)
    return new_walk(provider, first, utcnow())[0]


def full_walks_a_day(cursor: CursorState) -> tuple[int, int]:
    """(passes, full walks) in the day after ``cursor``'s full walk, as ``plan_walk``
    plans them at every ``schedule.sync_seconds`` (no requests made)."""
    every = ScheduleSettings().sync_seconds
    sync = SyncSettings()
    passes = round(86_400 / every)
    assert cursor.last_full_walk_at is not None
    start = cursor.last_full_walk_at
    fulls = 0
    for i in range(1, passes + 1):
        now = start + timedelta(seconds=i * every)
        plan = plan_walk(
            cursor,
            STREAM,
            now=now,
            overlap=timedelta(seconds=sync.overlap_seconds),
            full_walk_every=timedelta(hours=sync.full_walk_hours),
            backfill_days=sync.backfill_days,
        )
        if plan.full:
            fulls += 1
            cursor = replace(cursor, last_full_walk_at=now)
    return passes, fulls


# --------------------------------------------------------------------------- simulators


def _sim(listing: Listing, plan: Plan, churn: Churn | None = None) -> Sim:
    """A history of ``plan.items`` finished items (20-25 failed), newest first."""
    knobs: dict[str, int] = {}
    if churn is not None:
        knobs = {
            "churn_requests": churn.requests,
            "churn_delete_per_request": churn.delete,
            "churn_insert_per_request": churn.insert,
        }
    if listing.kind == "tengrai":
        return tengrai.create(
            api_key=API_KEY,
            seed=SEED,
            count=plan.items,
            image_size=1_000,
            processing_count=0,
            failed_count=20,
            canceled_count=5,
            **knobs,
        )
    return geminigen.create(
        api_key=API_KEY,
        seed=SEED,
        count=plan.items,
        image_size=1_000,
        video_size=1_000,
        audio_size=1_000,
        thumbnail_size=500,
        processing_count=0,
        failed_count=20,
        **knobs,
    )


def _adapter(sim: Sim, listing: Listing) -> Provider:
    """The adapter as genvault builds it, on a client without retries (every request
    the walk asks for is one request at the simulator)."""
    provider: Provider
    if isinstance(sim, TengrAISimulator):
        t_opts = TengrAIOptions(**sim.account_options, page_limit=listing.page)
        provider = TengrAI(_api(sim, TengrAI.auth_headers(API_KEY, t_opts)), t_opts, "bench")
    else:
        g_opts = GeminiGenOptions(**sim.account_options, items_per_page=listing.page)
        provider = GeminiGen(_api(sim, GeminiGen.auth_headers(API_KEY, g_opts)), g_opts, "bench")
    return provider


def _api(sim: Sim, headers: dict[str, str]) -> ApiClient:
    settings = NetworkSettings(api_retries=0)
    policy = NetworkPolicy(allow_private=True)
    return ApiClient(
        http=build_client(settings, policy),
        base_url=sim.api_base,
        auth_headers=headers,
        settings=settings,
        policy=policy,
        account="bench",
    )


def _route(sim: Sim) -> str:
    if isinstance(sim, TengrAISimulator):
        return f"{sim.config.api_version}/artworks"
    return "histories"


@contextmanager
def _serving(
    listing: Listing, plan: Plan, churn: Churn | None = None
) -> Iterator[tuple[Sim, Provider]]:
    """A simulator serving on loopback and the adapter that reads it; both closed after."""
    sim = _sim(listing, plan, churn)
    sim.start()
    try:
        provider = _adapter(sim, listing)
        try:
            yield sim, provider
        finally:
            provider.api.http.close()
    finally:
        sim.stop()


class Counter:
    """Listing requests the simulator answered, per walk."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.route = _route(sim)
        self.mismatches: list[str] = []

    def count(self) -> int:
        return int(self.sim.stats.snapshot()["routes"].get(self.route, 0))

    def measure(self, what: str, run: Callable[[], Walked]) -> Walked:
        before = self.count()
        walked = run()
        walked.requests = self.count() - before
        if walked.requests != walked.own_count:
            self.mismatches.append(
                f"{what}: {walked.requests} at the simulator, {walked.own_count} counted"
            )
        return walked


def _insert(sim: Sim, n: int) -> list[str]:
    if isinstance(sim, TengrAISimulator):
        return sim.insert_artworks(n)
    return sim.insert_generations(n)


# --------------------------------------------------------------------------- measuring


@dataclass
class Step:
    """One incremental walk of each walker after ``new`` items appeared at the top."""

    new: int
    today: Walked
    ours: Walked
    missed_today: int
    """New items today's walk did not see."""
    missed_ours: int


@dataclass
class Churned:
    """One walker's first walk under churn, on a simulator of its own."""

    walked: Walked
    there: int
    """Items listed before the walk and never deleted: each walk must see them all."""
    missed: int
    deleted: int
    created: int


@dataclass
class Measured:
    listing: Listing
    items: int
    full_today: Walked
    full_ours: Walked
    missed_full_today: int
    missed_full_ours: int
    steps: list[Step]
    passes: int
    """Sync passes a day (``schedule.sync_seconds``)."""
    fulls: int
    """Of them, the full walks ``plan_walk`` planned."""
    churned: dict[str, tuple[Churned, Churned]]
    """Per churn scenario: (today's walk, the new walk)."""
    mismatches: list[str]

    def day_today(self, step: Step) -> int:
        return self.passes * step.today.requests

    def day_ours(self, step: Step) -> int:
        return (
            self.passes - self.fulls
        ) * step.ours.requests + self.fulls * self.full_ours.requests

    def budget(self, step: Step) -> float:
        """The target: 1.1 x today's incremental walks, plus one full walk a day (today's)."""
        return TARGET * self.day_today(step) + self.fulls * self.full_today.requests


def measure(listing: Listing, plan: Plan) -> Measured:
    """First walks, then the incremental walks, on one simulator; then the churn runs."""
    overlap = timedelta(seconds=SyncSettings().overlap_seconds)
    with _serving(listing, plan) as (sim, provider):
        counter = Counter(sim)
        live = set(sim.live_ids)
        full_today = counter.measure("today's first walk", partial(todays_walk, provider, None))
        box = [CursorState(high_water=None, scan_position=None, scan_high_water=None)]

        def ours() -> Walked:
            walked, box[0] = new_walk(provider, box[0], utcnow())
            return walked

        full_ours = counter.measure("the new first walk", ours)
        if not full_ours.full or not full_ours.complete:
            raise RuntimeError(f"the new first walk: full={full_ours.full}, end={full_ours.end}")
        passes, fulls = full_walks_a_day(box[0])
        watermark = full_today.high
        steps: list[Step] = []
        for n in NEW_ITEMS:
            fresh = set(_insert(sim, n))
            assert watermark is not None
            stop_before = watermark - overlap
            today = counter.measure(
                f"today's walk after +{n}", partial(todays_walk, provider, stop_before)
            )
            mine = counter.measure(f"the new walk after +{n}", ours)
            if mine.full:
                raise RuntimeError(f"plan_walk planned the walk after +{n} new as full")
            if today.high is not None and today.high > watermark:
                watermark = today.high
            steps.append(Step(n, today, mine, len(fresh - today.seen), len(fresh - mine.seen)))
        mismatches = counter.mismatches
    churned: dict[str, tuple[Churned, Churned]] = {}
    for name, churn in plan.churns.items():
        runs: list[Churned] = []
        for walker in ("today's", "the new"):
            with _serving(listing, plan, churn) as (sim, provider):
                counter = Counter(sim)
                before = set(sim.live_ids)
                if walker == "today's":
                    walked = counter.measure(
                        f"today's walk, {name} churn", partial(todays_walk, provider, None)
                    )
                else:
                    walked = counter.measure(
                        f"the new walk, {name} churn", partial(_first_new_walk, provider)
                    )
                there = before - sim.deleted_ids
                runs.append(
                    Churned(
                        walked,
                        there=len(there),
                        missed=len(there - walked.seen),
                        deleted=len(sim.deleted_ids),
                        created=len(set(sim.live_ids) - before),
                    )
                )
                mismatches += counter.mismatches
        churned[name] = (runs[0], runs[1])
    return Measured(
        listing=listing,
        items=len(live),
        full_today=full_today,
        full_ours=full_ours,
        missed_full_today=len(live - full_today.seen),
        missed_full_ours=len(live - full_ours.seen),
        steps=steps,
        passes=passes,
        fulls=fulls,
        churned=churned,
        mismatches=mismatches,
    )


def _per_1000(requests: int, items: int) -> float:
    return 1000 * requests / items


def report(result: Result, m: Measured) -> None:
    s = m.listing.key
    result.figure(f"{s}: history", m.items, "items")
    for who, w in (("today's", m.full_today), ("new", m.full_ours)):
        result.figure(f"{s}: first walk, {who}", w.requests, "requests")
        result.figure(
            f"{s}: first walk, {who}, per 1,000 items", _per_1000(w.requests, m.items), "requests"
        )
    for step in m.steps:
        for who, w in (("today's", step.today), ("new", step.ours)):
            result.figure(f"{s}: +{step.new:,} new, incremental, {who}", w.requests, "requests")
    for step in m.steps:
        result.figure(
            f"{s}: a day, +{step.new:,} a pass: today's",
            m.day_today(step),
            "requests",
        )
        result.figure(
            f"{s}: a day, +{step.new:,} a pass: new",
            m.day_ours(step),
            "requests",
        )
    for name, (today, ours) in m.churned.items():
        result.figure(f"{s}: {name} churn: today's walk", today.walked.requests, "requests")
        result.figure(f"{s}: {name} churn: new walk", ours.walked.requests, "requests")
        result.figure(f"{s}: {name} churn: new walk's re-reads", ours.walked.rereads, "requests")
        result.figure(f"{s}: {name} churn: missed by today's walk", today.missed, "items")
        result.figure(f"{s}: {name} churn: missed by the new walk", ours.missed, "items")

    result.ratio(f"{s}: first walk: new / today's", m.full_ours.requests / m.full_today.requests)
    for step in m.steps:
        result.ratio(
            f"{s}: incr. +{step.new:,} new: new / today's",
            step.ours.requests / step.today.requests,
            TARGET,
            at_most=True,
        )
    busy = next(step for step in m.steps if step.new == 50)
    result.ratio(f"{s}: a day: new / today's (+50 a pass)", m.day_ours(busy) / m.day_today(busy))
    result.ratio(
        f"{s}: a day: new / budget (worst case)",
        max(m.day_ours(step) / m.budget(step) for step in m.steps),
        1.0,
        at_most=True,
    )
    for name, (today, ours) in m.churned.items():
        result.ratio(
            f"{s}: {name} churn: new / today's requests",
            ours.walked.requests / today.walked.requests,
        )

    result.note(
        f"{s}: a day is {m.passes} passes: today's walk, {m.passes} incremental walks; the new "
        f"walk, {m.passes - m.fulls} incremental + {m.fulls} full (as plan_walk plans them)"
    )
    if m.missed_full_today or m.missed_full_ours:
        result.note(
            f"{s}: without churn the first walks missed items: today's "
            f"{m.missed_full_today}, new {m.missed_full_ours}"
        )
    for step in m.steps:
        if step.missed_today or step.missed_ours:
            result.note(
                f"{s}: +{step.new} new: missed by today's walk {step.missed_today}, "
                f"by the new walk {step.missed_ours}"
            )
    for name, (today, ours) in m.churned.items():
        result.note(
            f"{s}: {name} churn: today's walk missed {today.missed} of {today.there} "
            f"({today.deleted} deleted, {today.created} created while it paged); the new walk "
            f"missed {ours.missed} of {ours.there} ({ours.deleted} deleted, {ours.created} "
            f"created), ended '{ours.walked.end}' after {ours.walked.rereads} re-reads"
        )
    for text in m.mismatches:
        result.note(f"{s}: the simulator's count differs from the walker's: {text}")


def run(scale: Scale) -> Result:
    result = Result(NAME, TITLE, scale)
    plan = PLANS[scale]
    sync, schedule = SyncSettings(), ScheduleSettings()
    result.note(
        f"{plan.items:,} items a history; sync every {schedule.sync_seconds:g} s, full walk "
        f"every {sync.full_walk_hours:g} h, overlap {sync.overlap_seconds} s; budget = "
        f"{TARGET:g} x today's day + one full walk (at today's price)"
    )
    for name, churn in plan.churns.items():
        result.note(f"{name} churn: {churn.describe()}")
    for listing in LISTINGS:
        report(result, measure(listing, plan))
    return result
