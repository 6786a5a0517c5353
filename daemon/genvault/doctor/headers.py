"""The checks made from the API answers' headers: clock skew and rate limits.

They cost no request of their own: every answer the API client received during the
other checks was kept by the session's :class:`~genvault.net.probe.ResponseLog`, so
they run last, and also when the other checks stopped early (an unreachable API, a
refused key, the budget used up), as long as anything answered.
"""

from __future__ import annotations

import statistics
from typing import Final

from genvault.doctor.findings import AccountReport, Level
from genvault.doctor.session import ProbeSession
from genvault.net.probe import Observation

SKEW_WARN_SECONDS: Final = 30.0
SKEW_FAIL_SECONDS: Final = 300.0
"""Clock skew past which deadlines, signed-URL expiries and webhook ages are judged wrong."""


def check_headers(session: ProbeSession) -> None:
    """Clock skew from ``Date`` and the rate-limit headers of every API answer."""
    seen = list(session.log.observations)
    if not seen:
        return
    _clock(session.report, seen)
    _rate_limit(session.report, seen)


def _clock(report: AccountReport, seen: list[Observation]) -> None:
    """The median skew of the answers' ``Date`` (one odd answer does not decide)."""
    skews = [s for s in (o.skew_seconds for o in seen) if s is not None]
    if not skews:
        report.add("clock", Level.SKIP, "no answer carried a Date header")
        return
    skew = statistics.median(skews)
    report.facts["clock_skew_seconds"] = round(skew, 1)
    ahead = "ahead of" if skew > 0 else "behind"
    words = f"the server's clock is {abs(skew):.0f} s {ahead} this machine's"
    if abs(skew) >= SKEW_FAIL_SECONDS:
        report.add(
            "clock",
            Level.FAIL,
            f"{words}: deadlines and signed-URL expiries are misjudged; "
            "sync this machine's clock (NTP)",
        )
    elif abs(skew) >= SKEW_WARN_SECONDS:
        report.add("clock", Level.WARN, f"{words}: check this machine's clock (NTP)")
    else:
        report.add(
            "clock",
            Level.OK,
            f"the server's Date agrees with this machine's clock ({round(skew):+d} s; "
            f"warned from {SKEW_WARN_SECONDS:g} s)",
        )


def _rate_limit(report: AccountReport, seen: list[Observation]) -> None:
    """The latest value of each quota header, and how many answers were 429."""
    headers: dict[str, str] = {}
    for o in seen:
        headers.update(o.rate_headers)
    limited = sum(o.status == 429 for o in seen)
    if headers:
        report.facts["rate_limit_headers"] = headers
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(headers.items()))
    if limited:
        report.add(
            "rate_limit",
            Level.WARN,
            f"{limited} answer(s) were 429 (rate limited)" + (f"; {shown}" if shown else ""),
        )
    elif headers:
        report.add("rate_limit", Level.OK, f"rate-limit headers seen: {shown}")
    else:
        report.add("rate_limit", Level.OK, "no rate-limit headers seen")


__all__ = ["SKEW_FAIL_SECONDS", "SKEW_WARN_SECONDS", "check_headers"]
