"""Where genvault may connect, and where an account's credentials may go.

URLs come from third parties (provider answers, webhooks), so this module holds
the rules every request is checked against; :mod:`genvault.net.client` applies
them to every *connection* and every redirect hop:

* :func:`parse_url`: malformed URLs (and hosts disguised as numbers) are refused outright;
* :class:`NetworkPolicy`: http(s) only, an optional per-account host allowlist, and
  addresses globally routable only (loopback, private and carrier-grade NAT space
  open with ``allow_private``; metadata services, link-local, tunnels and reserved
  space never);
* :class:`CredentialScope`: an account's key goes only to its ``base_url`` origin.

Both travel with a request as httpx extensions (:data:`POLICY_EXTENSION`,
:data:`CREDENTIALS_EXTENSION`), which httpx copies onto every redirect.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from genvault.errors import UnsafeURLError
from genvault.net.errors import clip

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4, _V6 = ipaddress.IPv4Network, ipaddress.IPv6Network

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = _V4("0.0.0.0/8")
"""RFC 791 "this network": never a destination (Linux connects 0.0.0.0 to itself);
Python files it under private, so allow_private would otherwise open it."""
_METADATA: tuple[_Net, ...] = (_V4("100.100.100.200/32"), _V6("fd00:ec2::254/128"))
"""Cloud metadata services outside link-local: Alibaba Cloud's (inside carrier-grade NAT
space) and AWS's IPv6 one. 169.254.169.254 is link-local and refused as such."""
_TUNNELS: tuple[_Net, ...] = (_V6("2002::/16"), _V6("2001::/32"), _V4("192.88.99.0/24"))
"""6to4, Teredo and the 6to4 relay anycast: addresses that wrap an arbitrary IPv4
address (2002:7f00:1:: is 127.0.0.1), so their range says nothing about the target.
Python 3.11 calls 6to4 global."""
_SITE_LOCAL = _V6("fec0::/10")
"""Deprecated (RFC 3879) but still routed inside some networks; Python 3.11 calls it global."""
_SHARED = _V4("100.64.0.0/10")
"""RFC 6598 carrier-grade NAT: Tailscale peers, ISP-internal hosts. Not private to
Python, not global either; allow_private opens it like a private range."""
_NOT_GLOBAL: tuple[_Net, ...] = (_V4("192.0.0.0/24"), _V6("3fff::/20"))
"""Ranges Python 3.11's ``is_global`` wrongly admits: IETF protocol assignments
(192.0.0.9 and .10 are anycast services, never a media host) and the IPv6
documentation range of RFC 9637."""
POLICY_EXTENSION = "genvault_policy"
"""Request extension carrying a per-account :class:`NetworkPolicy`; it follows redirects."""
CREDENTIALS_EXTENSION = "genvault_credentials"
"""Request extension carrying a :class:`CredentialScope`; it follows redirects too."""


_NUMBER_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """``url`` parsed, or :class:`UnsafeURLError` ("malformed URL") if no request may use it.

    Beyond what httpx refuses (``InvalidURL``: octal dotted quads, over 64 KB, bad
    IDNA, a broken IPv6 literal; and ``UnicodeError`` from bad punycode), two
    things httpx accepts are refused:

    * a host whose last label is a number but which is not a dotted quad
      (``0x7f.0.0.1``, ``2130706433``, ``127.1``): URL standards read those as an
      IPv4 address, the system resolver turns them into one (127.0.0.1), and no
      CDN names itself that way; the connect-time check would still vet the
      address, but such a host is a disguise, not a name;
    * a port over 65535, which the socket layer wraps (65536 + 80 connects to 80).
    """
    try:
        u = url if isinstance(url, httpx.URL) else httpx.URL(url)
        host, port = u.host, u.port
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError is a ValueError
        raise UnsafeURLError(f"malformed URL: {clip(str(exc))}") from None
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if ":" not in host and _NUMBER_LABEL.fullmatch(last):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            raise UnsafeURLError(
                f"malformed URL: {clip(host)!r} is neither a dotted-quad address nor a name"
            ) from None
    if port is not None and not 0 < port <= 65535:
        raise UnsafeURLError(f"malformed URL: port {port} out of range")
    return u


