"""What every query mixin may use: the tables and the engine of the :class:`Store`."""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from genvault.models import Asset, Generation, ProviderHealth, SyncCursor

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
