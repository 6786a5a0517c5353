"""Tengr.ai artworks (list and detail share one shape) -> GenerationRecord.

The fixtures are the seed's own examples (seed 003, Tengr.ai "Find artworks"),
verbatim: ``tengrai_artworks.json`` is the 200 example array (lines 88-110 of the
seed, byte for byte) and ``tengrai_error.json`` the error-body example. The seed's
``results: ["string"]`` is a schema placeholder, not a URL: the parser skips it,
and a ``done`` artwork with no usable result is FAILED "done without results".
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
    WebhookRejectedError,
)
from genvault.providers.tengrai import TengrAI, TengrAIOptions, parse_artwork, raise_error_body
from genvault.records import GenerationStatus, MediaKind, MediaRole
from tests.records import check_record, load_seed
from tests.strategies import JSON_VALUES

SEED_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
SEED_CREATED = datetime(2024, 7, 29, 15, 51, 28, 71000, tzinfo=UTC)
IMG1 = "https://cdn.tengr.ai/artworks/3fa85f64/0.png"
IMG2 = "https://cdn.tengr.ai/artworks/3fa85f64/1.png"


@pytest.fixture
def item() -> dict[str, Any]:
    body = load_seed("tengrai_artworks.json")
    assert isinstance(body, list) and len(body) == 1
    first: dict[str, Any] = body[0]
    return first


@pytest.fixture
def done(item: dict[str, Any]) -> dict[str, Any]:
    """The seed item with real result URLs."""
    return {**item, "results": [IMG1, IMG2]}


class _StubApi:
    """Records calls and answers from a queue: enough for the adapter's request logic."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, Any]] = []

    def get_json(self, path: str, params: Any = None) -> Any:
        self.calls.append((path, params))
        return self.answers.pop(0)


def _adapter(api: Any = None, **options: Any) -> TengrAI:
    return TengrAI(cast(Any, api), TengrAIOptions(**options), "main")


# --------------------------------------------------------------------------- the seed example


def test_seed_example_is_failed_done_without_results(item: dict[str, Any]) -> None:
    rec = parse_artwork(item)
    assert rec.external_id == SEED_ID
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == "done without results"
    assert rec.provider_status == "done"
    assert rec.created_at == SEED_CREATED
    assert rec.created_at is not None and rec.created_at.utcoffset() == timedelta(0)
    assert rec.updated_at is None  # no last-change time: the watermark uses created_at
    assert rec.completed_at is None
    assert rec.expires_at == datetime(2024, 8, 6, 15, 51, 28, 71000, tzinfo=UTC)
    assert rec.media == ()
    assert rec.kind == "txt2img"
    assert rec.model == "tengrai-20231128-m-d"
    assert rec.prompt == "cat"
    assert rec.raw is item
    assert rec.needs_detail is False


def test_seed_example_through_the_adapter(item: dict[str, Any]) -> None:
    api = _StubApi([item])
    page = _adapter(api).fetch_page("all", 0)
    assert api.calls == [("v1/artworks", {"offset": 0, "limit": 500})]
    assert [r.external_id for r in page.records] == [SEED_ID]
    assert page.records[0].error == "done without results"
    assert (page.got, page.total, page.errors) == (1, None, 0)  # a bare array: no total


def test_seed_error_body_is_a_business_error_with_its_message() -> None:
    body = load_seed("tengrai_error.json")
    assert body == {"message": "string", "statusCode": 0, "error": "string"}
    with pytest.raises(BusinessError, match="v1/artworks: 0: string") as info:
        raise_error_body(body, "v1/artworks")
    assert info.value.code == 0


# --------------------------------------------------------------------------- results


def test_results_are_image_results_with_the_8_day_deadline(done: dict[str, Any]) -> None:
    rec = parse_artwork(done)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.error is None
    assert [(m.url, m.role, m.kind, m.url_expires_at) for m in rec.media] == [
        (IMG1, MediaRole.RESULT, MediaKind.IMAGE, None),
        (IMG2, MediaRole.RESULT, MediaKind.IMAGE, None),
    ]
    assert rec.expires_at == SEED_CREATED + timedelta(days=8)
    assert rec.completed_at == SEED_CREATED  # duration 0


def test_non_http_results_are_skipped_and_duplicates_dropped(done: dict[str, Any]) -> None:
    results = ["string", "", None, 5, "ftp://x/a.png", "/relative.png", IMG1, IMG1, {"u": 1}]
    rec = parse_artwork({**done, "results": results})
    assert [m.url for m in rec.media] == [IMG1]


