"""The CLI's command table (``genvault.cli.COMMANDS``) is complete and says what the
commands say: commands are imported lazily, so ``--help`` lists them from the table."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click
import pytest

import genvault.cli
from genvault.cli import COMMANDS, load_command, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_entry_is_that_command_with_that_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    help_text = command.help or ""
    first = help_text.split("\n\n", 1)[0]
    assert " ".join(first.split()) == COMMANDS[name][1]


def test_every_command_of_the_cli_package_is_registered() -> None:
    """A click command defined in any ``genvault.cli`` module is in the table."""
    registered = {COMMANDS[name][0] for name in COMMANDS}
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(genvault.cli.__path__):
        if info.name == "__main__":  # runs the CLI
            continue
        module = importlib.import_module(f"genvault.cli.{info.name}")
        for attr, value in vars(module).items():
            callback = getattr(value, "callback", None)
            if (
                isinstance(value, click.Command)
                and getattr(callback, "__module__", None) == module.__name__
            ):
                found[f"{module.__name__}:{attr}"] = value
    subcommands = {
        id(sub)
        for cmd in found.values()
        if isinstance(cmd, click.Group)
        for sub in cmd.commands.values()
    }
    found = {where: cmd for where, cmd in found.items() if id(cmd) not in subcommands}
    assert set(found) == registered


def test_unknown_command_is_refused() -> None:
    ctx = click.Context(main)
    assert main.get_command(ctx, "no-such-command") is None
    assert main.list_commands(ctx) == sorted(COMMANDS)


def test_help_imports_no_command() -> None:
    code = (
        "import sys\n"
        "from genvault.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('genvault.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
