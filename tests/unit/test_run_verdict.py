"""A ``run --once`` is a success only when it is complete: :class:`RunReport`'s verdict.

Each cause of incompleteness alone must turn exit 0 into 3 (4 for a loss) and be
named in words, because the exit code is what a CronJob acts on and the words are
what its operator reads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from genvault.exitcodes import ExitCode
from genvault.jobs.archive import ArchiveResult
from genvault.jobs.pipeline import RunReport
from genvault.jobs.poll import PollResult
from genvault.jobs.sync import StreamResult, SyncResult


def test_a_quiet_complete_run_is_0() -> None:
    report = RunReport(syncs=[SyncResult("main")], polls=[PollResult("main")])
    assert report.complete and report.incomplete == []
    assert report.exit_code is ExitCode.OK


def _stream_error() -> RunReport:
    sr = StreamResult("all", error="HTTP 500")
    return RunReport(syncs=[SyncResult("main", streams=[sr], complete=False)])


CAUSES: dict[str, tuple[Callable[[], RunReport], str]] = {
    "files waiting from an earlier run": (
        lambda: RunReport(waiting={"main": 2, "alt": 1}),
        "3 file(s) not archived yet (alt 1, main 2)",
    ),
    "a retry in this pass": (
        lambda: RunReport(archive=ArchiveResult(retrying_ids={7})),
        "1 file(s) wait for a retry",
    ),
    "a failed file": (lambda: RunReport(archive=ArchiveResult(failed=1)), "1 file(s) failed"),
    "storage down": (
        lambda: RunReport(archive=ArchiveResult(storage_down=True)),
        "storage is down: archiving paused",
    ),
    "a rate-limited sync": (
        lambda: RunReport(syncs=[SyncResult("main", complete=False, rate_limited=True)]),
        "main: sync rate limited",
    ),
    "a walk stopped short": (
        lambda: RunReport(syncs=[SyncResult("main", complete=False)]),
        "main: history walk not finished",
    ),
    "a stream's error": (_stream_error, "main/all: HTTP 500"),
    "unreadable items": (
        lambda: RunReport(syncs=[SyncResult("main", item_errors=2)]),
        "main: 2 item(s) could not be read",
    ),
    "poll errors": (
        lambda: RunReport(polls=[PollResult("main", errors=1)]),
        "main: 1 poll error(s)",
    ),
    "a rate-limited poll": (
        lambda: RunReport(polls=[PollResult("main", rate_limited=True)]),
        "main: polling rate limited",
    ),
    "tasks given up": (
        lambda: RunReport(polls=[PollResult("main", gave_up=2)]),
        "main: gave up polling 2 task(s)",
    ),
    "an open circuit": (
        lambda: RunReport(syncs=[SyncResult("main", complete=False, circuit_open=True)]),
        "main: provider circuit open",
    ),
}


@pytest.mark.parametrize("cause", sorted(CAUSES))
def test_each_cause_alone_makes_the_run_incomplete_and_says_so(cause: str) -> None:
    make, phrase = CAUSES[cause]
    report = make()
    assert not report.complete
    assert phrase in report.incomplete, report.incomplete
    assert report.exit_code is ExitCode.RETRYING


def test_a_loss_is_4_and_named() -> None:
    report = RunReport(archive=ArchiveResult(lost=1), waiting={"main": 1})
    assert report.exit_code is ExitCode.LOST
    assert report.incomplete[0] == "1 file(s) lost"


def test_a_peers_sync_is_not_this_runs_unfinished_walk() -> None:
    """A replica skipped the sync because a peer holds it: the peer reports that walk."""
    report = RunReport(syncs=[SyncResult("main", complete=False, elsewhere=True)])
    assert report.complete and report.exit_code is ExitCode.OK
