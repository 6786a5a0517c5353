"""``genvault notify``: send the digest of what needs a human now, or a test message."""

from __future__ import annotations

import sys

import click

from genvault.cli.common import Ctx, config_errors_exit_2


@click.command()
@click.option("--test", "test_only", is_flag=True, help="Send one test message and exit.")
@click.pass_obj
@config_errors_exit_2
def notify(obj: Ctx, test_only: bool) -> None:
    """Send what is news (files at risk or lost, failing streams, open circuits,
    failing storage) to the [notify] URLs now, as `run` does after every pass.

    With --test, send one test message instead, recorded nowhere: to check the URLs.
    Exit 0 when the message was delivered (or there was nothing to say), 1 when it
    was not, 2 on a configuration error (no [notify] URL, a URL Apprise does not know).
    """
    from genvault.errors import ConfigError
    from genvault.notify import messenger_for, notify_state
    from genvault.store import Store

    settings = obj.settings()
    store = Store(settings.database.url)
    try:
        store.upgrade()
        messenger = messenger_for(settings, store)
        if not messenger.enabled:
            raise ConfigError("notify.urls", "no notification URL configured")
        if test_only:
            delivered = messenger.test()
            click.echo("test message delivered" if delivered else "test message NOT delivered")
            sys.exit(0 if delivered else 1)
        digest = notify_state(settings, store, messenger)
    finally:
        store.dispose()
    if not digest:
        click.echo("nothing new to say")
        return
    click.echo(f"{digest.title()}: {'delivered' if digest.delivered else 'NOT delivered'}")
    sys.exit(0 if digest.delivered else 1)
