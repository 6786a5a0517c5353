"""One full pass: sync and poll every account while archiving, and the exit code it earns.

``genvault run --once`` (a CronJob, a systemd timer) calls :func:`run_once`.
The exit code tells the caller what happened:

==== =====================================================================
0    complete: every walk ended, every call answered, and every file known to
     be ready is archived (tasks still running at the provider are not owed yet)
3    incomplete, and the next run goes on (:attr:`RunReport.incomplete` says
     why, and so does the ``run.done`` line): files failed or wait for a retry
     (from this run or an earlier one), a provider call failed or was rate
     limited, a history walk failed, paused or ended incomplete, an account was
     skipped because its provider's circuit breaker is open, polling gave up on a
     task, or archiving paused because the storage circuit breaker is open
4    at least one file was lost: its deadline passed before it was saved
==== =====================================================================

"Success" means complete, never "nothing crashed": a run that leaves a file
behind says so, even when the file's failure is an earlier run's and this run
only found it still backing off.

(2 is the CLI's code for bad configuration, 5 for "another genvault process
already runs on this SQLite database", 6 for ``genvault verify`` finding an
archived object missing, unreadable, or with another size or sha256; the enum
of them all is the CLI's, in :mod:`genvault.exitcodes`.)

The archive pass runs in its own thread from the start, beside the syncs and polls
(issue 14): a first sync of a long history takes minutes to hours at a real
provider, and files already saved, some of them due soon, must not wait for the last
page. The pass leases earliest deadline first among what is saved so far, keeps
looking while the syncs and polls still go, and looks once more after they end, so it
leaves nothing behind that a sequential pass would have taken. A file whose
generation still awaits its detail read (saved by the listing with a poll due at once)
is not leased until this run's poll has read it and corrected its role and key: the
lease statement's read hold (:func:`genvault.store.leases._not_awaiting_read`); without
it a kill between such a file's write and its record stored it twice. Both threads
write to the database, as the daemon's jobs do (SQLite: ``BEGIN IMMEDIATE`` writers
queue on the busy timeout).

Replicas on PostgreSQL: an account another replica is syncing right now is
skipped (not an error), and the archive pass keeps taking that replica's new
files until it is done, so several ``run --once`` pods share one backlog.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from threading import Event, Thread

from structlog.contextvars import bound_contextvars

from genvault.exitcodes import ExitCode
from genvault.jobs import health
from genvault.jobs.archive import ArchiveResult, ProgressCallback, archive_pending
from genvault.jobs.poll import PollResult, poll_account
from genvault.jobs.sync import PageCallback, SyncResult, sync_account
from genvault.logs import get_logger
from genvault.metrics import ALL_ACCOUNTS, JobName, timed_job
from genvault.notify import notify_after_pass
from genvault.records import Page
from genvault.runtime import AccountRuntime, Runtime

PEER_POLL_WAIT_SECONDS = 120.0
"""How long ``run --once`` waits, after syncing an account, for a peer replica's poll
pass of it to end (a poll pass is a few requests per due item: seconds, not minutes)."""

log = get_logger("genvault.pipeline")


@dataclass
class RunReport:
    syncs: list[SyncResult] = field(default_factory=list)
    polls: list[PollResult] = field(default_factory=list)
    archive: ArchiveResult = field(default_factory=ArchiveResult)

    @property
    def circuit_open(self) -> list[str]:
        """Accounts skipped or cut short because their provider's circuit is open."""
        names = {s.account for s in self.syncs if s.circuit_open}
        names.update(p.account for p in self.polls if p.circuit_open)
        return sorted(names)

    waiting: dict[str, int] = field(default_factory=dict)
    """Per account, the pending files no live worker held when the run ended
    (:meth:`~genvault.store.dead_leases.DeadLeases.waiting_files`)."""

    @property
    def incomplete(self) -> list[str]:
        """Why the run is not complete, one phrase per cause; empty exactly when it is."""
        out: list[str] = []
        a = self.archive
        if a.lost:
            out.append(f"{a.lost} file(s) lost")
        if a.failed:
            out.append(f"{a.failed} file(s) failed")
        if self.waiting:
            total = sum(self.waiting.values())
            where = ", ".join(f"{acc} {n}" for acc, n in sorted(self.waiting.items()))
            out.append(f"{total} file(s) not archived yet ({where})")
        elif a.retrying:  # (counted in ``waiting`` when the pass left them pending)
            out.append(f"{a.retrying} file(s) wait for a retry")
        if a.storage_down:
            out.append("storage is down: archiving paused")
        for s in self.syncs:
            if s.error:
                out.append(f"{s.account}: sync failed: {s.error}")
            elif s.rate_limited:
                out.append(f"{s.account}: sync rate limited")
            elif not s.elsewhere and not s.circuit_open and not s.complete:
                out.append(f"{s.account}: history walk not finished")
            if s.item_errors:
                out.append(f"{s.account}: {s.item_errors} item(s) could not be read")
            out.extend(f"{s.account}/{t.stream}: {t.problem}" for t in s.troubled_streams)
        for p in self.polls:
            if p.errors:
                out.append(f"{p.account}: {p.errors} poll error(s)")
            if p.rate_limited:
                out.append(f"{p.account}: polling rate limited")
            if p.gave_up:
                out.append(f"{p.account}: gave up polling {p.gave_up} task(s)")
        out.extend(f"{name}: provider circuit open" for name in self.circuit_open)
        return list(dict.fromkeys(out))  # a problem named twice is said once

    @property
    def complete(self) -> bool:
        return not self.incomplete

    @property
    def exit_code(self) -> ExitCode:
        if self.archive.lost:
            return ExitCode.LOST
        return ExitCode.OK if self.complete else ExitCode.RETRYING


