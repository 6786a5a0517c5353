"""The ``genvault`` command line. Thin: it parses, builds a Runtime, calls jobs, prints.

Exit codes (a CronJob or systemd can act on them): 0 fine, 2 bad configuration,
3 some items failed and will be retried, 4 a file was lost, 5 another genvault
process already runs on this SQLite database.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from genvault import __version__
from genvault.config import Settings, load_settings, resolve_secrets, world_readable_secret_files
from genvault.errors import AlreadyRunningError, ConfigError
from genvault.instance import single_process
from genvault.logging import configure as configure_logging
from genvault.logging import get_logger

if TYPE_CHECKING:
    from genvault.store import StoredHealth

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("genvault.cli")


class Ctx:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config",
    envvar="GENVAULT_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML config file (or set GENVAULT_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Override logging.level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    help="Override logging.format (auto: JSON unless stderr is a terminal).",
)
@click.version_option(__version__, prog_name="genvault")
@click.pass_context
def main(
    ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None
) -> None:
    """genvault archives AI-generated media before the providers delete it.

    It pages through each configured provider account's history, follows tasks
    still running, and streams every result file to S3 or a local folder,
    earliest deadline first, verified by size and sha256.
    """
    ctx.obj = Ctx(config, log_level, log_format)


# --------------------------------------------------------------------------- run


@contextlib.contextmanager
def single_process_or_exit(database_url: str) -> Iterator[None]:
    """Hold the SQLite process lock, or exit 5 with one line saying who holds it."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(single_process(database_url))
        except AlreadyRunningError as exc:
            from genvault.jobs.pipeline import ExitCode

            click.echo(f"genvault: {exc}", err=True)
            sys.exit(int(ExitCode.BUSY))
        yield


@main.command()
@click.option("--once", is_flag=True, help="One pass (sync, poll, archive) then exit: for cron.")
@click.pass_obj
@config_errors_exit_2
def run(obj: Ctx, once: bool) -> None:
    """Run the daemon (or a single pass with --once).

    On SQLite only one genvault process may run per database (exit 5 otherwise);
    on PostgreSQL run as many replicas as you like: they share the work.
    """
    settings = obj.settings()
    if not settings.accounts:
        raise ConfigError("accounts", "no accounts configured")
    with single_process_or_exit(settings.database.url):
        _run(settings, once)


def _run(settings: Settings, once: bool) -> None:
    from genvault.jobs.pipeline import run_once
    from genvault.runtime import Runtime
    from genvault.scheduler import run_daemon

    rt = Runtime.build(settings, resolve_secrets(settings))
    try:
        if once:
            rt.clean_storage()
            report = run_once(rt)
            code = int(report.exit_code)
            log.info(
                "run.done",
                exit_code=code,
                archived=report.archive.archived,
                bytes=report.archive.bytes,
                lost=report.archive.lost,
                failed=report.archive.failed,
                retrying=report.archive.retrying,
                circuit_open=report.circuit_open,
            )
            sys.exit(code)
        sys.exit(run_daemon(rt))
    finally:
        rt.close()


# --------------------------------------------------------------------------- status


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _circuit(stored: StoredHealth | None) -> dict[str, Any]:
    """An account's circuit breaker and request budget for ``status`` (healthy if never
    written). ``trial_due``: the cooldown is over, the next call will be a trial."""
    from genvault.throttle import CircuitState, HealthSnapshot

    h = stored.health if stored is not None else HealthSnapshot()
    now = datetime.now(UTC)
    return {
        "state": h.circuit.value,
        "consecutive_failures": h.consecutive_failures,
        "opened_at": _iso(h.opened_at),
        "retry_at": _iso(h.retry_at),
        "trial_due": h.circuit is not CircuitState.CLOSED
        and (h.retry_at is None or h.retry_at <= now),
        "last_error": h.last_error,
        "budget_interval_seconds": h.budget_interval,
        "rate_limited_until": _iso(h.rate_limited_until)
        if h.rate_limited_until is not None and h.rate_limited_until > now
        else None,
        "updated_at": _iso(stored.updated_at) if stored is not None else None,
    }


def status_document(settings: Settings, within: timedelta) -> dict[str, Any]:
    from genvault.providers.registry import provider_class
    from genvault.store import Store

    store = Store(settings.database.url)
    try:
        store.upgrade()
        summary = store.summary()
        risky = store.at_risk(within)
        health = store.provider_health()
    finally:
        store.dispose()
    accounts = []
    for acc in settings.accounts:
        s = summary.get(acc.name, {})
        accounts.append(
            {
                "name": acc.name,
                "provider": acc.provider,
                "has_history": provider_class(acc.provider).has_history,
                "generations": s.get("generations", {}),
                "assets": s.get("assets", {}),
                "bytes_archived": s.get("bytes_archived", 0),
                "last_sync": _iso(s.get("last_sync")),
                "last_error": s.get("last_error"),
                "next_deadline": _iso(s.get("next_deadline")),
                "circuit": _circuit(health.get(acc.name)),
            }
        )
    return {
        "accounts": accounts,
        "at_risk": [{k: _iso(v) for k, v in r.items()} for r in risky],
    }


@main.command()
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
    doc = status_document(obj.settings(), timedelta(hours=at_risk_hours))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from genvault.report import render_status

    render_status(doc)


# --------------------------------------------------------------------------- track


@main.command()
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


# --------------------------------------------------------------------------- demo


@main.command()
@click.option(
    "--dir",
    "directory",
    default="genvault-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo database and archive go.",
)
@click.option("--count", default=24, show_default=True, help="Generations per simulated provider.")
@click.option("--timeout", default=90.0, show_default=True, help="Give up after this many seconds.")
def demo(directory: Path, count: int, timeout: float) -> None:
    """Archive from built-in provider simulators into a local folder: no config, no network."""
    from genvault.demo import run_demo

    configure_logging("warning", "auto")
    with single_process_or_exit(f"sqlite:///{(directory / 'genvault.db').resolve()}"):
        code = run_demo(directory, count=count, timeout=timeout)
    sys.exit(code)


# --------------------------------------------------------------------------- db


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
@config_errors_exit_2
def db_upgrade(obj: Ctx) -> None:
    """Apply schema migrations (also done automatically at start)."""
    from genvault.store import Store

    store = Store(obj.settings().database.url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    click.echo("database is at the latest schema")


if __name__ == "__main__":  # pragma: no cover
    main()
