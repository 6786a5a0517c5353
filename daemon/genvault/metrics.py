"""Prometheus metrics: ``GET /metrics`` of the daemon and ``run --once --metrics-file``.

Three sources make one exposition:

* **process counters** (:class:`ProcessMetrics`): provider requests by status,
  retries, files archived/lost, job durations. Each :class:`~genvault.runtime.Runtime`
  owns one ``CollectorRegistry``, never prometheus_client's global one: tests (and
  the demo) build several runtimes in one process, and a second registration of
  the same name in the global registry raises. They are fed by hooks: the API
  client's ``on_response``/``on_retry``, the media download's ``on_status``, the
  archive loop and the job wrappers (:func:`timed_job`).
* **gauges read from the database at scrape time** (:class:`DatabaseCollector`,
  registered in the same registry): assets by state, stored bytes, files at risk,
  the earliest pending deadline, last sync, circuit state, and completeness per
  history stream (``genvault_stream_*``, labels account and stream: the figures of
  :mod:`genvault.store.queries.streams`). Every replica reports
  the same backlog and a restarted process is right at once. When the database
  cannot be read the scrape still answers, with ``genvault_database_up 0`` and the
  process counters: Prometheus alerts on the gauge, not on a failed scrape.
* **the HTTP server's counters** (intake and webhook acceptances and refusals),
  handed to :func:`exposition` with each scrape and rendered by
  :mod:`genvault.httpd.counters`.

**Job outcomes** (:class:`JobOutcome`). A job run *succeeded* when it ran without
an exception and its result reports nothing that would make ``run --once`` exit
non-zero: no provider call or item failed, the provider's circuit was not open,
no file failed, was lost or waits for a retry. A rate-limited pass that saved
partial progress is a success (``run --once`` exits 0 on it too). A pass another
replica did is ``skipped`` (no duration, no success time: this process did not
do it). Only a success moves ``genvault_job_last_success_timestamp_seconds``, so
"no success for N minutes" is the alert for a job that keeps running but fails.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from genvault import __version__
from genvault.logs import get_logger
from genvault.models import utcnow
from genvault.net.throttle import CircuitState
from genvault.records import AssetState, GenerationStatus
from genvault.storage.guard import STORAGE_HEALTH_KEY

if TYPE_CHECKING:  # prometheus_client is imported where used: see UnreadMetrics
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from genvault.runtime import AccountRuntime, Runtime
    from genvault.store.queries.metrics import MetricsSnapshot

log = get_logger("genvault.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Text format 0.0.4: what every Prometheus (2.x and 3.x) and node_exporter read."""
ALL_ACCOUNTS = "all"
"""The ``account`` label of the archive job, which serves every account at once."""
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
"""Job durations: an idle poll takes milliseconds, a first sync or a backlog an hour."""
CIRCUIT_VALUES: Mapping[CircuitState, int] = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
}
"""``genvault_provider_circuit_state``: ordered by trouble, so ``max`` and ``> 0`` make sense."""


class JobName(enum.StrEnum):
    SYNC = "sync"
    POLL = "poll"
    ARCHIVE = "archive"


class JobOutcome(enum.StrEnum):
    """How one job run ended (the rule is in the module docstring)."""

    SUCCESS = "success"
    FAILED = "failed"
    """It ran, and its result reports an error (``run --once`` would exit 3 or 4 for it)."""
    SKIPPED = "skipped"
    """Another replica holds this pass: nothing was done here."""
    CRASHED = "crashed"
    """It raised: a bug, or the database went away mid-pass."""


class JobReport(Protocol):
    """What a job returns: its result knows its own outcome."""

    @property
    def outcome(self) -> JobOutcome: ...


R = TypeVar("R", bound=JobReport)


def status_label(status: int) -> str:
    """An HTTP status as a label value; 0 (no response: timeout, reset, refused) is ``error``."""
    return str(status) if status > 0 else "error"


# --------------------------------------------------------------------------- process counters


