"""Checks the simulator suites share (the contract suite and the per-provider ones)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import httpx

from genvault.simulator import ExpectedFile


def assert_files_served(client: httpx.Client, files: Iterable[ExpectedFile]) -> int:
    """Each file answers 200 with its announced type, size and sha256; returns the bytes."""
    total = 0
    for f in files:
        r = client.get(f.url)
        assert r.status_code == 200, (f.url, r.text[:200])
        assert r.headers["content-type"] == f.content_type
        assert int(r.headers["content-length"]) == f.size == len(r.content)
        assert hashlib.sha256(r.content).hexdigest() == f.sha256
        total += f.size
    return total
