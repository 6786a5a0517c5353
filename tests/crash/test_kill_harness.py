"""The kill harness on SQLite and on PostgreSQL: 50+ real SIGKILLs each, nothing harmed.

Each database gets trials on both storage backends (S3 on moto's server, and a
folder); see :mod:`tests.crash.harness` for what a trial does and checks. After
its kills, each trial gets exactly one clean ``run --once``, with the default
``archive.lease_seconds`` (15 minutes), and it must archive everything: the
leases the killed runs held are taken over at once, never waited out.
``GENVAULT_CRASH_SEED`` replays a failing seed; ``GENVAULT_CRASH_KILLS`` raises
the number of kill points per database for a longer soak.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.crash.harness import (
    SUMMARIES,
    FolderView,
    HarnessResult,
    S3View,
    StorageTarget,
    choose_seed,
    run_harness,
)
from tests.fixtures.s3 import S3Server

MIN_KILLS = 50
TRIALS = ("s3", "file", "s3", "file")


def _targets(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> list[Callable[[int], StorageTarget]]:
    client = s3_server.client()

    def make(kind: str) -> Callable[[int], StorageTarget]:
        def build(i: int) -> StorageTarget:
            if kind == "s3":
                prefix = f"trial-{i}"
                return StorageTarget(
                    "s3",
                    f"s3://{bucket}/{prefix}",
                    S3View(client, bucket, prefix),
                    endpoint_url=s3_server.endpoint_url,
                )
            root = tmp_path / f"archive-{i}"
            return StorageTarget("file", f"file://{root}", FolderView(root))

        return build

    return [make(kind) for kind in TRIALS]


def _run(
    database: str,
    new_db_url: Callable[[], str],
    tmp_path: Path,
    s3_server: S3Server,
    bucket: str,
) -> HarnessResult:
    total = max(MIN_KILLS, int(os.environ.get("GENVAULT_CRASH_KILLS", "0") or 0))
    per_trial = -(-(total + 2) // len(TRIALS))  # a little over the minimum
    seed = choose_seed()
    print(f"kill harness [{database}]: seed={seed}")
    result = run_harness(
        database=database,
        new_db_url=new_db_url,
        targets=_targets(tmp_path, s3_server, bucket),
        kills_per_trial=per_trial,
        seed=seed,
        workdir=tmp_path,
        min_kills=total,
    )
    line = result.summary()
    SUMMARIES.append(line)
    print(line)
    return result


def _assert_clean(result: HarnessResult) -> None:
    counts = result.counts
    assert counts.clean, f"{result.summary()}\n" + "\n".join(counts.problems)
    kills = sum(result.kills.values())
    assert kills >= MIN_KILLS, f"only {kills} real kill points: {result.summary()}"
    odd = [o for t in result.trials for o in t.odd_exits]
    assert not odd, "runs that were not killed reported errors:\n" + "\n".join(odd[:10])
    # the one clean run of each trial had dead runs' leases to take over (and did, or
    # some file would be unfinished): with lease expiry alone they waited 15 minutes
    assert [t.clean_exit for t in result.trials] == [0] * len(result.trials)
    stranded = sum(t.stranded for t in result.trials)
    assert stranded > 0, f"no trial ended with a dead run's leases: {result.summary()}"


@pytest.mark.slow
@pytest.mark.s3
def test_kill_harness_sqlite(
    tmp_path: Path, s3_server: S3Server, s3_bucket: tuple[str, str]
) -> None:
    counter = iter(range(100))
    result = _run(
        "sqlite",
        lambda: f"sqlite:///{tmp_path / f'genvault-{next(counter)}.db'}",
        tmp_path,
        s3_server,
        s3_bucket[1],
    )
    _assert_clean(result)


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.postgres
def test_kill_harness_postgres(
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: tuple[str, str],
    new_postgres_db: Callable[[], str],
) -> None:
    result = _run("postgres", new_postgres_db, tmp_path, s3_server, s3_bucket[1])
    _assert_clean(result)
