"""Profile of benchmark 4 on PostgreSQL (issue 14): ``python -m bench.metadata_profile``.

Not a benchmark: it runs the PostgreSQL sync of ``bench.metadata`` (100,000 Tengr.ai
generations, 500 a page, a fresh database, genvault in a child process) twice and
writes where the DB part (``Store.save_page``) spends its time, from both ends:

* **the server**: ``pg_stat_statements`` (the throwaway cluster is started with it
  preloaded): every statement the sync ran, its calls, rows and execution time, and
  the CPU time of the backends (``/proc/PID/stat``);
* **the client**: ``py-spy record --gil`` of the child (only the thread holding the
  GIL: the interpreter's time, see ``bench/profile.py`` for why), summarised for the
  samples under ``save_page``: by innermost store statement, by the library layer
  below it (SQLAlchemy, psycopg, json, genvault's own row building) and by leaf.

Files: ``bench/profiles/metadata-pg.LABEL.{statements,pyspy.summary}.txt`` and the
raw ``metadata-pg.LABEL.pyspy.collapsed.txt.gz``. ``bench/profiles/RUN.md`` has the
command; ``bench/README.md`` (benchmark 4) reads them.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
from sqlalchemy.engine import make_url

from bench.metadata import ChildReport, _simulator
from bench.profile import _frames, _genvault_where, _statement, tool

OUT: Final = Path(__file__).resolve().parent / "profiles"
RATE: Final = 250
TOP: Final = 25


@contextlib.contextmanager
def _server() -> Iterator[str]:
    """A PostgreSQL server like the bench's, with ``pg_stat_statements`` preloaded."""
    from tests.fixtures import postgres

    settings: tuple[str, ...] = (
        *postgres.SERVER_SETTINGS,
        "-c shared_preload_libraries=pg_stat_statements",
        "-c pg_stat_statements.track=all",
    )
    postgres.SERVER_SETTINGS = settings  # type: ignore[assignment]  # read at start
    with postgres.postgres_server() as url:
        yield url


def _psycopg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _child(label: str, db_url: str, base_url: str, work: Path, pyspy_out: Path | None) -> str:
    """One sync in a child (under py-spy when ``pyspy_out``); a header line about it."""
    from bench.infra import child_env, python_module, run_child

    argv = python_module(
        "bench.metadata", "--child", "--db-url", db_url, "--base-url", base_url,
        "--storage", f"file://{work / ('archive-' + label)}",
    )  # fmt: skip
    if pyspy_out is not None:
        argv = [
            tool("py-spy"), "record", "--gil", "--rate", str(RATE), "--format", "raw",
            "--output", str(pyspy_out), "--", *argv,
        ]  # fmt: skip
    child = run_child(label, argv, env=child_env(), logs=work / "logs", timeout=1800).check()
    lines = [ln for ln in child.stdout.read_text().splitlines() if ln.startswith("{")]
    r = ChildReport(**json.loads(lines[-1]))
    load = os.getloadavg()
    return (
        f"# {r.generations:,} generations, {r.pages} pages, {r.rows:,} rows; "
        f"sync wall {r.wall_s:.2f} s, DB part (save_page) {r.db_s:.2f} s = "
        f"{r.rows / r.db_s:,.0f} rows/s ({r.rows / r.db_s / 20_000:.2f} of 20,000); "
        f"child CPU {child.cpu_seconds:.2f} s, server backends CPU {r.server_cpu_s:.2f} s; "
        f"load after {load[0]:.2f} {load[1]:.2f}\n"
    )


def _statements(db_url: str) -> str:
    """The sync's statements by server execution time (pg_stat_statements)."""
    with psycopg.connect(_psycopg_url(db_url)) as conn:
        rows = conn.execute(
            "SELECT calls, rows, total_exec_time, total_plan_time, query"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) ORDER BY total_exec_time DESC"
        ).fetchall()
    total = sum(r[2] for r in rows)
    out = [
        f"\n## server execution time by statement: {total / 1000:.2f} s in all "
        f"(top {TOP}; planning is counted apart)\n",
        f"{'exec s':>7} {'plan s':>7} {'calls':>8} {'rows':>9} {'ms/call':>8}  statement",
    ]
    for calls, n, exec_ms, plan_ms, query in rows[:TOP]:
        text = " ".join(query.split())
        out.append(
            f"{exec_ms / 1000:7.2f} {plan_ms / 1000:7.2f} {calls:8d} {n:9d} "
            f"{exec_ms / max(calls, 1):8.3f}  {text[:150]}"
        )
    return "\n".join(out) + "\n"


