"""genvault.metrics without a network: what the registry holds after events, the
circuit-state mapping, the server counters' families and the textfile's atomic write."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from genvault import __version__
from genvault.config import NetworkSettings, Settings
from genvault.httpd.counters import server_families
from genvault.metrics import (
    CIRCUIT_VALUES,
    CONTENT_TYPE,
    JobName,
    JobOutcome,
    ProcessMetrics,
    UnreadMetrics,
    circuit_state,
    status_label,
    timed_job,
)
from genvault.net.throttle import (
    Admission,
    CallOutcome,
    CircuitState,
    HealthSnapshot,
    ProviderGuard,
)
from genvault.records import AssetState
from genvault.runtime import AccountRuntime, Runtime
from genvault.textfile import write_textfile

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(m: ProcessMetrics) -> Samples:
    return samples(generate_latest(m.registry).decode())


@pytest.fixture
def metrics() -> ProcessMetrics:
    m = ProcessMetrics()
    m.prepare(["main", "other"])
    return m


def test_unread_metrics_replace_every_hook_and_need_no_prometheus_client() -> None:
    """``run --once`` without ``--metrics-file`` records nothing (:class:`UnreadMetrics`):
    a hook added to :class:`ProcessMetrics` and not replaced there would reach, mid-run,
    a counter that an unread runtime never made."""
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    hooks = {n for n, v in vars(ProcessMetrics).items() if callable(v) and n[0] != "_"}
    assert hooks and hooks <= set(vars(UnreadMetrics))
    unread = UnreadMetrics()
    unread.prepare(["main"])
    unread.provider_response("main", 200)
    unread.file_finished("main", AssetState.ARCHIVED, 10)
    unread.job_finished(JobName.SYNC, "main", 0.1, JobOutcome.SUCCESS)
    assert not hasattr(unread, "registry")
    assert CONTENT_TYPE == CONTENT_TYPE_PLAIN_0_0_4  # written out: no import to know it


def test_two_registries_in_one_process_do_not_collide_or_share() -> None:
    a, b = ProcessMetrics(), ProcessMetrics()  # the global registry would raise here
    a.provider_response("main", 200)
    assert value(scrape(a), "genvault_provider_requests_total", account="main", status="200") == 1
    assert (
        value(scrape(b), "genvault_provider_requests_total", account="main", status="200") is None
    )


def test_prepared_accounts_start_at_zero_without_created_series(metrics: ProcessMetrics) -> None:
    found = scrape(metrics)
    for name in (
        "genvault_archived_files_total",
        "genvault_archived_bytes_total",
        "genvault_lost_files_total",
        "genvault_failed_files_total",
        "genvault_download_retries_total",
        "genvault_provider_retries_total",
    ):
        assert value(found, name, account="other") == 0, name
    assert not [k for k in found if k[0].endswith("_created")]
    assert value(found, "genvault_build_info", version=__version__) == 1


def test_provider_responses_retries_and_media_by_status(metrics: ProcessMetrics) -> None:
    for status in (200, 200, 429, 503, 0):
        metrics.provider_response("main", status)
    metrics.provider_retry("main")
    metrics.provider_retry("main")
    metrics.media_response("main", 206)
    found = scrape(metrics)
    for status, count in (("200", 2), ("429", 1), ("503", 1), ("error", 1)):
        got = value(found, "genvault_provider_requests_total", account="main", status=status)
        assert got == count, status
    assert value(found, "genvault_provider_retries_total", account="main") == 2
    assert value(found, "genvault_provider_retries_total", account="other") == 0
    assert value(found, "genvault_media_responses_total", account="main", status="206") == 1
    assert status_label(0) == "error" and status_label(404) == "404"


def test_file_outcomes_feed_their_counters(metrics: ProcessMetrics) -> None:
    metrics.file_finished("main", AssetState.ARCHIVED, 1000)
    metrics.file_finished("main", AssetState.ARCHIVED, 24)
    metrics.file_finished("main", AssetState.LOST, None)
    metrics.file_finished("other", AssetState.FAILED, None)
    metrics.file_finished("other", AssetState.PENDING, None)
    found = scrape(metrics)
    assert value(found, "genvault_archived_files_total", account="main") == 2
    assert value(found, "genvault_archived_bytes_total", account="main") == 1024
    assert value(found, "genvault_lost_files_total", account="main") == 1
    assert value(found, "genvault_failed_files_total", account="other") == 1
    assert value(found, "genvault_download_retries_total", account="other") == 1
    assert value(found, "genvault_archived_files_total", account="other") == 0


def _result(outcome: JobOutcome) -> Any:
    """A job's result as the recorder sees it: only its ``outcome``."""
    return SimpleNamespace(outcome=outcome)


