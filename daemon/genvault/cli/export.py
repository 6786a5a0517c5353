"""``genvault export``: write the metadata of every generation and where its files are."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

import click

from genvault.cli.common import Ctx, config_errors_exit_2, parse_since


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one object per generation; csv: one row per generation, files as JSON.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (replaced only once complete) instead of stdout.",
)
@click.option("--account", help="Only this account's generations.")
@click.option("--since", help="Only generations created since: a date, or an age like 7d.")
@click.option("--raw", "include_raw", is_flag=True, help="Include each provider payload.")
@click.pass_obj
@config_errors_exit_2
def export(
    obj: Ctx,
    fmt: str,
    output: Path | None,
    account: str | None,
    since: str | None,
    include_raw: bool,
) -> None:
    """Write the metadata of every generation and where its files are.

    One record per generation: provider, account, id, status, times, model,
    prompt, error, and its files (role, state, storage location, size, sha256,
    the source's deadline). Streamed in batches: any archive size fits in memory.
    Reads only: it may run beside the daemon.
    """
    from genvault.ops.export import ExportCounts, write_export
    from genvault.ops.readonly import open_existing_store
    from genvault.storage import open_storage

    settings = obj.settings()
    since_at = parse_since(since)
    store = open_existing_store(settings.database.url)
    try:
        storage = open_storage(settings.storage)

        def write(out: TextIO) -> ExportCounts:
            return write_export(
                store,
                storage.location,
                out,
                fmt=fmt,
                account=account,
                since=since_at,
                include_raw=include_raw,
            )

        if output is None:
            try:
                counts = write(sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:
                # The reader stopped early (`| head`): no traceback, and no flush at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
        else:
            # Written beside the target and renamed into place: a failed export never
            # leaves a truncated file that looks complete.
            partial = output.with_name(f".{output.name}.partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    counts = write(out)
                os.replace(partial, output)
            except BaseException:
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise
    finally:
        store.dispose()
    where = str(output) if output is not None else "stdout"
    click.echo(
        f"exported {counts.generations} generation(s), {counts.files} file(s) as {fmt} to {where}",
        err=True,
    )
