"""URLs and redirects from a hostile server, on the wire: address ranges, malformed URLs,
credentials.

Every test runs the real guarded client against scripted loopback origins
(:class:`tests.fixtures.origin.Origin`) and checks what each origin saw, so "refused"
means "never contacted", not just "raised".
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.download import DownloadLimits, open_media
from genvault.errors import PermanentDownloadError
from genvault.http import NetworkPolicy, build_client
from tests.fixtures.origin import Origin, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000
SETTINGS = NetworkSettings(connect_timeout=2.0, read_timeout=2.0, api_retries=0)
OPEN = NetworkPolicy(allow_private=True)
"""The simulators' setting: loopback allowed, so the scripted origins are reachable."""


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(SETTINGS, OPEN) as c:
        yield c


def media_origin() -> Origin:
    return Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG))


def fetch(client: httpx.Client, url: str, policy: NetworkPolicy = OPEN) -> bytes:
    with open_media(client, url, policy=policy, limits=DownloadLimits()) as stream:
        return stream.read()


# --------------------------------------------------------------------------- address ranges


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://100.100.100.200/latest/meta-data/ram/security-credentials/", "metadata"),
        ("http://[::ffff:100.100.100.200]/latest/meta-data/", "metadata"),
        ("http://[2002:7f00:1::1]:{port}/a.png", "6to4"),  # 6to4 around 127.0.0.1
        ("http://192.88.99.1/a.png", "6to4"),
        ("http://[fec0::1]/a.png", "site-local"),
        ("http://0.1.2.3:{port}/a.png", "reserved"),
        ("http://169.254.170.2/v2/credentials", "link-local"),  # ECS task credentials
        ("http://[ff0e::1]/a.png", "reserved"),
    ],
)
def test_redirects_to_ranges_python_misfiles_are_refused(
    client: httpx.Client, location: str, reason: str
) -> None:
    """Even with loopback open (simulator mode) a redirect cannot reach these ranges,
    and the refusal comes before any connection: the target origin sees nothing."""
    target = media_origin()
    hop = Origin(lambda req: Reply(302, {"Location": location.format(port=target.port)}))
    with pytest.raises(PermanentDownloadError, match=reason):
        fetch(client, hop.url + "/start")
    assert len(hop.requests) == 1
    assert target.requests == []


def test_carrier_grade_nat_is_closed_by_default_and_named() -> None:
    """100.64/10 is neither private nor global to Python 3.11: the old guard let it pass."""
    policy = NetworkPolicy()
    with (
        build_client(SETTINGS, policy) as client,
        pytest.raises(PermanentDownloadError, match="carrier-grade NAT"),
    ):
        fetch(client, "http://100.64.0.1/a.png", policy)


# --------------------------------------------------------------------------- malformed URLs


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://0177.0.0.1:{port}/a.png", "octal host httpx refuses"),
        ("http://0x7f.0.0.1:{port}/a.png", "hex host the resolver reads as 127.0.0.1"),
        ("http://2130706433:{port}/a.png", "decimal host the resolver reads as 127.0.0.1"),
        ("http://127.1:{port}/a.png", "short host the resolver reads as 127.0.0.1"),
        ("http://127.0.0.1:{wrapped}/a.png", "a port over 65535 wraps to the origin's"),
        ("http://cdn.example.com/" + "a" * 70_000 + ".png", "over 64 KB"),
        ("http://xn--a.com/a.png", "bad punycode"),
        ("http://\u2603.-com/a.png", "bad IDNA"),
        ("http://[::1/a.png", "unclosed IPv6 literal"),
    ],
)
def test_a_malformed_url_fails_permanently_without_a_request(
    client: httpx.Client, url: str, why: str
) -> None:
    """httpx raises InvalidURL (not a DownloadError) for some of these, so the archive
    took it for a bug and retried it 8 times with a traceback each; others httpx
    accepts and the resolver turns into the origin's address, so the origin was hit."""
    target = media_origin()
    bad = url.format(port=target.port, wrapped=target.port + 65_536)
    with pytest.raises(PermanentDownloadError, match="malformed URL") as err:
        fetch(client, bad)
    assert len(str(err.value)) < 300, "the error must not quote a 64 KB URL"
    assert target.requests == []


def test_a_redirect_to_a_malformed_url_is_permanent(client: httpx.Client) -> None:
    target = media_origin()
    hop = Origin(lambda req: Reply(302, {"Location": f"http://0x7f.0.0.1:{target.port}/a.png"}))
    with pytest.raises(PermanentDownloadError, match="malformed URL"):
        fetch(client, hop.url + "/start")
    octal = Origin(lambda req: Reply(302, {"Location": "http://0177.0.0.1/a.png"}))
    with pytest.raises(PermanentDownloadError, match="malformed URL"):
        fetch(client, octal.url + "/start")
    assert target.requests == []
