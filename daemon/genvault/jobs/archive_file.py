"""Archive one file: the work of one archive worker thread, from GET to stored object.

Per file: GET (the SSRF guard vets every hop), refuse error pages and
oversized bodies, stream through a sha256/size counter into storage, check the
length against Content-Length. A 403/404/410 before the deadline re-reads the
generation from the provider once for a fresh URL; after the deadline, the
file is ``lost``.

A worker never writes to the database: it returns an :class:`Outcome`, which the
pass (:mod:`genvault.jobs.archive`) records on the main thread after the bytes are
durable. Its log lines carry the file's provider, account, external id and asset
id from structlog's context (:func:`asset_context`, bound per thread), so every line
of one file, the download's own included, says which file it is about.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from threading import Event

from structlog.contextvars import bound_contextvars

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
from genvault.expiry import file_deadline
from genvault.identity import url_key
from genvault.logs import get_logger
from genvault.models import utcnow
from genvault.net.media import MediaStream, open_media
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.storage.keys import build_key, extension_for
from genvault.store import LeasedAsset, Outcome

log = get_logger("genvault.archive")

RETRY_CAP = timedelta(hours=1)


def asset_context(asset: LeasedAsset) -> AbstractContextManager[None]:
    """Bind the file's identity to this thread's log context (the keys every asset line had)."""
    return bound_contextvars(
        provider=asset.provider,
        account=asset.account,
        external_id=asset.external_id,
        asset_id=asset.id,
    )


class Aborted(TransientDownloadError):
    """Shutdown grace ran out mid-download; the asset goes back to the queue."""


class _AbortableReader:
    """Passes reads through, raising once ``abort`` is set (shutdown past its grace)."""

    def __init__(self, stream: MediaStream, abort: Event) -> None:
        self._stream = stream
        self._abort = abort

    def read(self, n: int = -1) -> bytes:
        self._check()
        return self._stream.read(n)

    def read1(self, n: int = -1) -> bytes:
        """One received chunk at most (a folder writes each as it comes)."""
        self._check()
        return self._stream.read1(n)

    def readinto1(self, buffer: memoryview) -> int:
        """Into the writer's buffer (a folder's, straight from the socket when it can)."""
        self._check()
        return self._stream.readinto1(buffer)

    def _check(self) -> None:
        if self._abort.is_set():
            raise Aborted("shutdown: download abandoned, will resume next run")
        crash_point("archive.download_read")

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


def archive_one(rt: Runtime, asset: LeasedAsset, abort: Event, *, durable: bool = True) -> Outcome:
    """Download one asset into storage and say what happened; never raises.

    Any exception is this file's failure, logged with its traceback and retried
    with backoff: it must not end the pass, whose other files' outcomes (their
    bytes already stored) are still to be recorded. That includes an exception
    raised while handling another one (a URL refresh that meets a provider answer
    no parser foresaw), which an ``except`` clause of the same ``try`` cannot catch.

    ``durable=False``: the stored file may wait in the page cache (a folder) or its
    PutObject may still be running (S3, a file within one part); the caller must
    ``rt.storage.sync`` its key before recording it (the pass does, per batch).
    """
    with asset_context(asset):
        try:
            return _archive_one(rt, asset, abort, durable)
        except Exception as exc:
            try:
                log.exception("asset.unexpected_error")
            except Exception:  # the traceback itself may be what cannot be rendered
                log.error("asset.unexpected_error", error=type(exc).__name__)
            return internal_error(rt, asset, exc)


def internal_error(rt: Runtime, asset: LeasedAsset, exc: BaseException) -> Outcome:
    """A bug met while archiving ``asset``: a transient failure of that file alone."""
    now = utcnow()
    error = TransientDownloadError(f"internal error: {describe(exc)}")
    return failure(rt, asset, error, now, asset.expires_at <= now)


def describe(exc: BaseException) -> str:
    """``repr`` of an exception, short (the message of a nesting error can be huge)."""
    try:
        text = repr(exc)
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _archive_one(rt: Runtime, asset: LeasedAsset, abort: Event, durable: bool) -> Outcome:
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
                    durable=durable,
                )
            except StorageError as exc:
                write_error = exc
        if write_error is not None:  # judged with the download closed: the probe may take s
            return storage_failure(rt, asset, write_error, now, expired, started)
        if durable:  # else the pass forgets its strikes once the flush succeeded
            guard.stored(asset.id)
        log.info(
            "asset.archived",
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
        return failure(rt, asset, exc, now, expired, started=started)
    # Outside the except clause: what the refresh raises is archive_one's to contain.
    if not asset.url_refreshed:
        # Even past a signed URL's own expiry: a re-signed URL may still serve the file.
        return _refresh(rt, asset, gone, now, started)
    return failure(rt, asset, gone, now, expired, gone=True, started=started)


def storage_failure(
    rt: Runtime,
    asset: LeasedAsset,
    exc: StorageError,
    now: datetime,
    expired: bool,
    started: float,
    failed_at: float | None = None,
) -> Outcome:
    """A write (or its flush to disk) failed: storage is down (the breaker opens) or
    refused this file.

    ``failed_at`` (monotonic; now when None): when the failure was seen. The files of
    one failed flush pass the same time, so one probe sent after it judges them all.

    Neither uses up the file's attempts while its deadline is ahead. Past the
    deadline the file was on its last chance, and it is lost, saying why.
    """
    rt.metrics.storage_failed()
    outage = rt.storage_guard.confirm_outage(time.monotonic() if failed_at is None else failed_at)
    if expired:
        reason = "storage unavailable" if outage else "storage refused the write"
        error = StorageError(f"{reason}: {exc}")
        return failure(rt, asset, error, now, expired=True, started=started)
    if outage:
        return _storage_deferred(rt, asset, now, str(exc))
    strikes = rt.storage_guard.strike(asset.id)
    base = rt.settings.archive.retry_base_seconds
    retry_at = now + min(timedelta(seconds=base * (2 ** min(strikes - 1, 12))), RETRY_CAP)
    log.warning(
        "asset.storage_refused",
        error=str(exc),
        strikes=strikes,
        retry_at=retry_at.isoformat(),
    )
    return Deferred(asset.id, AssetState.PENDING, error=f"StorageError: {exc}", retry_at=retry_at)


def _storage_deferred(rt: Runtime, asset: LeasedAsset, now: datetime, why: str) -> Deferred:
    """Storage is down: the file goes back, due when the breaker next probes."""
    retry_at = max(rt.storage_guard.retry_at() or now, now)
    log.warning("asset.storage_deferred", error=why, retry_at=retry_at.isoformat())
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
    new_source: str | None = None
    if acc is not None:
        try:
            record = acc.provider.fetch(asset.external_id)
            if record.created_at is None:
                record = replace(record, created_at=asset.generation_created_at)
            wanted = url_key(asset.source_url)
            for m in record.media:
                if url_key(m.url) == wanted:
                    new_url = m.url
                    with contextlib.suppress(OverflowError):  # created_at near year 9999
                        new_deadline, new_source = file_deadline(
                            record, m, acc.retention, acc.retention_source
                        )
                    break
        except TransientProviderError as perr:
            # The provider is busy or down (or its circuit is open): this was no answer,
            # so the one refresh is not spent; the download is retried with backoff.
            log.warning("asset.refresh_failed", error=str(perr))
            if asset.expires_at > now:
                error = TransientDownloadError(f"{exc}; {perr}")
                return failure(rt, asset, error, now, False, started=started)
        except GenvaultError as perr:
            log.warning("asset.refresh_failed", error=str(perr))
    changed = new_url != asset.source_url
    log.info("asset.url_refreshed", changed=changed, error=str(exc))
    if not changed and asset.expires_at <= now:
        return failure(rt, asset, exc, now, expired=True, gone=True, started=started)
    return Outcome(
        asset.id,
        AssetState.PENDING,
        error=f"{exc} (URL refreshed)",
        retry_at=now,
        new_url=new_url,
        new_expires_at=new_deadline if changed else None,
        new_expires_source=new_source if changed and new_deadline is not None else None,
    )


def failure(
    rt: Runtime,
    asset: LeasedAsset,
    exc: Exception,
    now: datetime,
    expired: bool,
    *,
    gone: bool = False,
    started: float | None = None,
) -> Outcome:
    """What a failed attempt becomes: lost past the deadline, failed when permanent or out
    of attempts, else a retry with backoff (logged; call inside :func:`asset_context`)."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Aborted):
        return Outcome(asset.id, AssetState.PENDING, error=reason, retry_at=now)
    if expired:
        log.error(
            "asset.lost",
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
        log.error("asset.failed", error=reason, attempts=asset.attempts + 1)
        return Outcome(asset.id, AssetState.FAILED, error=reason)
    retry_at = _retry_at(rt, asset, now)
    log.warning("asset.retry", error=reason, retry_at=retry_at.isoformat(), gone=gone)
    return Outcome(asset.id, AssetState.PENDING, error=reason, retry_at=retry_at)
