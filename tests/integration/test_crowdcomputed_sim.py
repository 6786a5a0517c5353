"""The CrowdComputed simulator over real loopback HTTP, then the adapter against it.

First the simulator alone (httpx): the seed's wire format, per-workflow paging in both
spellings, the ``{"code": "Failed"}`` envelope on HTTP 200, status transitions, CDN
bytes and expiry, faults. Then :class:`CrowdComputed` through a real
:class:`ApiClient`: records, error classes, tolerance of the ``wrong_types`` fault.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.providers.crowdcomputed import CrowdComputed
from genvault.records import GenerationRecord, GenerationStatus, MediaKind
from genvault.simulator import crowdcomputed
from genvault.simulator.crowdcomputed import CrowdComputedSimulator
from genvault.walk import read_listing
from tests.fixtures.sims import SimStarter, sim_adapter
from tests.integration.sim_checks import assert_files_served

KEY = "cc-test-key-0f9e8d7c"
COUNT = 21
WORKFLOWS = ("text-to-image", "text-to-video", "upscaler")
HISTORY = "/api/v1/generate/history"
STATUS = "/api/v1/query/status"
# Every field of the seed's example task / output; the simulator must send all of them.
SEED_TASK_FIELDS = {"taskId", "status", "outputs"}
SEED_OUTPUT_FIELDS = {"urls", "status", "queueOrder", "startTime", "endTime", "estimateMs"}


def _make(**knobs: Any) -> CrowdComputedSimulator:
    settings: dict[str, Any] = {
        "api_key": KEY,
        "seed": 5,
        "count": COUNT,
        "image_size": 20_000,
        "video_size": 120_000,
        "processing_count": 3,
        "processing_seconds": 2.0,
        "failed_count": 2,
        "empty_count": 1,
        "expired_count": 2,
        "max_page_size": 5,
    }
    settings.update(knobs)
    return crowdcomputed.create(**settings)


@pytest.fixture
def sim(start_sim: SimStarter) -> CrowdComputedSimulator:
    return start_sim(_make)


@pytest.fixture
def client(sim: CrowdComputedSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"token": KEY}, timeout=10) as c:
        yield c


def _history(client: httpx.Client, sim: CrowdComputedSimulator, **params: Any) -> dict[str, Any]:
    r = client.get(sim.api_base + HISTORY, params=params)
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def _walk(
    client: httpx.Client, sim: CrowdComputedSimulator, workflow: str, size: int, camel: bool
) -> list[dict[str, Any]]:
    names = ("pageIndex", "pageSize") if camel else ("page_index", "page_size")
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        body = _history(client, sim, workflow=workflow, **{names[0]: page, names[1]: size})
        assert body["code"] == "Success"
        data = body["data"]
        assert data["pageIndex"] == page and data["pageSize"] == min(size, 5)
        if not data["pageData"]:
            return items
        items.extend(data["pageData"])
        page += 1


def _finish(sim: CrowdComputedSimulator) -> None:
    sim.clock.advance(sim.config.processing_seconds + 0.1)


def _api(sim: CrowdComputedSimulator, key: str = KEY, **options: Any) -> CrowdComputed:
    settings = NetworkSettings(api_retries=2)
    return sim_adapter(sim, CrowdComputed, key=key, settings=settings, **options)


def _sync_all(provider: CrowdComputed) -> list[GenerationRecord]:
    records: list[GenerationRecord] = []
    for stream in provider.streams():
        listed, walk = read_listing(provider, stream)
        assert walk.complete
        records.extend(listed)
    return records


# --------------------------------------------------------------------------- wire format


def test_history_pages_each_workflow_newest_first(
    client: httpx.Client, sim: CrowdComputedSimulator
) -> None:
    workflow_of = sim.workflow_of
    seen: list[str] = []
    for workflow in WORKFLOWS:
        snake = _walk(client, sim, workflow, size=2, camel=False)
        camel = _walk(client, sim, workflow, size=50, camel=True)  # capped at 5
        assert snake == camel
        ids = [t["taskId"] for t in snake]
        assert ids == sorted(ids, reverse=True), "newest (largest snowflake) first"
        assert {workflow_of[i] for i in ids} == {workflow}
        assert all(len(i) == 18 and i.isdigit() for i in ids)
        for task in snake:
            assert task.keys() >= SEED_TASK_FIELDS
            for out in task["outputs"]:
                assert out.keys() >= SEED_OUTPUT_FIELDS | {"outputId", "reSchedule"}
                assert out["outputId"].startswith(task["taskId"] + "_000")
        seen += ids
    assert sorted(seen) == sorted(workflow_of) and len(seen) == COUNT
    assert sim.paging_seen["snake"] > 0 and sim.paging_seen["camel"] > 0
    # the seed's curl sends blank paging values: defaults (page 1, 20 per page, capped 5)
    blank = _history(client, sim, workflow="upscaler", page_index="", page_size="")["data"]
    assert (blank["pageIndex"], blank["pageSize"]) == (1, 5)
    total = blank["total"]
    past = _history(client, sim, workflow="upscaler", page_index=99)["data"]
    assert past == {"total": total, "pageSize": 5, "pageIndex": 99, "pageData": []}
    other = _history(client, sim, workflow="ghibli-style")["data"]
    assert other["total"] == 0 and other["pageData"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "workflow is empty"),
        ({"workflow": ""}, "workflow is empty"),
        ({"workflow": "no-such-flow"}, "invalid params"),
        ({"workflow": "upscaler", "page_index": "x"}, "invalid params"),
        ({"workflow": "upscaler", "pageSize": "0"}, "invalid params"),
    ],
)
def test_history_errors_are_failed_envelopes_on_200(
    client: httpx.Client, sim: CrowdComputedSimulator, params: dict[str, str], message: str
) -> None:
    r = client.get(sim.api_base + HISTORY, params=params)
    assert r.status_code == 200
    assert r.json() == {"code": "Failed", "message": message, "data": None}


def test_rejected_workflow_history_fails_but_its_tasks_exist() -> None:
    refused = {"code": "Failed", "message": "invalid params", "data": None}
    with (
        _make(rejected_workflows=["text-to-video"], processing_count=0) as s,
        httpx.Client(headers={"token": KEY}, timeout=10) as c,
    ):
        assert s.config.rejected_workflows == ("text-to-video",)  # lists from JSON knobs
        assert s.accepted_workflows == ("text-to-image", "upscaler")
        for paging in ({}, {"page_index": 1, "page_size": 5}, {"pageIndex": 2, "pageSize": 1}):
            r = c.get(s.api_base + HISTORY, params={"workflow": "text-to-video", **paging})
            assert (r.status_code, r.json()) == (200, refused)
        video_tasks = [t for t, w in s.workflow_of.items() if w == "text-to-video"]
        assert video_tasks
        for task_id in video_tasks:  # the tasks are still there
            body = c.get(s.api_base + STATUS, params={"taskId": task_id}).json()
            assert body["code"] == "Success" and body["data"]["taskId"] == task_id
        # walking the accepted workflows finds exactly expected_media_of(accepted_workflows)
        base = s.account_options["media_base"]
        found: set[str] = set()
        for workflow in s.accepted_workflows:
            for task in _walk(c, s, workflow, size=5, camel=False):
                found |= {urljoin(base, u) for o in task["outputs"] for u in o["urls"]}
        accepted = s.expected_media_of(s.accepted_workflows)
        assert found == {f.url for f in accepted}
        assert {s.workflow_of[f.generation_id] for f in accepted} == set(s.accepted_workflows)
        video = s.expected_media_of(["text-to-video"])
        assert {f.url for f in video} | found == {f.url for f in s.expected_media()}
        now = s.clock.now()
        live = [f for f in video if f.expires_at is None or f.expires_at > now]
        assert live
        for f in live:  # their files are still served
            r = c.get(f.url)
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f.sha256
    with _make(rejected_workflows=("upscaler",), error_http_status=None) as s:
        r = httpx.get(s.api_base + HISTORY, params={"workflow": "upscaler"}, headers={"token": KEY})
        assert (r.status_code, r.json()) == (400, refused)  # as an unknown workflow
    with pytest.raises(ValueError, match="rejected_workflows"):
        crowdcomputed.create(rejected_workflows=["made-up"])


def test_auth(sim: CrowdComputedSimulator) -> None:
    failed = {"code": "Failed", "message": "unauthorized", "data": None}
    params = {"workflow": "upscaler"}
    with httpx.Client(timeout=10) as anon:
        for headers in ({}, {"token": "wrong"}, {"Authorization": "Bearer " + KEY}):
            r = anon.get(sim.api_base + HISTORY, params=params, headers=headers)
            assert (r.status_code, r.json()) == (200, failed)
        task_id = sim.generations[0]["taskId"]
        r = anon.get(sim.api_base + STATUS, params={"taskId": task_id})
        assert (r.status_code, r.json()) == (200, failed)
        # the docs' examples send the raw key as Authorization; the sim accepts that too
        raw = anon.get(sim.api_base + HISTORY, params=params, headers={"Authorization": KEY})
        assert raw.json()["code"] == "Success"
        ok = anon.get(sim.api_base + HISTORY, params=params, headers={"token": KEY})
        assert ok.json()["code"] == "Success"


def test_natural_error_statuses_knob() -> None:
    with _make(error_http_status=None, accept_authorization=False) as s:
        with httpx.Client(timeout=10) as c:
            r = c.get(s.api_base + HISTORY, params={"workflow": "upscaler"})
            assert r.status_code == 401 and r.json()["message"] == "unauthorized"
            r = c.get(
                s.api_base + HISTORY,
                params={"workflow": "upscaler"},
                headers={"Authorization": KEY},
            )
            assert r.status_code == 401
            r = c.get(s.api_base + STATUS, params={"taskId": "1"}, headers={"token": KEY})
            assert r.status_code == 404 and r.json()["message"] == "task not found"
        with pytest.raises(AuthError) as info:
            _api(s, key="wrong").fetch_page("upscaler", 1)
        assert info.value.status_code == 401
        with pytest.raises(NotFoundError):
            _api(s).fetch("1")


def test_status_endpoint(client: httpx.Client, sim: CrowdComputedSimulator) -> None:
    for task in sim.generations:
        body = client.get(sim.api_base + STATUS, params={"taskId": task["taskId"]}).json()
        assert body == {"code": "Success", "message": "Success", "data": task}
    missing = client.get(sim.api_base + STATUS, params={"taskId": "582079535692914438"})
    assert missing.json() == {"code": "Failed", "message": "task not found", "data": None}
    empty = client.get(sim.api_base + STATUS)
    assert empty.json() == {"code": "Failed", "message": "invalid params", "data": None}


def test_status_transitions_over_time(client: httpx.Client, sim: CrowdComputedSimulator) -> None:
    processing = sim.generations[:3]

    def state(task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = client.get(sim.api_base + STATUS, params={"taskId": task_id}).json()[
            "data"
        ]
        return data

    pending = [f for f in sim.expected_media() if f.generation_id == processing[0]["taskId"]]
    assert pending and client.get(pending[0].url).status_code == 404
    for task in processing:
        now = state(task["taskId"])
        assert now["status"] == "waiting"
        for out in now["outputs"]:
            assert out["urls"] == [] and out["startTime"] == 0 and out["endTime"] == 0
            assert out["queueOrder"] > 0
    sim.clock.advance(1.0)  # 40 % of processing_seconds passed: running
    for task in processing:
        now = state(task["taskId"])
        assert now["status"] == "generating"
        for out in now["outputs"]:
            assert out["urls"] == [] and out["startTime"] > 0 and out["endTime"] == 0
            assert out["queueOrder"] == 0
    sim.clock.advance(1.1)
    for task in processing:
        now = state(task["taskId"])
        assert now["status"] == "finished"
        for out in now["outputs"]:
            assert out["urls"] and out["endTime"] >= out["startTime"] > 0
    assert client.get(pending[0].url).status_code == 200


def test_failed_and_empty_tasks(client: httpx.Client, sim: CrowdComputedSimulator) -> None:
    outcomes = sim.outcomes
    by_id = {t["taskId"]: t for t in sim.generations}
    failed = [by_id[i] for i, o in outcomes.items() if o == "failed"]
    empty = [by_id[i] for i, o in outcomes.items() if o == "empty"]
    assert len(failed) == 2 and len(empty) == 1
    for task in failed:
        assert task["status"] == "failed" and "message" not in task
        assert all(o["urls"] == [] and o["reSchedule"] for o in task["outputs"])
    (task,) = empty
    assert task["status"] == "finished"
    assert all(o["urls"] == [] for o in task["outputs"])
    assert not {f.generation_id for f in sim.expected_media()} & {t["taskId"] for t in failed}


def test_media_bytes_match_expected_media(
    client: httpx.Client, sim: CrowdComputedSimulator
) -> None:
    _finish(sim)
    base = sim.account_options["media_base"]
    assert base == sim.base_url + "/data/"
    expected = sim.expected_media()
    urls = [f.url for f in expected]
    assert len(urls) == len(set(urls))
    exposed: list[str] = []
    relative = 0
    for task in sim.generations:
        for out in task["outputs"]:
            for url in out["urls"]:
                relative += not url.startswith("http")
                exposed.append(urljoin(base, url))
    assert relative > 0, "some tasks must list relative URLs"
    assert sorted(exposed) == sorted(urls)
    assert any(len(o["urls"]) > 1 for t in sim.generations for o in t["outputs"])
    assert any(len(t["outputs"]) > 1 for t in sim.generations)
    assert any(o["reSchedule"] for t in sim.generations for o in t["outputs"] if o["urls"])
    assert {f.kind for f in expected} == {"image", "video"}
    now = sim.clock.now()
    live = [f for f in expected if f.expires_at is None or f.expires_at > now]
    dead = [f for f in expected if f not in live]
    assert live and dead
    assert all(f.sha256 == sim.media_sha256(f.url) for f in live)
    assert_files_served(client, live)
    for f in dead:
        r = client.get(f.url)
        assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    assert client.get(sim.base_url + "/data/prod/images/nope.jpg").status_code == 404


def test_media_expires_retention_after_end_time(
    client: httpx.Client, sim: CrowdComputedSimulator
) -> None:
    _finish(sim)
    now = sim.clock.now()
    live = next(f for f in sim.expected_media() if f.expires_at and f.expires_at > now)
    task = next(t for t in sim.generations if t["taskId"] == live.generation_id)
    end = max(o["endTime"] for o in task["outputs"])
    expires = datetime.fromtimestamp(end, UTC) + timedelta(hours=24)
    assert live.expires_at == expires
    assert client.get(live.url).status_code == 200
    sim.clock.advance((expires - now).total_seconds() + 1)
    assert client.get(live.url).status_code == 403


# --------------------------------------------------------------------------- faults


def test_rate_limit_with_retry_after(client: httpx.Client, sim: CrowdComputedSimulator) -> None:
    sim.faults.update(rate_limit=True, retry_after="3")
    r = client.get(sim.api_base + HISTORY, params={"workflow": "upscaler"})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["code"] == "Failed" and r.json()["data"] is None
    with pytest.raises(RateLimitedError) as info:
        _api(sim).fetch_page("upscaler", 1)
    assert info.value.retry_after == 3.0
    sim.faults.update(rate_limit=False)
    assert _api(sim).fetch_page("upscaler", 1).records


def test_server_errors_retried_then_raised(
    client: httpx.Client, sim: CrowdComputedSimulator
) -> None:
    sim.faults.fail_next = 2
    statuses = [
        client.get(sim.api_base + STATUS, params={"taskId": "1"}).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    sim.faults.fail_next = 2  # the adapter's client retries twice and gets through
    assert _api(sim).fetch_page("upscaler", 1).records
    sim.faults.error_rate = 1.0
    codes = {client.get(sim.api_base + HISTORY).status_code for _ in range(10)}
    assert codes <= {500, 502, 503} and len(codes) > 1
    with pytest.raises(TransientProviderError):
        _api(sim).fetch_page("upscaler", 1)


@pytest.mark.parametrize("mode", ["html", "truncated"])
def test_malformed_bodies_raise_malformed(sim: CrowdComputedSimulator, mode: str) -> None:
    sim.faults.update(malformed=mode)
    provider = _api(sim)
    with pytest.raises(MalformedResponseError):
        provider.fetch_page("upscaler", 1)
    with pytest.raises(MalformedResponseError):
        provider.fetch(sim.generations[-1]["taskId"])


def test_wrong_types_are_tolerated(client: httpx.Client, sim: CrowdComputedSimulator) -> None:
    _finish(sim)
    clean = _sync_all(_api(sim, workflows=list(WORKFLOWS), page_size=5))
    sim.faults.update(malformed="wrong_types")
    data = _history(client, sim, workflow="text-to-image", page_size=5)["data"]
    assert isinstance(data["total"], str) and isinstance(data["pageIndex"], str)
    outputs = [o for t in data["pageData"] for o in t["outputs"]]
    assert all(isinstance(o["startTime"], str) for o in outputs)
    assert any(o["urls"] is None for o in outputs)  # failed outputs: null instead of []
    mangled = _sync_all(_api(sim, workflows=list(WORKFLOWS), page_size=5))
    assert [dataclasses.replace(r, raw={}) for r in mangled] == [
        dataclasses.replace(r, raw={}) for r in clean
    ]
    assert mangled[0].raw != clean[0].raw  # the raw payload is kept as it came


# --------------------------------------------------------------------------- the adapter


def test_adapter_pages_every_workflow(sim: CrowdComputedSimulator) -> None:
    _finish(sim)
    provider = _api(sim, page_size=3)  # default: all 25 workflows
    assert len(provider.streams()) == 25
    records = _sync_all(provider)
    by_id = {r.external_id: r for r in records}
    assert len(by_id) == len(records) == COUNT
    outcomes, workflow_of = sim.outcomes, sim.workflow_of
    for task_id, rec in by_id.items():
        assert rec.kind == rec.model == workflow_of[task_id]
        assert rec.created_at is not None and rec.completed_at is not None
        if outcomes[task_id] == "finished":
            assert rec.status is GenerationStatus.SUCCEEDED and rec.error is None
            assert rec.expires_at == rec.completed_at + timedelta(hours=24)
        else:
            assert rec.status is GenerationStatus.FAILED and not rec.media
            reason = "failed at provider" if outcomes[task_id] == "failed" else "finished"
            assert rec.error is not None and rec.error.startswith(reason)
    expected = {f.url: f for f in sim.expected_media()}
    got = {m.url: (r, m) for r in records for m in r.media}
    assert set(got) == set(expected)
    for url, (rec, m) in got.items():
        exp = expected[url]
        assert rec.external_id == exp.generation_id
        assert m.kind == MediaKind(exp.kind) and m.role.value == exp.role
        assert rec.expires_at == exp.expires_at
    assert sim.paging_seen["snake"] > 0 and sim.paging_seen["camel"] == 0


def test_adapter_fetch_and_status_changes(sim: CrowdComputedSimulator) -> None:
    provider = _api(sim, workflows=list(WORKFLOWS))
    newest = sim.generations[0]["taskId"]
    first = provider.fetch(newest)
    assert first.status is GenerationStatus.QUEUED and first.media == ()
    assert first.kind is None  # the status endpoint names no workflow; not listed yet
    listed = {r.external_id: r for r in _sync_all(provider)}
    assert listed[newest].status is GenerationStatus.QUEUED
    sim.clock.advance(1.0)
    assert provider.fetch(newest).status is GenerationStatus.RUNNING
    _finish(sim)
    done = provider.fetch(newest)
    assert done.status is GenerationStatus.SUCCEEDED and done.media
    assert done.kind == sim.workflow_of[newest]  # learnt from the listing
    assert {m.url for m in done.media} == {
        f.url for f in sim.expected_media() if f.generation_id == newest
    }
    with pytest.raises(NotFoundError):
        provider.fetch("582079535692914438")


def test_adapter_business_errors(sim: CrowdComputedSimulator) -> None:
    with pytest.raises(AuthError) as info:
        _api(sim, key="wrong").fetch_page("upscaler", 1)
    assert info.value.status_code == 200  # the envelope said so, not HTTP
    with pytest.raises(AuthError):
        _api(sim, key="wrong").fetch(sim.generations[0]["taskId"])
    with pytest.raises(BusinessError) as business:
        _api(sim, workflows=["text-to-image"]).fetch_page("not-a-workflow", 1)
    assert business.value.code == "Failed" and "invalid params" in str(business.value)
    authorization = _api(sim, auth_style="authorization", workflows=["upscaler"])
    assert _sync_all(authorization)


def test_camel_only_server_needs_the_camel_option() -> None:
    """A server that ignores ``page_index`` answers page 1 again: an error, never a loop."""
    knobs = {"workflows": ["text-to-image"], "count": 25, "processing_count": 0}
    with _make(accept_paging="camel", max_page_size=100, **knobs) as s:
        expected = [t["taskId"] for t in s.generations]
        snake = _api(s, workflows=["text-to-image"], page_size=10)
        first = snake.fetch_page("text-to-image", 1)  # the server's defaults: 20 per page
        assert [r.external_id for r in first.records] == expected[:20]
        assert first.got == 20
        with pytest.raises(MalformedResponseError, match="paging_params"):
            snake.fetch_page("text-to-image", 2)
        for spelling in ("camel", "both"):
            provider = _api(s, workflows=["text-to-image"], page_size=10, paging_params=spelling)
            assert [r.external_id for r in _sync_all(provider)] == expected
        assert s.paging_seen["snake"] == 2  # sent, and ignored
        assert s.paging_seen["camel"] > 0 and s.paging_seen["both"] > 0


def test_callback_payload_names_the_task(sim: CrowdComputedSimulator) -> None:
    _finish(sim)
    provider = _api(sim)
    for task in sim.generations[:4]:
        body = json.dumps(sim.callback_payload(task["taskId"])).encode()
        assert provider.webhook_ids(body, {"content-type": "application/json"}) == [task["taskId"]]


# --------------------------------------------------------------------------- config


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        crowdcomputed.create(workflows=["made-up"])
    with pytest.raises(ValueError):
        crowdcomputed.create(count=-1)
    with pytest.raises(TypeError):
        crowdcomputed.create(no_such_knob=1)
    s = crowdcomputed.create(workflows=["ghibli-style"], count=2)  # lists from JSON knobs
    assert s.config.workflows == ("ghibli-style",)
