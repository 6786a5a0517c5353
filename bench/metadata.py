"""4. Metadata: history sync of 100,000 generations into SQLite and into PostgreSQL.

Issue 5: the database part of a sync must upsert at least 20,000 rows a second
(batched with executemany), and genvault's peak RSS must not grow with the number
of generations (one page at a time, never the whole history).

The source is the Tengr.ai simulator, whose API has the largest page of the five
(``limit`` up to 500; GeminiGen and CrowdComputed stop at 100), serving ``count``
artworks with 1-2 result files each. genvault syncs it in a child process (a fresh
database each time, SQLite in WAL mode in a temp folder, or a database of its own
on a throwaway PostgreSQL cluster), so that its peak RSS is genvault's alone: the
simulator, which keeps every artwork in memory, runs in this process.

The child reports its own peak RSS, ``VmHWM`` of ``/proc/self/status``, rather than
the ``ru_maxrss`` that ``wait4`` returns: Linux keeps ``ru_maxrss`` across ``execve``,
so a child's figure is at least the RSS of the process that spawned it (measured:
a child whose VmHWM was 10 MB reported 410 MB, its parent's size). With a 100,000
artwork simulator in this process, ``wait4`` would only have measured the simulator.
``VmHWM`` belongs to the address space made by ``execve``: genvault's alone.

Measured in the child: the whole ``sync_account`` wall time, and the time inside
:meth:`Store.save_page` (upserting a page of generations and their files, and
moving the cursor, in one transaction), which is the "DB part". Rows are
generation rows plus file (asset) rows written. The rest of the wall time is HTTP,
JSON parsing and the simulator's own work; the child's CPU time shows how much of
it was genvault's. Each database syncs a small and a large history, and the peak
RSS of the two children is compared.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from bench.core import Result, Scale
from genvault.store import SaveResult, Store

NAME: Final = "metadata"
TITLE: Final = "history sync of 100,000 generations into SQLite and PostgreSQL"
RATIOS: Final = (
    "SQLite: DB rows upserted/s / 20,000",
    "PostgreSQL: DB rows upserted/s / 20,000",
    "SQLite: peak RSS large / small sync",
    "PostgreSQL: peak RSS large / small sync",
)
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
TARGET_ROWS_PER_S: Final = 20_000
API_KEY: Final = "bench-tengrai-metadata-key"
SEED: Final = 5
SIZES: Final = {Scale.FULL: (25_000, 100_000), Scale.SMOKE: (1_000, 5_000)}
"""(small, large) number of generations; the large one gives the throughput figures."""
CHILD_TIMEOUT_S: Final = 900.0
REPO: Final = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ChildReport:
    """What the child prints (one JSON line) after its sync."""

    generations: int
    pages: int
    generation_rows: int
    asset_rows: int
    wall_s: float
    db_s: float
    peak_rss_mb: float
    """The child's VmHWM (see the module docstring)."""
    server_cpu_s: float = 0.0
    """PostgreSQL: CPU time of the server backends serving the child's connections
    (``/proc/PID/stat`` of each, read just before they close; same machine)."""

    @property
    def rows(self) -> int:
        return self.generation_rows + self.asset_rows


def peak_rss_mb() -> float:
    """This process's peak RSS since its ``execve`` (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


class TimedStore(Store):
    """The store with a stopwatch around ``save_page``: the sync's DB part."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.db_seconds = 0.0
        self.generation_rows = 0
        self.asset_rows = 0

    def backend_cpu_s(self) -> float:
        """CPU seconds of this store's PostgreSQL backends so far (0 on SQLite)."""
        if self.is_sqlite:
            return 0.0
        import os

        import sqlalchemy as sa

        with self.engine.connect() as conn:
            pids = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
            total = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue  # not on this machine
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def save_page(self, *args: Any, **kwargs: Any) -> SaveResult:
        started = time.perf_counter()
        saved = super().save_page(*args, **kwargs)
        self.db_seconds += time.perf_counter() - started
        self.generation_rows += saved.generations_new + saved.generations_changed
        self.asset_rows += saved.assets_new
        return saved


@dataclass(frozen=True)
class Measured:
    report: ChildReport
    cpu_s: float

    @property
    def peak_rss_mb(self) -> float:
        return self.report.peak_rss_mb


# --------------------------------------------------------------------------- the child


