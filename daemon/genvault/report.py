"""Human-readable output of ``genvault status`` (rich tables).

Sizes and times are formatted by :mod:`genvault.formatting`, which the status page
shares, so both say the same thing; they are re-exported here for older imports.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from genvault.formatting import ago, countdown, human_bytes, until, utc_minute
from genvault.records import STATED_SOURCES

__all__ = ["circuit_cell", "render_status"]


def circuit_cell(c: dict[str, Any] | None) -> str:
    """The provider's health in one cell: circuit state, pacing and quota pause."""
    if not c:
        return "closed"
    state = c["state"]
    if state == "closed":
        text = "closed"
        if c.get("consecutive_failures"):
            text += f" ({c['consecutive_failures']} failed)"
    elif c.get("trial_due"):
        text = "[yellow]trial due[/yellow]"
    else:
        label = "open" if state == "open" else "half-open"
        text = f"[red]{label}[/red], retry {until(c.get('retry_at'))}"
    if c.get("budget_interval_seconds"):
        text += f", paced {c['budget_interval_seconds']:g}s"
    if c.get("rate_limited_until"):
        text += f", quota pause {until(c['rate_limited_until'])}"
    return text


def _unhealthy(c: dict[str, Any] | None) -> bool:
    return bool(
        c
        and (
            c["state"] != "closed"
            or c.get("consecutive_failures")
            or c.get("budget_interval_seconds")
            or c.get("rate_limited_until")
        )
    )


