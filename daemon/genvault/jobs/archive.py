"""Archive: stream every pending file from its URL into storage, earliest deadline first.

The main thread leases assets (a DB transaction), hands them to a bounded
thread pool, and records outcomes as downloads finish. Worker threads only do
network and storage I/O; every DB write happens on the main thread, after the
side effect it records, so a crash at any point leaves at worst a stored object
whose row still says pending: the rerun writes the same key again and then
records it. Leases carry an owner and an expiry, extended while long downloads
run; a killed worker's assets go back at once rather than when that expiry
passes: on SQLite the next process voids them at start (it is the only one on
the database), on PostgreSQL every pass holds this process's worker lock and,
at its start and every ``LEASE_HEARTBEAT_SECONDS``, frees the leases of workers
whose lock is gone (:meth:`genvault.store.Store.reap_dead_leases`), so a dead
replica's files are taken over within seconds.

Per file: GET (the SSRF guard vets every hop), refuse error pages and
oversized bodies, stream through a sha256/size counter into storage, check the
length against Content-Length. A 403/404/410 before the deadline re-reads the
generation from the provider once for a fresh URL; after the deadline, the
file is ``lost``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from threading import Event
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from genvault.crashpoints import crash_point
from genvault.errors import (
    DownloadError,
    GenvaultError,
    MediaGoneError,
    PermanentDownloadError,
    StorageError,
    TransientDownloadError,
    TransientProviderError,
)
from genvault.expiry import earliest
from genvault.identity import url_key
from genvault.logging import get_logger
from genvault.metrics import JobOutcome
from genvault.models import utcnow
from genvault.net.media import MediaStream, open_media
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.storage.guard import STORAGE_HEALTH_KEY, STORAGE_HEALTH_PROVIDER
from genvault.storage.keys import build_key, extension_for, sidecar_key
from genvault.store import LeasedAsset, LeaseOrder, Outcome

log = get_logger("genvault.archive")

RETRY_CAP = timedelta(hours=1)
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

    @property
    def retrying(self) -> int:
        return len(self.retrying_ids)

    @property
    def outcome(self) -> JobOutcome:
        """Success unless a file failed, was lost or waits for a retry, or storage is
        down (exit code 3/4)."""
        if self.failed or self.lost or self.retrying or self.storage_down:
            return JobOutcome.FAILED
        return JobOutcome.SUCCESS


ProgressCallback = Callable[[Outcome, LeasedAsset], None]


class _Aborted(TransientDownloadError):
    """Shutdown grace ran out mid-download; the asset goes back to the queue."""


class _AbortableReader:
    """Passes reads through, raising once ``abort`` is set (shutdown past its grace)."""

    def __init__(self, stream: MediaStream, abort: Event) -> None:
        self._stream = stream
        self._abort = abort

    def read(self, n: int = -1) -> bytes:
        if self._abort.is_set():
            raise _Aborted("shutdown: download abandoned, will resume next run")
        crash_point("archive.download_read")
        return self._stream.read(n)

    def readable(self) -> bool:
        return True


def _retry_at(rt: Runtime, asset: LeasedAsset, now: datetime) -> datetime:
    base = rt.settings.archive.retry_base_seconds
    delay = timedelta(seconds=base * (2 ** min(asset.attempts, 12)))
    return now + min(delay, RETRY_CAP)


@dataclass(frozen=True, slots=True)
class Deferred(Outcome):
    """A file handed back untried because of storage, not of itself: recorded by
    :meth:`~genvault.store.leases.LeaseQueue.defer`, so its attempts stay as they were."""


def archive_one(rt: Runtime, asset: LeasedAsset, abort: Event) -> Outcome:
    """Download one asset into storage and say what happened; never raises.

    Any exception is this file's failure, logged with its traceback and retried
    with backoff: it must not end the pass, whose other files' outcomes (their
    bytes already stored) are still to be recorded. That includes an exception
    raised while handling another one (a URL refresh that meets a provider answer
    no parser foresaw), which an ``except`` clause of the same ``try`` cannot catch.
    """
    try:
        return _archive_one(rt, asset, abort)
    except Exception as exc:
        try:
            log.exception(
                "asset.unexpected_error", asset_id=asset.id, external_id=asset.external_id
            )
        except Exception:  # the traceback itself may be what cannot be rendered
            log.error("asset.unexpected_error", asset_id=asset.id, error=type(exc).__name__)
        now = utcnow()
        error = TransientDownloadError(f"internal error: {_describe(exc)}")
        return _failure(rt, asset, error, now, asset.expires_at <= now)


def _describe(exc: BaseException) -> str:
    """``repr`` of an exception, short (the message of a nesting error can be huge)."""
    try:
        text = repr(exc)
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _archive_one(rt: Runtime, asset: LeasedAsset, abort: Event) -> Outcome:
    started = time.monotonic()
    now = utcnow()
    expired = asset.expires_at <= now
    guard = rt.storage_guard
    if guard.is_open():
        # Storage went down after this file was leased: no download for nothing.
        return _storage_deferred(rt, asset, now, guard.last_error() or "storage unavailable")
    try:
        with open_media(
            rt.media_http,
            asset.source_url,
            policy=rt.policy_for(asset.account),
            limits=rt.download_limits,
            on_status=partial(rt.metrics.media_response, asset.account),
        ) as stream:
            ext = extension_for(asset.source_url, stream.content_type, asset.kind)
            key = build_key(
                rt.settings.storage.key_template,
                provider=asset.provider,
                account=asset.account,
                external_id=asset.external_id,
                created=asset.generation_created_at,
                position=asset.position,
                role=asset.role,
                ext=ext,
                kind=asset.kind,
                asset_id=asset.id,
            )
            write_error: StorageError | None = None
            try:
                stored = rt.storage.put(
                    key,
                    _AbortableReader(stream, abort),  # type: ignore[arg-type]
                    size_hint=stream.content_length,
                    content_type=stream.content_type,
                    metadata={
                        "provider": asset.provider,
                        "account": asset.account,
                        "external-id": asset.external_id[:512],
                        "role": asset.role,
                        "source-url": asset.source_url[:1024],
                    },
                )
            except StorageError as exc:
                write_error = exc
        if write_error is not None:  # judged with the download closed: the probe may take s
            return _storage_failure(rt, asset, write_error, now, expired, started)
        guard.stored(asset.id)
        log.info(
            "asset.archived",
            provider=asset.provider,
            account=asset.account,
            external_id=asset.external_id,
            asset_id=asset.id,
            role=asset.role,
            bytes=stored.size,
            key=stored.key,
            seconds=round(time.monotonic() - started, 3),
        )
        return Outcome(
            asset.id,
            AssetState.ARCHIVED,
            size=stored.size,
            sha256=stored.sha256,
            content_type=stream.content_type,
            storage_key=stored.key,
        )
    except MediaGoneError as exc:
        gone = exc
    except (DownloadError, StorageError) as exc:
        return _failure(rt, asset, exc, now, expired, started=started)
    # Outside the except clause: what the refresh raises is archive_one's to contain.
    if not asset.url_refreshed:
        # Even past a signed URL's own expiry: a re-signed URL may still serve the file.
        return _refresh(rt, asset, gone, now, started)
    return _failure(rt, asset, gone, now, expired, gone=True, started=started)


def _storage_failure(
    rt: Runtime,
    asset: LeasedAsset,
    exc: StorageError,
    now: datetime,
    expired: bool,
    started: float,
) -> Outcome:
    """A write failed: storage is down (the breaker opens) or refused this file.

    Neither uses up the file's attempts while its deadline is ahead. Past the
    deadline the file was on its last chance, and it is lost, saying why.
    """
    rt.metrics.storage_failed()
    outage = rt.storage_guard.confirm_outage(time.monotonic())
    if expired:
        reason = "storage unavailable" if outage else "storage refused the write"
        error = StorageError(f"{reason}: {exc}")
        return _failure(rt, asset, error, now, expired=True, started=started)
    if outage:
        return _storage_deferred(rt, asset, now, str(exc))
    strikes = rt.storage_guard.strike(asset.id)
    base = rt.settings.archive.retry_base_seconds
    retry_at = now + min(timedelta(seconds=base * (2 ** min(strikes - 1, 12))), RETRY_CAP)
    log.warning(
        "asset.storage_refused",
        account=asset.account,
        external_id=asset.external_id,
        asset_id=asset.id,
        error=str(exc),
        strikes=strikes,
        retry_at=retry_at.isoformat(),
    )
    return Deferred(asset.id, AssetState.PENDING, error=f"StorageError: {exc}", retry_at=retry_at)


def _storage_deferred(rt: Runtime, asset: LeasedAsset, now: datetime, why: str) -> Deferred:
    """Storage is down: the file goes back, due when the breaker next probes."""
    retry_at = max(rt.storage_guard.retry_at() or now, now)
    log.warning(
        "asset.storage_deferred",
        account=asset.account,
        external_id=asset.external_id,
        asset_id=asset.id,
        error=why,
        retry_at=retry_at.isoformat(),
    )
    return Deferred(
        asset.id,
        AssetState.PENDING,
        error=f"StorageError: storage unavailable, archiving paused: {why}",
        retry_at=retry_at,
    )


def _refresh(
    rt: Runtime, asset: LeasedAsset, exc: MediaGoneError, now: datetime, started: float
) -> Outcome:
    """Ask the provider for the generation again, once: signed URLs get re-signed.

    A new URL comes with its own deadline (a re-signed link lives longer). If the
    provider has nothing new and the deadline has passed, the file is lost.
    """
    acc = rt.accounts.get(asset.account)
    new_url = asset.source_url
    new_deadline: datetime | None = None
    if acc is not None:
        try:
            record = acc.provider.fetch(asset.external_id)
            wanted = url_key(asset.source_url)
            for m in record.media:
                if url_key(m.url) == wanted:
                    new_url = m.url
                    rule = record.expires_at
                    if rule is None and record.created_at is not None:
                        with contextlib.suppress(OverflowError):  # created_at near year 9999
                            rule = record.created_at + acc.retention
                    new_deadline = earliest(rule, m.url_expires_at)
                    break
        except TransientProviderError as perr:
            # The provider is busy or down (or its circuit is open): this was no answer,
            # so the one refresh is not spent; the download is retried with backoff.
            log.warning("asset.refresh_failed", asset_id=asset.id, error=str(perr))
            if asset.expires_at > now:
                error = TransientDownloadError(f"{exc}; {perr}")
                return _failure(rt, asset, error, now, False, started=started)
        except GenvaultError as perr:
            log.warning("asset.refresh_failed", asset_id=asset.id, error=str(perr))
    changed = new_url != asset.source_url
    log.info(
        "asset.url_refreshed",
        asset_id=asset.id,
        external_id=asset.external_id,
        changed=changed,
        error=str(exc),
    )
    if not changed and asset.expires_at <= now:
        return _failure(rt, asset, exc, now, expired=True, gone=True, started=started)
    return Outcome(
        asset.id,
        AssetState.PENDING,
        error=f"{exc} (URL refreshed)",
        retry_at=now,
        new_url=new_url,
        new_expires_at=new_deadline if changed else None,
    )


def _failure(
    rt: Runtime,
    asset: LeasedAsset,
    exc: Exception,
    now: datetime,
    expired: bool,
    *,
    gone: bool = False,
    started: float | None = None,
) -> Outcome:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _Aborted):
        return Outcome(asset.id, AssetState.PENDING, error=reason, retry_at=now)
    if expired:
        log.error(
            "asset.lost",
            provider=asset.provider,
            account=asset.account,
            external_id=asset.external_id,
            asset_id=asset.id,
            role=asset.role,
            bytes=asset.expected_size,
            seconds=round(time.monotonic() - started, 3) if started is not None else None,
            url_deadline=asset.expires_at.isoformat(),
            error=reason,
        )
        return Outcome(asset.id, AssetState.LOST, error=f"deadline passed: {reason}")
    permanent = isinstance(exc, PermanentDownloadError)
    exhausted = asset.attempts + 1 >= rt.settings.archive.max_attempts
    if permanent or exhausted:
        log.error(
            "asset.failed",
            provider=asset.provider,
            account=asset.account,
            external_id=asset.external_id,
            asset_id=asset.id,
            error=reason,
            attempts=asset.attempts + 1,
        )
        return Outcome(asset.id, AssetState.FAILED, error=reason)
    retry_at = _retry_at(rt, asset, now)
    log.warning(
        "asset.retry",
        account=asset.account,
        external_id=asset.external_id,
        asset_id=asset.id,
        error=reason,
        retry_at=retry_at.isoformat(),
        gone=gone,
    )
    return Outcome(asset.id, AssetState.PENDING, error=reason, retry_at=retry_at)


def archive_pending(
    rt: Runtime,
    *,
    stop: Event | None = None,
    accounts: Iterable[str] | None = None,
    on_outcome: ProgressCallback | None = None,
    max_assets: int | None = None,
    wait_while: Callable[[], bool] | None = None,
    order: LeaseOrder = LeaseOrder.DEADLINE,
) -> ArchiveResult:
    """Archive until nothing leasable is left (or ``stop`` is set); returns counts.

    ``wait_while``: when nothing is leasable but it answers True (another replica is
    still syncing an account, so more files are coming), look again shortly
    instead of returning. ``run --once`` replicas use it to share one backlog.

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
    if not rt.roles_enqueued:
        rt.apply_archive_choices()
        rt.roles_enqueued = True
    result = ArchiveResult()
    started = time.monotonic()
    owner = rt.worker_id
    window = cfg.concurrency * 2
    in_flight: dict[Future[Outcome], LeasedAsset] = {}
    exhausted = False
    paused = False
    """The storage breaker is open: no more leases in this pass."""
    leased_total = 0
    last_extend = time.monotonic()
    account_list = list(accounts) if accounts is not None else None
    grace_timer: threading.Timer | None = None
    shared = not rt.store.is_sqlite
    if shared:  # before the first lease: this worker's lock, then dead workers' files
        _lease_heartbeat(rt, owner, [])
    last_heartbeat = time.monotonic()
    with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="archive") as pool:
        try:
            while True:
                if shared and time.monotonic() - last_heartbeat >= LEASE_HEARTBEAT_SECONDS:
                    if _lease_heartbeat(rt, owner, [a.id for a in in_flight.values()]):
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
                want = window - len(in_flight)
                if not exhausted and not paused and not stop.is_set() and want > 0:
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
                        continue
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
                    for asset in batch:
                        in_flight[pool.submit(archive_one, rt, asset, abort)] = asset
                if not in_flight:
                    if paused or wait_while is None or stop.is_set() or not wait_while():
                        break
                    stop.wait(WAIT_FOR_PEERS_SECONDS)
                    exhausted = False
                    continue
                done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                outcomes = _collect(rt, done, in_flight, result, on_outcome)
                _record(rt, owner, outcomes)
                crash_point("archive.after_commit")
                if any(
                    o.state is AssetState.PENDING and o.retry_at and o.retry_at <= utcnow()
                    for o in outcomes
                ):
                    exhausted = False  # a refreshed URL is due at once: lease it again
                if rt.storage_guard.unsaved() is not None:
                    _persist_storage_health(rt)

                if time.monotonic() - last_extend > cfg.lease_seconds / 3:
                    rt.store.leases.extend(
                        owner, [a.id for a in in_flight.values()], cfg.lease_seconds
                    )
                    last_extend = time.monotonic()
        except Exception:
            # A failure of the pass itself (the database, a bug here): the files in
            # flight still finish; record what they did before giving up, if we can.
            _record_remaining(rt, owner, in_flight, result, on_outcome)
            raise
        finally:
            abort.set() if stop.is_set() else None
            if grace_timer is not None:
                grace_timer.cancel()
            if stop.is_set():
                rt.store.leases.release(owner)
    result.storage_down = rt.storage_guard.is_open()
    _persist_storage_health(rt)
    if not result.storage_down:
        result.sidecars = write_sidecars(rt, accounts=account_list)
    result.seconds = time.monotonic() - started
    # One line per run, idle or not (the heartbeat of the archive job).
    log.info(
        "job.archive",
        outcome=result.outcome.value,
        leased=leased_total,
        archived=result.archived,
        bytes=result.bytes,
        retrying=result.retrying,
        failed=result.failed,
        lost=result.lost,
        sidecars=result.sidecars,
        storage=rt.storage_guard.state.value,
        seconds=round(result.seconds, 3),
    )
    return result


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _collect(
    rt: Runtime,
    done: Iterable[Future[Outcome]],
    in_flight: dict[Future[Outcome], LeasedAsset],
    result: ArchiveResult,
    on_outcome: ProgressCallback | None,
) -> list[Outcome]:
    """The outcomes of finished downloads, counted; one per file whatever happened."""
    outcomes = []
    for fut in done:
        asset = in_flight.pop(fut)
        try:
            outcome = fut.result()
        except Exception as exc:  # archive_one contains its errors; a bug there must not
            log.error(  # cost the outcomes of the others (their bytes are stored)
                "asset.unexpected_error", asset_id=asset.id, error=_describe(exc)
            )
            now = utcnow()
            error = TransientDownloadError(f"internal error: {_describe(exc)}")
            outcome = _failure(rt, asset, error, now, asset.expires_at <= now)
        outcomes.append(outcome)
        crash_point("archive.before_commit")
        _count(result, outcome)
        rt.metrics.file_finished(asset.account, outcome.state, outcome.size)
        if on_outcome is not None:
            try:
                on_outcome(outcome, asset)
            except Exception:  # a progress display's problem is not the file's
                log.exception("archive.progress_failed", asset_id=asset.id)
    return outcomes


