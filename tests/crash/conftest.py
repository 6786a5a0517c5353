"""Fixtures of the kill harness, and its summary at the end of the pytest output."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.crash.harness import SUMMARIES
from tests.fixtures.postgres import _connect_kwargs


@pytest.fixture
def new_postgres_db(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (one per trial), dropped afterwards."""
    server = make_url(postgres_server_url)
    admin = _connect_kwargs(server)
    created: list[str] = []

    def make() -> str:
        name = f"genvault_crash_{uuid.uuid4().hex}"
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return server.set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            for name in created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the harness's counts even without ``-s``: they are the point of the run."""
    if SUMMARIES:
        terminalreporter.section("kill harness")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
