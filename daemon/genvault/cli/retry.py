"""``genvault retry``: Requeue an account's files that are waiting or have failed."""

from __future__ import annotations

import click


@click.command()
def retry() -> None:
    """Requeue an account's files that are waiting or have failed. (Being built.)"""
    raise click.ClickException("not built yet")
