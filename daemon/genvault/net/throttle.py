"""Per-account protection of a provider API: a request budget and a circuit breaker.

:class:`~genvault.net.api.ApiClient` holds one :class:`ProviderGuard` per account and
asks it before every call and every HTTP attempt. Two mechanisms, because a
provider has two ways of saying "not now":

* **429 (rate limit)** - the provider is up but wants fewer requests.
  :class:`RequestBudget` paces requests AIMD-style: no pause at first; each 429
  pushes a minimum interval between requests to ``max(Retry-After, 2 x interval,
  floor)`` (at most ``budget_max_interval_seconds``); each run of
  ``budget_recover_after`` successes halves it, and below the floor it is gone.
  A Retry-After longer than the client is willing to wait (``backoff_cap_seconds``)
  means "quota exhausted": the budget refuses calls until then without a request,
  so a daemon polling every 15 s does not knock on a closed door.
* **5xx storms, resets, timeouts** - the provider is down. :class:`CircuitBreaker`
  counts consecutive calls that still failed transiently after their retries;
  at ``breaker_failures`` it opens and calls fail at once with
  :class:`~genvault.errors.CircuitOpenError`. After ``breaker_cooldown_seconds``
  one trial call is let through (half-open); its answer closes or re-opens it.
  A 4xx, a business error or a 429 is an *answer*: the provider is up, so those
  reset the count instead of adding to it.

State is in memory and thread-safe (archive workers refresh URLs through the same
client), and :meth:`ProviderGuard.snapshot` / :meth:`ProviderGuard.restore` move
it to and from the ``provider_health`` table, so a CronJob run that starts while
the circuit is open skips the provider, and ``genvault status`` can show it.

Every clock is injectable (monotonic for waiting, wall for what is stored), so
unit tests drive both with a fake clock.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from genvault.config import NetworkSettings
from genvault.errors import CircuitOpenError
from genvault.formatting import iso

log = structlog.get_logger("genvault.throttle")

Clock = Callable[[], float]
"""Monotonic seconds: all waiting and cooldowns are measured on it."""
WallClock = Callable[[], datetime]
"""UTC now: only for the times that are stored and shown."""
Sleep = Callable[[float], None]

BUDGET_FLOOR_SECONDS = 1.0
"""The interval a 429 without a (longer) Retry-After imposes at least."""
MAX_PAUSE_SECONDS = 3600.0
"""The longest a Retry-After can silence an account: a skewed clock or a typo'd
HTTP-date must not stop archiving for days while files expire."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    """Calls go through."""
    OPEN = "open"
    """Calls are refused until the cooldown ends."""
    HALF_OPEN = "half_open"
    """The cooldown ended: one trial call is (or may be) in flight."""


class CallOutcome(enum.Enum):
    """How one API call (all its retries) ended, as far as the provider's health goes."""

    OK = "ok"
    """2xx with a usable body."""
    ANSWERED = "answered"
    """A deliberate answer that is not a success (4xx, business error, odd body):
    the provider is up, it just said no."""
    RATE_LIMITED = "rate_limited"
    """429: up, but asking for fewer requests (the budget's business, not the breaker's)."""
    DOWN = "down"
    """Still failing transiently after the retries: 5xx, timeouts, resets, slow drips."""
    NO_VERDICT = "no_verdict"
    """No request reached the provider (refused locally, interrupted): says nothing."""

    @property
    def provider_up(self) -> bool:
        return self in (CallOutcome.OK, CallOutcome.ANSWERED, CallOutcome.RATE_LIMITED)


class Admission(enum.Enum):
    """Why :meth:`CircuitBreaker.admit` let a call through."""

    NORMAL = "normal"
    """The circuit is closed."""
    TRIAL = "trial"
    """The circuit is half-open and this is its one probe: no retries, please."""


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """An account's guard state in wall-clock terms: what ``provider_health`` stores."""

    circuit: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    retry_at: datetime | None = None
    """When an open circuit lets its next trial call through."""
    last_error: str | None = None
    """The last failure that counted against the provider (short, no URLs, no secrets)."""
    budget_interval: float = 0.0
    """Seconds the request budget keeps between two requests (0: no pacing)."""
    rate_limited_until: datetime | None = None
    """A long Retry-After: calls are refused without a request until then."""


