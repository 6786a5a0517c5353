"""History sync: walk each history stream of an account and upsert what changed.

Where a walk starts, which page comes next, how it checks itself and when it
ends is :mod:`genvault.walk`'s business; this job saves what the walk reads and
records how each stream's walk ended.

Each stream is on its own: a rejected workflow, a 4xx on one listing, a
malformed page mark *that* stream failed (with its name and the reason) and the
other streams go on. Only what concerns the whole account stops the pass: a
refused key, an exhausted quota, an open circuit, a provider that stays down.

Crash safety: each page is saved in one transaction together with the cursor
position it reached (and the walk it belongs to), so an interrupted walk resumes
by re-reading the last saved page, as the same kind of walk. The watermark moves
only when a walk completes; a complete *full* walk also records what it listed
and marks the items the provider no longer lists as gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from threading import Event

from structlog.contextvars import bound_contextvars

from genvault.crashpoints import crash_point
from genvault.errors import (
    AuthError,
    CircuitOpenError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.formatting import iso
from genvault.jobs import health
from genvault.logs import get_logger
from genvault.metrics import JobName, JobOutcome
from genvault.records import Page
from genvault.runtime import AccountRuntime, Runtime
from genvault.store import CursorUpdate, WalkEnding, WalkMark
from genvault.walk import Walk, WalkEnd, next_walk, stamp, within_floor

log = get_logger("genvault.sync")


@dataclass
class StreamResult:
    """How one stream's walk went in this pass."""

    stream: str
    full: bool = False
    pages: int = 0
    items: int = 0
    rereads: int = 0
    """Pages read again to repair a shift in the listing."""
    end: WalkEnd | None = None
    """How the walk ended (None: it did not end in this pass)."""
    paused: str | None = None
    """Why a walk that did not end stopped: page_cap, stopped, rate_limited, circuit_open."""
    error: str | None = None
    account_wide: bool = False
    """The error concerns the whole account (a refused key): the other streams wait."""

    @property
    def complete(self) -> bool:
        return self.error is None and self.end is not None and self.end.complete

    @property
    def problem(self) -> str | None:
        """What the operator must hear about: an error, an incomplete end, a page cap."""
        if self.error is not None:
            return self.error
        if self.end is not None and not self.end.complete:
            return f"walk incomplete: {self.end.value}"
        if self.paused == "page_cap":
            return "walk paused at sync.max_pages_per_pass (resumes next pass)"
        return None


@dataclass
class SyncResult:
    account: str
    pages: int = 0
    items: int = 0
    new: int = 0
    changed: int = 0
    assets_new: int = 0
    item_errors: int = 0
    complete: bool = True
    """Every stream's walk ended complete in this pass."""
    rate_limited: bool = False
    circuit_open: bool = False
    """The provider's circuit breaker is open: the pass was skipped or cut short."""
    elsewhere: bool = False
    """Another replica holds this account's sync lock and is doing this very pass."""
    error: str | None = None
    """The first error of the pass (an account-wide one, or the first stream's)."""
    streams: list[StreamResult] = field(default_factory=list)

    @property
    def troubled_streams(self) -> list[StreamResult]:
        """Streams that failed, ended incomplete or hit the page cap in this pass."""
        return [s for s in self.streams if s.problem is not None]

    @property
    def outcome(self) -> JobOutcome:
        """Skipped when a replica did it; failed on an error, a troubled stream, bad items
        or an open circuit."""
        if self.elsewhere:
            return JobOutcome.SKIPPED
        if self.error or self.item_errors or self.circuit_open or self.troubled_streams:
            return JobOutcome.FAILED
        return JobOutcome.SUCCESS


PageCallback = Callable[[Page, SyncResult], None]


