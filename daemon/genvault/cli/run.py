"""``genvault run``: the daemon, or one pass with ``--once`` (CronJob, systemd timer)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from genvault.cli import skip_teardown, start_up_done
from genvault.cli.common import Ctx, config_errors_exit_2, log, single_process_or_exit
from genvault.config import Settings, resolve_secrets
from genvault.errors import ConfigError


@click.command()
@click.option("--once", is_flag=True, help="One pass (sync, poll, archive) then exit: for cron.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="With --once: print what would be fetched and archived; write nothing.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --once: write Prometheus metrics here at the end (node_exporter textfile).",
)
@click.pass_obj
@config_errors_exit_2
def run(obj: Ctx, once: bool, dry_run: bool, metrics_file: Path | None) -> None:
    """Run the daemon (or a single pass with --once).

    On SQLite only one genvault process may run per database (exit 5 otherwise);
    on PostgreSQL run as many replicas as you like: they share the work.
    """
    if (dry_run or metrics_file is not None) and not once:
        raise click.UsageError("--dry-run and --metrics-file go with --once")
    settings = obj.settings()
    if not settings.accounts:
        raise ConfigError("accounts", "no accounts configured")
    if dry_run:
        from genvault.ops.dryrun import dry_run as preview

        start_up_done()
        sys.exit(preview(settings, resolve_secrets(settings), echo=click.echo))
    with single_process_or_exit(settings.database.url):
        _run(settings, once, metrics_file)


def _run(settings: Settings, once: bool, metrics_file: Path | None) -> None:
    from genvault.jobs.pipeline import run_once
    from genvault.runtime import Runtime

    # a pass's counters are read only through --metrics-file; the daemon serves them
    rt = Runtime.build(
        settings, resolve_secrets(settings), metrics_read=not once or metrics_file is not None
    )
    start_up_done()  # everything this process keeps is imported and built
    try:
        if once:
            rt.clean_storage()
            report = run_once(rt)
            code = int(report.exit_code)
            incomplete = report.incomplete
            (log.info if not incomplete else log.warning)(
                "run.done",
                exit_code=code,
                complete=not incomplete,
                incomplete=incomplete or None,
                archived=report.archive.archived,
                bytes=report.archive.bytes,
                lost=report.archive.lost,
                failed=report.archive.failed,
                retrying=report.archive.retrying,
                waiting=sum(report.waiting.values()),
                circuit_open=report.circuit_open,
            )
            if metrics_file is not None:
                from genvault.textfile import record_run_verdict, write_textfile

                record_run_verdict(
                    rt.metrics.registry,
                    complete=not incomplete,
                    waiting=report.waiting,
                    accounts=rt.accounts,
                )
                write_textfile(rt, metrics_file)
            skip_teardown()  # once rt.close() below and the lock's release are done
            sys.exit(code)
        from genvault.scheduler import run_daemon  # APScheduler and the server: daemon only

        sys.exit(run_daemon(rt))
    finally:
        rt.close()
