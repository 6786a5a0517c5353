"""Full-text search over every account's generations (prompt, model), indexed.

To be filled in: migration 0003 and :meth:`SearchQueries.search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from genvault.queries.base import StoreBase


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One generation that matched, and where its archived files are."""

    generation_id: int
    provider: str
    account: str
    external_id: str
    created_at: datetime | None
    model: str | None
    prompt: str | None
    status: str
    storage_keys: tuple[str, ...]


class SearchQueries(StoreBase):
    def search(
        self,
        query: str,
        *,
        provider: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Generations matching ``query``, best match first (stub until 0003 lands)."""
        return []
