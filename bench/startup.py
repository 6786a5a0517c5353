"""9. Start-up (issue 14): a ``genvault run --once`` with nothing to do.

SQLite and a local folder, ten files archived by a first (untimed) run, so the measured
run starts, syncs one history page per account, leases nothing, writes no sidecar and
exits: what a cron job pays every few minutes when nothing is new. Target: **at most
0.4 s wall**.

Each measured command is a child process timed by ``os.wait4`` (``bench.infra``):
``python -c pass`` (the interpreter's own floor), ``python -c "import genvault.cli"``
and the nothing-to-do ``run --once``, ``runs`` times each, interleaved, so load on
this shared box falls on all three alike. The **median** counts (wall and CPU-s); the
load average is printed with it, since wall times move with load and CPU-s much less.

``python -m bench.profile startup`` profiles the same case (``bench/profiles/RUN.md``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.core import Result, Scale
from bench.infra import (
    API_KEY,
    API_KEY_ENV,
    CACHE,
    ChildRun,
    Source,
    child_env,
    python_module,
    run_child,
    verify_folder,
    workspace,
    write_genvault_config,
)

NAME: Final = "startup"
TITLE: Final = "a nothing-to-do `run --once` on SQLite + a local folder (target <= 0.4 s wall)"
RATIOS: Final = (
    "run --once wall / 0.4 s target (median)",
    "same, trio hidden (as deployed) / 0.4 s target",
)
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
TARGET_SECONDS: Final = 0.4
RUNS: Final = {Scale.FULL: 9, Scale.SMOKE: 2}
FILES: Final = 10
CONCURRENCY: Final = 8


@dataclass(frozen=True)
class Idle:
    """A genvault set-up with nothing left to do, and the commands to time against it."""

    work: Path
    config: Path
    env: dict[str, str]
    logs: Path

    @property
    def run_once(self) -> list[str]:
        return python_module("genvault.cli", "--config", str(self.config), "run", "--once")

    @property
    def run_once_without_trio(self) -> list[str]:
        """``run --once`` as a production install runs it: without trio.

        httpcore imports trio whenever it is installed (~50 ms with attrs and outcome),
        and only the dev extras install it (selenium). Hidden here as if absent.
        """
        return [sys.executable, "-c", _WITHOUT_TRIO, *self.run_once[3:]]

    def commands(self) -> dict[str, list[str]]:
        """Label -> argv, the floor first."""
        return {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import genvault.cli'": [sys.executable, "-c", "import genvault.cli"],
            "genvault --help": [*python_module("genvault.cli"), "--help"],
            "run --once, nothing to do": self.run_once,
            "run --once, no trio (as deployed)": self.run_once_without_trio,
        }


_WITHOUT_TRIO: Final = (
    "import sys; sys.modules['trio'] = None\n"
    "from genvault.cli import main\n"
    "main(prog_name='genvault')"
)


def startup_env() -> dict[str, str]:
    """The contenders' environment, with bytecode cached as an installed package has it.

    With ``PYTHONDONTWRITEBYTECODE`` set (as in some dev shells) and no ``__pycache__``
    in a fresh checkout, every run compiled genvault's ~80 modules from source again:
    ~0.08 CPU-s that an installed genvault (pip compiles on install) never pays. The
    bytecode goes to ``bench/.cache/pycache`` (``PYTHONPYCACHEPREFIX``), not into the
    tree, and the first, untimed run fills it.
    """
    env = child_env({API_KEY_ENV: API_KEY, "PYTHONPYCACHEPREFIX": str(CACHE / "pycache")})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@contextlib.contextmanager
def idle(name: str = NAME) -> Iterator[Idle]:
    """Simulators serving ``FILES`` images, all archived already by a first run."""
    source = Source(images=FILES, image_size=256 * 1024)
    with workspace(name) as work, source:
        folder = work / "archive"
        config = write_genvault_config(
            work / "idle.toml",
            db=work / "idle.db",
            s3=None,
            bucket="",
            prefix="",
            accounts=source.accounts(),
            concurrency=CONCURRENCY,
            folder=folder,
        )
        setup = Idle(work, config, startup_env(), work / "logs")
        run_child("first", setup.run_once, env=setup.env, logs=setup.logs, timeout=300).check()
        verify_folder(folder, source, who="first run")
        yield setup


def time_commands(setup: Idle, runs: int) -> tuple[dict[str, list[ChildRun]], list[float]]:
    """Every command ``runs`` times, interleaved; the 1-minute load before each round."""
    timings: dict[str, list[ChildRun]] = {label: [] for label in setup.commands()}
    loads: list[float] = []
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        for label, argv in setup.commands().items():
            child = run_child(f"t{i}", argv, env=setup.env, logs=setup.logs, timeout=120)
            timings[label].append(child.check())
    return timings, loads


def table(timings: dict[str, list[ChildRun]], header: str) -> list[str]:
    """Median wall, CPU-s and RSS per command (and the fastest wall)."""
    lines = [header, f"{'what':<34} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7}   (min wall)"]
    for label, done in timings.items():
        lines.append(
            f"{label:<34} {statistics.median(r.seconds for r in done):7.3f} "
            f"{statistics.median(r.cpu_seconds for r in done):7.3f} "
            f"{statistics.median(r.max_rss_mb for r in done):7.1f}   "
            f"({min(r.seconds for r in done):.3f})"
        )
    return lines


def run(scale: Scale) -> Result:
    result = Result(NAME, TITLE, scale)
    with idle() as setup:
        timings, loads = time_commands(setup, RUNS[scale])
    for label, done in timings.items():
        wall_ms = 1000 * statistics.median(r.seconds for r in done)
        result.figure(f"{label}: wall", wall_ms, "ms")
        result.figure(
            f"{label}: CPU", 1000 * statistics.median(r.cpu_seconds for r in done), "CPU-ms"
        )
    once = timings["run --once, nothing to do"]
    result.figure("run --once: peak RSS", statistics.median(r.max_rss_mb for r in once), "MB")
    result.figure("load (1 min, median)", statistics.median(loads))
    wall = statistics.median(r.seconds for r in once)
    result.ratio(RATIOS[0], wall / TARGET_SECONDS, 1.0, at_most=True)
    bare = statistics.median(r.seconds for r in timings["run --once, no trio (as deployed)"])
    result.ratio(RATIOS[1], bare / TARGET_SECONDS, 1.0, at_most=True)
    shown = ", ".join(f"{load:.1f}" for load in loads)
    result.note(f"{RUNS[scale]} interleaved runs per command, medians; load {shown}")
    return result
