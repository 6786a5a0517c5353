"""``GET /metrics`` over real loopback HTTP, on a runtime that archived real files.

A GeminiGen simulator serves the API (with a 429 injected through its fault knobs)
and the media; :func:`run_once` archives into a ``file://`` folder on SQLite and on
PostgreSQL; a real :class:`ApiServer` serves the scrape, which is parsed with
prometheus_client's own parser and compared with the database and the simulator's
request counters. Then the provider goes down until its circuit opens, and finally
the PostgreSQL database goes away under a running server. The per-stream gauges are
checked on the crafted archive of :mod:`tests.integration.stream_world`.
"""

from __future__ import annotations

import http.client
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from genvault.config import Settings
from genvault.exitcodes import ExitCode
from genvault.jobs.pipeline import run_once
from genvault.records import AssetState, GenerationRecord, GenerationStatus, MediaKind, MediaRecord
from genvault.runtime import Runtime
from genvault.server import ApiServer
from genvault.simulator import geminigen
from genvault.simulator.geminigen import GeminiGenSimulator
from genvault.textfile import write_textfile
from tests.fixtures.sims import SimStarter, sim_account
from tests.integration import stream_world
from tests.integration.stream_world import EXPECTED

KEY = "gg-metrics-key-4e1d77"
TOKEN = "metrics-intake-token-1234"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Scrape:
    status: int
    content_type: str
    text: str

    @property
    def families(self) -> set[str]:
        return {f.name for f in text_string_to_metric_families(self.text)}

    @property
    def samples(self) -> Samples:
        out: Samples = {}
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def by_label(self, name: str, label: str, **fixed: str) -> dict[str, float]:
        """``{label value: sample}`` of ``name`` among samples that carry ``fixed``."""
        out = {}
        for (n, labels), v in self.samples.items():
            d = dict(labels)
            if n == name and all(d.get(k) == want for k, want in fixed.items()):
                out[d[label]] = v
        return out


def scrape(url: str) -> Scrape:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        return Scrape(resp.status, resp.getheader("content-type") or "", resp.read().decode())
    finally:
        conn.close()


@pytest.fixture
def sim(start_sim: SimStarter) -> GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=21,
        count=4,
        image_size=3_000,
        video_size=6_000,
        audio_size=2_000,
        thumbnail_size=500,
        processing_count=0,
        failed_count=1,
    )


