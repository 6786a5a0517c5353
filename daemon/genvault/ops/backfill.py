"""``genvault backfill``: walk an account's whole history, then archive what it found.

A normal pass stops paging at the stored watermark; a backfill does not (the
sync job's ``full=True``): it pages to the end of the listing, or back to
``--since`` by creation date, for one account or for every account whose
provider has a listing. ``sync.backfill_days`` (which bounds only the *first*
automatic walk) does not apply: ``--since`` is the backfill's one bound. The
walk stays crash-safe like any sync: each page is saved with its cursor
position, so a killed backfill resumes where it stopped and a complete one
moves the watermark like any complete walk.

Then the accounts' due tasks are polled and their files archived, earliest
deadline first. The exit code is ``run --once``'s (:class:`ExitCode`); a backfill
stopped by SIGINT/SIGTERM exits 3 (work remains; the next one resumes the walk).

On a terminal a live display shows each account's pages and items, then the
archive's files and bytes with an ETA over the files left. Elsewhere (cron,
a pipe, CI) there is no display, only the summary line at the end; the logs
stay JSON on stderr either way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from threading import Event
from types import FrameType
from typing import Protocol

from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from structlog.contextvars import bound_contextvars

from genvault.config import Settings
from genvault.errors import ConfigError
from genvault.exitcodes import ExitCode
from genvault.formatting import human_bytes
from genvault.jobs import health
from genvault.jobs.archive import archive_pending
from genvault.jobs.pipeline import RunReport
from genvault.jobs.poll import PollResult, poll_account
from genvault.jobs.sync import SyncResult, sync_account
from genvault.logs import get_logger
from genvault.records import AssetState, Page
from genvault.runtime import AccountRuntime, Runtime
from genvault.store import LeasedAsset, Outcome

log = get_logger("genvault.backfill")


class Display(Protocol):
    """What the backfill tells its onlooker; the terminal bar and the silent one."""

    def paging(self, account: str) -> None: ...
    def page(self, page: Page, result: SyncResult) -> None: ...
    def paged(self, result: SyncResult) -> None: ...
    def archiving(self, files: int, known_bytes: int, unknown_size: int) -> None: ...
    def outcome(self, outcome: Outcome, asset: LeasedAsset) -> None: ...


class SilentDisplay:
    """No display: stdout is not a terminal (the summary line says it all at the end)."""

    def paging(self, account: str) -> None:
        pass

    def page(self, page: Page, result: SyncResult) -> None:
        pass

    def paged(self, result: SyncResult) -> None:
        pass

    def archiving(self, files: int, known_bytes: int, unknown_size: int) -> None:
        pass

    def outcome(self, outcome: Outcome, asset: LeasedAsset) -> None:
        pass


class ProgressDisplay:
    """A rich display: one line per account's walk (pages, items; its total is unknown
    while paging, so a spinner and counts), then one for the archive (files, bytes, ETA).

    The archive bar counts bytes when every queued file announced its size, files
    otherwise; either way the ETA is over what is left. A file counts as done once
    it settles (archived, failed or lost); a retry does not move the bar.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._walk: TaskID | None = None
        self._archive: TaskID | None = None
        self._by_bytes = False
        self._files_total = 0
        self._files_done = 0
        self._bytes_done = 0
        self._known_bytes = 0

    @staticmethod
    def columns() -> tuple[ProgressColumn, ...]:
        return (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
        )

    def paging(self, account: str) -> None:
        self._walk = self.progress.add_task(
            f"paging {account}", total=None, detail="0 pages, 0 items"
        )

    def page(self, page: Page, result: SyncResult) -> None:
        if self._walk is not None:
            self.progress.update(self._walk, detail=_walk_detail(result))

    def paged(self, result: SyncResult) -> None:
        if self._walk is not None:
            done = max(result.pages, 1)
            self.progress.update(
                self._walk, total=done, completed=done, detail=_walk_detail(result)
            )
            self._walk = None

    def archiving(self, files: int, known_bytes: int, unknown_size: int) -> None:
        self._files_total = files
        self._known_bytes = known_bytes
        self._by_bytes = files > 0 and unknown_size == 0 and known_bytes > 0
        total = known_bytes if self._by_bytes else files
        self._archive = self.progress.add_task("archiving", total=total, detail=self._detail())

    def outcome(self, outcome: Outcome, asset: LeasedAsset) -> None:
        if self._archive is None or outcome.state is AssetState.PENDING:
            return
        self._files_done += 1
        if outcome.state is AssetState.ARCHIVED:
            self._bytes_done += outcome.size or 0
        step = (asset.expected_size or 0) if self._by_bytes else 1
        self.progress.update(self._archive, advance=step, detail=self._detail())

    def _detail(self) -> str:
        of = f" of ~{human_bytes(self._known_bytes)}" if self._known_bytes else ""
        return f"{self._files_done}/{self._files_total} files, {human_bytes(self._bytes_done)}{of}"


def _walk_detail(result: SyncResult) -> str:
    return f"{result.pages} pages, {result.items} items ({result.new} new)"


