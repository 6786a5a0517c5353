"""What every store module may use: the tables and the engine of the :class:`Store`."""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from genvault.logs import get_logger
from genvault.models import Asset, Generation, ProviderHealth, SyncCursor

P = ParamSpec("P")
R = TypeVar("R")
log = get_logger("genvault.store")

G: sa.Table = Generation.__table__  # type: ignore[attr-defined]
A: sa.Table = Asset.__table__  # type: ignore[attr-defined]
C: sa.Table = SyncCursor.__table__  # type: ignore[attr-defined]
H: sa.Table = ProviderHealth.__table__  # type: ignore[attr-defined]


class StoreBase:
    """What :class:`genvault.store.Store` gives its mixins: the engine and shared helpers."""

    url: str
    engine: Engine
    is_sqlite: bool

    def tx(self) -> AbstractContextManager[Connection]:  # pragma: no cover - Store's
        """A write transaction (``Store.tx``)."""
        raise NotImplementedError

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """``INSERT`` in this database's dialect (both have ``ON CONFLICT`` clauses)."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def _one_of(self, col: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """``col IN values`` for a page of keys: one array parameter on PostgreSQL.

        500 bind parameters make a new statement text for every list length and
        cost more to plan; ``= ANY(:array)`` is one statement. SQLite has no arrays.
        """
        if self.is_sqlite:
            return col.in_(list(values))
        return col == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(col.type)))

    def lock_generations(self, conn: Connection, ids: Sequence[int]) -> None:
        """Lock generation rows in id order before updating several of them.

        Replicas finishing files of the same generations would otherwise lock
        those rows in whatever order their plans visit them, and two opposite
        orders are a deadlock (seen with three ``run --once`` replicas).
        """
        if not self.is_sqlite and ids:
            conn.execute(
                sa.select(G.c.id).where(G.c.id.in_(list(ids))).order_by(G.c.id).with_for_update()
            )


def attach_files(
    conn: Connection, gens: list[dict[str, Any]], columns: Iterable[Any] = (A,)
) -> None:
    """Give each generation row its files' rows (``columns`` of ``asset``) under
    ``"assets"``, in position order: one query for the whole batch."""
    files: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in conn.execute(
        sa.select(*columns)
        .where(A.c.generation_id.in_([g["id"] for g in gens]))
        .order_by(A.c.generation_id, A.c.position)
    ):
        files[r.generation_id].append(dict(r._mapping))
    for g in gens:
        g["assets"] = files.get(g["id"], [])


_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
"""deadlock_detected, serialization_failure: the server rolled back; the same call may succeed."""


def retry_conflicts(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a write again (up to 3 times) when PostgreSQL aborted it as a deadlock victim.

    Replicas and the threads of one process write overlapping rows; the store
    takes its locks in a fixed order where it can, and this catches the rest.
    Every decorated method is one transaction with no side effect outside the
    database, so a rolled-back attempt can simply be repeated.
    """

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, 4):
            try:
                return fn(*args, **kwargs)
            except sa.exc.OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code not in _CONFLICT_SQLSTATES or attempt == 3:
                    raise
                log.warning("db.conflict_retried", call=fn.__name__, sqlstate=code, attempt=attempt)
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    return wrapper


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (same in every replica)."""
    digest = hashlib.blake2b(":".join(("genvault", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
