"""Several genvault processes on one PostgreSQL database and one S3 bucket share the work.

Real parts only: three ``genvault`` processes (daemons, or ``run --once`` as CronJob
pods would), a throwaway PostgreSQL, moto's S3 server over HTTP, and the GeminiGen
simulator. "Archived exactly once" is checked where it matters, at the S3 server:
the bucket is versioned, so every PUT of a key leaves a version behind, and a file
uploaded twice shows up as two versions even though the object looks the same.
Who did the work is read from each process's own JSON log lines. One test SIGKILLs a
replica while it holds leases: the other two must finish its files within 30 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from genvault.simulator import Simulator, simulator_factory
from tests.acceptance.helpers import GENVAULT, sim_account, write_config
from tests.fixtures.s3 import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

API_KEY = "sim-replicas-key"
REPLICAS = 3
ROLES = {"result", "thumbnail", "last_frame"}
"""What genvault archives by default (references are opt-in)."""


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[tuple[S3Client, str]]:
    client = s3_server.client()
    name = f"replicas-{os.getpid()}-{time.monotonic_ns()}"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    try:
        yield client, name
    finally:
        while True:  # moto keeps objects in memory: give it back
            page = client.list_object_versions(Bucket=name, MaxKeys=1000)
            doomed = page.get("Versions", []) + page.get("DeleteMarkers", [])
            if not doomed:
                break
            client.delete_objects(
                Bucket=name,
                Delete={
                    "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in doomed]
                },
            )
        client.delete_bucket(Bucket=name)


def _simulator(count: int, media_latency: float = 0.0) -> Simulator:
    sim = simulator_factory("geminigen")(
        api_key=API_KEY,
        count=count,
        image_size=2_000,
        video_size=4_000,
        audio_size=3_000,
        thumbnail_size=1_000,
        processing_count=0,
        failed_count=0,
    )
    sim.start()
    if media_latency:
        sim.faults.update(latency_s=media_latency)
    return sim


def _config(
    tmp_path: Path, sim: Simulator, db_url: str, s3: S3Server, bucket: str, items_per_page: int
) -> Path:
    return write_config(
        tmp_path / "genvault.toml",
        db_url=db_url,
        storage_url=f"s3://{bucket}/archive",
        endpoint_url=s3.endpoint_url,
        accounts=[{**sim_account(sim, "REPLICA_SIM_KEY"), "items_per_page": items_per_page}],
        extra="\n".join(
            [
                "[server]",
                "enabled = false",
                "[schedule]",
                "sync_seconds = 3600",
                "poll_seconds = 1",
                "archive_seconds = 0.3",
                "jitter_seconds = 0",
                "shutdown_grace_seconds = 5",
            ]
        ),
    )


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "REPLICA_SIM_KEY": API_KEY,
        "PYTHONUNBUFFERED": "1",
        "AWS_ACCESS_KEY_ID": S3Server.access_key,
        "AWS_SECRET_ACCESS_KEY": S3Server.secret_key,
        "AWS_DEFAULT_REGION": S3Server.region,
        "GENVAULT_ARCHIVE__CONCURRENCY": "4",
        "GENVAULT_ARCHIVE__BATCH_SIZE": "8",
        "GENVAULT_ARCHIVE__LEASE_SECONDS": "30",
    }


def _start(config: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*GENVAULT, "--log-format", "json", "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _archived_count(db_url: str) -> tuple[int, int]:
    """(archived, pending) asset rows; files of roles not archived are ``skipped`` rows."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = dict(
                conn.execute(sa.text("SELECT state, count(*) FROM asset GROUP BY state")).all()
            )
    finally:
        engine.dispose()
    return rows.get("archived", 0), rows.get("pending", 0)


def _versions(client: S3Client, bucket: str) -> Counter[str]:
    """How many times each media key was written, as the S3 server recorded it."""
    versions: Counter[str] = Counter()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            if not v["Key"].endswith("/generation.json"):  # sidecars are rewritten on purpose
                versions[v["Key"]] += 1
    return versions


def _check_bucket(client: S3Client, bucket: str, sim: Simulator, expected: int) -> None:
    versions = _versions(client, bucket)
    assert len(versions) == expected, f"{len(versions)} media keys for {expected} files"
    twice = {k: n for k, n in versions.items() if n > 1}
    assert not twice, f"uploaded more than once: {sorted(twice.items())[:5]}"
    sizes = Counter(f.size for f in sim.expected_media() if f.role in ROLES)
    stored: Counter[int] = Counter()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/generation.json"):
                stored[obj["Size"]] += 1
    assert stored == sizes


