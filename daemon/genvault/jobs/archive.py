"""Archive pass: lease pending files, earliest deadline first, and record what became of them.

The pass's own thread (the "main thread" below: the caller's, or ``run --once``'s
``archive-pass`` thread beside its syncs and polls) leases assets (a DB
transaction), hands them to a bounded thread pool
(:func:`genvault.jobs.archive_file.archive_one` per file), and records outcomes as
downloads finish. Worker threads only do network and storage I/O;
every DB write happens on the main thread, after the side effect it records, so a
crash at any point leaves at worst a stored object whose row still says pending:
the rerun writes the same key again and then records it. Leases carry an owner
and an expiry, extended while long downloads run; a killed worker's assets go back
at once rather than when that expiry passes: on SQLite the next process voids them
at start (it is the only one on the database), on PostgreSQL every pass holds this
process's worker lock and, at its start and every ``LEASE_HEARTBEAT_SECONDS``,
frees the leases of workers whose lock is gone
(:meth:`genvault.store.Store.reap_dead_leases`), so a dead replica's files are
taken over within seconds.

**Batches.** Workers store files without flushing them (``durable=False``); each
time the main thread wakes up it takes the finished files (one per slot at most:
``batch_limit``), leases more for the free slots, flushes the batch to disk with
one ``Storage.sync`` and only then commits its outcomes in one transaction. A
folder archive thus pays one ``syncfs`` per batch instead of two fsyncs per file,
with the same rule: nothing is recorded before it is durable. On S3 a small file's
PUT runs on the storage's uploader threads while its worker downloads the next file,
and the flush waits for those PUTs (a failed one makes only its file a storage
failure). The workers keep downloading meanwhile: the refill comes before the
flush. (At most one file per slot a commit: the profile that chose it is
``bench/PROFILE.md`` §8.)
**Sidecars** are written as the pass goes (:class:`genvault.jobs.sidecars.PassSidecars`):
the generations whose last file a batch recorded get theirs at the next wake-up, one
round of PUTs stored before that wake-up's flush and flushed with its media, their
flags cleared after it; never while the storage breaker is open. What is left is
written after the loop (:func:`genvault.jobs.sidecars.write_sidecars`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from threading import Event

from sqlalchemy.exc import SQLAlchemyError

from genvault.crashpoints import crash_point
from genvault.errors import StorageError, SyncError
from genvault.jobs.archive_file import (
    Deferred,
    archive_one,
    asset_context,
    describe,
    internal_error,
    storage_failure,
)
from genvault.jobs.sidecars import PassSidecars, sidecar_document, write_sidecars
from genvault.logs import get_logger
from genvault.metrics import JobOutcome
from genvault.models import utcnow
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.storage.guard import STORAGE_HEALTH_KEY, STORAGE_HEALTH_PROVIDER
from genvault.store import LeasedAsset, LeaseOrder, Outcome

__all__ = [
    "ArchiveResult",
    "Deferred",
    "ProgressCallback",
    "archive_one",
    "archive_pending",
    "sidecar_document",
    "write_sidecars",
]

log = get_logger("genvault.archive")

WAIT_FOR_PEERS_SECONDS = 0.5
"""How often an idle ``run --once`` looks again while a peer replica is still syncing."""
LEASE_HEARTBEAT_SECONDS = 2.0
"""PostgreSQL: how often a pass checks its worker lock and reaps dead workers' leases."""


@dataclass
class ArchiveResult:
    archived: int = 0
    bytes: int = 0
    failed: int = 0
    lost: int = 0
    sidecars: int = 0
    seconds: float = 0.0
    lost_ids: list[int] = field(default_factory=list)
    retrying_ids: set[int] = field(default_factory=set)
    """Assets whose last outcome in this pass was "try again" (a refreshed URL that
    then succeeded within the pass is not among them)."""
    storage_down: bool = False
    """The storage breaker was open when the pass ended: it stopped leasing files
    (or never started), and they wait for storage to answer again."""
    backing_off: int = 0
    """Pending files of the pass's accounts whose next attempt is still ahead when the
    pass ends: an attempt failed (in this pass or an earlier one) and they wait for a
    retry. A pass that leaves them is not a success, even if it tried nothing."""

    @property
    def retrying(self) -> int:
        return len(self.retrying_ids)

    @property
    def outcome(self) -> JobOutcome:
        """Success unless a file failed, was lost or waits for a retry, or storage is
        down (exit code 3/4)."""
        if self.failed or self.lost or self.retrying or self.backing_off or self.storage_down:
            return JobOutcome.FAILED
        return JobOutcome.SUCCESS


