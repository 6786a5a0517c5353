"""Akool get-result bodies -> GenerationRecord, and the business-code envelope.

``akool_get_result.json`` is the seed's example response (providers.md §3, "Get-result
response", from docs.akool.com "Get Image Result") verbatim. Akool's docs elide the
image URL as ``"https://…"``; the fixture keeps that, so the record's result URL is
that literal string (it is a syntactically valid https URL with a one-character host).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from genvault.config import NetworkSettings
from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    PermanentProviderError,
)
from genvault.net.api import ApiClient
from genvault.net.policy import NetworkPolicy
from genvault.providers.akool import CODES, Akool, AkoolOptions, parse_item, unwrap
from genvault.records import GenerationRecord, GenerationStatus, MediaKind, MediaRole
from tests.records import check_record, load_seed
from tests.strategies import JSON_VALUES

ID = "662a10df4197b3af58532e89"
CREATED = datetime(2024, 4, 25, 8, 14, 23, 272000, tzinfo=UTC)
DEADLINE = datetime(2024, 5, 2, 8, 14, 23, 272000, tzinfo=UTC)
IMG = "https://cdn.akool.example/image/662a10df4197b3af58532e89.png"
UP1 = "https://cdn.akool.example/upscale/662a10df4197b3af58532e89_U1.png"
UP2 = "https://cdn.akool.example/upscale/662a10df4197b3af58532e89_U2.png"


@pytest.fixture
def body() -> dict[str, Any]:
    doc: dict[str, Any] = load_seed("akool_get_result.json")
    return doc


@pytest.fixture
def item(body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = body["data"]
    return data


def _media(rec: GenerationRecord) -> list[tuple[str, MediaRole, MediaKind]]:
    return [(m.url, m.role, m.kind) for m in rec.media]


# --------------------------------------------------------------------------- the seed example


def test_seed_example_record(body: dict[str, Any]) -> None:
    rec = parse_item(unwrap(body))
    assert rec.external_id == ID
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "3"
    assert rec.created_at == CREATED
    assert rec.expires_at == DEADLINE
    for dt in (rec.created_at, rec.expires_at):
        assert dt is not None and dt.utcoffset() == timedelta(0)
    assert rec.completed_at is None and rec.updated_at is None  # Akool sends neither
    assert rec.kind == "image"
    assert rec.model is None and rec.prompt is None and rec.error is None
    assert _media(rec) == [("https://…", MediaRole.RESULT, MediaKind.IMAGE)]
    assert rec.media[0].url_expires_at is None
    assert rec.needs_detail is False
    assert rec.raw == body["data"]


def test_whole_envelope_parses_too(body: dict[str, Any]) -> None:
    assert parse_item(body) == parse_item(body["data"])


def test_unknown_fields_are_kept_in_raw(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "model_name": "flux-pro", "brand_new": {"x": [1, 2]}})
    assert rec.raw["faceswap_quality"] == 2
    assert rec.raw["uid"] == 378337
    assert rec.raw["buttons"] == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    assert rec.raw["brand_new"] == {"x": [1, 2]}


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, GenerationStatus.QUEUED),
        (2, GenerationStatus.RUNNING),
        (3, GenerationStatus.SUCCEEDED),
        (4, GenerationStatus.FAILED),
        ("3", GenerationStatus.SUCCEEDED),
        ("4", GenerationStatus.FAILED),
        (3.0, GenerationStatus.SUCCEEDED),
        (0, GenerationStatus.UNKNOWN),
        (9, GenerationStatus.UNKNOWN),
        (None, GenerationStatus.UNKNOWN),
        ("done", GenerationStatus.UNKNOWN),
        (True, GenerationStatus.UNKNOWN),
    ],
)
def test_status_mapping(item: dict[str, Any], raw: Any, expected: GenerationStatus) -> None:
    rec = parse_item({**item, "image": IMG, "image_status": raw})
    assert rec.status is expected
    assert rec.provider_status == str(raw)
    assert bool(rec.media) == (expected is GenerationStatus.SUCCEEDED)
    assert (rec.error is not None) == (expected is GenerationStatus.FAILED)


def test_failed_reason(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image_status": 4, "image": ""})
    assert rec.status is GenerationStatus.FAILED
    assert rec.error is not None and "image_status 4" in rec.error
    assert rec.media == ()


@pytest.mark.parametrize("status", [1, 2])
def test_in_progress_has_no_media_even_with_a_url(item: dict[str, Any], status: int) -> None:
    rec = parse_item({**item, "image_status": status, "image": IMG, "upscaled_urls": [UP1]})
    assert rec.media == ()
    assert rec.expires_at == DEADLINE  # the deadline is known from create_time already


@pytest.mark.parametrize("image", ["", None, "not a url", "ftp://x/y.png"])
def test_success_without_an_image_url_waits_by_default(item: dict[str, Any], image: Any) -> None:
    rec = parse_item({**item, "image": image})
    assert rec.status is GenerationStatus.RUNNING
    assert rec.provider_status == "3"
    assert rec.error is None


def test_success_without_an_image_url_can_be_failed(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image": ""}, empty_success="failed")
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == "image_status 3 but no image URL"


def test_upscales_alone_are_a_success(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image": "", "upscaled_urls": [UP1]})
    assert rec.status is GenerationStatus.SUCCEEDED
    assert _media(rec) == [(UP1, MediaRole.UPSCALE, MediaKind.IMAGE)]


# --------------------------------------------------------------------------- media


def test_image_then_upscales_deduplicated(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image": IMG, "upscaled_urls": [UP1, IMG, UP2, UP1, "", None, 7]})
    assert _media(rec) == [
        (IMG, MediaRole.RESULT, MediaKind.IMAGE),
        (UP1, MediaRole.UPSCALE, MediaKind.IMAGE),
        (UP2, MediaRole.UPSCALE, MediaKind.IMAGE),
    ]


def test_signed_url_expiry_is_read_from_the_url(item: dict[str, Any]) -> None:
    signed = f"{UP1}?Expires=1714550000&Signature=abc&Key-Pair-Id=K1"
    rec = parse_item({**item, "image": IMG, "upscaled_urls": [signed]})
    by_url = {m.url: m for m in rec.media}
    assert by_url[IMG].url_expires_at is None
    assert by_url[signed].url_expires_at == datetime.fromtimestamp(1714550000, UTC)
    assert by_url[signed].url_expires_at < DEADLINE  # type: ignore[operator]


def test_image_as_a_list_is_tolerated(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image": [IMG, UP1, None]})
    assert _media(rec) == [
        (IMG, MediaRole.RESULT, MediaKind.IMAGE),
        (UP1, MediaRole.RESULT, MediaKind.IMAGE),
    ]


# --------------------------------------------------------------------------- tolerance


def test_wrong_types_are_tolerated(item: dict[str, Any]) -> None:
    rec = parse_item(
        {
            **item,
            "image": IMG,
            "image_status": "3",
            "create_time": "1714032863272",
            "upscaled_urls": None,
            "buttons": None,
            "deduction_credit": "2",
            "uid": "378337",
        }
    )
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.created_at == CREATED and rec.expires_at == DEADLINE
    assert _media(rec) == [(IMG, MediaRole.RESULT, MediaKind.IMAGE)]


def test_upscaled_urls_as_a_string_is_ignored(item: dict[str, Any]) -> None:
    rec = parse_item({**item, "image": IMG, "upscaled_urls": UP1})
    assert [m.url for m in rec.media] == [IMG]


def test_only_an_id_never_raises() -> None:
    rec = parse_item({"_id": ID})
    assert rec.status is GenerationStatus.UNKNOWN
    assert rec.provider_status == "None"
    assert rec.created_at is None and rec.expires_at is None
    assert rec.media == ()


@pytest.mark.parametrize("create_time", [None, "", 0, -5, "soon", 10**20, 1.5, [1], {}])
def test_bad_create_time_gives_no_dates(item: dict[str, Any], create_time: Any) -> None:
    rec = parse_item({**item, "create_time": create_time})
    assert rec.created_at is None or rec.created_at.tzinfo is not None
    if rec.created_at is None:
        assert rec.expires_at is None


def test_create_time_near_the_end_of_time_does_not_overflow(item: dict[str, Any]) -> None:
    ms = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp() * 1000)
    rec = parse_item({**item, "create_time": ms})
    assert rec.created_at is not None and rec.expires_at is None


def test_numeric_id_is_kept_as_text(item: dict[str, Any]) -> None:
    assert parse_item({**item, "_id": 12345}).external_id == "12345"


@pytest.mark.parametrize("bad_id", [None, "", "  ", [], {}])
def test_missing_id_is_malformed(item: dict[str, Any], bad_id: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_item({**item, "_id": bad_id})
    without = {k: v for k, v in item.items() if k != "_id"}
    with pytest.raises(MalformedResponseError):
        parse_item(without)


@pytest.mark.parametrize("payload", [None, [], ID, 3, True, {"data": []}])
def test_non_object_payload_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_item(payload)


# --------------------------------------------------------------------------- envelope / codes


@pytest.mark.parametrize(
    ("code", "exc", "meaning"),
    [
        (1003, BusinessError, "parameter error"),
        (1008, NotFoundError, "content does not exist"),
        (1009, BusinessError, "no permission"),
        (1010, BusinessError, "cannot operate this content"),
        (1101, AuthError, "invalid authorization or token expired"),
        (1102, AuthError, "authorization cannot be empty"),
        (1108, BusinessError, "image generate error"),
        (1200, AuthError, "account banned"),
        (4242, BusinessError, "unknown Akool code"),
        ("1108", BusinessError, "image generate error"),
    ],
)
def test_business_codes(code: Any, exc: type[Exception], meaning: str) -> None:
    with pytest.raises(exc) as info:
        unwrap({"code": code, "msg": "server says hi"})
    text = str(info.value)
    assert f"code {int(code)}" in text and meaning in text and "server says hi" in text
    assert isinstance(info.value, PermanentProviderError)
    if exc is BusinessError:
        assert info.value.code == int(code)  # type: ignore[attr-defined]


def test_every_documented_code_has_a_meaning() -> None:
    assert set(CODES) == {1003, 1008, 1009, 1010, 1101, 1102, 1108, 1200}


def test_code_1000_as_text_is_success(body: dict[str, Any]) -> None:
    assert unwrap({**body, "code": "1000"})["_id"] == ID


@pytest.mark.parametrize(
    "env",
    [
        {"msg": "OK", "data": {"_id": ID}},
        {"code": None, "data": {"_id": ID}},
        {"code": "OK", "data": {"_id": ID}},
        {"code": 1000, "msg": "OK"},
        {"code": 1000, "data": None},
        {"code": 1000, "data": [{"_id": ID}]},
        [],
        "OK",
    ],
)
def test_bad_envelopes_are_malformed(env: Any) -> None:
    with pytest.raises(MalformedResponseError):
        unwrap(env)


# --------------------------------------------------------------------------- class facts


def _provider(**options: Any) -> Akool:
    opts = AkoolOptions(**options)
    api = ApiClient(
        http=httpx.Client(),
        base_url=Akool.default_base_url,
        auth_headers=Akool.auth_headers("k", opts),
        settings=NetworkSettings(),
        policy=NetworkPolicy(),
    )
    return Akool(api, opts, "main", api_key="k")


def test_class_facts() -> None:
    assert Akool.name == "akool"
    assert Akool.default_base_url == "https://openapi.akool.com"
    assert Akool.has_history is False
    assert Akool.retention == timedelta(days=7)
    assert Akool.webhook_auth == "signature"
    prov = _provider()
    assert list(prov.streams()) == []
    with pytest.raises(NotImplementedError):
        prov.fetch_page("all", 1)


def test_auth_headers() -> None:
    assert Akool.auth_headers("KEY", AkoolOptions()) == {"x-api-key": "KEY"}
    bearer = AkoolOptions(auth_style="bearer")
    assert Akool.auth_headers("TOK", bearer) == {"Authorization": "Bearer TOK"}


def test_options_defaults_and_unknown_keys() -> None:
    o = AkoolOptions()
    assert (o.auth_style, o.client_id, o.webhook_max_age_seconds) == ("x-api-key", None, 600)
    assert o.webhook_types == ("image",) and o.empty_success == "running"
    with pytest.raises(ValidationError):
        AkoolOptions.model_validate({"clientId": "x"})
    with pytest.raises(ValidationError):
        AkoolOptions.model_validate({"auth_style": "token"})
    with pytest.raises(ValidationError):
        AkoolOptions(webhook_max_age_seconds=0)


def test_provider_parse_honours_empty_success(item: dict[str, Any]) -> None:
    empty = {**item, "image": ""}
    assert _provider().parse(empty).status is GenerationStatus.RUNNING
    assert _provider(empty_success="failed").parse(empty).status is GenerationStatus.FAILED


# --------------------------------------------------------------------------- properties

_POINTED = (
    st.sampled_from(["", "3", "https://…", "http://[x", f"{UP1}?Expires=zz", f"{UP1}?Expires=9"])
    | st.from_regex(r"\A(https?://|//)?[a-z\[\]:./?=&%0-9]{0,30}\Z")
    | st.integers(min_value=-1, max_value=5)
    | st.integers(min_value=-(10**20), max_value=10**20)
)
ITEM_LIKE = st.fixed_dictionaries(
    {"_id": st.one_of(st.text(max_size=24), JSON_VALUES)},
    optional={
        k: JSON_VALUES | _POINTED | st.lists(JSON_VALUES | _POINTED, max_size=4)
        for k in load_seed("akool_get_result.json")["data"]
        if k != "_id"
    },
)


def _parse_or_malformed(payload: Any) -> None:
    try:
        rec = parse_item(payload)
    except MalformedResponseError:
        return
    check_record(rec)
    assert all(m.kind is MediaKind.IMAGE for m in rec.media)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEM_LIKE)
@example({"_id": "a", "image_status": 3, "image": "http://[abc/x.jpg"})
@example({"_id": "a", "image_status": 3, "create_time": 253402300799999})
@example({"_id": "a", "image_status": 3, "upscaled_urls": [f"{UP1}?Expires=99999999999999"]})
def test_item_shaped_json_only_raises_malformed(payload: dict[str, Any]) -> None:
    _parse_or_malformed(payload)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={"code": JSON_VALUES, "msg": JSON_VALUES}) | JSON_VALUES)
def test_envelopes_only_raise_permanent_provider_errors(env: Any) -> None:
    with contextlib.suppress(PermanentProviderError):
        unwrap(env)