def _within(ip: _IP, nets: tuple[_Net, ...]) -> bool:
    # Compare like with like: ipaddress does not check versions in ``in``.
    return any(ip.version == net.version and ip in net for net in nets)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Which hosts genvault may connect to."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] | None = None
    """When set, only these host names (and their subdomains) are reachable."""

    def check_url(self, url: str | httpx.URL) -> None:
        """Refuse URLs that are not http(s), malformed, or whose host the allowlist excludes.

        A malformed URL (see :func:`parse_url`) is refused here, as an
        :class:`UnsafeURLError` saying "malformed URL": httpx's own ``InvalidURL``
        is no error class of genvault's, so it escaped as an unexpected exception
        and the file was retried as if the failure might pass.
        """
        u = parse_url(url)
        if u.scheme not in ("http", "https"):
            raise UnsafeURLError(f"refused URL scheme {u.scheme!r}")
        host = u.host.lower().rstrip(".")
        if not host:
            raise UnsafeURLError("refused URL without a host")
        if self.allowed_hosts is not None and not any(
            host == h or host.endswith("." + h) for h in self.allowed_hosts
        ):
            raise UnsafeURLError(f"host {host!r} is not in the allowlist")
        with contextlib.suppress(ValueError):
            self.check_address(ipaddress.ip_address(host.strip("[]")), host)

    def check_address(self, ip: _IP, host: str) -> None:
        """Refuse an address a third-party URL must never reach.

        The rule is "globally routable only", with explicit ranges where Python's
        ``is_global`` is wrong (see the module constants). ``allow_private`` opens
        loopback, private and carrier-grade NAT space for the simulators; metadata
        services, link-local, tunnels and reserved space stay closed regardless.
        """
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        # Reserved before private: Python also counts 0.0.0.0/8, 240/4 and broadcast as
        # "private", and allow_private must never open those (::1 is loopback, though
        # IPv6 files it under the reserved ::/8).
        reserved = (
            ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
            or ip == _BROADCAST
            or _within(ip, (_THIS_NETWORK,))
        )
        if reserved and not ip.is_loopback:
            raise UnsafeURLError(f"refused reserved address {ip} for host {host!r}")
        # Link-local is never allowed: 169.254.169.254 and fd00:ec2::254 are where
        # cloud metadata (and its credentials) lives; no media is served from there.
        if ip.is_link_local:
            raise UnsafeURLError(f"refused link-local address {ip} for host {host!r}")
        if _within(ip, _METADATA):
            raise UnsafeURLError(f"refused cloud metadata address {ip} for host {host!r}")
        if _within(ip, _TUNNELS):
            raise UnsafeURLError(f"refused 6to4/Teredo tunnel address {ip} for host {host!r}")
        if _within(ip, (_SITE_LOCAL,)):
            raise UnsafeURLError(f"refused site-local address {ip} for host {host!r}")
        if ip.is_global and not _within(ip, _NOT_GLOBAL):
            return
        if _within(ip, (_SHARED,)):
            if self.allow_private:
                return
            raise UnsafeURLError(
                f"refused shared (carrier-grade NAT) address {ip} for host {host!r}"
            )
        if ip.is_loopback or ip.is_private:
            if self.allow_private:
                return
            raise UnsafeURLError(f"refused private/loopback address {ip} for host {host!r}")
        raise UnsafeURLError(f"refused non-global address {ip} for host {host!r}")


_DEFAULT_PORTS = {"http": 80, "https": 443}
_NOT_SECRET = frozenset({"accept", "content-type", "user-agent"})


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    scheme = url.scheme.lower()
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, url.host.lower().rstrip("."), port


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """The one origin an account's credential headers may be sent to.

    httpx copies a request's headers onto each redirect and removes only
    ``Authorization`` when the origin changes, so ``x-api-key`` (GeminiGen, Akool)
    and ``token`` (CrowdComputed) went to whatever host a redirect named, plain
    http included. The client's request hook calls :meth:`strip` before every hop.
    """

    origin: tuple[str, str, int]
    headers: frozenset[str]
    """Lower-case names of the headers that carry credentials."""

    @classmethod
    def of(cls, base_url: str, auth_headers: Mapping[str, str]) -> CredentialScope:
        names = frozenset(n.lower() for n in auth_headers) - _NOT_SECRET
        return cls(origin_of(httpx.URL(base_url)), names | {"authorization"})

    def strip(self, request: httpx.Request) -> None:
        """Remove the credential headers from ``request`` unless it goes to the origin.

        Once removed they stay removed for the hops after it (each redirect copies
        the previous request's headers), back at the origin included.
        """
        if origin_of(request.url) != self.origin:
            for name in self.headers:
                request.headers.pop(name, None)


def strip_foreign_credentials(request: httpx.Request) -> None:
    scope = request.extensions.get(CREDENTIALS_EXTENSION)
    if scope is not None:
        scope.strip(request)


def policy_extensions(policy: NetworkPolicy) -> dict[str, Any]:
    """``extensions=`` for a request that must obey ``policy`` on every hop."""
    return {POLICY_EXTENSION: policy}


__all__ = [
    "CREDENTIALS_EXTENSION",
    "POLICY_EXTENSION",
    "CredentialScope",
    "NetworkPolicy",
    "origin_of",
    "parse_url",
    "policy_extensions",
    "strip_foreign_credentials",
]
