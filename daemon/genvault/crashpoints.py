"""Crash points: named places where a test can make genvault die on the spot.

genvault promises that a crash at *any* moment loses nothing, duplicates
nothing and corrupts nothing: every side effect (a page of rows, an object in
storage) is either committed whole or redone by the next run. The kill harness
(``tests/crash/``) proves it by SIGKILLing ``genvault run --once`` at chosen
points and checking storage and database against the simulators' truth. Timed
kills alone rarely land in the narrow windows that matter (between an upload
and its database commit, mid-multipart upload), so the code marks those
windows with :func:`crash_point`, in the spirit of FoundationDB's "buggify".

Set ``GENVAULT_CRASH_AT=name:N`` and the process kills itself with SIGKILL
(no cleanup handlers, no ``finally``, exactly like ``kill -9`` or the OOM
killer) the N-th time execution reaches ``crash_point(name)``, counted over
all threads. The variable is read once, at the first call.

In production the variable is unset: every call is one comparison, nothing is
counted and nothing is ever killed.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "GENVAULT_CRASH_AT"

CRASH_POINTS: tuple[str, ...] = (
    # a history page was fetched; its rows and cursor are not saved yet
    "sync.page_fetched",
    # a page's rows and the cursor position covering them were just committed
    "sync.page_saved",
    # a status/detail read came back; it is not saved yet
    "poll.fetched",
    # before each read of a download stream (hit N >= 2: bytes have already streamed)
    "archive.download_read",
    # main thread: an outcome is in hand (the file is stored), not yet committed
    "archive.before_commit",
    # main thread: a batch of outcomes was just committed
    "archive.after_commit",
    # a generation.json is about to be written
    "archive.sidecar_before_put",
    # a generation.json was handed to storage (on S3 its PUT may still be on its way,
    # until the batch's sync); its due flag is not cleared yet
    "archive.sidecar_after_put",
    # each read past the probed first part of a multipart upload (hit N >= 2: the upload
    # is open and parts are on their way or already stored)
    "s3.multipart_read",
    # the multipart upload completed; the sha256 metadata copy has not run
    "s3.before_sha256_copy",
    # an uploader thread is about to send a deferred one-part PutObject: its put returned
    # (the worker reported the file stored), the object is not in S3, nothing recorded
    "s3.deferred_put",
    # a temp file is complete and fsynced, not yet renamed into place
    "local.before_rename",
)
"""Every name passed to :func:`crash_point` in genvault (the harness picks from these)."""

_loaded = False
_target: tuple[str, int] | None = None
_hits = 0
_lock = threading.Lock()


def _parse(raw: str | None) -> tuple[str, int] | None:
    if not raw:
        return None
    name, sep, count = raw.rpartition(":")
    if not sep or name not in CRASH_POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV_VAR} must be 'point:N' with a known point and N >= 1, got {raw!r}")
    return name, int(count)


def _load() -> tuple[str, int] | None:
    global _loaded, _target
    with _lock:
        if not _loaded:
            _target = _parse(os.environ.get(ENV_VAR))
            _loaded = True
        return _target


def crash_point(name: str) -> None:
    """SIGKILL this process if ``GENVAULT_CRASH_AT`` names this point and this hit."""
    global _hits
    target = _target if _loaded else _load()
    if target is None or name != target[0]:
        return
    with _lock:
        _hits += 1
        due = _hits == target[1]
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
