"""Which addresses the SSRF guard lets through, range by range, on this Python.

The rule is "globally routable only" (``is_global``) unless ``allow_private``.
Python's own tables are not to be trusted blindly: on 3.11.7 ``is_global`` is
True for 6to4 (2002::/16, which wraps any IPv4 address, 127.0.0.1 included)
and for the deprecated site-local fec0::/10, and ``is_private`` is False for
the carrier-grade NAT range 100.64.0.0/10 (where Alibaba Cloud's metadata
service 100.100.100.200 and Tailscale peers live), so the old check, which
refused only what Python called private, let all three through. Each range is
listed here with what it must do under both policies, so a Python upgrade that
changes the stdlib tables cannot silently change the guard.

The same ranges are checked on the wire (a redirect hop to each one) in
``tests/integration/test_hostile_network.py``.
"""

from __future__ import annotations

import ipaddress

import pytest

from genvault.errors import UnsafeURLError
from genvault.net.policy import NetworkPolicy

DEFAULT = NetworkPolicy()
PRIVATE_OK = NetworkPolicy(allow_private=True)

# (address, what the range is): refused by default AND with allow_private.
ALWAYS_REFUSED = [
    ("100.100.100.200", "Alibaba Cloud metadata, inside 100.64/10"),
    ("169.254.169.254", "AWS/GCP/Azure metadata, link-local"),
    ("169.254.0.1", "IPv4 link-local 169.254/16"),
    ("fe80::1", "IPv6 link-local fe80::/10"),
    ("febf:ffff::1", "the top of fe80::/10"),
    ("fd00:ec2::254", "AWS metadata over IPv6"),
    ("2002::1", "6to4 2002::/16"),
    ("2002:7f00:1::1", "6to4 wrapping 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 wrapping 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo 2001::/32"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("fec0::1", "site-local fec0::/10 (deprecated; Python calls it global)"),
    ("feff::1", "the top of fec0::/10"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network 0.0.0.0/8 (Python calls it private)"),
    ("0.255.255.255", "the top of 0.0.0.0/8"),
    ("240.0.0.1", "reserved 240/4"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "IPv4 multicast"),
    ("239.255.255.250", "IPv4 multicast (SSDP)"),
    ("ff02::1", "IPv6 multicast"),
    ("ff0e::1", "IPv6 global-scope multicast (Python calls it global)"),
    ("::", "IPv6 unspecified"),
    ("::ffff:100.100.100.200", "IPv4-mapped metadata"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("::ffff:0.1.2.3", "IPv4-mapped this-network"),
    ("64:ff9b::7f00:1", "NAT64 wrapping 127.0.0.1"),
]

# Refused by default; allow_private (the simulators' loopback setting) opens them.
PRIVATE = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback 127/8"),
    ("::1", "IPv6 loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("10.0.0.1", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("100.64.0.1", "carrier-grade NAT 100.64/10 (Tailscale peers)"),
    ("100.127.255.254", "the top of 100.64/10"),
    ("fd12:3456::1", "unique local fc00::/7"),
]

# Not globally routable: refused by default. allow_private opens only those among
# them that Python files under private; the test asserts the default alone.
NOT_GLOBAL = [
    ("192.0.0.1", "IETF protocol assignments 192.0.0.0/24"),
    ("192.0.0.9", "192.0.0.0/24 (Python calls .9 global)"),
    ("192.0.0.170", "NAT64 discovery, in 192.0.0.0/24"),
    ("198.18.0.1", "benchmarking 198.18/15"),
    ("198.19.255.254", "the top of 198.18/15"),
    ("192.0.2.1", "documentation TEST-NET-1"),
    ("198.51.100.1", "documentation TEST-NET-2"),
    ("203.0.113.1", "documentation TEST-NET-3"),
    ("2001:db8::1", "IPv6 documentation"),
    ("3fff::1", "IPv6 documentation 3fff::/20 (RFC 9637; Python calls it global)"),
    ("100::1", "IPv6 discard-only 100::/64"),
    ("::127.0.0.1", "IPv4-compatible (deprecated)"),
]

PUBLIC = [
    "8.8.8.8",
    "93.184.216.34",
    "1.1.1.1",
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.1",  # just above it
    "169.253.255.255",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81c::200e",
    "2003::1",  # just above 2002::/16
    "::ffff:8.8.8.8",
]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("address", "what"), ALWAYS_REFUSED)
def test_never_reachable_whatever_the_policy(address: str, what: str) -> None:
    for policy in (DEFAULT, PRIVATE_OK):
        with pytest.raises(UnsafeURLError, match="refused"):
            policy.check_address(_ip(address), what)


@pytest.mark.parametrize(("address", "what"), ALWAYS_REFUSED)
def test_never_reachable_as_a_url_literal(address: str, what: str) -> None:
    host = f"[{address}]" if ":" in address else address
    for policy in (DEFAULT, PRIVATE_OK):
        with pytest.raises(UnsafeURLError):
            policy.check_url(f"http://{host}/latest/meta-data/")


@pytest.mark.parametrize(("address", "what"), PRIVATE)
def test_private_ranges_only_with_allow_private(address: str, what: str) -> None:
    with pytest.raises(UnsafeURLError, match=r"private|shared"):
        DEFAULT.check_address(_ip(address), "h")
    assert PRIVATE_OK.check_address(_ip(address), "h") is None


@pytest.mark.parametrize(("address", "what"), NOT_GLOBAL)
def test_not_globally_routable_is_refused_by_default(address: str, what: str) -> None:
    with pytest.raises(UnsafeURLError):
        DEFAULT.check_address(_ip(address), "h")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert DEFAULT.check_address(_ip(address), "h") is None
    assert PRIVATE_OK.check_address(_ip(address), "h") is None


def test_the_refusal_names_the_range() -> None:
    """An operator reading ``last_error`` should see why, not just "refused"."""
    with pytest.raises(UnsafeURLError, match="metadata"):
        PRIVATE_OK.check_address(_ip("100.100.100.200"), "h")
    with pytest.raises(UnsafeURLError, match="6to4"):
        PRIVATE_OK.check_address(_ip("2002:7f00:1::1"), "h")
    with pytest.raises(UnsafeURLError, match="site-local"):
        PRIVATE_OK.check_address(_ip("fec0::1"), "h")
    with pytest.raises(UnsafeURLError, match="carrier-grade NAT"):
        DEFAULT.check_address(_ip("100.64.0.1"), "tailnet-peer")