def _record(rt: Runtime, owner: str, outcomes: list[Outcome]) -> None:
    """Write outcomes: files deferred for storage keep their attempts, the rest count one."""
    rt.store.leases.finish(owner, [o for o in outcomes if not isinstance(o, Deferred)])
    rt.store.leases.defer(owner, [o for o in outcomes if isinstance(o, Deferred)])


def _record_remaining(
    rt: Runtime,
    owner: str,
    in_flight: dict[Future[Outcome], LeasedAsset],
    result: ArchiveResult,
    on_outcome: ProgressCallback | None,
) -> None:
    """Best effort, while the pass fails: wait for the downloads in flight (the pool's
    exit would wait for them anyway) and record what they did."""
    files = len(in_flight)
    try:
        done, _ = wait(list(in_flight))
        _record(rt, owner, _collect(rt, done, in_flight, result, on_outcome))
    except Exception as exc:
        log.error("archive.outcomes_unrecorded", files=files, error=_describe(exc))


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


# --------------------------------------------------------------------------- sidecars


def sidecar_document(gen: dict[str, Any], storage_location: Callable[[str], str]) -> dict[str, Any]:
    """The ``generation.json`` content: normalized fields, files, and the raw payload."""

    def iso(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    return {
        "genvault_sidecar": 1,
        "provider": gen["provider"],
        "account": gen["account"],
        "external_id": gen["external_id"],
        "status": gen["status"],
        "provider_status": gen["provider_status"],
        "kind": gen["kind"],
        "model": gen["model"],
        "prompt": gen["prompt"],
        "error": gen["error"],
        "created_at": iso(gen["created_at"]),
        "completed_at": iso(gen["completed_at"]),
        "expires_at": iso(gen["expires_at"]),
        "files": [
            {
                "position": a["position"],
                "role": a["role"],
                "kind": a["kind"],
                "state": a["state"],
                "source_url": a["source_url"],
                "key": a["storage_key"],
                "location": storage_location(a["storage_key"]) if a["storage_key"] else None,
                "size": a["size"],
                "sha256": a["sha256"],
                "content_type": a["content_type"],
                "archived_at": iso(a["archived_at"]),
                "error": a["last_error"],
            }
            for a in gen["assets"]
        ],
        "raw": gen["raw"],
    }


def write_sidecars(rt: Runtime, *, accounts: Iterable[str] | None = None, limit: int = 500) -> int:
    """(Re)write ``generation.json`` for generations whose files are all settled.

    The PUTs run ``archive.concurrency`` at a time (one by one they were a large
    share of a run against a real S3, 20-50 ms each); each batch's flags are
    cleared in one transaction, after its objects were written.
    """
    written = 0
    account_list = list(accounts) if accounts is not None else None
    with ThreadPoolExecutor(rt.settings.archive.concurrency, thread_name_prefix="sidecar") as pool:
        while True:
            due = rt.store.sidecars_due(limit, accounts=account_list)
            if not due:
                return written
            done = [
                (gen["id"], gen["updated_at"])
                for gen, ok in zip(due, pool.map(partial(_put_sidecar, rt), due), strict=True)
                if ok
            ]
            rt.store.sidecars_written(done)
            written += len(done)
            if len(done) < len(due) or len(due) < limit:
                return written  # a storage error: the rest waits for the next pass


def _put_sidecar(rt: Runtime, gen: dict[str, Any]) -> bool:
    """Write one generation's sidecar; False (logged) when storage refused it."""
    key = sidecar_key(
        rt.settings.storage.key_template,
        provider=gen["provider"],
        account=gen["account"],
        external_id=gen["external_id"],
        created=gen["created_at"],
        position=0,
        role="result",
        ext="json",
    )
    doc = sidecar_document(gen, rt.storage.location)
    crash_point("archive.sidecar_before_put")
    try:
        rt.storage.put_bytes(
            key,
            json.dumps(doc, indent=2, sort_keys=False, default=str).encode(),
            content_type="application/json",
            metadata={"provider": gen["provider"], "external-id": gen["external_id"][:512]},
        )
    except StorageError as exc:
        log.warning("sidecar.failed", external_id=gen["external_id"], error=str(exc))
        return False
    crash_point("archive.sidecar_after_put")
    return True
