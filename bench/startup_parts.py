"""Where the CPU of a nothing-to-do ``run --once`` goes, part by part (issue 14).

    python -m bench.startup_parts [--runs N] [DAEMON_DIR ...]

The set-up is ``python -m bench startup``'s (:func:`bench.startup.idle`). Each run is a
child that imports, in the order ``run --once`` does, the packages and genvault modules
a pass needs, reading its own CPU clock (``time.process_time``) after each group; then
it runs ``run --once`` as the ``genvault`` script does (``main()``: the command line) and
reads the clock once more in an :mod:`atexit` handler; ``wait4`` gives the whole
process's CPU, so the last line is what is left after atexit (the interpreter's
teardown, and process exit). A CPU clock, not ``-X importtime``'s wall clock: on this
shared 2-core box the wall clock moves with the neighbours' load, CPU far less.

With several ``DAEMON_DIR`` (e.g. ``/work/main/daemon`` and this tree's ``daemon``), each
is put first on ``PYTHONPATH`` in turn, runs interleaved: before and after in one table.
A group a tree has already imported earlier costs nothing there (on main, httpcore and
trio load with the runtime, not with ``genvault.net``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Final

from bench.infra import REPO
from bench.startup import Idle, idle

_CHILD: Final = r"""
import atexit, gc, json, sys, time
marks = [("interpreter start-up (as python -c pass)", time.process_time())]
def mark(label):
    marks.append((label, time.process_time()))
import genvault.cli; mark("click, genvault.cli")
gc.disable()  # as LazyGroup.main does, until start_up_done()
import pydantic; mark("pydantic, pydantic_core")
import genvault.config; mark("genvault.config: settings models (+importlib.metadata)")
import genvault.instance; mark("sqlalchemy core (+asyncio), genvault.instance")
import genvault.logs; mark("structlog, genvault.logs")
import genvault.cli.common, genvault.cli.run; mark("genvault.cli.common, cli.run")
import genvault.net, httpcore; mark("httpx, httpcore, h11 (+trio, attrs, outcome if loaded)")
import sqlmodel; mark("sqlmodel, sqlalchemy.orm")
import sqlalchemy.dialects.sqlite, sqlalchemy.dialects.postgresql
mark("sqlalchemy's sqlite and postgresql dialects")
import genvault.models; mark("genvault.models: the table classes")
import genvault.metrics; mark("genvault.metrics (+prometheus_client if loaded)")
import genvault.store; mark("genvault.store: Store and its mixins")
import genvault.runtime, genvault.jobs.pipeline; mark("genvault.runtime, jobs, storage, net")
import genvault.providers.crowdcomputed; mark("the provider module")
genvault.cli._gc_paused = True  # so main() keeps it off and start_up_done() freezes
def done():
    mark("the pass: settings, runtime, sync, poll, archive, close")
    sys.stderr.write("PARTS " + json.dumps(marks) + "\n")
    sys.stderr.flush()
atexit.register(done)
from genvault.cli import main
main(prog_name="genvault")
"""
TEARDOWN: Final = "after atexit: interpreter teardown, exit"
TOTAL: Final = "total (wait4: user + sys)"


def measure(setup: Idle, daemon: Path | None) -> dict[str, float]:
    """One child: CPU-ms per part."""
    env = dict(setup.env)
    if daemon is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(daemon), str(REPO)])
    argv = [sys.executable, "-c", _CHILD, *setup.run_once[3:]]
    err = setup.work / "parts.err"
    with err.open("w") as stderr:
        redirect = [(os.POSIX_SPAWN_DUP2, stderr.fileno(), 2)]
        pid = os.posix_spawn(argv[0], argv, env, file_actions=redirect)
        _, status, usage = os.wait4(pid, 0)
    text = err.read_text()
    if status != 0:
        raise RuntimeError(f"run --once failed ({status}): {text[-2000:]}")
    line = next(ln for ln in text.splitlines() if ln.startswith("PARTS "))
    parts: dict[str, float] = {}
    previous = 0.0
    for label, clock in json.loads(line.removeprefix("PARTS ")):
        parts[label] = 1000 * (clock - previous)
        previous = clock
    cpu = usage.ru_utime + usage.ru_stime
    parts[TEARDOWN] = 1000 * (cpu - previous)
    parts[TOTAL] = 1000 * cpu
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_parts", description=__doc__)
    parser.add_argument("daemons", nargs="*", type=Path, help="daemon dirs to compare")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    daemons: list[Path | None] = list(args.daemons) or [None]
    runs: dict[Path | None, list[dict[str, float]]] = {d: [] for d in daemons}
    loads = []
    with idle("startup-parts") as setup:
        for _ in range(args.runs):
            loads.append(os.getloadavg()[0])
            for daemon in daemons:
                runs[daemon].append(measure(setup, daemon))
    names = [str(d) if d else "this tree" for d in daemons]
    load = statistics.median(loads)
    print(f"CPU-ms per part, median of {args.runs} interleaved runs (1-min load {load:.1f})")
    print(f"{'part':<58}" + "".join(f"{n[-24:]:>26}" for n in names))
    for label in runs[daemons[0]][0]:
        cells = (statistics.median(r[label] for r in runs[d]) for d in daemons)
        print(f"{label:<58}" + "".join(f"{c:26.1f}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
