"""What every parsed record must satisfy, and the seed payloads the parser suites read.

One copy for the adapter contract suite (tests/unit/test_provider_contract.py) and
the per-provider parser suites (``tests/unit/test_<name>_parse.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genvault.records import GenerationRecord, GenerationStatus

SEEDS = Path(__file__).resolve().parent / "fixtures" / "seeds"
"""The providers' documented example payloads (seed 000-004)."""


def load_seed(name: str) -> Any:
    """One seed payload, parsed."""
    with (SEEDS / name).open(encoding="utf-8") as fh:
        return json.load(fh)


def check_record(rec: GenerationRecord) -> None:
    """What any record a parser returns must satisfy, whatever the API."""
    assert isinstance(rec, GenerationRecord)
    assert rec.external_id and isinstance(rec.external_id, str)
    assert isinstance(rec.status, GenerationStatus)
    urls = [m.url for m in rec.media]
    assert len(urls) == len(set(urls))
    assert all(u.startswith(("http://", "https://")) for u in urls)
    for dt in (rec.created_at, rec.updated_at, rec.completed_at, rec.expires_at):
        assert dt is None or dt.tzinfo is not None
    # Every deadline says where it comes from, so a guess never looks like a fact.
    assert (rec.expires_at is None) == (rec.expires_source is None), (
        rec.expires_at,
        rec.expires_source,
    )
