"""The QuickRouter simulator over real loopback HTTP, then the adapter against it.

The simulator clock is advanced instead of sleeping, so status transitions, late URLs
and signature expiry are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
)
from genvault.expiry import url_expiry
from genvault.providers.quickrouter import QuickRouter
from genvault.records import GenerationStatus, MediaRole
from genvault.simulator import quickrouter
from genvault.simulator.quickrouter import QuickRouterSimulator
from tests.fixtures.sims import SimStarter, sim_adapter
from tests.integration.sim_checks import assert_files_served

KEY = "sk-qr-test-5d1f0c"
WAIT = 4.0
LATE = 2.0


@pytest.fixture
def sim(start_sim: SimStarter) -> QuickRouterSimulator:
    return start_sim(
        quickrouter.create,
        api_key=KEY,
        seed=5,
        count=10,
        video_size=40_000,
        image_size=5_000,
        processing_count=4,
        processing_seconds=WAIT,
        late_url_seconds=LATE,
        failed_count=3,
    )


@pytest.fixture
def client(sim: QuickRouterSimulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    with httpx.Client(base_url=sim.api_base, headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def cdn() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def _settings(**changes: object) -> NetworkSettings:
    return NetworkSettings.model_validate({"allow_private": True, **changes})


def _provider(sim: QuickRouterSimulator, key: str = KEY, **net: object) -> QuickRouter:
    """The adapter with its default options (24 h URL lifetime, as the simulator's CDN)."""
    return sim_adapter(sim, QuickRouter, key=key, settings=_settings(**net), sim_options=False)


def _query(client: httpx.Client, task_id: str) -> httpx.Response:
    return client.get("/v1/video/query", params={"id": task_id})


# --------------------------------------------------------------------------- wire format


def test_wrong_or_missing_key_is_the_relays_401(
    sim: QuickRouterSimulator, client: httpx.Client
) -> None:
    tid = sim.task_ids[0]
    r = httpx.get(
        sim.api_base + "/v1/video/query",
        params={"id": tid},
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "Invalid token", "type": "new_api_error"}}
    bare = httpx.get(sim.api_base + "/v1/video/query", params={"id": tid})
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "new_api_error"
    raw_key = httpx.get(
        sim.api_base + "/v1/video/query", params={"id": tid}, headers={"Authorization": KEY}
    )
    assert raw_key.status_code == 401  # the scheme is "Bearer <key>", nothing else
    assert _query(client, tid).status_code == 200


