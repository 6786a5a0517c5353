"""Provider health: each account's circuit breaker and request budget, kept in the database.

The guards of :mod:`genvault.net.throttle` live in each process; their state is saved
here (one ``provider_health`` row per account, the last writer wins) so that a
``run --once`` started inside a pause sends nothing, and ``status`` and the other
replicas' metrics can show it. The archive storage's breaker is stored here too,
under its own key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genvault.models import utcnow
from genvault.net.throttle import CircuitState, HealthSnapshot
from genvault.store.base import H, StoreBase


@dataclass(frozen=True, slots=True)
class StoredHealth:
    """One ``provider_health`` row: an account's guard state and when it was written."""

    account: str
    provider: str
    health: HealthSnapshot
    updated_at: datetime


class HealthRecords(StoreBase):
    """Saving and reading the stored guard states."""

    def save_provider_health(
        self, account: str, provider: str, health: HealthSnapshot, now: datetime | None = None
    ) -> None:
        """Upsert an account's circuit/budget state (the last writer wins: it is a snapshot)."""
        values: dict[str, Any] = {
            "provider": provider,
            "circuit": health.circuit.value,
            "consecutive_failures": health.consecutive_failures,
            "opened_at": health.opened_at,
            "retry_at": health.retry_at,
            "last_error": (health.last_error or None) and health.last_error[:300],
            "budget_interval": float(health.budget_interval),
            "rate_limited_until": health.rate_limited_until,
            "updated_at": now or utcnow(),
        }
        ins = self._insert(H).values(account=account, **values)
        with self.tx() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["account"],
                    set_={k: getattr(ins.excluded, k) for k in values},
                )
            )

    def provider_health(self, account: str | None = None) -> dict[str, StoredHealth]:
        """Stored guard states by account (accounts never written are absent: healthy)."""
        q = sa.select(H)
        if account is not None:
            q = q.where(H.c.account == account)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out: dict[str, StoredHealth] = {}
        for r in rows:
            try:
                circuit = CircuitState(r.circuit)
            except ValueError:  # written by a newer genvault: assume nothing
                circuit = CircuitState.CLOSED
            out[r.account] = StoredHealth(
                account=r.account,
                provider=r.provider,
                health=HealthSnapshot(
                    circuit=circuit,
                    consecutive_failures=r.consecutive_failures,
                    opened_at=r.opened_at,
                    retry_at=r.retry_at,
                    last_error=r.last_error,
                    budget_interval=float(r.budget_interval),
                    rate_limited_until=r.rate_limited_until,
                ),
                updated_at=r.updated_at,
            )
        return out
