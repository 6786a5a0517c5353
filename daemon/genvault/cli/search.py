"""``genvault search``: Find generations by prompt, model and date across every account."""

from __future__ import annotations

import click


@click.command()
def search() -> None:
    """Find generations by prompt, model and date across every account. (Being built.)"""
    raise click.ClickException("not built yet")