class ProcessMetrics:
    """Counters and histograms of this process, in a registry of its own.

    Every method is thread-safe (prometheus_client's are) and cheap: they are
    called from API client threads, archive workers and job threads.
    """

    def __init__(self) -> None:
        import prometheus_client as prom

        # ``*_created`` series double every counter and nobody queries them; this process
        # is the only user of prometheus_client, so switching them off globally is ours.
        prom.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.provider_requests = prom.Counter(
            "genvault_provider_requests_total",
            'Provider API responses by HTTP status ("error": no response at all: '
            "timeout, reset, refused connection). Every attempt counts, retries included.",
            ["account", "status"],
            registry=r,
        )
        self.provider_retries = prom.Counter(
            "genvault_provider_retries_total",
            "Provider API attempts repeated after a transient failure (5xx, 429, timeout).",
            ["account"],
            registry=r,
        )
        self.media_responses = prom.Counter(
            "genvault_media_responses_total",
            "Responses of media URLs (CDNs) by HTTP status, Range resumes included.",
            ["account", "status"],
            registry=r,
        )
        self.archived_files = prom.Counter(
            "genvault_archived_files_total",
            "Files downloaded, verified and stored by this process.",
            ["account"],
            registry=r,
        )
        self.archived_bytes = prom.Counter(
            "genvault_archived_bytes_total",
            "Bytes of the files this process stored.",
            ["account"],
            registry=r,
        )
        self.lost_files = prom.Counter(
            "genvault_lost_files_total",
            "Files this process found lost: their deadline passed before they were saved.",
            ["account"],
            registry=r,
        )
        self.failed_files = prom.Counter(
            "genvault_failed_files_total",
            "Files this process gave up on before their deadline (too big, not media, "
            "archive.max_attempts reached).",
            ["account"],
            registry=r,
        )
        self.download_retries = prom.Counter(
            "genvault_download_retries_total",
            "Downloads that went back to the queue to be tried again (a transient "
            "failure, a refreshed URL, a shutdown mid-download).",
            ["account"],
            registry=r,
        )
        self.storage_failures = prom.Counter(
            "genvault_storage_failures_total",
            "Writes to the archive storage that failed (each is followed by a probe: "
            "storage down opens the storage circuit; the file is retried either way).",
            registry=r,
        )
        self.job_runs = prom.Counter(
            "genvault_job_runs_total",
            "Job runs by outcome: success, failed (the result reports an error), "
            "skipped (another replica did it), crashed (it raised).",
            ["job", "account", "outcome"],
            registry=r,
        )
        self.job_duration = prom.Histogram(
            "genvault_job_duration_seconds",
            'Wall time of job runs that were not skipped (archive: account="all").',
            ["job", "account"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_last_success = prom.Gauge(
            "genvault_job_last_success_timestamp_seconds",
            "Unix time the job last ran without error in this process.",
            ["job", "account"],
            registry=r,
        )
        prom.Gauge(
            "genvault_build_info", "The running genvault version.", ["version"], registry=r
        ).labels(__version__).set(1)

    def prepare(self, accounts: Iterable[str]) -> None:
        """Create the per-account series at zero, so ``rate()`` sees the first increment
        and a textfile of a quiet run still lists every account."""
        for account in accounts:
            for counter in (
                self.provider_retries,
                self.archived_files,
                self.archived_bytes,
                self.lost_files,
                self.failed_files,
                self.download_retries,
            ):
                counter.labels(account)

    # ------------------------------------------------------------------ hooks

    def provider_response(self, account: str, status: int) -> None:
        """``ApiClient.on_response``: one HTTP attempt's status (0: no response)."""
        self.provider_requests.labels(account, status_label(status)).inc()

    def provider_retry(self, account: str) -> None:
        """``ApiClient.on_retry``: an attempt is about to be repeated."""
        self.provider_retries.labels(account).inc()

    def media_response(self, account: str, status: int) -> None:
        """``open_media(on_status=...)``: one media response's status."""
        self.media_responses.labels(account, status_label(status)).inc()

    def file_finished(self, account: str, state: AssetState, size: int | None) -> None:
        """One archive outcome, as the archive loop records it (pending: back in the queue)."""
        if state is AssetState.ARCHIVED:
            self.archived_files.labels(account).inc()
            self.archived_bytes.labels(account).inc(size or 0)
        elif state is AssetState.LOST:
            self.lost_files.labels(account).inc()
        elif state is AssetState.FAILED:
            self.failed_files.labels(account).inc()
        elif state is AssetState.PENDING:
            self.download_retries.labels(account).inc()

    def storage_failed(self) -> None:
        """An archive worker's write to storage raised StorageError."""
        self.storage_failures.inc()

    def job_finished(self, job: JobName, account: str, seconds: float, outcome: JobOutcome) -> None:
        """One job run: its outcome always, its duration unless skipped, success time."""
        self.job_runs.labels(job.value, account, outcome.value).inc()
        if outcome is JobOutcome.SKIPPED:
            return
        self.job_duration.labels(job.value, account).observe(seconds)
        if outcome is JobOutcome.SUCCESS:
            self.job_last_success.labels(job.value, account).set(time.time())

    def watch_database(self, rt: Runtime) -> None:
        """Register the scrape-time gauges of ``rt``'s database in this registry."""
        self.registry.register(cast("Collector", DatabaseCollector(rt)))


def _record_nothing(*_args: object, **_kwargs: object) -> None:
    """Every hook of :class:`UnreadMetrics`."""


class UnreadMetrics(ProcessMetrics):
    """The hooks of :class:`ProcessMetrics`, recording nothing: ``run --once`` without
    ``--metrics-file`` has no reader for its counters, and prometheus_client (with
    ``http.server``, ~7 ms) was imported for them on every cron start. No ``registry``
    (``tests/unit/test_metrics.py`` checks that every hook is here)."""

    def __init__(self) -> None:
        """No registry, no prometheus_client."""

    prepare = provider_response = provider_retry = media_response = staticmethod(_record_nothing)
    file_finished = storage_failed = job_finished = watch_database = staticmethod(_record_nothing)


def timed_job(metrics: ProcessMetrics, job: JobName, account: str, fn: Callable[[], R]) -> R:
    """Run one job pass and record its duration and outcome; exceptions pass through
    (recorded as ``crashed``) for the caller to log its own way."""
    started = time.monotonic()
    try:
        result = fn()
    except Exception:
        metrics.job_finished(job, account, time.monotonic() - started, JobOutcome.CRASHED)
        raise
    metrics.job_finished(job, account, time.monotonic() - started, result.outcome)
    return result


# --------------------------------------------------------------------------- database gauges


def circuit_state(acc: AccountRuntime, stored: str | None) -> CircuitState:
    """The circuit this process acts on, or the stored one if it has not looked yet.

    Once the guard restored the table's state or made a call, memory is the truth
    for this process (it is what refuses or lets calls through). Before that, a
    replica that never called the provider reports what the table says.
    """
    guard = acc.guard
    if guard.restored or stored is None:
        return guard.breaker.state
    try:
        return CircuitState(stored)
    except ValueError:  # written by a newer genvault: assume nothing
        return CircuitState.CLOSED


class DatabaseCollector:
    """Gauges read at scrape time: a few grouped queries (:mod:`genvault.store.queries.metrics`).
    A ``Collector`` by its methods, not its base: see :class:`UnreadMetrics`."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not query the database (names are unique anyway)."""
        return ()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        rt = self._rt
        now = utcnow()
        started = time.monotonic()
        configured = configured_streams(rt)
        snap: MetricsSnapshot | None
        try:
            snap = rt.store.metrics_snapshot(
                at_risk_within=timedelta(hours=rt.settings.metrics.at_risk_hours),
                now=now,
                configured=configured,
            )
        except Exception as exc:  # never a failed scrape: the up gauge says it
            # The type only: a driver's message may quote the SQL or the server address.
            log.warning("metrics.database_unavailable", error=type(exc).__name__)
            snap = None
        up = GaugeMetricFamily(
            "genvault_database_up", "1 when this scrape could read the database, 0 when not."
        )
        up.add_metric([], 1 if snap is not None else 0)
        yield up
        took = GaugeMetricFamily(
            "genvault_database_scrape_seconds", "Time the database queries of this scrape took."
        )
        took.add_metric([], time.monotonic() - started)
        yield took
        yield from _database_families(snap, sorted(rt.accounts), now.timestamp())
        yield from _stream_families(snap)
        circuit = GaugeMetricFamily(
            "genvault_provider_circuit_state",
            "Provider circuit breaker: 0 closed, 1 half-open (a trial call may go), "
            "2 open (calls refused until the cooldown ends).",
            labels=["account"],
        )
        stored = snap.circuits if snap is not None else {}
        for name, acc in sorted(rt.accounts.items()):
            circuit.add_metric([name], CIRCUIT_VALUES[circuit_state(acc, stored.get(name))])
        yield circuit
        storage = GaugeMetricFamily(
            "genvault_storage_circuit_state",
            "Storage circuit breaker: 0 closed, 1 half-open (a probe is in flight), "
            "2 open (storage failed its probe: archiving paused until a probe succeeds).",
        )
        storage.add_metric(
            [], CIRCUIT_VALUES[storage_circuit_state(rt, stored.get(STORAGE_HEALTH_KEY))]
        )
        yield storage


def storage_circuit_state(rt: Runtime, stored: str | None) -> CircuitState:
    """The storage breaker as this process knows it once it probed, else as stored (by a
    replica that did, or this process's previous run)."""
    guard = rt.storage_guard
    if guard.checked or stored is None:
        return guard.state
    try:
        return CircuitState(stored)
    except ValueError:
        return CircuitState.CLOSED


def _database_families(
    snap: MetricsSnapshot | None, configured: list[str], now: float
) -> Iterator[Metric]:
    """The gauges of one snapshot; empty families (no samples) when the database is down.

    Every configured account gets every state at zero, so ``genvault_assets{state="lost"}``
    exists before the first loss and an alert on it never waits for a first sample.
    """
    from prometheus_client.metrics_core import GaugeMetricFamily

    assets = GaugeMetricFamily(
        "genvault_assets", "Files by archive state (database).", labels=["account", "state"]
    )
    stored = GaugeMetricFamily(
        "genvault_stored_bytes", "Bytes of archived files (database).", labels=["account"]
    )
    at_risk = GaugeMetricFamily(
        "genvault_assets_at_risk",
        "Pending files whose deadline is within metrics.at_risk_hours, overdue ones included.",
        labels=["account"],
    )
    earliest = GaugeMetricFamily(
        "genvault_earliest_pending_deadline_seconds",
        "Seconds until the earliest deadline of a pending file (negative: overdue; "
        "absent: nothing pending).",
        labels=["account"],
    )
    generations = GaugeMetricFamily(
        "genvault_generations",
        "Generations (tasks) by status (database).",
        labels=["account", "status"],
    )
    last_sync = GaugeMetricFamily(
        "genvault_last_sync_timestamp_seconds",
        "Unix time an account's last history walk completed (any replica).",
        labels=["account"],
    )
    if snap is not None:
        accounts = sorted(
            set(configured)
            | {a for a, _ in snap.assets}
            | {a for a, _ in snap.generations}
            | set(snap.last_sync)
        )
        for account in accounts:
            for state in AssetState:
                assets.add_metric([account, state.value], snap.assets.get((account, state), 0))
            stored.add_metric([account], snap.stored_bytes.get(account, 0))
            at_risk.add_metric([account], snap.at_risk.get(account, 0))
            for status in GenerationStatus:
                generations.add_metric(
                    [account, status.value], snap.generations.get((account, status), 0)
                )
            if account in snap.earliest_deadline:
                earliest.add_metric([account], snap.earliest_deadline[account].timestamp() - now)
            if account in snap.last_sync:
                last_sync.add_metric([account], snap.last_sync[account].timestamp())
        # States or statuses a newer genvault wrote: shown as they are, not dropped.
        known_states = {s.value for s in AssetState}
        for (account, raw_state), count in snap.assets.items():
            if raw_state not in known_states:
                assets.add_metric([account, raw_state], count)
        known_statuses = {s.value for s in GenerationStatus}
        for (account, raw_status), count in snap.generations.items():
            if raw_status not in known_statuses:
                generations.add_metric([account, raw_status], count)
    yield from (assets, stored, at_risk, earliest, generations, last_sync)


def configured_streams(rt: Runtime) -> dict[str, tuple[str, ...]]:
    """Each configured account's history streams (its provider's ``streams()``)."""
    return {name: tuple(acc.provider.streams()) for name, acc in rt.accounts.items()}


STREAM_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "listed",
        "genvault_stream_listed",
        "Items the stream's last complete full walk listed (absent before the first one).",
    ),
    ("known", "genvault_stream_known", "Generations of the stream not gone at the provider."),
    ("archived", "genvault_stream_archived_files", "Archived files of the stream's generations."),
    ("pending", "genvault_stream_pending_files", "Pending files of the stream's generations."),
    (
        "missing",
        "genvault_stream_missing",
        "Failed or lost files of the stream's generations still listed: what the archive "
        "should hold and will not on its own.",
    ),
    (
        "gone_before_capture",
        "genvault_stream_gone_before_capture",
        "Files (neither archived nor skipped) of generations a complete full walk found "
        "gone at the provider.",
    ),
)
"""(StreamReport field, gauge, help) of the per-stream counts."""