def test_kind_follows_the_url_extension(done: dict[str, Any]) -> None:
    video = "https://cdn.tengr.ai/a/clip.mp4"
    rec = parse_artwork({**done, "results": [video, "https://cdn.tengr.ai/a/noext"]})
    assert [m.kind for m in rec.media] == [MediaKind.VIDEO, MediaKind.IMAGE]


def test_result_objects_with_url_are_tolerated(done: dict[str, Any]) -> None:
    rec = parse_artwork({**done, "results": [{"url": IMG1}]})
    assert [m.url for m in rec.media] == [IMG1]


def test_signed_url_expiry_is_kept_per_file(done: dict[str, Any]) -> None:
    signed = f"{IMG1}?Expires=1722355200&Signature=abc"
    rec = parse_artwork({**done, "results": [signed]})
    (m,) = rec.media
    assert m.url_expires_at == datetime(2024, 7, 30, 16, 0, tzinfo=UTC)
    assert rec.expires_at == SEED_CREATED + timedelta(days=8)  # the store takes the earliest


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("done", GenerationStatus.SUCCEEDED),
        ("failed", GenerationStatus.FAILED),
        ("starting", GenerationStatus.QUEUED),
        ("processing", GenerationStatus.RUNNING),
        ("succeeded", GenerationStatus.SUCCEEDED),
        ("canceled", GenerationStatus.FAILED),
        ("cancelled", GenerationStatus.FAILED),
        ("DONE", GenerationStatus.SUCCEEDED),
        ("queued", GenerationStatus.UNKNOWN),
        ("", GenerationStatus.UNKNOWN),
        (None, GenerationStatus.UNKNOWN),
        (3, GenerationStatus.UNKNOWN),
    ],
)
def test_status_mapping(done: dict[str, Any], raw: Any, expected: GenerationStatus) -> None:
    rec = parse_artwork({**done, "status": raw})
    assert rec.status is expected
    assert rec.provider_status == str(raw)
    assert (rec.completed_at is not None) == (expected is GenerationStatus.SUCCEEDED)
    assert bool(rec.media) == (expected is GenerationStatus.SUCCEEDED)
    assert rec.needs_detail is False  # non-terminal items are polled because they are


def test_v2_succeeded_without_results_is_failed(done: dict[str, Any]) -> None:
    rec = parse_artwork({**done, "status": "succeeded", "results": []})
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == "succeeded without results"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"status": "failed"}, "failed (no reason given)"),
        ({"status": "canceled"}, "canceled"),
        ({"status": "failed", "error": "NSFW content"}, "failed: NSFW content"),
        ({"status": "failed", "message": ["a", "b"]}, "failed: a; b"),
    ],
)
def test_failure_reasons(done: dict[str, Any], patch: dict[str, Any], reason: str) -> None:
    rec = parse_artwork({**done, **patch})
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == reason
    assert rec.media == ()


def test_in_progress_artwork_has_no_media(done: dict[str, Any]) -> None:
    rec = parse_artwork({**done, "status": "processing"})
    assert rec.media == () and rec.error is None and rec.completed_at is None
    assert rec.expires_at == SEED_CREATED + timedelta(days=8)


# --------------------------------------------------------------------------- tolerance


def test_completed_at_is_created_plus_duration(done: dict[str, Any]) -> None:
    assert parse_artwork({**done, "duration": 7.5}).completed_at == SEED_CREATED + timedelta(
        seconds=7.5
    )
    assert parse_artwork({**done, "duration": "2"}).completed_at == SEED_CREATED + timedelta(
        seconds=2
    )
    in_ms = parse_artwork({**done, "duration": 2500}, duration_unit="ms")
    assert in_ms.completed_at == SEED_CREATED + timedelta(seconds=2.5)
    odd_values: tuple[Any, ...] = (-1, 10**9, "x", None, [], True)
    for odd in odd_values:
        assert parse_artwork({**done, "duration": odd}).completed_at == SEED_CREATED


def test_unknown_fields_are_kept_in_raw(done: dict[str, Any]) -> None:
    extra = {**done, "organizationId": "org-1", "webhook": "https://hook", "seed": 42}
    rec = parse_artwork(extra)
    assert rec.raw["organizationId"] == "org-1" and rec.raw["seed"] == 42
    assert rec.raw["parameters"]["negativePrompt"] == "string"


