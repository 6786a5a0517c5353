"""The storage circuit breaker: while the archive cannot be written, archiving pauses.

Why: a storage failure used to be charged to the file like a download failure, so
an S3 outage of about an hour (``archive.max_attempts`` at the default backoff)
marked every file tried meanwhile ``failed`` for good, although its provider keeps
it for weeks, and every attempt downloaded the file first, for nothing.

How a failure is judged: a write that raised :class:`~genvault.errors.StorageError`
is followed by a *probe* (:meth:`Storage.check`: HeadBucket without retries on S3,
a small write in ``.genvault-tmp`` on a folder). The probe, not the error, decides:

* the probe fails: storage is down. The breaker opens; the file goes back to the
  queue with its attempts unchanged; files waiting in the pool go back without being
  downloaded; the archive pass leases nothing more.
* the probe succeeds: storage answers, so the write failed for this file (a key the
  backend refused, a concurrent overwrite). The file is retried later with backoff,
  its attempts still unchanged: a storage error never uses up a file's attempts while
  its deadline is ahead. Only the deadline gives up on a file.

While open, the pass asks :meth:`StorageGuard.ready` before leasing: every
``PROBE_SECONDS`` one probe goes out (a trial, in :class:`~genvault.net.throttle.CircuitBreaker`
terms, the class reused here with a threshold of one confirmed failure), and the
first that succeeds closes the breaker: everything proceeds at once. A process also
probes before its first lease (a cron run started during an outage downloads
nothing), so each process learns the truth for itself; the state is written to
``provider_health`` under :data:`STORAGE_HEALTH_KEY` only so that ``genvault status``
(another process) and every replica's ``/metrics`` can show it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from genvault.errors import CircuitOpenError, StorageError
from genvault.logs import get_logger
from genvault.net.throttle import (
    Admission,
    CallOutcome,
    CircuitBreaker,
    CircuitState,
    Clock,
    HealthSnapshot,
    WallClock,
)
from genvault.storage.base import Storage

log = get_logger("genvault.storage")

STORAGE_HEALTH_KEY = "(storage)"
"""The ``provider_health`` row of the storage breaker. Account names cannot contain
parentheses (``config._ACCOUNT_NAME``), so it never collides with an account's row,
and reusing the table needs no migration."""
STORAGE_HEALTH_PROVIDER = "storage"
PROBE_SECONDS = 10.0
"""How often an open breaker probes storage. A probe is one cheap request (HeadBucket,
no retries, short timeouts), so it can be frequent: archiving resumes within this
long of storage coming back, which is what the deadlines care about."""

MAX_STRIKES_KEPT = 100_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Probe:
    started: float
    """Monotonic time the probe was sent."""
    ok: bool


class StorageGuard:
    """The breaker in front of one storage backend; thread-safe (archive workers use it)."""

    def __init__(
        self,
        storage: Storage,
        *,
        probe_seconds: float = PROBE_SECONDS,
        clock: Clock = time.monotonic,
        wall: WallClock = _utcnow,
    ) -> None:
        self.storage = storage
        self._clock = clock
        self.breaker = CircuitBreaker(
            failures=1,
            cooldown=probe_seconds,
            name=storage.url,
            clock=clock,
            wall=wall,
            events="storage",
            subject="storage",
        )
        self._probe_lock = threading.Lock()
        """One probe at a time: workers failing together wait for one verdict."""
        self._last: _Probe | None = None
        self._strikes: dict[int, int] = {}
        """Per file: writes refused in a row while storage answered (see :meth:`strike`)."""
        self._strikes_lock = threading.Lock()
        self._saved: HealthSnapshot | None = None
        """What ``provider_health`` holds as far as this process knows (None: not written)."""

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> CircuitState:
        return self.breaker.state

    @property
    def checked(self) -> bool:
        """A probe ran in this process: the state in memory is this process's own finding."""
        return self._last is not None

    def is_open(self) -> bool:
        """Storage is known to be down (a probe is due or in flight counts as down)."""
        return self.breaker.state is not CircuitState.CLOSED

    def retry_at(self) -> datetime | None:
        """When the next probe goes out while open (wall clock); None when closed."""
        return self.breaker.state_fields()[3]

    def last_error(self) -> str | None:
        return self.breaker.state_fields()[4]

    # ------------------------------------------------------------------ decisions

    def ready(self) -> bool:
        """May the archive pass lease (and so download) files now?

        Probes storage at this process's first call, and while open whenever the
        breaker's cooldown says a trial is due; otherwise answers from memory.
        """
        with self._probe_lock:
            if self._last is None:
                ok, error = self._probe()
                self.breaker.record(Admission.NORMAL, _verdict(ok), error)
                return ok
            try:
                admission = self.breaker.admit()
            except CircuitOpenError:  # no probe due yet
                return False
            if admission is Admission.NORMAL:
                return True
            ok, error = self._probe()
            self.breaker.record(admission, _verdict(ok), error)
            return ok

    def confirm_outage(self, failed_at: float) -> bool:
        """A write failed at ``failed_at`` (monotonic): is storage down (True) or was the
        failure about that one file (False)?

        Answered by a probe, unless one sent after the failure already answered, or
        the breaker is open already (then the answer is yes without a request).
        """
        with self._probe_lock:
            if self.breaker.state is not CircuitState.CLOSED:
                return True
            last = self._last
            if last is not None and last.started >= failed_at:
                return not last.ok
            ok, error = self._probe()
            if not ok:
                self.breaker.record(Admission.NORMAL, CallOutcome.DOWN, error)
            return not ok

    def strike(self, asset_id: int) -> int:
        """Count a write of ``asset_id`` refused while storage answered its probe; returns
        how many in a row (1 for the first).

        Such a failure is about the file, not an outage, and still must not use up
        its attempts; this count, kept in memory, spaces its retries out instead
        (a daemon backs off to the hour; a cron run retries it once per run).
        """
        with self._strikes_lock:
            if len(self._strikes) >= MAX_STRIKES_KEPT:
                self._strikes.clear()  # a bound, not a policy: they only space retries
            self._strikes[asset_id] = self._strikes.get(asset_id, 0) + 1
            return self._strikes[asset_id]

    def stored(self, asset_id: int) -> None:
        """``asset_id`` was written: its strikes are forgotten."""
        if self._strikes:
            with self._strikes_lock:
                self._strikes.pop(asset_id, None)

    def _probe(self) -> tuple[bool, str | None]:
        """One :meth:`Storage.check`; never raises (a probe's own bug counts as down)."""
        started = self._clock()
        try:
            self.storage.check()
        except StorageError as exc:
            result: tuple[bool, str | None] = (False, str(exc)[:300])
        except Exception as exc:
            log.exception("storage.probe_crashed", storage=self.storage.url)
            result = (False, f"{type(exc).__name__}: {exc}"[:300])
        else:
            result = (True, None)
        self._last = _Probe(started, result[0])
        if not result[0]:
            log.warning("storage.probe_failed", storage=self.storage.url, error=result[1])
        return result

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> HealthSnapshot:
        state, failures, opened_at, retry_at, last_error = self.breaker.state_fields()
        return HealthSnapshot(
            circuit=state,
            consecutive_failures=failures,
            opened_at=opened_at,
            retry_at=retry_at,
            last_error=last_error if state is not CircuitState.CLOSED else None,
        )

    def unsaved(self) -> HealthSnapshot | None:
        """The snapshot to write, if it differs from what was last written (a process
        that never probed writes nothing: it knows nothing new)."""
        if not self.checked:
            return None
        snap = self.snapshot()
        return None if snap == self._saved else snap

    def mark_saved(self, snap: HealthSnapshot) -> None:
        self._saved = snap


def _verdict(ok: bool) -> CallOutcome:
    return CallOutcome.OK if ok else CallOutcome.DOWN


__all__ = ["PROBE_SECONDS", "STORAGE_HEALTH_KEY", "StorageGuard"]