@contextlib.contextmanager
def stop_on_signals(stop: Event) -> Iterator[None]:
    """SIGINT/SIGTERM end the backfill cleanly: the walk stops between pages (its cursor
    saved), downloads in flight finish or go back to the queue, leases are released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("backfill.stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def select_accounts(
    rt: Runtime, name: str | None
) -> tuple[list[AccountRuntime], list[AccountRuntime]]:
    """(accounts to walk, accounts skipped because their provider has no listing)."""
    if name is not None:
        if name not in rt.accounts:
            raise ConfigError(f"accounts[{name}]", "disabled: enable it to backfill it")
        chosen = [rt.accounts[name]]
    else:
        chosen = list(rt.accounts.values())
    return (
        [a for a in chosen if a.provider.has_history],
        [a for a in chosen if not a.provider.has_history],
    )


def _walk_and_poll(
    rt: Runtime,
    acc: AccountRuntime,
    report: RunReport,
    *,
    since: datetime | None,
    display: Display,
    stop: Event,
) -> None:
    """One account's full walk and poll; a crash is logged and reported, never raised
    (the caller bound ``account`` for every line)."""
    display.paging(acc.name)
    try:
        synced = sync_account(rt, acc, full=True, since=since, stop=stop, on_page=display.page)
    except Exception as exc:  # one adapter's bug must not cost the other accounts
        log.exception("sync.crashed")
        synced = SyncResult(acc.name, complete=False, error=repr(exc))
    report.syncs.append(synced)
    display.paged(synced)
    try:
        report.polls.append(poll_account(rt, acc, stop=stop))
    except Exception as exc:
        log.exception("poll.crashed")
        report.polls.append(PollResult(acc.name, errors=1, error=repr(exc)))


def backfill(
    rt: Runtime,
    accounts: list[AccountRuntime],
    *,
    since: datetime | None = None,
    display: Display | None = None,
    stop: Event | None = None,
) -> RunReport:
    """Full walk of each account's history, a poll of its due tasks, then its archive pass."""
    display = display or SilentDisplay()
    stop = stop or Event()
    report = RunReport()
    for acc in accounts:
        if stop.is_set():
            break
        with bound_contextvars(account=acc.name):
            _walk_and_poll(rt, acc, report, since=since, display=display, stop=stop)
    names = [a.name for a in accounts]
    if not stop.is_set() and names:
        plan = rt.store.archive_plan(
            accounts=names,
            roles=rt.archive_roles,
            limit=0,
            dead_owners=rt.store.dead_lease_owners(),  # the archive pass reaps them first
        )
        display.archiving(
            plan.leasable + plan.roles_to_queue,
            plan.known_bytes,
            plan.unknown_size + plan.roles_to_queue,
        )
        report.archive = archive_pending(rt, stop=stop, accounts=names, on_outcome=display.outcome)
    health.persist_all(rt)
    return report


def summary_line(report: RunReport, seconds: float) -> str:
    """One line for the end of a backfill (and for logs that are not a terminal)."""
    pages = sum(s.pages for s in report.syncs)
    items = sum(s.items for s in report.syncs)
    new = sum(s.new for s in report.syncs)
    a = report.archive
    incomplete = [s.account for s in report.syncs if not s.complete]
    line = (
        f"backfill: {len(report.syncs)} account(s), {pages} pages, {items} items ({new} new); "
        f"{a.archived} files archived ({human_bytes(a.bytes)}), {a.retrying} retrying, "
        f"{a.failed} failed, {a.lost} lost in {seconds:.1f} s"
    )
    if incomplete:
        line += f"; walk incomplete for {', '.join(incomplete)} (run it again to resume)"
    return line


def run_backfill(
    settings: Settings,
    secrets: dict[str, SecretStr],
    *,
    account: str | None,
    since: datetime | None,
    console: Console,
    echo: Callable[[str], None],
) -> int:
    """``genvault backfill``: build the runtime, walk, archive, print; returns the exit code.

    The caller holds the SQLite process lock.
    """
    # sync.backfill_days (and an account's own) bounds only the first automatic walk;
    # --since bounds this one.
    settings = settings.model_copy(
        update={
            "sync": settings.sync.model_copy(update={"backfill_days": None}),
            "accounts": tuple(
                a.model_copy(update={"backfill_days": None}) for a in settings.accounts
            ),
        }
    )
    started = time.monotonic()
    rt = Runtime.build(settings, secrets)
    try:
        walk, no_listing = select_accounts(rt, account)
        for acc in no_listing:
            echo(
                f"{acc.name}: {acc.provider.name} has no history listing, skipped "
                "(its tasks arrive by `genvault track`, the intake or webhooks)"
            )
        if not walk:
            echo("backfill: no account with a history listing: nothing to do")
            return int(ExitCode.OK)
        rt.clean_storage()
        stop = Event()
        with stop_on_signals(stop):
            if console.is_terminal:
                with Progress(
                    *ProgressDisplay.columns(), console=console, transient=False
                ) as progress:
                    report = backfill(
                        rt, walk, since=since, display=ProgressDisplay(progress), stop=stop
                    )
            else:
                report = backfill(rt, walk, since=since, stop=stop)
        code = ExitCode.RETRYING if stop.is_set() and not report.archive.lost else report.exit_code
        log.info(
            "backfill.done",
            exit_code=int(code),
            accounts=[a.name for a in walk],
            pages=sum(s.pages for s in report.syncs),
            items=sum(s.items for s in report.syncs),
            archived=report.archive.archived,
            bytes=report.archive.bytes,
            failed=report.archive.failed,
            lost=report.archive.lost,
            retrying=report.archive.retrying,
        )
        echo(summary_line(report, time.monotonic() - started))
        return int(code)
    finally:
        rt.close()
