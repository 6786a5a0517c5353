"""``genvault status``: what is archived, pending, at risk and lost, per account."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--at-risk-hours",
    default=24.0,
    show_default=True,
    help="List pending files whose deadline falls within this many hours.",
)
@click.pass_obj
@config_errors_exit_2
def status(obj: Ctx, as_json: bool, at_risk_hours: float) -> None:
    """What is archived, pending, at risk of expiring, and lost, per account."""
    from genvault.status import status_document

    doc = status_document(obj.settings(), timedelta(hours=at_risk_hours))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from genvault.report import render_status

    render_status(doc)
