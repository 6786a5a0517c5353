"""Notifications before a loss, end to end: ``genvault run --once`` against a simulator,
Apprise's ``json://`` posting to a loopback receiver.

What must hold: files at risk are named before their deadline and files lost are
named when lost, each file once; a message that was not delivered is news again next
time; ``genvault notify --test`` reaches the URLs; a bad ``[notify]`` config is one
line naming the key; the URLs (which carry secrets) never reach a log line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genvault.simulator import geminigen
from tests.acceptance.helpers import genvault, local_config
from tests.fixtures.receiver import Receiver
from tests.fixtures.sims import SimStarter, sim_account

API_KEY = "gg-notify-key-5e1d"
ENV = {"GG_KEY": API_KEY}


def _sim(start_sim: SimStarter, **knobs: object) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=41,
        count=6,
        image_size=10_000,
        video_size=40_000,
        audio_size=8_000,
        processing_count=0,
        failed_count=0,
        **knobs,
    )


def _config(tmp_path: Path, sim: geminigen.GeminiGenSimulator, notify: str, **kw: str) -> Path:
    return local_config(tmp_path, [sim_account(sim, "GG_KEY")], extra=notify, **kw)


def _notify_table(receiver: Receiver, at_risk_hours: float = 24) -> str:
    return f'[notify]\nurls = ["{receiver.url}"]\n[metrics]\nat_risk_hours = {at_risk_hours}\n'


def test_lost_files_are_named_once(
    tmp_path: Path, start_sim: SimStarter, receiver: Receiver
) -> None:
    sim = _sim(start_sim, expired_count=2)
    config = _config(tmp_path, sim, _notify_table(receiver))
    first = genvault("--config", str(config), "run", "--once", env=ENV)
    assert first.returncode == 4, first.stderr[-3000:]
    assert len(receiver.messages) == 1, receiver.messages
    message = receiver.messages[0]
    assert message["type"] == "failure"
    assert "lost" in message["title"]
    for external_id in _lost_ids(tmp_path):
        assert external_id in message["message"]
    assert receiver.url.split("//", 1)[1] not in first.stderr, "a notify URL reached the log"

    again = genvault("--config", str(config), "run", "--once", env=ENV)
    assert again.returncode in (0, 4), again.stderr[-3000:]
    assert len(receiver.messages) == 1, "the same lost files were named twice"


def _lost_ids(tmp_path: Path) -> set[str]:
    from genvault.store import Store

    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        ids = {str(r["external_id"]) for r in store.assets() if r["state"] == "lost"}
    finally:
        store.dispose()
    assert ids, "the simulator's expired items should have been lost"
    return ids


def test_files_at_risk_are_named_and_an_undelivered_digest_is_sent_again(
    tmp_path: Path, start_sim: SimStarter, receiver: Receiver
) -> None:
    """Every body is cut off and resume is off: files stay pending, and with a long
    at-risk window every one of them is at risk. The receiver is down for the first
    run's message, so the second run must say the same again; the third says nothing."""
    sim = _sim(start_sim)
    sim.faults.media_truncate = True
    config = _config(
        tmp_path,
        sim,
        _notify_table(receiver, at_risk_hours=24 * 365),
        network="media_resume_attempts = 0",
    )
    receiver.fail_next = 1
    first = genvault("--config", str(config), "run", "--once", env=ENV)
    assert first.returncode == 3, first.stderr[-3000:]
    assert receiver.messages == []
    assert '"notify.failed"' in first.stderr

    # 3 when the retry backoff let the files be tried again in this run, else 0
    second = genvault("--config", str(config), "run", "--once", env=ENV)
    assert second.returncode in (0, 3), second.stderr[-3000:]
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["type"] == "warning" and "at risk" in message["title"]
    pending = _pending(tmp_path)
    assert (
        pending
        and f"At risk (deadline close, not archived yet): {len(pending)}" in (message["message"])
    )
    for external_id in {ext for ext, _role in pending}:
        assert external_id in message["message"]

    third = genvault("--config", str(config), "run", "--once", env=ENV)
    assert third.returncode in (0, 3), third.stderr[-3000:]
    assert len(receiver.messages) == 1, "files at risk were named twice"


def _pending(tmp_path: Path) -> list[tuple[str, str]]:
    from genvault.store import Store

    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        return [
            (str(r["external_id"]), str(r["role"]))
            for r in store.assets()
            if r["state"] == "pending"
        ]
    finally:
        store.dispose()


def test_notify_test_reaches_the_url_and_says_when_it_did_not(
    tmp_path: Path, start_sim: SimStarter, receiver: Receiver
) -> None:
    sim = _sim(start_sim)
    config = _config(tmp_path, sim, _notify_table(receiver))
    sent = genvault("--config", str(config), "notify", "--test", env=ENV)
    assert sent.returncode == 0, sent.stderr
    assert [m["title"] for m in receiver.messages] == ["genvault: test notification"]

    receiver.fail_next = 1
    failed = genvault("--config", str(config), "notify", "--test", env=ENV)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "NOT delivered" in failed.stdout

    quiet = genvault("--config", str(config), "notify", env=ENV)
    assert quiet.returncode == 0, quiet.stderr
    assert "nothing new" in quiet.stdout


@pytest.mark.parametrize(
    ("notify", "env", "key"),
    [
        ("", {}, "notify.urls"),
        ('[notify]\nurls = ["nosuchservice://x/y"]', {}, "notify.urls[0]"),
        ('[notify]\nurls_env = "GV_NOTIFY_URLS"', {}, "notify.urls_env"),
    ],
)
def test_bad_notify_config_is_one_line_naming_the_key(
    tmp_path: Path, start_sim: SimStarter, notify: str, env: dict[str, str], key: str
) -> None:
    sim = _sim(start_sim)
    config = _config(tmp_path, sim, notify)
    proc = genvault("--config", str(config), "notify", "--test", env={**ENV, **env})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr


def test_urls_from_a_file_are_read_like_keys_and_never_logged(
    tmp_path: Path, start_sim: SimStarter, receiver: Receiver
) -> None:
    sim = _sim(start_sim, expired_count=1)
    secret = tmp_path / "notify-urls"
    secret.write_text(receiver.url + "\n")
    secret.chmod(0o600)
    config = _config(tmp_path, sim, f'[notify]\nurls_file = "{secret}"')
    proc = genvault("--config", str(config), "run", "--once", env=ENV)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert len(receiver.messages) == 1
    assert receiver.url.split("//", 1)[1] not in proc.stderr + proc.stdout


def test_verify_damage_is_said_once(
    tmp_path: Path, start_sim: SimStarter, receiver: Receiver
) -> None:
    sim = _sim(start_sim)
    config = _config(tmp_path, sim, _notify_table(receiver))
    run = genvault("--config", str(config), "run", "--once", env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    assert receiver.messages == [], "a clean run has nothing to say"
    root = tmp_path / "archive"
    victim = next(p for p in sorted(root.rglob("*-result.jpg")))
    victim.write_bytes(b"\xff\xd8\xff not the archived bytes")
    found = genvault("--config", str(config), "verify", env=ENV)
    assert found.returncode == 6, found.stdout + found.stderr
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert message["type"] == "failure" and "damaged" in message["title"]
    assert str(victim.relative_to(root)) in message["message"]
    again = genvault("--config", str(config), "verify", env=ENV)
    assert again.returncode == 6
    assert len(receiver.messages) == 1, "the same damage was said twice"
