"""``genvault status``: what is archived, pending, at risk and lost, per account, and
whether what genvault holds of each history stream is complete."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--at-risk-hours",
    type=click.FloatRange(min=0, min_open=True),
    help="List pending files whose deadline falls within this many hours "
    "[default: metrics.at_risk_hours, 24].",
)
@click.pass_obj
@config_errors_exit_2
def status(obj: Ctx, as_json: bool, at_risk_hours: float | None) -> None:
    """What is archived, pending, at risk of expiring, and lost, per account; and per
    history stream, whether the archive is complete (and, if not, why)."""
    from genvault.status import at_risk_window, status_document

    settings = obj.settings()
    within = at_risk_window(settings) if at_risk_hours is None else timedelta(hours=at_risk_hours)
    doc = status_document(settings, within)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from genvault.report import render_status

    render_status(doc)
