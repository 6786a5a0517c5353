"""The status document: one dict that ``status --json``, the rich ``status`` tables,
and the status page all render, so the three never disagree."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from genvault.config import AccountSettings, Settings
from genvault.formatting import iso

if TYPE_CHECKING:
    from genvault.net.api import ApiClient
    from genvault.store import Store, StoredHealth
    from genvault.store.queries.streams import StreamReport

"""Files whose deadline is this close are "at risk" unless configured otherwise."""
RECENT_FAILURES = 20
"""How many recent failures the document carries (newest first)."""


def _circuit(stored: StoredHealth | None) -> dict[str, Any]:
    """An account's circuit breaker and request budget for ``status`` (healthy if never
    written). ``trial_due``: the cooldown is over, the next call will be a trial."""
    from genvault.net.throttle import CircuitState, HealthSnapshot

    h = stored.health if stored is not None else HealthSnapshot()
    now = datetime.now(UTC)
    return {
        "state": h.circuit.value,
        "consecutive_failures": h.consecutive_failures,
        "opened_at": iso(h.opened_at),
        "retry_at": iso(h.retry_at),
        "trial_due": h.circuit is not CircuitState.CLOSED
        and (h.retry_at is None or h.retry_at <= now),
        "last_error": h.last_error,
        "budget_interval_seconds": h.budget_interval,
        "rate_limited_until": iso(h.rate_limited_until)
        if h.rate_limited_until is not None and h.rate_limited_until > now
        else None,
        "updated_at": iso(stored.updated_at) if stored is not None else None,
    }


def storage_entry(settings: Settings, health: dict[str, StoredHealth]) -> dict[str, Any]:
    """The archive storage and its circuit breaker (:mod:`genvault.storage.guard`), as the
    last archive pass of any process on this database stored it (closed if none did)."""
    from genvault.storage.guard import STORAGE_HEALTH_KEY

    return {"url": settings.storage.url, "circuit": _circuit(health.get(STORAGE_HEALTH_KEY))}


def status_document(settings: Settings, within: timedelta) -> dict[str, Any]:
    """Open the database named in ``settings`` (upgrading it), read the document, close."""
    from genvault.store import Store

    store = Store(settings.database.url)
    try:
        store.upgrade()
        return read_status(store, settings, within)
    finally:
        store.dispose()


def at_risk_window(settings: Settings) -> timedelta:
    """How far ahead "at risk" looks: ``metrics.at_risk_hours``, the window the
    ``genvault_assets_at_risk`` gauge counts, so the page, ``status`` and the alert agree."""
    return timedelta(hours=settings.metrics.at_risk_hours)


def read_status(
    store: Store, settings: Settings, within: timedelta, *, failures: int = RECENT_FAILURES
) -> dict[str, Any]:
    """Per configured account: counts, last sync, next deadline, circuit; the at-risk
    list; the ``failures`` most recent failed, lost or erroring files with their reason.

    ``held``: pending files a live worker is archiving right now; ``waiting``: the
    other pending files (due, backing off, or left by a dead worker, which the next
    pass takes over at once). A lease alone says nothing: a killed run's leases stay
    in the database until the next start (SQLite) or reap (PostgreSQL) frees them.
    """
    from genvault.instance import lock_held
    from genvault.providers.registry import provider_class

    summary = store.summary()
    held = store.held_by_live_workers(process_alive=lock_held(settings.database.url))
    streams = account_streams(store, settings)
    risky = store.at_risk(within)
    recent = store.recent_failures(failures)
    health = store.provider_health()
    skipped = store.skipped_files()
    accounts = []
    for acc in settings.accounts:
        s = summary.get(acc.name, {})
        waiting = max(0, s.get("assets", {}).get("pending", 0) - held.get(acc.name, 0))
        accounts.append(
            {
                "name": acc.name,
                "provider": acc.provider,
                "has_history": provider_class(acc.provider).has_history,
                "generations": s.get("generations", {}),
                "assets": s.get("assets", {}),
                "held": held.get(acc.name, 0),
                "waiting": waiting,
                "bytes_archived": s.get("bytes_archived", 0),
                "last_sync": iso(s.get("last_sync")),
                "last_error": s.get("last_error"),
                "next_deadline": iso(s.get("next_deadline")),
                "circuit": _circuit(health.get(acc.name)),
                "streams": streams.get(acc.name, []),
                # complete: every stream, and no file left waiting (an account without
                # a listing has no stream: its waiting files are all there is to say)
                "complete": not waiting and all(st["complete"] for st in streams.get(acc.name, [])),
                "skipped": skipped_entries(settings, acc, skipped.get(acc.name, {})),
            }
        )
    return {
        "accounts": accounts,
        "storage": storage_entry(settings, health),
        "at_risk": [{k: iso(v) for k, v in r.items()} for r in risky],
        "recent_failures": [{k: iso(v) for k, v in asdict(f).items()} for f in recent],
    }


# --------------------------------------------------------------------------- streams


def configured_streams(acc: AccountSettings) -> tuple[str, ...] | None:
    """The history streams ``acc``'s configuration walks (CrowdComputed: its workflows;
    ``()`` for an API with no listing); None when they cannot be told without a client.

    ``Provider.streams()`` reads the options only, so a provider bound to no API client
    answers it; ``status`` runs without the account's secret.
    """
    from genvault.providers.registry import provider_class, validate_options

    cls = provider_class(acc.provider)
    options = validate_options(acc, f"accounts[{acc.name}]")
    try:
        return tuple(cls(cast("ApiClient", None), options, acc.name).streams())
    except Exception:  # a provider that needs its client to know its streams
        return None


def stream_problems(s: StreamReport) -> list[str]:
    """Why a stream is not complete, in words (empty exactly when it is complete)."""
    out: list[str] = []
    if not s.tracked and not s.retired:
        if s.error:
            out.append(f"sync error: {s.error}")
        if s.last_walk_complete is False:
            reason = f": {s.incomplete_reason}" if s.incomplete_reason else ""
            out.append(f"last walk incomplete{reason}")
        elif s.last_walk_complete is None and s.last_complete_walk_at is None:
            out.append("first walk in progress" if s.walking else "never walked to the end")
    if s.missing:
        out.append(f"{s.missing} missing file{'s' if s.missing != 1 else ''} (failed or lost)")
    return out


def stream_entry(s: StreamReport) -> dict[str, Any]:
    """One stream in the document: every :class:`StreamReport` field, plus ``problems``."""
    return {**{k: iso(v) for k, v in asdict(s).items()}, "problems": stream_problems(s)}


def account_streams(store: Store, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The configured accounts' streams (:meth:`Store.stream_report`), by account."""
    names = [acc.name for acc in settings.accounts]
    configured = {
        acc.name: wanted
        for acc in settings.accounts
        if (wanted := configured_streams(acc)) is not None
    }
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for s in store.stream_report(names, datetime.now(UTC), configured=configured):
        out.setdefault(s.account, []).append(stream_entry(s))
    return out


# --------------------------------------------------------------------------- skipped


def skipped_entries(
    settings: Settings, acc: AccountSettings, counts: dict[tuple[str, str], int]
) -> list[dict[str, Any]]:
    """An account's skipped files by role and kind, each with the setting that leaves
    them out (so a skipped file never looks like a missed one)."""
    from genvault.runtime import account_roles

    roles = account_roles(acc, settings.archive)
    out = []
    for (role, kind), files in sorted(counts.items()):
        if role not in roles:
            if acc.roles is not None:
                why = f"accounts[{acc.name}].roles leaves out {role}"
            elif role in ("thumbnail", "reference"):
                why = f"archive.{role}s = false"
            else:
                why = f"role {role} is not archived"
        elif acc.kinds is not None and kind not in acc.kinds:
            why = f"accounts[{acc.name}].kinds leaves out {kind}"
        else:
            why = "wanted now: queued by the next archive pass"
        out.append({"role": role, "kind": kind, "files": files, "why": why})
    return out
