"""Moving an account's circuit breaker and request budget between memory and the table.

The guard (:class:`genvault.net.throttle.ProviderGuard`) is handed to the account's
runtime (``acc.guard``, the one its API client asks); this module is the only bridge
to ``provider_health``, and only the sync, poll and pipeline code calls it (job
threads, never archive workers, so a download pool never queues on database writes):

* :func:`restore` - before an account's first call in this process, take over
  what the last run stored, so a cron run started while the circuit is open
  skips the provider until its trial time instead of hammering it again;
* :func:`blocked_until` - the skip check at the top of a sync or poll pass;
* :func:`persist` - after a pass, write the state if it changed.

Both directions are best-effort: the table is advice (for the next run and for
``status``), so a database hiccup here is logged and never fails a pass that
otherwise went well; the jobs' own writes report real database trouble. Its lines
name the account the caller bound (a sync or poll pass binds its own, and
:func:`persist_all` binds each in turn; see :mod:`genvault.logs`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from structlog.contextvars import bound_contextvars

from genvault.formatting import iso
from genvault.logs import get_logger
from genvault.net.throttle import CircuitState
from genvault.runtime import AccountRuntime, Runtime

log = get_logger("genvault.health")


def restore(rt: Runtime, acc: AccountRuntime) -> None:
    """Load the stored state into the account's guard, once, before its first call."""
    guard = acc.guard
    if guard.restored:
        return
    try:
        stored = rt.store.provider_health(acc.name).get(acc.name)
    except SQLAlchemyError as exc:
        log.warning("health.restore_failed", error=str(exc)[:300])
        stored = None
    if guard.restore(stored.health if stored is not None else None) and stored is not None:
        h = stored.health
        if h.circuit is not CircuitState.CLOSED or h.budget_interval or h.rate_limited_until:
            log.info(
                "health.restored",
                circuit=h.circuit.value,
                retry_at=iso(h.retry_at),
                budget_interval=h.budget_interval,
            )


def blocked_until(rt: Runtime, acc: AccountRuntime) -> datetime | None:
    """When the account's open circuit allows a trial call; None if calls may go now."""
    restore(rt, acc)
    return acc.guard.breaker.blocked_until()


def persist(rt: Runtime, acc: AccountRuntime) -> None:
    """Write the account's guard state if it changed since it was last written."""
    guard = acc.guard
    snap = guard.unsaved()
    if snap is None:
        return
    try:
        rt.store.save_provider_health(acc.name, acc.provider.name, snap)
    except SQLAlchemyError as exc:  # the next pass tries again: the snapshot stays unsaved
        log.warning("health.persist_failed", error=str(exc)[:300])
        return
    guard.mark_saved(snap)


def persist_all(rt: Runtime) -> None:
    for acc in rt.accounts.values():
        with bound_contextvars(account=acc.name):
            persist(rt, acc)
