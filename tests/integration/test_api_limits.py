"""API bodies over ``network.max_json_bytes`` are refused while they stream, over real HTTP."""

from __future__ import annotations

import pytest

from genvault.config import NetworkSettings
from genvault.errors import MalformedResponseError
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from tests.fixtures.origin import Origin, Reply

HUGE = b'{"items": [' + b'{"id": "x"},' * 200_000 + b'{"id": "y"}]}'  # ~2.4 MB


def _client(origin: Origin, cap: int) -> ApiClient:
    settings = NetworkSettings(max_json_bytes=cap, api_retries=0, read_timeout=5.0)
    policy = NetworkPolicy(allow_private=True)
    return ApiClient(
        http=build_client(settings, policy),
        base_url=origin.url,
        auth_headers={"Authorization": "Bearer k"},
        settings=settings,
        policy=policy,
    )


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_body_over_the_cap_is_refused_naming_the_cap(declare_length: bool) -> None:
    origin = Origin(
        lambda req: Reply(
            200, {"Content-Type": "application/json"}, HUGE, declare_length=declare_length
        )
    )
    api = _client(origin, cap=1024 * 1024)
    with pytest.raises(MalformedResponseError, match="cap of 1048576"):
        api.get_json("/v1/history")


def test_the_same_body_under_a_larger_cap_is_read() -> None:
    origin = Origin(lambda req: Reply(200, {"Content-Type": "application/json"}, HUGE))
    assert len(_client(origin, cap=8 * 1024 * 1024).get_json("/v1/history")["items"]) == 200_001
