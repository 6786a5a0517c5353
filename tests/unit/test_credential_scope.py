"""Which hops keep an account's credential headers: the same origin only. Pure, no sockets.

The wire-level proof (a real redirect to a second loopback origin that records the
headers it got) is in ``tests/integration/test_hostile_network.py``; loopback cannot
show a scheme change or a host change, so those cases are here.
"""

from __future__ import annotations

import httpx
import pytest

from genvault.net.policy import CredentialScope

KEY = "sk-scope-3d1e"
SCOPE = CredentialScope.of(
    "https://api.geminigen.ai/uapi/v1",
    {"x-api-key": KEY, "token": KEY, "Accept": "application/json"},
)


def _after_hop(url: str) -> dict[str, str]:
    request = httpx.Request(
        "GET",
        url,
        headers={"x-api-key": KEY, "token": KEY, "Authorization": KEY, "Accept": "a/j"},
    )
    SCOPE.strip(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    "url",
    [
        "https://api.geminigen.ai/uapi/v1/histories",
        "https://api.geminigen.ai:443/other/path?x=1",
        "https://API.GeminiGen.AI./uapi/v1/histories",
    ],
)
def test_the_same_origin_keeps_the_key(url: str) -> None:
    headers = _after_hop(url)
    assert headers["x-api-key"] == headers["token"] == headers["authorization"] == KEY


@pytest.mark.parametrize(
    "url",
    [
        "http://api.geminigen.ai/uapi/v1/histories",  # a downgrade to plain http
        "https://api.geminigen.ai:8443/uapi/v1/histories",
        "https://cdn.geminigen.ai/uapi/v1/histories",  # a sibling host
        "https://geminigen.ai/uapi/v1/histories",  # the parent domain
        "https://api.geminigen.ai.evil.example/uapi/v1",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
def test_any_other_origin_loses_every_credential_header(url: str) -> None:
    headers = _after_hop(url)
    assert not any(KEY in v for v in headers.values()), headers
    assert headers["accept"] == "a/j", "headers that carry no secret are kept"
