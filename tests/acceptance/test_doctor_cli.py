"""``genvault doctor`` as a separate process: exit codes, ``--json``, the table, no key shown.

The simulators run in this process; the CLI reaches them over loopback like any
provider. The checks themselves are covered in tests/integration/test_doctor.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genvault.exitcodes import ExitCode
from genvault.simulator import SIMULATORS, simulator_factory
from genvault.simulator.base import Simulator
from tests.acceptance.helpers import genvault, local_config, sim_account

AKOOL_KEY = "cli-doctor-akool-key-012"  # 24 bytes, like Akool's


@pytest.fixture
def sims() -> Iterator[dict[str, Simulator]]:
    started: dict[str, Simulator] = {}
    for name in sorted(SIMULATORS):
        key = AKOOL_KEY if name == "akool" else f"cli-doctor-{name}-key"
        knobs: dict[str, Any] = {"accept_paging": "camel"} if name == "crowdcomputed" else {}
        sim = simulator_factory(name)(api_key=key, seed=2, **knobs)
        sim.start()
        started[name] = sim
    yield started
    for sim in started.values():
        sim.stop()


def _env(sims: dict[str, Simulator]) -> dict[str, str]:
    return {f"DOCTOR_{name.upper()}_KEY": sim.api_key for name, sim in sims.items()}


def _config(tmp_path: Path, sims: dict[str, Simulator], **crowd: Any) -> Path:
    accounts = []
    for name, sim in sims.items():
        acc = sim_account(sim, f"DOCTOR_{name.upper()}_KEY", name=name)
        if name == "crowdcomputed":
            acc.update({"workflows": ["text-to-image"], "paging_params": "camel", **crowd})
        accounts.append(acc)
    return local_config(tmp_path, accounts)


def test_every_simulator_configured_right_exits_0(
    tmp_path: Path, sims: dict[str, Simulator]
) -> None:
    cfg = _config(tmp_path, sims)
    proc = genvault("--config", str(cfg), "doctor", "--json", env=_env(sims), timeout=180)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    assert sorted(a["account"] for a in doc["accounts"]) == sorted(SIMULATORS)
    for account in doc["accounts"]:
        assert account["ok"], account
        assert {f["level"] for f in account["findings"]} <= {"ok", "skip"}, account
    for sim in sims.values():
        assert sim.api_key not in proc.stdout + proc.stderr
    # nothing written: doctor needs no database and creates none
    assert not (tmp_path / "gv.db").exists()

    table = genvault("--config", str(cfg), "doctor", env=_env(sims), timeout=180)
    assert table.returncode == ExitCode.OK, table.stdout + table.stderr
    assert "all 5 account(s) pass" in table.stdout
    assert "`token: <key>`" in table.stdout


def test_a_wrong_paging_spelling_exits_7_with_the_line_to_set(
    tmp_path: Path, sims: dict[str, Simulator]
) -> None:
    cfg = _config(tmp_path, sims, paging_params="snake")
    env = _env(sims)
    proc = genvault("--config", str(cfg), "doctor", "crowdcomputed", "--json", env=env)
    assert proc.returncode == ExitCode.DOCTOR_FAILED == 7, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    [account] = doc["accounts"]
    paging = next(f for f in account["findings"] if f["check"] == "paging")
    assert paging["level"] == "fail"
    assert paging["suggest"] == 'accounts[crowdcomputed].paging_params = "camel"'

    table = genvault("--config", str(cfg), "doctor", "crowdcomputed", "tengrai", env=env)
    assert table.returncode == 7
    assert 'accounts[crowdcomputed].paging_params = "camel"' in table.stdout
    assert "1 of 2 account(s) need changes: crowdcomputed" in table.stdout


def test_a_bad_key_exits_7_and_names_the_variable(
    tmp_path: Path, sims: dict[str, Simulator]
) -> None:
    cfg = _config(tmp_path, sims)
    env = {**_env(sims), "DOCTOR_AKOOL_KEY": "not-the-akool-key-000000"}
    proc = genvault("--config", str(cfg), "doctor", "akool", "--json", env=env)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    auth = next(
        f for f in json.loads(proc.stdout)["accounts"][0]["findings"] if f["check"] == "auth"
    )
    assert auth["key"] == "accounts[akool].api_key_env"
    assert "DOCTOR_AKOOL_KEY" in auth["message"]
    assert "not-the-akool-key-000000" not in proc.stdout + proc.stderr


def test_warnings_pass_unless_strict(tmp_path: Path, sims: dict[str, Simulator]) -> None:
    sims["geminigen"].stop()
    capped = simulator_factory("geminigen")(api_key="cli-doctor-gem", max_items_per_page=4)
    capped.start()
    try:
        cfg = local_config(tmp_path, [sim_account(capped, "GEM_KEY", name="gem")])
        env = {"GEM_KEY": capped.api_key}
        loose = genvault("--config", str(cfg), "doctor", env=env)
        assert loose.returncode == 0, loose.stdout + loose.stderr
        assert "accounts[gem].items_per_page = 4" in loose.stdout
        strict = genvault("--config", str(cfg), "doctor", "--strict", env=env)
        assert strict.returncode == 7
    finally:
        capped.stop()


def test_an_unknown_account_is_a_config_error(tmp_path: Path, sims: dict[str, Simulator]) -> None:
    cfg = _config(tmp_path, sims)
    proc = genvault("--config", str(cfg), "doctor", "nosuch", env=_env(sims))
    assert proc.returncode == ExitCode.CONFIG
    assert "nosuch" in proc.stderr


def test_help_lists_doctor() -> None:
    proc = genvault("--help")
    assert proc.returncode == 0
    assert "doctor" in proc.stdout
    sub = genvault("doctor", "--help")
    assert sub.returncode == 0
    assert "--json" in sub.stdout and "7" in sub.stdout
