"""Helpers for acceptance tests: run the real ``genvault`` CLI against simulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from tests.fixtures.sims import sim_account  # noqa: F401  (acceptance tests import it from here)

GENVAULT = [sys.executable, "-m", "genvault.cli"]


def write_config(
    path: Path,
    *,
    db_url: str,
    storage_url: str,
    accounts: list[dict[str, Any]],
    endpoint_url: str | None = None,
    extra: str = "",
    network: str = "",
) -> Path:
    """A TOML config for tests: loopback allowed, quick polls, quick retries.

    Three settings are shortened against the defaults a user gets: ``poll.backoff_seconds``
    [0.2, 0.5] (default 5 s up to 300 s), ``archive.retry_base_seconds`` 0.2 (30) and
    ``network.read_timeout`` 20 (60). That is for speed only, never to make an assertion
    hold: every test built on this config must pass unchanged at the defaults. A test
    of what a retry, a backoff or an outage leaves a user with takes
    :func:`defaults_config` (or the default values) and lets time pass through the
    store (:func:`time_passes`, :func:`run_until_quiet`), never by waiting.

    ``network`` is added to the ``[network]`` table (``extra`` may not open it again).
    """
    lines = [
        "[database]",
        f'url = "{db_url}"',
        "[storage]",
        f'url = "{storage_url}"',
    ]
    if endpoint_url:
        lines.append(f'endpoint_url = "{endpoint_url}"')
    lines += [
        "[network]",
        "allow_private = true",
        "read_timeout = 20.0",
        network,
        "[poll]",
        "backoff_seconds = [0.2, 0.5]",
        "[archive]",
        "retry_base_seconds = 0.2",
    ]
    if "[server]" not in extra:
        lines += ["[server]", 'listen = "127.0.0.1:0"']  # tests run side by side: no fixed port
    lines.append(extra)
    for acc in accounts:
        lines.append("[[accounts]]")
        for k, v in acc.items():
            lines.append(f"{k} = {v!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


def defaults_config(
    path: Path,
    *,
    db_url: str,
    storage_url: str,
    account: dict[str, Any],
    endpoint_url: str | None = None,
) -> Path:
    """A config with the defaults a user gets, but for what a test bed needs: loopback
    targets allowed and no HTTP server. (:func:`write_config` shortens polls and retries;
    tests of retry rounds and outages must not.)"""
    lines = ["[database]", f'url = "{db_url}"', "[storage]", f'url = "{storage_url}"']
    if endpoint_url:
        lines.append(f'endpoint_url = "{endpoint_url}"')
    lines += ["[network]", "allow_private = true", "[server]", "enabled = false"]
    lines += ["[[accounts]]", *(f"{k} = {json.dumps(v)}" for k, v in account.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def local_config(
    tmp_path: Path, accounts: list[dict[str, Any]], *, extra: str = "", network: str = ""
) -> Path:
    """``write_config`` on the embedded default: SQLite ``gv.db`` and an ``archive`` folder."""
    return write_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'archive'}",
        accounts=accounts,
        extra=extra,
        network=network,
    )


def genvault(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a separate process, like cron or systemd would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        [*GENVAULT, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


def run_done(stderr: str) -> dict[str, Any]:
    """The one ``run.done`` line of a ``run --once``'s JSON log: its verdict."""
    (done,) = [json.loads(line) for line in stderr.splitlines() if '"run.done"' in line]
    return cast("dict[str, Any]", done)


def time_passes(db_url: str) -> None:
    """Every file's and every status read's backoff ends, as when a CronJob's next run
    comes after them: each pending file is due again (what ``genvault retry`` does) and
    so is each generation's next status read. Time passes through the store, never by
    waiting or by shortening a setting. (A provider's quota pause and an open circuit
    breaker are not touched.)"""
    from genvault.models import utcnow
    from genvault.store import Store
    from genvault.store.base import G

    store = Store(db_url)
    try:
        for account in sorted({a["account"] for a in store.assets()}):
            store.requeue_assets(account)
        now = utcnow()
        with store.engine.begin() as conn:
            conn.execute(G.update().where(G.c.next_poll_at > now).values(next_poll_at=now))
    finally:
        store.dispose()


def quota_pause_ends(db_url: str, account: str = "main") -> None:
    """The stored quota pause of ``account`` is over (as an hour after a long
    Retry-After): time passes through the store, never by waiting. Fails if no pause
    was stored."""
    from datetime import UTC, datetime

    from genvault.store import Store
    from genvault.store.base import H

    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            paused = conn.execute(
                H.update()
                .where(H.c.account == account, H.c.rate_limited_until.is_not(None))
                .values(rate_limited_until=datetime.now(UTC))
            ).rowcount
    finally:
        store.dispose()
    assert paused == 1, "the quota pause was not stored"


def run_until_quiet(
    config: Path, env: dict[str, str], *, max_runs: int = 15
) -> list[subprocess.CompletedProcess[str]]:
    """``run --once`` repeatedly, as a CronJob would, until a run has nothing left to do;
    between runs, :func:`time_passes` (a CronJob's next run comes after every backoff)."""
    from genvault.config import load_settings
    from genvault.store import Store

    runs = []
    settings = load_settings(config, environ={**os.environ, **env})
    for _ in range(max_runs):
        proc = genvault("--config", str(config), "run", "--once", env=env)
        runs.append(proc)
        store = Store(settings.database.url)
        try:
            polling, pending = store.outstanding_work()
        finally:
            store.dispose()
        if polling == 0 and pending == 0:
            return runs
        time_passes(settings.database.url)
    raise AssertionError(
        f"not quiet after {max_runs} runs; last stderr:\n{runs[-1].stderr[-3000:]}"
    )