def test_unknown_missing_and_unroutable_ids(client: httpx.Client) -> None:
    r = _query(client, "grok:00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "task not found", "type": "invalid_request_error"}}
    missing = client.get("/v1/video/query")
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    no_channel = _query(client, "kling-v2:abc")
    assert no_channel.status_code == 200  # a business error inside HTTP 200
    body = no_channel.json()
    assert body["code"] == "get_channel_failed" and body["data"] is None


def test_three_shapes_as_documented(sim: QuickRouterSimulator, client: httpx.Client) -> None:
    sim.clock.advance(WAIT + LATE)
    families = {tid.partition(":")[0] for tid in sim.task_ids}
    assert "grok" in families and "sora-2" in families
    assert any(f.startswith("veo") for f in families)
    for tid in sim.task_ids:
        body = _query(client, tid).json()
        assert set(body) == set(sim.task(tid))
        if tid.startswith("grok:"):
            assert set(body) >= {"id", "status", "video_url", "enhanced_prompt"}
            assert body["id"] == tid.removeprefix("grok:")  # the seed's quirk
            assert isinstance(body["status_update_time"], int)
            assert body["enhanced_prompt"].startswith("```\n")
        elif tid.startswith("sora-2:"):
            detail = body["detail"]
            assert body["id"] == tid and detail["id"] == tid.removeprefix("sora-2:")
            assert detail["input"]["model"] == "sy_ore"
            assert detail["pending_info"]["created_at"].endswith("Z")
        else:
            detail = body["detail"]
            assert body["id"] == detail["id"] == tid
            assert detail["req"]["model"] == tid.partition(":")[0]
            assert isinstance(detail["created_at"], int) and detail["max_retries"] == 3


def test_statuses_move_over_time(sim: QuickRouterSimulator, client: httpx.Client) -> None:
    in_flight = sim.task_ids[:4]
    late = sim.late_url_id
    assert late == in_flight[0]

    def status(tid: str) -> tuple[str, str | None]:
        body = _query(client, tid).json()
        detail = body.get("detail", {})
        raw = body.get("status") or detail.get("status")
        pending = detail.get("pending_info", {}).get("status")
        url = body.get("video_url") or detail.get("video_url") or detail.get("url")
        return f"{raw}/{pending}" if pending else raw, url

    assert all(status(t)[0] in ("pending", "pending/queued") for t in in_flight)
    sim.clock.advance(WAIT * 0.6)
    running = {t: status(t)[0] for t in in_flight}
    assert all(
        s in ("processing", "video_generating", "pending/processing") for s in running.values()
    )
    sim.clock.advance(WAIT * 0.5)
    assert status(late) == ("completed", None)  # completed, but no URL yet
    for tid in in_flight[1:]:
        raw, url = status(tid)
        if tid in sim.failures:
            assert raw.startswith("failed") and url is None
        else:
            assert raw.startswith("completed") and url is not None
    sim.clock.advance(LATE)
    raw, url = status(late)
    assert raw == "completed" and url is not None


def test_stale_error_task_is_completed(sim: QuickRouterSimulator, client: httpx.Client) -> None:
    tid = sim.stale_error_id
    assert tid is not None
    detail = _query(client, tid).json()["detail"]
    assert detail["status"] == "completed" and detail["video_url"]
    assert "reCAPTCHA" in detail["error_message"] and detail["retry_count"] == 3


# --------------------------------------------------------------------------- CDN


def test_media_bytes_match_expected(sim: QuickRouterSimulator, cdn: httpx.Client) -> None:
    sim.clock.advance(WAIT + LATE)
    expected = sim.expected_media()
    roles = {f.role for f in expected}
    assert roles == {"result", "reference"}
    assert {f.generation_id for f in expected}.isdisjoint(sim.failures)
    assert_files_served(cdn, expected)


def test_signed_urls_expire_and_a_reread_resigns(
    sim: QuickRouterSimulator, client: httpx.Client, cdn: httpx.Client
) -> None:
    sim.clock.advance(WAIT + LATE)
    sim.url_ttl_seconds = 5
    styles = set()
    for tid in sim.task_ids:
        if tid in sim.failures:
            continue
        body = _query(client, tid).json()
        detail = body.get("detail", {})
        url = body.get("video_url") or detail.get("video_url") or detail.get("url")
        query = parse_qs(urlsplit(url).query)
        styles.add("s3" if "X-Amz-Date" in query else "discord")
        if "ex" in query:
            assert {"is", "hm"} <= set(query)
        expiry = url_expiry(url)
        assert expiry is not None
        assert timedelta(0) < expiry - sim.clock.now() <= timedelta(seconds=5)
        assert cdn.get(url).status_code == 200
        forged = url.replace("hm=", "hm=0").replace("X-Amz-Signature=", "X-Amz-Signature=0")
        denied = cdn.get(forged)
        assert denied.status_code == 403 and b"SignatureDoesNotMatch" in denied.content
        unsigned = cdn.get(url.split("?")[0])
        assert unsigned.status_code == 403
        sim.clock.advance(6)
        expired = cdn.get(url)
        assert expired.status_code == 403 and b"Request has expired" in expired.content
        fresh = _query(client, tid).json()
        again = fresh.get("video_url") or fresh.get("detail", {}).get("video_url")
        again = again or fresh.get("detail", {}).get("url")
        assert again != url and urlsplit(again).path == urlsplit(url).path
        assert cdn.get(again).status_code == 200
    assert styles == {"s3", "discord"}


def test_files_die_24h_after_completion_whatever_the_signature(
    sim: QuickRouterSimulator,
) -> None:
    done = next(f for f in sim.expected_media() if f.generation_id not in sim.task_ids[:4])
    assert httpx.get(sim.signed_url(urlsplit(done.url).path)).status_code == 200
    sim.clock.advance(25 * 3600)
    url = sim.signed_url(urlsplit(done.url).path)
    r = httpx.get(url)
    assert r.status_code == 403
    assert done.expires_at is not None and done.expires_at < sim.clock.now()


def test_signature_never_outlives_the_file(sim: QuickRouterSimulator) -> None:
    sim.url_ttl_seconds = 30 * 86_400
    for f in sim.expected_media():
        if f.role == "result":
            expiry = url_expiry(f.url)
            assert expiry is not None and f.expires_at is not None
            assert expiry <= f.expires_at
            assert f.expires_at - expiry < timedelta(seconds=1)


# --------------------------------------------------------------------------- faults


def test_rate_limit_with_retry_after(sim: QuickRouterSimulator, client: httpx.Client) -> None:
    sim.faults.update(rate_limit=True, retry_after=7)
    r = _query(client, sim.task_ids[0])
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert "error" in r.json()
    sim.faults.reset()
    assert _query(client, sim.task_ids[0]).status_code == 200


def test_server_errors_and_malformed_bodies(
    sim: QuickRouterSimulator, client: httpx.Client
) -> None:
    tid = sim.task_ids[5]
    sim.faults.fail_next = 1
    assert _query(client, tid).status_code == 503
    sim.faults.error_rate = 1.0
    assert _query(client, tid).status_code in (500, 502, 503)
    sim.faults.reset()
    sim.faults.malformed = "html"
    html = _query(client, tid)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    sim.faults.malformed = "truncated"
    with pytest.raises(ValueError):
        _query(client, tid).json()
    sim.faults.malformed = "wrong_types"
    mangled = _query(client, tid).json()
    assert isinstance(mangled, dict)
    stats = sim.stats.snapshot()
    assert stats["faults"]["fail_next"] == 1 and stats["faults"]["malformed:html"] == 1


# --------------------------------------------------------------------------- the adapter


def test_adapter_follows_every_task_to_its_end(sim: QuickRouterSimulator) -> None:
    provider = _provider(sim)
    first = {tid: provider.fetch(tid) for tid in sim.task_ids}
    assert all(rec.external_id == tid for tid, rec in first.items())  # grok ids keep "grok:"
    for tid in sim.task_ids[:4]:
        assert first[tid].status is GenerationStatus.QUEUED
    sim.clock.advance(WAIT * 0.6)
    assert provider.fetch(sim.task_ids[2]).status is GenerationStatus.RUNNING
    sim.clock.advance(WAIT * 0.5)
    late = sim.late_url_id
    assert late is not None
    pending = provider.fetch(late)
    assert pending.status is GenerationStatus.RUNNING and pending.provider_status == "completed"
    sim.clock.advance(LATE)
    expected = {(f.generation_id, urlsplit(f.url).path): f for f in sim.expected_media()}
    for tid in sim.task_ids:
        rec = provider.fetch(tid)
        assert rec.external_id == tid
        if tid in sim.failures:
            assert rec.status is GenerationStatus.FAILED
            assert rec.error == sim.failures[tid] and rec.media == ()
            continue
        assert rec.status is GenerationStatus.SUCCEEDED, (tid, rec.provider_status)
        assert rec.error is None
        assert rec.completed_at is not None and rec.expires_at is not None
        result = rec.media[0]
        assert result.role is MediaRole.RESULT
        assert rec.expires_at == result.url_expires_at == url_expiry(result.url)
        assert rec.expires_at <= sim.deadline(tid)
        assert rec.completed_at + timedelta(hours=24) == sim.deadline(tid)
        got = {urlsplit(m.url).path for m in rec.media}
        assert got == {path for (gid, path) in expected if gid == tid}
        for m in rec.media:
            assert m.role.value == expected[(tid, urlsplit(m.url).path)].role
    stale = sim.stale_error_id
    assert stale is not None and provider.fetch(stale).status is GenerationStatus.SUCCEEDED
    assert sim.last_headers["accept"] == "application/json"
    assert sim.last_headers["content-type"] == "application/json"
    assert sim.last_headers["authorization"] == f"Bearer {KEY}"


def test_adapter_error_classes(sim: QuickRouterSimulator) -> None:
    provider = _provider(sim)
    with pytest.raises(BusinessError) as info:
        provider.fetch("kling-v2:abc")
    assert info.value.code == "get_channel_failed"
    with pytest.raises(NotFoundError):
        provider.fetch("grok:00000000-0000-4000-8000-000000000000")
    with pytest.raises(AuthError):
        _provider(sim, key="wrong").fetch(sim.task_ids[0])


@pytest.mark.parametrize("mode", ["html", "truncated"])
def test_adapter_malformed_bodies(sim: QuickRouterSimulator, mode: str) -> None:
    sim.faults.malformed = mode  # type: ignore[assignment]
    with pytest.raises(MalformedResponseError):
        _provider(sim).fetch(sim.task_ids[5])


def test_adapter_tolerates_wrong_types(sim: QuickRouterSimulator) -> None:
    provider = _provider(sim)
    tid = next(t for t in sim.task_ids[4:] if t not in sim.failures)
    clean = provider.fetch(tid)
    sim.faults.malformed = "wrong_types"
    mangled = provider.fetch(tid)
    assert mangled.status is clean.status is GenerationStatus.SUCCEEDED
    assert mangled.completed_at == clean.completed_at
    assert [urlsplit(m.url).path for m in mangled.media] == [
        urlsplit(m.url).path for m in clean.media
    ]


def test_adapter_retries_transient_errors_and_reports_rate_limits(
    sim: QuickRouterSimulator,
) -> None:
    provider = _provider(sim, api_retries=2, backoff_cap_seconds=0.5)
    sim.faults.fail_next = 2
    assert provider.fetch(sim.task_ids[5]).external_id == sim.task_ids[5]
    assert provider.api.stats["retries"] == 2
    sim.faults.update(rate_limit=True, retry_after=30)  # longer than the cap: give up at once
    with pytest.raises(RateLimitedError) as info:
        provider.fetch(sim.task_ids[5])
    assert info.value.retry_after == 30
