"""``genvault verify``: re-read archived objects and compare size and sha256 with the database."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from genvault.cli.common import Ctx, config_errors_exit_2

if TYPE_CHECKING:
    from genvault.config import Settings
    from genvault.ops.verify import VerifyReport
    from genvault.store import Store


@click.command()
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Check this many archived files drawn at random instead of all of them.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option(
    "--repair",
    is_flag=True,
    help="Queue missing and damaged files to be downloaded again by the next pass.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Objects read at the same time.",
)
@click.pass_obj
@config_errors_exit_2
def verify(obj: Ctx, sample: int | None, as_json: bool, repair: bool, workers: int) -> None:
    """Re-read archived objects and compare size and sha256 with the database.

    Every archived file (or a random --sample) is looked up and read back in full
    from storage. Missing objects, size and sha256 mismatches and unreadable
    objects are listed with their keys; the exit code is 6 if there is any, 0 if
    all match. Reads only: it may run beside the daemon.

    --repair puts missing, wrong-size and wrong-sha256 files back in the queue (not
    unreadable ones: a storage hiccup is no reason to fetch again); the next pass
    downloads them again while the provider still serves them. The exit code still
    says what verify found.
    """
    from rich.console import Console

    from genvault.exitcodes import ExitCode
    from genvault.formatting import human_bytes
    from genvault.ops.readonly import open_existing_store
    from genvault.ops.verify import verify_archive, verify_with_progress
    from genvault.storage import open_storage

    settings = obj.settings()
    store = open_existing_store(settings.database.url)
    try:
        storage = open_storage(settings.storage)
        console = Console()
        if as_json or not console.is_terminal:
            report = verify_archive(store, storage, sample, workers=workers)
        else:
            report = verify_with_progress(store, storage, sample, workers=workers, console=console)
        repaired = _repair(obj, store, report) if repair and report.problems else 0
        if report.problems:
            _notify_damage(settings, store, report)
    finally:
        store.dispose()
    if as_json:
        doc = {"storage": storage.url, **report.as_dict()}
        if repair:
            doc["requeued"] = repaired
        click.echo(json.dumps(doc, indent=2))
    else:
        for p in sorted(report.problems, key=lambda p: (p.kind.value, p.key or "")):
            click.echo(p.describe())
        what = "sampled" if report.sampled else "archived"
        verdict = "all match" if report.ok else f"{len(report.problems)} problem(s)"
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
        click.echo(
            f"verify: {report.checked} {what} file(s) read back ({human_bytes(report.bytes)}) "
            f"from {storage.url}: {verdict}" + (f" ({counts})" if counts else "")
        )
        if repair:
            click.echo(f"verify: {repaired} file(s) queued to be downloaded again")
    sys.exit(int(ExitCode.OK if report.ok else ExitCode.VERIFY_FAILED))


def _repair(obj: Ctx, store: Store, report: VerifyReport) -> int:
    """Requeue what can be fetched again, under the SQLite single-process lock (a write)."""
    from genvault.cli.common import single_process_or_exit
    from genvault.ops.verify import ProblemKind

    fixable = [
        (p.asset_id, p.kind.value) for p in report.problems if p.kind is not ProblemKind.UNREADABLE
    ]
    with single_process_or_exit(obj.settings().database.url):
        return store.requeue_damaged(fixable)


def _notify_damage(settings: Settings, store: Store, report: VerifyReport) -> None:
    """Tell the ``[notify]`` URLs about damage found (each object once; no-op without
    URLs). The one write verify makes: the notification ledger, so it is said once."""
    from datetime import UTC, datetime

    from genvault.notify import messenger_for, verify_events

    messenger = messenger_for(settings, store)
    if messenger.enabled:
        found = [
            (p.key or f"asset {p.asset_id}", p.describe().split(":", 1)[-1].strip())
            for p in report.problems
        ]
        messenger.notify(verify_events(found), datetime.now(UTC))
