"""``genvault import ACCOUNT DIR``: adopt files downloaded earlier as archived files."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from genvault.cli.common import Ctx, config_errors_exit_2, single_process_or_exit

if TYPE_CHECKING:
    from genvault.ops.importer import FileReport, ImportReport

_LABELS = {
    "imported": "imported",
    "already_archived": "already archived",
    "refused": "refused",
    "unmatched": "unmatched",
    "skipped": "skipped",
    "failed": "failed",
}


@click.command("import")
@click.argument("account")
@click.argument(
    "directory",
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what would be imported, refused or skipped; write nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.pass_obj
@config_errors_exit_2
def import_files(obj: Ctx, account: str, directory: Path, dry_run: bool, as_json: bool) -> None:
    """Adopt media you downloaded earlier (by hand or with another tool) as archived.

    Every media file under DIR (hidden files, unfinished downloads and links out of
    DIR are left alone) is matched to a generation of ACCOUNT by the provider's id
    in its name, a folder's name or a JSON sidecar (<file>.json or <stem>.json), then
    to one of its files by kind and size. Its size must equal the one the provider
    reports while it still serves the file (a shorter file is a partial download and
    is refused); pages saved under a media name are refused. Each file is copied into
    the archive like a download (size and sha256 recorded) and counts as archived:
    the daemon does not fetch it again. Files already archived are left as they are,
    so importing a folder twice does nothing the second time. No API key is needed.

    Exit 0 when every file that matched was imported (or was archived already), 3
    when one was refused or could not be stored; 2 for a bad config or account.
    """
    from genvault.ops.importer import import_folder, import_runtime

    settings = obj.settings()
    acc = settings.account(account)  # an unknown name: exit 2, one line naming it
    printer = None if as_json else partial(_print_file, dry_run=dry_run)

    if dry_run:
        rt = import_runtime(settings, dry_run=True)
        try:
            report = import_folder(rt, acc, directory, dry_run=True, on_file=printer)
        finally:
            rt.close()
    else:
        with single_process_or_exit(settings.database.url):
            rt = import_runtime(settings, dry_run=False)
            try:
                report = import_folder(rt, acc, directory, on_file=printer)
            finally:
                rt.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_summary(report)
    sys.exit(int(report.exit_code))


def _print_file(r: FileReport, *, dry_run: bool) -> None:
    verdict = r.verdict.value
    label = "would import" if dry_run and verdict == "imported" else _LABELS[verdict]
    where = ""
    if r.external_id is not None and r.role is not None:
        where = f" -> {r.external_id} {r.role} #{r.position}"
    elif r.external_id is not None:
        where = f" -> {r.external_id}"
    if r.key and verdict == "imported":
        where += f" ({r.key})"
    reason = f": {r.reason}" if r.reason else ""
    click.echo(f"{label:>16}  {r.path}{where}{reason}")


def _print_summary(report: ImportReport) -> None:
    from genvault.formatting import human_bytes

    counts = report.counts()
    done = "would import" if report.dry_run else "imported"
    parts = [f"{counts['imported']} {done} ({human_bytes(report.bytes)})"]
    for verdict in ("already_archived", "refused", "unmatched", "skipped", "failed"):
        if counts[verdict]:
            parts.append(f"{counts[verdict]} {_LABELS[verdict]}")
    if report.ignored:
        parts.append(f"{report.ignored} other file(s) ignored")
    unchecked = sum(1 for f in report.files if f.size_check == "unchecked")
    tail = (
        f"; {unchecked} without a size check (the provider no longer serves them)"
        if unchecked
        else ""
    )
    prefix = "import (dry run)" if report.dry_run else "import"
    click.echo(f"{prefix} {report.account} from {report.folder}: " + ", ".join(parts) + tail)
