"""6. Scale-out: files/s with 1 and with 3 replicas on PostgreSQL, provider-like network.

Replicas are ``genvault run --once`` processes started together on one PostgreSQL
database and one bucket, as CronJob pods would be: one of them pages each account
(the per-account advisory lock), the others archive what it saves and wait for it
to finish; every file is leased by exactly one of them (``FOR UPDATE SKIP
LOCKED``). The network is the provider-like profile of benchmark 2 (first byte
after 150 ms, 4 MB/s per connection), where one process is bound by its
connection slots, not by the CPU, which is the case scale-out is for.

Figures are whole runs as a scheduler sees them (start of the first process to the
exit of the last: start-up, migrations, sync and archive included), and the bucket
must hold exactly the source's files afterwards, once each. The lease query's cost
with a large table is measured by ``tests/integration/test_lease_at_scale.py``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.postgres import fresh_database, postgres_server

from bench.core import Result, Scale
from bench.infra import (
    API_KEY,
    API_KEY_ENV,
    BenchError,
    ChildRun,
    MiB,
    S3Endpoint,
    Source,
    child_env,
    python_module,
    run_child,
    s3_kind_for,
    s3_server,
    verify,
    workspace,
    write_genvault_config,
)

NAME = "scaleout"
TITLE = "1 vs 3 replicas on PostgreSQL, provider-like network"
RATIOS = ("3 replicas / 1 replica (files/s)",)

LATENCY_S = 0.15
BANDWIDTH_BPS = 4 * 1000 * 1000
CONCURRENCY = 8
"""Per replica: genvault's default ``archive.concurrency``."""


@dataclass(frozen=True)
class Size:
    files: int
    file_size: int
    latency_s: float


SIZES = {
    Scale.FULL: Size(files=1200, file_size=MiB, latency_s=LATENCY_S),
    Scale.SMOKE: Size(files=40, file_size=256 * 1024, latency_s=0.05),
}


def _replicas(
    n: int, *, workdir: Path, db_url: str, s3: S3Endpoint, bucket: str, source: Source
) -> tuple[float, list[ChildRun]]:
    """Run ``n`` replicas together; (wall seconds first start to last exit, their runs)."""
    prefix = f"r{n}"
    config = write_genvault_config(
        workdir / f"{prefix}.toml",
        db=workdir / "unused.db",
        db_url=db_url,
        s3=s3,
        bucket=bucket,
        prefix=prefix,
        accounts=source.accounts(),
        concurrency=CONCURRENCY,
    )
    env = child_env({API_KEY_ENV: API_KEY, **s3.env()})
    # the schema first, as an init container or `genvault db upgrade` in a deploy would
    upgrade = python_module("genvault.cli", "--config", str(config), "db", "upgrade")
    run_child(f"{prefix}-upgrade", upgrade, env=env, logs=workdir / "logs", timeout=120).check()
    argv = python_module("genvault.cli", "--config", str(config), "run", "--once")
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        futures = [
            pool.submit(
                run_child, f"{prefix}-{i}", argv, env=env, logs=workdir / "logs", timeout=1800
            )
            for i in range(n)
        ]
        runs = [f.result().check() for f in futures]
    seconds = time.perf_counter() - started
    verify(s3, bucket, prefix, source, who=f"{n} replicas")
    return seconds, runs


def run(scale: Scale) -> Result:
    size = SIZES[scale]
    result = Result(NAME, TITLE, scale)
    with (
        workspace(NAME) as workdir,
        postgres_server() as server_url,
        s3_server(s3_kind_for(scale), workdir) as s3,
        Source(images=size.files, image_size=size.file_size) as source,
    ):
        source.network(latency_s=size.latency_s, bandwidth_bps=BANDWIDTH_BPS)
        bucket = "bench-scaleout"
        s3.create_bucket(bucket)
        files = len(source.files)
        rates: dict[int, float] = {}
        for n in (1, 3):
            with fresh_database(server_url, "bench") as db_url:
                seconds, runs = _replicas(
                    n, workdir=workdir, db_url=db_url, s3=s3, bucket=bucket, source=source
                )
            per_replica = [len(r.json_events("asset.archived")) for r in runs]
            if sum(per_replica) != files:
                raise BenchError(f"{n} replicas archived {per_replica}, expected {files} in all")
            rates[n] = files / seconds
            result.figure(f"{n} replica(s): wall time", seconds, "s")
            result.figure(f"{n} replica(s): files/s", rates[n], "files/s")
            if n > 1:
                result.note(f"files archived per replica: {per_replica}")
            result.figure(
                f"{n} replica(s): peak RSS of the largest", max(r.max_rss_mb for r in runs), "MB"
            )
            s3.empty(bucket, f"r{n}")
        # the ceiling: every connection slot busy from the first instant, no start-up
        one_file = size.latency_s + size.file_size / BANDWIDTH_BPS
        for n in (1, 3):
            ideal = files / (-(-files // (n * CONCURRENCY)) * one_file)
            result.figure(f"{n} replica(s): ideal files/s (all slots busy)", ideal, "files/s")
        result.ratio(RATIOS[0], rates[3] / rates[1], 2.5)
        result.note(
            f"{files} files of {size.file_size // 1024} KiB, {CONCURRENCY} downloads per "
            f"replica, first byte after {size.latency_s * 1000:.0f} ms, "
            f"{BANDWIDTH_BPS / 1e6:.0f} MB/s per connection; PostgreSQL, {s3.kind}"
        )
    return result
