"""RequestBudget, CircuitBreaker and ProviderGuard on a fake clock (no I/O, no sleeping).

The HTTP side (real 429s, 5xx storms and slow bodies from the simulators) is in
``tests/integration/test_throttle_sim.py``; here every transition is driven by
hand so the arithmetic (doubling, caps, halving, cooldowns, wall-clock
conversion for the stored state) is checked exactly.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from genvault.config import NetworkSettings
from genvault.errors import CircuitOpenError, TransientProviderError
from genvault.net.throttle import (
    MAX_PAUSE_SECONDS,
    Admission,
    CallOutcome,
    CircuitBreaker,
    CircuitState,
    HealthSnapshot,
    ProviderGuard,
    RequestBudget,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic and wall time that move only when told to (or when slept on)."""

    def __init__(self, wall0: datetime = T0, mono0: float = 5000.0) -> None:
        self.t = mono0
        self._t0 = self.t
        self._wall0 = wall0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self._wall0 + timedelta(seconds=self.t - self._t0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _budget(clock: FakeClock, *, max_interval: float = 30, recover_after: int = 3) -> RequestBudget:
    return RequestBudget(
        max_interval=max_interval,
        recover_after=recover_after,
        clock=clock.monotonic,
        wall=clock.wall,
        sleep=clock.sleep,
    )


def _breaker(clock: FakeClock, *, failures: int = 3, cooldown: float = 60) -> CircuitBreaker:
    return CircuitBreaker(
        failures=failures, cooldown=cooldown, name="acc", clock=clock.monotonic, wall=clock.wall
    )


def _guard(clock: FakeClock, **net: object) -> ProviderGuard:
    settings = NetworkSettings.model_validate(
        {
            "breaker_failures": 3,
            "breaker_cooldown_seconds": 60,
            "budget_max_interval_seconds": 30,
            "budget_recover_after": 3,
            **net,
        }
    )
    return ProviderGuard(
        settings, name="acc", clock=clock.monotonic, wall=clock.wall, sleep=clock.sleep
    )


def _fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        breaker.record(breaker.admit(), CallOutcome.DOWN, "TransientProviderError: HTTP 503")


# --------------------------------------------------------------------------- budget


def test_budget_starts_unpaced() -> None:
    clock = FakeClock()
    budget = _budget(clock)
    for _ in range(20):
        assert budget.acquire() == 0
        budget.on_success()
    assert clock.sleeps == [] and budget.interval == 0


def test_429_without_retry_after_imposes_the_floor_between_requests() -> None:
    clock = FakeClock()
    budget = _budget(clock)
    budget.on_rate_limited(None, patience=60)
    assert budget.interval == 1.0
    assert budget.acquire() == pytest.approx(1.0)  # the slot after the 429
    assert budget.acquire() == pytest.approx(1.0)  # and one interval after that
    clock.advance(5)
    assert budget.acquire() == 0  # idle time is not owed back


def test_429_takes_retry_after_then_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    budget = _budget(clock, max_interval=30)
    budget.on_rate_limited(3.0, patience=60)
    assert budget.interval == 3.0
    steps = []
    for _ in range(5):
        budget.on_rate_limited(None, patience=60)
        steps.append(budget.interval)
    assert steps == [6.0, 12.0, 24.0, 30.0, 30.0]
    budget.on_rate_limited(50.0, patience=60)  # honoured by the retry loop, not by pacing
    assert budget.interval == 30.0 and budget.paused_for() == 0


def test_a_run_of_successes_halves_the_interval_down_to_nothing() -> None:
    clock = FakeClock()
    budget = _budget(clock, recover_after=3)
    budget.on_rate_limited(8.0, patience=60)
    seen = []
    for i in range(1, 13):
        budget.on_success()
        if i == 2:
            budget.on_rate_limited(None, patience=60)  # a 429 mid-run restarts the count
            assert budget.interval == 16.0
        seen.append(budget.interval)
    # 16 -> 8 after three successes, then 4, 2, 1 (the floor), and 0.5 < floor is 0
    assert seen == [8, 16, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2]
    for _ in range(6):
        budget.on_success()
    assert budget.interval == 0
    clock.advance(100)  # past the slot the last 429 reserved
    assert [budget.acquire() for _ in range(5)] == [0] * 5  # back to full speed


def test_recovery_also_frees_the_slot_reserved_at_the_old_pace() -> None:
    clock = FakeClock()
    budget = _budget(clock, recover_after=2)
    budget.on_rate_limited(None, patience=60)
    waits = []
    for _ in range(4):
        waits.append(budget.acquire())
        budget.on_success()
    assert waits == [pytest.approx(1.0), pytest.approx(1.0), 0, 0]


def test_long_retry_after_pauses_the_account_until_then() -> None:
    clock = FakeClock()
    budget = _budget(clock)
    budget.on_rate_limited(600.0, patience=60)
    assert budget.paused_for() == pytest.approx(600)
    interval, until = budget.state()
    # the pause does not also set the pace: after it, requests resume at the floor
    assert interval == 1.0 and until == T0 + timedelta(seconds=600)
    clock.advance(599)
    assert budget.paused_for() == pytest.approx(1)
    clock.advance(2)
    assert budget.paused_for() == 0 and budget.state()[1] is None
    # an absurd HTTP-date cannot silence the account for days
    budget.on_rate_limited(10 * 86400.0, patience=60)
    assert budget.paused_for() == MAX_PAUSE_SECONDS


def test_budget_restore_clamps_to_this_config() -> None:
    clock = FakeClock()
    budget = _budget(clock, max_interval=10)
    budget.restore(25.0, T0 + timedelta(seconds=90))
    assert budget.interval == 10 and budget.paused_for() == pytest.approx(90)
    other = _budget(clock)
    other.restore(0.4, T0 - timedelta(seconds=5))  # below the floor; pause already over
    assert other.interval == 0 and other.paused_for() == 0


def test_concurrent_threads_are_spaced_one_interval_apart() -> None:
    """Archive workers refresh URLs through the same client: they must queue, not burst."""
    budget = RequestBudget(max_interval=0.05, recover_after=100, floor=0.05)
    budget.on_rate_limited(None, patience=60)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            budget.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 12
    assert min(gaps) >= 0.045, gaps


# --------------------------------------------------------------------------- breaker


def test_breaker_opens_after_n_consecutive_failed_calls_and_refuses_at_once() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, failures=3, cooldown=60)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit()
    assert isinstance(info.value, TransientProviderError)  # jobs treat it as "later"
    assert info.value.retry_after == pytest.approx(50)
    assert info.value.retry_at == T0 + timedelta(seconds=60)
    assert "HTTP 503" in str(info.value)
    assert breaker.blocked_until() == T0 + timedelta(seconds=60)


