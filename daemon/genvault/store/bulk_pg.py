"""PostgreSQL: a page of rows in with ``COPY``, then one set-based statement.

Why this exists: the sync's upserts (:mod:`genvault.store.writes`) sent a page as an
``executemany``, one Bind/Execute per row (~1,250 rows a page: 500 generations and
their files). Profiled over a 100,000-generation sync (``bench/profiles/
metadata-pg.before.*``), two thirds of the DB part was the client handling those rows
one by one (SQLAlchemy building each row's parameters, psycopg adapting and
pipelining them) and the server ran each as a statement of its own. Here the rows go
to a temporary *stage* table with one binary ``COPY`` (psycopg formats the rows in C),
and the write itself is one ``INSERT ... SELECT ... ON CONFLICT`` built by the caller
from :func:`insert_from_stage`, so both databases share the same ``ON CONFLICT``
clauses (the upsert rules live in one place, ``writes.py``), and the statement can
return what it wrote (``RETURNING``) instead of the caller reading it again.

A stage table is created once per connection (``CREATE TEMPORARY TABLE IF NOT EXISTS``
in every transaction that uses it: a rolled-back first use leaves none behind) with
``ON COMMIT DELETE ROWS``: it holds one page at most (emptied before each ``COPY``
too), and is empty again at the commit (or rollback) of the page's transaction. Its
columns have the target's types (lengths included), so a value the table would refuse
is refused at the ``COPY``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

if TYPE_CHECKING:
    import psycopg

_STAGE_META = sa.MetaData()
_PG: sa.Dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
ORD = "stage_ord"
"""The stage's row number: the set-based write keeps the page's order (ids, locks)."""


def _copy_type(col: sa.Column[Any]) -> str:
    """The PostgreSQL type name psycopg's binary ``COPY`` dumps ``col``'s values as."""
    t = col.type
    if isinstance(t, sa.types.TypeDecorator):
        t = t.impl_instance
    t = t.dialect_impl(_PG)  # JSON's with_variant: JSONB
    if isinstance(t, sa.BigInteger):
        return "int8"
    if isinstance(t, sa.Integer):
        return "int4"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    if isinstance(t, postgresql.JSONB):
        return "jsonb"
    if isinstance(t, sa.String) and t.length is not None:
        return "varchar"
    if isinstance(t, sa.String):
        return "text"
    raise TypeError(f"no COPY type for {col.table.name}.{col.name}: {col.type!r}")


@cache
def stage_table(table: sa.Table, columns: tuple[str, ...]) -> sa.Table:
    """The temporary table a page of ``table``'s ``columns`` is copied into."""
    tag = hashlib.blake2b(",".join(columns).encode(), digest_size=4).hexdigest()
    return sa.Table(
        f"genvault_stage_{table.name}_{tag}",
        _STAGE_META,
        sa.Column(ORD, sa.Integer),
        *(sa.Column(c, table.c[c].type) for c in columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
    )


@cache
def _ddl(stage: sa.Table) -> str:
    return str(CreateTable(stage, if_not_exists=True).compile(dialect=_PG))


def insert_from_stage(table: sa.Table, columns: Iterable[str]) -> postgresql.Insert:
    """``INSERT INTO table (columns) SELECT columns FROM its stage`` in page order; the
    caller adds ``ON CONFLICT`` (``excluded`` works as for a ``VALUES`` insert)."""
    cols = tuple(columns)
    stage = stage_table(table, cols)
    return postgresql.insert(table).from_select(
        list(cols), sa.select(*(stage.c[c] for c in cols)).order_by(stage.c[ORD])
    )


def copy_to_stage(
    conn: Connection, table: sa.Table, columns: Iterable[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Put ``rows`` (dicts with at least ``columns``) into ``table``'s stage, in this
    transaction, numbered in order; the stage holds nothing else (see the docstring)."""
    cols = tuple(columns)
    stage = stage_table(table, cols)
    types = ["int4", *(_copy_type(table.c[c]) for c in cols)]
    get = itemgetter(*cols)
    names = ", ".join((ORD, *cols))
    raw: psycopg.Connection[Any] | None = conn.connection.driver_connection
    assert raw is not None  # a checked-out connection: psycopg's, in the same transaction
    with raw.cursor() as cur:
        cur.adapters.register_dumper(JsonText, _jsonb_dumper())
        cur.execute(f"{_ddl(stage)}; DELETE FROM {stage.name}")  # one round trip
        with cur.copy(f"COPY {stage.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            try:
                for i, row in enumerate(rows):
                    copy.write_row((i, *get(row)) if len(cols) > 1 else (i, get(row)))
            except TypeError as exc:  # psycopg's word for a naive datetime
                naive = [v for r in rows for v in r.values() if _is_naive(v)]
                if naive:  # as UTCDateTime says it on the other path
                    raise ValueError(f"naive datetime given to a UTC column: {naive[0]}") from exc
                raise


class JsonText(str):
    """A value for a ``jsonb`` column that is already JSON text: copied as it is.

    The sync has each listing's JSON text at hand (its fingerprint hashes it, keys
    sorted: ``jsonb`` keeps no key order, so the stored value is the same), and
    serializing every ``raw`` again cost ~4 us a row."""


@cache
def _jsonb_dumper() -> type[Any]:
    """psycopg's binary ``jsonb`` dumper, passing :class:`JsonText` through (imported
    late: SQLite-only installs have no psycopg)."""
    from psycopg.types.json import JsonbBinaryDumper

    class Dumper(JsonbBinaryDumper):
        def dump(self, obj: Any) -> Any:
            return b"\x01" + obj.encode() if isinstance(obj, JsonText) else super().dump(obj)

    return Dumper


def _is_naive(value: object) -> bool:
    return isinstance(value, datetime) and value.tzinfo is None
