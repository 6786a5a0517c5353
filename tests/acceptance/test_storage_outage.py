"""S3 down for the equivalent of ten retry rounds, then back: nothing is given up.

The issue's numbers: with S3 unreachable for about an hour (``archive.max_attempts``,
8, at the default backoff), every file tried meanwhile ended ``failed`` and was
never retried, although the provider keeps it for weeks; with S3 down for 10 retry
rounds and then back, 0 of 24 files were archived and all 24 were ``failed``, and
every round downloaded every file before its write failed.

Real parts only: ``genvault run --once`` processes (a CronJob), a throwaway
PostgreSQL, the GeminiGen simulator over HTTP, and moto's S3 server behind a TCP
switch on loopback: off, its port refuses connections. The configuration is the
one a user gets (``archive.retry_base_seconds`` 30, ``max_attempts`` 8): time
passes between rounds through the store, by making every backoff due
(:meth:`Store.requeue_assets`, what ``genvault retry`` does), never by shrinking
a setting or by waiting.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from genvault.simulator import Simulator, simulator_factory
from genvault.store import Store
from tests.acceptance.helpers import defaults_config, genvault
from tests.fixtures.s3 import S3Server
from tests.fixtures.sims import SimStarter
from tests.fixtures.tcp_switch import TcpSwitch, refuses, tcp_switch  # noqa: F401

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

API_KEY = "sim-outage-key"
ROUNDS = 10
ROLES = {"result", "thumbnail", "last_frame"}


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[tuple[S3Client, str]]:
    client = s3_server.client()
    name = f"outage-{os.getpid()}-{time.monotonic_ns()}"
    client.create_bucket(Bucket=name)
    try:
        yield client, name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})  # type: ignore[typeddict-item]
        client.delete_bucket(Bucket=name)


@pytest.fixture
def sim(start_sim: SimStarter) -> Simulator:
    return start_sim(
        simulator_factory("geminigen"),
        api_key=API_KEY,
        count=11,  # 24 files of the roles archived by default, as in the issue
        image_size=2_000,
        video_size=4_000,
        audio_size=3_000,
        thumbnail_size=1_000,
        processing_count=0,
        failed_count=0,
    )


def _config(path: Path, db_url: str, endpoint: str, bucket: str, sim: Simulator) -> Path:
    account = {"name": "main", "provider": sim.name, "api_key_env": "OUTAGE_SIM_KEY"}
    account |= {"base_url": sim.api_base, **sim.account_options}
    return defaults_config(
        path,
        db_url=db_url,
        storage_url=f"s3://{bucket}/archive",
        endpoint_url=endpoint,
        account=account,
    )


def _env() -> dict[str, str]:
    return {
        "OUTAGE_SIM_KEY": API_KEY,
        "AWS_ACCESS_KEY_ID": S3Server.access_key,
        "AWS_SECRET_ACCESS_KEY": S3Server.secret_key,
        "AWS_DEFAULT_REGION": S3Server.region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def _states(db_url: str) -> dict[str, int]:
    store = Store(db_url)
    try:
        out: dict[str, int] = {}
        for row in store.assets():
            if row["role"] in ROLES:
                out[row["state"]] = out.get(row["state"], 0) + 1
        return out
    finally:
        store.dispose()


def _time_passes(db_url: str) -> None:
    """Every backoff ends, as after the longest retry delay (an hour): the next round
    may try every pending file again."""
    store = Store(db_url)
    try:
        store.requeue_assets("main")
    finally:
        store.dispose()


def _media_downloads(sim: Simulator) -> dict[str, int]:
    hits: dict[str, int] = sim.stats.snapshot()["media_hits"]
    return dict(hits)


def test_s3_refusing_connections_for_ten_retry_rounds_then_back_loses_nothing(
    tmp_path: Path,
    postgres_url: str,
    s3_server: S3Server,
    bucket: tuple[S3Client, str],
    sim: Simulator,
    tcp_switch: type[TcpSwitch],  # noqa: F811
) -> None:
    client, name = bucket
    host, port = s3_server.endpoint_url.removeprefix("http://").split(":")
    s3 = tcp_switch((host, int(port)))
    config = _config(tmp_path / "genvault.toml", postgres_url, s3.url, name, sim)
    env = _env()
    expected = [f for f in sim.expected_media() if f.role in ROLES]
    assert len(expected) == 24

    s3.off()
    assert refuses(s3.port)
    metrics = tmp_path / "outage.prom"
    runs = []
    for n in range(ROUNDS):
        args = ["--config", str(config), "run", "--once"]
        if n == ROUNDS - 1:
            args += ["--metrics-file", str(metrics)]
        runs.append(genvault(*args, env=env, timeout=300))
        _time_passes(postgres_url)
    during = _media_downloads(sim)
    states = _states(postgres_url)
    print(
        f"after {ROUNDS} rounds of outage: {states}; media downloads: {sum(during.values())} "
        f"(at most {max(during.values(), default=0)} of one file); "
        f"exit codes {[r.returncode for r in runs]}"
    )
    assert states == {"pending": 24}, "a file was given up during the outage"
    assert max(during.values(), default=0) <= 1, f"downloaded again and again: {during}"
    for proc in runs:
        assert proc.returncode == 3, proc.stderr[-3000:]  # the files wait: say so
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    store = Store(postgres_url)
    try:
        assert {a["attempts"] for a in store.assets() if a["role"] in ROLES} == {0}
    finally:
        store.dispose()

    status = genvault("--config", str(config), "status", "--json", env=env)
    assert status.returncode == 0, status.stderr[-2000:]
    storage = json.loads(status.stdout)["storage"]
    assert storage["circuit"]["state"] == "open"
    assert "refused" in storage["circuit"]["last_error"] or "connect" in (
        storage["circuit"]["last_error"].lower()
    )
    assert "genvault_storage_circuit_state 2.0" in metrics.read_text()

    s3.on()
    back = genvault("--config", str(config), "run", "--once", env=env, timeout=300)
    assert back.returncode == 0, back.stderr[-3000:]
    assert _states(postgres_url) == {"archived": 24}, "not everything proceeded at once"
    stored = [
        o
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name)
        for o in page.get("Contents", [])
        if not o["Key"].endswith("/generation.json")
    ]
    assert len(stored) == 24
    after = json.loads(genvault("--config", str(config), "status", "--json", env=env).stdout)
    assert after["storage"]["circuit"]["state"] == "closed"
