"""Deferred one-part uploads of :class:`~genvault.storage.s3.S3Storage` (``durable=False``).

Why: an archive worker thread is a provider connection slot. When a small file's
``PutObject`` ran in the worker, the slot stayed held for the whole request after its
download had finished (``bench network``: 0.46 s per 1 MB file against an ideal 0.40 s).
Now the worker hands the request, with the probed bytes it already holds, to a small
pool of uploader threads and goes on with its next download; the archive pass waits
for the uploads in :meth:`DeferredUploads.sync` (``Storage.sync``) before it records
anything, as it already did for a folder's fsyncs.

Guarantees:

* **Nothing is reported durable before S3 said so.** :meth:`DeferredUploads.sync`
  returns only when every upload of the keys asked for has finished, and raises
  :class:`~genvault.errors.SyncError` naming each key whose request failed (with S3's
  error, as :func:`~genvault.storage.s3._s3_errors` words it); the others are stored.
  An upload's outcome is kept until a ``sync`` has reported it, then forgotten.
* **The last put of a key wins.** A key put again while an earlier upload of it is
  still running waits for that one first (two requests in flight for one key could
  land in either order); a ``sync`` of the key then reports both.
* **Memory is bounded.** At most :data:`MAX_UPLOADS` uploads, holding at most
  :data:`MAX_BYTES` of bodies, are unfinished at once; a put beyond either waits for
  one to finish (one body larger than the byte cap goes alone). Each body is a probe
  buffer of at most ``multipart_threshold`` bytes (8 MiB by default) that the worker
  would otherwise have held during its own request, so the extra memory is at most
  :data:`MAX_BYTES` (32 MiB) over the synchronous path. What waits for a ``sync`` after
  finishing is a key and an outcome, no bytes.
* **A failing storage is still judged per file, by the worker.** While an upload
  has failed and no ``sync`` has reported it (:attr:`DeferredUploads.failing`), the
  storage's puts are synchronous again: during an outage the next put raises in its
  worker, the storage breaker's probe opens the breaker and the workers stop
  downloading, as before the overlap. The files downloaded meanwhile are bounded by
  the caps (a put waits while the failing uploads retry).
* **Nothing is dropped silently.** :meth:`DeferredUploads.close` refuses new uploads,
  lets the ones queued or running finish and logs any whose outcome no ``sync`` will
  report (their files are not recorded, so the next pass writes them again). At
  interpreter exit, ``concurrent.futures`` also runs the queued uploads to the end.

A process killed with an upload queued or running loses nothing either: the file was
not recorded (that waits for ``sync``), its row still says pending, and a PutObject is
all or nothing on S3, so the next run writes it again, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from genvault.errors import StorageError, SyncError
from genvault.logs import get_logger

log = get_logger("genvault.storage")

UPLOAD_WORKERS = 8
"""Threads sending deferred PutObjects, shared by every put of one storage: as many as
``archive.concurrency`` (default 8) workers, which each leave at most one small file's
request behind at a time when S3 keeps up."""
MAX_UPLOADS = 16
"""Unfinished deferred uploads at most (queued or sending): beyond it a put waits."""
MAX_BYTES = 32 * 1024 * 1024
"""Bytes of unfinished deferred uploads' bodies at most: beyond it a put waits. With
the bench's 1 MB files the count cap binds first; with 8 MiB ones, four bodies."""
_ERRORS_SHOWN = 5


