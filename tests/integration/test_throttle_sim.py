"""Request budget, circuit breaker and API deadline against the GeminiGen simulator.

Real HTTP over loopback: the simulator answers 429 (with Retry-After in seconds or
as an HTTP-date), 5xx storms, connection resets, slow responses and dripped bodies,
and its request counters show what genvault really sent. Request spacing is taken
from the client's own ``on_response`` timestamps. Cooldowns and intervals are cut
to fractions of a second so the suite stays fast.

The last tests run whole passes (:func:`run_once`) on two Runtime instances over one
database, as two CronJob runs would, and read the result the way ``genvault status``
does.
"""

from __future__ import annotations

import email.utils
import io
import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from genvault.config import NetworkSettings, Settings
from genvault.errors import (
    AuthError,
    CircuitOpenError,
    DeadlineExceededError,
    NotFoundError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.exitcodes import ExitCode
from genvault.jobs.pipeline import run_once
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.net.throttle import CircuitState
from genvault.providers.geminigen import GeminiGen, GeminiGenOptions
from genvault.report import render_status
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.simulator.geminigen import GeminiGenSimulator
from genvault.status import status_document
from tests.fixtures.sims import SimStarter, sim_account

KEY = "gg-throttle-key-5d1e7c"
LIST = ("histories", {"filter_by": "all", "items_per_page": 5, "page": 1})

Stamps = list[tuple[float, int]]
ClientFactory = Callable[..., ApiClient]


@pytest.fixture
def sim(start_sim: SimStarter) -> GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=3,
        count=9,
        image_size=3_000,
        video_size=6_000,
        audio_size=2_000,
        thumbnail_size=500,
        processing_count=0,
        failed_count=0,
        max_items_per_page=100,
    )


@pytest.fixture
def client(sim: GeminiGenSimulator) -> Iterator[ClientFactory]:
    """Builds ApiClients on the simulator with the given network settings; closes them."""
    made: list[ApiClient] = []

    def make(*, key: str = KEY, stamps: Stamps | None = None, **net: Any) -> ApiClient:
        settings = NetworkSettings.model_validate({"allow_private": True, **net})
        policy = NetworkPolicy(allow_private=True)

        def record(status: int) -> None:
            if stamps is not None:
                stamps.append((time.monotonic(), status))

        api = ApiClient(
            http=build_client(settings, policy),
            base_url=sim.api_base,
            auth_headers=GeminiGen.auth_headers(key, GeminiGenOptions()),
            settings=settings,
            policy=policy,
            account="main",
            on_response=record,
        )
        made.append(api)
        return api

    yield make
    for api in made:
        api.http.close()


def _gaps(stamps: Stamps) -> list[float]:
    return [round(b[0] - a[0], 3) for a, b in itertools.pairwise(stamps)]


def _requests(sim: GeminiGenSimulator) -> int:
    return int(sim.stats.snapshot()["requests"])


# --------------------------------------------------------------------------- 429 and the budget


