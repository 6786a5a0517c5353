"""``genvault export``: Write the metadata of every generation and where its files are."""

from __future__ import annotations

import click


@click.command()
def export() -> None:
    """Write the metadata of every generation and where its files are. (Being built.)"""
    raise click.ClickException("not built yet")
