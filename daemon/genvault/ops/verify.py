"""``genvault verify``: read archived objects back and check them against the database.

The archive job verified every file as it streamed in; this catches what happens
afterwards: an object deleted by a lifecycle rule or a careless ``rm``, a disk
that returns other bytes than it was given, a truncated copy after a migration.
Each object is looked up (``stat``), then read back in full through
:meth:`Storage.open` in chunks and hashed, so a corrupted object of the right
size is caught too (a backend's stored ``sha256`` metadata is not trusted: it is
written by the same process the check is meant to doubt).

Reads only: no database write, no storage write, no lock. A few threads read
objects side by side (object stores answer in parallel), with a bounded window
of work in flight, and the rows are fetched by keyset batches, so a million
files cost neither a million futures nor a million rows in memory.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genvault.errors import StorageError
from genvault.storage.base import CHUNK_SIZE, Storage
from genvault.store import Store
from genvault.store.queries.operator import ArchivedFile

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_WORKERS = 4


class ProblemKind(enum.StrEnum):
    """What can be wrong with an archived object."""

    MISSING = "missing"
    """No object at the key (or the row names no key)."""
    SIZE_MISMATCH = "size_mismatch"
    """The object is there, with another length than the database recorded."""
    SHA256_MISMATCH = "sha256_mismatch"
    """Same length, other bytes."""
    UNREADABLE = "unreadable"
    """The backend refused or broke off the read (permissions, I/O error, network)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One object that does not match its row."""

    kind: ProblemKind
    asset_id: int
    account: str
    external_id: str
    key: str | None
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "asset_id": self.asset_id,
            "account": self.account,
            "external_id": self.external_id,
            "key": self.key,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
            "error": self.error,
        }

    def describe(self) -> str:
        """One line for people."""
        where = self.key or f"asset {self.asset_id} (no storage key recorded)"
        if self.kind is ProblemKind.SIZE_MISMATCH:
            detail = f"{self.actual_size} bytes, expected {self.expected_size}"
        elif self.kind is ProblemKind.SHA256_MISMATCH:
            detail = f"sha256 {self.actual_sha256}, expected {self.expected_sha256}"
        elif self.kind is ProblemKind.UNREADABLE:
            detail = self.error or "read failed"
        else:
            detail = "no object"
        return f"{self.kind.value:16} {where}: {detail}"


@dataclass
class VerifyReport:
    """What a verify pass checked and what it found."""

    checked: int = 0
    bytes: int = 0
    """Bytes read back."""
    sampled: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in ProblemKind}
        for p in self.problems:
            out[p.kind.value] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "sampled": self.sampled,
            "problems": [p.as_dict() for p in sorted(self.problems, key=_order)],
            "counts": self.counts(),
        }


def _order(p: Problem) -> tuple[str, int]:
    return (p.kind.value, p.asset_id)


CheckedCallback = Callable[[ArchivedFile, "Problem | None", int], None]
"""Called on the calling thread after each object: the file, its problem if any, bytes read."""


def check_object(storage: Storage, f: ArchivedFile) -> tuple[Problem | None, int]:
    """Stat and re-read one object; returns its problem (None: it matches) and bytes read."""

    def problem(kind: ProblemKind, **extra: Any) -> Problem:
        return Problem(
            kind,
            f.id,
            f.account,
            f.external_id,
            f.storage_key,
            expected_size=f.size,
            expected_sha256=f.sha256,
            **extra,
        )

    if not f.storage_key:
        return problem(ProblemKind.MISSING), 0
    try:
        stat = storage.stat(f.storage_key)
    except (StorageError, OSError) as exc:
        return problem(ProblemKind.UNREADABLE, error=str(exc)), 0
    if stat is None:
        return problem(ProblemKind.MISSING), 0
    if f.size is not None and stat.size != f.size:
        return problem(ProblemKind.SIZE_MISMATCH, actual_size=stat.size), 0
    digest = hashlib.sha256()
    read = 0
    try:
        with storage.open(f.storage_key) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                read += len(chunk)
    except StorageError as exc:
        return problem(ProblemKind.UNREADABLE, error=str(exc)), read
    except OSError as exc:  # a local disk's I/O error surfaces from read()
        return problem(ProblemKind.UNREADABLE, error=f"{exc.strerror or exc}"), read
    except Exception as exc:  # one odd object must not end a walk over a million
        return problem(ProblemKind.UNREADABLE, error=f"{type(exc).__name__}: {exc}"), read
    if f.size is not None and read != f.size:  # changed between stat and read
        return problem(ProblemKind.SIZE_MISMATCH, actual_size=read), read
    actual = digest.hexdigest()
    if f.sha256 is not None and actual != f.sha256:
        return problem(ProblemKind.SHA256_MISMATCH, actual_size=read, actual_sha256=actual), read
    return None, read


def _targets(store: Store, sample: int | None, batch_size: int) -> Iterator[ArchivedFile]:
    if sample is not None:
        yield from store.sample_archived(sample)
        return
    for batch in store.iter_archived(batch_size):
        yield from batch


def verify_archive(
    store: Store,
    storage: Storage,
    sample: int | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    batch_size: int = 1000,
    on_checked: CheckedCallback | None = None,
) -> VerifyReport:
    """Check every archived object (or a random ``sample`` of them) against its row."""
    if sample is not None and sample < 1:
        raise ValueError("sample must be at least 1")
    report = VerifyReport(sampled=sample is not None)
    window = max(1, workers) * 4
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="verify") as pool:
        in_flight: dict[Future[tuple[Problem | None, int]], ArchivedFile] = {}

        def settle(done: Iterable[Future[tuple[Problem | None, int]]]) -> None:
            for fut in done:
                f = in_flight.pop(fut)
                found, read = fut.result()
                report.checked += 1
                report.bytes += read
                if found is not None:
                    report.problems.append(found)
                if on_checked is not None:
                    on_checked(f, found, read)

        for f in _targets(store, sample, batch_size):
            if len(in_flight) >= window:
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                settle(done)
            in_flight[pool.submit(check_object, storage, f)] = f
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            settle(done)
    return report


def verify_with_progress(
    store: Store,
    storage: Storage,
    sample: int | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    console: Console,
) -> VerifyReport:
    """:func:`verify_archive` with a live bar (files checked, bytes read, ETA) on ``console``.

    For terminals only: the bar is transient, the caller prints the findings after.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from genvault.formatting import human_bytes

    files, _ = store.archived_totals()
    total = min(files, sample) if sample is not None else files
    read_so_far = 0
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[read]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("verify", total=total, read="0 B")

        def advance(_f: ArchivedFile, _problem: Problem | None, read: int) -> None:
            nonlocal read_so_far
            read_so_far += read
            progress.update(task, advance=1, read=human_bytes(read_so_far))

        return verify_archive(store, storage, sample, workers=workers, on_checked=advance)
