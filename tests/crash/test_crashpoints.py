"""``genvault.crashpoints``: inert without the variable, a SIGKILL on exactly the N-th hit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import genvault
from genvault.crashpoints import CRASH_POINTS, ENV_VAR

SCRIPT = """
from genvault.crashpoints import crash_point
for i in range(1, 6):
    crash_point("archive.after_commit")  # another point: never counted
    crash_point("sync.page_saved")
    print(i, flush=True)
"""


def _run(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if value is not None:
        env[ENV_VAR] = value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_unset_does_nothing() -> None:
    proc = _run(None)
    assert proc.returncode == 0 and proc.stdout.split() == ["1", "2", "3", "4", "5"]


def test_kills_on_the_nth_hit_of_the_named_point() -> None:
    proc = _run("sync.page_saved:3")
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["1", "2"]


def test_a_count_never_reached_lets_the_process_finish() -> None:
    assert _run("sync.page_saved:6").returncode == 0


def test_a_malformed_value_fails_loudly() -> None:
    for bad in ("sync.page_saved", "sync.page_saved:0", "no.such.point:1", "sync.page_saved:x"):
        proc = _run(bad)
        assert proc.returncode == 1 and "ValueError" in proc.stderr, bad


def test_every_listed_point_is_placed_exactly_once_in_the_daemon() -> None:
    root = Path(genvault.__file__).parent
    used: list[str] = []
    for path in root.rglob("*.py"):
        if path.name != "crashpoints.py":
            used += re.findall(r'crash_point\("([^"]+)"\)', path.read_text())
    assert sorted(used) == sorted(CRASH_POINTS)