ProgressCallback = Callable[[Outcome, LeasedAsset], None]


def archive_pending(
    rt: Runtime,
    *,
    stop: Event | None = None,
    accounts: Iterable[str] | None = None,
    on_outcome: ProgressCallback | None = None,
    max_assets: int | None = None,
    wait_while: Callable[[], bool] | None = None,
    wake: Event | None = None,
    order: LeaseOrder = LeaseOrder.DEADLINE,
) -> ArchiveResult:
    """Archive until nothing leasable is left (or ``stop`` is set); returns counts.

    ``wait_while``: when nothing is leasable but it answers True (another replica is
    still syncing an account, so more files are coming), look again shortly
    instead of returning. ``run --once`` replicas use it to share one backlog, and
    ``run --once`` to archive while its own syncs still save pages. ``wake``: set by
    the caller when more may be leasable (a page saved, the syncs ended), so the pass
    looks again at once rather than after ``WAIT_FOR_PEERS_SECONDS``.

    ``order``: which files are leased first. Production always uses the default,
    earliest deadline first; ``LeaseOrder.FIFO`` is there for the deadlines
    benchmark to compare against, on the same inputs.

    Storage: before every lease the storage breaker is asked
    (:meth:`~genvault.storage.guard.StorageGuard.ready`; a probe at this process's
    first pass, and while open once per ``PROBE_SECONDS``). While it is open nothing
    is leased, the files in flight finish (or come back untried), and the pass ends
    with ``storage_down``; the next pass finds out whether storage is back.
    """
    stop = stop or Event()
    abort = Event()
    cfg = rt.settings.archive
    if not rt.choices_applied:
        rt.apply_archive_choices()
        rt.choices_applied = True
    result = ArchiveResult()
    started = time.monotonic()
    owner = rt.worker_id
    window = cfg.concurrency * 2
    batch_limit = cfg.concurrency
    """Most outcomes per commit: one per slot. The main thread is the pipeline's narrow
    part (each wake-up: sidecars, one flush, one commit, one lease); at half that, a
    profile of the local benchmark found it busy the whole pass and the workers idle
    for want of leases (``bench/PROFILE.md`` §8). A kill still loses little finished
    work, and the crash tests' kills after the n-th commit still find files in flight."""
    in_flight: dict[Future[Outcome], LeasedAsset] = {}
    finished: list[tuple[LeasedAsset, Outcome]] = []
    """Done but not yet flushed and recorded (the batch of one wake-up)."""
    exhausted = False
    paused = False
    """The storage breaker is open: no more leases in this pass."""
    leased_total = 0
    peers_done_looked = False
    """``wait_while`` said no after the queue ran dry, and the queue was looked at again."""
    dry_at = 0.0
    """When a lease last came back empty."""
    last_extend = time.monotonic()
    account_list = list(accounts) if accounts is not None else None
    grace_timer: threading.Timer | None = None
    sidecars = PassSidecars(rt, account_list)
    shared = not rt.store.is_sqlite
    if shared:  # before the first lease: this worker's lock, then dead workers' files
        _lease_heartbeat(rt, owner, [])
    last_heartbeat = time.monotonic()

    def held() -> list[int]:
        return [a.id for a in in_flight.values()] + [a.id for a, _ in finished]

    def top_up(pool: ThreadPoolExecutor) -> None:
        """Lease files for the free slots of the window and hand them to the pool."""
        nonlocal exhausted, paused, leased_total, dry_at
        want = window - len(in_flight)
        if exhausted or paused or stop.is_set() or want <= 0:
            return
        if not rt.storage_guard.ready():
            paused = True  # storage is down: download nothing for nothing
            _persist_storage_health(rt)
            log.warning(
                "archive.paused",
                reason="storage unavailable",
                storage=rt.storage.url,
                error=rt.storage_guard.last_error(),
                next_probe=_iso(rt.storage_guard.retry_at()),
                in_flight=len(in_flight),
            )
            return
        if max_assets is not None:
            want = min(want, max_assets - leased_total)
        batch = (
            rt.store.leases.acquire(
                owner,
                limit=min(want, cfg.batch_size),
                lease_seconds=cfg.lease_seconds,
                accounts=account_list,
                order=order,
            )
            if want > 0
            else []
        )
        leased_total += len(batch)
        if not batch:
            exhausted = True
            dry_at = time.monotonic()
        for asset in batch:
            in_flight[pool.submit(archive_one, rt, asset, abort, durable=False)] = asset

    try:
        with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="archive") as pool:
            try:
                while True:
                    if shared and time.monotonic() - last_heartbeat >= LEASE_HEARTBEAT_SECONDS:
                        if _lease_heartbeat(rt, owner, held()):
                            exhausted = False  # a dead worker's files are leasable now
                        last_heartbeat = time.monotonic()
                    if stop.is_set() and grace_timer is None:
                        grace_timer = threading.Timer(
                            rt.settings.schedule.shutdown_grace_seconds, abort.set
                        )
                        grace_timer.daemon = True
                        grace_timer.start()
                        for fut in [f for f in in_flight if f.cancel()]:
                            in_flight.pop(fut)
                    if (
                        exhausted
                        and wait_while is not None
                        and not peers_done_looked
                        and (
                            (wake is not None and wake.is_set())
                            or time.monotonic() - dry_at >= WAIT_FOR_PEERS_SECONDS
                        )
                    ):
                        exhausted = False  # a sync may have saved files since: fill free slots
                        if wake is not None:
                            wake.clear()  # before the look: a later page sets it again
                    top_up(pool)
                    if not in_flight:
                        if paused or wait_while is None or stop.is_set():
                            break
                        if wait_while():
                            if wake is None:
                                stop.wait(WAIT_FOR_PEERS_SECONDS)
                            else:
                                wake.wait(WAIT_FOR_PEERS_SECONDS)
                                wake.clear()  # before the look, as above
                            exhausted = False
                            peers_done_looked = False
                            continue
                        if not peers_done_looked:
                            # The peers finished after the last lease came back empty:
                            # what they saved just before is leasable now; one more look.
                            peers_done_looked = True
                            exhausted = False
                            continue
                        break
                    done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                    finished = _take(rt, done, in_flight, batch_limit)
                    if finished:
                        top_up(pool)  # the workers go on while this batch is flushed
                    # Sidecars of generations settled by earlier batches (their media
                    # durable and recorded), flushed with this batch's media.
                    also = [] if stop.is_set() or rt.storage_guard.is_open() else sidecars.put_due()
                    outcomes, flushed = _settle(rt, finished, result, on_outcome, also)
                    touched = [
                        asset.generation_id
                        for (asset, _), o in zip(finished, outcomes, strict=True)
                        if o.state is not AssetState.PENDING
                    ]
                    finished = []
                    # Before the outcomes' commit: a claim (PostgreSQL) is let go before
                    # that transaction locks generations.
                    result.sidecars += sidecars.flushed(flushed)
                    _record(rt, owner, outcomes)
                    crash_point("archive.after_commit")
                    sidecars.settled(touched)
                    if any(
                        o.state is AssetState.PENDING and o.retry_at and o.retry_at <= utcnow()
                        for o in outcomes
                    ):
                        exhausted = False  # a refreshed URL is due at once: lease it again
                    if rt.storage_guard.unsaved() is not None:
                        _persist_storage_health(rt)

                    if time.monotonic() - last_extend > cfg.lease_seconds / 3:
                        rt.store.leases.extend(owner, held(), cfg.lease_seconds)
                        last_extend = time.monotonic()
            except Exception:
                # A failure of the pass itself (the database, a bug here): the files in
                # flight still finish; record what they did before giving up, if we can.
                _record_remaining(rt, owner, in_flight, finished, result, on_outcome)
                raise
            finally:
                abort.set() if stop.is_set() else None
                if grace_timer is not None:
                    grace_timer.cancel()
                if stop.is_set():
                    rt.store.leases.release(owner)
    finally:
        sidecars.close()
        _flush_leftovers(rt)
    result.storage_down = rt.storage_guard.is_open()
    _persist_storage_health(rt)
    waiting = rt.store.waiting_files(
        list(rt.accounts) if account_list is None else account_list, backing_off=True
    )
    result.backing_off = sum(waiting.values())
    if not result.storage_down:
        result.sidecars += write_sidecars(rt, accounts=account_list)
    result.seconds = time.monotonic() - started
    # One line per run, idle or not (the heartbeat of the archive job).
    log.info(
        "job.archive",
        outcome=result.outcome.value,
        leased=leased_total,
        archived=result.archived,
        bytes=result.bytes,
        retrying=result.retrying,
        backing_off=result.backing_off,
        failed=result.failed,
        lost=result.lost,
        sidecars=result.sidecars,
        storage=rt.storage_guard.state.value,
        seconds=round(result.seconds, 3),
    )
    return result


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _take(
    rt: Runtime,
    done: Iterable[Future[Outcome]],
    in_flight: dict[Future[Outcome], LeasedAsset],
    limit: int | None = None,
) -> list[tuple[LeasedAsset, Outcome]]:
    """The outcomes of finished downloads, in the order they were leased, at most
    ``limit`` of them (the others stay in flight, taken next time); one per file
    whatever happened."""
    taken = []
    done = set(done)
    for fut in [f for f in in_flight if f in done][:limit]:
        asset = in_flight.pop(fut)
        try:
            outcome = fut.result()
        except Exception as exc:  # archive_one contains its errors; a bug there must not
            with asset_context(asset):  # cost the outcomes of the others (bytes stored)
                log.error("asset.unexpected_error", error=describe(exc))
                outcome = internal_error(rt, asset, exc)
        taken.append((asset, outcome))
    return taken


