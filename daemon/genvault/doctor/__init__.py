"""``genvault doctor``: probe each configured account read-only, before trusting a sync.

For every account it checks, with a bounded number of small GETs through the same
network policy and credential rules as a real pass: whether the base URL answers
and the key is accepted (and in which header style), which paging parameter
spelling the server honours, its real page cap, the sort order, whether a sample
generation's detail names more files than its listing entry, whether a sample media
URL answers a one-byte Range GET and whether URLs come relative, the clock skew
against the ``Date`` header and the rate-limit headers seen. APIs without a listing
are asked about a made-up id and must answer "not found" rather than an auth error.

Each check is a :class:`~genvault.doctor.findings.Finding`: ok, warn, fail or skip,
in words, with the config key concerned and the line to set when doctor found one
that works. Nothing is written anywhere: no database, no storage, no state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from genvault.config import Settings
from genvault.doctor.findings import AccountReport, DoctorReport, Finding, Level
from genvault.doctor.probe import probe_account
from genvault.doctor.session import DEFAULT_LIMITS, Limits, ProbeSession, doctor_network
from genvault.net.policy import NetworkPolicy


def diagnose(
    settings: Settings,
    accounts: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    now: Callable[[], datetime] | None = None,
) -> DoctorReport:
    """Probe the named accounts (default: every enabled one), one after the other.

    Raises :class:`~genvault.errors.ConfigError` for a name no account has.
    ``now`` replaces the local clock the ``Date`` headers are compared with (tests).
    """
    names = list(dict.fromkeys(accounts))
    chosen = (
        [settings.account(n) for n in names]
        if names
        else [a for a in settings.accounts if a.enabled]
    )
    network = doctor_network(settings.network)
    policy = NetworkPolicy(allow_private=network.allow_private)
    report = DoctorReport()
    for acc in chosen:
        session = ProbeSession(
            acc, network, policy, environ=environ, limits=limits or DEFAULT_LIMITS, now=now
        )
        report.accounts.append(probe_account(session))
    return report


__all__ = ["AccountReport", "DoctorReport", "Finding", "Level", "Limits", "diagnose"]
