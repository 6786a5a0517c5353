"""search: full-text index over generation(model, prompt)

SQLite: ``gen_fts``, an FTS5 external-content table (the text stays in ``generation``),
filled from the existing rows; new rows are indexed by the store in the transaction
that inserts them, changed and deleted ones by triggers. PostgreSQL: a stored
generated ``tsvector`` column with a GIN index. Why these, and how queries use them:
:mod:`genvault.store.queries.search`.

Neither is declared in the SQLModel metadata (it cannot say "FTS5 table" or "this
column exists on PostgreSQL only"), so model comparisons skip them with
:func:`genvault.store.queries.search.is_search_schema`.

Once, on an existing database: PostgreSQL rewrites ``generation`` under an exclusive
lock to fill the generated column, then builds the GIN index; SQLite reads every
row into FTS5. Measured with 1,000,000 generations of ~100-character prompts:
13.9 s on PostgreSQL, 7.6 s on SQLite (the daemon starts that much later, once).

On SQLite, a later migration that rebuilds ``generation`` with ``batch_alter_table``
(copy, drop, rename) drops these triggers with the old table: it must call
:func:`create_sqlite_triggers` again. The index reads ``generation`` by name and
rowid, so it can stay if the ids are copied as they are; FTS5's ``integrity-check``
(see ``tests/integration/test_search.py``) tells.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# No insert trigger: under an ``executemany`` upsert FTS5 writes one index segment per
# row (~14 us each, 20 % of the sync's DB part). The store indexes the rows a
# transaction inserted with one INSERT ... SELECT instead
# (``SearchQueries.indexing_new_generations``); deletes and text changes are rare and
# stay with triggers.
_SQLITE_TRIGGERS = (
    # An external-content index must be told the *old* text to forget it.
    """CREATE TRIGGER gen_fts_delete AFTER DELETE ON generation BEGIN
        INSERT INTO gen_fts (gen_fts, rowid, model, prompt)
        VALUES ('delete', old.id, old.model, old.prompt);
    END""",
    # The sync upsert and the poller write prompt and model with every change of a
    # generation; re-index only when the text really changed.
    """CREATE TRIGGER gen_fts_update AFTER UPDATE OF model, prompt ON generation
    WHEN old.model IS NOT new.model OR old.prompt IS NOT new.prompt BEGIN
        INSERT INTO gen_fts (gen_fts, rowid, model, prompt)
        VALUES ('delete', old.id, old.model, old.prompt);
        INSERT INTO gen_fts (rowid, model, prompt) VALUES (new.id, new.model, new.prompt);
    END""",
)


def create_sqlite_triggers() -> None:
    for ddl in _SQLITE_TRIGGERS:
        op.execute(ddl)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE gen_fts USING fts5 ("
            "model, prompt, content='generation', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
        )
        create_sqlite_triggers()
        op.execute("INSERT INTO gen_fts (gen_fts) VALUES ('rebuild')")
    else:
        op.execute(
            "ALTER TABLE generation ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS"
            " (to_tsvector('simple'::regconfig,"
            " coalesce(model, '') || ' ' || coalesce(prompt, ''))) STORED"
        )
        op.execute("CREATE INDEX ix_generation_search ON generation USING gin (search_tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("gen_fts_delete", "gen_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS gen_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_generation_search")
        op.execute("ALTER TABLE generation DROP COLUMN IF EXISTS search_tsv")
