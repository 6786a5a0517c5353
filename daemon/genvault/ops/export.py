"""``genvault export``: every generation's metadata and where its files are, streamed.

One record per generation, in id order (the order genvault first saw them):
the normalized fields (provider, account, external id, status, times, model,
prompt, error) and its ``files``, each with its role, state, storage key and a
location a person or a script can open (``s3://bucket/key``, ``file:///path``),
size, sha256, the deadline the source gave it (``source_deadline``) and where that
deadline comes from (``source_deadline_from``: provider, rule, signed_url, assumed
or default; the generation's own is ``expires_source``), so a guess never reads as a fact.

Formats:

* ``jsonl``: one JSON object per line, ``files`` as a list of objects;
* ``csv``: still one row per generation, so both formats count the same;
  ``files`` is a JSON array in one column (a row per file would repeat every
  generation field, and spreadsheets cannot group rows back), with
  ``file_count`` and ``archived_files`` beside it for a quick filter.

CSV cells are escaped against formula injection: prompts, errors and model names
are third-party text, and a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a
tab or carriage return) is run as a formula when the file is opened in Excel or
LibreOffice (``=HYPERLINK(...)`` sends data away, DDE runs commands). Such cells get
a leading ``'`` (OWASP's advice): a spreadsheet shows the text, a script strips one
character. JSONL is for programs and keeps every value as stored.

``raw`` (the provider's payload, as in the sidecar) is left out unless asked for:
it is most of the bytes and rarely what an export is for.

Rows come from the database a batch at a time (keyset pagination) and each
record is written as soon as it is built: memory holds one batch, whatever the
archive's size.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from genvault.errors import StorageError
from genvault.formatting import iso
from genvault.store import Store
from genvault.store.queries.operator import EXPORT_GENERATION_FIELDS

FORMATS = ("jsonl", "csv")
DEFAULT_BATCH = 500

GENERATION_FIELDS = EXPORT_GENERATION_FIELDS
CSV_COLUMNS = (*GENERATION_FIELDS, "file_count", "archived_files", "files")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell: None as empty, formula-like text behind a ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@dataclass
class ExportCounts:
    generations: int = 0
    files: int = 0


def _file(a: dict[str, Any], location: Callable[[str], str]) -> dict[str, Any]:
    key = a["storage_key"]
    where: str | None = None
    if key:
        try:
            where = location(key)
        except StorageError:  # a key the backend refuses (it was never stored): say so
            where = None
    return {
        "position": a["position"],
        "role": a["role"],
        "kind": a["kind"],
        "state": a["state"],
        "key": key,
        "location": where,
        "size": a["size"] if a["size"] is not None else a["expected_size"],
        "sha256": a["sha256"],
        "content_type": a["content_type"],
        "source_url": a["source_url"],
        "source_deadline": iso(a["expires_at"]),
        "source_deadline_from": a["expires_source"],
        "archived_at": iso(a["archived_at"]),
        "attempts": a["attempts"],
        "error": a["last_error"],
    }


def export_records(
    store: Store,
    location: Callable[[str], str],
    *,
    account: str | None = None,
    since: datetime | None = None,
    include_raw: bool = False,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[dict[str, Any]]:
    """Export records, one per generation, built batch by batch as they are consumed."""
    for batch in store.export_batches(
        account=account, since=since, batch_size=batch_size, include_raw=include_raw
    ):
        for g in batch:
            rec: dict[str, Any] = {name: iso(g[name]) for name in GENERATION_FIELDS}
            rec["files"] = [_file(a, location) for a in g["assets"]]
            if include_raw:
                rec["raw"] = g["raw"]
            yield rec


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> ExportCounts:
    counts = ExportCounts()
    for rec in records:
        out.write(json.dumps(rec, ensure_ascii=False, default=str))
        out.write("\n")
        counts.generations += 1
        counts.files += len(rec["files"])
    return counts


def write_csv(
    records: Iterable[dict[str, Any]], out: TextIO, *, include_raw: bool = False
) -> ExportCounts:
    counts = ExportCounts()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, "raw"] if include_raw else CSV_COLUMNS)
    for rec in records:
        files = rec["files"]
        row: list[Any] = [rec[name] for name in GENERATION_FIELDS]
        row += [
            len(files),
            sum(1 for f in files if f["state"] == "archived"),
            json.dumps(files, ensure_ascii=False, default=str),
        ]
        if include_raw:
            row.append(json.dumps(rec.get("raw"), ensure_ascii=False, default=str))
        writer.writerow([csv_cell(v) for v in row])
        counts.generations += 1
        counts.files += len(files)
    return counts


def write_export(
    store: Store,
    location: Callable[[str], str],
    out: TextIO,
    *,
    fmt: str = "jsonl",
    account: str | None = None,
    since: datetime | None = None,
    include_raw: bool = False,
    batch_size: int = DEFAULT_BATCH,
) -> ExportCounts:
    """Stream the export in ``fmt`` to ``out``; returns what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    records = export_records(
        store,
        location,
        account=account,
        since=since,
        include_raw=include_raw,
        batch_size=batch_size,
    )
    if fmt == "csv":
        return write_csv(records, out, include_raw=include_raw)
    return write_jsonl(records, out)