def sync_account(
    rt: Runtime,
    acc: AccountRuntime,
    *,
    full: bool = False,
    since: datetime | None = None,
    stop: Event | None = None,
    on_page: PageCallback | None = None,
) -> SyncResult:
    """One bounded pass over every history stream of ``acc``, unless a replica is at it.

    ``full`` (backfill) walks every stream to its end, or back to ``since``.
    Replicas on one PostgreSQL database take a per-account advisory lock
    (:meth:`Store.account_lock`), so one of them pages an account at a time and
    the others skip the pass rather than fetch the same pages again.

    Every line logged during the pass carries ``job=sync`` and ``account``, bound
    here once (:mod:`genvault.logs`).
    """
    with (
        bound_contextvars(job=JobName.SYNC.value, account=acc.name),
        rt.store.account_lock("sync", acc.name) as ours,
    ):
        if not ours:
            log.info("sync.skipped", reason="another_replica")
            return SyncResult(account=acc.name, complete=False, elsewhere=True)
        return _sync_account(rt, acc, full=full, since=since, stop=stop, on_page=on_page)


def _sync_account(
    rt: Runtime,
    acc: AccountRuntime,
    *,
    full: bool,
    since: datetime | None,
    stop: Event | None,
    on_page: PageCallback | None,
) -> SyncResult:
    result = SyncResult(account=acc.name)
    provider = acc.provider
    started = time.monotonic()
    retry_at = health.blocked_until(rt, acc)
    if retry_at is not None:
        # The provider is down (a previous pass or run opened its circuit): no request.
        result.circuit_open = True
        result.complete = False
        log.warning("sync.skipped", reason="circuit_open", retry_at=retry_at.isoformat())
        return result
    for stream in provider.streams():
        sr = StreamResult(stream)
        result.streams.append(sr)
        try:
            _sync_stream(rt, acc, sr, result, full=full, since=since, stop=stop, on_page=on_page)
        except Exception as exc:  # an adapter's bug costs this stream, not the others
            log.exception("sync.stream_crashed", stream=stream)
            sr.error = f"{type(exc).__name__}: {exc}"
            rt.store.sync_failed(provider.name, acc.name, stream, sr.error)
        if sr.error is not None:
            result.error = result.error or f"{stream}: {sr.error}"
        if not sr.complete:
            result.complete = False
        if result.rate_limited or result.circuit_open or sr.paused == "stopped":
            break  # the whole account is affected: the other streams wait too
        if sr.account_wide:
            break
    troubled = result.troubled_streams
    log.info(
        "job.sync",
        provider=provider.name,
        outcome=result.outcome.value,
        pages=result.pages,
        items=result.items,
        new=result.new,
        changed=result.changed,
        assets_new=result.assets_new,
        item_errors=result.item_errors,
        complete=result.complete,
        streams=len(result.streams),
        full=[s.stream for s in result.streams if s.full] or None,
        incomplete=[{"stream": s.stream, "problem": s.problem} for s in troubled] or None,
        rate_limited=result.rate_limited,
        circuit_open=result.circuit_open,
        error=result.error,
        seconds=round(time.monotonic() - started, 3),
    )
    health.persist(rt, acc)
    return result