def test_only_an_id_is_required() -> None:
    rec = parse_artwork({"id": "a1"})
    assert rec.external_id == "a1"
    assert rec.status is GenerationStatus.UNKNOWN
    assert rec.created_at is None and rec.expires_at is None and rec.completed_at is None
    assert rec.kind is None and rec.model is None and rec.prompt is None and rec.media == ()


def test_wrong_types_are_tolerated(done: dict[str, Any]) -> None:
    item = {
        **done,
        "id": 12345,
        "duration": "3",
        "results": None,
        "parameters": None,
        "createdAt": 1722268288071,  # Unix ms instead of ISO text
    }
    rec = parse_artwork(item)
    assert rec.external_id == "12345"
    assert rec.created_at == SEED_CREATED
    assert rec.status is GenerationStatus.FAILED and rec.error == "done without results"
    assert rec.model is None and rec.prompt is None
    rec2 = parse_artwork({**done, "parameters": {"model": 7, "prompt": ["x"]}, "results": IMG1})
    assert rec2.model == "7" and rec2.prompt is None
    assert rec2.status is GenerationStatus.FAILED  # results must be a list


@pytest.mark.parametrize(
    "created", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "yesterday", -5, 10**20]
)
def test_hostile_created_at_does_not_crash(done: dict[str, Any], created: Any) -> None:
    rec = parse_artwork({**done, "createdAt": created})
    assert rec.external_id == SEED_ID


@pytest.mark.parametrize("bad_id", [None, "", "   ", [], {}])
def test_missing_id_is_malformed(item: dict[str, Any], bad_id: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_artwork({**item, "id": bad_id})
    with pytest.raises(MalformedResponseError):
        parse_artwork({k: v for k, v in item.items() if k != "id"})


@pytest.mark.parametrize("payload", [None, [], SEED_ID, 2, True])
def test_non_object_payload_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_artwork(payload)


# --------------------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"message": "Unauthorized", "statusCode": 401}, AuthError),
        ({"message": "Forbidden resource", "statusCode": 403, "error": "Forbidden"}, AuthError),
        ({"message": "Artwork not found", "statusCode": 404}, NotFoundError),
        ({"message": "ThrottlerException: Too Many Requests", "statusCode": 429}, RateLimitedError),
        ({"message": "boom", "statusCode": "500"}, TransientProviderError),
        ({"message": ["limit must not be greater than 500"], "statusCode": 400}, BusinessError),
        ({"error": "Bad Request", "statusCode": 400}, BusinessError),
        ({"message": "no code"}, BusinessError),
    ],
)
def test_error_bodies_map_to_exceptions(body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        raise_error_body(body, "v2/artworks")
    text = str(info.value)
    assert text.startswith("v2/artworks: ")
    expected = body.get("message") or body.get("error")
    if isinstance(expected, list):
        expected = expected[0]
    assert str(expected) in text


@pytest.mark.parametrize("body", [[], {"id": "x"}, {"foo": 1}, None, "text"])
def test_non_error_bodies_pass(body: Any) -> None:
    raise_error_body(body, "v1/artworks")


# --------------------------------------------------------------------------- adapter logic


def test_class_facts() -> None:
    assert TengrAI.name == "tengrai"
    assert TengrAI.default_base_url == "https://api.tengr.ai"
    assert TengrAI.retention == timedelta(days=8)
    assert TengrAI.webhook_auth == "token"
    assert TengrAI.has_history is True
    assert TengrAI.auth_headers("k-1", TengrAIOptions()) == {"Authorization": "Bearer k-1"}
    assert (_adapter().paging.kind, _adapter().paging.first) == ("offset", 0)
    assert list(_adapter().streams()) == ["all"]


def test_options() -> None:
    o = TengrAIOptions()
    assert (o.api_version, o.page_limit, o.duration_unit) == ("v1", 500, "s")
    TengrAIOptions(page_limit=1, api_version="v2", duration_unit="ms")
    for bad in ({"page_limit": 0}, {"page_limit": 501}, {"api_version": "v3"}, {"base": "x"}):
        with pytest.raises(ValidationError):
            TengrAIOptions(**bad)


def test_offset_paging_and_version_prefix(done: dict[str, Any]) -> None:
    items = [{**done, "id": f"a{i}"} for i in range(3)]
    api = _StubApi(items, items[:1])
    adapter = _adapter(api, api_version="v2", page_limit=3)
    first = adapter.fetch_page("all", 0)
    assert first.got == 3 and len(first.records) == 3
    last = adapter.fetch_page("all", 3)
    assert last.got == 1 and last.position == 3
    assert api.calls == [
        ("v2/artworks", {"offset": 0, "limit": 3}),
        ("v2/artworks", {"offset": 3, "limit": 3}),
    ]


def test_page_with_a_bad_item_counts_it(done: dict[str, Any]) -> None:
    page = _adapter(_StubApi([done, {"id": None}, "junk"]), page_limit=3).fetch_page("all", 0)
    assert [r.external_id for r in page.records] == [SEED_ID]
    assert page.errors == 2
    assert page.got == 3  # the raw item count is what a walk measures, not the parsed one


def test_page_error_body_in_200_and_non_array() -> None:
    body = {"message": "offset must not be less than 0", "statusCode": 400}
    with pytest.raises(BusinessError, match="offset must not be less than 0"):
        _adapter(_StubApi(body)).fetch_page("all", 0)
    with pytest.raises(MalformedResponseError):
        _adapter(_StubApi({"data": []})).fetch_page("all", 0)


def test_fetch_quotes_the_id_and_maps_error_bodies(done: dict[str, Any]) -> None:
    api = _StubApi(done, {"message": "Artwork not found", "statusCode": 404}, {"x": 1})
    adapter = _adapter(api, api_version="v2")
    assert adapter.fetch("a/b c").external_id == SEED_ID
    assert api.calls[0] == ("v2/artworks/a%2Fb%20c", None)
    with pytest.raises(NotFoundError):
        adapter.fetch("gone")
    with pytest.raises(MalformedResponseError):
        adapter.fetch("weird")


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"id": SEED_ID, "status": "succeeded"}).encode(),
        json.dumps({"event": "artwork.completed", "data": {"id": SEED_ID}}).encode(),
    ],
)
def test_webhook_ids(body: bytes) -> None:
    assert _adapter().webhook_ids(body, {}) == [SEED_ID]


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"data": 1}', b'{"id": ""}', b"\xff"])
def test_webhook_rejects_bodies_without_an_id(body: bytes) -> None:
    with pytest.raises(WebhookRejectedError):
        _adapter().webhook_ids(body, {})


