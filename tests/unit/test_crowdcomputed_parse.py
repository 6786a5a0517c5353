"""CrowdComputed task objects and envelopes -> GenerationRecord / errors / pages.

Fixtures, each verbatim:

* ``crowdcomputed_history.json``: the seed's own response example (seed 000, the
  Apifox page of ``GET /api/v1/generate/history``). Apifox fills every field with a
  placeholder (``"string"``, ``0``), so the one task's id is ``"string"``, its one URL
  is the relative path ``"string"`` and every time is 0 (= unset).
* ``crowdcomputed_status.json`` / ``crowdcomputed_docs_history.json``: the success
  examples of ``/api/v1/query/status`` and ``/api/v1/generate/history`` in the docs
  repository (``CrowdComputed/cc-openapi-docs``, ``content/docs/global-api.mdx``).
* ``crowdcomputed_callback.json``: the callback / WebSocket payload example of
  ``content/docs/workflow-api.mdx`` (a relative URL, ``reSchedule``).

Paging is exercised through a real :class:`ApiClient` against a loopback replay
server (``tests/fixtures/replay.py``) that answers with each test's exact payload.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
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
    ProviderError,
    WebhookRejectedError,
)
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers.crowdcomputed import (
    WORKFLOWS,
    CrowdComputed,
    CrowdComputedOptions,
    parse_task,
    unwrap,
)
from genvault.records import GenerationStatus, MediaKind, MediaRole
from tests.fixtures.replay import ReplayServer
from tests.records import check_record, load_seed
from tests.strategies import JSON_VALUES

BASE = "https://api.crowdcomputed.com"
DOC_URL = (
    "https://data.crowdcomputed.cc/prod/images/task/582478659185549062/output/"
    "20250901160761771586.jpg"
)
CALLBACK_URL = (
    "https://data.crowdcomputed.cc/dev/images/task/582079535692914438/output/"
    "20250829220046913955.jpg"
)
START = datetime(2025, 8, 29, 22, 0, 40, tzinfo=UTC)  # 1756504840
END = datetime(2025, 8, 29, 22, 0, 47, tzinfo=UTC)  # 1756504847


@pytest.fixture
def status_task() -> dict[str, Any]:
    task: dict[str, Any] = unwrap(load_seed("crowdcomputed_status.json"), "query/status")
    return task


@pytest.fixture
def callback() -> dict[str, Any]:
    body: dict[str, Any] = load_seed("crowdcomputed_callback.json")
    return body


Handler = Callable[[httpx.Request], httpx.Response]


def _provider(handler: Handler, **options: Any) -> CrowdComputed:
    """An adapter whose ApiClient talks to ``handler`` on loopback (no retries, no sleeps)."""
    settings_ = NetworkSettings(api_retries=0)
    policy = NetworkPolicy(allow_private=True)
    opts = CrowdComputedOptions(**options)
    server = ReplayServer(handler)
    api = ApiClient(
        http=build_client(settings_, policy),
        base_url=server.url,
        auth_headers=CrowdComputed.auth_headers("k", opts),
        settings=settings_,
        policy=policy,
        sleep=lambda _s: None,
    )
    return CrowdComputed(api, opts, "acc")


def _answer(body: Any, seen: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json=body)

    return handler


def _task(task_id: str, status: str = "finished", n_urls: int = 1, **extra: Any) -> dict[str, Any]:
    urls = [
        f"https://data.crowdcomputed.cc/prod/images/task/{task_id}/o{i}.jpg" for i in range(n_urls)
    ]
    output = {"status": status, "urls": urls, "startTime": 1756504840, "endTime": 1756504847}
    return {"taskId": task_id, "status": status, "outputs": [output], **extra}


def _page(items: list[Any], *, total: Any, index: Any = 1, size: Any = 50) -> dict[str, Any]:
    data = {"total": total, "pageSize": size, "pageIndex": index, "pageData": items}
    return {"code": "Success", "message": "Success", "data": data}


# --------------------------------------------------------------------------- the fixtures


def test_seed_history_example() -> None:
    body = load_seed("crowdcomputed_history.json")
    data = unwrap(body, "history")
    (item,) = data["pageData"]
    rec = parse_task(item, workflow="text-to-image")
    assert rec.external_id == "string"
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "finished"
    # every time is the placeholder 0, which means "not set"
    assert rec.created_at is None and rec.completed_at is None and rec.updated_at is None
    assert rec.expires_at is None
    assert rec.kind == rec.model == "text-to-image"
    assert rec.prompt is None and rec.error is None
    (m,) = rec.media
    assert m.url == "https://data.crowdcomputed.cc/string"  # relative, resolved
    assert (m.role, m.kind, m.url_expires_at) == (MediaRole.RESULT, MediaKind.IMAGE, None)
    assert rec.raw is item


def test_seed_history_example_as_a_page() -> None:
    seen: list[httpx.Request] = []
    prov = _provider(_answer(load_seed("crowdcomputed_history.json"), seen))
    page = prov.fetch_page("text-to-image", 1)
    assert [r.external_id for r in page.records] == ["string"]
    assert page.records[0].kind == "text-to-image"
    # the placeholders pageIndex 0 / pageSize 0 mean "unknown"; total 0 is passed on as
    # said (the walk confirms a short page's end with one more read)
    assert (page.got, page.total, page.page_size, page.errors) == (1, 0, None, 0)
    (req,) = seen
    assert req.url.path == "/api/v1/generate/history"
    assert dict(req.url.params) == {
        "workflow": "text-to-image",
        "page_index": "1",
        "page_size": "50",
    }
    assert req.headers["token"] == "k"
    assert "authorization" not in req.headers


def test_docs_status_example(status_task: dict[str, Any]) -> None:
    rec = parse_task(status_task)
    assert rec.external_id == "582079535692914438"
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.provider_status == "finished"
    assert rec.created_at == START
    assert rec.completed_at == rec.updated_at == END
    assert rec.expires_at == datetime(2025, 8, 30, 22, 0, 47, tzinfo=UTC)
    for dt in (rec.created_at, rec.completed_at, rec.expires_at):
        assert dt is not None and dt.utcoffset() == timedelta(0)
    assert rec.kind is None and rec.model is None  # the status endpoint names no workflow
    assert [(m.url, m.role, m.kind) for m in rec.media] == [
        (DOC_URL, MediaRole.RESULT, MediaKind.IMAGE)
    ]
    assert rec.error is None and rec.needs_detail is False


def test_docs_history_example_is_one_short_page() -> None:
    prov = _provider(_answer(load_seed("crowdcomputed_docs_history.json")))
    page = prov.fetch_page("text-to-image", 1)
    (rec,) = page.records
    assert rec.external_id == "582079535692914438"
    assert rec.kind == rec.model == "text-to-image"
    assert [m.url for m in rec.media] == [DOC_URL]
    assert (page.got, page.page_size) == (1, 20)  # 1 item < pageSize 20: a short page


def test_docs_callback_example_relative_url(callback: dict[str, Any]) -> None:
    rec = parse_task(callback)
    assert rec.external_id == "582079535692914438"
    assert rec.status is GenerationStatus.SUCCEEDED
    assert [m.url for m in rec.media] == [CALLBACK_URL]
    assert rec.raw["outputs"][0]["reSchedule"] is False
    mirror = parse_task(callback, media_base="https://mirror.example.net/cc")
    assert [m.url for m in mirror.media] == [
        "https://mirror.example.net/cc/dev/images/task/582079535692914438/output/"
        "20250829220046913955.jpg"
    ]


def test_callback_webhook_ids(callback: dict[str, Any]) -> None:
    prov = _provider(_answer({}))
    body = json.dumps(callback).encode()
    assert prov.webhook_ids(body, {"content-type": "application/json"}) == ["582079535692914438"]
    assert CrowdComputed.webhook_auth == "token"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"582079535692914438"', b"{}", b'{"taskId": ""}',
     b'{"taskId": null, "status": "finished"}', b'{"taskId": 5.8e17}', b"\xff\xfe"],
)  # fmt: skip
def test_webhook_rejects_bodies_without_a_task_id(body: bytes) -> None:
    with pytest.raises(WebhookRejectedError):
        _provider(_answer({})).webhook_ids(body, {})


def test_webhook_accepts_the_envelope_shape_too() -> None:
    body = json.dumps({"code": "Success", "data": {"taskId": "582079535692914438"}}).encode()
    assert _provider(_answer({})).webhook_ids(body, {}) == ["582079535692914438"]


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("raw", "urls", "expected", "error"),
    [
        ("waiting", 0, GenerationStatus.QUEUED, None),
        ("generating", 0, GenerationStatus.RUNNING, None),
        ("finished", 1, GenerationStatus.SUCCEEDED, None),
        ("finished", 0, GenerationStatus.FAILED, "finished without outputs"),
        ("failed", 0, GenerationStatus.FAILED, "failed at provider"),
        ("FINISHED", 2, GenerationStatus.SUCCEEDED, None),
        ("paused", 1, GenerationStatus.UNKNOWN, None),
        ("", 1, GenerationStatus.UNKNOWN, None),
    ],
)
def test_status_mapping(raw: str, urls: int, expected: GenerationStatus, error: str | None) -> None:
    rec = parse_task(_task("582079535692914438", raw, n_urls=urls))
    assert rec.status is expected
    assert rec.provider_status == raw
    assert rec.error == error
    assert len(rec.media) == (urls if expected is GenerationStatus.SUCCEEDED else 0)
    assert (rec.completed_at is not None) == expected.terminal


def test_failed_task_with_urls_keeps_no_media_and_ends_with_its_end_time() -> None:
    rec = parse_task(_task("1", "failed", n_urls=1))
    assert rec.media == () and rec.error == "failed at provider"
    assert rec.completed_at == END


def test_running_task_has_start_but_no_completion() -> None:
    task = {
        "taskId": "7",
        "status": "generating",
        "outputs": [{"status": "generating", "urls": [], "startTime": 1756504840, "endTime": 0}],
    }
    rec = parse_task(task)
    assert rec.status is GenerationStatus.RUNNING
    assert rec.created_at == rec.updated_at == START
    assert rec.completed_at is None and rec.expires_at is None


def test_missing_status_is_unknown_not_an_error() -> None:
    rec = parse_task({"taskId": "582079535692914438"})
    assert rec.status is GenerationStatus.UNKNOWN
    assert rec.provider_status == ""
    assert rec.media == () and rec.created_at is None


# --------------------------------------------------------------------------- media and times


def test_many_outputs_many_urls_times_and_dedupe() -> None:
    task = {
        "taskId": "582079535692914438",
        "status": "finished",
        "outputs": [
            {
                "outputId": "582079535692914438_0001",
                "status": "finished",
                "urls": ["dev/a/1.jpg", "https://cdn.example/v/2.mp4", "dev/a/1.jpg"],
                "startTime": 1756504845,
                "endTime": 1756504900,
            },
            {
                "outputId": "582079535692914438_0002",
                "status": "finished",
                "reSchedule": True,
                "urls": ["/dev/a/3.png", "https://cdn.example/4?Expires=1756600000"],
                "startTime": 0,
                "endTime": 1756504950,
            },
            {"outputId": "x_0003", "status": "finished", "urls": None, "startTime": 1756504840},
            "not an output",
        ],
    }
    rec = parse_task(task, workflow="text-to-video")
    assert [(m.url, m.kind) for m in rec.media] == [
        ("https://data.crowdcomputed.cc/dev/a/1.jpg", MediaKind.IMAGE),
        ("https://cdn.example/v/2.mp4", MediaKind.VIDEO),
        ("https://data.crowdcomputed.cc/dev/a/3.png", MediaKind.IMAGE),
        ("https://cdn.example/4?Expires=1756600000", MediaKind.VIDEO),  # no extension: workflow
    ]
    assert all(m.role is MediaRole.RESULT for m in rec.media)
    assert rec.created_at == START  # min startTime, zeros ignored
    assert rec.completed_at == datetime(2025, 8, 29, 22, 2, 30, tzinfo=UTC)  # max endTime
    # the generation keeps the retention rule; the signed URL carries its own, earlier deadline
    assert rec.expires_at == datetime(2025, 8, 30, 22, 2, 30, tzinfo=UTC)  # + 24 h
    assert rec.media[3].url_expires_at == datetime.fromtimestamp(1756600000, UTC)
    assert rec.media[0].url_expires_at is None


def test_extensionless_url_of_an_image_workflow_is_an_image() -> None:
    task = _task("1")
    task["outputs"][0]["urls"] = ["https://cdn.example/blob"]
    assert parse_task(task, workflow="upscaler").media[0].kind is MediaKind.IMAGE
    assert parse_task(task).media[0].kind is MediaKind.IMAGE


def test_retention_hours_option_sets_the_deadline(status_task: dict[str, Any]) -> None:
    prov = _provider(_answer({}), retention_hours=6)
    rec = prov.parse(status_task)
    assert rec.expires_at == END + timedelta(hours=6)
    assert prov.retention == timedelta(hours=6)  # the store's fallback agrees
    assert CrowdComputed.retention == timedelta(hours=24)
    assert _provider(_answer({})).retention == timedelta(hours=24)


def test_unknown_fields_are_kept_in_raw(status_task: dict[str, Any]) -> None:
    task = {**status_task, "workflowVersion": 3, "extra": {"nested": [1, 2]}}
    task["outputs"] = [{**task["outputs"][0], "nodeId": "gpu-17", "reSchedule": True}]
    rec = parse_task(task)
    assert rec.raw["workflowVersion"] == 3 and rec.raw["extra"] == {"nested": [1, 2]}
    assert rec.raw["outputs"][0]["nodeId"] == "gpu-17"
    assert rec.status is GenerationStatus.SUCCEEDED


@pytest.mark.parametrize(
    "patch",
    [
        {"outputs": None},
        {"outputs": "nope"},
        {"outputs": [{"urls": None, "startTime": None, "endTime": None}]},
        {"outputs": [{"urls": "https://x/y.jpg", "startTime": "x"}]},
        {"outputs": [{}]},
        {"status": None},
        {"status": ["finished"]},
    ],
)
def test_missing_or_odd_optional_fields_never_raise(
    status_task: dict[str, Any], patch: dict[str, Any]
) -> None:
    rec = parse_task({**status_task, **patch})
    assert rec.external_id == "582079535692914438"
    assert rec.media == ()


def test_wrong_types_are_tolerated(status_task: dict[str, Any]) -> None:
    out = status_task["outputs"][0]
    task = {
        **status_task,
        "taskId": 582079535692914438,  # a number that JSON kept exact
        "outputs": [{**out, "startTime": "1756504840", "endTime": "1756504847", "queueOrder": "0"}],
    }
    rec = parse_task(task)
    assert rec.external_id == "582079535692914438"
    assert (rec.created_at, rec.completed_at) == (START, END)
    assert [m.url for m in rec.media] == [DOC_URL]


@pytest.mark.parametrize("task_id", [None, "", "  ", [], {}, 5.820795356929144e17, True])
def test_missing_task_id_is_malformed(status_task: dict[str, Any], task_id: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_task({**status_task, "taskId": task_id})
    with pytest.raises(MalformedResponseError):
        parse_task({k: v for k, v in status_task.items() if k != "taskId"})


@pytest.mark.parametrize("payload", [None, [], "582079535692914438", 2, True])
def test_non_object_payload_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        parse_task(payload)


@pytest.mark.parametrize(
    "patch",
    [
        {"startTime": 10**20, "endTime": 10**20},  # beyond datetime
        {"endTime": 253402300799},  # 9999-12-31: + retention overflows
        {"urls": ["http://[bad/x.jpg", "//[x"]},
        {"urls": ["https://cdn.example/x.jpg?X-Amz-Date=20251001T120000Z&X-Amz-Expires=9" * 2]},
        {"startTime": -5, "endTime": float("nan")},
    ],
)
def test_hostile_values_do_not_crash(status_task: dict[str, Any], patch: dict[str, Any]) -> None:
    task = {**status_task, "outputs": [{**status_task["outputs"][0], **patch}]}
    rec = parse_task(task)
    assert rec.external_id == "582079535692914438"
    assert all(m.url.startswith("https://") for m in rec.media)


# --------------------------------------------------------------------------- envelope


def test_unwrap_success_returns_data() -> None:
    assert unwrap({"code": "Success", "message": "Success", "data": {"a": 1}}, "x") == {"a": 1}
    assert unwrap({"code": "success", "data": None}, "x") is None


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("unauthorized", AuthError),
        ("Unauthorized", AuthError),
        ("task not found", NotFoundError),
        ("workflow is empty", BusinessError),
        ("invalid params", BusinessError),
        (None, BusinessError),
    ],
)
def test_unwrap_failed_codes(message: str | None, error: type[ProviderError]) -> None:
    with pytest.raises(error) as info:
        unwrap({"code": "Failed", "message": message, "data": None}, "history")
    assert info.value.status_code == 200
    assert type(info.value) is error
    if isinstance(info.value, BusinessError):
        assert info.value.code == "Failed"


@pytest.mark.parametrize("body", [None, [], "Success", {"message": "ok", "data": {}}])
def test_unwrap_without_a_code_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponseError):
        unwrap(body, "history")


def test_business_error_inside_http_200_through_the_client() -> None:
    prov = _provider(_answer({"code": "Failed", "message": "unauthorized", "data": None}))
    with pytest.raises(AuthError):
        prov.fetch_page("text-to-image", 1)
    prov = _provider(_answer({"code": "Failed", "message": "task not found", "data": None}))
    with pytest.raises(NotFoundError):
        prov.fetch("582079535692914438")
    prov = _provider(_answer({"code": "Failed", "message": "invalid params", "data": None}))
    with pytest.raises(BusinessError):
        prov.fetch_page("nope", 1)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("style", "headers"),
    [
        ("token", {"token": "KEY"}),
        ("authorization", {"Authorization": "KEY"}),
        ("both", {"token": "KEY", "Authorization": "KEY"}),
    ],
)
def test_auth_styles(style: str, headers: dict[str, str]) -> None:
    opts = CrowdComputedOptions.model_validate({"auth_style": style})
    assert CrowdComputed.auth_headers("KEY", opts) == headers


def test_default_options_and_streams() -> None:
    opts = CrowdComputedOptions()
    assert opts.auth_style == "token" and opts.paging_params == "snake"
    assert opts.page_size == 50 and opts.retention_hours == 24
    assert opts.media_base == "https://data.crowdcomputed.cc/"
    assert len(WORKFLOWS) == len(set(WORKFLOWS)) == 25
    prov = _provider(_answer({}))
    assert list(prov.streams()) == list(WORKFLOWS)
    assert (prov.paging.kind, prov.paging.first, prov.paging.size) == ("page", 1, 50)
    narrowed = _provider(_answer({}), workflows=[" upscaler", "text-to-image", "upscaler"])
    assert list(narrowed.streams()) == ["upscaler", "text-to-image"]


@pytest.mark.parametrize(
    "bad",
    [
        {"workflows": []},
        {"workflows": [""]},
        {"page_size": 0},
        {"retention_hours": 0},
        {"paging_params": "kebab"},
        {"auth_style": "bearer"},
        {"unknown_key": 1},
    ],
)
def test_bad_options_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CrowdComputedOptions(**bad)


@pytest.mark.parametrize(
    ("spelling", "params"),
    [
        ("snake", {"page_index": "3", "page_size": "7"}),
        ("camel", {"pageIndex": "3", "pageSize": "7"}),
        ("both", {"page_index": "3", "page_size": "7", "pageIndex": "3", "pageSize": "7"}),
    ],
)
def test_paging_spellings(spelling: str, params: dict[str, str]) -> None:
    seen: list[httpx.Request] = []
    prov = _provider(
        _answer(_page([], total=0, index=3), seen), paging_params=spelling, page_size=7
    )
    prov.fetch_page("upscaler", 3)
    assert dict(seen[0].url.params) == {"workflow": "upscaler", **params}


def test_authorization_header_style_reaches_the_wire() -> None:
    seen: list[httpx.Request] = []
    prov = _provider(_answer(_page([], total=0), seen), auth_style="authorization")
    prov.fetch_page("upscaler", 1)
    assert seen[0].headers["authorization"] == "k" and "token" not in seen[0].headers


# --------------------------------------------------------------------------- paging rules


def _full(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [_task(str(582079535692914438 + start + i)) for i in range(n)]


@pytest.mark.parametrize(
    ("page", "position", "asked", "expected"),
    [
        (_page(_full(5), total=12, size=5, index=1), 1, 5, (5, 12, 5)),
        (_page(_full(3), total=12, size=5, index=3), 3, 5, (3, 12, 5)),  # short page
        (_page([], total=12, size=5, index=4), 4, 5, (0, 12, 5)),  # empty page
        (_page(_full(5), total=None, size=5, index=1), 1, 5, (5, None, 5)),  # no total
        (_page(_full(5), total="12", size="5", index="1"), 1, 5, (5, 12, 5)),  # as strings
        (_page(_full(5), total=12, size=None, index=None), 1, 5, (5, 12, None)),  # no echo
        (_page(_full(20), total=45, size=20, index=1), 1, 50, (20, 45, 20)),  # capped to 20
        (_page(_full(2), total=45, size=0, index=1), 1, 50, (2, 45, None)),  # 0: unknown
    ],
)
def test_page_reports_what_the_server_said(
    page: dict[str, Any], position: int, asked: int, expected: tuple[int, int | None, int | None]
) -> None:
    """The adapter reports items, ``total`` and the server's page size; whether the walk
    goes on is :mod:`genvault.walk`'s call (tests/unit/test_walk.py)."""
    result = _provider(_answer(page), page_size=asked).fetch_page("text-to-image", position)
    assert (result.got, result.total, result.page_size) == expected
    assert result.position == position
    assert len(result.records) == len(page["data"]["pageData"])