_CALLEES: Final = (
    ("psycopg/", "psycopg: adapting parameters, sending, waiting for the server"),
    ("json/", "json: fingerprints and JSON parameters"),
    ("urllib/", "urllib: url_key of each file"),
    ("sqlalchemy/", "SQLAlchemy: compiling, executing, bind and result processing"),
)


def _layer(frames: list[str]) -> str:
    """What a sample under save_page was doing: the first of the libraries of
    :data:`_CALLEES` found below genvault's innermost frame, or genvault's own Python."""
    for i in range(len(frames) - 1, -1, -1):
        found = _genvault_where(frames[i])
        if found is None:
            continue
        if found[0] == "genvault/models.py":
            return "genvault/models.py: UTCDateTime bind processor (called by SQLAlchemy)"
        if i == len(frames) - 1:
            return "genvault's own Python (building rows, deadlines)"
        below = ";".join(frames[i + 1 :])
        for needle, name in _CALLEES:
            if needle in below:
                return name
        return "other: " + frames[i + 1][:70]
    return "outside genvault"


def summarise(samples: str) -> str:
    total = under = 0
    statements: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in samples.splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not n_text.isdigit():
            continue
        n, frames = int(n_text), _frames(stack)
        total += n
        if not any(f.startswith("TimedStore.save_page (") for f in frames):
            continue
        under += n
        layers[_layer(frames)] += n
        leaves[frames[-1]] += n
        for frame in reversed(frames):
            found = _genvault_where(frame)
            if found is not None and found[0].startswith("genvault/store/"):
                statements[f"{found[0]}:{found[1]}  {_statement(*found)}"] += n
                break
    out = [
        f"\n## GIL-held samples: {total} at {RATE} Hz = {total / RATE:.2f} s; "
        f"under save_page: {under / RATE:.2f} s\n",
        "### under save_page, by what runs below genvault's innermost frame\n",
    ]
    out += [f"{n / RATE:7.2f} s {n / under:6.1%}  {k}" for k, n in layers.most_common()]
    out.append(f"\n### under save_page, innermost genvault/store statement (top {TOP})\n")
    out += [f"{n / RATE:7.2f} s  {k[:140]}" for k, n in statements.most_common(TOP)]
    out.append(f"\n### under save_page, leaf frames (top {TOP})\n")
    out += [f"{n / RATE:7.2f} s  {k[:140]}" for k, n in leaves.most_common(TOP)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metadata_profile")
    parser.add_argument("--label", required=True, help="file name part, e.g. before / after")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args(argv)
    from tests.fixtures.postgres import fresh_database

    from bench.infra import workspace

    prefix = args.out / f"metadata-pg.{args.label}"
    sim = _simulator(args.count)
    try:
        with workspace("metadata-profile") as work, _server() as server:
            with fresh_database(server, "profile") as url:
                with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION pg_stat_statements")
                    conn.execute("SELECT pg_stat_statements_reset()")
                head = _child("plain", url, sim.api_base, work, None)
                Path(f"{prefix}.statements.txt").write_text(
                    "# PostgreSQL sync of bench.metadata, no profiler in the child\n"
                    + head
                    + _statements(url)
                )
            raw = work / "pyspy.txt"
            with fresh_database(server, "profile") as url:
                head = _child("pyspy", url, sim.api_base, work, raw)
            samples = raw.read_text()
            with gzip.open(f"{prefix}.pyspy.collapsed.txt.gz", "wt") as fh:
                fh.write(samples)
            Path(f"{prefix}.pyspy.summary.txt").write_text(
                f"# py-spy record --gil --rate {RATE}, the same sync\n" + head + summarise(samples)
            )
    finally:
        sim.stop()
    print(f"wrote {prefix}.*", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
