"""The ``genvault`` command line. Thin: it parses, builds a Runtime, calls jobs, prints.

Exit codes (a CronJob or systemd can act on them): 0 fine, 2 bad configuration,
3 some items failed and will be retried, 4 a file was lost, 5 another genvault
process already runs on this SQLite database, 6 ``verify`` found an archived
object missing, unreadable or not matching its size and sha256, 7 ``doctor`` found
an account whose configuration (or clock) needs changing. ``import`` exits 3 when
a file was refused (a partial download, no media) or could not be stored.
"""

from __future__ import annotations

import click

from genvault import __version__
from genvault.cli import (
    backfill,
    db,
    demo,
    export,
    import_files,
    notify,
    retry,
    run,
    search,
    status,
    track,
    verify,
)
from genvault.cli.common import Ctx
from genvault.cli.doctor import doctor as doctor_command
from genvault.malloc import pin_mmap_threshold


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config",
    envvar="GENVAULT_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML config file (or set GENVAULT_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Override logging.level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    help="Override logging.format (auto: JSON unless stderr is a terminal).",
)
@click.version_option(__version__, prog_name="genvault")
@click.pass_context
def main(
    ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None
) -> None:
    """genvault archives AI-generated media before the providers delete it.

    It pages through each configured provider account's history, follows tasks
    still running, and streams every result file to S3 or a local folder,
    earliest deadline first, verified by size and sha256.
    """
    pin_mmap_threshold()  # before any part buffer exists: see genvault.malloc
    ctx.obj = Ctx(config, log_level, log_format)


for command in (
    run.run,
    status.status,
    search.search,
    track.track,
    import_files.import_files,
    backfill.backfill,
    retry.retry,
    verify.verify,
    doctor_command,
    notify.notify,
    export.export,
    demo.demo,
    db.db,
):
    main.add_command(command)
