"""``genvault db``: database maintenance."""

from __future__ import annotations

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
@config_errors_exit_2
def db_upgrade(obj: Ctx) -> None:
    """Apply schema migrations (also done automatically at start)."""
    from genvault.store import Store

    store = Store(obj.settings().database.url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    click.echo("database is at the latest schema")