def test_three_daemons_share_2000_files_and_archive_each_exactly_once(
    tmp_path: Path, postgres_url: str, s3_server: S3Server, bucket: tuple[S3Client, str]
) -> None:
    client, name = bucket
    sim = _simulator(count=870, media_latency=0.005)
    try:
        expected = sum(1 for f in sim.expected_media() if f.role in ROLES)
        assert expected >= 2000
        config = _config(tmp_path, sim, postgres_url, s3_server, name, items_per_page=100)
        env = _env()
        logs = [tmp_path / f"replica-{i}.log" for i in range(REPLICAS)]
        procs = [_start(config, env, log, "run") for log in logs]
        try:
            deadline = time.monotonic() + 240
            while True:
                archived, pending = (
                    _archived_count(postgres_url) if _has_schema(postgres_url) else (0, 1)
                )
                if archived == expected and pending == 0:
                    break
                dead = [p.args for p in procs if p.poll() is not None]
                assert not dead, f"a replica exited early: {_tail(logs)}"
                assert time.monotonic() < deadline, (
                    f"{archived} archived, {pending} pending: {_tail(logs)}"
                )
                time.sleep(0.5)
            time.sleep(1.0)  # let the last sidecar pass finish before stopping
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=60) for p in procs]
        assert codes == [0] * REPLICAS, _tail(logs)

        per_replica = [
            sum(1 for e in _events(log) if e["event"] == "asset.archived") for log in logs
        ]
        assert sum(per_replica) == expected, per_replica  # no file archived twice by anyone
        assert all(n >= expected * 0.05 for n in per_replica), f"work not split: {per_replica}"
        workers = {
            e["worker"] for log in logs for e in _events(log) if e["event"] == "daemon.started"
        }
        assert len(workers) == REPLICAS  # a random worker id per process
        _check_bucket(client, name, sim, expected)
    finally:
        sim.stop()


def test_run_once_replicas_started_together_share_one_backlog(
    tmp_path: Path, postgres_url: str, s3_server: S3Server, bucket: tuple[S3Client, str]
) -> None:
    """CronJob pods started at the same time: one pages the account (small pages, a slow
    API), the other two archive what it saves and wait for it to finish instead of
    exiting with an empty queue; all three exit 0 and every file is stored once."""
    client, name = bucket
    sim = _simulator(count=120, media_latency=0.02)
    try:
        expected = sum(1 for f in sim.expected_media() if f.role in ROLES)
        config = _config(tmp_path, sim, postgres_url, s3_server, name, items_per_page=4)
        env = _env()
        # the schema first, as `genvault db upgrade` in an init container would do; the
        # concurrent-start race on a fresh database has a test of its own
        subprocess.run([*GENVAULT, "--config", str(config), "db", "upgrade"], env=env, check=True)
        logs = [tmp_path / f"once-{i}.log" for i in range(REPLICAS)]
        procs = [_start(config, env, log, "run", "--once") for log in logs]
        codes = [p.wait(timeout=180) for p in procs]
        assert codes == [0] * REPLICAS, _tail(logs)

        events = [_events(log) for log in logs]
        syncing = [i for i, ev in enumerate(events) if any(e["event"] == "job.sync" for e in ev)]
        skipped = [
            i
            for i, ev in enumerate(events)
            if any(
                e["event"] == "sync.skipped" and e.get("reason") == "another_replica" for e in ev
            )
        ]
        assert len(syncing) == 1 and sorted(syncing + skipped) == list(range(REPLICAS)), (
            syncing,
            skipped,
        )
        per_replica = [sum(1 for e in ev if e["event"] == "asset.archived") for ev in events]
        assert sum(per_replica) == expected, per_replica
        assert all(per_replica[i] > 0 for i in skipped), f"an idle replica gave up: {per_replica}"
        assert _archived_count(postgres_url) == (expected, 0)
        _check_bucket(client, name, sim, expected)
    finally:
        sim.stop()


def _has_schema(db_url: str) -> bool:
    engine = sa.create_engine(db_url)
    try:
        return sa.inspect(engine).has_table("asset")
    finally:
        engine.dispose()


def _tail(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in logs)