def test_page_that_ignores_our_paging_is_an_error_not_a_loop() -> None:
    prov = _provider(_answer(_page(_full(5), total=50, size=20, index=1)), paging_params="snake")
    with pytest.raises(MalformedResponseError, match="paging_params"):
        prov.fetch_page("text-to-image", 2)


@pytest.mark.parametrize("data", [None, {"total": 0, "pageData": None}, {}])
def test_empty_listing_shapes(data: Any) -> None:
    prov = _provider(_answer({"code": "Success", "message": "Success", "data": data}))
    page = prov.fetch_page("ghibli-style", 1)
    assert page.records == () and page.got == 0


@pytest.mark.parametrize("data", [[], "x", {"pageData": "x"}, {"pageData": {"taskId": "1"}}])
def test_malformed_listing_shapes(data: Any) -> None:
    prov = _provider(_answer({"code": "Success", "message": "Success", "data": data}))
    with pytest.raises(MalformedResponseError):
        prov.fetch_page("ghibli-style", 1)


def test_unparsable_items_are_counted_not_fatal() -> None:
    items: list[Any] = [*_full(2), {"status": "finished"}, "junk", None]
    prov = _provider(_answer(_page(items, total=5, size=5)), page_size=5)
    page = prov.fetch_page("text-to-image", 1)
    assert len(page.records) == 2 and page.errors == 3
    assert page.got == 5  # the raw item count is what a walk measures a page by