def render_status(doc: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        probe = Console()
        # Pipes (logs, scripts, tests): tables at their natural width, never wrapped.
        console = probe if probe.is_terminal else Console(width=10_000)
    table = Table(title="genvault status", header_style="bold")
    columns = (
        "account",
        "provider",
        "tasks ok/failed/open",
        "archived",
        "pending",
        "held / waiting",
        "failed",
        "lost",
        "bytes",
        "last sync (UTC)",
        "next deadline",
        "circuit",
        "complete",
    )
    for col in columns:
        table.add_column(col)
    for a in doc["accounts"]:
        gens = a["generations"]
        assets = a["assets"]
        still_open = sum(v for k, v in gens.items() if k not in ("succeeded", "failed"))
        table.add_row(
            a["name"] if a.get("complete", True) else f"[red]{a['name']}[/red]",
            a["provider"],
            f"{gens.get('succeeded', 0)} / {gens.get('failed', 0)} / {still_open}",
            str(assets.get("archived", 0)),
            str(assets.get("pending", 0)),
            f"{a.get('held', 0)} / {a.get('waiting', assets.get('pending', 0))}",
            str(assets.get("failed", 0)),
            f"[red]{assets['lost']}[/red]" if assets.get("lost") else "0",
            human_bytes(a["bytes_archived"]),
            (a["last_sync"] or ("never" if a.get("has_history", True) else "no listing"))[
                :16
            ].replace("T", " "),
            countdown(a["next_deadline"]),
            circuit_cell(a.get("circuit")),
            complete_cell(a),
        )
    console.print(table)
    storage = doc.get("storage")
    if storage and storage["circuit"]["state"] != "closed":
        c = storage["circuit"]
        console.print(
            f"[red]storage unavailable[/red]: archiving paused ({escape(storage['url'])}); "
            f"{'probe due' if c.get('trial_due') else 'next probe ' + until(c.get('retry_at'))}"
            f"; {escape((c.get('last_error') or 'no detail')[:200])}"
        )
    _render_streams(doc["accounts"], console)
    troubled = [a for a in doc["accounts"] if _unhealthy(a.get("circuit"))]
    if troubled:
        circuits = Table(title="provider circuit", header_style="bold yellow")
        for col in (
            "account",
            "state",
            "failures",
            "retry at (UTC)",
            "pace",
            "quota pause until (UTC)",
            "last error",
        ):
            circuits.add_column(col)
        for a in troubled:
            c = a["circuit"]
            pace = c.get("budget_interval_seconds") or 0
            circuits.add_row(
                a["name"],
                c["state"],
                str(c["consecutive_failures"]),
                (c.get("retry_at") or "-")[:19].replace("T", " "),
                f"{pace:g}s" if pace else "-",
                (c.get("rate_limited_until") or "-")[:19].replace("T", " "),
                escape((c.get("last_error") or "")[:80]),
            )
        console.print(circuits)
    if doc["at_risk"]:
        risk = Table(title="at risk (pending, deadline soon)", header_style="bold red")
        for col in (
            "account",
            "external id",
            "role",
            "time left",
            "deadline from",
            "attempts",
            "last error",
        ):
            risk.add_column(col)
        for r in doc["at_risk"]:
            risk.add_row(
                escape(r["account"]),
                escape(r["external_id"]),
                r["role"],
                countdown(r["expires_at"]),
                deadline_source_cell(r.get("expires_source")),
                str(r["attempts"]),
                escape((r["last_error"] or "")[:60]),
            )
        console.print(risk)
    else:
        console.print("[green]nothing at risk[/green]")
    _render_skipped(doc["accounts"], console)
    _render_failures(doc.get("recent_failures") or [], console)


def _render_failures(failures: list[dict[str, Any]], console: Console) -> None:
    """Recent failed, lost and erroring files with their reason, newest first.

    Reasons are third-party text (provider and CDN errors): escaped, so a ``[``
    in one is printed, not read as rich markup.
    """
    if not failures:
        return
    table = Table(title="recent failures", header_style="bold yellow")
    for col in ("when", "account", "external id", "role", "state", "attempts", "reason"):
        table.add_column(col)
    for f in failures:
        state = f["state"]
        if state == "lost":
            shown = "[red]lost[/red]"
        elif state == "pending":
            shown = f"retry {until(f.get('next_attempt_at'))}"
        else:
            shown = state
        table.add_row(
            ago(f["updated_at"]),
            escape(f["account"]),
            escape(f["external_id"]),
            f["role"],
            shown,
            str(f["attempts"]),
            escape((f["reason"] or "")[:100]),
        )
    console.print(table)


def complete_cell(a: dict[str, Any]) -> str:
    """An account's completeness in one cell: its streams are listed in the table below."""
    if "streams" not in a:  # a document from before the key existed
        return "-"
    if a.get("complete"):
        return "[green]yes[/green]"
    why = []
    if bad := sum(1 for s in a["streams"] if not s["complete"]):
        why.append(f"{bad} stream{'s' if bad != 1 else ''}")
    if waiting := int(a.get("waiting", 0)):
        why.append(f"{waiting} waiting")
    return f"[red]no: {', '.join(why) or 'incomplete'}[/red]"


def _walk_cell(s: dict[str, Any]) -> str:
    when = s.get("last_complete_walk_at")
    if not when:
        return "-" if s.get("tracked") else "never"
    return f"{utc_minute(when)} ({ago(when)})"


def _state_cell(s: dict[str, Any]) -> str:
    walking = " [dim](walking)[/dim]" if s.get("walking") else ""
    retired = "[dim]retired[/dim] " if s.get("retired") else ""
    if s["complete"]:
        return f"{retired}[green]complete[/green]{walking}"
    problems = "; ".join(escape(p) for p in s.get("problems") or ["incomplete"])
    return f"{retired}[red]{problems}[/red]{walking}"


def _render_streams(accounts: list[dict[str, Any]], console: Console) -> None:
    """Completeness per history stream: the reconciliation figures and what is wrong.

    A stream that is not complete is named in red with its problems (a sync error
    quotes the provider: escaped, never read as markup).
    """
    rows = [(a["name"], s) for a in accounts for s in a.get("streams") or []]
    if not rows:
        return
    table = Table(title="streams (completeness per history listing)", header_style="bold")
    for col in (
        "account",
        "stream",
        "listed",
        "known",
        "archived",
        "pending",
        "missing",
        "gone before capture",
        "last complete walk (UTC)",
        "state",
    ):
        table.add_column(col, no_wrap=col in ("account", "stream"))
    for account, s in rows:
        name = escape(s["stream"])
        missing, gone = s["missing"], s["gone_before_capture"]
        table.add_row(
            account,
            name if s["complete"] else f"[red]{name}[/red]",
            "-" if s.get("listed") is None else str(s["listed"]),
            str(s["known"]),
            str(s["archived"]),
            str(s["pending"]),
            f"[red]{missing}[/red]" if missing else "0",
            f"[yellow]{gone}[/yellow]" if gone else "0",
            _walk_cell(s),
            _state_cell(s),
        )
    console.print(table)


def deadline_source_cell(source: str | None) -> str:
    """Where a deadline comes from; a guess is marked as one."""
    if source is not None and source in STATED_SOURCES:
        return source.replace("_", " ")
    return f"[yellow]{source or 'unknown'} (a guess)[/yellow]"


def _render_skipped(accounts: list[dict[str, Any]], console: Console) -> None:
    """Files left out by choice (their role or kind is not archived), with the setting
    that leaves them out: a skipped file must never look like a missed one."""
    rows = [(a["name"], s) for a in accounts for s in a.get("skipped") or []]
    if not rows:
        return
    table = Table(title="skipped (not archived, by choice)", header_style="bold")
    for col in ("account", "role", "kind", "files", "why"):
        table.add_column(col)
    for account, s in rows:
        table.add_row(escape(account), s["role"], s["kind"], str(s["files"]), escape(s["why"]))
    console.print(table)