def _settings(sim: GeminiGenSimulator, db_url: str, tmp_path: Path) -> Settings:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return Settings.model_validate(
        {
            "database": {"url": db_url},
            "storage": {"url": f"file://{tmp_path / 'archive'}"},
            "network": {
                "allow_private": True,
                "api_retries": 1,
                "backoff_cap_seconds": 0.2,
                "budget_max_interval_seconds": 0.05,
                "breaker_failures": 1,
                "breaker_cooldown_seconds": 600,
            },
            "server": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
            "accounts": [sim_account(sim, "GG")],
        }
    )


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start an ApiServer on a runtime; stopped (and the runtime closed) afterwards."""
    started: list[tuple[ApiServer, Runtime]] = []

    def start(rt: Runtime) -> str:
        server = ApiServer(rt, rt.settings.server)
        started.append((server, rt))
        return server.start()

    yield start
    for server, rt in started:
        server.stop()
        rt.close()


def _near_deadline_file(rt: Runtime, sim: GeminiGenSimulator, in_hours: float) -> datetime:
    """A pending file whose signed URL expires soon, saved the way a sync page is."""
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=in_hours)
    acc = rt.accounts["main"]
    rt.store.save_page(
        provider=acc.provider.name,
        account="main",
        records=[
            GenerationRecord(
                external_id="near-deadline-1",
                status=GenerationStatus.SUCCEEDED,
                provider_status="2",
                created_at=now - timedelta(days=1),
                completed_at=now - timedelta(days=1),
                media=(
                    MediaRecord(
                        url=sim.base_url + "/cdn/never-fetched.png",
                        kind=MediaKind.IMAGE,
                        url_expires_at=deadline,
                    ),
                ),
            )
        ],
        cursor=None,
        archive_roles=rt.archive_roles,
        retention=acc.retention,
        poll_horizon=rt.poll_horizon,
    )
    return deadline


def _count_statements(rt: Runtime) -> list[str]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(rt.store.engine, "before_cursor_execute", record)
    return statements


def test_metrics_match_the_database_the_archive_and_the_provider(
    sim: GeminiGenSimulator, db_url: str, tmp_path: Path, serve: Any
) -> None:
    rt = Runtime.build(_settings(sim, db_url, tmp_path), {"main": SecretStr(KEY)})
    sim.faults.update(rate_limit_next=1)  # the first API call answers 429, then it is retried
    report = run_once(rt)
    assert report.exit_code is ExitCode.OK
    assert report.archive.archived > 0
    deadline = _near_deadline_file(rt, sim, in_hours=2)
    url = serve(rt)
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", "/v1/tasks", body=b"{}", headers={"Authorization": "Bearer wrong"})
    assert conn.getresponse().status == 401
    conn.close()

    statements = _count_statements(rt)
    m = scrape(url)
    assert m.status == 200
    assert m.content_type.startswith("text/plain; version=0.0.4")
    # the database gauges cost eight grouped queries (five, and three for the streams),
    # however many rows there are
    selects = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 8, statements

    # files by state: exactly what the database holds, every state present
    rows = rt.store.assets()
    by_state = Counter(r["state"] for r in rows)
    assert m.by_label("genvault_assets", "state", account="main") == {
        s.value: by_state.get(s.value, 0) for s in AssetState
    }
    archived = [r for r in rows if r["state"] == "archived"]
    assert len(archived) == report.archive.archived
    assert by_state["pending"] == 1  # the near-deadline file
    gens = Counter(g["status"] for g in rt.store.generations())
    assert m.by_label("genvault_generations", "status", account="main") == {
        s.value: gens.get(s.value, 0) for s in GenerationStatus
    }

    # what this process archived, in files and bytes, equals the rows and the storage
    stored = sum(r["size"] for r in archived)
    assert m.value("genvault_archived_files_total", account="main") == len(archived)
    assert m.value("genvault_archived_bytes_total", account="main") == stored
    assert m.value("genvault_stored_bytes", account="main") == stored
    on_disk = sum(p.stat().st_size for p in (tmp_path / "archive").rglob("*") if p.is_file())
    assert stored < on_disk  # the sidecars are the rest
    assert m.value("genvault_lost_files_total", account="main") == 0
    assert m.by_label("genvault_media_responses_total", "status", account="main") == {
        "200": len(archived)
    }

    # provider requests by status: the injected 429 and what the simulator answered
    stats = sim.stats.snapshot()
    api_requests = stats["requests"] - stats["routes"].get("media", 0)
    by_status = m.by_label("genvault_provider_requests_total", "status", account="main")
    assert by_status["429"] == 1 == stats["faults"]["rate_limit_next"]
    assert sum(by_status.values()) == api_requests
    assert set(by_status) == {"200", "429"}
    assert m.value("genvault_provider_retries_total", account="main") == 1

    # the file due in two hours is at risk (metrics.at_risk_hours = 24 by default)
    assert m.value("genvault_assets_at_risk", account="main") == 1
    left = m.value("genvault_earliest_pending_deadline_seconds", account="main")
    assert left is not None
    assert (deadline - datetime.now(UTC)).total_seconds() - 5 < left <= 2 * 3600

    # jobs, sync time, circuit, database, the server's own counters
    for job, account in (("sync", "main"), ("poll", "main"), ("archive", "all")):
        runs = m.by_label("genvault_job_runs_total", "outcome", job=job, account=account)
        assert runs == {"success": 1}, (job, runs)
        last = m.value("genvault_job_last_success_timestamp_seconds", job=job, account=account)
        assert last is not None and abs(last - datetime.now(UTC).timestamp()) < 120
        assert m.value("genvault_job_duration_seconds_count", job=job, account=account) == 1
    synced = m.value("genvault_last_sync_timestamp_seconds", account="main")
    assert synced is not None and abs(synced - datetime.now(UTC).timestamp()) < 120
    assert m.value("genvault_provider_circuit_state", account="main") == 0
    assert m.value("genvault_database_up") == 1
    assert (
        m.value(
            "genvault_http_requests_total", endpoint="intake", outcome="refused", reason="bad_token"
        )
        == 1
    )

    # --metrics-file writes the same families, with the same database gauges
    textfile = tmp_path / "genvault.prom"
    write_textfile(rt, textfile)
    from_file = Scrape(200, "", textfile.read_text())
    assert from_file.families == m.families
    for name in ("genvault_assets", "genvault_assets_at_risk", "genvault_archived_files_total"):
        assert {k: v for k, v in from_file.samples.items() if k[0] == name} == {
            k: v for k, v in m.samples.items() if k[0] == name
        }

    # the provider goes down: one failed call opens the circuit (breaker_failures = 1)
    sim.faults.update(error_rate=1.0)
    down = run_once(rt)
    assert down.circuit_open == ["main"]
    m = scrape(url)
    assert m.value("genvault_provider_circuit_state", account="main") == 2
    by_status = m.by_label("genvault_provider_requests_total", "status", account="main")
    # The sync's call and its retry; the archive pass, which runs beside the sync, may
    # have read the near-deadline file's detail (its media answer 404: a URL refresh)
    # before the circuit opened, one call and one retry more. Nothing after it opened.
    failed = sum(v for k, v in by_status.items() if k.startswith("5"))
    assert failed in (2, 4), by_status
    assert m.value("genvault_provider_retries_total", account="main") == 1 + failed // 2
    assert m.by_label("genvault_job_runs_total", "outcome", job="sync", account="main") == {
        "success": 1,
        "failed": 1,
    }
    assert rt.store.provider_health()["main"].health.circuit.value == "open"


@pytest.mark.postgres
def test_database_gone_still_answers_200_with_database_up_0(
    sim: GeminiGenSimulator, postgres_url: str, tmp_path: Path, serve: Any
) -> None:
    rt = Runtime.build(_settings(sim, postgres_url, tmp_path), {"main": SecretStr(KEY)})
    report = run_once(rt)
    assert report.exit_code is ExitCode.OK and report.archive.archived > 0
    url = serve(rt)
    assert scrape(url).value("genvault_database_up") == 1

    # the database is dropped under the running server: its connections are cut
    target = make_url(postgres_url)
    admin = {
        "host": target.host,
        "port": target.port,
        "user": target.username,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE "{target.database}" WITH (FORCE)')

    m = scrape(url)
    assert m.status == 200
    assert m.value("genvault_database_up") == 0
    # the process counters are all there; the database gauges have no samples
    assert m.value("genvault_archived_files_total", account="main") == report.archive.archived
    assert m.by_label("genvault_job_runs_total", "outcome", job="archive", account="all") == {
        "success": 1
    }
    assert m.by_label("genvault_assets", "state") == {}
    assert "genvault_assets" in m.families  # the family is announced, for dashboards
    assert "genvault_stream_complete" in m.families
    assert m.by_label("genvault_stream_complete", "stream") == {}
    assert m.value("genvault_provider_circuit_state", account="main") == 0  # from memory
    assert "Traceback" not in m.text


# --------------------------------------------------------------------------- streams

STREAM_GAUGE = {
    "listed": "genvault_stream_listed",
    "known": "genvault_stream_known",
    "archived": "genvault_stream_archived_files",
    "pending": "genvault_stream_pending_files",
    "missing": "genvault_stream_missing",
    "gone_before_capture": "genvault_stream_gone_before_capture",
}


def test_stream_gauges_match_the_crafted_archive(db_url: str, tmp_path: Path, serve: Any) -> None:
    rt = Runtime.build(stream_world.settings(db_url, tmp_path), stream_world.SECRETS)
    url = serve(rt)
    empty = scrape(url)
    # an empty database: every configured stream is there, never walked, not complete
    assert empty.by_label("genvault_stream_complete", "stream", account="cc") == {
        w: 0 for w in stream_world.WORKFLOWS
    }
    assert empty.by_label("genvault_stream_known", "stream", account="gg") == {"all": 0}
    assert empty.by_label("genvault_stream_complete", "stream", account="ak") == {}
    assert empty.by_label("genvault_stream_listed", "stream") == {}
    assert empty.by_label("genvault_stream_last_complete_walk_timestamp_seconds", "stream") == {}

    world = stream_world.build(rt.store)
    m = scrape(url)
    assert m.value("genvault_database_up") == 1
    for (account, stream), want in EXPECTED.items():
        labels = {"account": account, "stream": stream}
        for figure, gauge in STREAM_GAUGE.items():
            assert m.value(gauge, **labels) == want[figure], (gauge, labels)
        assert m.value("genvault_stream_complete", **labels) == int(want["complete"]), labels
        assert m.value("genvault_stream_sync_error", **labels) == int(bool(want["error"]))
        walked = world.walked.get((account, stream))
        assert m.value("genvault_stream_last_complete_walk_timestamp_seconds", **labels) == (
            walked.timestamp() if walked else None
        ), labels
        full = world.full_walked.get((account, stream))
        assert m.value("genvault_stream_last_full_walk_timestamp_seconds", **labels) == (
            full.timestamp() if full else None
        ), labels
    # the rejected workflow is named by its label; the one never walked is there too
    assert m.by_label("genvault_stream_sync_error", "stream", account="cc") == {
        "wf-ok": 0,
        "wf-rejected": 1,
        "wf-lossy": 0,
        "wf-later": 0,
        "(tracked)": 0,
    }
    assert m.value("genvault_stream_complete", account="cc", stream="wf-later") == 0
    assert m.value("genvault_stream_listed", account="cc", stream="wf-rejected") is None

    # wf-lossy and wf-rejected leave the configuration: retired, no walk times any more
    settings = stream_world.settings(db_url, tmp_path)
    cc = settings.accounts[0].model_copy(update={"workflows": ["wf-ok", "wf-later"]})
    later = Runtime.build(
        settings.model_copy(update={"accounts": (cc, *settings.accounts[1:])}),
        stream_world.SECRETS,
    )
    retired = scrape(serve(later))
    assert retired.by_label("genvault_stream_complete", "stream", account="cc") == {
        "wf-ok": 1,
        "wf-rejected": 1,  # its error no longer matters, and nothing of it is missing
        "wf-lossy": 0,  # 2 files missing still
        "wf-later": 0,
        "(tracked)": 0,
    }
    assert retired.value("genvault_stream_sync_error", account="cc", stream="wf-rejected") == 0
    assert retired.value("genvault_stream_missing", account="cc", stream="wf-lossy") == 2
    assert set(
        retired.by_label("genvault_stream_last_full_walk_timestamp_seconds", "stream", account="cc")
    ) == {"wf-ok"}

    # run --once --metrics-file shares the collector: the same stream samples
    textfile = tmp_path / "genvault.prom"
    write_textfile(rt, textfile)
    from_file = Scrape(200, "", textfile.read_text())
    for name in [*STREAM_GAUGE.values(), "genvault_stream_complete", "genvault_stream_sync_error"]:
        assert {k: v for k, v in from_file.samples.items() if k[0] == name} == {
            k: v for k, v in m.samples.items() if k[0] == name
        }, name


OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_runbook_names_only_metrics_that_exist(tmp_path: Path, serve: Any) -> None:
    """Every ``genvault_*`` name in docs/operations.md (the tables and the alert rules) is
    a family a scrape announces, and the alert rules are valid YAML."""
    rt = Runtime.build(
        stream_world.settings(f"sqlite:///{tmp_path / 'gv.db'}", tmp_path), stream_world.SECRETS
    )
    stream_world.build(rt.store)
    m = scrape(serve(rt))
    names = m.families | {name for name, _ in m.samples}
    text = OPERATIONS.read_text()
    named = set(re.findall(r"\bgenvault_[a-z_]*[a-z]\b", text)) - {"genvault_stream"}
    assert {n for n in named if n not in names and n.removesuffix("_total") not in names} == set()

    rules_block = text.split("## Alerts", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(rules_block)["groups"][0]["rules"]
    streams = [r for r in rules if r["alert"].startswith("GenvaultStream")]
    assert len(streams) == 5
    for rule in rules:
        used = set(re.findall(r"\bgenvault_[a-z_]*[a-z]\b", rule["expr"]))
        assert used and used <= names, rule["alert"]
