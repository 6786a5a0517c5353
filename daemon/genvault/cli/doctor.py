"""``genvault doctor``: probe each account read-only and say what to change."""

from __future__ import annotations

import json
import sys

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.command()
@click.argument("accounts", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds per account; no request starts after it.",
)
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 7).")
@click.pass_obj
@config_errors_exit_2
def doctor(
    obj: Ctx, accounts: tuple[str, ...], as_json: bool, timeout: float, strict: bool
) -> None:
    """Probe each configured account (or the named ones) read-only against its API.

    Checks whether the base URL answers and the key is accepted (and in which header
    style), which paging parameters the server honours, its real page cap and sort
    order, whether a generation's detail names more files than its listing entry,
    whether a sample media URL answers a one-byte Range GET and whether URLs come
    relative, clock skew from the Date header and the rate-limit headers seen. APIs
    without a listing are asked about a made-up id and must answer "not found".

    Each problem is said in words, with the config line to change when doctor found
    one that works. Only a few small GETs per account; nothing is written. Exit 0
    when every account passes, 7 when any check failed (2: bad configuration).
    """
    from genvault.doctor import Limits, diagnose
    from genvault.exitcodes import ExitCode

    settings = obj.settings()
    report = diagnose(settings, accounts, limits=Limits(timeout=timeout))
    if as_json:
        click.echo(json.dumps(report.as_dict(strict=strict), indent=2))
    else:
        from genvault.doctor.render import render_doctor

        render_doctor(report, strict=strict)
    sys.exit(int(ExitCode.OK if report.passed(strict=strict) else ExitCode.DOCTOR_FAILED))
