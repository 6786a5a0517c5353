"""One file's unexpected error stays that file's: the archive pass records everything.

``archive_one`` promised never to raise, but an exception raised *inside* its
``except MediaGoneError`` handler (the URL refresh) escaped it: an ``except``
clause of the same ``try`` does not catch what another clause raises. The pass
died, the files of that round and those still in flight were never recorded
although their bytes were stored, and their leases stayed taken.

Provoked over HTTP, as a provider would: the GeminiGen simulator behind a
forwarding origin on loopback. One file's URL answers 404 once; the generation's
detail, read again for a fresh URL, then comes back as something no adapter
expects: a body declared gzip that is not (``httpx.DecodingError``, no error class
of genvault's), or JSON nested 100,000 levels deep (``RecursionError`` inside
``json``; an API client that bounds JSON depth refuses it as malformed instead).
``genvault run --once`` on PostgreSQL and moto's S3, the defaults a user gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genvault.simulator import geminigen
from genvault.simulator.geminigen import API_PATH
from genvault.store import Store
from tests.acceptance.helpers import defaults_config, genvault
from tests.fixtures.origin import Origin, Reply
from tests.fixtures.s3 import S3Server

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

API_KEY = "gg-contain-key-41c7"
ROLES = {"result", "thumbnail", "last_frame"}
_DROP = {"host", "connection", "content-length", "transfer-encoding", "content-encoding"}

NESTED_JSON = Reply(200, {"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000)
FALSE_GZIP = Reply(
    200,
    {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    b'{"uuid": "not gzip at all"}',
)


class ForwardingOrigin:
    """The simulator, relayed (its API answers name the relay's media URLs); one media
    URL answers 404 once, and after that the detail of its generation answers ``hostile``."""

    def __init__(self, sim: geminigen.GeminiGenSimulator, victim: str, uuid: str, hostile: Reply):
        self.sim = sim
        self.victim_path = httpx.URL(victim).raw_path.decode()
        self.detail_path = f"{API_PATH}/history/{uuid}"
        self.hostile = hostile
        self.gone_served = False
        self.hostile_served = 0
        self._lock = threading.Lock()
        self.origin = Origin(self._script)
        self.url = self.origin.url

    def _script(self, request: httpx.Request) -> Reply:
        path = request.url.raw_path.decode()
        with self._lock:
            if path.split("?")[0] == self.victim_path and not self.gone_served:
                self.gone_served = True
                return Reply(404, {"Content-Type": "text/plain"}, b"gone")
            if path.split("?")[0] == self.detail_path and self.gone_served:
                self.hostile_served += 1
                return self.hostile
        upstream = httpx.get(
            self.sim.base_url + path,
            headers={k: v for k, v in request.headers.items() if k.lower() not in _DROP},
            timeout=20,
        )
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
        body = upstream.content
        if path.startswith(API_PATH):  # media URLs in answers point back through the relay
            body = body.replace(self.sim.base_url.encode(), self.url.encode())
        return Reply(upstream.status_code, headers, body)


@pytest.fixture
def sim() -> Iterator[geminigen.GeminiGenSimulator]:
    s = geminigen.create(
        api_key=API_KEY,
        seed=5,
        count=11,
        image_size=20_000,
        video_size=60_000,
        audio_size=10_000,
        thumbnail_size=5_000,
        processing_count=0,
        failed_count=0,
    )
    s.start()
    s.faults.update(latency_s=0.05)  # several downloads in flight at any time
    yield s
    s.stop()


def _config(path: Path, db_url: str, endpoint: str, bucket: str, base: str) -> Path:
    account = {
        "name": "main",
        "provider": "geminigen",
        "api_key_env": "GG_CONTAIN_KEY",
        "base_url": f"{base}{API_PATH}",
        "media_base": f"{base}/cdn/",
    }
    return defaults_config(
        path,
        db_url=db_url,
        storage_url=f"s3://{bucket}/archive",
        endpoint_url=endpoint,
        account=account,
    )


def _run(
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: tuple[str, str],
    sim: geminigen.GeminiGenSimulator,
    hostile: Reply,
) -> tuple[subprocess.CompletedProcess[str], ForwardingOrigin, list[dict[str, Any]], Path]:
    """One ``run --once`` through the relay; (the run, the relay, its asset rows, metrics)."""
    endpoint, bucket = s3_bucket
    victim = next(f for f in sim.expected_media() if f.role == "result")
    relay = ForwardingOrigin(sim, victim.url, victim.generation_id, hostile)
    config = _config(tmp_path / "genvault.toml", postgres_url, endpoint, bucket, relay.url)
    metrics = tmp_path / "run.prom"
    env = {**os.environ, "GG_CONTAIN_KEY": API_KEY}
    proc = genvault(
        "--config", str(config), "run", "--once", "--metrics-file", str(metrics), env=env
    )
    assert relay.gone_served and relay.hostile_served >= 1, (
        f"the refresh was not provoked: {proc.stderr[-3000:]}"
    )
    store = Store(postgres_url)
    try:
        rows = [a for a in store.assets() if a["role"] in ROLES]
        leased = store.lease_owners()
    finally:
        store.dispose()
    states = {s: sum(1 for r in rows if r["state"] == s) for s in {r["state"] for r in rows}}
    print(f"exit {proc.returncode}, {states}, leases left: {leased}")
    others = [r for r in rows if httpx.URL(r["source_url"]).path != relay.victim_path]
    assert {r["state"] for r in others} == {"archived"}, "other files' outcomes were lost"
    assert leased == [], "leases left taken"
    keys = {
        o["Key"]
        for o in S3Server(endpoint).client().list_objects_v2(Bucket=bucket).get("Contents", [])
    }
    assert {f"archive/{r['storage_key']}" for r in others} <= keys
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "run.done" for e in events), proc.stderr[-3000:]
    return proc, relay, rows, metrics


def test_a_refresh_that_raises_the_unexpected_fails_one_file_and_records_all_others(
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: tuple[str, str],
    sim: geminigen.GeminiGenSimulator,
) -> None:
    """The detail answer is declared gzip and is not: httpx raises ``DecodingError``,
    which genvault's API client does not map to one of its errors."""
    proc, relay, rows, metrics = _run(tmp_path, postgres_url, s3_bucket, sim, FALSE_GZIP)
    [mine] = [r for r in rows if httpx.URL(r["source_url"]).path == relay.victim_path]
    assert mine["state"] == "pending" and mine["attempts"] == 1  # counted, retried
    assert "internal error" in mine["last_error"] and "DecodingError" in mine["last_error"]
    assert proc.returncode == 3, proc.stderr[-3000:]  # a file waits for its retry
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    [crash] = [e for e in events if e["event"] == "asset.unexpected_error"]
    assert crash["level"] == "error" and crash["asset_id"] == mine["id"]
    assert 'genvault_download_retries_total{account="main"} 1.0' in metrics.read_text()


def test_a_refresh_answered_with_json_nested_100000_deep_loses_nothing(
    tmp_path: Path,
    postgres_url: str,
    s3_bucket: tuple[str, str],
    sim: geminigen.GeminiGenSimulator,
) -> None:
    """The issue's own case: ``json`` raised ``RecursionError``, which is no
    ``ValueError``. Either the refresh's unexpected error is the file's (it waits for a
    retry) or the API client refuses the depth as a malformed answer (the URL is tried
    again at once and served): in no case is the pass lost, nor the file given up."""
    proc, relay, rows, _ = _run(tmp_path, postgres_url, s3_bucket, sim, NESTED_JSON)
    [mine] = [r for r in rows if httpx.URL(r["source_url"]).path == relay.victim_path]
    assert mine["state"] in ("archived", "pending")
    assert proc.returncode == (0 if mine["state"] == "archived" else 3), proc.stderr[-3000:]
