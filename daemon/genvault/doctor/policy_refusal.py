"""What to say when the network policy refuses a URL doctor probed, and what to set.

The API's ``base_url`` and a sample media URL are refused for the same two reasons a
real sync would refuse them (a host outside the account's ``allowed_hosts``, or a
private address without ``network.allow_private``), so both checks explain the
refusal here, with the config line that lets the URL through.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from genvault.doctor.findings import Level
from genvault.doctor.session import ProbeSession


def report_refusal(session: ProbeSession, check: str, error: str, url: str) -> None:
    """A FAIL finding for ``check``: ``url`` was refused by the policy, with ``error``."""
    if "allowlist" in error:
        host = (urlsplit(url).hostname or "").lower()
        hosts = [*(session.acc.allowed_hosts or ()), host]
        session.add_fix(
            check,
            Level.FAIL,
            f"{url}: the host is not in this account's allowed_hosts ({error})",
            "allowed_hosts",
            hosts,
        )
    elif "private" in error or "shared" in error:
        session.report.add(
            check,
            Level.FAIL,
            f"{url}: a private or loopback address, refused unless allowed ({error})",
            key="network.allow_private",
            suggest="network.allow_private = true",
        )
    else:
        session.report.add(check, Level.FAIL, f"{url}: refused ({error})")


__all__ = ["report_refusal"]