def _sync_stream(
    rt: Runtime,
    acc: AccountRuntime,
    sr: StreamResult,
    result: SyncResult,
    *,
    full: bool,
    since: datetime | None,
    stop: Event | None,
    on_page: PageCallback | None,
) -> None:
    provider = acc.provider
    stream = sr.stream
    cursor = rt.store.get_cursor(acc.name, stream)
    walk = next_walk(
        provider,
        cursor,
        stream,
        rt.settings.sync,
        full=full,
        since=since,
        backfill_days=acc.settings.backfill_days,
    )
    plan = walk.plan
    sr.full = plan.full
    mark = WalkMark(full=plan.full, started_at=plan.started_at, floor=plan.floor)
    scan_high = cursor.scan_high_water if plan.resumed else None
    try:
        for step in walk:
            page = step.page
            stamps = [s for s in map(stamp, page.records) if s is not None]
            if stamps:
                scan_high = max([*stamps, scan_high] if scan_high else stamps)
            ending = _ending(walk, step.end) if step.end is not None else None
            crash_point("sync.page_fetched")
            saved = rt.store.save_page(
                provider=provider.name,
                account=acc.name,
                records=within_floor(page.records, plan.floor),
                cursor=CursorUpdate(stream, step.resume_at, scan_high, walk=mark, ended=ending),
                archive_roles=acc.archive_roles(rt.settings.archive),
                archive_kinds=acc.archive_kinds,
                retention=acc.retention,
                retention_source=acc.retention_source,
                poll_horizon=rt.poll_horizon,
            )
            crash_point("sync.page_saved")
            sr.pages += 1
            sr.items += len(page.records)
            sr.rereads += step.reread
            result.pages += 1
            result.items += len(page.records)
            result.new += saved.generations_new
            result.changed += saved.generations_changed
            result.assets_new += saved.assets_new
            result.item_errors += page.errors
            log.debug(
                "sync.page",
                stream=stream,
                position=page.position,
                items=len(page.records),
                new=saved.generations_new,
                changed=saved.generations_changed,
                reread=step.reread,
                end=step.end.value if step.end is not None else None,
            )
            if on_page is not None:
                on_page(page, result)
            if step.end is None and stop is not None and stop.is_set():
                sr.paused = "stopped"
                return
    except RateLimitedError as exc:
        # Quota exhausted: partial progress is fine, the cursor resumes here next run.
        result.rate_limited = True
        sr.paused = "rate_limited"
        rt.store.sync_failed(provider.name, acc.name, stream, f"rate limited: {exc}")
        log.info(
            "sync.rate_limited",
            stream=stream,
            position=walk.last_position,
            retry_after=exc.retry_after,
        )
        return
    except CircuitOpenError as exc:
        # Opened during this pass: stop asking; the cursor resumes here after the trial.
        result.circuit_open = True
        sr.paused = "circuit_open"
        log.warning(
            "sync.circuit_open",
            stream=stream,
            position=walk.last_position,
            retry_at=iso(exc.retry_at),
        )
        return
    except ProviderError as exc:
        sr.error = f"{type(exc).__name__}: {exc}"
        # A refused key, and a provider that stays down (timeouts, 5xx after retries),
        # concern every stream: the others wait for the next pass rather than each
        # time out in turn. A rejection, a 4xx or a malformed page is this stream's own.
        sr.account_wide = isinstance(exc, AuthError | TransientProviderError)
        rt.store.sync_failed(provider.name, acc.name, stream, sr.error)
        log.warning(
            "sync.page_failed",
            stream=stream,
            position=walk.last_position,
            error=sr.error,
        )
        return
    finally:
        sr.end = walk.end
    if walk.capped:
        sr.paused = "page_cap"
        log.warning(
            "sync.page_cap",
            stream=stream,
            pages=walk.requests,
            resume_at=walk.last_position,
        )
    elif walk.end is not None and not walk.end.complete:
        log.warning(
            "sync.walk_incomplete",
            stream=stream,
            reason=walk.end.value,
            detail=walk.end.explain(walk),
        )
    _note_order(acc, stream, walk, cursor.order_seen)


def _ending(walk: Walk, end: WalkEnd) -> WalkEnding:
    return WalkEnding(
        complete=end.complete,
        reason=None if end.complete else end.explain(walk),
        order_seen=walk.order.seen.value if walk.order.seen is not None else None,
        page_size_seen=walk.page_size,
    )


def _note_order(acc: AccountRuntime, stream: str, walk: Walk, before: str | None) -> None:
    """Say so when the listing's order is not the newest-first the walk assumes."""
    seen = walk.order.seen
    if seen is not None and seen.value != "newest_first" and seen.value != before:
        log.warning(
            "sync.order_unexpected",
            stream=stream,
            order=seen.value,
            consequence="walks never stop early: each reads the whole listing",
        )


__all__ = ["PageCallback", "StreamResult", "SyncResult", "sync_account"]