def test_job_outcomes_durations_and_last_success(metrics: ProcessMetrics) -> None:
    before = time.time()
    timed_job(metrics, JobName.SYNC, "main", lambda: _result(JobOutcome.SUCCESS))
    timed_job(metrics, JobName.SYNC, "main", lambda: _result(JobOutcome.FAILED))
    timed_job(metrics, JobName.POLL, "main", lambda: _result(JobOutcome.SKIPPED))
    timed_job(metrics, JobName.POLL, "main", lambda: _result(JobOutcome.FAILED))

    def boom() -> Any:
        time.sleep(0.02)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        timed_job(metrics, JobName.ARCHIVE, "all", boom)
    found = scrape(metrics)
    runs = "genvault_job_runs_total"
    assert value(found, runs, job="sync", account="main", outcome="success") == 1
    assert value(found, runs, job="sync", account="main", outcome="failed") == 1
    assert value(found, runs, job="poll", account="main", outcome="skipped") == 1
    assert value(found, runs, job="archive", account="all", outcome="crashed") == 1
    # a skipped run has no duration: this process did not do it
    assert value(found, "genvault_job_duration_seconds_count", job="sync", account="main") == 2
    assert value(found, "genvault_job_duration_seconds_count", job="poll", account="main") == 1
    crashed = value(found, "genvault_job_duration_seconds_sum", job="archive", account="all")
    assert crashed is not None and crashed >= 0.02
    # only a success moves the last-success time
    last = "genvault_job_last_success_timestamp_seconds"
    stamp = value(found, last, job="sync", account="main")
    assert stamp is not None and before <= stamp <= time.time()
    assert value(found, last, job="poll", account="main") is None
    assert value(found, last, job="archive", account="all") is None


# --------------------------------------------------------------------------- circuit state


def _account(guard: ProviderGuard) -> AccountRuntime:
    """Only ``guard`` is read: a real guard in a minimal account."""
    return cast(AccountRuntime, SimpleNamespace(guard=guard))


def _guard(failures: int = 1, cooldown: float = 60.0) -> ProviderGuard:
    return ProviderGuard(
        NetworkSettings(breaker_failures=failures, breaker_cooldown_seconds=cooldown),
        name="main",
    )


def test_circuit_values_are_ordered_by_trouble() -> None:
    assert [CIRCUIT_VALUES[s] for s in CircuitState] == [0, 2, 1]  # closed, open, half_open
    assert set(CIRCUIT_VALUES) == set(CircuitState)


def test_circuit_state_prefers_this_process_once_it_has_looked() -> None:
    guard = _guard()
    acc = _account(guard)
    # a replica that never called the provider reports what the table says
    assert circuit_state(acc, None) is CircuitState.CLOSED
    assert circuit_state(acc, "open") is CircuitState.OPEN
    assert circuit_state(acc, "half_open") is CircuitState.HALF_OPEN
    assert circuit_state(acc, "from-a-newer-genvault") is CircuitState.CLOSED
    # once the guard took the stored state over, memory is the truth
    guard.restore(HealthSnapshot())
    assert circuit_state(acc, "open") is CircuitState.CLOSED


