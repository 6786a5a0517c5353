"""deploy/systemd/: ``systemd-analyze verify`` and ``security --offline`` on the real unit files.

The units' ``ExecStart`` names ``/opt/genvault/bin/genvault`` (where deploy/README.md
installs it), which does not exist on a test machine, and ``verify`` rightly calls
that an error. So the units are copied to a temp dir with that path swapped for this
venv's ``genvault`` script, an executable that does exist; nothing else changes.

``verify`` exits 0 on many faults it only warns about (an unknown key, a value that
does not parse: "…, ignoring"), so any line it prints about our units fails the test;
``test_the_checker_catches_a_typo`` proves the check is not vacuous.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("genvault.service", "genvault-once.service", "genvault-once.timer")
INSTALLED_BINARY = "/opt/genvault/bin/genvault"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

if SYSTEMD_ANALYZE is None:
    # Like PostgreSQL and chromium: a missing tool fails the run, it never passes it silently.
    pytest.fail("needs systemd-analyze (tests/run installs Debian's systemd)", pytrace=False)


def _genvault_executable() -> str:
    script = Path(sys.executable).parent / "genvault"
    found = str(script) if script.exists() else shutil.which("genvault")
    assert found, "the genvault console script is not installed (pip install -e .)"
    return found


def _staged(tmp_path: Path, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    """Copies of every unit with ExecStart pointing at a real executable (and test edits)."""
    out = tmp_path / "units"
    out.mkdir()
    real = _genvault_executable()
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        if name.endswith(".service"):
            assert f"ExecStart={INSTALLED_BINARY} " in text, name
            text = text.replace(INSTALLED_BINARY, real)
        if edit and name in edit:
            old, new = edit[name]
            assert old in text
            text = text.replace(old, new)
        (out / name).write_text(text)
    return out


def _complaints(units: Path, *args: str) -> tuple[int, list[str]]:
    """Exit code of ``systemd-analyze <args> <units>`` and its output lines about our units."""
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, *args, *(str(units / n) for n in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    ours = [ln for ln in lines if str(units) in ln or any(n in ln for n in UNITS)]
    return proc.returncode, ours


def test_units_verify_without_a_single_complaint(tmp_path: Path) -> None:
    rc, complaints = _complaints(_staged(tmp_path), "verify", "--man=no")
    assert rc == 0 and not complaints, "\n".join(complaints)


def test_the_checker_catches_a_typo(tmp_path: Path) -> None:
    units = _staged(
        tmp_path,
        edit={"genvault.service": ("NoNewPrivileges=yes", "NoNewPrivilegs=yes")},
    )
    _rc, complaints = _complaints(units, "verify", "--man=no")
    assert any("NoNewPrivilegs" in c for c in complaints), complaints


@pytest.mark.parametrize("unit", ["genvault.service", "genvault-once.service"])
def test_sandboxing_scores_ok(tmp_path: Path, unit: str) -> None:
    """``systemd-analyze security`` rates exposure 0 (locked down) to 10; keep it at most 2
    (``--threshold`` counts in tenths: 20). The units score 1.1 today."""
    assert SYSTEMD_ANALYZE is not None
    units = _staged(tmp_path)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(units / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def _settings(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key may repeat, unlike in configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


HARDENING = {
    "DynamicUser": "yes",
    "StateDirectory": "genvault",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
}


def test_daemon_unit_policies() -> None:
    svc = _settings("genvault.service")["Service"]
    assert _one(svc, "Type") == "notify"  # genvault.sdnotify sends READY=1
    assert _one(svc, "WatchdogSec").endswith("s")
    assert _one(svc, "Restart") == "on-failure"
    assert _one(svc, "RestartPreventExitStatus") == "2"  # bad config: a restart cannot fix it
    assert _one(svc, "ExecStart").endswith(" run")
    assert _one(svc, "EnvironmentFile").startswith("/etc/genvault/")
    for key, value in HARDENING.items():
        assert _one(svc, key) == value, key
    assert "[Install]" in (DEPLOY / "genvault.service").read_text()


def test_run_once_unit_and_timer() -> None:
    svc = _settings("genvault-once.service")["Service"]
    assert _one(svc, "Type") == "oneshot"
    assert _one(svc, "ExecStart").endswith(" run --once")
    assert _one(svc, "SuccessExitStatus") == "3"  # retried next pass; 4 (lost) stays a failure
    for key, value in HARDENING.items():
        assert _one(svc, key) == value, key
    timer = _settings("genvault-once.timer")
    assert _one(timer["Timer"], "Unit") == "genvault-once.service"
    assert _one(timer["Timer"], "Persistent") == "true"
    assert _one(timer["Install"], "WantedBy") == "timers.target"


def test_both_services_share_one_user_and_state_directory() -> None:
    """Same User= with DynamicUser: one UID, so the timer's pass can use the daemon's files."""
    daemon = _settings("genvault.service")["Service"]
    once = _settings("genvault-once.service")["Service"]
    for key in ("User", "Group", "StateDirectory", "WorkingDirectory"):
        assert _one(daemon, key) == _one(once, key), key