def _stream_families(snap: MetricsSnapshot | None) -> Iterator[Metric]:
    """Completeness per (account, stream); ``stream="(tracked)"``: generations known by id.

    A stream the configuration no longer lists (retired) keeps its counts and its
    ``complete`` (nothing missing), but reports no sync error and no walk times, so
    the walk-age alerts do not fire for a workflow someone removed on purpose. Empty
    families when the database is down, like the other database gauges.
    """
    from prometheus_client.metrics_core import GaugeMetricFamily

    labels = ["account", "stream"]
    counts = [
        (attr, GaugeMetricFamily(name, doc, labels=labels)) for attr, name, doc in STREAM_GAUGES
    ]
    complete = GaugeMetricFamily(
        "genvault_stream_complete",
        "1 when the stream's last walk was complete, it has no sync error and nothing is "
        "missing (tracked and retired streams: nothing missing); else 0.",
        labels=labels,
    )
    error = GaugeMetricFamily(
        "genvault_stream_sync_error",
        "1 while the stream's last sync attempt failed (status names the error), else 0.",
        labels=labels,
    )
    walked = GaugeMetricFamily(
        "genvault_stream_last_complete_walk_timestamp_seconds",
        "Unix time the stream's last complete walk (any kind) ended; absent: never.",
        labels=labels,
    )
    full = GaugeMetricFamily(
        "genvault_stream_last_full_walk_timestamp_seconds",
        "Unix time the stream's last complete full walk (the reconciliation) ended; absent: never.",
        labels=labels,
    )
    for s in snap.streams if snap is not None else ():
        key = [s.account, s.stream]
        for attr, family in counts:
            n = getattr(s, attr)
            if n is not None:
                family.add_metric(key, n)
        complete.add_metric(key, 1 if s.complete else 0)
        error.add_metric(key, 1 if s.error and not s.retired else 0)
        if s.retired:  # no longer walked: its walk times would only grow old and alert
            continue
        if s.last_complete_walk_at is not None:
            walked.add_metric(key, s.last_complete_walk_at.timestamp())
        if s.last_full_walk_at is not None:
            full.add_metric(key, s.last_full_walk_at.timestamp())
    yield from (family for _, family in counts)
    yield from (complete, error, walked, full)


class Scrape:
    """One exposition: the runtime's registry plus the server's counters."""

    def __init__(self, registry: CollectorRegistry, server_counters: Mapping[str, int]) -> None:
        self._registry = registry
        self._counters = server_counters

    def collect(self) -> Iterator[Metric]:
        from genvault.httpd.counters import server_families

        yield from self._registry.collect()
        yield from server_families(self._counters)


def exposition(rt: Runtime, server_counters: dict[str, int]) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type (Prometheus text format).

    Never raises for a database problem: that is ``genvault_database_up 0``.
    """
    from prometheus_client import generate_latest

    scrape = cast("CollectorRegistry", Scrape(rt.metrics.registry, server_counters))
    return generate_latest(scrape), CONTENT_TYPE


__all__ = [
    "CONTENT_TYPE",
    "DatabaseCollector",
    "JobName",
    "JobOutcome",
    "ProcessMetrics",
    "Scrape",
    "UnreadMetrics",
    "exposition",
    "timed_job",
]
