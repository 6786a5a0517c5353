"""History sync: page through an account's listing and upsert what changed.

A walk starts at the newest page. On the first walk (no watermark) it goes to
the end of the listing, or back ``sync.backfill_days``. Later walks stop at the
first page whose items are all terminal and older than the watermark minus
``sync.overlap_seconds``: items change status and pages drift while we read.

Crash safety: each page is saved in one transaction together with the cursor
position it reached, so an interrupted walk resumes by re-reading the last
saved page (one page of overlap, so items that drifted down are not skipped),
and the watermark moves only when a walk completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Event

from genvault.crashpoints import crash_point
from genvault.errors import CircuitOpenError, ProviderError, RateLimitedError
from genvault.jobs import health
from genvault.logging import get_logger
from genvault.metrics import JobOutcome
from genvault.models import utcnow
from genvault.records import GenerationRecord, Page
from genvault.runtime import AccountRuntime, Runtime
from genvault.store import CursorUpdate

log = get_logger("genvault.sync")


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
    rate_limited: bool = False
    circuit_open: bool = False
    """The provider's circuit breaker is open: the pass was skipped or cut short."""
    elsewhere: bool = False
    """Another replica holds this account's sync lock and is doing this very pass."""
    error: str | None = None

    @property
    def outcome(self) -> JobOutcome:
        """Skipped when a replica did it; failed on an error, bad items or an open circuit."""
        if self.elsewhere:
            return JobOutcome.SKIPPED
        if self.error or self.item_errors or self.circuit_open:
            return JobOutcome.FAILED
        return JobOutcome.SUCCESS


PageCallback = Callable[[Page, SyncResult], None]


def _stamp(r: GenerationRecord) -> datetime | None:
    return r.updated_at or r.created_at


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

    Replicas on one PostgreSQL database take a per-account advisory lock
    (:meth:`Store.account_lock`), so one of them pages an account at a time and
    the others skip the pass rather than fetch the same pages again.
    """
    with rt.store.account_lock("sync", acc.name) as ours:
        if not ours:
            log.info("sync.skipped", account=acc.name, reason="another_replica")
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
        log.warning(
            "sync.skipped", account=acc.name, reason="circuit_open", retry_at=retry_at.isoformat()
        )
        return result
    for stream in provider.streams():
        _sync_stream(rt, acc, stream, result, full=full, since=since, stop=stop, on_page=on_page)
        if result.error or result.rate_limited or result.circuit_open:
            break
    log.info(
        "job.sync",
        account=acc.name,
        provider=provider.name,
        outcome=result.outcome.value,
        pages=result.pages,
        items=result.items,
        new=result.new,
        changed=result.changed,
        assets_new=result.assets_new,
        item_errors=result.item_errors,
        complete=result.complete,
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
    stream: str,
    result: SyncResult,
    *,
    full: bool,
    since: datetime | None,
    stop: Event | None,
    on_page: PageCallback | None,
) -> None:
    provider = acc.provider
    cursor = rt.store.get_cursor(acc.name, stream)
    overlap = timedelta(seconds=rt.settings.sync.overlap_seconds)
    if since is None and rt.settings.sync.backfill_days and cursor.high_water is None:
        since = utcnow() - timedelta(days=rt.settings.sync.backfill_days)
    stop_before = None if full or cursor.high_water is None else cursor.high_water - overlap
    position = (
        cursor.scan_position
        if cursor.scan_position is not None
        else provider.first_position(stream)
    )
    scan_high = cursor.scan_high_water
    while True:
        if stop is not None and stop.is_set():
            result.complete = False
            return
        try:
            page = provider.fetch_page(stream, position)
        except RateLimitedError as exc:
            # Quota exhausted: partial progress is fine, the cursor resumes here next run.
            result.rate_limited = True
            result.complete = False
            rt.store.sync_failed(provider.name, acc.name, stream, f"rate limited: {exc}")
            log.info(
                "sync.rate_limited",
                account=acc.name,
                stream=stream,
                position=position,
                retry_after=exc.retry_after,
            )
            return
        except CircuitOpenError as exc:
            # Opened during this pass: stop asking; the cursor resumes here after the trial.
            result.circuit_open = True
            result.complete = False
            log.warning(
                "sync.circuit_open",
                account=acc.name,
                stream=stream,
                position=position,
                retry_at=exc.retry_at.isoformat() if exc.retry_at else None,
            )
            return
        except ProviderError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.complete = False
            rt.store.sync_failed(provider.name, acc.name, stream, result.error)
            log.warning(
                "sync.page_failed",
                account=acc.name,
                stream=stream,
                position=position,
                error=result.error,
            )
            return
        stamps = [s for s in map(_stamp, page.records) if s is not None]
        if stamps:
            scan_high = max([*stamps, scan_high] if scan_high else stamps)
        done = page.next_position is None
        if not done and page.records:
            old_enough = all(
                r.status.terminal
                and (s := _stamp(r)) is not None
                and stop_before is not None
                and s < stop_before
                for r in page.records
            )
            beyond_since = since is not None and all(
                r.created_at is not None and r.created_at < since for r in page.records
            )
            done = old_enough or beyond_since
        crash_point("sync.page_fetched")
        saved = rt.store.save_page(
            provider=provider.name,
            account=acc.name,
            records=page.records,
            cursor=CursorUpdate(stream, None if done else position, scan_high, complete=done),
            archive_roles=rt.archive_roles,
            retention=acc.retention,
            poll_horizon=rt.poll_horizon,
        )
        crash_point("sync.page_saved")
        result.pages += 1
        result.items += len(page.records)
        result.new += saved.generations_new
        result.changed += saved.generations_changed
        result.assets_new += saved.assets_new
        result.item_errors += page.errors
        log.debug(
            "sync.page",
            account=acc.name,
            stream=stream,
            position=position,
            items=len(page.records),
            new=saved.generations_new,
            changed=saved.generations_changed,
            done=done,
        )
        if on_page is not None:
            on_page(page, result)
        if done:
            return
        assert page.next_position is not None
        position = page.next_position
