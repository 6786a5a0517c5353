"""API answers nested too deep or holding too many values are malformed, over real HTTP.

Python's JSON decoder recurses once per level of nesting and raises ``RecursionError``
(not a ``ValueError``, so not a :class:`MalformedResponseError`) near 1,000 levels. A
URL refresh runs inside ``archive_one``'s ``except MediaGoneError`` handler, so such an
answer during a refresh took the whole archive pass down. The API client now measures
depth and size before decoding.
"""

from __future__ import annotations

import json

import pytest

from genvault.config import NetworkSettings
from genvault.errors import MalformedResponseError
from genvault.net.api import MAX_JSON_DEPTH, MAX_JSON_VALUES, ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers.geminigen import GeminiGen, GeminiGenOptions
from tests.fixtures.origin import Origin, Reply

SETTINGS = NetworkSettings(api_retries=3, read_timeout=5.0)


def serve(body: bytes) -> Origin:
    return Origin(lambda req: Reply(200, {"Content-Type": "application/json"}, body))


def api(origin: Origin) -> ApiClient:
    policy = NetworkPolicy(allow_private=True)
    return ApiClient(
        http=build_client(SETTINGS, policy),
        base_url=origin.url,
        auth_headers={"x-api-key": "k"},
        settings=SETTINGS,
        policy=policy,
        sleep=lambda s: None,
    )


def nested(depth: int, open_: str = "[", close: str = "]", leaf: str = "1") -> bytes:
    return (open_ * depth + leaf + close * depth).encode()


@pytest.mark.parametrize(
    "body",
    [
        nested(100_000),
        nested(100_000, '{"a":', "}"),
        nested(5_000, '{"a": [', "]}"),
        b"[" * 100_000,  # unbalanced: the decoder itself would recurse
        nested(MAX_JSON_DEPTH + 1),
        nested(MAX_JSON_DEPTH + 1, '{"k": ', "}"),
        b'{"items": [' + nested(MAX_JSON_DEPTH) + b"]}",
    ],
    ids=[
        "arrays",
        "objects",
        "mixed",
        "unclosed",
        "one-too-deep",
        "objects-one-too-deep",
        "deep-in-a-page",
    ],
)
def test_deep_nesting_is_malformed_and_not_retried(body: bytes) -> None:
    origin = serve(body)
    with pytest.raises(MalformedResponseError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        api(origin).get_json("/history/x")
    assert len(origin.requests) == 1, "permanent: the same answer would come again"


def test_nesting_at_the_limit_is_read() -> None:
    assert api(serve(nested(MAX_JSON_DEPTH))).get_json("/x") is not None
    doc = api(serve(nested(MAX_JSON_DEPTH, '{"k": ', "}"))).get_json("/x")
    for _ in range(MAX_JSON_DEPTH):
        doc = doc["k"]
    assert doc == 1


def test_brackets_inside_strings_do_not_count() -> None:
    """Prompts are free text: ``[[[[`` or an escaped quote in one is no nesting."""
    prompt = "[" * 5_000 + '"{' * 100 + "\\" + "]" * 3
    body = json.dumps({"items": [{"prompt": prompt, "tags": ["a,b", "]]"]}]}).encode()
    assert api(serve(body)).get_json("/x")["items"][0]["prompt"] == prompt


def test_more_values_than_the_cap_is_malformed() -> None:
    over = b"[" + b"0," * MAX_JSON_VALUES + b"0]"
    origin = serve(over)
    with pytest.raises(MalformedResponseError, match="more than 1,000,000 values"):
        api(origin).get_json("/x")
    assert len(origin.requests) == 1


def test_values_up_to_the_cap_are_read() -> None:
    body = b"[" + b"0," * (MAX_JSON_VALUES - 2) + b"0]"  # the array and its elements
    assert len(api(serve(body)).get_json("/x")) == MAX_JSON_VALUES - 1


def test_truncated_json_is_still_reported_as_not_json() -> None:
    """The shape check leaves bodies whose brackets do not pair up to the decoder."""
    with pytest.raises(MalformedResponseError, match="not JSON"):
        api(serve(b'{"items": [{"uuid": "a"}, {"uuid": "b"')).get_json("/x")


def test_a_url_refresh_sees_a_malformed_detail_not_a_recursion_error() -> None:
    """What ``archive_one``'s refresh calls: the adapter's ``fetch`` of one generation."""
    origin = serve(b'{"uuid": "u1", "generated_image": ' + nested(50_000) + b"}")
    provider = GeminiGen(api(origin), GeminiGenOptions(), "main")
    with pytest.raises(MalformedResponseError, match="nested deeper"):
        provider.fetch("u1")
