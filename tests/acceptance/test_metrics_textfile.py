"""``genvault run --once --metrics-file F`` as a CronJob runs it, for node_exporter.

The CLI runs as a separate process against the GeminiGen simulator; the file it
leaves must parse as Prometheus text and agree with the database it describes and
with what the run itself reported. A second run whose file cannot be written still
exits with the archive's code and says why on stderr.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from genvault.records import AssetState
from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import genvault, local_config, sim_account

KEY = "gg-textfile-key-93ac01"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_run_once_writes_a_textfile_that_matches_the_run(tmp_path: Path) -> None:
    sim = geminigen.create(
        api_key=KEY,
        seed=31,
        count=5,
        image_size=4_000,
        video_size=9_000,
        audio_size=3_000,
        thumbnail_size=700,
        processing_count=0,
        failed_count=1,
    )
    with sim:
        db = tmp_path / "gv.db"
        config = local_config(tmp_path, [sim_account(sim, "GG")])
        env = {"GG": KEY}
        out = tmp_path / "textfile" / "genvault.prom"
        out.parent.mkdir()
        proc = genvault(
            "--config", str(config), "run", "--once", "--metrics-file", str(out), env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert sorted(p.name for p in out.parent.iterdir()) == ["genvault.prom"]
        found = _samples(out.read_text())

        done = [json.loads(line) for line in proc.stderr.splitlines() if '"run.done"' in line]
        assert len(done) == 1
        store = Store(f"sqlite:///{db}")
        try:
            rows = store.assets()
        finally:
            store.dispose()
        archived = [r for r in rows if r["state"] == "archived"]
        assert len(archived) == done[0]["archived"] > 0
        assert found[_key("genvault_archived_files_total", account="main")] == len(archived)
        assert found[_key("genvault_archived_bytes_total", account="main")] == done[0]["bytes"]
        assert found[_key("genvault_stored_bytes", account="main")] == sum(
            r["size"] for r in archived
        )
        states = Counter(r["state"] for r in rows)
        for state in AssetState:
            got = found[_key("genvault_assets", account="main", state=state.value)]
            assert got == states.get(state.value, 0), state
        assert found[_key("genvault_database_up")] == 1
        for job, account in (("sync", "main"), ("poll", "main"), ("archive", "all")):
            runs = _key("genvault_job_runs_total", job=job, account=account, outcome="success")
            assert found[runs] == 1, job
            assert (
                _key("genvault_job_last_success_timestamp_seconds", job=job, account=account)
                in found
            )
        stats = sim.stats.snapshot()
        api_calls = stats["requests"] - stats["routes"].get("media", 0)
        assert found[_key("genvault_provider_requests_total", account="main", status="200")] == (
            api_calls
        )
        assert found[_key("genvault_provider_circuit_state", account="main")] == 0
        assert found[_key("genvault_assets_at_risk", account="main")] == 0
        assert done[0]["complete"] is True and done[0]["exit_code"] == 0
        assert found[_key("genvault_run_complete")] == 1
        assert found[_key("genvault_run_waiting_files", account="main")] == 0

        # A path that cannot be written: the run still exits with the archive's code
        # (0: nothing new), and says why in one error line.
        bad = tmp_path / "missing-dir" / "genvault.prom"
        again = genvault(
            "--config", str(config), "run", "--once", "--metrics-file", str(bad), env=env
        )
        assert again.returncode == 0, again.stderr[-3000:]
        errors = [
            json.loads(line)
            for line in again.stderr.splitlines()
            if '"metrics.write_failed"' in line
        ]
        assert len(errors) == 1 and errors[0]["level"] == "error"
        assert not bad.parent.exists()