@pytest.mark.parametrize(
    "outcome", [CallOutcome.OK, CallOutcome.ANSWERED, CallOutcome.RATE_LIMITED]
)
def test_any_answer_from_the_provider_resets_the_count(outcome: CallOutcome) -> None:
    """A 404, a business error or a 429 proves the provider is up."""
    clock = FakeClock()
    breaker = _breaker(clock, failures=3)
    _fail(breaker, 2)
    breaker.record(breaker.admit(), outcome)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.state_fields()[1] == 2


def test_no_verdict_neither_counts_nor_resets() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, failures=3)
    _fail(breaker, 2)
    breaker.record(breaker.admit(), CallOutcome.NO_VERDICT)
    assert breaker.state_fields()[1] == 2
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN


def test_half_open_lets_one_trial_through_and_success_closes() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, failures=1, cooldown=30)
    _fail(breaker)
    clock.advance(30)
    assert breaker.blocked_until() is None  # the trial may go
    trial = breaker.admit()
    assert trial is Admission.TRIAL and breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError):  # a second caller waits for the probe's verdict
        breaker.admit()
    assert breaker.blocked_until() is not None
    breaker.record(trial, CallOutcome.OK)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.admit() is Admission.NORMAL
    _state, failures, opened_at, retry_at, last_error = breaker.state_fields()
    assert (failures, opened_at, retry_at) == (0, None, None)
    assert last_error is not None  # kept: status shows what last went wrong


def test_failed_trial_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, failures=2, cooldown=30)
    _fail(breaker, 2)
    clock.advance(31)
    breaker.record(breaker.admit(), CallOutcome.DOWN, "timed out")
    assert breaker.state is CircuitState.OPEN
    assert breaker.blocked_until() == T0 + timedelta(seconds=31 + 30)
    assert breaker.state_fields()[4] == "timed out"
    clock.advance(29)
    with pytest.raises(CircuitOpenError):
        breaker.admit()


