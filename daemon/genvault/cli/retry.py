"""``genvault retry``: requeue an account's files that are waiting or have failed."""

from __future__ import annotations

import click

from genvault.cli.common import Ctx, config_errors_exit_2, single_process_or_exit


@click.command()
@click.argument("account")
@click.option("--failed", is_flag=True, help="Also requeue files that failed for good.")
@click.option(
    "--lost",
    is_flag=True,
    help="Also requeue lost files: the provider is asked for a fresh URL once more.",
)
@click.pass_obj
@config_errors_exit_2
def retry(obj: Ctx, account: str, failed: bool, lost: bool) -> None:
    """Requeue an account's files that are waiting or have failed.

    Files waiting out a retry backoff become due now. With --failed, failed files
    go back to the queue with their attempts reset (after fixing what failed them,
    say a raised network.max_asset_bytes). With --lost, lost files get one more
    try, after every savable file: worth it only when the provider may still serve
    them past its documented retention; they are lost again otherwise. The next
    pass (`genvault run --once`, or the daemon's next archive job) takes them.
    """
    from genvault.store import Store

    settings = obj.settings()
    acc = settings.account(account)  # an unknown name: exit 2, one line naming it
    with single_process_or_exit(settings.database.url):
        store = Store(settings.database.url)
        try:
            store.upgrade()
            result = store.requeue_assets(acc.name, failed=failed, lost=lost)
        finally:
            store.dispose()
    parts = [f"{result.made_due} waiting file(s) due now"]
    if failed:
        parts.append(f"{result.failed_requeued} failed file(s) requeued")
    if lost:
        parts.append(f"{result.lost_requeued} lost file(s) requeued")
    click.echo(f"{acc.name}: " + ", ".join(parts))
    left = []
    if result.failed_left:
        left.append(f"{result.failed_left} failed (--failed)")
    if result.lost_left:
        left.append(f"{result.lost_left} lost (--lost)")
    if left:
        click.echo(f"{acc.name}: left as they are: " + ", ".join(left))