def test_retry_after_in_seconds_is_waited_out_between_attempts(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    """Retry-After (0.4 s) is longer than the budget's pace (0.2 s): it sets the gaps."""
    stamps: Stamps = []
    api = client(
        stamps=stamps, api_retries=2, backoff_cap_seconds=5, budget_max_interval_seconds=0.2
    )
    sim.faults.update(rate_limit=True, retry_after="0.4")
    with pytest.raises(RateLimitedError) as info:
        api.get_json(*LIST)
    assert info.value.retry_after == pytest.approx(0.4)
    assert [s for _, s in stamps] == [429, 429, 429]
    assert all(g >= 0.38 for g in _gaps(stamps)), _gaps(stamps)
    assert api.guard.budget.interval == pytest.approx(0.2)
    assert api.guard.breaker.state is CircuitState.CLOSED  # a 429 is an answer, not an outage


def test_429_without_retry_after_slows_the_budget_which_recovers_after_successes(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    """One bare 429: requests are paced 0.25 s apart until three successes in a row."""
    stamps: Stamps = []
    api = client(
        stamps=stamps,
        api_retries=2,
        backoff_cap_seconds=0.01,  # the backoff alone would retry almost at once
        budget_max_interval_seconds=0.25,
        budget_recover_after=3,
    )
    sim.faults.update(rate_limit_next=1)
    for _ in range(6):
        assert api.get_json(*LIST)["success"] is True
    assert [s for _, s in stamps] == [429] + [200] * 6
    gaps = _gaps(stamps)
    # the retry and the next two calls wait their slot; then the pace is gone
    assert all(g >= 0.23 for g in gaps[:3]), gaps
    assert all(g < 0.15 for g in gaps[3:]), gaps
    assert api.guard.budget.interval == 0
    assert sim.stats.snapshot()["faults"]["rate_limit_next"] == 1


def test_long_retry_after_as_http_date_pauses_the_account_without_requests(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    """A quota answer (Retry-After beyond the backoff cap) ends the call at once, and
    later calls are refused locally until then: no knocking on a closed door."""
    api = client(api_retries=3, backoff_cap_seconds=5)
    until = datetime.now(UTC) + timedelta(seconds=60)
    sim.faults.update(rate_limit=True, retry_after=email.utils.format_datetime(until, True))
    with pytest.raises(RateLimitedError) as info:
        api.get_json(*LIST)
    assert info.value.retry_after is not None and 57 <= info.value.retry_after <= 60
    assert _requests(sim) == 1  # no retry: the wait is longer than we would ever sleep
    sim.faults.update(rate_limit=False)
    with pytest.raises(RateLimitedError) as again:
        api.get_json(*LIST)
    assert again.value.retry_after is not None and again.value.retry_after > 55
    assert _requests(sim) == 1
    paused = api.guard.snapshot().rate_limited_until
    assert paused is not None and abs((paused - until).total_seconds()) <= 3


# --------------------------------------------------------------------------- the breaker


@pytest.mark.parametrize("fault", ["5xx", "reset", "read_timeout"])
def test_breaker_opens_after_n_failed_calls_then_sends_nothing(
    sim: GeminiGenSimulator, client: ClientFactory, fault: str
) -> None:
    api = client(
        api_retries=1,
        backoff_cap_seconds=0.01,
        read_timeout=0.2,
        breaker_failures=3,
        breaker_cooldown_seconds=30,
    )
    if fault == "5xx":
        sim.faults.update(error_rate=1.0)
    elif fault == "reset":
        sim.faults.update(reset_next=100)
    else:
        sim.faults.update(latency_s=0.5)
    for _ in range(3):
        with pytest.raises(TransientProviderError) as info:
            api.get_json(*LIST)
        assert not isinstance(info.value, CircuitOpenError)
    assert api.guard.breaker.state is CircuitState.OPEN
    sent = api.stats["requests"]
    assert sent == 6  # three calls, each tried twice
    before = _requests(sim)
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as refused:
            api.get_json(*LIST)
    assert api.stats["requests"] == sent and _requests(sim) == before
    assert refused.value.retry_after is not None and 25 < refused.value.retry_after <= 30
    snap = api.guard.snapshot()
    assert snap.consecutive_failures == 3 and snap.last_error
    assert "http://" not in snap.last_error and KEY not in snap.last_error


def test_half_open_trial_reopens_on_failure_and_closes_on_success(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    cooldown = 0.3
    api = client(
        api_retries=2,
        backoff_cap_seconds=0.01,
        breaker_failures=2,
        breaker_cooldown_seconds=cooldown,
    )
    sim.faults.update(error_rate=1.0)
    for _ in range(2):
        with pytest.raises(TransientProviderError):
            api.get_json(*LIST)
    assert api.stats["requests"] == 6
    time.sleep(cooldown + 0.05)
    # the trial is a single request (no retries) and it fails: open for another cooldown
    with pytest.raises(TransientProviderError) as trial:
        api.get_json(*LIST)
    assert not isinstance(trial.value, CircuitOpenError)
    assert api.stats["requests"] == 7
    with pytest.raises(CircuitOpenError):
        api.get_json(*LIST)
    assert api.stats["requests"] == 7
    sim.faults.update(error_rate=0.0)
    time.sleep(cooldown + 0.05)
    assert api.get_json(*LIST)["success"] is True  # the trial gets through: closed
    assert api.guard.breaker.state is CircuitState.CLOSED
    for _ in range(3):
        api.get_json(*LIST)
    assert api.stats["requests"] == 11
    assert api.guard.snapshot().consecutive_failures == 0


def test_refusals_and_business_answers_do_not_open_the_circuit(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    """401 and 404 mean the provider is up and said no; they never count as an outage."""
    wrong_key = client(key="not-the-key", api_retries=0, breaker_failures=2)
    for _ in range(5):
        with pytest.raises(AuthError):
            wrong_key.get_json(*LIST)
    assert wrong_key.guard.breaker.state is CircuitState.CLOSED
    api = client(api_retries=0, breaker_failures=2)
    for _ in range(5):
        with pytest.raises(NotFoundError):
            api.get_json("history/00000000-0000-0000-0000-000000000000")
    assert api.guard.breaker.state is CircuitState.CLOSED
    assert api.guard.snapshot().consecutive_failures == 0


# --------------------------------------------------------------------------- the deadline


def test_dripped_body_hits_the_deadline_not_the_read_timeout(
    sim: GeminiGenSimulator, client: ClientFactory
) -> None:
    """40 bytes/s never leaves a read idle for 5 s; only the 0.5 s deadline ends it."""
    api = client(
        api_retries=0,
        read_timeout=5,
        api_deadline_seconds=0.5,
        breaker_failures=1,
        breaker_cooldown_seconds=30,
    )
    sim.faults.update(api_drip_bps=40)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        api.get_json(*LIST)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0, elapsed
    assert "within 0.5 s" in str(info.value)
    assert sim.stats.snapshot()["faults"]["api_drip"] == 1
    # a deadline is an outage like any other: the circuit (threshold 1) is open now
    with pytest.raises(CircuitOpenError):
        api.get_json(*LIST)


# --------------------------------------------------------------------------- across runs


def _settings(sim: GeminiGenSimulator, db_url: str, tmp_path: Path, **net: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": db_url},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "network": {"allow_private": True, "api_retries": 0, **net},
            "server": {"enabled": False},
            "poll": {"backoff_seconds": [0.1]},
            "accounts": [sim_account(sim, "GG_KEY", items_per_page=4)],
        }
    )


def _run(settings: Settings) -> tuple[ExitCode, list[str], int]:
    """One ``run --once`` on a fresh Runtime: (exit code, circuit-open accounts, generations)."""
    rt = Runtime.build(settings, {"main": SecretStr(KEY)})
    try:
        report = run_once(rt)
        return report.exit_code, report.circuit_open, len(rt.store.generations())
    finally:
        rt.close()


def _table(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    render_status(doc, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def test_open_circuit_is_persisted_skips_the_next_run_and_shows_in_status(
    sim: GeminiGenSimulator, db_url: str, tmp_path: Path
) -> None:
    down = _settings(sim, db_url, tmp_path, breaker_failures=1, breaker_cooldown_seconds=60)
    sim.faults.update(error_rate=1.0)
    code, skipped, _ = _run(down)
    assert code is ExitCode.RETRYING and skipped == ["main"]  # sync failed, then poll skipped
    sent = _requests(sim)
    assert sent == 1

    # the next cron run restores the open circuit and does not call the provider at all
    code, skipped, _ = _run(down)
    assert code is ExitCode.RETRYING and skipped == ["main"]
    assert _requests(sim) == sent

    doc = status_document(down, timedelta(hours=24))
    circuit = doc["accounts"][0]["circuit"]
    assert circuit["state"] == "open" and circuit["consecutive_failures"] == 1
    assert circuit["trial_due"] is False
    retry_at = datetime.fromisoformat(circuit["retry_at"])
    assert timedelta(seconds=50) < retry_at - datetime.now(UTC) <= timedelta(seconds=60)
    assert "HTTP 5" in circuit["last_error"] and "://" not in circuit["last_error"]
    table = _table(doc)
    assert "provider circuit" in table and "open, retry in" in table

    # the provider is back; a run configured with a short cooldown trusts the stored
    # trial time only up to that cooldown, so its first call is the trial
    sim.faults.update(error_rate=0.0)
    back = _settings(sim, db_url, tmp_path, breaker_failures=1, breaker_cooldown_seconds=0.05)
    time.sleep(0.1)
    code, skipped, generations = _run(back)
    assert skipped == [] and code is ExitCode.OK
    assert generations == 9
    circuit = status_document(back, timedelta(hours=24))["accounts"][0]["circuit"]
    assert circuit["state"] == "closed" and circuit["consecutive_failures"] == 0
    assert circuit["retry_at"] is None


def test_exhausted_quota_ends_the_run_incomplete_and_the_next_run_continues(
    sim: GeminiGenSimulator, tmp_path: Path
) -> None:
    """Page 1 is saved, page 2 answers 429 with a Retry-After beyond the backoff cap: the
    run keeps its progress and exits 3 (incomplete, not an error of genvault's); the run
    after the pause finishes the walk and exits 0."""
    pause = 2.5
    settings = _settings(
        sim,
        f"sqlite:///{tmp_path / 'gv.db'}",
        tmp_path,
        backoff_cap_seconds=0.5,
        budget_max_interval_seconds=0.05,  # the pace after the pause: short, for speed
    )
    sim.faults.update(pass_next=1, rate_limit=True, retry_after=str(pause))
    started = time.monotonic()
    code, skipped, generations = _run(settings)
    assert code is ExitCode.RETRYING and skipped == []
    assert generations == 4  # partial progress: the first page
    sent = _requests(sim)

    # within the pause, a new run asks nothing and is still incomplete
    sim.faults.update(rate_limit=False)
    code, _, generations = _run(settings)
    assert code is ExitCode.RETRYING and generations == 4
    assert _requests(sim) == sent
    circuit = status_document(settings, timedelta(hours=24))["accounts"][0]["circuit"]
    assert circuit["state"] == "closed" and circuit["rate_limited_until"] is not None
    assert "quota pause" in _table(status_document(settings, timedelta(hours=24)))

    # wait out the pause the daemon recorded (it began when the 429 arrived, not at `started`)
    until = datetime.fromisoformat(circuit["rate_limited_until"])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds() + 0.3))
    assert time.monotonic() - started >= pause
    code, _, generations = _run(settings)
    assert code is ExitCode.OK and generations == 9  # the walk resumed and finished
    circuit = status_document(settings, timedelta(hours=24))["accounts"][0]["circuit"]
    assert circuit["rate_limited_until"] is None
