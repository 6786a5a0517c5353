"""``genvault run --once`` end to end: GeminiGen simulator -> SQLite/PostgreSQL -> S3/folder.

The CLI runs as a separate process, exactly as a CronJob would; the simulator
serves over loopback HTTP and moto's S3 server takes the uploads over HTTP.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from genvault.simulator import geminigen
from genvault.store import Store
from genvault.store.base import G
from tests.acceptance.helpers import (
    defaults_config,
    genvault,
    local_config,
    quota_pause_ends,
    run_done,
    run_until_quiet,
    time_passes,
    write_config,
)
from tests.fixtures.s3 import S3Server
from tests.fixtures.sims import SimStarter, sim_account

API_KEY = "gg-test-key-7f3a9c2e51"


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=11,
        count=30,
        image_size=30_000,
        video_size=400_000,
        audio_size=50_000,
        processing_count=3,
        processing_seconds=0.5,
        failed_count=2,
        max_items_per_page=100,
    )


def _account(sim: geminigen.GeminiGenSimulator, **extra: Any) -> dict[str, Any]:
    return sim_account(sim, "GG_KEY", **{"items_per_page": 7, "fetch_detail": "always", **extra})


def _expected(sim: geminigen.GeminiGenSimulator) -> dict[str, Any]:
    """Files genvault must archive by default (references are off), keyed by URL."""
    return {f.url: f for f in sim.expected_media() if f.role != "reference"}


def test_run_once_to_s3_archives_every_file_verified_and_twice_is_a_no_op(
    sim: geminigen.GeminiGenSimulator,
    s3_bucket: tuple[str, str],
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    endpoint, bucket = s3_bucket
    db = tmp_path / "gv.db"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{db}",
        storage_url=f"s3://{bucket}/archive",
        endpoint_url=endpoint,
        accounts=[_account(sim)],
    )
    env = {"GG_KEY": API_KEY}

    runs = run_until_quiet(config, env)
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]

    expected = _expected(sim)
    store = Store(f"sqlite:///{db}")
    assets = {a["source_url"]: a for a in store.assets()}
    gens = {g["external_id"]: g for g in store.generations()}
    store.dispose()
    assert set(expected) <= set(assets), "some simulator files were never discovered"
    s3 = s3_server.client()
    for url, exp in expected.items():
        row = assets[url]
        assert row["state"] == "archived", (url, row["last_error"])
        assert row["sha256"] == exp.sha256 and row["size"] == exp.size
        # storage keys are relative to the configured storage URL (s3://bucket/archive)
        head = s3.head_object(Bucket=bucket, Key="archive/" + row["storage_key"])
        assert head["ContentLength"] == exp.size
        assert head["Metadata"]["sha256"] == exp.sha256
        body = s3.get_object(Bucket=bucket, Key="archive/" + row["storage_key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == exp.sha256
        assert row["storage_key"].startswith("geminigen/main/")

    # every succeeded generation has a sidecar with the raw payload and its files
    succeeded = [g for g in gens.values() if g["status"] == "succeeded"]
    assert succeeded
    for g in succeeded:
        any_key = next(
            a["storage_key"]
            for a in assets.values()
            if a["external_id"] == g["external_id"] and a["storage_key"]
        )
        sidecar_key = any_key.rsplit("/", 1)[0] + "/generation.json"
        doc = json.loads(s3.get_object(Bucket=bucket, Key="archive/" + sidecar_key)["Body"].read())
        assert doc["external_id"] == g["external_id"]
        assert doc["raw"]["uuid"] == g["external_id"]
        # every deadline in the sidecar says where it comes from (GeminiGen: expired_at)
        assert doc["expires_source"] == "provider"
        assert {f["deadline_from"] for f in doc["files"]} <= {"provider", "signed_url"}
        assert all(f["deadline"] for f in doc["files"])
        assert {f["sha256"] for f in doc["files"] if f["state"] == "archived"} >= {
            a["sha256"]
            for a in assets.values()
            if a["external_id"] == g["external_id"] and a["state"] == "archived"
        }
    failed = [g for g in gens.values() if g["status"] == "failed"]
    assert len(failed) == 2 and all(g["error"] for g in failed)

    # a second run downloads nothing again
    served_before = sim.stats.snapshot()["media_bytes"]
    objects_before = s3.list_objects_v2(Bucket=bucket)["KeyCount"]
    again = genvault("--config", str(config), "run", "--once", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sim.stats.snapshot()["media_bytes"] == served_before
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == objects_before


def test_run_once_on_postgres_to_folder(
    sim: geminigen.GeminiGenSimulator, postgres_url: str, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=postgres_url,
        storage_url=f"file://{archive}",
        accounts=[_account(sim)],
    )
    runs = run_until_quiet(config, {"GG_KEY": API_KEY})
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    expected = _expected(sim)
    store = Store(postgres_url)
    assets = {a["source_url"]: a for a in store.assets()}
    store.dispose()
    for url, exp in expected.items():
        row = assets[url]
        path = archive / row["storage_key"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == exp.sha256
    assert (
        not list((archive / ".genvault-tmp").glob("*"))
        if (archive / ".genvault-tmp").exists()
        else True
    )
    files = [p for p in archive.rglob("*") if p.is_file() and ".genvault-tmp" not in p.parts]
    media = [p for p in files if p.name != "generation.json"]
    assert len(media) == len(expected), "each file stored exactly once"


def test_api_key_never_in_logs_or_status(sim: geminigen.GeminiGenSimulator, tmp_path: Path) -> None:
    config = local_config(tmp_path, [_account(sim)])
    env = {"GG_KEY": API_KEY}
    sim.faults.fail_next = 2  # provoke retries and warnings too
    runs = [
        genvault("--config", str(config), "--log-level", "debug", "run", "--once", env=env)
        for _ in range(3)
    ]
    status = genvault("--config", str(config), "status", "--json", env=env)
    output = "".join(r.stdout + r.stderr for r in [*runs, status])
    assert "asset.archived" in output  # the logs were really produced
    assert API_KEY not in output
    db_dump = (tmp_path / "gv.db").read_bytes()
    assert API_KEY.encode() not in db_dump


def test_status_json_shape(sim: geminigen.GeminiGenSimulator, tmp_path: Path) -> None:
    config = local_config(tmp_path, [_account(sim)])
    run_until_quiet(config, {"GG_KEY": API_KEY})
    proc = genvault("--config", str(config), "status", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"accounts", "storage", "at_risk", "recent_failures"}
    (acc,) = doc["accounts"]
    assert {"name", "provider", "generations", "assets", "last_sync"} <= set(acc)
    assert acc["name"] == "main" and acc["provider"] == "geminigen"
    assert acc["generations"]["succeeded"] == 28 and acc["generations"]["failed"] == 2
    assert acc["assets"]["archived"] == len(_expected(sim))
    assert acc["last_sync"] is not None
    table = genvault("--config", str(config), "status")
    assert table.returncode == 0 and "main" in table.stdout


def test_media_urls_are_taken_from_the_detail_for_videos(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    """The listing omits videos; only the /history/{uuid} detail has them."""
    config = local_config(tmp_path, [_account(sim)])
    run_until_quiet(config, {"GG_KEY": API_KEY})
    videos = [f for f in sim.expected_media() if f.kind == "video"]
    assert videos
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    by_path = {urlsplit(a["source_url"]).path: a for a in store.assets()}
    store.dispose()
    for v in videos:
        row = by_path[urlsplit(v.url).path]
        assert row["state"] == "archived" and row["kind"] == "video"
        assert row["storage_key"].endswith(".mp4")


def test_files_past_their_deadline_are_lost_loudly_with_exit_4(
    tmp_path: Path, start_sim: SimStarter
) -> None:
    """expired_count items have expired_at in the past; their media answer 403."""
    sim = start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=5,
        count=10,
        image_size=10_000,
        video_size=50_000,
        processing_count=0,
        failed_count=0,
        expired_count=2,
    )
    db = tmp_path / "gv.db"
    config = local_config(tmp_path, [_account(sim)])
    env = {"GG_KEY": API_KEY}
    proc = genvault("--config", str(config), "run", "--once", env=env)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert '"asset.lost"' in proc.stderr and '"level": "error"' in proc.stderr
    now = datetime.now(UTC)
    expired_ids = {
        f.generation_id
        for f in sim.expected_media()
        if f.expires_at is not None and f.expires_at < now
    }
    assert len(expired_ids) == 2
    store = Store(f"sqlite:///{db}")
    rows = store.assets()
    store.dispose()
    lost = {r["external_id"] for r in rows if r["state"] == "lost"}
    assert lost == expired_ids
    assert all(
        r["state"] == "archived"
        for r in rows
        if r["external_id"] not in expired_ids and r["role"] != "reference"
    )
    # nothing left to do, nothing lost anew: the next run is clean
    again = genvault("--config", str(config), "run", "--once", env=env)
    assert again.returncode == 0, again.stderr[-3000:]


def test_rate_limited_run_exits_3_saying_why_and_resumes(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    """A quota pause is not a failure of genvault, but the run did not archive what it
    should have: exit 3, and its last line says it is incomplete and why. At the
    defaults a user gets (``network.backoff_cap_seconds`` 60), a Retry-After of an hour
    ends the run; the hour passes through the store (the stored pause and every
    backoff end), never by waiting."""
    db = f"sqlite:///{tmp_path / 'gv.db'}"
    config = defaults_config(
        tmp_path / "genvault.toml",
        db_url=db,
        storage_url=f"file://{tmp_path / 'archive'}",
        account=_account(sim),
    )
    env = {"GG_KEY": API_KEY}
    sim.faults.update(rate_limit=True, retry_after="3600")  # longer than the backoff cap
    proc = genvault("--config", str(config), "run", "--once", env=env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "sync.rate_limited" in proc.stderr
    done = run_done(proc.stderr)
    assert done["complete"] is False and done["incomplete"] == ["main: sync rate limited"]
    assert sim.stats.snapshot()["statuses"].get("429", 0) >= 1
    sim.faults.update(rate_limit=False, retry_after=None)
    # The quota pause is remembered across runs: a run before it ends asks nothing.
    requests = sim.stats.snapshot()["requests"]
    early = genvault("--config", str(config), "run", "--once", env=env)
    assert early.returncode == 3, early.stderr[-3000:]
    assert sim.stats.snapshot()["requests"] == requests

    quota_pause_ends(db)  # an hour later
    time_passes(db)
    runs = run_until_quiet(config, env)
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    store = Store(db)
    archived = {a["source_url"] for a in store.assets() if a["state"] == "archived"}
    store.dispose()
    assert set(_expected(sim)) <= archived


def test_short_retry_after_is_honoured_within_the_run(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    """Three 503s, then the API answers: at the defaults a user gets, the client's own
    retries absorb them within the run, which is complete (exit 0)."""
    db = tmp_path / "gv.db"
    config = defaults_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{db}",
        storage_url=f"file://{tmp_path / 'archive'}",
        account=_account(sim),
    )
    sim.faults.update(fail_next=3)  # three 503s, then the API answers again
    proc = genvault("--config", str(config), "run", "--once", env={"GG_KEY": API_KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.stats.snapshot()["statuses"].get("503", 0) == 3
    store = Store(f"sqlite:///{db}")
    assert store.generations(), "the sync went on after the retries"
    store.dispose()


def test_tasks_running_past_the_horizon_are_failed_with_the_reason(
    tmp_path: Path, start_sim: SimStarter
) -> None:
    """At the defaults a user gets (``poll.give_up_hours`` 48, the poll ladder from 5 s):
    a task still running when its horizon has passed is failed with the reason, and the
    run that gave up on it says so (exit 3). The 48 hours pass through the store (the
    horizon and the next status read are moved to now), never by waiting or by
    shortening a setting."""
    sim = start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=8,
        count=5,
        image_size=5_000,
        processing_count=2,
        processing_seconds=3600,
        failed_count=0,
    )
    db = f"sqlite:///{tmp_path / 'gv.db'}"
    config = defaults_config(
        tmp_path / "genvault.toml",
        db_url=db,
        storage_url=f"file://{tmp_path / 'archive'}",
        account=_account(sim),
    )
    env = {"GG_KEY": API_KEY}
    once = ("--config", str(config), "--log-format", "json", "run", "--once")
    first = genvault(*once, env=env)
    assert first.returncode == 0, first.stderr[-3000:]  # running tasks are not owed yet
    store = Store(db)
    running = [g for g in store.generations() if g["status"] in ("queued", "running")]
    assert len(running) == 2 and all(g["next_poll_at"] and g["poll_until"] for g in running)

    now = datetime.now(UTC)  # 48 hours later: the horizon has passed, the next read is due
    with store.engine.begin() as conn:
        conn.execute(
            G.update()
            .where(G.c.id.in_([g["id"] for g in running]))
            .values(poll_until=now, next_poll_at=now)
        )
    second = genvault(*once, env=env)
    gens = {g["external_id"]: g for g in store.generations()}
    store.dispose()
    for g in running:
        after = gens[g["external_id"]]
        assert after["status"] == "failed" and after["next_poll_at"] is None
        assert "gave up after 48 h" in after["error"]
    assert second.returncode == 3, second.stderr[-3000:]
    done = run_done(second.stderr)
    assert done["complete"] is False and any("gave up" in why for why in done["incomplete"])


def test_a_run_that_leaves_files_backing_off_is_incomplete_even_if_it_tried_nothing(
    start_sim: SimStarter, tmp_path: Path
) -> None:
    """Files an earlier run failed on wait out their retry backoff (the default one a user
    gets). A run in that window archives nothing and fails nothing, yet it is not
    complete: exit 3, ``run.done`` says how many files and why, and so does the
    textfile. Once they are archived, the run is complete again: exit 0."""
    gg = start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=12,
        count=6,
        image_size=20_000,
        video_size=60_000,
        audio_size=20_000,
        processing_count=0,
        failed_count=0,
    )
    expected = _expected(gg)
    n = len(expected)
    config = defaults_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'archive'}",
        account=_account(gg),
    )
    env = {"GG_KEY": API_KEY}
    prom = tmp_path / "genvault.prom"
    once = ("--config", str(config), "--log-format", "json", "run", "--once")

    gg.faults.update(media_status_next=10_000)  # every media request answers 503
    first = genvault(*once, env=env)
    assert first.returncode == 3, first.stderr[-3000:]
    assert run_done(first.stderr)["retrying"] == len(expected)

    gg.faults.update(media_status_next=0)  # the CDN is back; the files still back off
    media_before = gg.stats.snapshot()["routes"].get("media", 0)
    assert media_before >= len(expected)
    second = genvault(*once, "--metrics-file", str(prom), env=env)
    assert gg.stats.snapshot()["routes"].get("media", 0) == media_before  # nothing tried
    assert second.returncode == 3, second.stderr[-3000:]
    done = run_done(second.stderr)
    assert done["archived"] == done["failed"] == done["retrying"] == 0
    assert done["complete"] is False and done["waiting"] == len(expected)
    assert done["incomplete"] == [
        f"{len(expected)} file(s) not archived yet (main {len(expected)})"
    ]
    assert done["level"] == "warning"
    text = prom.read_text()
    assert "genvault_run_complete 0.0" in text
    assert f'genvault_run_waiting_files{{account="main"}} {float(len(expected))}' in text
    status = json.loads(genvault("--config", str(config), "status", "--json", env=env).stdout)
    (main,) = status["accounts"]
    assert main["complete"] is False and main["waiting"] == n
    archive_line = [line for line in second.stderr.splitlines() if '"job.archive"' in line]
    assert json.loads(archive_line[0])["backing_off"] == len(expected)
    assert json.loads(archive_line[0])["outcome"] == "failed"

    assert genvault("--config", str(config), "retry", "main", env=env).returncode == 0
    third = genvault(*once, "--metrics-file", str(prom), env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    done = run_done(third.stderr)
    assert done["complete"] is True and done["incomplete"] is None
    assert done["archived"] == len(expected) and done["waiting"] == 0
    assert "genvault_run_complete 1.0" in prom.read_text()
    status = json.loads(genvault("--config", str(config), "status", "--json", env=env).stdout)
    assert status["accounts"][0]["complete"] is True


def _slow_walk_sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    """40 GeminiGen items (videos among them, whose last frame only the detail read
    names), 150 ms before every response: at 5 items a page the walk takes seconds."""
    sim = start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=5,
        count=40,
        image_size=5_000,
        video_size=20_000,
        audio_size=5_000,
        processing_count=0,
        failed_count=0,
        max_items_per_page=100,
    )
    sim.faults.update(latency_s=0.15)
    return sim


def _events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_archiving_starts_while_the_history_sync_still_pages(
    start_sim: SimStarter, tmp_path: Path, db_url: str
) -> None:
    """Issue 14: a slow listing (a first sync of a long history takes minutes at a real
    provider) must not hold back the files its first pages saved. The first file is
    archived before the last page is saved (the order of the run's own log lines, not a
    clock), and the run still archives every file exactly once, under the role its
    detail read gives it (a video's last frame, which the listing calls its result, is
    held until that read: the lease's read hold), with exit 0."""
    sim = _slow_walk_sim(start_sim)
    account = sim_account(sim, "GG_KEY", items_per_page=5, fetch_detail="auto")
    archive = tmp_path / "archive"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=db_url,
        storage_url=f"file://{archive}",
        accounts=[account],
    )

    proc = genvault(
        "--log-level", "debug", "--config", str(config), "run", "--once", env={"GG_KEY": API_KEY}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [e["event"] for e in _events(proc.stderr)]
    pages = [i for i, e in enumerate(events) if e == "sync.page"]
    archived = [i for i, e in enumerate(events) if e == "asset.archived"]
    assert len(pages) >= 5 and archived, events
    assert archived[0] < pages[-1], "nothing was archived before the walk ended"
    assert "database is locked" not in proc.stderr

    store = Store(db_url)
    try:
        assert store.outstanding_work() == (0, 0)  # one run, and nothing left behind
        rows = [r for r in store.assets() if r["role"] != "reference"]
    finally:
        store.dispose()
    assert run_done(proc.stderr)["archived"] == len(archived) == len(rows)
    assert all(r["state"] == "archived" for r in rows)
    # Each under the role the provider gives it: a video's last frame is not stored as
    # the listing's "result". (``auto`` reads no detail of an image generation, so the
    # thumbnails only its detail names are not known: the option's accepted risk.)
    truth = _expected(sim)
    assert {(r["source_url"], r["role"], r["sha256"]) for r in rows} <= {
        (f.url, f.role, f.sha256) for f in truth.values()
    }
    detail_read = {f.url for f in truth.values() if f.kind == "video" or f.role == "last_frame"}
    assert detail_read and detail_read <= {r["source_url"] for r in rows}
    stored = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in archive.rglob("*")
        if p.is_file() and p.name != "generation.json"
    )
    assert stored == sorted(r["sha256"] for r in rows)  # each file stored once