def _peers_busy(rt: Runtime, report: RunReport) -> Callable[[], bool] | None:
    """While a replica still syncs or polls an account this run skipped, files may still
    arrive: the archive pass should wait for them rather than end with the queue empty.

    The replica that synced an account polls it afterwards (what its sync saved), so an
    account whose sync was a peer's is watched through that peer's poll too."""
    held = [(job, s.account) for s in report.syncs if s.elsewhere for job in ("sync", "poll")]
    held += [("poll", p.account) for p in report.polls if p.elsewhere]
    if not held:
        return None
    return lambda: any(rt.store.account_lock_taken(job, account) for job, account in held)


def _sync_and_poll(
    rt: Runtime,
    acc: AccountRuntime,
    report: RunReport,
    *,
    stop: Event,
    on_page: PageCallback | None,
) -> None:
    """One account's sync (if it has a listing) and poll, timed; a crash is logged and
    reported, never raised (the caller bound ``account`` for every line)."""
    if acc.provider.has_history:
        try:
            report.syncs.append(
                timed_job(
                    rt.metrics,
                    JobName.SYNC,
                    acc.name,
                    partial(sync_account, rt, acc, stop=stop, on_page=on_page),
                )
            )
        except Exception as exc:  # a bug in one adapter must not cost the other accounts
            log.exception("sync.crashed")
            report.syncs.append(SyncResult(acc.name, complete=False, error=repr(exc)))
    # A sync run here may have saved items a peer's poll pass (begun earlier) will not
    # see: wait for that pass to end and poll them here, or nobody does in this run.
    synced_here = bool(report.syncs) and report.syncs[-1].account == acc.name
    synced_here = synced_here and not report.syncs[-1].elsewhere
    wait = PEER_POLL_WAIT_SECONDS if synced_here else 0.0
    try:
        report.polls.append(
            timed_job(
                rt.metrics,
                JobName.POLL,
                acc.name,
                partial(poll_account, rt, acc, stop=stop, wait_for_peer=wait),
            )
        )
    except Exception as exc:
        log.exception("poll.crashed")
        report.polls.append(PollResult(acc.name, errors=1, error=repr(exc)))


def run_once(
    rt: Runtime,
    *,
    stop: Event | None = None,
    on_page: PageCallback | None = None,
    on_outcome: ProgressCallback | None = None,
) -> RunReport:
    """Sync and poll every account while archiving everything leasable.

    The archive pass starts first, in a thread of its own, and takes files as the
    syncs save them; it ends when nothing is leasable and neither this run's syncs and
    polls nor a peer replica's (:func:`_peers_busy`) can bring more. ``waiting``, the
    persisted health and the notify digest come after both ended, so the report and
    the exit code say the same as when the pass ran last. Each job's duration and
    outcome go to ``rt.metrics`` as in the daemon, so ``--metrics-file`` reports the
    same job metrics as ``/metrics``. ``on_page`` is called in this thread (after each
    page is saved), ``on_outcome`` in the archive pass's (one outcome at a time).

    An exception in either thread (or ``KeyboardInterrupt`` in this one) sets
    ``stop``, so the other ends too (the archive pass within its shutdown grace,
    releasing its leases), and is raised here once it has.
    """
    stop = stop or Event()
    report = RunReport()
    feeding = Event()
    feeding.set()
    """This run's syncs and polls still go: more files may become leasable."""
    wake = Event()
    """Set when a page is saved and when the syncs and polls end: the pass looks at once."""
    peers: list[Callable[[], bool]] = []
    failure: list[BaseException] = []

    def more_coming() -> bool:
        return feeding.is_set() or any(busy() for busy in peers)

    def page_saved(page: Page, result: SyncResult) -> None:
        wake.set()
        if on_page is not None:
            on_page(page, result)

    def archive() -> None:
        try:
            report.archive = timed_job(
                rt.metrics,
                JobName.ARCHIVE,
                ALL_ACCOUNTS,
                partial(
                    archive_pending,
                    rt,
                    stop=stop,
                    on_outcome=on_outcome,
                    wait_while=more_coming,
                    wake=wake,
                ),
            )
        except BaseException as exc:  # raised in run_once's thread once both ended
            failure.append(exc)
            stop.set()

    # Started before any account is bound: the pass logs with the run's context
    # (copied here), never with an account's.
    archiver = Thread(target=contextvars.copy_context().run, args=(archive,), name="archive-pass")
    archiver.start()
    try:
        for acc in rt.accounts.values():
            if stop.is_set():
                break
            with bound_contextvars(account=acc.name):
                _sync_and_poll(rt, acc, report, stop=stop, on_page=page_saved)
        busy = _peers_busy(rt, report)
        if busy is not None:
            peers.append(busy)  # before ``feeding`` clears: the pass never sees a gap
    except BaseException:
        stop.set()
        raise
    finally:
        feeding.clear()
        wake.set()
        archiver.join()
    if failure:
        raise failure[0]
    # URL refreshes by the archive workers may have moved a breaker or a budget: this
    # thread writes them, so the next run (and ``status``) sees them.
    health.persist_all(rt)
    report.waiting = rt.store.waiting_files(list(rt.accounts))
    notify_after_pass(rt)  # a digest of what is at risk or lost now (no-op without URLs)
    return report
