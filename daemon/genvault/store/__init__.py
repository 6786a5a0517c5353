"""All database access. Nothing else in genvault issues SQL.

One :class:`Store` wraps an engine (SQLite in WAL mode, or PostgreSQL) and offers
the operations the jobs need, each one a short transaction. It is put together
from one mixin per job, each in its own module:

* :mod:`.lifecycle`   the engine, migrations, the write transaction, and the
                      advisory locks (per account for sync and poll, per worker);
* :mod:`.writes`      the sync and poll write path: :meth:`Store.save_page` upserts
                      a page of generations and their files *and* moves the
                      stream's cursor (:mod:`.cursors`) in one commit; the poll
                      side's :meth:`Store.register_tasks`, :meth:`Store.due_for_poll`,
                      :meth:`Store.save_polled`, :meth:`Store.poll_error`;
* :mod:`.bulk_pg`     PostgreSQL's page write for it: a binary ``COPY`` into a
                      temporary stage, then one ``INSERT ... SELECT ... ON CONFLICT``;
* :mod:`.choices`     each account's choice of roles and kinds applied to files
                      already known, and what it skips;
* :mod:`.leases`      the archive queue, :attr:`Store.leases`: a :class:`LeaseQueue`
                      (acquire earliest deadline first, extend, finish, defer,
                      release) with its value types :class:`LeasedAsset`,
                      :class:`Outcome` and :class:`LeaseOrder`;
* :mod:`.dead_leases` a dead worker's leases freed at once, not after they expire
                      (:meth:`Store.void_other_leases` on SQLite,
                      :meth:`Store.reap_dead_leases` on PostgreSQL);
* :mod:`.sidecars`    which generations need their sidecar (re)written;
* :mod:`.health`      circuit breaker and request budget per account;
* :mod:`.reports`     :meth:`Store.summary`, :meth:`Store.at_risk` and listings;
* :mod:`.notifications` what :mod:`genvault.notify` has said, and the lost files
                      it has not said yet;
* :mod:`.imports`     ``genvault import``: the files a local copy may be, and
                      recording one as archived after it was stored;
* :mod:`.queries`     the read side that serves people: search, activity,
                      metrics, streams, operator commands.

:mod:`.base` holds what they share: the tables, the dialect's ``INSERT ... ON
CONFLICT``, and the retry of a transaction PostgreSQL aborted as a deadlock victim.
"""

from __future__ import annotations

from genvault.store.base import A, C, G, H
from genvault.store.choices import ArchiveChoices
from genvault.store.cursors import CursorState, CursorUpdate, WalkEnding, WalkMark
from genvault.store.dead_leases import DeadLeases
from genvault.store.health import HealthRecords, StoredHealth
from genvault.store.imports import ImportRecords
from genvault.store.leases import AssetLeases, LeasedAsset, LeaseOrder, LeaseQueue, Outcome
from genvault.store.lifecycle import (
    MIGRATIONS,
    SCHEMA_HEAD,
    WORKER_LOCK_TAG,
    Lifecycle,
    worker_lock_key,
)
from genvault.store.notifications import NotificationRecords
from genvault.store.queries.activity import ActivityQueries
from genvault.store.queries.metrics import MetricsQueries
from genvault.store.queries.operator import OperatorQueries
from genvault.store.queries.search import SearchQueries
from genvault.store.queries.streams import StreamQueries
from genvault.store.reports import Reports
from genvault.store.sidecars import Sidecars
from genvault.store.writes import PollItem, SaveResult, WritePath


class Store(
    Lifecycle,
    WritePath,
    ArchiveChoices,
    DeadLeases,
    Sidecars,
    HealthRecords,
    Reports,
    NotificationRecords,
    SearchQueries,
    ActivityQueries,
    MetricsQueries,
    OperatorQueries,
    StreamQueries,
    ImportRecords,
):
    """The metadata database: the jobs' write path and lease queue, people's queries."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.leases = AssetLeases(self)
        """The archive queue (a :class:`LeaseQueue`): files leased, extended, handed back."""


__all__ = [
    "MIGRATIONS",
    "SCHEMA_HEAD",
    "WORKER_LOCK_TAG",
    "A",
    "C",
    "CursorState",
    "CursorUpdate",
    "G",
    "H",
    "LeaseOrder",
    "LeaseQueue",
    "LeasedAsset",
    "Outcome",
    "PollItem",
    "SaveResult",
    "Store",
    "StoredHealth",
    "WalkEnding",
    "WalkMark",
    "worker_lock_key",
]