def test_a_walk_cut_short_while_archiving_still_exits_3_and_says_why(
    start_sim: SimStarter, tmp_path: Path
) -> None:
    """The archive pass takes the first pages' files while the walk goes on; when the
    walk then hits a quota the run is still incomplete (exit 3, the sync named), the
    files it saved before were archived in that run, and the next runs finish the job
    with every file archived once."""
    sim = _slow_walk_sim(start_sim)
    account = sim_account(sim, "GG_KEY", items_per_page=5, fetch_detail="auto")
    config = local_config(tmp_path, [account])
    env = {"GG_KEY": API_KEY}
    # 4 pages, then 429s asking for an hour: longer than the default backoff cap (60 s)
    sim.faults.update(pass_next=4, rate_limit=True, retry_after="3600")
    proc = genvault("--config", str(config), "run", "--once", env=env)
    assert proc.returncode == 3, proc.stderr[-3000:]
    done = run_done(proc.stderr)
    assert done["complete"] is False and "main: sync rate limited" in done["incomplete"]
    assert done["archived"] > 0, "the files of the pages saved were not archived"
    events = [e["event"] for e in _events(proc.stderr)]
    assert events.index("asset.archived") < events.index("sync.rate_limited")
    first = done["archived"]

    sim.faults.update(rate_limit=False, retry_after=None)
    db = f"sqlite:///{tmp_path / 'gv.db'}"
    quota_pause_ends(db)
    time_passes(db)
    runs = run_until_quiet(config, env)
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    later = sum(run_done(r.stderr)["archived"] for r in runs)
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        rows = [r for r in store.assets() if r["role"] != "reference"]
    finally:
        store.dispose()
    assert first + later == len(rows)  # each file archived by exactly one run
    assert all(r["state"] == "archived" for r in rows)
    truth = {(f.url, f.role) for f in _expected(sim).values()}
    assert {(r["source_url"], r["role"]) for r in rows} <= truth
    assert len(rows) >= 80  # every page was walked in the end
