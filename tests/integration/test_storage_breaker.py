"""The storage circuit breaker, in one process: an outage that starts mid-pass.

Real parts: PostgreSQL, the GeminiGen simulator over HTTP, and moto's S3 server
behind a TCP switch on loopback (off: its port refuses connections). The pass
archives from one runtime; the switch goes off right after the first file is
recorded, while others are downloading and more wait in the pool. The backlog (30
generations, 68 files) is larger than what a pass has in hand when storage goes: its
lease window, and the small PUTs the S3 storage has accepted but not yet sent
(``storage/s3_deferred.py``: their failure shows only after the client's retries, so
the workers' downloads meanwhile are bounded by those caps, not stopped at once; with
11 generations every file was in hand and so downloaded).

What must hold: the files whose write failed, and those still waiting in the pool,
go back pending with their attempts unchanged (the waiting ones without being
downloaded); nothing more is leased while storage is down; ``status``, the page and
``/metrics`` say so; a pass inside the probe interval sends nothing anywhere; the
first probe after storage came back closes the breaker and everything proceeds in
that pass. Time is moved on the breaker's own clock and, for the files, through the
store (backoffs made due), never by shortening a setting or sleeping it out.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from genvault.config import Settings
from genvault.jobs.archive import archive_one, archive_pending
from genvault.jobs.poll import poll_account
from genvault.jobs.sync import sync_account
from genvault.metrics import exposition
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.status import read_status
from genvault.web.page import PageData, render_page
from tests.acceptance.helpers import sim_account
from tests.fixtures.sims import SimStarter
from tests.fixtures.tcp_switch import TcpSwitch, tcp_switch  # noqa: F401
from tests.integration.store_helpers import now_utc

pytestmark = [pytest.mark.postgres, pytest.mark.s3]

API_KEY = "storage-breaker-key"
ROLES = {"result", "thumbnail", "last_frame"}


class ManualClock:
    """Monotonic time that a test can move forward (the breaker's probe interval)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=API_KEY,
        count=30,
        image_size=2_000,
        video_size=4_000,
        audio_size=3_000,
        thumbnail_size=1_000,
        processing_count=0,
        failed_count=0,
    )


def _runtime(postgres_url: str, bucket: str, endpoint: str, sim: Any) -> Runtime:
    settings = Settings.model_validate(
        {
            "database": {"url": postgres_url},
            "storage": {"url": f"s3://{bucket}/archive", "endpoint_url": endpoint},
            "network": {"allow_private": True},
            "server": {"enabled": False},
            "accounts": [sim_account(sim, "GG_KEY")],
        }
    )
    return Runtime.build(settings, {"main": SecretStr(API_KEY)})


def _with_clock(rt: Runtime, clock: ManualClock) -> None:
    """Give the runtime a storage breaker on ``clock`` (on code without one: nothing)."""
    if hasattr(rt, "storage_guard"):
        from genvault.storage.guard import StorageGuard

        rt.storage_guard = StorageGuard(rt.storage, clock=clock)


def _assets(rt: Runtime) -> list[dict[str, Any]]:
    return [a for a in rt.store.assets() if a["role"] in ROLES]


def _hits(sim: geminigen.GeminiGenSimulator) -> dict[str, int]:
    return dict(sim.stats.snapshot()["media_hits"])


def _metric(rt: Runtime, name: str) -> float:
    body, _ = exposition(rt, {})
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def test_an_outage_mid_pass_defers_files_untouched_and_pauses_until_storage_answers(
    postgres_url: str,
    s3_bucket: tuple[str, str],
    sim: geminigen.GeminiGenSimulator,
    tcp_switch: type[TcpSwitch],  # noqa: F811
) -> None:
    endpoint, bucket = s3_bucket
    host, port = endpoint.removeprefix("http://").split(":")
    s3 = tcp_switch((host, int(port)))
    rt = _runtime(postgres_url, bucket, s3.url, sim)
    clock = ManualClock()
    _with_clock(rt, clock)
    try:
        sync_account(rt, rt.accounts["main"])
        poll_account(rt, rt.accounts["main"])  # the detail reads (fetch_detail = "always")
        files = len(_assets(rt))
        assert files > 20
        sim.faults.update(latency_s=0.3)  # downloads in flight when storage goes

        def storage_goes_down(outcome: Any, _asset: Any) -> None:
            if outcome.state is AssetState.ARCHIVED and s3.is_on:
                s3.off()

        with capture_logs() as logs:
            first = archive_pending(rt, on_outcome=storage_goes_down)
        rows = _assets(rt)
        states = {s: sum(1 for a in rows if a["state"] == s) for s in ("archived", "pending")}
        hits = _hits(sim)
        deferred_untried = [e for e in logs if e["event"] == "asset.storage_deferred"]
        print(
            f"outage mid-pass: {states}, {sum(hits.values())} downloads, "
            f"{len(deferred_untried)} files handed back, leased {first.archived + first.retrying}"
        )
        assert not s3.is_on
        assert first.failed == first.lost == 0
        assert {a["state"] for a in rows} == {"archived", "pending"}
        assert {a["attempts"] for a in rows if a["state"] == "pending"} == {0}
        assert max(hits.values()) == 1, "a file was downloaded twice"
        assert len(hits) < files, "storage was down and still every file was downloaded"
        assert rt.store.lease_owners() == []  # every file it took went back
        tried = [a for a in rows if a["state"] == "pending" and a["last_error"]]
        assert tried and all("storage unavailable" in a["last_error"] for a in tried)

        # What the operator sees: status (and so the page), and /metrics.
        doc = read_status(rt.store, rt.settings, timedelta(hours=24))
        assert doc["storage"]["circuit"]["state"] == "open"
        page = render_page(PageData(doc=doc, archives=[], at_risk_hours=24)).decode()
        assert 'id="storage"' in page and "archiving paused" in page
        assert _metric(rt, "genvault_storage_circuit_state") == 2.0
        assert _metric(rt, "genvault_storage_failures_total") >= 1
        assert first.storage_down and first.outcome.value == "failed"

        # Within the probe interval a pass sends nothing: no probe, no download.
        before, connections = _hits(sim), s3.connections
        clock.advance(5)
        with capture_logs() as logs:
            idle = archive_pending(rt)
        assert idle.storage_down and idle.archived == 0
        assert _hits(sim) == before
        assert not [e for e in logs if e["event"] == "storage.probe_failed"]

        # Storage is back; the next probe (one interval after the last) closes the
        # breaker, and everything is archived in that same pass.
        s3.on()
        clock.advance(10)
        rt.store.requeue_assets("main")  # the same 10 s pass for the files' retry times
        back = archive_pending(rt)
        assert s3.connections > connections
        assert {a["state"] for a in _assets(rt)} == {"archived"}
        assert back.archived == states["pending"] and not back.storage_down
        doc = read_status(rt.store, rt.settings, timedelta(hours=24))
        assert doc["storage"]["circuit"]["state"] == "closed"
        assert _metric(rt, "genvault_storage_circuit_state") == 0.0
        after = _hits(sim)
        assert all(after[path] <= 2 for path in after)
    finally:
        rt.close()


