"""Human-readable output of ``genvault status`` (rich tables)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def countdown(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "-"
    when = datetime.fromisoformat(iso)
    secs = (when - (now or datetime.now(UTC))).total_seconds()
    if secs < 0:
        return "expired"
    hours, rem = divmod(int(secs), 3600)
    if hours >= 48:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}h {rem // 60:02d}m"


def render_status(doc: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        probe = Console()
        console = probe if probe.is_terminal else Console(width=160)  # pipes: no wrapping
    table = Table(title="genvault status", header_style="bold")
    columns = (
        "account",
        "provider",
        "tasks ok/failed/open",
        "archived",
        "pending",
        "failed",
        "lost",
        "bytes",
        "last sync (UTC)",
        "next deadline",
    )
    for col in columns:
        table.add_column(col)
    for a in doc["accounts"]:
        gens = a["generations"]
        assets = a["assets"]
        still_open = sum(v for k, v in gens.items() if k not in ("succeeded", "failed"))
        table.add_row(
            a["name"],
            a["provider"],
            f"{gens.get('succeeded', 0)} / {gens.get('failed', 0)} / {still_open}",
            str(assets.get("archived", 0)),
            str(assets.get("pending", 0)),
            str(assets.get("failed", 0)),
            f"[red]{assets['lost']}[/red]" if assets.get("lost") else "0",
            human_bytes(a["bytes_archived"]),
            (a["last_sync"] or ("never" if a.get("has_history", True) else "no listing"))[
                :16
            ].replace("T", " "),
            countdown(a["next_deadline"]),
        )
    console.print(table)
    if doc["at_risk"]:
        risk = Table(title="at risk (pending, deadline soon)", header_style="bold red")
        for col in ("account", "external id", "role", "time left", "attempts", "last error"):
            risk.add_column(col)
        for r in doc["at_risk"]:
            risk.add_row(
                r["account"],
                r["external_id"],
                r["role"],
                countdown(r["expires_at"]),
                str(r["attempts"]),
                (r["last_error"] or "")[:60],
            )
        console.print(risk)
    else:
        console.print("[green]nothing at risk[/green]")
