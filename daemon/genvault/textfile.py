"""``run --once --metrics-file``: the process's metrics and the run's verdict, as a
file for node_exporter's textfile collector.

A CronJob's pass serves no ``/metrics``; this file is how Prometheus sees it. Beside
the families of ``/metrics`` (the server's without samples) it carries what only a
run has: whether it was complete (``genvault_run_complete``, the same verdict as the
exit code and the ``run.done`` line) and the files it left waiting, per account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from genvault.logs import get_logger
from genvault.metrics import Scrape

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from genvault.runtime import Runtime

log = get_logger("genvault.metrics")


def record_run_verdict(
    registry: CollectorRegistry,
    *,
    complete: bool,
    waiting: Mapping[str, int],
    accounts: Iterable[str],
) -> None:
    """Add the run's verdict to ``registry`` (once per process: a run ends once)."""
    from prometheus_client import Gauge

    Gauge(
        "genvault_run_complete",
        "1 when this run --once was complete (exit 0): every walk ended and every file "
        "ready was archived; 0 when not (its run.done line says why).",
        registry=registry,
    ).set(1 if complete else 0)
    left = Gauge(
        "genvault_run_waiting_files",
        "Pending files no live worker held when this run --once ended.",
        ["account"],
        registry=registry,
    )
    for account in accounts:
        left.labels(account).set(waiting.get(account, 0))


def write_textfile(rt: Runtime, path: Path) -> None:
    """Write the metrics for node_exporter's textfile collector, atomically.

    prometheus_client writes a temp file beside ``path`` and renames it, so the
    collector never reads half a file. A file that cannot be written is logged as an
    error and does not change the run's exit code, which reports the archive;
    node_exporter's ``node_textfile_mtime_seconds`` shows a file that stopped being
    refreshed.
    """
    if path.suffix != ".prom":
        log.warning(
            "metrics.textfile_name",
            path=str(path),
            hint="node_exporter's textfile collector only reads *.prom files",
        )
    try:
        from prometheus_client import write_to_textfile

        write_to_textfile(str(path), cast("CollectorRegistry", Scrape(rt.metrics.registry, {})))
    except OSError as exc:
        log.error("metrics.write_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")


__all__ = ["record_run_verdict", "write_textfile"]
