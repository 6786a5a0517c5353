"""Sidecars: each generation's ``generation.json`` beside its files in the archive.

Written for generations whose files are all settled
(:meth:`genvault.store.Store.sidecars_due`), ``archive.concurrency`` at a time:
one by one they were a large share of a run against a real S3 (20-50 ms each).
An archive pass writes them as it goes (:class:`PassSidecars`): between outcome
batches, the generations whose last file it has recorded, one round of PUTs per
wake-up, flushed with that wake-up's media. Written only after the pass, they
kept a run going 1-2.3 s past its last file (benchmark 2, 96 s). What is left
(a generation settled by another replica, a round that met a storage error) is
written by :func:`write_sidecars` after the pass, as before.
A batch's flags are cleared in one transaction, after its objects are durable:
the PUTs defer their flush (``durable=False``) and the batch is flushed at once
(``Storage.sync``) before the transaction, as the archive pass does for media.
On PostgreSQL each batch is claimed (:meth:`~genvault.store.Store.claim_sidecars`),
so replicas ending their passes together share the sidecars instead of each
writing all of them; the batches are smaller there (``CLAIM_PER_SLOT`` per slot)
so that the work splits evenly and a claim is held for a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from genvault.crashpoints import crash_point
from genvault.errors import StorageError
from genvault.formatting import iso
from genvault.logs import get_logger
from genvault.runtime import Runtime
from genvault.storage.keys import sidecar_key
from genvault.store.sidecars import SidecarClaim

log = get_logger("genvault.archive")

CLAIM_PER_SLOT = 8
"""PostgreSQL: generations per claimed batch, per ``archive.concurrency`` slot."""


def sidecar_document(gen: dict[str, Any], storage_location: Callable[[str], str]) -> dict[str, Any]:
    """The ``generation.json`` content: normalized fields, files, and the raw payload."""

    return {
        "genvault_sidecar": 1,
        "provider": gen["provider"],
        "account": gen["account"],
        "external_id": gen["external_id"],
        "status": gen["status"],
        "provider_status": gen["provider_status"],
        "kind": gen["kind"],
        "model": gen["model"],
        "prompt": gen["prompt"],
        "error": gen["error"],
        "created_at": iso(gen["created_at"]),
        "completed_at": iso(gen["completed_at"]),
        "expires_at": iso(gen["expires_at"]),
        "expires_source": gen.get("expires_source"),
        "files": [
            {
                "position": a["position"],
                "role": a["role"],
                "kind": a["kind"],
                "state": a["state"],
                "source_url": a["source_url"],
                "key": a["storage_key"],
                "location": storage_location(a["storage_key"]) if a["storage_key"] else None,
                "size": a["size"],
                "sha256": a["sha256"],
                "content_type": a["content_type"],
                "archived_at": iso(a["archived_at"]),
                "deadline": iso(a["expires_at"]),
                "deadline_from": a.get("expires_source"),
                "error": a["last_error"],
            }
            for a in gen["assets"]
        ],
        "raw": gen["raw"],
    }


def write_sidecars(rt: Runtime, *, accounts: Iterable[str] | None = None, limit: int = 500) -> int:
    """(Re)write ``generation.json`` for generations whose files are all settled.

    The PUTs run ``archive.concurrency`` at a time; each batch is flushed to disk
    (one ``Storage.sync`` for the batch) and only then are its flags cleared, in
    one transaction.
    """
    written = 0
    account_list = list(accounts) if accounts is not None else None
    slots = rt.settings.archive.concurrency
    batch = limit if rt.store.is_sqlite else min(limit, slots * CLAIM_PER_SLOT)
    with ThreadPoolExecutor(slots, thread_name_prefix="sidecar") as pool:
        while True:
            due, done = _due_batch(rt, pool, batch, account_list)
            if done is None:
                return written  # not on disk for sure: their flags stay, the next pass retries
            written += len(done)
            if len(done) < len(due) or len(due) < batch:
                return written  # a storage error: the rest waits for the next pass


class PassSidecars:
    """An archive pass's sidecars, written while the pass runs.

    After each batch's commit the pass tells :meth:`settled` which generations'
    files it recorded; at its next wake-up :meth:`put_due` reads (on PostgreSQL:
    claims, as :func:`write_sidecars` does) the due sidecars among them and stores
    them with their flush deferred, before that wake-up's media flush; the pass
    flushes both with one ``Storage.sync`` and then calls :meth:`flushed`, which
    clears the flags of those on disk (a failed flush clears none). The media a
    sidecar describes were flushed and recorded a wake-up earlier, so a sidecar
    never describes a file that is not on disk, and a flag is never cleared before
    its sidecar is. Riding on the media flush matters on a folder: a flush of its
    own cost a second ``syncfs`` per wake-up, about half of the local benchmark's
    archive phase (52 of them, 0.8-1.2 s of 1.8-2.2 s, while the workers wrote).

    One wake-up stores at most ``archive.concurrency`` sidecars (one round of
    parallel PUTs), so the main thread is back to leasing within a round trip; the
    window keeps the workers supplied meanwhile. Generations not written yet stay
    candidates. After a storage error it stops: the pass's final
    :func:`write_sidecars` decides (it does not run while storage is down).
    """

    def __init__(self, rt: Runtime, accounts: Iterable[str] | None) -> None:
        self.rt = rt
        self.accounts = list(accounts) if accounts is not None else None
        self.limit = rt.settings.archive.concurrency
        self.candidates: set[int] = set()
        self.failed = False
        self._pool: ThreadPoolExecutor | None = None
        self._round: _Round | None = None

    def settled(self, generation_ids: Iterable[int]) -> None:
        """Generations one of whose files was just recorded settled (not pending)."""
        self.candidates.update(generation_ids)

    def put_due(self) -> list[str]:
        """Store the due sidecars among the candidates (one round at most), their flush
        deferred; the keys to flush. :meth:`flushed` must follow that flush."""
        if self.failed or not self.candidates or self._round is not None:
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="sidecar")
        started = time.monotonic()
        stack = contextlib.ExitStack()
        claim: SidecarClaim | None = None
        try:
            if self.rt.store.is_sqlite:
                due = self.rt.store.sidecars_due(
                    self.limit, accounts=self.accounts, generations=self.candidates
                )
            else:  # held until flushed(): another replica's claim skips these rows
                claim = stack.enter_context(
                    self.rt.store.claim_sidecars(
                        self.limit, accounts=self.accounts, generations=self.candidates
                    )
                )
                due = claim.generations
            if len(due) < self.limit:
                # Every due candidate is in this round; the others still have a pending
                # file (its outcome makes them candidates again), were written already,
                # or are held by another replica's claim (which writes them).
                self.candidates.clear()
            else:
                self.candidates.difference_update(gen["id"] for gen in due)
            keys = list(self._pool.map(partial(_put_sidecar, self.rt), due)) if due else []
        except BaseException:
            stack.close()
            raise
        self._round = _Round(stack, claim, due, keys, started)
        return [key for key in keys if key is not None]

    def flushed(self, ok: bool) -> int:
        """After the flush that covered :meth:`put_due`'s keys (``ok``: it succeeded):
        clear the flags of the sidecars stored; how many."""
        r, self._round = self._round, None
        if r is None:
            return 0
        done = (
            [(gen["id"], gen["updated_at"]) for gen, key in zip(r.due, r.keys, strict=True) if key]
            if ok
            else []
        )
        with r.stack:
            if r.claim is not None:
                r.claim.written = done
            else:
                self.rt.store.sidecars_written(done)
        if not ok or len(done) < len(r.due):
            self.failed = True  # a storage error: what is left waits for write_sidecars
        if done:
            log.info(
                "sidecar.written",
                count=len(done),
                seconds=round(time.monotonic() - r.started, 4),
                in_pass=True,
            )
        return len(done)

    def close(self) -> None:
        """Let go of a round never flushed (the pass failed): its flags stay set."""
        r, self._round = self._round, None
        if r is not None:
            r.stack.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@dataclass
class _Round:
    """Sidecars stored by :meth:`PassSidecars.put_due`, waiting for their flush."""

    stack: contextlib.ExitStack[Any]
    claim: SidecarClaim | None
    due: list[dict[str, Any]]
    keys: list[str | None]
    started: float


def _due_batch(
    rt: Runtime,
    pool: ThreadPoolExecutor,
    limit: int,
    accounts: list[str] | None,
) -> tuple[list[dict[str, Any]], list[tuple[int, Any]] | None]:
    """Read (on PostgreSQL: claim) up to ``limit`` due generations, write their
    sidecars, flush them, then clear their flags; (the due, the written or None).

    Each batch written logs ``sidecar.written`` with its time (the pass waits for
    it before it ends: a benchmark's log says what the sidecars cost it)."""
    started = time.monotonic()
    if rt.store.is_sqlite:
        due = rt.store.sidecars_due(limit, accounts=accounts)
        done = _write_batch(rt, pool, due)
        rt.store.sidecars_written(done or [])
    else:  # a short claim: the rest is due nowhere or held by another replica
        with rt.store.claim_sidecars(limit, accounts=accounts) as claim:
            due = claim.generations
            done = _write_batch(rt, pool, due)
            claim.written = done or []
    if done:
        log.info("sidecar.written", count=len(done), seconds=round(time.monotonic() - started, 4))
    return due, done


def _write_batch(
    rt: Runtime, pool: ThreadPoolExecutor, due: list[dict[str, Any]]
) -> list[tuple[int, Any]] | None:
    """PUT the sidecars of ``due`` and flush them; (id, updated_at seen) of each one
    stored, or None when the flush failed (then none of them counts as written)."""
    if not due:
        return []
    keys = list(pool.map(partial(_put_sidecar, rt), due))
    stored = [key for key in keys if key is not None]
    try:
        rt.storage.sync(stored)
    except StorageError as exc:
        log.warning("sidecar.failed", files=len(stored), error=str(exc))
        return None
    return [(gen["id"], gen["updated_at"]) for gen, key in zip(due, keys, strict=True) if key]


def _put_sidecar(rt: Runtime, gen: dict[str, Any]) -> str | None:
    """Write one generation's sidecar, its flush deferred; its key, or None (logged) when
    storage refused it."""
    key = sidecar_key(
        rt.settings.storage.key_template,
        provider=gen["provider"],
        account=gen["account"],
        external_id=gen["external_id"],
        created=gen["created_at"],
        position=0,
        role="result",
        ext="json",
    )
    doc = sidecar_document(gen, rt.storage.location)
    crash_point("archive.sidecar_before_put")
    try:
        rt.storage.put_bytes(
            key,
            json.dumps(doc, indent=2, sort_keys=False, default=str).encode(),
            content_type="application/json",
            metadata={"provider": gen["provider"], "external-id": gen["external_id"][:512]},
            durable=False,
        )
    except StorageError as exc:
        log.warning("sidecar.failed", external_id=gen["external_id"], error=str(exc))
        return None
    crash_point("archive.sidecar_after_put")
    return key
