"""Proves the PostgreSQL fixtures hand out a real, writable, private database.

If this test fails, every other PostgreSQL test will too; it is the first place to look.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.fixtures.postgres import postgres_server_url, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres


def test_postgres_url_is_a_fresh_writable_database(postgres_url: str) -> None:  # noqa: F811
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.database is not None and url.database.startswith("genvault_test_")

    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            version = conn.execute(text("SELECT version()")).scalar_one()
            assert version.startswith("PostgreSQL ")
            assert conn.execute(text("SELECT current_database()")).scalar_one() == url.database
            # A brand-new database: no tables of ours yet.
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar_one()
                == 0
            )

            conn.execute(text("CREATE TABLE item (id integer PRIMARY KEY, name text NOT NULL)"))
            conn.execute(
                text("INSERT INTO item (id, name) VALUES (:id, :name)"),
                [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name FROM item ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "alpha"), (2, "beta")]
    finally:
        engine.dispose()


def test_each_test_gets_its_own_database(
    postgres_url: str,  # noqa: F811
    postgres_server_url: str,  # noqa: F811
) -> None:
    """The previous test's table must not be visible here, and the server URL differs."""
    assert make_url(postgres_url).database != make_url(postgres_server_url).database
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('public.item')")).scalar_one() is None
    finally:
        engine.dispose()
