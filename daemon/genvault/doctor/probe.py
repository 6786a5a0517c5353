"""One account's probes: a handful of read-only GETs that say what is wrong, and what to set.

:class:`AccountDoctor` runs the checks in order on one
:class:`~genvault.doctor.session.ProbeSession`: the config and whether the API
answers with the key taken (:mod:`.account`), then the listing checks
(:mod:`.listing`) or, for an API without a listing, the status call
(:mod:`.status_call`), and last the clock and rate limits seen in every answer
(:mod:`.headers`). Only GETs are sent, at most
:data:`~genvault.doctor.session.MAX_REQUESTS` per account and none after its time
limit: when either runs out, the remaining checks are skipped, said as such.

The checks are generic: they use the adapter's own ``auth_headers``, ``paging``,
``fetch_page``, ``fetch`` and ``parse``, and the ``Literal`` alternatives of its
options (:mod:`genvault.doctor.options`). The one per-provider fact is
:attr:`~genvault.providers.base.Provider.doctor_probe_id`, the made-up id an API
without a listing is asked about.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime

from genvault.config import AccountSettings, NetworkSettings
from genvault.doctor.account import check_reach, configure
from genvault.doctor.findings import AccountReport, Level
from genvault.doctor.headers import check_headers
from genvault.doctor.listing import check_history
from genvault.doctor.session import (
    DEFAULT_LIMITS,
    Limits,
    OutOfBudgetError,
    ProbeSession,
)
from genvault.doctor.status_call import check_status_call
from genvault.net.policy import NetworkPolicy


class AccountDoctor:
    """Probes one account and fills an :class:`AccountReport`."""

    def __init__(
        self,
        acc: AccountSettings,
        network: NetworkSettings,
        policy: NetworkPolicy,
        *,
        environ: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.session = ProbeSession(acc, network, policy, environ=environ, limits=limits, now=now)

    def run(self) -> AccountReport:
        session = self.session
        started = time.monotonic()
        session.start(started)
        try:
            self._run()
        except OutOfBudgetError as exc:
            session.report.add("limits", Level.SKIP, f"remaining checks skipped: {exc}")
            check_headers(session)
        finally:
            session.close()
            session.report.requests = session.requests
            session.report.seconds = time.monotonic() - started
        return session.report

    def _run(self) -> None:
        session = self.session
        if not configure(session):
            return
        if not check_reach(session):
            check_headers(session)
            return
        if session.cls.has_history:
            check_history(session)
        else:
            check_status_call(session)
        check_headers(session)


__all__ = ["AccountDoctor"]
