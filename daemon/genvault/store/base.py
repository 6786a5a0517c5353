"""What every store module may use: the tables and the engine of the :class:`Store`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import wraps
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from genvault.logging import get_logger
from genvault.models import Asset, Generation, ProviderHealth, SyncCursor

P = ParamSpec("P")
R = TypeVar("R")
log = get_logger("genvault.store")

G: sa.Table = Generation.__table__  # type: ignore[attr-defined]
A: sa.Table = Asset.__table__  # type: ignore[attr-defined]
C: sa.Table = SyncCursor.__table__  # type: ignore[attr-defined]
H: sa.Table = ProviderHealth.__table__  # type: ignore[attr-defined]


class StoreBase:
    """The attributes :class:`genvault.store.Store` gives its query mixins."""

    url: str
    engine: Engine
    is_sqlite: bool

    def tx(self) -> AbstractContextManager[Connection]:  # pragma: no cover - Store's
        """A write transaction (``Store.tx``)."""
        raise NotImplementedError


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
