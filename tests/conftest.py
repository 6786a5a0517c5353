"""Shared fixtures: real servers on loopback, never in-process fakes.

* ``postgres_url``: a fresh database on a real PostgreSQL (GENVAULT_TEST_POSTGRES_URL,
  a server on 127.0.0.1:5432, or a throwaway cluster started for the session);
* ``s3_server`` / ``s3_bucket``: moto's standalone S3 server over HTTP;
* ``db_url``: parametrized over SQLite and PostgreSQL (that param marked ``postgres``);
* ``info_json_log``: genvault's own logging at info, as JSON lines, into a buffer;
* ``start_sim``: a started provider simulator, stopped after the test.

Test layers (procrastinate's model): ``tests/unit`` (pure functions, no I/O),
``tests/integration`` (one component against real servers), ``tests/acceptance``
(the CLI and the whole pipeline against the simulators).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

from genvault import logs as gvlog
from tests.fixtures.postgres import postgres_server_url, postgres_url  # noqa: F401
from tests.fixtures.receiver import receiver  # noqa: F401
from tests.fixtures.s3 import s3_bucket, s3_server  # noqa: F401
from tests.fixtures.sims import start_sim  # noqa: F401

# Property tests check what parsers and key builders accept, not how fast: on a busy
# 2-core CI box the default 200 ms per-example deadline only produces flakes.
settings.register_profile("genvault", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("genvault")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL on each backend genvault supports (the one database
    fixture: ``-m "not postgres"`` deselects the PostgreSQL half)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'genvault.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(autouse=True, scope="session")
def _quiet_werkzeug() -> None:
    """moto's server logs every request at INFO; failures should show genvault's output."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _stop_replay_servers() -> Iterator[None]:
    """Loopback replay servers and origins (tests/fixtures/) live for one test."""
    yield
    from tests.fixtures.loopback import stop_all

    stop_all()


@pytest.fixture
def info_json_log() -> Iterator[io.StringIO]:
    """genvault's logging at info into a buffer (JSON lines); the previous set-up is
    restored after, so other tests keep their own."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    gvlog.configure(level="info", fmt="json", stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