def test_fetch_names_the_workflow_it_was_listed_under() -> None:
    task = _task("582079535692914438", "generating", n_urls=0)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/history"):
            return httpx.Response(200, json=_page([task], total=1))
        assert request.url.path == "/api/v1/query/status"
        assert request.url.params["taskId"] == "582079535692914438"
        return httpx.Response(200, json={"code": "Success", "data": _task("582079535692914438")})

    prov = _provider(handler)
    assert prov.fetch("582079535692914438").kind is None  # not listed yet: unknown
    listed = prov.fetch_page("text-to-video", 1).records[0]
    assert listed.status is GenerationStatus.RUNNING and listed.kind == "text-to-video"
    rec = prov.fetch("582079535692914438")
    assert rec.status is GenerationStatus.SUCCEEDED
    assert rec.kind == rec.model == "text-to-video"


# --------------------------------------------------------------------------- properties

_POINTED = (
    st.sampled_from(["finished", "failed", "waiting", "generating", "", "0", "dev/x.jpg"])
    | st.from_regex(r"\A(https?://|//)?[a-z\[\]:./?=&%0-9]{0,30}\Z")
    | st.integers(min_value=-(10**20), max_value=10**20)
)
OUTPUT_LIKE = st.dictionaries(
    st.sampled_from(["outputId", "status", "urls", "startTime", "endTime", "reSchedule"]),
    JSON_VALUES | _POINTED | st.lists(JSON_VALUES | _POINTED, max_size=3),
    max_size=6,
)
TASK_LIKE = st.fixed_dictionaries(
    {"taskId": st.one_of(st.text(max_size=20), JSON_VALUES)},
    optional={
        "status": JSON_VALUES | _POINTED,
        "outputs": st.lists(OUTPUT_LIKE | JSON_VALUES, max_size=3) | JSON_VALUES,
    },
)


def _parse_or_malformed(payload: Any) -> None:
    try:
        rec = parse_task(payload, workflow="text-to-image")
    except MalformedResponseError:
        return
    check_record(rec)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TASK_LIKE)
@example({"taskId": "1", "status": "finished", "outputs": [{"urls": ["http://[x"]}]})
@example({"taskId": "1", "status": "finished", "outputs": [{"endTime": 253402300799}]})
@example({"taskId": "1", "outputs": [{"startTime": 10**20}]})
def test_task_shaped_json_only_raises_malformed(payload: dict[str, Any]) -> None:
    _parse_or_malformed(payload)


@settings(max_examples=100, deadline=None)
@given(JSON_VALUES | st.fixed_dictionaries({"code": JSON_VALUES, "message": JSON_VALUES}))
def test_envelope_only_raises_provider_errors(body: Any) -> None:
    with contextlib.suppress(MalformedResponseError, BusinessError, AuthError, NotFoundError):
        unwrap(body, "x")
