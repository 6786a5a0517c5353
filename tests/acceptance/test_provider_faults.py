"""API faults injected into every provider simulator, and what a run makes of them.

Each test starts one provider's simulator (small: a few generations, files of a
few KB), injects one fault through the simulator's knobs and runs full passes
(sync -> poll -> archive) in-process, each on a fresh :class:`Runtime`, exactly as
``genvault run --once`` builds them, over real loopback HTTP. The promises checked:

* transient faults (429 with or without ``Retry-After``, 5xx storms, TCP resets,
  read timeouts) are retried and end with every file archived; a ``Retry-After``
  longer than ``network.backoff_cap_seconds`` ends the pass early with exit 0 and
  partial progress, and the next run completes;
* malformed answers (HTML, truncated JSON, wrong types, one bad item, the provider's
  in-band error) never crash a run: errors are counted (exit 3) and logged, and a
  single unparsable item does not cost the rest of its page.

One test runs the real CLI in a subprocess to show that a malformed answer ends
in exit code 3 and JSON log lines, not a traceback.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from genvault.config import load_settings, resolve_secrets
from genvault.exitcodes import ExitCode
from genvault.identity import url_key
from genvault.jobs.pipeline import RunReport, run_once
from genvault.jobs.sync import PageCallback
from genvault.records import Page
from genvault.runtime import Runtime
from genvault.simulator import SIMULATORS, Simulator, simulator_factory
from genvault.store import Store
from tests.acceptance.helpers import (
    genvault,
    quota_pause_ends,
    sim_account,
    time_passes,
    write_config,
)

KEY = "provider-faults-key-24ch"  # 24 characters: Akool's callback key is the API key
PROVIDERS = tuple(SIMULATORS)
HISTORY = ("crowdcomputed", "geminigen", "tengrai")
"""Providers with a history listing (the others are fed ids, as by ``genvault track``)."""

# Small and already finished: a run has a handful of API calls and a few KB to archive.
SIM_KNOBS: dict[str, dict[str, Any]] = {
    "crowdcomputed": {
        "count": 4,
        "image_size": 3_000,
        "video_size": 6_000,
        "processing_count": 0,
        "failed_count": 0,
        "empty_count": 0,
    },
    "geminigen": {
        "count": 4,
        "image_size": 3_000,
        "video_size": 6_000,
        "audio_size": 2_000,
        "thumbnail_size": 1_000,
        "processing_count": 0,
        "failed_count": 0,
    },
    "akool": {
        "count": 3,
        "image_size": 3_000,
        "upscale_size": 4_000,
        "processing_count": 0,
        "failed_count": 0,
        "upscaled_count": 1,
    },
    "tengrai": {
        "count": 4,
        "image_size": 3_000,
        "processing_count": 0,
        "failed_count": 0,
        "canceled_count": 0,
    },
    "quickrouter": {
        "count": 3,
        "video_size": 6_000,
        "image_size": 3_000,
        "processing_count": 0,
        "failed_count": 0,
    },
}
SMALL_PAGES: dict[str, dict[str, Any]] = {
    "crowdcomputed": {"page_size": 1},
    "geminigen": {"items_per_page": 2},
    "tengrai": {"page_limit": 2},
}
"""Account options that spread a listing over several pages (a fault can land mid-walk)."""

NETWORK = {
    "GENVAULT_NETWORK__BACKOFF_CAP_SECONDS": "0.2",
    "GENVAULT_NETWORK__BUDGET_MAX_INTERVAL_SECONDS": "0.05",
    "GENVAULT_NETWORK__BREAKER_COOLDOWN_SECONDS": "0.2",
}
"""Short waits of the API client, so a test takes a second: retries back off at most
0.2 s (a longer Retry-After ends the pass), the request pacing a 429 imposes stays
negligible, an opened circuit breaker tries again after 0.2 s. The poll ladder and
the file retries are the defaults a user gets: a failed poll or file is the next
run's, after time passes through the store (:func:`time_passes`)."""


