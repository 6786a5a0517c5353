"""``genvault track``: register task ids for APIs that have no history listing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.command()
@click.argument("account")
@click.argument("task_ids", nargs=-1)
@click.option(
    "--from-file",
    "from_file",
    type=click.File("r"),
    help="One id per line, or JSON lines with id and optional created_at/prompt.",
)
@click.pass_obj
@config_errors_exit_2
def track(obj: Ctx, account: str, task_ids: tuple[str, ...], from_file: Any) -> None:
    """Register task ids to follow (for APIs without a history listing)."""
    from genvault.intake import parse_id_lines
    from genvault.store import Store

    settings = obj.settings()
    acc = settings.account(account)
    items: list[dict[str, Any]] = [{"id": t} for t in task_ids]
    if from_file is not None:
        items.extend(parse_id_lines(from_file))
    if not items:
        raise click.UsageError("give task ids or --from-file")
    store = Store(settings.database.url)
    try:
        store.upgrade()
        new = store.register_tasks(
            provider=acc.provider,
            account=acc.name,
            items=items,
            source="track",
            poll_horizon=timedelta(hours=settings.poll.give_up_hours),
        )
    finally:
        store.dispose()
    click.echo(f"{new} new task(s) registered for {acc.name}, {len(items) - new} already known")
