"""Status poller: follow generations that are due for a status/detail read.

A generation is due when ``next_poll_at`` has passed: it is queued or running,
it was registered by id (``track``, intake, webhook), or its listing entry is
known to be incomplete (GeminiGen videos). Each read either settles it
(terminal: no further polls) or schedules the next one on the backoff ladder
``poll.backoff_seconds``; past ``poll.give_up_hours`` the task is marked failed
with the reason.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Event

from structlog.contextvars import bound_contextvars

from genvault.crashpoints import crash_point
from genvault.errors import (
    AuthError,
    BusinessError,
    CircuitOpenError,
    NotFoundError,
    PermanentProviderError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.jobs import health
from genvault.logs import get_logger
from genvault.metrics import JobName, JobOutcome
from genvault.models import utcnow
from genvault.records import GenerationStatus
from genvault.runtime import AccountRuntime, Runtime

log = get_logger("genvault.poll")


@dataclass
class PollResult:
    account: str
    polled: int = 0
    succeeded: int = 0
    failed: int = 0
    still_running: int = 0
    gave_up: int = 0
    errors: int = 0
    assets_new: int = 0
    rate_limited: bool = False
    circuit_open: bool = False
    """The provider's circuit breaker is open: the pass was skipped or cut short."""
    elsewhere: bool = False
    """Another replica holds this account's poll lock and is doing this very pass."""
    error: str | None = None

    @property
    def outcome(self) -> JobOutcome:
        """Skipped when a replica did it; failed on item errors or an open circuit."""
        if self.elsewhere:
            return JobOutcome.SKIPPED
        if self.errors or self.circuit_open:
            return JobOutcome.FAILED
        return JobOutcome.SUCCESS


def next_delay(attempts: int, ladder: tuple[float, ...]) -> timedelta:
    """The wait before poll number ``attempts + 1`` (the ladder's last step repeats)."""
    return timedelta(seconds=ladder[min(attempts, len(ladder) - 1)])


def poll_account(
    rt: Runtime,
    acc: AccountRuntime,
    *,
    stop: Event | None = None,
    now: datetime | None = None,
    wait_for_peer: float = 0.0,
) -> PollResult:
    """Read every due generation of ``acc`` once, unless another replica is at it.

    ``wait_for_peer``: how long to wait for a replica's poll pass of this account to
    end before polling anyway-due items here, instead of skipping at once (``run
    --once``: a peer's pass that began before this replica's sync saved new items may
    end without them, and nobody would poll them in this run).

    Every line logged during the pass carries ``job=poll`` and ``account``, bound
    here once (:mod:`genvault.logs`).
    """
    with (
        bound_contextvars(job=JobName.POLL.value, account=acc.name),
        rt.store.account_lock("poll", acc.name, wait=wait_for_peer) as ours,
    ):
        if not ours:
            log.info("poll.skipped", reason="another_replica")
            return PollResult(account=acc.name, elsewhere=True)
        return _poll_account(rt, acc, stop=stop, now=now)


