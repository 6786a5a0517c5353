"""GeminiGen history items (list and detail shape) -> GenerationRecord.

The fixtures are the seed's own example responses (seed 001, GeminiGen
"Generation History APIs"), verbatim. README for the fixtures: the seed is a
PDF-to-text dump whose page breaks cut both JSON examples in two, so each was
reassembled into the one document it obviously is, changing no field name or
value:

* ``geminigen_histories.json``: page 1 closes ``result[0]`` after
  ``media_files``; the ``{"created_by", "thumbnail_url"}`` fragment that opens
  page 2 is the rest of that same item, so both keys were appended to it.
* ``geminigen_history_detail.json``: page 2 ends ``generated_image[0]`` after
  ``image_url``; the page-3 fragment (``model`` ... ``base64_data``) is the
  rest of that element, and the ``generated_audio`` and ``reference_item``
  arrays that follow it are top-level keys of the item.

The page-3 fragment repeats ``image_url`` with a different value, so the
reassembled ``generated_image[0]`` carries that key twice, exactly as the
seed does; :func:`json.load` keeps the last one (``img_ghi345jkl678.jpg``).
Both values still reach the record, because the first equals the item's
``generate_result``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genvault.errors import MalformedResponseError
from genvault.providers.geminigen import GeminiGenOptions, parse_item
from genvault.records import GenerationRecord, GenerationStatus, MediaKind, MediaRole
from tests.records import SEEDS, check_record, load_seed
from tests.strategies import JSON_VALUES

CDN = "https://cdn.geminigen.ai"
MEDIA_BASE = GeminiGenOptions().media_base

IMAGE = f"{CDN}/images/hist_abc123def456.jpg"
ITEM_THUMB = f"{CDN}/thumbnails/hist_abc123def456_thumb.jpg"
DETAIL_IMAGE = f"{CDN}/images/img_ghi345jkl678.jpg"
VIDEO = f"{CDN}/videos/vid_def789ghi012.mp4"
LAST_FRAME = f"{CDN}/frames/vid_def789ghi012_last.jpg"
AUDIO = f"{CDN}/audio/aud_mno567pqr890.mp3"
IMAGE_THUMB = f"{CDN}/thumbnails/thumb_jkl901mno234_small.jpg"
REF_URI = f"{CDN}/references/ref_pqr123stu456.jpg"
REF_THUMB = f"{CDN}/thumbnails/ref_pqr123stu456_thumb.jpg"


@pytest.fixture
def list_item() -> dict[str, Any]:
    body = load_seed("geminigen_histories.json")
    assert body["success"] is True
    assert len(body["result"]) == 1
    item: dict[str, Any] = body["result"][0]
    return item


@pytest.fixture
def detail_item() -> dict[str, Any]:
    item: dict[str, Any] = load_seed("geminigen_history_detail.json")
    return item


def _by_url(record: GenerationRecord) -> dict[str, tuple[MediaRole, MediaKind, int | None]]:
    return {m.url: (m.role, m.kind, m.size) for m in record.media}


# --------------------------------------------------------------------------- the fixtures


def test_detail_fixture_keeps_the_seeds_duplicate_image_url() -> None:
    pairs: list[list[tuple[str, Any]]] = []

    def hook(items: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs.append(items)
        return dict(items)

    with (SEEDS / "geminigen_history_detail.json").open(encoding="utf-8") as fh:
        json.load(fh, object_pairs_hook=hook)
    image_objs = [p for p in pairs if any(k == "image_uri" for k, _ in p)]
    assert len(image_objs) == 1
    urls = [v for k, v in image_objs[0] if k == "image_url"]
    assert urls == [IMAGE, DETAIL_IMAGE]


# --------------------------------------------------------------------------- list shape


def test_list_item_fields(list_item: dict[str, Any]) -> None:
    rec = parse_item(list_item)
    assert rec.external_id == "hist_abc123def456"
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "2"
    assert rec.created_at == datetime(2025, 9, 27, 13, 30, 5, 89000, tzinfo=UTC)
    assert rec.updated_at == datetime(2025, 9, 27, 13, 30, 5, 89000, tzinfo=UTC)
    assert rec.completed_at == rec.updated_at
    assert rec.expires_at == datetime(2025, 10, 27, 13, 30, 5, 89000, tzinfo=UTC)
    for dt in (rec.created_at, rec.updated_at, rec.expires_at):
        assert dt is not None
        assert dt.utcoffset() == timedelta(0)
    assert rec.kind == "image_generation"
    assert rec.model == "imagen-4"
    assert rec.prompt == "A beautiful landscape with mountains"
    assert rec.error is None
    assert rec.raw is list_item


def test_list_item_media_is_image_and_thumbnail_deduplicated(list_item: dict[str, Any]) -> None:
    # generate_result and media_files[0].url are the same file: one record, with the size.
    assert list_item["generate_result"] == list_item["media_files"][0]["url"]
    rec = parse_item(list_item)
    assert [m.url for m in rec.media] == [IMAGE, ITEM_THUMB]
    assert _by_url(rec) == {
        IMAGE: (MediaRole.RESULT, MediaKind.IMAGE, 2048576),
        ITEM_THUMB: (MediaRole.THUMBNAIL, MediaKind.IMAGE, None),
    }
    assert all(m.url_expires_at is None for m in rec.media)  # plain CDN URLs, unsigned
    assert rec.needs_detail is False


# --------------------------------------------------------------------------- detail shape


def test_detail_item_fields(detail_item: dict[str, Any]) -> None:
    rec = parse_item(detail_item, MEDIA_BASE)
    assert rec.external_id == "hist_abc123def456"
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "2"
    assert rec.created_at == datetime(2025, 9, 27, 13, 31, 56, 472000, tzinfo=UTC)
    assert rec.updated_at == datetime(2025, 9, 27, 13, 31, 56, 472000, tzinfo=UTC)
    assert rec.expires_at == datetime(2025, 10, 27, 13, 31, 56, 472000, tzinfo=UTC)
    assert rec.kind == "image_generation"
    assert rec.model == "imagen-4"
    assert rec.prompt == "A beautiful landscape with mountains"
    assert rec.error is None
    assert rec.needs_detail is False


def test_detail_item_media(detail_item: dict[str, Any]) -> None:
    rec = parse_item(detail_item, MEDIA_BASE)
    urls = [m.url for m in rec.media]
    assert len(urls) == len(set(urls)), "duplicate URLs"
    assert _by_url(rec) == {
        DETAIL_IMAGE: (MediaRole.RESULT, MediaKind.IMAGE, None),
        VIDEO: (MediaRole.RESULT, MediaKind.VIDEO, None),
        AUDIO: (MediaRole.RESULT, MediaKind.AUDIO, None),
        IMAGE: (MediaRole.RESULT, MediaKind.IMAGE, None),
        LAST_FRAME: (MediaRole.LAST_FRAME, MediaKind.IMAGE, None),
        IMAGE_THUMB: (MediaRole.THUMBNAIL, MediaKind.IMAGE, None),
        ITEM_THUMB: (MediaRole.THUMBNAIL, MediaKind.IMAGE, None),
        REF_URI: (MediaRole.REFERENCE, MediaKind.IMAGE, None),
        REF_THUMB: (MediaRole.REFERENCE, MediaKind.IMAGE, None),
    }
    # file_download_url is only a fallback when image_url/audio_url is missing.
    assert not any("/downloads/" in u for u in urls)


def test_detail_reference_uri_resolves_against_media_base(detail_item: dict[str, Any]) -> None:
    rec = parse_item(detail_item, "https://mirror.example.net/base")
    refs = {m.url for m in rec.media if m.role is MediaRole.REFERENCE}
    assert refs == {"https://mirror.example.net/base/references/ref_pqr123stu456.jpg", REF_THUMB}


def test_file_download_url_is_the_fallback_without_image_url(detail_item: dict[str, Any]) -> None:
    img = dict(detail_item["generated_image"][0])
    del img["image_url"]
    rec = parse_item({**detail_item, "generated_image": [img]}, MEDIA_BASE)
    urls = [m.url for m in rec.media]
    assert f"{CDN}/downloads/img_ghi345jkl678.jpg" in urls
    assert DETAIL_IMAGE not in urls


def test_detail_item_with_nothing_done_still_needs_no_detail(detail_item: dict[str, Any]) -> None:
    rec = parse_item({**detail_item, "status": 1}, MEDIA_BASE)
    assert rec.status is GenerationStatus.RUNNING
    assert rec.media == ()
    assert rec.needs_detail is False


# --------------------------------------------------------------------------- status & edge cases


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, GenerationStatus.QUEUED),
        (1, GenerationStatus.RUNNING),
        (2, GenerationStatus.SUCCEEDED),
        (3, GenerationStatus.FAILED),
        (7, GenerationStatus.UNKNOWN),
        ("2", GenerationStatus.SUCCEEDED),
        (None, GenerationStatus.UNKNOWN),
        ("done", GenerationStatus.UNKNOWN),
    ],
)
def test_status_mapping(list_item: dict[str, Any], raw: Any, expected: GenerationStatus) -> None:
    rec = parse_item({**list_item, "status": raw})
    assert rec.status is expected
    assert rec.provider_status == str(raw)
    assert (rec.completed_at is not None) == (expected is GenerationStatus.SUCCEEDED)


def test_failed_item_error_text(list_item: dict[str, Any]) -> None:
    rec = parse_item(
        {**list_item, "status": 3, "error_code": "CONTENT_POLICY", "error_message": "blocked"}
    )
    assert rec.status is GenerationStatus.FAILED
    assert rec.error == "CONTENT_POLICY: blocked"
    assert rec.media == ()
    assert rec.needs_detail is False


def test_failed_item_without_reason(list_item: dict[str, Any]) -> None:
    rec = parse_item({**list_item, "status": 3})  # seed has "" for both fields
    assert rec.error == "failed (no reason given)"


def test_missing_expired_at_is_created_plus_30_days(list_item: dict[str, Any]) -> None:
    item = {k: v for k, v in list_item.items() if k != "expired_at"}
    rec = parse_item(item)
    assert rec.expires_at == datetime(2025, 10, 27, 13, 30, 5, 89000, tzinfo=UTC)
    assert rec.expires_at == rec.created_at + timedelta(days=30)  # type: ignore[operator]


def test_running_list_item_has_no_media_and_needs_detail(list_item: dict[str, Any]) -> None:
    rec = parse_item({**list_item, "status": 1, "status_percentage": 40})
    assert rec.status is GenerationStatus.RUNNING
    assert rec.media == ()
    assert rec.needs_detail is True


def test_queued_list_item_needs_detail(list_item: dict[str, Any]) -> None:
    assert parse_item({**list_item, "status": 0}).needs_detail is True


def test_succeeded_video_list_item_needs_detail(list_item: dict[str, Any]) -> None:
    video = f"{CDN}/videos/hist_abc123def456.mp4"
    item = {
        **list_item,
        "type": "video_generation",
        "inference_type": "text_to_video",
        "generate_result": video,
        "media_files": [{"type": "video", "url": video, "size": 1000}],
    }
    rec = parse_item(item)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.needs_detail is True
    assert _by_url(rec)[video] == (MediaRole.RESULT, MediaKind.VIDEO, 1000)


def test_succeeded_list_item_without_media_needs_detail(list_item: dict[str, Any]) -> None:
    item = {**list_item, "generate_result": "", "media_files": [], "thumbnail_url": None}
    rec = parse_item(item)
    assert rec.media == ()
    assert rec.needs_detail is True


@pytest.mark.parametrize("uuid", [None, "", "   ", [], {}])
def test_missing_uuid_is_malformed(list_item: dict[str, Any], uuid: Any) -> None:
    item = {**list_item, "uuid": uuid}
    with pytest.raises(MalformedResponseError):
        parse_item(item)
    del item["uuid"]
    with pytest.raises(MalformedResponseError):
        parse_item(item)


@pytest.mark.parametrize("payload", [None, [], "hist_abc123def456", 2, True])
def test_non_object_payload_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_item(payload)


@pytest.mark.parametrize(
    "patch",
    [
        {"generate_result": "http://[abc/x.jpg"},  # urlsplit: Invalid IPv6 URL
        {"generated_video": [{"video_uri": "http://[x"}]},
        {"reference_item": [{"uri": "//[x"}]},
        {"created_at": "9999-12-31T00:00:00Z", "expired_at": None},  # +30 days overflows
        {"created_at": "0001-01-01T00:00:00+01:00"},  # to UTC overflows
        {"generate_result": f"{IMAGE}?X-Amz-Date=20251001T120000Z&X-Amz-Expires=99999999999999"},
    ],
)
def test_hostile_field_values_do_not_crash(
    list_item: dict[str, Any], patch: dict[str, Any]
) -> None:
    rec = parse_item({**list_item, **patch})
    assert rec.external_id == "hist_abc123def456"
    assert all(m.url.startswith("https://") for m in rec.media)


# --------------------------------------------------------------------------- properties


_ITEM_KEYS = sorted(
    set(load_seed("geminigen_histories.json")["result"][0])
    | set(load_seed("geminigen_history_detail.json"))
)
# Values that aim at the parser's branches: URL-ish and date-ish text, status codes.
_POINTED = (
    st.sampled_from(["", "2", "videos/a.mp4", "http://[x", "https://cdn.example/a.mp3?ex=zz"])
    | st.from_regex(r"\A(https?://|//)?[a-z\[\]:./?=&%0-9]{0,30}\Z")
    | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{0,12}(Z|[+-][0-9]{2}:[0-9]{2})?\Z")
    | st.integers(min_value=-1, max_value=8)
)
ITEM_LIKE = st.fixed_dictionaries(
    {"uuid": st.one_of(st.text(max_size=10), JSON_VALUES)},
    optional={
        k: JSON_VALUES
        | _POINTED
        | st.lists(
            st.dictionaries(
                st.sampled_from(
                    [
                        "url",
                        "uri",
                        "image_url",
                        "video_url",
                        "audio_url",
                        "last_frame",
                        "thumbnails",
                        "file_download_url",
                        "type",
                        "size",
                        "media_type",
                        "thumbnail_url",
                    ]
                ),
                JSON_VALUES | _POINTED,
                max_size=5,
            ),
            max_size=3,
        )
        for k in _ITEM_KEYS
        if k != "uuid"
    },
)


def _parse_or_malformed(payload: Any) -> None:
    try:
        rec = parse_item(payload, MEDIA_BASE)
    except MalformedResponseError:
        return
    check_record(rec)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEM_LIKE)
@example({"uuid": "u", "status": 2, "generate_result": "http://[abc/x.jpg"})
@example({"uuid": "u", "status": 2, "created_at": "9999-12-31T23:59:59Z"})
@example({"uuid": "u", "status": 2, "created_at": "0001-01-01T00:00:00+01:00"})
@example({"uuid": "u", "status": 2, "reference_item": [{"uri": "//[x"}]})
def test_item_shaped_json_only_raises_malformed(payload: dict[str, Any]) -> None:
    _parse_or_malformed(payload)


# --------------------------------------------------------------------------- webhooks


def _provider() -> Any:
    from genvault.config import NetworkSettings
    from genvault.net.api import ApiClient
    from genvault.net.policy import NetworkPolicy
    from genvault.providers.geminigen import GeminiGen, GeminiGenOptions

    api = ApiClient(
        http=None,
        base_url="http://unused.invalid",
        auth_headers={},  # type: ignore[arg-type]
        settings=NetworkSettings(),
        policy=NetworkPolicy(),
    )
    return GeminiGen(api, GeminiGenOptions(), "main")


@pytest.mark.parametrize(
    "body",
    [
        {
            "event": "VIDEO_GENERATION_COMPLETED",
            "uuid": "evt-1",
            "data": {
                "uuid": "548b28e6-2733-11f1-9105-4638fdaf9e0b",
                "media_url": "https://x/y.mp4",
            },
        },
        {
            "event_name": "IMAGE_GENERATION_FAILED",
            "event_uuid": "evt-2",
            "data": {"uuid": "548b28e6-2733-11f1-9105-4638fdaf9e0b"},
        },
        {"uuid": "548b28e6-2733-11f1-9105-4638fdaf9e0b"},
    ],
)
def test_webhook_both_documented_shapes_name_the_generation(body: dict[str, Any]) -> None:
    ids = _provider().webhook_ids(json.dumps(body).encode(), {})
    assert ids == ["548b28e6-2733-11f1-9105-4638fdaf9e0b"]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"event": "X"}', b'{"data": null}'])
def test_webhook_without_a_uuid_is_rejected(raw: bytes) -> None:
    from genvault.errors import WebhookRejectedError

    with pytest.raises(WebhookRejectedError):
        _provider().webhook_ids(raw, {})
