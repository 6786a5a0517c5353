"""One account's probes: a handful of read-only GETs that say what is wrong, and what to set.

:func:`probe_account` runs the checks in order on one
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

from genvault.doctor.account import check_reach, configure
from genvault.doctor.findings import AccountReport, Level
from genvault.doctor.headers import check_headers
from genvault.doctor.listing import check_history
from genvault.doctor.session import OutOfBudgetError, ProbeSession
from genvault.doctor.status_call import check_status_call


def probe_account(session: ProbeSession) -> AccountReport:
    """Run every check of ``session``'s account; its report, with requests and time."""
    started = time.monotonic()
    session.start(started)
    try:
        _run_checks(session)
    except OutOfBudgetError as exc:
        session.report.add("limits", Level.SKIP, f"remaining checks skipped: {exc}")
        check_headers(session)
    finally:
        session.close()
        session.report.requests = session.requests
        session.report.seconds = time.monotonic() - started
    return session.report


def _run_checks(session: ProbeSession) -> None:
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


__all__ = ["probe_account"]
