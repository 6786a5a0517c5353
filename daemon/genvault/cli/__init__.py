"""The ``genvault`` command line. Thin: it parses, builds a Runtime, calls jobs, prints.

Exit codes (a CronJob or systemd can act on them): 0 fine, 2 bad configuration,
3 some items failed and will be retried, 4 a file was lost, 5 another genvault
process already runs on this SQLite database, 6 ``verify`` found an archived
object missing, unreadable or not matching its size and sha256, 7 ``doctor`` found
an account whose configuration (or clock) needs changing. ``import`` exits 3 when
a file was refused (a partial download, no media) or could not be stored.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading
from typing import Any, Final

import click

from genvault import __version__

COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "run": ("genvault.cli.run:run", "Run the daemon (or a single pass with --once)."),
    "status": (
        "genvault.cli.status:status",
        "What is archived, pending, at risk of expiring, and lost, per account; and per "
        "history stream, whether the archive is complete (and, if not, why).",
    ),
    "search": (
        "genvault.cli.search:search",
        "Find generations by prompt text and model, across every account.",
    ),
    "track": (
        "genvault.cli.track:track",
        "Register task ids to follow (for APIs without a history listing).",
    ),
    "import": (
        "genvault.cli.import_files:import_files",
        "Adopt media you downloaded earlier (by hand or with another tool) as archived.",
    ),
    "backfill": (
        "genvault.cli.backfill:backfill",
        "Walk the whole history of one or every account, then archive what it found.",
    ),
    "retry": (
        "genvault.cli.retry:retry",
        "Requeue an account's files that are waiting or have failed.",
    ),
    "verify": (
        "genvault.cli.verify:verify",
        "Re-read archived objects and compare size and sha256 with the database.",
    ),
    "doctor": (
        "genvault.cli.doctor:doctor",
        "Probe each configured account (or the named ones) read-only against its API.",
    ),
    "notify": (
        "genvault.cli.notify:notify",
        "Send what is news (files at risk or lost, failing streams, open circuits, failing "
        "storage) to the [notify] URLs now, as `run` does after every pass.",
    ),
    "export": (
        "genvault.cli.export:export",
        "Write the metadata of every generation and where its files are.",
    ),
    "demo": (
        "genvault.cli.demo:demo",
        "Archive from built-in provider simulators into a local folder: no config, no network.",
    ),
    "db": ("genvault.cli.db:db", "Database maintenance."),
}
"""Every command: name -> (``module:attribute`` of its click command, the first paragraph
of its help, which ``genvault --help`` shortens to one line).

Commands are imported when used, not when the CLI is: ``run --once`` never loads
``backfill``'s or ``search``'s modules, and ``--help`` loads none (it lists these
helps; ``tests/unit/test_cli_registry.py`` checks them against the commands')."""


_gc_paused = False


def start_up_done() -> None:
    """End of start-up: the cyclic garbage collector runs again from here.

    :meth:`LazyGroup.main` pauses it while the process starts: importing ~600 modules
    and building the settings and runtime makes ~70,000 objects that live as long as
    the process, and the collector traversed them again and again as they piled up
    (~40 ms of a 0.45 s ``run --once``, a full collection included). Here they are
    moved to the permanent generation (:func:`gc.freeze`), so no later collection,
    in a cron pass or in the daemon's whole life, traverses them again; then the
    collector is back on. ``run`` calls this once its runtime is built, every other
    command before its own code runs. Idempotent; a no-op unless start-up paused it.
    """
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


_skip_teardown = False


def skip_teardown() -> None:
    """Let the coming ``sys.exit`` end the process without tearing the interpreter down.

    After ``run --once`` has closed its runtime (the database written and closed, every
    file fsynced, the metrics file written, the instance lock released on the way out),
    what is left of a normal exit is the interpreter's finalization: clearing ~650
    modules and freeing every object the start-up made, ~15 ms of CPU that a cron
    pass paid for nothing. :meth:`LazyGroup.main` then flushes the standard streams,
    runs the :mod:`atexit` handlers (logging's shutdown among them) and calls
    :func:`os._exit` with the same code; only from the command line (``main()`` with
    no arguments: the ``genvault`` script, ``python -m genvault.cli``), never for a
    caller that passed its own arguments (tests, ``CliRunner``), never while another
    thread still runs (a normal exit would wait for it), and never under a tracer or
    profiler (coverage, a debugger, ``python -m cProfile -m genvault.cli``), which may
    write its report once ``main()`` has raised.
    """
    global _skip_teardown
    _skip_teardown = True


def _end_process(code: object) -> None:
    """``os._exit(code)`` after what a normal exit does that anyone can see, or return
    (the caller lets the exit run normally) when that cannot be done safely."""
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if not isinstance(code, int) or threading.active_count() > 1 or run_exitfuncs is None:
        return
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return  # coverage, a debugger, ``python -m cProfile``: they report after main()
    run_exitfuncs()  # logging.shutdown (flushes every handler), weakref finalizers
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken pipe: let the normal exit say so
        return
    os._exit(code)


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name on first use (:data:`COMMANDS`)."""

    def main(self, args: Any = None, *more: Any, **kwargs: Any) -> Any:
        """The entry point, with the garbage collector paused until :func:`start_up_done`."""
        global _gc_paused
        if gc.isenabled():
            gc.disable()
            _gc_paused = True
        try:
            return super().main(args, *more, **kwargs)
        except SystemExit as exc:
            if _skip_teardown and args is None:  # the command line (see skip_teardown)
                _end_process(exc.code)
            raise
        finally:
            start_up_done()  # --help, --version, a usage error: never left paused

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list without importing the commands: unloaded ones are listed
        from :data:`COMMANDS` (same text as their own help would give)."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


def load_command(name: str) -> click.Command:
    """Import the click command registered as ``name`` in :data:`COMMANDS`."""
    module, _, attr = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from genvault.cli.common import Ctx
    from genvault.malloc import pin_mmap_threshold

    pin_mmap_threshold()  # before any part buffer exists: see genvault.malloc
    ctx.obj = Ctx(config, log_level, log_format)
    if ctx.invoked_subcommand != "run":
        start_up_done()  # run: once its runtime is built (genvault.cli.run)
