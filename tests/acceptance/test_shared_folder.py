"""Replicas that share one local folder: start-up cleanup never takes a live write.

Every ``genvault run`` removes the leftovers of interrupted writes when it starts.
With the default ``storage.stale_upload_seconds`` (None) a folder's cleanup removed
*every* temp file, which is right for the only writer and wrong for replicas on
PostgreSQL writing to one folder (an NFS export): a replica starting while another
was writing pulled the temp file from under it, and that write failed with
"moving … into place: No such file or directory".

Three ``genvault run --once`` processes on a throwaway PostgreSQL and one folder,
the GeminiGen simulator over HTTP with its media paced (``bandwidth_bps``), so the
first replica is visibly mid-write when the other two start. And a symlinked
``.genvault-tmp``: cleanup emptied the folder the link pointed to.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from genvault.simulator import Simulator, simulator_factory
from genvault.store import Store
from tests.acceptance.helpers import GENVAULT, defaults_config, genvault
from tests.fixtures.sims import SimStarter

pytestmark = [pytest.mark.postgres]

API_KEY = "sim-shared-folder-key"
ROLES = {"result", "thumbnail", "last_frame"}


@pytest.fixture
def sim(start_sim: SimStarter) -> Simulator:
    return start_sim(
        simulator_factory("geminigen"),
        api_key=API_KEY,
        count=3,
        image_size=150_000,
        video_size=150_000,
        audio_size=3_000,
        thumbnail_size=1_000,
        processing_count=0,
        failed_count=0,
    )


def _config(path: Path, db_url: str, archive: Path, sim: Simulator) -> Path:
    account = {"name": "main", "provider": sim.name, "api_key_env": "SHARED_SIM_KEY"}
    account |= {"base_url": sim.api_base, **sim.account_options}
    return defaults_config(path, db_url=db_url, storage_url=f"file://{archive}", account=account)


def _env() -> dict[str, str]:
    return {**os.environ, "SHARED_SIM_KEY": API_KEY, "PYTHONUNBUFFERED": "1"}


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*GENVAULT, "--log-format", "json", "--config", str(config), "run", "--once"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )


def _events(log: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]


def _rows(db_url: str) -> list[dict[str, Any]]:
    store = Store(db_url)
    try:
        return [a for a in store.assets() if a["role"] in ROLES]
    finally:
        store.dispose()


def test_replicas_starting_while_another_writes_to_the_shared_folder_leave_its_write_alone(
    tmp_path: Path, postgres_url: str, sim: Simulator
) -> None:
    archive = tmp_path / "shared-archive"
    config = _config(tmp_path / "genvault.toml", postgres_url, archive, sim)
    subprocess.run([*GENVAULT, "--config", str(config), "db", "upgrade"], env=_env(), check=True)
    sim.faults.update(bandwidth_bps=60_000)  # each large file takes seconds to arrive
    logs = [tmp_path / f"replica-{i}.log" for i in range(3)]
    first = _start(config, logs[0])
    try:
        deadline = time.monotonic() + 60
        tmp = archive / ".genvault-tmp"
        while not (tmp.is_dir() and any(p.name.startswith("put-") for p in tmp.iterdir())):
            assert first.poll() is None, logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "the first replica never started a write"
            time.sleep(0.02)
        writing = sorted(p.name for p in tmp.iterdir())
        others = [_start(config, log) for log in logs[1:]]  # their start-up cleanup runs now
        codes = [p.wait(timeout=120) for p in [first, *others]]
    finally:
        for p in [first, *locals().get("others", [])]:
            if p.poll() is None:
                p.kill()
    events = [e for log in logs for e in _events(log)]
    moving = [e for e in events if "into place" in str(e.get("error", ""))]
    retried = [e for e in events if e["event"] == "asset.retry"]
    print(f"mid-write: {writing}; exit codes {codes}; retries {len(retried)}")
    assert not moving, f"a replica's cleanup took a live write: {moving[:2]}"
    assert not retried
    assert codes == [0, 0, 0], "\n".join(log.read_text()[-2000:] for log in logs)
    rows = _rows(postgres_url)
    assert rows and {r["state"] for r in rows} == {"archived"}
    assert {r["attempts"] for r in rows} == {0}
    assert sum(1 for e in events if e["event"] == "asset.archived") == len(rows)


def test_a_symlinked_temp_folder_is_refused_never_emptied(
    tmp_path: Path, postgres_url: str, sim: Simulator
) -> None:
    """``.genvault-tmp`` pointing elsewhere: its target keeps every file, nothing is
    written through the link, and archiving pauses (the storage breaker) instead of
    failing files, saying why in ``status``."""
    archive = tmp_path / "archive"
    archive.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (precious / "photos").mkdir()
    (precious / "photos" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (archive / ".genvault-tmp").symlink_to(precious, target_is_directory=True)
    config = _config(tmp_path / "genvault.toml", postgres_url, archive, sim)

    proc = genvault("--config", str(config), "run", "--once", env=_env())
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert (precious / "photos" / "a.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert sorted(p.name for p in precious.iterdir()) == ["photos", "thesis.tex"]
    assert proc.returncode == 3, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    [cleanup] = [e for e in events if e["event"] == "storage.cleanup_failed"]
    assert "is a symlink" in cleanup["error"]
    rows = _rows(postgres_url)
    assert rows and {r["state"] for r in rows} == {"pending"}
    assert {r["attempts"] for r in rows} == {0}
    status = json.loads(genvault("--config", str(config), "status", "--json", env=_env()).stdout)
    assert status["storage"]["circuit"]["state"] == "open"
    assert "is a symlink" in status["storage"]["circuit"]["last_error"]