@dataclass
class Run:
    """One pass: its report, exit code and the log events it emitted."""

    report: RunReport
    logs: list[dict[str, Any]]
    retries: int
    """API requests the client retried (transient failures it absorbed)."""

    @property
    def exit_code(self) -> ExitCode:
        return self.report.exit_code

    @property
    def errors_counted(self) -> int:
        """Every error and every piece of work left undone that the pipeline counts
        towards exit code 3 (a run is a success only when it is complete)."""
        rep = self.report
        return (
            sum(1 for s in rep.syncs if s.error or s.rate_limited or not s.complete)
            + sum(s.item_errors for s in rep.syncs)
            + sum(p.errors + p.rate_limited + p.gave_up for p in rep.polls)
            + rep.archive.failed
            + rep.archive.retrying
            + sum(rep.waiting.values())
            + len(rep.circuit_open)
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e["event"] == name]


@dataclass
class Harness:
    """One provider simulator, a SQLite database and a folder archive."""

    provider: str
    sim: Simulator
    tmp_path: Path
    account: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    on_page: PageCallback | None = None
    """``run_once``'s page callback (sync progress), e.g. to clear a fault mid-walk."""
    tracked: bool = False

    @property
    def db(self) -> str:
        return f"sqlite:///{self.tmp_path / 'gv.db'}"

    def configure(self, **options: Any) -> Path:
        """Write the config; ``options`` override the account's keys."""
        self.account = {**sim_account(self.sim, "SIM_KEY"), **options}
        return write_config(
            self.tmp_path / "genvault.toml",
            db_url=self.db,
            storage_url=f"file://{self.tmp_path / 'archive'}",
            accounts=[self.account],
        )

    def run(self, **env: str) -> Run:
        """One ``run --once`` pass on a fresh Runtime (a new process, for a CronJob)."""
        config = self.tmp_path / "genvault.toml"
        if not config.exists():
            self.configure()
        environ = {"SIM_KEY": KEY, **NETWORK, **self.env, **env}
        settings = load_settings(config, environ=environ)
        rt = Runtime.build(settings, resolve_secrets(settings, environ))
        try:
            self._track(rt)
            with capture_logs() as logs:
                report = run_once(rt, on_page=self.on_page)
            retries = sum(acc.provider.api.stats["retries"] for acc in rt.accounts.values())
        finally:
            rt.close()
        return Run(report, [dict(e) for e in logs], retries)

    def _track(self, rt: Runtime) -> None:
        """Register the task ids of a provider without a listing, like ``genvault track``
        before the first run."""
        ids: list[str] | None = getattr(self.sim, "task_ids", None)
        if ids and self.provider not in HISTORY and not self.tracked:
            self.tracked = True
            rt.store.register_tasks(
                provider=self.provider,
                account="main",
                items=[{"id": t} for t in ids],
                source="track",
                poll_horizon=rt.poll_horizon,
            )

    def run_until_quiet(self, max_runs: int = 6, **env: str) -> list[Run]:
        """Passes until nothing is left to poll or archive; between them every backoff
        ends (:func:`time_passes`), as before a CronJob's next run."""
        runs = []
        for _ in range(max_runs):
            runs.append(self.run(**env))
            polling, pending = self.outstanding()
            if polling == 0 and pending == 0:
                return runs
            time_passes(self.db)
        raise AssertionError(f"{self.provider}: not quiet after {max_runs} runs: {runs[-1]}")

    def outstanding(self) -> tuple[int, int]:
        store = Store(self.db)
        try:
            return store.outstanding_work()
        finally:
            store.dispose()

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(generations, assets) as stored."""
        store = Store(self.db)
        try:
            return store.generations(), store.assets()
        finally:
            store.dispose()

    def expected(self) -> dict[str, Any]:
        """The files genvault must archive (results, thumbnails, ...), keyed by URL."""
        now = datetime.now(UTC)
        return {
            url_key(f.url): f
            for f in self.sim.expected_media()
            if f.role != "reference" and (f.expires_at is None or f.expires_at > now)
        }

    def archived(self) -> set[str]:
        return {url_key(a["source_url"]) for a in self.rows()[1] if a["state"] == "archived"}

    def assert_all_archived(self) -> None:
        expected = self.expected()
        assert expected, self.provider
        missing = set(expected) - self.archived()
        assert not missing, f"{self.provider}: not archived: {sorted(missing)[:3]}"
        for asset in self.rows()[1]:
            exp = expected.get(url_key(asset["source_url"]))
            if exp is not None:
                data = (self.tmp_path / "archive" / asset["storage_key"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == exp.sha256, exp.url

    def api_requests(self) -> int:
        """API requests the simulator has seen (media downloads not counted)."""
        routes = self.sim.server.stats.snapshot()["routes"]
        return sum(n for route, n in routes.items() if route != "media")

    def stat(self, section: str, key: str) -> int:
        value: int = self.sim.server.stats.snapshot()[section].get(key, 0)
        return value


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    """``make(provider, **knobs)`` starts a small simulator; all are stopped afterwards."""
    started: list[Simulator] = []

    def _make(provider: str, **knobs: Any) -> Harness:
        sim = simulator_factory(provider)(api_key=KEY, seed=5, **{**SIM_KNOBS[provider], **knobs})
        sim.start()
        started.append(sim)
        return Harness(provider, sim, tmp_path)

    yield _make
    for sim in started:
        sim.stop()


# --------------------------------------------------------------------------- rate limits


def _http_date(seconds_ahead: float) -> str:
    return email.utils.format_datetime(
        datetime.now(UTC) + timedelta(seconds=seconds_ahead), usegmt=True
    )


@pytest.mark.parametrize("style", ["seconds", "http_date", "no_header"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_is_waited_out_and_the_run_archives_everything(
    make: Any, provider: str, style: str
) -> None:
    h = make(provider)
    h.env = {"GENVAULT_NETWORK__BACKOFF_CAP_SECONDS": "2"}  # 1-2 s are worth waiting for
    retry_after = {"seconds": "1", "http_date": _http_date(1.5), "no_header": None}[style]
    h.sim.faults.update(rate_limit_next=1, retry_after=retry_after)
    t0 = time.monotonic()
    first = h.run()
    took = time.monotonic() - t0
    assert first.exit_code == ExitCode.OK, first.report
    assert h.stat("statuses", "429") == 1
    assert first.retries >= 1
    assert not any(s.rate_limited for s in first.report.syncs)
    if style == "seconds":
        assert took >= 1.0, "Retry-After: 1 was not honoured"
    elif style == "http_date":
        assert took >= 0.4, "the HTTP-date Retry-After was not honoured"
    h.run_until_quiet()
    h.assert_all_archived()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_long_retry_after_ends_the_pass_early_and_the_next_run_completes(
    make: Any, provider: str
) -> None:
    """A Retry-After over ``network.backoff_cap_seconds`` means "quota exhausted": stop,
    keep what was done, exit 3 (the run is not complete, and says why); the pause
    outlives the run, then the next run completes and exits 0. At the default cap
    (60 s) a Retry-After of an hour; the hour passes through the store (the stored
    pause ends, every backoff is made due), never by waiting."""
    h = make(provider)
    h.configure(**SMALL_PAGES.get(provider, {}))
    default_cap = {"GENVAULT_NETWORK__BACKOFF_CAP_SECONDS": "60"}
    # the first request (a page, or a task) is answered, then the API rate-limits
    h.sim.faults.update(pass_next=1, rate_limit=True, retry_after="3600")
    first = h.run(**default_cap)
    assert first.exit_code == ExitCode.RETRYING, first.report
    assert any("rate limited" in why for why in first.report.incomplete), first.report
    assert h.stat("statuses", "429") >= 1
    limited = [s.rate_limited for s in first.report.syncs] + [
        p.rate_limited for p in first.report.polls
    ]
    assert any(limited), first.report
    partial = h.archived()
    if provider == "geminigen":
        # Every listed item awaits its detail read (fetch_detail = "always"), which the
        # rate limit held back: the answered page is kept, its files wait for the read.
        gens, assets = h.rows()
        assert gens and assets and not partial, (gens, assets)
    else:
        assert partial, "the answered request's files were not archived"
    assert partial < set(h.expected()), "the pass did not stop early"

    h.sim.faults.update(rate_limit=False, retry_after=None)
    requests = h.api_requests()
    during_pause = h.run(**default_cap)  # within the hour: not one API request
    assert h.api_requests() == requests
    assert during_pause.exit_code == ExitCode.RETRYING, during_pause.report

    quota_pause_ends(h.db)  # an hour later
    time_passes(h.db)
    runs = h.run_until_quiet(**default_cap)
    assert runs[0].exit_code == ExitCode.OK, runs[0].report
    h.assert_all_archived()


# --------------------------------------------------------------------------- 5xx, resets, timeouts


@pytest.mark.parametrize("provider", PROVIDERS)
def test_5xx_storm_is_retried_and_everything_is_archived(make: Any, provider: str) -> None:
    h = make(provider)
    h.sim.faults.update(fail_next=3, error_rate=0.3)
    runs = h.run_until_quiet()
    for r in runs:  # pipeline.py: 0 = all well, 3 = something failed and will be retried
        assert r.exit_code in (ExitCode.OK, ExitCode.RETRYING), r.report
        assert (r.exit_code == ExitCode.RETRYING) == (r.errors_counted > 0), r.report
    assert h.stat("faults", "fail_next") == 3
    assert sum(r.retries for r in runs) >= 3
    h.assert_all_archived()
    h.sim.faults.update(error_rate=0.0)
    assert h.run().exit_code == ExitCode.OK


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_resets_are_retried(make: Any, provider: str) -> None:
    h = make(provider)
    h.sim.faults.update(reset_next=3)
    first = h.run()
    assert first.exit_code == ExitCode.OK, first.report
    assert h.stat("faults", "reset_next") == 3
    assert first.retries >= 3
    h.run_until_quiet()
    h.assert_all_archived()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_read_timeouts_are_transient(make: Any, provider: str) -> None:
    """An API slower than ``network.read_timeout``: the pass gives up for now, nothing
    is marked failed, and once the API is fast again everything is archived."""
    h = make(provider, count=2)
    h.sim.faults.update(latency_s=0.4)
    first = h.run(GENVAULT_NETWORK__READ_TIMEOUT="0.15", GENVAULT_NETWORK__API_RETRIES="1")
    assert first.exit_code == ExitCode.RETRYING, first.report
    failures = first.events("sync.page_failed") + first.events("poll.failed")
    assert failures and all("timed out" in e["error"] for e in failures), failures
    assert first.retries >= 1
    gens, _ = h.rows()
    assert not [g for g in gens if g["status"] == "failed"], "a timeout is not a failure"

    h.sim.faults.update(latency_s=0.0)
    time_passes(h.db)  # the failed polls are due again
    runs = h.run_until_quiet()
    assert runs[-1].exit_code == ExitCode.OK, runs[-1].report
    h.assert_all_archived()


# --------------------------------------------------------------------------- malformed answers


@pytest.mark.parametrize("mode", ["html", "truncated", "wrong_types", "business_error"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_answers_are_counted_never_a_crash(make: Any, provider: str, mode: str) -> None:
    h = make(provider)
    h.sim.faults.update(malformed=mode)
    first = h.run()  # returns at all: no exception escaped the pass
    assert (first.exit_code == ExitCode.RETRYING) == (first.errors_counted > 0), first.report
    assert first.exit_code in (ExitCode.OK, ExitCode.RETRYING)
    failures = first.events("sync.page_failed") + first.events("poll.failed")
    if mode == "wrong_types":
        # The parsers coerce numbers-as-strings; whatever they still cannot read is logged.
        warned = [e for e in first.logs if e["log_level"] == "warning"]
        assert warned or not first.errors_counted, first.report
    else:
        assert first.exit_code == ExitCode.RETRYING, first.report
        assert failures, [e["event"] for e in first.logs]
        assert all(e["log_level"] == "warning" for e in failures)
    if mode == "business_error" and provider not in HISTORY:
        # The task's own error code: recorded as the reason, the run goes on.
        gens, _ = h.rows()
        message = {"akool": "image generate error", "quickrouter": "upstream request failed"}
        assert gens and all(message[provider] in (g["error"] or "") for g in gens), gens
        return

    h.sim.faults.update(malformed=None)
    time_passes(h.db)  # the failed polls are due again
    runs = h.run_until_quiet()
    assert runs[-1].exit_code == ExitCode.OK, runs[-1].report
    h.assert_all_archived()


@pytest.mark.parametrize("provider", HISTORY)
def test_one_bad_item_costs_only_that_item(make: Any, provider: str) -> None:
    """``bad_item`` spoils the first item of the first page; the rest must be archived."""
    h = make(provider)
    h.configure()

    def clear_after_first_page(_page: Page, _result: Any) -> None:
        h.sim.faults.update(malformed=None)  # only the first listing page is spoiled

    h.on_page = clear_after_first_page
    h.sim.faults.update(malformed="bad_item")
    first = h.run()
    assert h.stat("faults", "malformed:bad_item") == 1
    assert first.exit_code == ExitCode.RETRYING, first.report
    assert sum(s.item_errors for s in first.report.syncs) == 1
    assert not any(s.error for s in first.report.syncs)
    (unparsable,) = first.events("provider.item_unparsable")
    assert unparsable["provider"] == provider and unparsable["account"] == "main"

    expected = h.expected()
    by_generation: dict[str, set[str]] = {}
    for key, f in expected.items():
        by_generation.setdefault(f.generation_id, set()).add(key)
    gens, _ = h.rows()
    stored = {g["external_id"] for g in gens}
    missing = set(by_generation) - stored
    assert len(missing) == 1, f"exactly the spoiled item is missing, not {missing}"
    others = set().union(*(keys for gid, keys in by_generation.items() if gid not in missing))
    h.on_page = None
    assert others <= h.archived(), "the good items of the page were not archived"

    # The listing is read again (its newest page overlaps the watermark): the item,
    # fine now, is picked up and archived too.
    runs = h.run_until_quiet()
    assert runs[-1].exit_code == ExitCode.OK, runs[-1].report
    h.assert_all_archived()


# --------------------------------------------------------------------------- the CLI


def test_cli_exits_3_with_json_logs_not_a_traceback(make: Any, tmp_path: Path) -> None:
    """Five accounts, every API answering truncated JSON: one process, exit 3, and
    every stderr line is a JSON log event (a crash would print a traceback)."""
    harnesses = {name: make(name, count=2) for name in PROVIDERS}
    accounts = [sim_account(h.sim, "SIM_KEY", name=name) for name, h in harnesses.items()]
    config = write_config(
        tmp_path / "cli.toml",
        db_url=f"sqlite:///{tmp_path / 'cli.db'}",
        storage_url=f"file://{tmp_path / 'cli-archive'}",
        accounts=accounts,
    )
    env = {"SIM_KEY": KEY, **NETWORK, "GENVAULT_NETWORK__API_RETRIES": "0"}
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        store.upgrade()
        for name in PROVIDERS:
            ids = getattr(harnesses[name].sim, "task_ids", None)
            if ids and name not in HISTORY:  # what ``genvault track`` does
                store.register_tasks(
                    provider=name,
                    account=name,
                    items=[{"id": t} for t in ids],
                    source="track",
                    poll_horizon=timedelta(hours=48),
                )
            harnesses[name].sim.faults.update(malformed="truncated")
    finally:
        store.dispose()
    proc = genvault("--config", str(config), "--log-format", "json", "run", "--once", env=env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    failures = [e for e in lines if e["event"] in ("sync.page_failed", "poll.failed")]
    assert {e["account"] for e in failures} == set(PROVIDERS)
    assert all("MalformedResponseError" in e["error"] for e in failures), failures
    (done,) = [e for e in lines if e["event"] == "run.done"]
    assert done["exit_code"] == 3