# --------------------------------------------------------------------------- properties

_POINTED = (
    st.sampled_from(["", "done", "succeeded", "starting", "failed", "canceled", "http://[x"])
    | st.from_regex(r"\A(https?://|//)?[a-z\[\]:./?=&%0-9]{0,30}\Z")
    | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}(Z|[+-][0-9]{2}:[0-9]{2})?\Z")
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
)
_KEYS = sorted(load_seed("tengrai_artworks.json")[0])
ITEM_LIKE = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=10), JSON_VALUES)},
    optional={
        k: JSON_VALUES
        | _POINTED
        | st.lists(_POINTED | JSON_VALUES, max_size=3)
        | st.dictionaries(st.sampled_from(["model", "prompt", "url"]), _POINTED, max_size=3)
        for k in _KEYS
        if k != "id"
    },
)


def _parse_or_malformed(payload: Any, unit: str = "s") -> None:
    try:
        rec = parse_artwork(payload, duration_unit=unit)
    except MalformedResponseError:
        return
    check_record(rec)
    if rec.status is GenerationStatus.SUCCEEDED:
        assert rec.media


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEM_LIKE, st.sampled_from(["s", "ms"]))
@example({"id": "u", "status": "done", "results": ["http://[abc/x.jpg"]}, "s")
@example({"id": "u", "status": "done", "createdAt": "9999-12-31T23:59:59Z", "duration": 5}, "s")
@example({"id": "u", "status": "done", "createdAt": 2**62, "results": ["https://a/b"]}, "s")
@example({"id": "u", "status": "done", "duration": float("nan"), "results": ["https://a"]}, "s")
@example({"id": "u", "status": "done", "duration": float("inf"), "results": ["https://a"]}, "ms")
def test_item_shaped_json_only_raises_malformed(payload: dict[str, Any], unit: str) -> None:
    _parse_or_malformed(payload, unit)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_error_bodies_raise_only_provider_errors(body: Any) -> None:
    with contextlib.suppress(ProviderError):
        raise_error_body(body, "p")
