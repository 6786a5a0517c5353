"""Operator commands' queries: ``verify``, ``export``, ``retry``."""

from __future__ import annotations

from genvault.queries.base import StoreBase


class OperatorQueries(StoreBase):
    pass
