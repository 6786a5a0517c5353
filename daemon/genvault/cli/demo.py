"""``genvault demo``: the built-in simulators into a local folder, no config needed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from genvault.cli.common import single_process_or_exit
from genvault.logs import configure as configure_logging


@click.command()
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
    from genvault.ops.demo import run_demo

    configure_logging("warning", "auto")
    with single_process_or_exit(f"sqlite:///{(directory / 'genvault.db').resolve()}"):
        code = run_demo(directory, count=count, timeout=timeout)
    sys.exit(code)
