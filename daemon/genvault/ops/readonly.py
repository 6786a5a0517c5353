"""Open the database for a command that must not change it: ``verify``, ``export``, dry runs.

Every other command upgrades the schema at start (and SQLite creates a missing
file on first connect). A read-only command must do neither: a dry run that
created an empty database, or an export that migrated a production database
behind the operator's back, would be exactly the surprise it exists to avoid.
So these commands check first and stop with one line naming ``database.url``
(exit 2, like any configuration error) when there is nothing to read yet.
"""

from __future__ import annotations

from genvault.errors import ConfigError
from genvault.instance import sqlite_path
from genvault.store import SCHEMA_HEAD, Store


def open_existing_store(url: str) -> Store:
    """A :class:`Store` on an existing database at the latest schema, never created or migrated.

    Raises :class:`ConfigError` (``database.url``) when the SQLite file does not
    exist, or the schema is missing or at another revision.
    """
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None:
            raise ConfigError("database.url", "an in-memory database holds nothing to read")
        if not path.is_file():
            raise ConfigError(
                "database.url",
                f"no genvault database at {path} (a first `genvault run --once` or "
                "`genvault db upgrade` creates it)",
            )
    store = Store(url)
    try:
        current = store.schema_revision()
        if current != SCHEMA_HEAD:
            found = f"at revision {current}" if current else "not a genvault database"
            raise ConfigError(
                "database.url",
                f"the database is {found}, this genvault expects {SCHEMA_HEAD}: "
                "run `genvault db upgrade` first",
            )
    except BaseException:
        store.dispose()
        raise
    return store
