"""``genvault run``: the long-running daemon on APScheduler 3.

Jobs: one sync and one poll per account, one archive job for all accounts;
each on an interval with jitter, ``coalesce=True`` and ``max_instances=1`` so a
slow pass never piles up behind itself. The first run of each starts at once.

Shutdown (SIGTERM from systemd or Kubernetes, SIGINT from a terminal): the
``stop`` event is set, jobs stop taking new work, in-flight downloads get
``schedule.shutdown_grace_seconds`` to finish, unfinished ones are released
(their leases cleared, so the next process takes them at once), exit 0.

With ``[server] enabled`` (the default) the HTTP server (:mod:`genvault.server`)
starts before the scheduler and stops after it, so a probe never sees a live
scheduler without its endpoint, and webhooks are accepted while jobs drain. A
webhook wakes the account's poll job at once instead of waiting for its interval.

APScheduler's in-memory job store is private to this process on purpose:
multi-replica safety lives in genvault's own tables (leases), never in a
shared APScheduler job store.

Logs and metrics: each job run writes exactly one line at info (``job.sync``,
``job.poll``, ``job.archive`` from the job itself; ``sync.skipped``/``poll.skipped``
when another replica or an open circuit kept it from running), and
:func:`_guarded` records its duration and outcome (:mod:`genvault.metrics`).
APScheduler's own chatter stays below info: its "Running job" lines are INFO on
a logger held at WARNING, and "maximum number of running instances reached" is
expected with ``max_instances=1`` (a pass that outlasts its interval), so
:mod:`genvault.logs` demotes it to debug.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from genvault.config import resolve_server_token
from genvault.jobs.archive import archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import SyncResult, sync_account
from genvault.logs import get_logger, register_secret
from genvault.metrics import ALL_ACCOUNTS, JobName, JobReport, timed_job
from genvault.notify import notify_after_pass
from genvault.runtime import AccountRuntime, Runtime
from genvault.sdnotify import Notifier
from genvault.server import ApiServer

log = get_logger("genvault.scheduler")


def _guarded(
    rt: Runtime, job: JobName, account: str, fn: Callable[[], JobReport]
) -> Callable[[], None]:
    """A job body that logs instead of raising: one bad pass never stops the schedule.

    Every run's duration and outcome go to the runtime's metrics (a crash too).
    """

    def run() -> None:
        try:
            timed_job(rt.metrics, job, account, fn)
        except Exception:
            log.exception("job.crashed", job=job.value, account=account)

    return run


def _sync(
    rt: Runtime, acc: AccountRuntime, stop: threading.Event, sched: BackgroundScheduler
) -> SyncResult:
    """The sync job: a sync pass, then the account's poll job at once if it saved
    generations: what it saved may await a read (a task still running, a detail read),
    and their files are not leased until that read (``store/leases.py``)."""
    result = sync_account(rt, acc, stop=stop)
    if (result.new or result.changed) and not stop.is_set():
        # From a thread of its own: ``modify_job`` waits for the scheduler's job-store
        # lock, which a shutdown in progress can hold while it waits for this very
        # job to end (a deadlock a SIGTERM during a sync met, 2 of 3 times).
        threading.Thread(target=poll_now, args=(sched, acc.name), daemon=True).start()
    return result


def build_scheduler(rt: Runtime, stop: threading.Event) -> BackgroundScheduler:
    sched = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max(4, 2 * len(rt.accounts) + 1))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        timezone=UTC,
    )
    s = rt.settings.schedule
    now = datetime.now(UTC)
    for acc in rt.accounts.values():
        if acc.provider.has_history:
            sched.add_job(
                _guarded(rt, JobName.SYNC, acc.name, partial(_sync, rt, acc, stop, sched)),
                "interval",
                seconds=s.sync_seconds,
                jitter=s.jitter_seconds,
                id=f"sync:{acc.name}",
                name=f"sync:{acc.name}",
                next_run_time=now,
            )
        sched.add_job(
            _guarded(rt, JobName.POLL, acc.name, partial(poll_account, rt, acc, stop=stop)),
            "interval",
            seconds=s.poll_seconds,
            jitter=s.jitter_seconds,
            id=f"poll:{acc.name}",
            name=f"poll:{acc.name}",
            next_run_time=now,
        )
    sched.add_job(
        _guarded(rt, JobName.ARCHIVE, ALL_ACCOUNTS, partial(archive_pending, rt, stop=stop)),
        "interval",
        seconds=s.archive_seconds,
        jitter=s.jitter_seconds,
        id="archive",
        name="archive",
        next_run_time=now,
    )
    if rt.messenger.enabled:
        every = rt.settings.notify.interval_minutes * 60 or s.archive_seconds
        sched.add_job(
            partial(notify_after_pass, rt),  # never raises: it logs its own failures
            "interval",
            seconds=every,
            jitter=s.jitter_seconds,
            id="notify",
            name="notify",
            next_run_time=now + timedelta(seconds=every),
        )
    return sched


def poll_now(sched: BackgroundScheduler, account: str) -> None:
    """Run ``account``'s poll job as soon as a worker is free (a webhook or intake arrived).

    An account without a poll job (disabled, or the scheduler already shut down) is
    not an error: the ids are stored as due and the next poll pass picks them up.
    """
    try:
        sched.modify_job(f"poll:{account}", next_run_time=datetime.now(UTC))
    except (JobLookupError, SchedulerNotRunningError):
        log.debug("server.no_poll_job", account=account)


def run_daemon(
    rt: Runtime, *, stop: threading.Event | None = None, notifier: Notifier | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the process exit code (0).

    Under systemd (``Type=notify``, :mod:`genvault.sdnotify`) it reports READY once the
    server and the scheduler run, pings the watchdog from this loop only while the
    scheduler runs (the same test as ``/healthz``), and STOPPING when it starts draining.
    """
    stop = stop or threading.Event()
    notifier = notifier or Notifier()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    cleaned = rt.clean_storage()
    sched = build_scheduler(rt, stop)
    server: ApiServer | None = None
    if rt.settings.server.enabled:
        token = resolve_server_token(rt.settings)
        if token is not None:
            register_secret(token.get_secret_value())
        server = ApiServer(
            rt,
            rt.settings.server,
            on_due=partial(poll_now, sched),
            is_healthy=lambda: bool(sched.running),
        )
        url = server.start()
        log.info("server.listening", url=url, intake=token is not None)
    try:
        sched.start()
        log.info(
            "daemon.started",
            worker=rt.worker_id,
            accounts=sorted(rt.accounts),
            storage=rt.storage.url,
            leftovers_cleaned=cleaned,
        )
        notifier.ready(status=f"archiving {len(rt.accounts)} account(s) to {rt.storage.url}")
        while not stop.wait(notifier.wake_interval(1.0)):
            if sched.running:
                notifier.watchdog()
        notifier.stopping(status="stopping: in-flight downloads finish or are released")
        sched.shutdown(wait=True)  # running jobs see `stop` and wind down within the grace
    finally:
        if server is not None:
            server.stop()
        notifier.close()
    released = rt.store.leases.release(rt.worker_id)
    log.info("daemon.stopped", released_leases=released)
    return 0
