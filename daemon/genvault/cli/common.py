"""What every command shares: the lazily loaded settings, and the exits for bad config
and for a database another process already holds."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import click

from genvault.config import Settings, load_settings, world_readable_secret_files
from genvault.errors import AlreadyRunningError, ConfigError
from genvault.instance import single_process
from genvault.logs import configure as configure_logging
from genvault.logs import get_logger

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("genvault.cli")


class Ctx:
    """The group's options; settings are loaded (and logging configured) on first use,
    so ``--help`` works without a config file."""

    def __init__(self, config: str | None, log_level: str | None, log_format: str | None) -> None:
        self.config_path = config
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            configure_logging(
                self.log_level or self._settings.logging.level,
                self.log_format or self._settings.logging.format,
            )
            for f in world_readable_secret_files(self._settings):
                log.warning(
                    "config.secret_file_readable",
                    path=str(f),
                    hint="chmod 600 it: other users can read this API key",
                )
        return self._settings


def config_errors_exit_2(fn: F) -> F:
    """Turn a ConfigError into one line on stderr and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"genvault: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def single_process_or_exit(database_url: str) -> Iterator[None]:
    """Hold the SQLite process lock, or exit 5 with one line saying who holds it."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(single_process(database_url))
        except AlreadyRunningError as exc:
            from genvault.exitcodes import ExitCode

            click.echo(f"genvault: {exc}", err=True)
            sys.exit(int(ExitCode.BUSY))
        yield


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO date or datetime (UTC unless it says otherwise), or ``7d``/``12h``."""
    if value is None:
        return None
    text = value.strip()
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use a date (2026-11-01), a datetime, or an age like 7d or 12h",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
