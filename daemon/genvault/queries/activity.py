"""Recent archives and failures: what the status page and ``genvault status`` show."""

from __future__ import annotations

from genvault.queries.base import StoreBase


class ActivityQueries(StoreBase):
    pass