def test_circuit_state_follows_the_breaker_through_open_and_half_open() -> None:
    guard = _guard(failures=1, cooldown=0.05)
    acc = _account(guard)
    admission = guard.breaker.admit()
    guard.breaker.record(admission, CallOutcome.DOWN, "HTTP 503")
    assert circuit_state(acc, "closed") is CircuitState.OPEN  # a stale row loses
    time.sleep(0.06)
    assert guard.breaker.admit() is Admission.TRIAL
    assert circuit_state(acc, None) is CircuitState.HALF_OPEN
    guard.breaker.record(Admission.TRIAL, CallOutcome.OK)
    assert circuit_state(acc, "open") is CircuitState.CLOSED


# --------------------------------------------------------------------------- server counters


def test_server_counters_become_request_and_id_families() -> None:
    families = server_families(
        {
            "intake.accepted": 3,
            "intake.refused.bad_token": 2,
            "webhook.refused.bad_signature": 1,
            "http.refused.busy": 4,
            "intake.ids_new": 7,
            "intake.ids_known": 1,
            "webhook.accepted": 5,
            "webhook.ids": 6,
        }
    )
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    req = "genvault_http_requests_total"
    ids = "genvault_registered_ids_total"

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted(labels.items()))

    assert got == {
        key(req, endpoint="intake", outcome="accepted", reason=""): 3,
        key(req, endpoint="intake", outcome="refused", reason="bad_token"): 2,
        key(req, endpoint="webhook", outcome="refused", reason="bad_signature"): 1,
        key(req, endpoint="http", outcome="refused", reason="busy"): 4,
        key(req, endpoint="webhook", outcome="accepted", reason=""): 5,
        key(ids, endpoint="intake", result="new"): 7,
        key(ids, endpoint="intake", result="known"): 1,
        key(ids, endpoint="webhook", result="received"): 6,
    }


# --------------------------------------------------------------------------- textfile


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'gv.db'}"},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "server": {"enabled": False},
            "accounts": [
                {
                    "name": "main",
                    "provider": "geminigen",
                    "api_key_env": "GG",
                    "base_url": "http://127.0.0.1:9/uapi/v1",  # never called here
                }
            ],
        }
    )
    rt = Runtime.build(settings, {"main": SecretStr("gg-unit-key-0042")})
    try:
        yield rt
    finally:
        rt.close()


def test_textfile_is_replaced_by_rename_and_leaves_no_temp_file(
    runtime: Runtime, tmp_path: Path
) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    target = out / "genvault.prom"
    target.write_text("# stale content of the last run\n" * 1000)
    old_inode = target.stat().st_ino
    runtime.metrics.file_finished("main", AssetState.ARCHIVED, 512)

    write_textfile(runtime, target)

    assert os.listdir(out) == ["genvault.prom"]  # the temp file was renamed, not left
    assert target.stat().st_ino != old_inode  # a new file took the name: never half-written
    found = samples(target.read_text())
    assert value(found, "genvault_archived_bytes_total", account="main") == 512
    assert value(found, "genvault_database_up") == 1
    assert value(found, "genvault_assets", account="main", state="pending") == 0
    assert "stale content" not in target.read_text()


def test_textfile_that_cannot_be_written_is_logged_not_raised(
    runtime: Runtime, tmp_path: Path, info_json_log: io.StringIO
) -> None:
    locked = tmp_path / "no-such-dir" / "genvault.prom"
    write_textfile(runtime, locked)  # must not raise: the run's exit code reports the archive
    assert not locked.parent.exists()
    events = [json.loads(line) for line in info_json_log.getvalue().splitlines()]
    [failed] = [e for e in events if e["event"] == "metrics.write_failed"]
    assert failed["level"] == "error" and failed["path"] == str(locked)
    assert "FileNotFoundError" in failed["error"]