def _settle(
    rt: Runtime,
    finished: list[tuple[LeasedAsset, Outcome]],
    result: ArchiveResult,
    on_outcome: ProgressCallback | None,
    also: list[str] | None = None,
) -> tuple[list[Outcome], bool]:
    """Flush a batch's stored files (and ``also``: sidecars stored meanwhile) to disk,
    then count its outcomes; (the ones to record, whether the flush succeeded).

    The flush comes before anything says the files are archived (on S3 it waits for
    the deferred PUTs: a file is recorded only after S3 stored it): if it fails, every
    file of the batch is a storage failure (retried, its attempts kept), whatever
    part of it did reach the disk; a :class:`SyncError` (S3) names the keys that
    failed, and only their files are. One probe judges them all (``failed_at``).
    """
    keys = [o.storage_key for _, o in finished if o.state is AssetState.ARCHIVED and o.storage_key]
    ok = True
    try:
        rt.storage.sync(keys + (also or []))
    except StorageError as exc:
        failed = exc.keys if isinstance(exc, SyncError) else None
        ok = failed is not None and not failed.intersection(also or [])
        log.error(
            "archive.flush_failed",
            files=len(keys) + len(also or []) if failed is None else len(failed),
            error=str(exc),
        )
        now = utcnow()
        failed_at = time.monotonic()
        unflushed = []
        for asset, o in finished:
            if o.state is AssetState.ARCHIVED and (failed is None or o.storage_key in failed):
                with asset_context(asset):
                    o = storage_failure(
                        rt, asset, exc, now, asset.expires_at <= now, time.monotonic(), failed_at
                    )
            unflushed.append((asset, o))
        finished = unflushed
    for asset, o in finished:
        if o.state is AssetState.ARCHIVED:
            rt.storage_guard.stored(asset.id)  # durable now: its strikes are forgotten
    outcomes = []
    for asset, outcome in finished:
        outcomes.append(outcome)
        crash_point("archive.before_commit")
        _count(result, outcome)
        rt.metrics.file_finished(asset.account, outcome.state, outcome.size)
        if on_outcome is not None:
            try:
                on_outcome(outcome, asset)
            except Exception:  # a progress display's problem is not the file's
                log.exception("archive.progress_failed", asset_id=asset.id)
    return outcomes, ok