# --------------------------------------------------------------------------- budget


class RequestBudget:
    """AIMD pacing of one account's requests after 429s (see the module docstring).

    :meth:`acquire` reserves the next slot under the lock and sleeps outside it,
    so concurrent threads queue up one interval apart instead of all waking at once.
    """

    def __init__(
        self,
        *,
        max_interval: float,
        recover_after: int,
        floor: float = BUDGET_FLOOR_SECONDS,
        max_pause: float = MAX_PAUSE_SECONDS,
        name: str = "",
        clock: Clock = time.monotonic,
        wall: WallClock = _utcnow,
        sleep: Sleep = time.sleep,
    ) -> None:
        if max_interval <= 0 or recover_after < 1:
            raise ValueError("max_interval must be > 0 and recover_after >= 1")
        self.max_interval = max_interval
        self.recover_after = recover_after
        self.floor = min(floor, max_interval)
        self.max_pause = max_pause
        self.name = name
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 0.0
        self._next_at = float("-inf")
        self._last_start = float("-inf")
        self._streak = 0
        self._paused_mono: float | None = None
        self._paused_wall: datetime | None = None

    @property
    def interval(self) -> float:
        with self._lock:
            return self._interval

    def acquire(self) -> float:
        """Wait for this request's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_at)
            self._last_start = start
            self._next_at = start + self._interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def on_success(self) -> None:
        """A 2xx: count toward recovery, halving the interval after a run of them."""
        with self._lock:
            if self._interval <= 0:
                return
            self._streak += 1
            if self._streak < self.recover_after:
                return
            self._streak = 0
            old = self._interval
            self._interval = old / 2 if old / 2 >= self.floor else 0.0
            # The next slot was reserved at the old pace: bring it forward to the new one.
            self._next_at = min(self._next_at, self._last_start + self._interval)
            new = self._interval
        log.info("api.budget_recovered", account=self.name, interval=new, was=old)

    def on_rate_limited(self, retry_after: float | None, *, patience: float) -> None:
        """A 429: slow down; a Retry-After beyond ``patience`` pauses the account."""
        with self._lock:
            now = self._clock()
            old = self._interval
            self._streak = 0
            quota = retry_after is not None and retry_after > patience
            # A quota pause is its own mechanism below; letting its hour-long Retry-After
            # set the pace too would crawl through the first requests after the reset.
            paced = 0.0 if quota else (retry_after or 0.0)
            self._interval = min(self.max_interval, max(paced, 2 * self._interval, self.floor))
            self._next_at = max(self._next_at, now + self._interval)
            paused = False
            if quota and retry_after is not None:
                paused = True
                pause = min(retry_after, self.max_pause)
                if self._paused_mono is None or now + pause > self._paused_mono:
                    self._paused_mono = now + pause
                    self._paused_wall = self._wall() + timedelta(seconds=pause)
            new = self._interval
        if new != old or paused:
            log.info(
                "api.budget_slowed",
                account=self.name,
                interval=new,
                retry_after=retry_after,
                paused=paused,
            )

    def paused_for(self) -> float:
        """Seconds a long Retry-After still forbids requests (0: none)."""
        with self._lock:
            if self._paused_mono is None:
                return 0.0
            left = self._paused_mono - self._clock()
            if left <= 0:
                self._paused_mono = self._paused_wall = None
                return 0.0
            return left

    def state(self) -> tuple[float, datetime | None]:
        """(interval, paused-until wall time) for a snapshot."""
        paused = self.paused_for() > 0
        with self._lock:
            return self._interval, (self._paused_wall if paused else None)

    def restore(self, interval: float, paused_until: datetime | None) -> None:
        """Take over a stored pace (clamped to this config) and an unexpired pause."""
        with self._lock:
            self._interval = min(max(interval, 0.0), self.max_interval)
            if 0 < self._interval < self.floor:
                self._interval = 0.0
            self._streak = 0
            if paused_until is not None:
                wall = self._wall()
                until = min(paused_until, wall + timedelta(seconds=self.max_pause))
                left = (until - wall).total_seconds()
                if left > 0:
                    self._paused_mono = self._clock() + left
                    self._paused_wall = until


# --------------------------------------------------------------------------- breaker


class CircuitBreaker:
    """Closed -> open after N consecutive failed calls -> half-open trial -> closed or open.

    Only :attr:`CallOutcome.DOWN` counts as a failure; any answer from the provider
    (even a 404 or a 429) proves it is up and resets the count.
    """

    def __init__(
        self,
        *,
        failures: int,
        cooldown: float,
        name: str = "",
        clock: Clock = time.monotonic,
        wall: WallClock = _utcnow,
        events: str = "api",
        subject: str = "account",
    ) -> None:
        """``events``/``subject``: how the transitions are logged (``api.circuit_opened``
        with ``account=name`` for a provider; the storage breaker reuses this class as
        ``storage.circuit_opened`` with ``storage=url``)."""
        if failures < 1 or cooldown <= 0:
            raise ValueError("failures must be >= 1 and cooldown > 0")
        self.threshold = failures
        self.cooldown = cooldown
        self.name = name
        self._events = events
        self._who = {subject: name}
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_wall: datetime | None = None
        self._retry_mono: float | None = None
        self._retry_wall: datetime | None = None
        self._last_error: str | None = None
        self._trial_in_flight = False
        self.used = False
        """A call was admitted: a stored state must no longer overwrite this one."""

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    def admit(self) -> Admission:
        """Let a call through, or raise :class:`CircuitOpenError` without any request."""
        with self._lock:
            self.used = True
            if self._state is CircuitState.CLOSED:
                return Admission.NORMAL
            now = self._clock()
            if self._state is CircuitState.OPEN:
                assert self._retry_mono is not None
                if now < self._retry_mono:
                    left = self._retry_mono - now
                    raise CircuitOpenError(
                        f"{self.name}: circuit open after {self._failures} failed calls "
                        f"({self._last_error or 'no detail'}); next trial in {left:.0f} s",
                        retry_at=self._retry_wall,
                        retry_after=left,
                    )
                self._state = CircuitState.HALF_OPEN
                self._trial_in_flight = True
                transition = True
            elif self._trial_in_flight:
                raise CircuitOpenError(
                    f"{self.name}: circuit half-open, a trial call is in flight",
                    retry_at=None,
                    retry_after=None,
                )
            else:
                self._trial_in_flight = True
                transition = False
        if transition:
            log.info(f"{self._events}.circuit_half_open", **self._who)
        return Admission.TRIAL

    def record(self, admission: Admission, outcome: CallOutcome, error: str | None = None) -> None:
        """The verdict of a call :meth:`admit` let through."""
        event: str | None = None
        with self._lock:
            trial = admission is Admission.TRIAL
            if trial:
                self._trial_in_flight = False
            if outcome is CallOutcome.NO_VERDICT:
                return
            if outcome.provider_up:
                self._failures = 0
                if self._state is not CircuitState.CLOSED:
                    self._state = CircuitState.CLOSED
                    self._opened_wall = self._retry_mono = self._retry_wall = None
                    event = "circuit_closed"
            else:
                self._failures += 1
                self._last_error = error or self._last_error
                reopen = self._state is CircuitState.HALF_OPEN and trial
                if reopen or (
                    self._state is CircuitState.CLOSED and self._failures >= self.threshold
                ):
                    self._open()
                    event = "circuit_opened"
            failures, retry_at, last_error = self._failures, self._retry_wall, self._last_error
        if event == "circuit_opened":
            log.warning(
                f"{self._events}.{event}",
                **self._who,
                failures=failures,
                retry_at=iso(retry_at),
                error=last_error,
            )
        elif event is not None:
            log.info(f"{self._events}.{event}", **self._who)

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_wall = self._wall()
        self._retry_mono = self._clock() + self.cooldown
        self._retry_wall = self._opened_wall + timedelta(seconds=self.cooldown)

    def blocked_until(self) -> datetime | None:
        """The next trial time while the circuit refuses calls; None when a call may go."""
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and self._trial_in_flight:
                return self._retry_wall or self._wall()
            if self._state is not CircuitState.OPEN:
                return None
            assert self._retry_mono is not None
            return self._retry_wall if self._clock() < self._retry_mono else None

    def state_fields(
        self,
    ) -> tuple[CircuitState, int, datetime | None, datetime | None, str | None]:
        """(state, failures, opened_at, retry_at, last_error) for a snapshot."""
        with self._lock:
            return (
                self._state,
                self._failures,
                self._opened_wall,
                self._retry_wall,
                self._last_error,
            )

    def restore(
        self,
        state: CircuitState,
        failures: int,
        opened_at: datetime | None,
        retry_at: datetime | None,
        last_error: str | None,
    ) -> None:
        """Take over a stored state. A half-open one (its process died mid-trial) comes
        back open with its old trial time, so the next call is a trial again."""
        with self._lock:
            self._failures = max(failures, 0)
            self._last_error = last_error
            self._trial_in_flight = False
            if state is CircuitState.CLOSED:
                self._state = CircuitState.CLOSED
                self._opened_wall = self._retry_mono = self._retry_wall = None
                return
            now_wall = self._wall()
            self._state = CircuitState.OPEN
            self._opened_wall = min(opened_at or now_wall, now_wall)
            # The trial is due one cooldown of *this* config after the circuit opened, or
            # earlier if that was stored: a shortened cooldown takes effect at once, and a
            # far-future time written by a skewed clock cannot park the account.
            due = self._opened_wall + timedelta(seconds=self.cooldown)
            self._retry_wall = min(retry_at, due) if retry_at is not None else now_wall
            left = (self._retry_wall - now_wall).total_seconds()
            self._retry_mono = self._clock() + max(left, 0.0)


# --------------------------------------------------------------------------- guard


class ProviderGuard:
    """One account's budget and breaker, plus the bookkeeping of what was stored."""

    def __init__(
        self,
        settings: NetworkSettings,
        *,
        name: str = "",
        clock: Clock = time.monotonic,
        wall: WallClock = _utcnow,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.name = name
        self.budget = RequestBudget(
            max_interval=settings.budget_max_interval_seconds,
            recover_after=settings.budget_recover_after,
            name=name,
            clock=clock,
            wall=wall,
            sleep=sleep,
        )
        self.breaker = CircuitBreaker(
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
            name=name,
            clock=clock,
            wall=wall,
        )
        self._lock = threading.Lock()
        self._restored = False
        self._saved = HealthSnapshot()
        """What the table holds as far as we know (a missing row reads as all-healthy)."""

    @property
    def restored(self) -> bool:
        """The stored state was taken over, or it is too late to (a call went out)."""
        with self._lock:
            return self._restored or self.breaker.used

    def snapshot(self) -> HealthSnapshot:
        state, failures, opened_at, retry_at, last_error = self.breaker.state_fields()
        interval, paused_until = self.budget.state()
        return HealthSnapshot(
            circuit=state,
            consecutive_failures=failures,
            opened_at=opened_at,
            retry_at=retry_at,
            last_error=last_error,
            budget_interval=interval,
            rate_limited_until=paused_until,
        )

    def restore(self, stored: HealthSnapshot | None) -> bool:
        """Take over the stored state once, before the first call; False if too late.

        A process that already called the provider knows better than the table,
        which another process (or this one's last run) wrote.
        """
        with self._lock:
            if self._restored or self.breaker.used:
                self._restored = True
                return False
            self._restored = True
            if stored is None:
                return False
            self.breaker.restore(
                stored.circuit,
                stored.consecutive_failures,
                stored.opened_at,
                stored.retry_at,
                stored.last_error,
            )
            self.budget.restore(stored.budget_interval, stored.rate_limited_until)
            self._saved = self.snapshot()
            return True

    def unsaved(self) -> HealthSnapshot | None:
        """The current snapshot if it differs from what was last stored, else None."""
        snap = self.snapshot()
        with self._lock:
            return None if snap == self._saved else snap

    def mark_saved(self, snap: HealthSnapshot) -> None:
        with self._lock:
            self._saved = snap


__all__ = [
    "Admission",
    "CallOutcome",
    "CircuitBreaker",
    "CircuitState",
    "HealthSnapshot",
    "ProviderGuard",
    "RequestBudget",
]
