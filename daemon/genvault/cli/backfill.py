"""``genvault backfill``: walk the whole history of one or every account, with a progress bar."""

from __future__ import annotations

import sys

import click

from genvault.cli.common import Ctx, config_errors_exit_2, parse_since, single_process_or_exit


@click.command()
@click.argument("account", required=False)
@click.option(
    "--since",
    help="Walk back only to generations created since: a date, or an age like 30d.",
)
@click.pass_obj
@config_errors_exit_2
def backfill(obj: Ctx, account: str | None, since: str | None) -> None:
    """Walk the whole history of one or every account, then archive what it found.

    Unlike a normal pass it ignores the stored cursor and pages to the end of the
    listing (or back to --since). Accounts whose provider has no listing are
    skipped. Exit codes are those of `run --once`; on SQLite it holds the same
    single-process lock (exit 5 if the daemon runs).
    """
    from rich.console import Console

    from genvault.config import resolve_secrets
    from genvault.ops.backfill import run_backfill

    settings = obj.settings()
    since_at = parse_since(since)
    if account is not None:
        settings.account(account)  # an unknown name: exit 2, one line naming it
    secrets = resolve_secrets(settings)
    with single_process_or_exit(settings.database.url):
        code = run_backfill(
            settings,
            secrets,
            account=account,
            since=since_at,
            console=Console(),
            echo=click.echo,
        )
    sys.exit(code)