def test_a_killed_replicas_files_are_finished_by_the_others_within_30_seconds(
    tmp_path: Path, postgres_url: str, s3_server: S3Server, bucket: tuple[S3Client, str]
) -> None:
    """SIGKILL one of three daemons while it holds leases (the default 15-minute ones):
    its worker lock goes with its session, the others reap its leases at their next
    heartbeat and finish its files well within 30 s of the kill. Only those files may
    have been uploaded twice (the dead replica may have stored one before it died)."""
    client, name = bucket
    sim = _simulator(count=150, media_latency=0.1)
    try:
        expected = sum(1 for f in sim.expected_media() if f.role in ROLES)
        config = _config(tmp_path, sim, postgres_url, s3_server, name, items_per_page=50)
        env = _env()
        del env["GENVAULT_ARCHIVE__LEASE_SECONDS"]  # the default: 900 s
        subprocess.run([*GENVAULT, "--config", str(config), "db", "upgrade"], env=env, check=True)
        logs = [tmp_path / f"replica-{i}.log" for i in range(REPLICAS)]
        procs = [_start(config, env, log, "run") for log in logs]
        victim, victim_log = procs[0], logs[0]
        try:
            worker = _wait_for(lambda: _started_worker(victim_log), 60, "victim start", logs)
            # Kill once the history is walked: this test is about leases. A replica killed
            # mid-walk leaves the rest of the history to the others' next sync tick
            # (schedule.sync_seconds, 15 min), not to the lease reaper.
            _wait_for(lambda: _walked(postgres_url), 60, "the history walk", logs)
            held = _wait_for(lambda: _leased_by(postgres_url, worker), 60, "victim leases", logs)
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.wait(timeout=10)
            held = _leased_by(postgres_url, worker) or held  # what it held when it died
            assert held, "the victim held no lease when it died"

            freed_after = _wait_for(
                lambda: None if _leased_by(postgres_url, worker) else time.monotonic() - killed,
                30,
                "the dead replica's leases to be freed",
                logs,
            )
            done_after = _wait_for(
                lambda: (
                    time.monotonic() - killed
                    if _states_of(postgres_url, held) == {"archived"}
                    else None
                ),
                30,
                "the dead replica's files to be archived",
                logs,
            )
            assert done_after < 30
            print(
                f"victim {worker} held {len(held)} files at the kill; leases freed after "
                f"{freed_after:.2f}s, all of them archived after {done_after:.2f}s"
            )
            _wait_for(
                lambda: _archived_count(postgres_url) == (expected, 0) or None,
                120,
                "everything to be archived",
                logs,
            )
            time.sleep(1.0)  # let the last sidecar pass finish before stopping
        finally:
            for p in procs[1:]:
                p.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=60) for p in procs[1:]]
            if victim.poll() is None:
                victim.kill()
                victim.wait()
        assert codes == [0] * (REPLICAS - 1), _tail(logs)

        survivors = [
            sum(1 for e in _events(log) if e["event"] == "asset.archived") for log in logs[1:]
        ]
        assert sum(survivors) + _archived_by(victim_log) >= expected
        versions = _versions(client, name)
        assert len(versions) == expected
        held_keys = _keys_of(postgres_url, held)
        twice = {k for k, n in versions.items() if n > 1}
        assert twice <= held_keys, f"uploaded twice but not the dead replica's: {twice - held_keys}"
        assert all(n <= 2 for n in versions.values())
        assert any(e["event"] == "lease.reaped" for log in logs[1:] for e in _events(log))
    finally:
        sim.stop()


def _wait_for(probe: Any, seconds: float, what: str, logs: list[Path]) -> Any:
    """Poll ``probe`` every 50 ms until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"waited {seconds}s for {what}: {_tail(logs)}"
        time.sleep(0.05)


def _started_worker(log: Path) -> str | None:
    for e in _events(log):
        if e["event"] == "daemon.started":
            return str(e["worker"])
    return None


def _archived_by(log: Path) -> int:
    return sum(1 for e in _events(log) if e["event"] == "asset.archived")


def _query(db_url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def _walked(db_url: str) -> bool:
    """Some replica completed a walk of every stream (the cursors' last complete walk)."""
    rows = _query(
        db_url, "SELECT count(*) FILTER (WHERE last_success_at IS NULL), count(*) FROM sync_cursor"
    )
    return bool(rows) and rows[0][1] > 0 and rows[0][0] == 0


def _leased_by(db_url: str, worker: str) -> set[int]:
    rows = _query(db_url, "SELECT id FROM asset WHERE lease_owner = :w", w=worker)
    return {r[0] for r in rows}


def _states_of(db_url: str, ids: set[int]) -> set[str]:
    rows = _query(db_url, "SELECT DISTINCT state FROM asset WHERE id = ANY(:ids)", ids=list(ids))
    return {r[0] for r in rows}


def _keys_of(db_url: str, ids: set[int]) -> set[str]:
    """Storage keys of ``ids`` as the bucket lists them (under the ``archive`` prefix)."""
    rows = _query(db_url, "SELECT storage_key FROM asset WHERE id = ANY(:ids)", ids=list(ids))
    return {f"archive/{r[0]}" for r in rows}