def _record(rt: Runtime, owner: str, outcomes: list[Outcome]) -> None:
    """Write outcomes: files deferred for storage keep their attempts, the rest count one."""
    rt.store.leases.finish(owner, [o for o in outcomes if not isinstance(o, Deferred)])
    rt.store.leases.defer(owner, [o for o in outcomes if isinstance(o, Deferred)])


def _record_remaining(
    rt: Runtime,
    owner: str,
    in_flight: dict[Future[Outcome], LeasedAsset],
    finished: list[tuple[LeasedAsset, Outcome]],
    result: ArchiveResult,
    on_outcome: ProgressCallback | None,
) -> None:
    """Best effort, while the pass fails: wait for the downloads in flight (the pool's
    exit would wait for them anyway) and record what they and the unrecorded did."""
    files = len(in_flight) + len(finished)
    try:
        done, _ = wait(list(in_flight))
        finished = finished + _take(rt, done, in_flight)
        _record(rt, owner, _settle(rt, finished, result, on_outcome)[0])
    except Exception as exc:
        log.error("archive.outcomes_unrecorded", files=files, error=describe(exc))


def _flush_leftovers(rt: Runtime) -> None:
    """Flush (and let go of) files stored but never recorded: a pass that failed, a
    worker that stored a file and then met a bug. Their rows say pending; best effort."""
    try:
        rt.storage.sync()
    except StorageError as exc:
        log.warning("archive.flush_failed", error=str(exc))


