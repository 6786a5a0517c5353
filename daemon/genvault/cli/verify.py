"""``genvault verify``: Re-read archived objects and compare size and sha256 with the database."""

from __future__ import annotations

import click


@click.command()
def verify() -> None:
    """Re-read archived objects and compare size and sha256 with the database. (Being built.)"""
    raise click.ClickException("not built yet")
