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
from genvault.errors import AuthError, PermanentDownloadError, PermanentProviderError
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.media import DownloadLimits, open_media
from genvault.net.policy import NetworkPolicy
from genvault.providers.akool import Akool, AkoolOptions
from genvault.providers.crowdcomputed import CrowdComputed, CrowdComputedOptions
from genvault.providers.geminigen import GeminiGen, GeminiGenOptions
from genvault.providers.tengrai import TengrAI, TengrAIOptions
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


# --------------------------------------------------------------------------- credentials

KEY = "sk-redirect-secret-7c41"

AUTH_HEADERS = {
    "geminigen x-api-key": GeminiGen.auth_headers(KEY, GeminiGenOptions()),
    "akool x-api-key": Akool.auth_headers(KEY, AkoolOptions()),
    "crowdcomputed token + Authorization": CrowdComputed.auth_headers(
        KEY, CrowdComputedOptions(auth_style="both")
    ),
    "tengrai bearer": TengrAI.auth_headers(KEY, TengrAIOptions()),
}


def _api(client: httpx.Client, base: Origin, headers: dict[str, str]) -> ApiClient:
    return ApiClient(
        http=client, base_url=base.url, auth_headers=headers, settings=SETTINGS, policy=OPEN
    )


def _leaks(request: httpx.Request) -> list[str]:
    return [f"{k}: {v}" for k, v in request.headers.items() if KEY in v]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("style", list(AUTH_HEADERS))
def test_api_keys_never_follow_a_redirect_to_another_origin(
    client: httpx.Client, style: str, status: int
) -> None:
    """httpx strips only ``Authorization`` on a cross-origin redirect; ``x-api-key`` and
    ``token`` went to whatever host the redirect named. The second origin here is the
    same loopback address on another port: a different origin all the same."""
    elsewhere = Origin(lambda req: Reply(200, {"Content-Type": "application/json"}, b"{}"))
    base = Origin(lambda req: Reply(status, {"Location": f"{elsewhere.url}/v1/list"}))
    assert _api(client, base, AUTH_HEADERS[style]).get_json("/v1/list") == {}
    assert _leaks(base.requests[0]), "the account's own origin gets the key"
    assert len(elsewhere.requests) == 1
    assert _leaks(elsewhere.requests[0]) == []


def test_api_keys_survive_a_redirect_within_the_origin(client: httpx.Client) -> None:
    moved: list[Origin] = []

    def script(req: httpx.Request) -> Reply:
        if req.url.path == "/old":
            return Reply(308, {"Location": f"{moved[0].url}/new"})
        return Reply(200, {"Content-Type": "application/json"}, b'{"ok": true}')

    moved.append(Origin(script))
    headers = AUTH_HEADERS["crowdcomputed token + Authorization"]
    assert _api(client, moved[0], headers).get_json("/old") == {"ok": True}
    assert [len(_leaks(r)) for r in moved[0].requests] == [2, 2]


def test_keys_are_not_sent_back_after_a_detour(client: httpx.Client) -> None:
    """base -> elsewhere -> base: the hop back carries no key either. Keys are attached
    to the first request only and a redirect never adds them again, which is the
    simple rule to prove; a provider that really bounces through another host needs
    its ``base_url`` fixed, and the error below says so."""
    hops: list[Origin] = []
    elsewhere = Origin(lambda req: Reply(302, {"Location": f"{hops[0].url}/back"}))

    def script(req: httpx.Request) -> Reply:
        if req.url.path == "/back":
            return Reply(200, {"Content-Type": "application/json"}, b"[]")
        return Reply(302, {"Location": f"{elsewhere.url}/detour"})

    hops.append(Origin(script))
    assert _api(client, hops[0], AUTH_HEADERS["geminigen x-api-key"]).get_json("/start") == []
    assert _leaks(elsewhere.requests[0]) == []
    assert _leaks(hops[0].requests[1]) == []


def test_a_refusal_from_another_origin_is_not_a_refused_key(client: httpx.Client) -> None:
    """The other origin answers 401 to a request that carried no key: that must not read
    as "the provider refused the key" (an AuthError stops the account), but name the
    redirect and the fix."""
    target = Origin(lambda req: Reply(401, {"Content-Type": "application/json"}, b"{}"))
    base = Origin(lambda req: Reply(302, {"Location": f"{target.url}/v1/list"}))
    with pytest.raises(PermanentProviderError, match=r"another origin.*base_url") as err:
        _api(client, base, AUTH_HEADERS["akool x-api-key"]).get_json("/v1/list")
    assert not isinstance(err.value, AuthError), "the key was never refused: it was not sent"
    assert _leaks(target.requests[0]) == []
