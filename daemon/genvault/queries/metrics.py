"""The gauges ``/metrics`` reads from the database at scrape time."""

from __future__ import annotations

from genvault.queries.base import StoreBase


class MetricsQueries(StoreBase):
    pass
