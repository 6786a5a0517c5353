"""Alembic environment: migrations run on the connection genvault hands over.

``genvault db upgrade`` (and every start) calls :meth:`genvault.store.Store.upgrade`,
which passes its own connection in ``config.attributes["connection"]``; there is
no alembic.ini to keep in sync with the genvault config.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import genvault.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from genvault.store.queries.search import is_search_schema

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `genvault db upgrade`")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # The search index of 0003 is not in the models: autogenerate must not drop it.
    include_name=lambda name, type_, _parents: not is_search_schema(name, type_),
)
with context.begin_transaction():
    context.run_migrations()
