"""SIGTERM mid-download, as systemd and Kubernetes send it: finish within the grace, or release.

The CDN is slowed (the simulator's ``bandwidth_bps``) so downloads are in
flight when the signal arrives. With a grace longer than the downloads, they
finish and are recorded; with a short grace, they are abandoned: leases are
released at once (no waiting for expiry), no temp file is left behind, the
daemon exits 0, and the next run archives everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import GENVAULT, run_until_quiet, sim_account, write_config

KEY = "gg-shutdown-key-0b7e42"


def _start(
    tmp_path: Path, sim: geminigen.GeminiGenSimulator, grace: float
) -> subprocess.Popen[str]:
    cfg = write_config(
        tmp_path / "c.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'a'}",
        accounts=[sim_account(sim, "GG")],
        extra="[schedule]\nsync_seconds = 60\npoll_seconds = 60\narchive_seconds = 1\n"
        f"jitter_seconds = 0\nshutdown_grace_seconds = {grace}\n",
    )
    return subprocess.Popen(
        [*GENVAULT, "--config", str(cfg), "run"],
        env={**os.environ, "GG": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_downloads(sim: geminigen.GeminiGenSimulator, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while sim.stats.snapshot()["media_bytes"] < 100_000:
        assert proc.poll() is None, "the daemon died before downloading"
        assert time.monotonic() < deadline, "no download started"
        time.sleep(0.1)


@pytest.fixture
def slow_sim() -> geminigen.GeminiGenSimulator:
    sim = geminigen.create(
        api_key=KEY,
        seed=31,
        count=4,
        image_size=600_000,
        video_size=600_000,
        audio_size=600_000,
        processing_count=0,
        failed_count=0,
    )
    sim.faults.bandwidth_bps = 200_000  # each file takes ~3 s
    return sim


def test_short_grace_abandons_in_flight_downloads_and_releases_them(
    slow_sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    with slow_sim as sim:
        proc = _start(tmp_path, sim, grace=0.5)
        _wait_for_downloads(sim, proc)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
        assert proc.returncode == 0, err[-3000:]
        assert took < 5, f"shutdown took {took:.1f}s with a 0.5s grace"
        assert "daemon.stopped" in err
        store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
        try:
            rows = [a for a in store.assets() if a["state"] != "skipped"]
            assert all(a["lease_owner"] is None for a in rows), "leases were not released"
            assert any(a["state"] == "pending" for a in rows), "nothing was in flight"
        finally:
            store.dispose()
        tmp = tmp_path / "a" / ".genvault-tmp"
        assert not tmp.exists() or not any(tmp.iterdir()), "a half-written file was left"
        sim.faults.bandwidth_bps = None
        runs = run_until_quiet(tmp_path / "c.toml", {"GG": KEY})
        assert runs[-1].returncode == 0


def test_long_grace_lets_in_flight_downloads_finish(
    slow_sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    with slow_sim as sim:
        proc = _start(tmp_path, sim, grace=60)
        _wait_for_downloads(sim, proc)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
        try:
            rows = [a for a in store.assets() if a["state"] != "skipped"]
        finally:
            store.dispose()
        assert all(a["lease_owner"] is None for a in rows)
        archived = [a for a in rows if a["state"] == "archived"]
        assert archived, "in-flight downloads should have finished within the grace"
        assert "shutdown: download abandoned" not in err