def _persist_storage_health(rt: Runtime) -> None:
    """Write the storage breaker's state for ``status`` and the other replicas' metrics,
    if it changed (best effort, like :mod:`genvault.jobs.health`)."""
    guard = rt.storage_guard
    snap = guard.unsaved()
    if snap is None:
        return
    try:
        rt.store.save_provider_health(STORAGE_HEALTH_KEY, STORAGE_HEALTH_PROVIDER, snap)
    except SQLAlchemyError as exc:
        log.warning("storage.health_persist_failed", error=str(exc)[:300])
        return
    guard.mark_saved(snap)


def _lease_heartbeat(rt: Runtime, owner: str, holding: list[int]) -> int:
    """PostgreSQL: keep this worker's lock, then free dead workers' leases; returns how many.

    If the lock had to be taken again (its connection was lost, so a reaper may have
    freed this worker's leases meanwhile), the files in ``holding`` are leased back
    where still free and any other lease of this worker is given up.
    """
    if rt.store.hold_worker_lock(owner):
        if holding:
            kept = rt.store.reclaim_leases(owner, holding, rt.settings.archive.lease_seconds)
            log.warning(
                "lease.worker_lock_retaken", worker=owner, in_flight=len(holding), kept=kept
            )
        else:
            rt.store.reclaim_leases(owner, (), rt.settings.archive.lease_seconds)
    return rt.store.reap_dead_leases()


def _count(result: ArchiveResult, o: Outcome) -> None:
    if o.state is AssetState.PENDING:
        result.retrying_ids.add(o.asset_id)
        return
    result.retrying_ids.discard(o.asset_id)
    if o.state is AssetState.ARCHIVED:
        result.archived += 1
        result.bytes += o.size or 0
    elif o.state is AssetState.FAILED:
        result.failed += 1
    elif o.state is AssetState.LOST:
        result.lost += 1
        result.lost_ids.append(o.asset_id)