def test_a_write_refused_while_storage_answers_is_the_files_problem_not_an_outage(
    tmp_path: Path, postgres_url: str, sim: geminigen.GeminiGenSimulator
) -> None:
    """A stray file where one generation's folder should be: its writes fail, the probe
    (a write in ``.genvault-tmp``) succeeds, so the breaker stays closed, the other files
    are archived, and the blocked ones wait with their attempts unchanged."""
    settings = Settings.model_validate(
        {
            "database": {"url": postgres_url},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "network": {"allow_private": True},
            "server": {"enabled": False},
            "accounts": [sim_account(sim, "GG_KEY")],
        }
    )
    rt = Runtime.build(settings, {"main": SecretStr(API_KEY)})
    try:
        sync_account(rt, rt.accounts["main"])
        poll_account(rt, rt.accounts["main"])  # the detail reads (fetch_detail = "always")
        gen = rt.store.generations()[0]
        day = f"{gen['created_at']:%Y/%m/%d}"
        blocker = tmp_path / "archive/geminigen/main" / day / gen["external_id"]
        blocker.parent.mkdir(parents=True)
        blocker.write_text("not a folder")
        with capture_logs() as logs:
            result = archive_pending(rt)
        rows = _assets(rt)
        blocked = [a for a in rows if a["generation_id"] == gen["id"]]
        assert blocked and {a["state"] for a in blocked} == {"pending"}
        assert {a["attempts"] for a in blocked} == {0}
        assert all(a["next_attempt_at"] > now_utc() for a in blocked)  # backoff, not a loop
        assert {a["state"] for a in rows if a not in blocked} == {"archived"}
        assert not result.storage_down and rt.storage_guard.state.value == "closed"
        refused = [e for e in logs if e["event"] == "asset.storage_refused"]
        assert len(refused) == len(blocked) and {e["strikes"] for e in refused} == {1}

        blocker.unlink()  # someone cleans up; the backoff ends
        rt.store.requeue_assets("main")
        archive_pending(rt)
        assert {a["state"] for a in _assets(rt)} == {"archived"}
    finally:
        rt.close()


def test_a_file_past_its_deadline_whose_write_meets_an_outage_is_lost_saying_why(
    postgres_url: str,
    s3_bucket: tuple[str, str],
    sim: geminigen.GeminiGenSimulator,
    tcp_switch: type[TcpSwitch],  # noqa: F811
) -> None:
    """The deadline still rules: a file already past it was on its last chance, and a
    storage outage that spoils that chance loses it, with the reason in its error."""
    endpoint, bucket = s3_bucket
    host, port = endpoint.removeprefix("http://").split(":")
    s3 = tcp_switch((host, int(port)))
    rt = _runtime(postgres_url, bucket, s3.url, sim)
    try:
        sync_account(rt, rt.accounts["main"])
        poll_account(rt, rt.accounts["main"])  # the detail reads (fetch_detail = "always")
        [asset] = rt.store.leases.acquire("test-worker", limit=1, lease_seconds=60)
        s3.off()
        past = dataclasses.replace(asset, expires_at=asset.expires_at - timedelta(days=60))
        outcome = archive_one(rt, past, threading.Event())
        assert outcome.state is AssetState.LOST
        assert outcome.error is not None and "storage unavailable" in outcome.error
        assert "deadline passed" in outcome.error
    finally:
        rt.close()