def _poll_account(
    rt: Runtime, acc: AccountRuntime, *, stop: Event | None, now: datetime | None
) -> PollResult:
    result = PollResult(account=acc.name)
    started = time.monotonic()
    ladder = rt.settings.poll.backoff_seconds
    provider = acc.provider
    retry_at = health.blocked_until(rt, acc)
    if retry_at is not None:
        # The provider is down: leave every item due, ask again after the cooldown.
        result.circuit_open = True
        log.info("poll.skipped", reason="circuit_open", retry_at=retry_at.isoformat())
        return result
    while True:
        now_ = now or utcnow()
        due = rt.store.due_for_poll(acc.name, now_, rt.settings.poll.batch_size)
        if not due:
            break
        for item in due:
            if stop is not None and stop.is_set():
                break
            attempts = item.poll_attempts + 1
            past_horizon = item.poll_until is not None and now_ >= item.poll_until
            result.polled += 1
            try:
                record = provider.fetch(item.external_id)
            except (RateLimitedError, AuthError, CircuitOpenError) as exc:
                # The whole account is affected: stop here, keep the item due. A rate
                # limit is partial progress, not an error; a refused key is an error; an
                # open circuit (the provider is down) is neither the item's fault nor done.
                if isinstance(exc, RateLimitedError):
                    result.rate_limited = True
                elif isinstance(exc, CircuitOpenError):
                    result.circuit_open = True
                else:
                    result.errors += 1
                result.error = f"{type(exc).__name__}: {exc}"
                rt.store.poll_error(
                    item.id,
                    error=str(exc),
                    next_poll_at=now_ + next_delay(0, ladder),
                    poll_attempts=item.poll_attempts,
                    give_up=False,
                )
                # A refused key needs a person; a rate limit or an open circuit is the
                # provider's state, already in this pass's job.poll line (and the
                # throttle logged the change once): no warning every 15 s.
                if isinstance(exc, AuthError):
                    log.warning("poll.account_paused", error=result.error)
                else:
                    log.debug("poll.account_paused", error=result.error)
                _log_done(result, provider.name, started)
                health.persist(rt, acc)
                return result
            except (TransientProviderError, PermanentProviderError) as exc:
                result.errors += 1
                if item.status == GenerationStatus.SUCCEEDED:
                    # Only a detail read of a finished item failed: keep what the listing gave,
                    # and stop asking once the detail is gone or keeps failing.
                    settle = isinstance(exc, NotFoundError) or attempts >= 2 * len(ladder)
                    rt.store.poll_error(
                        item.id,
                        error=f"detail read failed: {exc}",
                        next_poll_at=None if settle else now_ + next_delay(attempts, ladder),
                        poll_attempts=attempts,
                        give_up=False,
                    )
                    log.warning(
                        "poll.detail_failed",
                        external_id=item.external_id,
                        error=f"{type(exc).__name__}: {exc}",
                        settled=settle,
                    )
                    continue
                # Not found, or a business error about this task (Akool 1108 "image generate
                # error"): asking again cannot help. Malformed bodies may be a flaky proxy.
                permanent = isinstance(exc, NotFoundError | BusinessError)
                give_up = past_horizon or permanent
                reason = f"{type(exc).__name__}: {exc}"
                if give_up:
                    result.gave_up += 1
                    if isinstance(exc, NotFoundError):
                        prefix = "not found at the provider: "
                    elif permanent:
                        prefix = "the provider reported an error for this task: "
                    else:
                        prefix = f"gave up after {rt.settings.poll.give_up_hours:g} h: "
                    reason = prefix + reason
                rt.store.poll_error(
                    item.id,
                    error=reason,
                    next_poll_at=now_ + next_delay(attempts, ladder),
                    poll_attempts=attempts,
                    give_up=give_up,
                )
                log.warning(
                    "poll.failed",
                    external_id=item.external_id,
                    error=reason,
                    gave_up=give_up,
                )
                continue
            # Keep our id: some APIs answer with another spelling (QuickRouter drops the prefix).
            record = dataclasses.replace(record, external_id=item.external_id)
            next_at: datetime | None = None
            if not record.status.terminal:
                if past_horizon:
                    result.gave_up += 1
                    rt.store.poll_error(
                        item.id,
                        error=f"gave up after {rt.settings.poll.give_up_hours:g} h: still "
                        f"{record.status.value} ({record.provider_status})",
                        next_poll_at=None,
                        poll_attempts=attempts,
                        give_up=True,
                    )
                    continue
                next_at = now_ + next_delay(attempts, ladder)
                result.still_running += 1
            elif record.status is GenerationStatus.SUCCEEDED:
                result.succeeded += 1
            else:
                result.failed += 1
            crash_point("poll.fetched")
            saved = rt.store.save_polled(
                provider=provider.name,
                account=acc.name,
                record=record,
                next_poll_at=next_at,
                poll_attempts=attempts,
                archive_roles=acc.archive_roles(rt.settings.archive),
                archive_kinds=acc.archive_kinds,
                retention=acc.retention,
                retention_source=acc.retention_source,
                poll_horizon=rt.poll_horizon,
            )
            result.assets_new += saved.assets_new
        if stop is not None and stop.is_set():
            break
        if len(due) < rt.settings.poll.batch_size:
            break
    _log_done(result, provider.name, started)
    health.persist(rt, acc)
    return result


def _log_done(result: PollResult, provider: str, started: float) -> None:
    """The one line of a pass that ran, idle or not (the poll job's heartbeat)."""
    log.info(
        "job.poll",
        provider=provider,
        outcome=result.outcome.value,
        polled=result.polled,
        succeeded=result.succeeded,
        failed=result.failed,
        still_running=result.still_running,
        gave_up=result.gave_up,
        errors=result.errors,
        assets_new=result.assets_new,
        rate_limited=result.rate_limited,
        circuit_open=result.circuit_open,
        error=result.error,
        seconds=round(time.monotonic() - started, 3),
    )
