"""Fixtures of the integration layer (the backends themselves are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from genvault.store import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    s = Store(db_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.dispose()
