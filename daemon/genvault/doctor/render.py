"""``genvault doctor``'s human output: one rich table per account, then the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genvault.doctor.findings import AccountReport, DoctorReport, Level
from genvault.logs import scrub

_STYLE = {Level.OK: "green", Level.WARN: "yellow", Level.FAIL: "bold red", Level.SKIP: "dim"}


def _table(account: AccountReport) -> Table:
    verdict = "[green]passes[/green]" if account.ok else "[bold red]needs changes[/bold red]"
    table = Table(
        title=(
            f"{escape(account.account)} ({escape(account.provider)}) "
            f"{escape(account.base_url)}: {verdict}"
        ),
        title_justify="left",
        header_style="bold",
    )
    table.add_column("check")
    table.add_column("result")
    table.add_column("finding", overflow="fold")
    table.add_column("change", overflow="fold")
    for f in account.findings:
        style = _STYLE[f.level]
        change = f.suggest or (f"see {f.key}" if f.key and f.level is Level.FAIL else "")
        table.add_row(
            f.check,
            f"[{style}]{f.level.value}[/{style}]",
            escape(scrub(f.message)),
            escape(change),
        )
    table.caption = f"{account.requests} request(s), {account.seconds:.1f} s"
    return table


def render_doctor(
    report: DoctorReport, *, strict: bool = False, console: Console | None = None
) -> None:
    if console is None:
        probe = Console()
        console = probe if probe.is_terminal else Console(width=200)
    if not report.accounts:
        console.print("doctor: no enabled account to check")
        return
    for account in report.accounts:
        console.print(_table(account))
        console.print()
    bad = [a.account for a in report.accounts if not a.ok or (strict and a.warnings)]
    if bad:
        console.print(
            f"doctor: {len(bad)} of {len(report.accounts)} account(s) need changes: "
            f"{escape(', '.join(bad))}"
        )
    else:
        console.print(f"doctor: all {len(report.accounts)} account(s) pass")


__all__ = ["render_doctor"]