def test_an_abandoned_trial_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = _breaker(clock, failures=1, cooldown=5)
    _fail(breaker)
    clock.advance(5)
    trial = breaker.admit()
    breaker.record(trial, CallOutcome.NO_VERDICT)  # e.g. the URL policy refused it locally
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.admit() is Admission.TRIAL


# --------------------------------------------------------------------------- guard


def test_snapshot_and_restore_carry_the_state_to_another_process() -> None:
    clock = FakeClock()
    guard = _guard(clock)
    _fail(guard.breaker, 3)
    guard.budget.on_rate_limited(4.0, patience=60)
    snap = guard.snapshot()
    assert snap.circuit is CircuitState.OPEN and snap.consecutive_failures == 3
    assert snap.opened_at == T0 and snap.retry_at == T0 + timedelta(seconds=60)
    assert snap.budget_interval == 4.0 and snap.rate_limited_until is None

    # a cron run 20 s later, on a machine whose monotonic clock means nothing here
    later = FakeClock(wall0=T0 + timedelta(seconds=20), mono0=17.0)
    fresh = _guard(later)
    assert fresh.restore(snap) is True
    assert fresh.breaker.blocked_until() == T0 + timedelta(seconds=60)
    with pytest.raises(CircuitOpenError) as info:
        fresh.breaker.admit()
    assert info.value.retry_after == pytest.approx(40)
    assert fresh.budget.interval == 4.0
    assert fresh.unsaved() is None  # what was read is what is stored
    later.advance(40)
    assert fresh.breaker.admit() is Admission.TRIAL


def test_restore_happens_once_and_never_after_a_call() -> None:
    clock = FakeClock()
    opened = HealthSnapshot(
        circuit=CircuitState.OPEN,
        consecutive_failures=5,
        opened_at=T0,
        retry_at=T0 + timedelta(seconds=30),
    )
    used = _guard(clock)
    used.breaker.record(used.breaker.admit(), CallOutcome.OK)
    assert used.restore(opened) is False and used.breaker.state is CircuitState.CLOSED
    once = _guard(clock)
    assert once.restore(None) is False and once.restored
    assert once.restore(opened) is False and once.breaker.state is CircuitState.CLOSED


def test_restore_of_a_half_open_or_far_future_state() -> None:
    clock = FakeClock()
    # A process died mid-trial: the next call is a trial again.
    died = _guard(clock)
    died.restore(
        HealthSnapshot(
            circuit=CircuitState.HALF_OPEN,
            consecutive_failures=3,
            opened_at=T0 - timedelta(minutes=10),
            retry_at=T0 - timedelta(minutes=5),
        )
    )
    assert died.breaker.state is CircuitState.OPEN and died.breaker.blocked_until() is None
    assert died.breaker.admit() is Admission.TRIAL
    # A trial time beyond this config's cooldown is cut to one cooldown after opening.
    far = _guard(clock, breaker_cooldown_seconds=10)
    far.restore(HealthSnapshot(circuit=CircuitState.OPEN, retry_at=T0 + timedelta(days=2)))
    assert far.breaker.blocked_until() == T0 + timedelta(seconds=10)
    short = _guard(clock, breaker_cooldown_seconds=10)
    short.restore(
        HealthSnapshot(
            circuit=CircuitState.OPEN,
            opened_at=T0 - timedelta(seconds=15),
            retry_at=T0 + timedelta(seconds=45),
        )
    )
    assert short.breaker.blocked_until() is None  # opened 15 s ago, cooldown now 10 s


def test_unsaved_reports_changes_only() -> None:
    clock = FakeClock()
    guard = _guard(clock)
    assert guard.unsaved() is None  # healthy and never written: nothing to write
    _fail(guard.breaker)
    snap = guard.unsaved()
    assert snap is not None and snap.consecutive_failures == 1
    guard.mark_saved(snap)
    assert guard.unsaved() is None
    guard.breaker.record(guard.breaker.admit(), CallOutcome.OK)
    changed = guard.unsaved()
    assert changed is not None and changed.consecutive_failures == 0
