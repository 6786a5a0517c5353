"""The SSRF guard against real sockets: connect-time checks, every redirect hop, allowlists.

Media URLs and redirects are third-party data. The unit tests in
``tests/unit/test_http_policy.py`` cover the address rules; these show the
rules hold on the wire: a host *name* that resolves to loopback is refused at
connect time (what DNS rebinding relies on), a redirect to a forbidden target
is refused before any connection to it, and an account's host allowlist
applies to each hop. Each test checks that the forbidden origin saw nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import PermanentDownloadError, PermanentProviderError
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.media import DownloadLimits, open_media
from genvault.net.policy import NetworkPolicy
from tests.fixtures.origin import Origin, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000
SETTINGS = NetworkSettings(connect_timeout=2.0, read_timeout=2.0, api_retries=0)


def media_origin() -> Origin:
    return Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG))


def redirector(location: str) -> Origin:
    return Origin(lambda req: Reply(302, {"Location": location}))


@pytest.fixture
def open_client() -> Iterator[httpx.Client]:
    """Loopback allowed: the simulator setting."""
    with build_client(SETTINGS, NetworkPolicy(allow_private=True)) as c:
        yield c


def fetch(client: httpx.Client, url: str, policy: NetworkPolicy) -> bytes:
    with open_media(client, url, policy=policy, limits=DownloadLimits()) as stream:
        return stream.read()


def test_a_host_name_resolving_to_loopback_is_refused_at_connect() -> None:
    """``localhost`` passes every URL check; only the connect-time check can stop it."""
    target = media_origin()
    policy = NetworkPolicy(allow_private=False)
    with (
        build_client(SETTINGS, policy) as client,
        pytest.raises(PermanentDownloadError, match="refused private/loopback address"),
    ):
        fetch(client, f"http://localhost:{target.port}/a.png", policy)
    assert target.requests == []


def test_the_same_fetch_works_when_loopback_is_allowed(open_client: httpx.Client) -> None:
    target = media_origin()
    policy = NetworkPolicy(allow_private=True)
    assert fetch(open_client, f"http://localhost:{target.port}/a.png", policy) == PNG


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://0.0.0.0:{port}/a.png", "reserved"),
        ("http://224.0.0.1/x", "reserved"),
        ("file:///etc/passwd", "scheme|redirect"),
        ("ftp://127.0.0.1:{port}/a.png", "scheme|redirect"),
        ("gopher://127.0.0.1:{port}/_x", "scheme|redirect"),
    ],
)
def test_every_redirect_hop_is_checked(
    open_client: httpx.Client, location: str, reason: str
) -> None:
    """Even with loopback allowed (simulator mode), a redirect cannot reach these."""
    target = media_origin()
    hop = redirector(location.format(port=target.port))
    with pytest.raises(PermanentDownloadError, match=reason):
        fetch(open_client, hop.url + "/start", NetworkPolicy(allow_private=True))
    assert len(hop.requests) == 1
    assert target.requests == []


def test_an_account_allowlist_applies_to_each_hop(open_client: httpx.Client) -> None:
    target = media_origin()
    hop = Origin(lambda req: Reply(302, {"Location": f"{target.url}/a.png"}))
    policy = NetworkPolicy(allow_private=True, allowed_hosts=frozenset({"localhost"}))
    # The first hop (localhost) is allowed; the redirect to 127.0.0.1 is not.
    with pytest.raises(PermanentDownloadError, match="not in the allowlist"):
        fetch(open_client, f"http://localhost:{hop.port}/start", policy)
    assert len(hop.requests) == 1
    assert target.requests == []
    # The same client without the account's allowlist follows the redirect.
    assert fetch(open_client, f"http://localhost:{hop.port}/start", NetworkPolicy(True)) == PNG


def test_api_calls_obey_the_account_allowlist_on_redirects(open_client: httpx.Client) -> None:
    target = Origin(lambda req: Reply(200, {"Content-Type": "application/json"}, b"{}"))
    hop = Origin(lambda req: Reply(307, {"Location": f"{target.url}/v1/list"}))
    api = ApiClient(
        http=open_client,
        base_url=f"http://localhost:{hop.port}",
        auth_headers={"Authorization": "Bearer k"},
        settings=SETTINGS,
        policy=NetworkPolicy(allow_private=True, allowed_hosts=frozenset({"localhost"})),
    )
    with pytest.raises(PermanentProviderError, match=r"refused by the network policy.*allowlist"):
        api.get_json("/v1/list")
    assert target.requests == []


def test_too_many_redirects_is_permanent(open_client: httpx.Client) -> None:
    loop: list[Origin] = []
    loop.append(Origin(lambda req: Reply(302, {"Location": loop[0].url + "/again"})))
    with pytest.raises(PermanentDownloadError, match="too many redirects"):
        fetch(open_client, loop[0].url + "/start", NetworkPolicy(allow_private=True))
    assert len(loop[0].requests) == 6  # the first request and five redirects
