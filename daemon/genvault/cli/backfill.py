"""``genvault backfill``: Walk the whole history of one or every account, with a progress bar."""

from __future__ import annotations

import click


@click.command()
def backfill() -> None:
    """Walk the whole history of one or every account, with a progress bar. (Being built.)"""
    raise click.ClickException("not built yet")
