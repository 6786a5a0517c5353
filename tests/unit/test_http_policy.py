"""The SSRF policy on URLs and addresses, and retry timing. Pure: no sockets, no DNS.

``check_url`` only inspects the URL (an IP-literal host is vetted right away;
names are vetted per resolved address by the guarded transport, which the
integration tests cover), so everything here runs offline.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genvault.errors import UnsafeURLError
from genvault.net.api import backoff_delay, parse_retry_after
from genvault.net.policy import NetworkPolicy

DEFAULT = NetworkPolicy()
PRIVATE_OK = NetworkPolicy(allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://ftp.example.com/pub/a.jpg",
        "gopher://example.com:70/1",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
    ],
)
def test_refuses_non_http_schemes(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="scheme"):
        DEFAULT.check_url(url)
    with pytest.raises(UnsafeURLError, match="scheme"):
        PRIVATE_OK.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/admin",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1",
        "http://172.16.5.4/",
        "http://192.168.1.1",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/latest/meta-data",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://240.0.0.1/",
        "https://cdn.geminigen.ai@127.0.0.1/x.jpg",  # userinfo does not hide the host
    ],
)
def test_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        DEFAULT.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.216.34/image.png",
        "http://8.8.8.8:8080/",
        "https://[2606:4700:4700::1111]/a.mp4",
        "https://cdn.geminigen.ai/images/hist_abc123def456.jpg",
        "HTTPS://CDN.GEMINIGEN.AI/x.jpg",
    ],
)
def test_allows_public_targets(url: str) -> None:
    assert DEFAULT.check_url(url) is None
    assert DEFAULT.check_url(httpx.URL(url)) is None
    assert PRIVATE_OK.check_url(url) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/", "http://[::1]/", "http://10.0.0.1", "http://192.168.1.1"]
)
def test_allow_private_allows_loopback_and_private(url: str) -> None:
    assert PRIVATE_OK.check_url(url) is None


@pytest.mark.parametrize(
    "address", ["224.0.0.1", "239.255.255.250", "ff02::1", "ff05::2", "4000::1"]
)
def test_allow_private_still_refuses_multicast_and_reserved(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(UnsafeURLError, match="reserved"):
        PRIVATE_OK.check_address(ip, "h")
    with pytest.raises(UnsafeURLError):
        DEFAULT.check_address(ip, "h")


@pytest.mark.parametrize("address", ["240.0.0.1", "255.255.255.255", "0.0.0.0", "::"])
def test_allow_private_refuses_reserved_that_python_calls_private(address: str) -> None:
    """Python counts 0.0.0.0/8, ::, 240/4 and broadcast as is_private; still refused."""
    with pytest.raises(UnsafeURLError, match="reserved"):
        PRIVATE_OK.check_address(ipaddress.ip_address(address), "h")


def test_check_address_unwraps_ipv4_mapped() -> None:
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.1"):
        DEFAULT.check_address(ipaddress.ip_address("::ffff:127.0.0.1"), "h")
    assert DEFAULT.check_address(ipaddress.ip_address("::ffff:8.8.8.8"), "h") is None


def test_error_names_the_host() -> None:
    with pytest.raises(UnsafeURLError, match=r"metadata\.internal"):
        DEFAULT.check_address(ipaddress.ip_address("169.254.169.254"), "metadata.internal")


# --------------------------------------------------------------------------- allowlist

ALLOW = NetworkPolicy(allowed_hosts=frozenset({"geminigen.ai", "storage.googleapis.com"}))


@pytest.mark.parametrize(
    "url",
    [
        "https://geminigen.ai/",
        "https://api.geminigen.ai/uapi/v1/histories",
        "https://cdn.geminigen.ai/x.jpg",
        "https://CDN.GeminiGen.AI./x.jpg",
        "https://storage.googleapis.com/bucket/a.mp4",
    ],
)
def test_allowlist_admits_hosts_and_subdomains(url: str) -> None:
    assert ALLOW.check_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "https://evilgeminigen.ai/",
        "https://geminigen.ai.evil.com/",
        "https://googleapis.com/",
        "https://93.184.216.34/",
    ],
)
def test_allowlist_refuses_other_hosts(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="allowlist"):
        ALLOW.check_url(url)


def test_allowlisted_private_literal_is_still_refused() -> None:
    policy = NetworkPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(UnsafeURLError, match="private"):
        policy.check_url("http://127.0.0.1/")


# --------------------------------------------------------------------------- Retry-After

NOW = datetime(2015, 10, 21, 7, 26, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 08:26:00 +0100", 0.0),  # the same instant as NOW
        ("Wed, 21 Oct 2015 07:28:00", 120.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # already past
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize("value", [None, "", "soon", "Wed, 32 Foo 2015", "12 apples"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_http_date_defaults_to_current_time() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    got = parse_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert got is not None
    assert 3500 < got <= 3600


# --------------------------------------------------------------------------- backoff


@pytest.fixture
def seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(20251001)
    yield
    random.setstate(state)


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(("base", "cap"), [(0.5, 60.0), (1.0, 10.0), (2.0, 2.0)])
def test_backoff_delay_bounds(base: float, cap: float) -> None:
    for attempt in range(25):
        ceiling = min(cap, base * 2**attempt)
        samples = [backoff_delay(attempt, base=base, cap=cap) for _ in range(40)]
        assert all(0 <= d <= ceiling for d in samples), (attempt, ceiling, max(samples))
        # Full jitter: the delays spread over the range rather than sitting at one value.
        assert max(samples) > ceiling / 2
        assert min(samples) < ceiling / 2


@pytest.mark.usefixtures("seeded")
def test_backoff_delay_defaults() -> None:
    assert all(0 <= backoff_delay(0) <= 0.5 for _ in range(50))
    assert all(0 <= backoff_delay(20) <= 60.0 for _ in range(50))


@given(
    attempt=st.integers(min_value=0, max_value=64),
    base=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=0.0, max_value=3600.0),
)
def test_backoff_delay_property(attempt: int, base: float, cap: float) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap)
    assert 0.0 <= delay <= min(cap, base * 2**attempt)