class DeferredUploads:
    """The uploads a storage has accepted but not yet reported through :meth:`sync`.

    Thread-safe: archive workers :meth:`submit`, the pass's main thread :meth:`sync`\\ s.
    """

    def __init__(
        self,
        *,
        workers: int = UPLOAD_WORKERS,
        max_uploads: int = MAX_UPLOADS,
        max_bytes: int = MAX_BYTES,
        name: str = "s3-put",
    ) -> None:
        if workers < 1 or max_uploads < 1 or max_bytes < 1:
            raise ValueError("deferred uploads need at least one worker, upload and byte")
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._cond = threading.Condition()
        self._entries: dict[str, list[Future[None]]] = {}
        """Per key: uploads not yet reported by a sync, running or finished, in order."""
        self._running = 0
        self._running_bytes = 0
        self._failed: set[Future[None]] = set()
        """Uploads that failed and that no sync has reported yet (entered by the upload's
        own thread before its future is done, so a sync that saw it done discards it)."""
        self._closed = False

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> tuple[int, int]:
        """(uploads unfinished, bytes they hold): what the caps bound."""
        with self._cond:
            return self._running, self._running_bytes

    @property
    def failing(self) -> bool:
        """An upload failed and no :meth:`sync` has reported it yet."""
        return bool(self._failed)

    def pending_keys(self) -> list[str]:
        """Keys with an upload not yet reported by :meth:`sync` (finished or not)."""
        with self._cond:
            return list(self._entries)

    def _busy(self, key: str) -> bool:
        return any(not f.done() for f in self._entries.get(key, ()))

    # ------------------------------------------------------------------ writers

    def wait_for(self, key: str) -> None:
        """Wait until no upload of ``key`` is running (a synchronous put of the key then
        cannot be overtaken by an older deferred one)."""
        with self._cond:
            while self._busy(key):
                self._cond.wait()

    def submit(self, key: str, size: int, upload: Callable[[], None]) -> None:
        """Run ``upload`` (one request storing ``key``; ``size`` bytes of body held until
        it returns) on an uploader thread; returns once it is queued.

        Waits first for an earlier upload of ``key`` still running, and while the caps
        are reached. ``upload`` raises a :class:`StorageError` naming the key when S3
        refuses; :meth:`sync` reports it.
        """
        with self._cond:
            while not self._closed and (
                self._busy(key)
                or (
                    self._running > 0
                    and (
                        self._running >= self.max_uploads
                        or self._running_bytes + size > self.max_bytes
                    )
                )
            ):
                self._cond.wait()
            if self._closed:
                raise StorageError(f"storage closed: {key} was not uploaded")
            self._running += 1
            self._running_bytes += size
            mine: list[Future[None]] = []
            future = self._pool.submit(self._run, upload, size, mine)
            mine.append(future)
            self._entries.setdefault(key, []).append(future)
        # Outside the lock: a future already done runs the callback in this thread.
        future.add_done_callback(self._wake)

    def _run(self, upload: Callable[[], None], size: int, mine: list[Future[None]]) -> None:
        """``upload`` on an uploader thread; the counts are settled before its future is
        done, so whoever saw it done (``sync``) sees them settled too."""
        try:
            upload()
        except BaseException:
            with self._cond:  # submit() holds the lock until ``mine`` has the future
                self._failed.add(mine[0])
            raise
        finally:
            with self._cond:
                self._running -= 1
                self._running_bytes -= size

    def _wake(self, _future: Future[None]) -> None:
        """Done: wake the puts waiting for room or for this key (after ``done()`` is true)."""
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ readers

    def sync(self, keys: Iterable[str] | None = None) -> None:
        """Wait for every upload of ``keys`` (all when None), forget them, and raise
        :class:`SyncError` naming each key one of whose uploads failed."""
        with self._cond:
            if keys is None:
                taken = [(k, f) for k, futs in self._entries.items() for f in futs]
            else:
                wanted = dict.fromkeys(keys)
                taken = [(k, f) for k in wanted for f in self._entries.get(k, ())]
        if not taken:
            return
        wait([f for _, f in taken])
        with self._cond:
            for key, future in taken:
                futs = self._entries.get(key)
                if futs is not None and future in futs:
                    futs.remove(future)
                    if not futs:
                        del self._entries[key]
                self._failed.discard(future)
        failed: dict[str, str] = {}
        for key, future in taken:
            exc = future.exception()
            if exc is not None:
                failed[key] = str(exc) or type(exc).__name__
        if failed:
            shown = "; ".join(list(failed.values())[:_ERRORS_SHOWN])
            more = len(failed) - _ERRORS_SHOWN
            raise SyncError(
                f"{len(failed)} of {len(taken)} deferred upload(s) failed: {shown}"
                + (f" (and {more} more)" if more > 0 else ""),
                keys=frozenset(failed),
            )

    def close(self) -> None:
        """Refuse new uploads, finish those queued or running, stop the threads.

        Uploads no :meth:`sync` reported are logged (their files were not recorded: the
        next pass writes them again); their outcomes are then forgotten.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=True)
        with self._cond:
            unreported = sorted(self._entries)
            self._entries.clear()
            self._failed.clear()
        if unreported:
            log.warning(
                "storage.uploads_unreported",
                count=len(unreported),
                keys=unreported[:_ERRORS_SHOWN],
            )


__all__ = ["MAX_BYTES", "MAX_UPLOADS", "UPLOAD_WORKERS", "DeferredUploads"]