def child_main(argv: list[str]) -> int:
    """``python -m bench.metadata --child ...``: one sync, timed, then a JSON line."""
    parser = argparse.ArgumentParser(prog="bench.metadata --child")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--storage", required=True)
    args = parser.parse_args(argv)

    from pydantic import SecretStr

    from genvault.config import (
        AccountSettings,
        DatabaseSettings,
        NetworkSettings,
        Settings,
        StorageSettings,
    )
    from genvault.jobs.sync import sync_account
    from genvault.logs import configure
    from genvault.runtime import Runtime

    configure("warning", "json")
    settings = Settings(
        database=DatabaseSettings(url=args.db_url),
        storage=StorageSettings(url=args.storage),
        network=NetworkSettings(allow_private=True, read_timeout=120),
        accounts=(
            AccountSettings(
                name="bench",
                provider="tengrai",
                api_key_env="BENCH_UNUSED",  # the key is handed over below
                base_url=args.base_url,
                api_version="v2",
            ),
        ),
    )
    rt = Runtime.build(settings, {"bench": SecretStr(API_KEY)})  # migrations: not timed
    timed = TimedStore(args.db_url)
    rt.store.dispose()
    rt.store = timed
    try:
        started = time.perf_counter()
        synced = sync_account(rt, rt.accounts["bench"])
        wall = time.perf_counter() - started
        server_cpu = timed.backend_cpu_s()
    finally:
        rt.close()
    if synced.error or not synced.complete:
        print(f"sync failed: {synced}", file=sys.stderr)
        return 1
    report = ChildReport(
        generations=synced.items,
        pages=synced.pages,
        generation_rows=timed.generation_rows,
        asset_rows=timed.asset_rows,
        wall_s=wall,
        db_s=timed.db_seconds,
        peak_rss_mb=peak_rss_mb(),
        server_cpu_s=server_cpu,
    )
    print(json.dumps(asdict(report)), flush=True)
    return 0


# --------------------------------------------------------------------------- databases


# --------------------------------------------------------------------------- the parent


def sync_in_child(label: str, db_url: str, base_url: str, work: Path) -> Measured:
    """One sync in its own genvault process; its report (with its peak RSS) and CPU time."""
    # Imported here, not at the top: the child imports this module, and bench.infra
    # (boto3 and all) would add ~14 MB to what is meant to be genvault's RSS.
    from bench.infra import child_env, python_module, run_child

    storage = Path(tempfile.mkdtemp(prefix="archive-", dir=work))
    child = run_child(
        label,
        python_module(
            "bench.metadata",
            "--child",
            "--db-url",
            db_url,
            "--base-url",
            base_url,
            "--storage",
            f"file://{storage}",
        ),
        env=child_env(),
        logs=work / "logs",
        timeout=CHILD_TIMEOUT_S,
    ).check()
    lines = child.stdout.read_text().strip().splitlines()
    report = ChildReport(**json.loads(lines[-1]))
    return Measured(report, child.cpu_seconds)


def _simulator(count: int) -> Any:
    from genvault.simulator import tengrai

    sim = tengrai.create(api_key=API_KEY, seed=SEED, count=count, processing_count=0)
    sim.start()
    return sim


def _report(result: Result, db: str, small: Measured, large: Measured) -> None:
    big = large.report
    rows_per_s = big.rows / big.db_s
    result.figure(f"{db}: generations synced", big.generations, "")
    result.figure(f"{db}: rows upserted (generations + files)", big.rows, "")
    result.figure(f"{db}: sync wall time", big.wall_s, "s")
    result.figure(f"{db}: of which DB part (save_page)", big.db_s, "s")
    result.figure(f"{db}: genvault CPU time (whole child)", large.cpu_s, "s")
    if big.server_cpu_s:
        result.figure(f"{db}: server CPU time (its backends)", big.server_cpu_s, "s")
    result.figure(f"{db}: generations synced/s (whole sync)", big.generations / big.wall_s, "/s")
    result.figure(f"{db}: generations upserted/s (DB part)", big.generations / big.db_s, "/s")
    result.figure(f"{db}: rows upserted/s (DB part)", rows_per_s, "/s")
    result.figure(
        f"{db}: peak RSS, {small.report.generations:,} generations", small.peak_rss_mb, "MB"
    )
    result.figure(f"{db}: peak RSS, {big.generations:,} generations", large.peak_rss_mb, "MB")
    result.ratio(f"{db}: DB rows upserted/s / 20,000", rows_per_s / TARGET_ROWS_PER_S, 1.0)
    result.ratio(
        f"{db}: peak RSS large / small sync",
        large.peak_rss_mb / small.peak_rss_mb,
        1.2,
        at_most=True,
    )


def run(scale: Scale) -> Result:
    """Small then large history, into SQLite then PostgreSQL, each sync in its own child."""
    result = Result(NAME, TITLE, scale)
    from bench.infra import workspace

    small_n, large_n = SIZES[scale]
    with workspace(NAME) as work:
        sims = {n: _simulator(n) for n in (small_n, large_n)}
        try:
            measured: dict[str, dict[int, Measured]] = {"SQLite": {}, "PostgreSQL": {}}
            for n, sim in sims.items():
                path = work / f"sqlite-{n}.db"
                measured["SQLite"][n] = sync_in_child(
                    f"sqlite-{n}", f"sqlite:///{path}", sim.api_base, work
                )
            from tests.fixtures.postgres import fresh_database, postgres_server

            with postgres_server() as server:
                for n, sim in sims.items():
                    with fresh_database(server, "bench") as url:
                        measured["PostgreSQL"][n] = sync_in_child(
                            f"postgres-{n}", url, sim.api_base, work
                        )
        finally:
            for sim in sims.values():
                sim.stop()
    for db, by_size in measured.items():
        _report(result, db, by_size[small_n], by_size[large_n])
    pages = measured["SQLite"][large_n].report.pages
    result.note(
        f"Tengr.ai simulator, 500 artworks a page ({pages} pages); rows = generation rows "
        "+ file rows; DB part = time inside Store.save_page"
    )
    return result


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
