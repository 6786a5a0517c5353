"""Quiet, useful logs: what ``genvault run`` writes at info while busy and while idle.

The daemon runs as a subprocess against the GeminiGen simulator with short job
intervals. While busy it must write exactly one ``asset.archived`` line per file
(with provider, account, external id, bytes, seconds). Once everything is archived
the simulator is made slow, so each sync pass outlasts its interval and APScheduler
hits ``max_instances=1``; in that idle stretch nothing may reach info or above but
one ``job.<name>`` line per job run, and APScheduler's "maximum number of running
instances reached" must show up only as a debug line (the daemon runs with
``--log-level debug`` so the test can see that it happened at all).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import GENVAULT, local_config, sim_account

KEY = "gg-quiet-key-6b02f4"
JOB_LINES = {"job.sync", "job.poll", "job.archive"}
ARCHIVE_ROLES = {"result", "thumbnail", "last_frame", "upscale"}
IDLE_SECONDS = 3.0


def _stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def _wait_until_archived(db: Path, expected: int, proc: subprocess.Popen[str]) -> None:
    """Until every file is archived and every sidecar written: a generation's sidecar
    follows its last file's commit (at the pass's next wake-up, or after its loop),
    and belongs to the busy phase, not the idle one."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the daemon exited early"
        store = Store(f"sqlite:///{db}")
        try:
            polling, pending = store.outstanding_work()
            archived = sum(1 for a in store.assets() if a["state"] == "archived")
            sidecars = len(store.sidecars_due(1))
        except Exception:  # the schema is not there yet
            polling, pending, archived, sidecars = 1, 1, 0, 1
        finally:
            store.dispose()
        if (polling, pending, archived, sidecars) == (0, 0, expected, 0):
            return
        time.sleep(0.2)
    raise AssertionError("the daemon did not archive everything in time")


def test_daemon_logs_one_line_per_file_and_only_job_lines_when_idle(tmp_path: Path) -> None:
    sim = geminigen.create(
        api_key=KEY,
        seed=41,
        count=5,
        image_size=3_000,
        video_size=6_000,
        audio_size=2_000,
        thumbnail_size=500,
        processing_count=1,
        processing_seconds=0.5,
        failed_count=1,
    )
    with sim:
        db = tmp_path / "gv.db"
        config = local_config(
            tmp_path,
            [sim_account(sim, "GG")],
            extra="\n".join(
                [
                    "[schedule]",
                    "sync_seconds = 0.4",
                    "poll_seconds = 0.3",
                    "archive_seconds = 0.3",
                    "jitter_seconds = 0",
                    "shutdown_grace_seconds = 2",
                ]
            ),
        )
        expected = [f for f in sim.expected_media() if f.role in ARCHIVE_ROLES]
        proc = subprocess.Popen(
            [*GENVAULT, "--log-level", "debug", "--config", str(config), "run"],
            env={**os.environ, "GG": KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Drain stderr as it comes: a debug log fills a pipe buffer in seconds.
        chunks: list[str] = []
        assert proc.stderr is not None
        stderr = proc.stderr
        reader = threading.Thread(target=lambda: chunks.extend(iter(stderr.readline, "")))
        reader.start()
        try:
            _wait_until_archived(db, len(expected), proc)
            sim.faults.update(latency_s=0.6)  # every sync pass now outlasts its interval
            idle_from = datetime.now(UTC)
            time.sleep(IDLE_SECONDS)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
    assert proc.returncode == 0, "".join(chunks)[-3000:]

    events = [json.loads(line) for line in chunks if line.strip()]  # every line is JSON
    stopping = next(_stamp(e) for e in events if e["event"] == "daemon.stopping")

    # busy: exactly one asset.archived per stored file, with what an operator needs
    archived = [e for e in events if e["event"] == "asset.archived"]
    store = Store(f"sqlite:///{db}")
    try:
        rows = [a for a in store.assets() if a["state"] == "archived"]
    finally:
        store.dispose()
    assert sorted((e["external_id"], e["bytes"]) for e in archived) == sorted(
        (r["external_id"], r["size"]) for r in rows
    )
    assert len(archived) == len(expected)
    for e in archived:
        assert e["level"] == "info"
        assert e["provider"] == "geminigen" and e["account"] == "main"
        assert isinstance(e["seconds"], float | int) and e["seconds"] >= 0
    assert not [e for e in events if e["event"] == "asset.lost"]

    # idle: only job lines at info or above, one per run, each with counts and seconds
    idle = [e for e in events if idle_from < _stamp(e) < stopping]
    loud = [e for e in idle if e["level"] != "debug"]
    assert {e["event"] for e in loud} <= JOB_LINES, [e for e in loud if e["event"] not in JOB_LINES]
    assert all(e["level"] == "info" for e in loud), loud
    for name in JOB_LINES:
        lines = [e for e in loud if e["event"] == name]
        assert lines, f"no {name} line while idle: is the daemon running its jobs?"
        for e in lines:
            assert isinstance(e["seconds"], float | int) and e["outcome"] == "success", e
            if name != "job.archive":
                assert e["account"] == "main" and e["provider"] == "geminigen", e
    assert len([e for e in loud if e["event"] == "job.poll"]) >= IDLE_SECONDS / 0.3 / 2

    # APScheduler: the max-instances warning happened, and was only ever debug
    skipped = [e for e in events if "maximum number of running instances" in e["event"]]
    assert skipped, "the slow sync never overlapped its next run: the test proves nothing"
    assert {e["level"] for e in skipped} == {"debug"}
    assert not [
        e
        for e in events
        if str(e.get("logger", "")).startswith("apscheduler") and e["level"] != "debug"
    ]


def test_apscheduler_max_instances_is_dropped_at_info_and_real_warnings_stay(
    info_json_log: io.StringIO,
) -> None:
    """A real APScheduler whose job outlasts its interval, as genvault configures it."""
    ran = threading.Event()

    def slow() -> None:
        ran.set()
        time.sleep(0.6)

    sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1}, timezone=UTC)
    refused: list[JobSubmissionEvent] = []
    sched.add_listener(refused.append, EVENT_JOB_MAX_INSTANCES)
    sched.add_job(slow, "interval", seconds=0.1, next_run_time=datetime.now(UTC))
    sched.start()
    try:
        assert ran.wait(5)
        time.sleep(0.5)
    finally:
        sched.shutdown(wait=True)
    assert refused, "the job never overlapped its next run: the test proves nothing"
    # an unrelated APScheduler warning is still a warning
    logging.getLogger("apscheduler.scheduler").warning("Error getting due jobs from job store")
    events = [json.loads(line) for line in info_json_log.getvalue().splitlines()]
    assert [(e["event"], e["level"]) for e in events] == [
        ("Error getting due jobs from job store", "warning")
    ]
