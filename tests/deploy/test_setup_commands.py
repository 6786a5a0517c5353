"""The README's two set-up commands, `.ci/run` and `tests/run` stay one story.

CI runs `.ci/run` on a fresh machine; the README promises a newcomer the same two
commands. If the README's test command drifted from what CI runs, CI would prove a
set-up nobody is told to use. These tests read the three files as a newcomer would and
run `tests/run` itself, so the script is known to pass its arguments to pytest and to
return pytest's exit code.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
TESTS_RUN = ROOT / "tests" / "run"


def _quick_start_commands() -> list[str]:
    """The shell blocks of the README's "Quick start" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_the_quick_start_is_two_commands_and_the_second_is_tests_run() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    install, test = commands
    assert "genvault demo" in install
    assert test == "tests/run"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    marked = [
        line
        for line in CI_RUN.read_text(encoding="utf-8").splitlines()
        if "README TEST COMMAND" in line
    ]
    assert len(marked) == 1, marked
    assert marked[0].split("||")[0].strip() == _quick_start_commands()[1]


def test_tests_run_is_executable_for_a_fresh_clone() -> None:
    assert TESTS_RUN.stat().st_mode & stat.S_IXUSR
    mode = subprocess.run(
        ["git", "ls-files", "-s", "tests/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert mode == "100755", "git must record tests/run as executable, or a clone cannot run it"


def _tests_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``tests/run`` on one quick selection of this suite, as a newcomer would call it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [str(TESTS_RUN), "-q", "-p", "no:cacheprovider", "tests/unit/test_walk.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_tests_run_hands_its_arguments_to_pytest_and_returns_its_code() -> None:
    passed = _tests_run("-k", "overlap")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"\d+ passed", passed.stdout), passed.stdout

    nothing = _tests_run("-k", "no_test_has_this_name")
    assert nothing.returncode == 5, nothing.stdout + nothing.stderr
