"""QuickRouter ``/v1/video/query`` answers (Grok, Veo, Sora shapes) -> GenerationRecord.

Fixtures (``tests/fixtures/seeds/quickrouter_*.json``):

* ``quickrouter_grok_query.json``: the seed's (004) response example, verbatim. It
  is a *pending* task whose ``id`` lacks the ``grok:`` prefix the task was queried with.
* ``quickrouter_veo_query.json``: the response example of QuickRouter's "Veo 统一查询"
  page (providers.md §5), every key and value as published, through
  ``video_media_id``; the copy of the page available to us breaks off inside the next
  key (``enhanced_promp…``), so the object is closed there.
* ``quickrouter_sora_query.json``: the example of the "Sora 统一查询" page, verbatim
  through ``pending_info.inpaint_items[0]``; the page copy breaks off inside the second
  inpaint item, so the arrays and objects are closed after the first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from genvault.config import NetworkSettings
from genvault.errors import (
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    WebhookRejectedError,
)
from genvault.expiry import url_expiry
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers import quickrouter as qr
from genvault.providers.quickrouter import (
    QuickRouter,
    QuickRouterOptions,
    map_status,
    parse_task,
    same_task,
    unwrap,
    when,
)
from genvault.providers.registry import provider_class
from genvault.records import GenerationStatus, MediaKind, MediaRole
from tests.fixtures.replay import ReplayServer
from tests.records import check_record, load_seed
from tests.strategies import JSON_VALUES

GROK_ASKED = "grok:eee6faa8-9dee-455c-aa82-02ac623adf3a"
VEO_ID = "veo3.1-fast:1770350082-trii1OXZc3"
VEO_VIDEO = "https://pro.filesystem.site/cdn/20260206/9ddbd3bdc67f75a02f766363ebf8eb.mp4"
VEO_INPUT = "https://filesystem.site/cdn/20250702/w8AauvxxPhYoqqkFWdMippJpb9zBxN.png"
SORA_ID = "sora-2:task_01k6x15vhrff09dkkqjrzwhm60"
S3_URL = (
    "https://cdn.example.com/storage/grok/x.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20250619T090000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=abc"
)
DISCORD_URL = "https://cdn.example.com/cdn/x.mp4?ex=6728831f&is=6727319f&hm=deadbeef&"
DONE_MS = 1750323167003
DONE_AT = datetime(2025, 6, 19, 8, 52, 47, 3000, tzinfo=UTC)


def _provider(**options: Any) -> QuickRouter:
    return QuickRouter(cast(ApiClient, None), QuickRouterOptions(**options), "acc")


def _grok(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "u-1", "status": "completed", "video_url": S3_URL}
    body["status_update_time"] = DONE_MS
    body.update(fields)
    return body


# --------------------------------------------------------------------------- the seed


def test_seed_grok_example_queried_with_its_prefixed_id() -> None:
    payload = load_seed("quickrouter_grok_query.json")
    rec = parse_task(payload, GROK_ASKED)
    assert rec.external_id == GROK_ASKED  # not the answer's prefix-less "033fa60e-…"
    assert rec.status is GenerationStatus.QUEUED
    assert rec.provider_status == "pending"
    assert rec.created_at is None  # the grok shape has no creation time: store uses first-seen
    assert rec.updated_at == datetime(2025, 6, 19, 8, 52, 47, 3000, tzinfo=UTC)
    assert rec.completed_at is None and rec.expires_at is None
    assert rec.media == () and rec.error is None
    assert rec.kind == "grok" and rec.model == "grok"
    assert rec.prompt == payload["enhanced_prompt"]  # verbatim, ``` fences included
    assert rec.prompt is not None and rec.prompt.startswith("```\nA surreal and whimsical")
    assert rec.prompt.endswith("saturated colors.\n```")
    assert rec.raw == payload
    assert not rec.status.terminal  # must be polled again


def test_seed_grok_example_parsed_alone_keeps_the_answer_id() -> None:
    rec = _provider().parse(load_seed("quickrouter_grok_query.json"))
    assert rec.external_id == "033fa60e-f37c-4ff6-a44d-5585ffea938d"
    assert rec.kind is None and rec.model is None


def test_veo_example_completed_despite_a_stale_error_message() -> None:
    payload = load_seed("quickrouter_veo_query.json")
    rec = _provider().parse(payload)
    assert rec.external_id == VEO_ID
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "completed"
    assert rec.error is None  # the reCAPTCHA message belongs to an earlier retry
    assert rec.created_at == datetime(2026, 2, 6, 3, 54, 42, 99000, tzinfo=UTC)
    assert rec.completed_at == datetime(2026, 2, 6, 3, 58, 48, 994000, tzinfo=UTC)
    assert rec.expires_at == rec.completed_at + timedelta(hours=24)
    assert rec.kind == "veo3.1-fast" and rec.model == "veo3.1-fast"
    assert rec.prompt == "make animate"
    assert [(m.url, m.role, m.kind) for m in rec.media] == [
        (VEO_VIDEO, MediaRole.RESULT, MediaKind.VIDEO),
        (VEO_INPUT, MediaRole.REFERENCE, MediaKind.IMAGE),  # images[] and req.images: once
    ]
    assert all(m.url_expires_at is None for m in rec.media)
    assert rec.raw["detail"]["video_media_id"].startswith("CAUSJ")


def test_sora_example_pending_but_processing_is_running() -> None:
    payload = load_seed("quickrouter_sora_query.json")
    rec = _provider().parse(payload)
    assert rec.external_id == SORA_ID
    assert rec.status is GenerationStatus.RUNNING  # detail "pending", pending_info "processing"
    assert rec.provider_status == "pending"
    assert rec.created_at == datetime(2025, 10, 6, 15, 10, 26, 875729, tzinfo=UTC)
    assert rec.kind == "sora-2"
    assert rec.model == "sora-2"  # not the upstream code name "sy_ore"
    assert rec.prompt == "make animate"
    assert rec.media == () and rec.expires_at is None and rec.completed_at is None


def test_sora_completed_lists_its_url_and_inputs() -> None:
    payload = load_seed("quickrouter_sora_query.json")
    payload["detail"]["status"] = "completed"
    payload["detail"]["url"] = DISCORD_URL
    payload["detail"]["completed_at"] = "2025-10-06T15:14:00.000Z"
    rec = _provider().parse(payload)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.completed_at == datetime(2025, 10, 6, 15, 14, tzinfo=UTC)
    assert [(m.role, m.kind) for m in rec.media] == [
        (MediaRole.RESULT, MediaKind.VIDEO),
        (MediaRole.REFERENCE, MediaKind.IMAGE),
        (MediaRole.REFERENCE, MediaKind.IMAGE),
    ]


# --------------------------------------------------------------------------- status table

TABLE = [
    ("pending", GenerationStatus.QUEUED),
    ("queued", GenerationStatus.QUEUED),
    ("submitted", GenerationStatus.QUEUED),
    ("NOT_START", GenerationStatus.QUEUED),
    ("SUBMITTED", GenerationStatus.QUEUED),
    ("processing", GenerationStatus.RUNNING),
    ("in_progress", GenerationStatus.RUNNING),
    ("running", GenerationStatus.RUNNING),
    ("video_generating", GenerationStatus.RUNNING),
    ("IN_PROGRESS", GenerationStatus.RUNNING),
    ("completed", GenerationStatus.SUCCEEDED),
    ("success", GenerationStatus.SUCCEEDED),
    ("succeed", GenerationStatus.SUCCEEDED),
    ("SUCCESS", GenerationStatus.SUCCEEDED),
    ("failed", GenerationStatus.FAILED),
    ("error", GenerationStatus.FAILED),
    ("cancelled", GenerationStatus.FAILED),
    ("canceled", GenerationStatus.FAILED),
    ("FAILURE", GenerationStatus.FAILED),
    ("video_generation_failed", GenerationStatus.FAILED),
]


@pytest.mark.parametrize(("raw", "expected"), TABLE)
def test_every_status_of_the_table(raw: str, expected: GenerationStatus) -> None:
    rec = parse_task(_grok(status=raw))
    assert rec.status is expected
    assert rec.provider_status == raw
    assert map_status(raw, has_url=True) is expected


@pytest.mark.parametrize("raw", ["completed", "success", "succeed", "SUCCESS"])
def test_completed_without_url_keeps_polling(raw: str) -> None:
    rec = parse_task(_grok(status=raw, video_url=None))
    assert rec.status is GenerationStatus.RUNNING
    assert rec.media == () and rec.expires_at is None


def test_unknown_status_is_running_and_logged_once_per_value() -> None:
    qr._unknown_statuses.discard("teleporting")
    with capture_logs() as logs:
        first = parse_task(_grok(status="teleporting"))
        second = parse_task(_grok(status="teleporting"))
    assert first.status is second.status is GenerationStatus.RUNNING
    warned = [e for e in logs if e["event"] == "provider.unknown_status"]
    assert len(warned) == 1 and warned[0]["status"] == "teleporting"


def test_missing_status_is_running() -> None:
    rec = parse_task({"id": "grok:x"})
    assert rec.status is GenerationStatus.RUNNING and rec.provider_status == ""


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error_message": "quota exceeded"}, "quota exceeded"),
        ({"error": "content moderation"}, "content moderation"),
        ({"error": {"code": "E42", "message": "bad prompt"}}, "E42: bad prompt"),
        ({"failReason": "banned prompt"}, "banned prompt"),
        ({"detail": {"failure_reason": "policy"}}, "policy"),
        ({"detail": {"error_message": "[500] upstream"}}, "[500] upstream"),
        ({}, "failed (no reason given)"),
    ],
)
def test_failed_reason(fields: dict[str, Any], reason: str) -> None:
    rec = parse_task({"id": "veo3:1", "status": "failed", **fields})
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == reason
    assert rec.media == () and rec.completed_at is None


def test_failed_in_detail_only() -> None:
    rec = parse_task({"id": "veo3:1", "detail": {"status": "failed", "error_message": "x"}})
    assert rec.status is GenerationStatus.FAILED and rec.error == "x"


def test_top_status_wins_over_detail() -> None:
    rec = parse_task({"id": "a:b", "status": "processing", "detail": {"status": "failed"}})
    assert rec.status is GenerationStatus.RUNNING


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a:b", "status": "completed", "result_url": VEO_VIDEO},
        {"id": "a:b", "status": "completed", "url": VEO_VIDEO},
        {"id": "a:b", "detail": {"status": "completed", "video_url": VEO_VIDEO}},
        {"id": "a:b", "detail": {"status": "completed", "result_url": VEO_VIDEO}},
        {"id": "a:b", "detail": {"status": "completed", "url": VEO_VIDEO}},
    ],
)
def test_url_found_in_any_documented_place(body: dict[str, Any]) -> None:
    rec = parse_task(body)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert [m.url for m in rec.media] == [VEO_VIDEO]


# --------------------------------------------------------------------------- tolerance


def test_unknown_fields_are_kept_in_raw() -> None:
    body = _grok(progress="87%", new_field={"nested": [1, 2]})
    rec = parse_task(body)
    assert rec.raw["new_field"] == {"nested": [1, 2]} and rec.raw["progress"] == "87%"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "x"},
        {"id": "x", "detail": None},
        {"id": "x", "detail": []},
        {"id": "x", "detail": {"req": None, "images": None, "pending_info": None}},
        {"id": "x", "detail": {"req": {"images": None}, "input": "text"}},
        {"id": "x", "status": "completed", "video_url": "not a url"},
        {"id": "x", "status": None, "video_url": 12, "status_update_time": None},
        {"detail": {"id": "x"}},
    ],
)
def test_missing_or_odd_optional_fields_never_raise(body: dict[str, Any]) -> None:
    rec = parse_task(body)
    assert rec.external_id == "x"
    assert rec.media == ()


def test_wrong_types_are_tolerated() -> None:
    body = {
        "id": "veo3:1",
        "detail": {
            "status": "completed",
            "video_url": VEO_VIDEO,
            "created_at": "1770350082099",  # ms as a string
            "completed_at": 1770350328.994e3,  # ms as a float
            "images": [None, 3, {"url": None}, VEO_INPUT],  # odd entries and a bare URL
            "req": {"images": None, "model": 2, "prompt": ["list"]},
        },
    }
    rec = parse_task(body)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.created_at == datetime(2026, 2, 6, 3, 54, 42, 99000, tzinfo=UTC)
    assert rec.completed_at == datetime(2026, 2, 6, 3, 58, 48, 994000, tzinfo=UTC)
    assert rec.model == "2" and rec.prompt is None
    assert [m.url for m in rec.media] == [VEO_VIDEO, VEO_INPUT]


def test_numeric_id_and_seconds_timestamp() -> None:
    rec = parse_task({"id": 1743326750223591, "status": "SUCCESS", "url": VEO_VIDEO,
                      "status_update_time": "1750323167"})  # fmt: skip
    assert rec.external_id == "1743326750223591"
    assert rec.completed_at == datetime(2025, 6, 19, 8, 52, 47, tzinfo=UTC)


@pytest.mark.parametrize("payload", [None, [], "text", 3, {"status": "pending"}, {"id": ""}])
def test_unusable_payload_raises_malformed(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_task(payload)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1750323167003, DONE_AT),
        ("1750323167003", DONE_AT),
        (1750323167, DONE_AT.replace(microsecond=0)),
        (1750323167003.0, DONE_AT),
        ("2025-06-19T08:52:47.003Z", DONE_AT),
        ("2025-06-19T16:52:47.003+08:00", DONE_AT),
        (None, None),
        ("soon", None),
        (0, None),
        (-5, None),
        (float("nan"), None),
        (10**30, None),
        (True, None),
    ],
)
def test_when_reads_every_encoding(value: Any, expected: datetime | None) -> None:
    assert when(value) == expected


# --------------------------------------------------------------------------- deadline


@pytest.mark.parametrize("url", [S3_URL, DISCORD_URL])
def test_deadline_is_the_signed_url_expiry(url: str) -> None:
    rec = parse_task(_grok(video_url=url))
    signed = url_expiry(url)
    assert signed is not None
    assert rec.completed_at == DONE_AT
    assert rec.expires_at == signed
    (video,) = rec.media
    assert video.url == url and video.url_expires_at == signed


def test_s3_url_expiry_is_date_plus_expires() -> None:
    rec = parse_task(_grok())
    assert rec.expires_at == datetime(2025, 6, 19, 10, 0, tzinfo=UTC)


def test_unsigned_url_uses_completion_plus_lifetime() -> None:
    rec = parse_task(_grok(video_url=VEO_VIDEO))
    assert rec.expires_at == DONE_AT + timedelta(hours=24)
    assert rec.media[0].url_expires_at is None


def test_lifetime_option() -> None:
    rec = _provider(url_lifetime_hours=72).parse(_grok(video_url=VEO_VIDEO))
    assert rec.expires_at == DONE_AT + timedelta(hours=72)


def test_signed_url_deadline_off_uses_only_the_rule() -> None:
    rec = _provider(signed_url_deadline=False).parse(_grok())
    assert rec.expires_at == DONE_AT + timedelta(hours=24)
    assert rec.media[0].url_expires_at is None


def test_stated_expiry_wins_unless_the_url_expires_earlier() -> None:
    rec = parse_task(_grok(video_url=VEO_VIDEO, expires_at=1750330000))
    assert rec.expires_at == datetime.fromtimestamp(1750330000, UTC)
    rec = parse_task(_grok(expires_at=1850330000))
    assert rec.expires_at == url_expiry(S3_URL)


def test_no_completion_time_leaves_the_deadline_to_the_store() -> None:
    rec = parse_task(_grok(video_url=VEO_VIDEO, status_update_time=None))
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.completed_at is None and rec.expires_at is None


def test_completion_near_datetime_max_does_not_overflow() -> None:
    rec = parse_task(_grok(video_url=VEO_VIDEO, status_update_time="9999-12-31T23:00:00Z"))
    assert rec.completed_at is not None and rec.expires_at is None


# --------------------------------------------------------------------------- envelope


def test_error_envelope_not_found() -> None:
    body = {"error": {"message": "task not found", "type": "invalid_request_error"}}
    with pytest.raises(NotFoundError):
        unwrap(body, "grok:x")


def test_error_envelope_business_code() -> None:
    body = {"code": "get_channel_failed", "message": "no available channel", "data": None}
    with pytest.raises(BusinessError) as info:
        unwrap(body, "kling-v2:x")
    assert info.value.code == "get_channel_failed"
    assert "no available channel" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        {"success": False, "message": "quota"},
        {"error": "upstream busy"},
        {"error": {"message": "bad", "code": 7}},
    ],
)
def test_other_error_envelopes_are_business_errors(body: dict[str, Any]) -> None:
    with pytest.raises(BusinessError):
        unwrap(body, "a:b")


def test_wrapped_task_is_unwrapped_and_a_failed_task_is_not_an_envelope() -> None:
    task = {"id": "a:b", "status": "failed", "error": "policy"}
    assert unwrap({"code": "success", "data": task}, "a:b") is task
    assert unwrap(task, "a:b") is task
    assert unwrap({"code": 0, "note": "x"}, "a:b") == {"code": 0, "note": "x"}


def test_same_task() -> None:
    assert same_task("033fa60e", "grok:033fa60e")
    assert same_task("veo3:1", "veo3:1")
    assert not same_task("other", "grok:033fa60e")


# --------------------------------------------------------------------------- contract


def test_provider_contract() -> None:
    assert provider_class("quickrouter") is QuickRouter
    assert QuickRouter.name == "quickrouter"
    assert QuickRouter.default_base_url == "https://api.quickrouter.ai"
    assert QuickRouter.has_history is False and _provider().streams() == ()
    assert QuickRouter.retention == timedelta(hours=24)
    assert QuickRouter.webhook_auth == "none"
    with pytest.raises(WebhookRejectedError):
        _provider().webhook_ids(b"{}", {})


def test_auth_headers() -> None:
    assert QuickRouter.auth_headers("sk-1", QuickRouterOptions()) == {
        "Authorization": "Bearer sk-1",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    headers = QuickRouter.auth_headers("k", QuickRouterOptions(forwarded_host="api.quickrouter.ai"))
    assert headers["X-Forwarded-Host"] == "api.quickrouter.ai"


def test_fetch_sends_the_id_url_encoded_and_returns_it_verbatim() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=load_seed("quickrouter_grok_query.json"))

    settings = NetworkSettings()
    policy = NetworkPolicy(allow_private=True)
    options = QuickRouterOptions()
    server = ReplayServer(answer)
    api = ApiClient(
        http=build_client(settings, policy),
        base_url=server.url,
        auth_headers=QuickRouter.auth_headers("sk-1", options),
        settings=settings,
        policy=policy,
    )
    rec = QuickRouter(api, options, "acc").fetch(GROK_ASKED)
    assert rec.external_id == GROK_ASKED
    (request,) = seen
    assert request.url.raw_path == b"/v1/video/query?id=" + GROK_ASKED.replace(":", "%3A").encode()
    assert request.headers["authorization"] == "Bearer sk-1"
    assert request.headers["accept"] == request.headers["content-type"] == "application/json"


def test_options_validate() -> None:
    with pytest.raises(ValidationError):
        QuickRouterOptions.model_validate({"url_lifetime_hours": 0})
    with pytest.raises(ValidationError):
        QuickRouterOptions.model_validate({"signed_url_deadline": "sometimes"})
    with pytest.raises(ValidationError):
        QuickRouterOptions.model_validate({"page_size": 10})


# --------------------------------------------------------------------------- properties

_STATUSES = st.sampled_from([raw for raw, _ in TABLE] + ["weird", "", "COMPLETE"])
_TIMES = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "1750323167003"]),
)
_URLS = st.one_of(
    st.sampled_from([S3_URL, DISCORD_URL, VEO_VIDEO, "http://[bad/x.mp4", "ftp://x/y", ""]),
    st.text(max_size=30),
    JSON_VALUES,
)
_DETAIL = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "status": _STATUSES | JSON_VALUES,
        "video_url": _URLS,
        "url": _URLS,
        "created_at": _TIMES,
        "completed_at": _TIMES,
        "expires_at": _TIMES,
        "error_message": JSON_VALUES,
        "images": st.lists(st.one_of(_URLS, st.fixed_dictionaries({"url": _URLS})), max_size=3)
        | JSON_VALUES,
        "req": st.fixed_dictionaries(
            {}, optional={"model": JSON_VALUES, "prompt": JSON_VALUES, "images": JSON_VALUES}
        )
        | JSON_VALUES,
        "input": JSON_VALUES,
        "pending_info": st.fixed_dictionaries(
            {}, optional={"status": _STATUSES | JSON_VALUES, "created_at": _TIMES}
        )
        | JSON_VALUES,
    },
)
TASK_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["grok:1", "veo3:2", "x"]) | JSON_VALUES,
        "status": _STATUSES | JSON_VALUES,
        "video_url": _URLS,
        "result_url": _URLS,
        "enhanced_prompt": JSON_VALUES,
        "status_update_time": _TIMES,
        "expires_at": _TIMES,
        "error": JSON_VALUES,
        "detail": _DETAIL | JSON_VALUES,
        "code": JSON_VALUES,
        "data": JSON_VALUES,
    },
)


def _parse_or_malformed(payload: Any, signed: bool) -> None:
    try:
        rec = parse_task(payload, signed_deadline=signed)
    except MalformedResponseError:
        return
    check_record(rec)
    if rec.status is not GenerationStatus.SUCCEEDED:
        assert rec.media == ()


def _unwrap_or_provider_error(payload: Any) -> None:
    if not isinstance(payload, dict):
        return
    try:
        unwrap(payload, "a:b")
    except (BusinessError, NotFoundError):
        return


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TASK_LIKE, st.booleans())
@example({"id": "a", "status": "completed", "video_url": "http://[abc/x.mp4"}, False)
@example({"id": "a", "status": "completed", "url": VEO_VIDEO, "expires_at": 2**64}, True)
@example({"id": "a", "status": "SUCCESS", "url": "https://x/y?ex=fffffffffffffff"}, True)
@example({"id": "a", "status": "completed", "url": VEO_VIDEO, "status_update_time": 1e308}, False)
def test_task_shaped_json_only_raises_malformed(payload: dict[str, Any], signed: bool) -> None:
    _parse_or_malformed(payload, signed)
    _unwrap_or_provider_error(payload)
