"""A provider history that drifts, as on a live account: deletions, insertions, churn.

GeminiGen's ``/histories`` and Tengr.ai's ``/artworks`` list an account's
generations newest first, and neither is a stable snapshot: generations are deleted
and made while a client pages. :class:`HistorySim` is the one copy of that
bookkeeping: every item that ever existed (deleted ones too), newest first, the
deleted ids, items inserted at the top at the clock's now, and the churn knobs
(``churn_delete_per_request``, ``churn_insert_per_request``, ``churn_requests``)
with their own seeded RNG. A provider module says what an item is (its id, its CDN
paths, how a fresh one is made and served, which ones churn may delete) and calls
:meth:`HistorySim.churn` after it has encoded a listing page, so the page served
reflects the state before.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from genvault.simulator.base import ProviderSim, SimConfig, trunc_ms


class HistoryConfig(SimConfig, Protocol):
    """What :class:`HistorySim` reads from a provider's config dataclass."""

    @property
    def count(self) -> int: ...
    @property
    def churn_delete_per_request(self) -> int: ...
    @property
    def churn_insert_per_request(self) -> int: ...
    @property
    def churn_requests(self) -> int: ...


_HC = TypeVar("_HC", bound=HistoryConfig)
_Item = TypeVar("_Item")


class HistorySim(ProviderSim[_HC], Generic[_HC, _Item]):
    """A provider simulator whose listing is a drifting history of ``_Item``.

    The subclass builds its items, calls :meth:`_start_history` with them (newest
    first) and implements the hooks :meth:`_item_id`, :meth:`_item_paths`,
    :meth:`_serve`, :meth:`_new_item` and :meth:`_churn_candidates`. ``_lock`` (an
    RLock) guards the items, the deletions and the churn state.
    """

    def __init__(self, config: _HC, **server_options: Any) -> None:
        super().__init__(config, **server_options)
        self._lock = threading.RLock()
        self._items: list[_Item] = []
        """Every item that ever existed (deleted ones too), newest first."""
        self._by_id: dict[str, _Item] = {}
        self._deleted: set[str] = set()
        self._inserted = 0
        self._churned = 0
        self._churn_rng = random.Random(f"{self.name}:{config.seed}:churn")

    def _start_history(self, items: list[_Item]) -> None:
        self._items = items
        self._by_id = {self._item_id(i): i for i in items}

    # ------------------------------------------------------------------ hooks

    def _item_id(self, item: _Item) -> str:
        raise NotImplementedError

    def _item_paths(self, item: _Item) -> Iterable[str]:
        """The CDN paths an item serves (a deletion stops serving them)."""
        raise NotImplementedError

    def _serve(self, item: _Item, delay: float) -> None:
        """Put the item's files on the CDN, available ``delay`` seconds after start."""
        raise NotImplementedError

    def _new_item(self, i: int, now: datetime) -> _Item:
        """Item number ``i`` (counting on after the built ones), created at ``now``."""
        raise NotImplementedError

    def _churn_candidates(self) -> list[str]:
        """Ids churn may delete now, in listing order (lock held)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ drift

    @property
    def deleted_ids(self) -> frozenset[str]:
        """Ids of the items deleted so far (by churn or by hand)."""
        with self._lock:
            return frozenset(self._deleted)

    def _kept(self, include_deleted: bool) -> list[_Item]:
        """Every item, newest first, without the deleted ones unless ``include_deleted``."""
        with self._lock:
            gone = set() if include_deleted else self._deleted
            return [i for i in self._items if self._item_id(i) not in gone]

    def _delete(self, ids: Iterable[str]) -> None:
        """Delete these items now: their files answer 404 from now on. Deleting one
        twice is a no-op; an unknown id raises ``KeyError``."""
        with self._lock:
            items = [self._by_id[i] for i in ids]
            for item in items:
                item_id = self._item_id(item)
                if item_id in self._deleted:
                    continue
                self._deleted.add(item_id)
                for path in self._item_paths(item):
                    self.server.remove_media(path)

    def _insert(self, n: int) -> list[str]:
        """Create ``n`` items now, at the top; returns their ids, newest first."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            now = trunc_ms(self.clock.now())
            fresh: list[_Item] = []
            for _ in range(n):
                i = self.config.count + self._inserted
                self._inserted += 1
                item = self._new_item(i, now)
                self._by_id[self._item_id(item)] = item
                self._serve(item, 0.0)
                fresh.append(item)
            fresh.reverse()
            self._items[:0] = fresh
            return [self._item_id(item) for item in fresh]

    def churn(self) -> None:
        """After a listing request: delete and insert as the churn knobs say."""
        cfg = self.config
        if not (cfg.churn_delete_per_request or cfg.churn_insert_per_request):
            return
        with self._lock:
            if cfg.churn_requests and self._churned >= cfg.churn_requests:
                return
            self._churned += 1
            live = self._churn_candidates()
            doomed = self._churn_rng.sample(live, min(cfg.churn_delete_per_request, len(live)))
            self._delete(doomed)
            self._insert(cfg.churn_insert_per_request)
