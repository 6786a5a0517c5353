"""The Akool simulator over real loopback HTTP, then the adapter against it.

First the wire format (auth and its precedence, business codes in HTTP 200, status
transitions, the CDN and its expiry, faults), then :class:`Akool` through a real
:class:`ApiClient`: records match the simulator's truth, codes map to the right
exceptions, malformed bodies raise MalformedResponseError, webhooks round-trip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

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
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers.akool import Akool
from genvault.records import GenerationStatus
from genvault.simulator import akool
from genvault.simulator.akool import STATUS_PATH, TOKEN_PATH, AkoolSimulator
from genvault.simulator.base import ExpectedFile
from tests.fixtures.sims import SimStarter, sim_adapter
from tests.integration.sim_checks import assert_files_served

KEY = "ak-int-key-0123456789abc"  # 24 characters
COUNT = 14
PROCESSING_S = 30.0  # tests move the simulator clock; real time never finishes a job
HALF = PROCESSING_S / 2 + 0.5


@pytest.fixture
def sim(start_sim: SimStarter) -> AkoolSimulator:
    return start_sim(
        akool.create,
        api_key=KEY,
        seed=5,
        count=COUNT,
        image_size=20_000,
        upscale_size=30_000,
        processing_count=3,
        processing_seconds=PROCESSING_S,
        failed_count=3,
        upscaled_count=4,
        expired_count=2,
    )


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    c = build_client(NetworkSettings(), NetworkPolicy(allow_private=True))
    yield c
    c.close()


def _get(
    client: httpx.Client, sim: AkoolSimulator, task_id: str | None, **headers: str
) -> httpx.Response:
    params = {} if task_id is None else {"image_model_id": task_id}
    hdrs = headers or {"x-api-key": KEY}
    return client.get(sim.api_base + STATUS_PATH, params=params, headers=hdrs)


def _provider(sim: AkoolSimulator, http: httpx.Client, key: str = KEY, **options: Any) -> Akool:
    settings = NetworkSettings(api_retries=2)
    return sim_adapter(sim, Akool, key=key, settings=settings, http=http, **options)


def _exp(f: ExpectedFile) -> datetime:
    """The simulator always knows a file's deadline."""
    assert f.expires_at is not None
    return f.expires_at


# --------------------------------------------------------------------------- wire format


def test_result_shape_matches_the_seed(client: httpx.Client, sim: AkoolSimulator) -> None:
    done = sim.task_ids[COUNT - 3]
    r = _get(client, sim, done)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert (body["code"], body["msg"]) == (1000, "OK")
    assert set(body["data"]) == {
        "faceswap_quality", "deduction_credit", "buttons", "used_buttons", "upscaled_urls",
        "_id", "create_time", "uid", "type", "image_status", "image",
    }  # fmt: skip
    assert body["data"]["_id"] == done


def test_ids_are_object_ids_with_their_creation_second(
    client: httpx.Client, sim: AkoolSimulator
) -> None:
    assert len(set(sim.task_ids)) == COUNT
    for task in sim.tasks:
        assert re.fullmatch(r"[0-9a-f]{24}", task["_id"])
        assert int(task["_id"][:8], 16) == task["create_time"] // 1000
    created = [t["create_time"] for t in sim.tasks]
    assert created == sorted(created, reverse=True)  # task_ids are newest first


def test_wrong_key_is_code_1101_in_http_200(client: httpx.Client, sim: AkoolSimulator) -> None:
    r = _get(client, sim, sim.task_ids[0], **{"x-api-key": "nope"})
    assert r.status_code == 200
    assert r.json() == {
        "code": 1101,
        "msg": "Invalid authorization or The request token has expired",
    }
    r = client.get(sim.api_base + STATUS_PATH, params={"image_model_id": sim.task_ids[0]})
    assert (r.status_code, r.json()["code"]) == (200, 1102)


def test_auth_error_status_knob_answers_401(client: httpx.Client) -> None:
    with akool.create(api_key=KEY, count=2, auth_error_status=401) as s:
        r = _get(client, s, s.task_ids[0], **{"x-api-key": "nope"})
        assert (r.status_code, r.json()["code"]) == (401, 1101)


def test_get_token_and_bearer_auth(client: httpx.Client, sim: AkoolSimulator) -> None:
    url = sim.api_base + TOKEN_PATH
    r = client.post(url, json={"clientId": sim.client_id, "clientSecret": KEY})
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 1000 and body["token"] == sim.token
    wrong = client.post(url, json={"clientId": sim.client_id, "clientSecret": "x"})
    assert wrong.json()["code"] == 1101
    assert client.post(url, json={"clientId": sim.client_id}).json()["code"] == 1003
    assert client.post(url, content=b"not json").json()["code"] == 1003
    ok = _get(client, sim, sim.task_ids[-1], Authorization=f"Bearer {body['token']}")
    assert ok.json()["code"] == 1000


def test_authorization_wins_over_x_api_key(client: httpx.Client, sim: AkoolSimulator) -> None:
    tid = sim.task_ids[-1]
    bad_bearer = _get(client, sim, tid, **{"x-api-key": KEY, "Authorization": "Bearer nope"})
    assert bad_bearer.json()["code"] == 1101
    good_bearer = _get(
        client, sim, tid, **{"x-api-key": "nope", "Authorization": f"Bearer {sim.token}"}
    )
    assert good_bearer.json()["code"] == 1000


def test_unknown_and_missing_ids(client: httpx.Client, sim: AkoolSimulator) -> None:
    assert _get(client, sim, "0" * 24).json() == {
        "code": 1008,
        "msg": "The content you get does not exist",
    }
    assert _get(client, sim, None).json()["code"] == 1003
    assert _get(client, sim, "").json()["code"] == 1003


def test_status_goes_1_2_then_3_or_4(client: httpx.Client, sim: AkoolSimulator) -> None:
    processing = sim.task_ids[:3]
    failing = [t for t in processing if t in sim.failed_ids]
    assert len(failing) == 1  # one task visibly ends in 4

    def states() -> list[tuple[int, str, list[str]]]:
        out = []
        for tid in processing:
            d = _get(client, sim, tid).json()["data"]
            out.append((d["image_status"], d["image"], d["upscaled_urls"]))
        return out

    assert all(s == (1, "", []) for s in states())
    image_path = f"/cdn/image/{processing[0]}.jpg"
    assert client.get(sim.server.url(image_path)).status_code == 404  # not rendered yet
    sim.clock.advance(HALF)
    assert all(s == (2, "", []) for s in states())
    sim.clock.advance(HALF)
    for tid, (status, image, _ups) in zip(processing, states(), strict=True):
        if tid in failing:
            assert (status, image) == (4, "")
        else:
            assert status == 3 and image == sim.server.url(f"/cdn/image/{tid}.jpg")
    assert client.get(sim.server.url(image_path)).status_code == 200


def test_media_bytes_match_expected_media(client: httpx.Client, sim: AkoolSimulator) -> None:
    sim.clock.advance(PROCESSING_S + 1)
    expected = sim.expected_media()
    now = sim.clock.now()
    live = [f for f in expected if _exp(f) > now]
    assert {f.role for f in live} == {"result", "upscale"}
    assert not {f.generation_id for f in expected} & set(sim.failed_ids)
    assert {f.content_type for f in live} == {"image/jpeg"}
    assert all(f.sha256 == sim.media_sha256(f.url) for f in live)
    assert_files_served(client, live)
    # every URL the API hands out is in expected_media, and vice versa
    listed = set()
    for t in sim.tasks:
        if t["image_status"] == 3:
            listed |= {t["image"], *t["upscaled_urls"]}
    assert listed == {f.url for f in expected}


def test_expired_media_is_403(client: httpx.Client, sim: AkoolSimulator) -> None:
    now = sim.clock.now()
    dead = [f for f in sim.expected_media() if _exp(f) <= now]
    assert len({f.generation_id for f in dead}) == 2  # expired_count
    for f in dead:
        created = datetime.fromtimestamp(int(f.generation_id[:8], 16), UTC)
        assert now - created > timedelta(days=7)
        r = client.get(f.url)
        assert r.status_code == 403 and b"AccessDenied" in r.content


def test_signed_upscales_expire_before_the_retention(
    client: httpx.Client, sim: AkoolSimulator
) -> None:
    now = sim.clock.now()
    expected = sim.expected_media()
    ups = [f for f in expected if f.role == "upscale" and _exp(f) > now]
    assert ups
    f = min(ups, key=_exp)
    query = dict(p.split("=", 1) for p in urlsplit(f.url).query.split("&"))
    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    assert datetime.fromtimestamp(int(query["Expires"]), UTC) == _exp(f)
    image = next(e for e in expected if e.generation_id == f.generation_id and e.role == "result")
    # an hour before the 7-day rule, in whole seconds (what an Expires= query can say)
    assert _exp(image).replace(microsecond=0) - _exp(f) == timedelta(hours=1)
    sim.clock.advance((_exp(f) - now).total_seconds() + 1)
    assert client.get(f.url).status_code == 403
    assert client.get(image.url).status_code == 200


def test_rate_limit_with_retry_after(client: httpx.Client, sim: AkoolSimulator) -> None:
    sim.faults.update(rate_limit=True, retry_after=7)
    r = _get(client, sim, sim.task_ids[-1])
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["code"] == 429
    sim.faults.reset()
    assert _get(client, sim, sim.task_ids[-1]).json()["code"] == 1000


def test_server_errors_and_malformed(client: httpx.Client, sim: AkoolSimulator) -> None:
    tid = sim.task_ids[-1]
    sim.faults.fail_next = 1
    assert _get(client, sim, tid).status_code == 503
    sim.faults.error_rate = 1.0
    assert _get(client, sim, tid).status_code in (500, 502, 503)
    sim.faults.reset()
    sim.faults.malformed = "html"
    r = _get(client, sim, tid)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html"
    sim.faults.malformed = "truncated"
    with pytest.raises(json.JSONDecodeError):
        json.loads(_get(client, sim, tid).content)
    sim.faults.malformed = "wrong_types"
    mangled = _get(client, sim, tid).json()
    assert mangled["code"] == "1000" and mangled["data"]["image_status"] == "3"
    assert mangled["data"]["used_buttons"] is None  # empty lists become null


def test_default_credentials_have_akool_lengths() -> None:
    """(Determinism for a seed is in the contract suite, test_simulator_contract.py.)"""
    a = akool.create(seed=9, count=6)
    assert len(a.client_id.encode()) == 16 and len(a.api_key) == 24


# --------------------------------------------------------------------------- the adapter


def test_fetch_every_task_matches_the_truth(sim: AkoolSimulator, http: httpx.Client) -> None:
    sim.clock.advance(PROCESSING_S + 1)  # every processing task has finished
    prov = _provider(sim, http)
    expected = sim.expected_media()
    for raw in sim.tasks:
        rec = prov.fetch(raw["_id"])
        assert rec.external_id == raw["_id"]
        assert rec.raw == raw
        created = datetime.fromtimestamp(raw["create_time"] / 1000, UTC)
        assert rec.created_at == created and rec.expires_at == created + timedelta(days=7)
        files = {f.url: f for f in expected if f.generation_id == raw["_id"]}
        if raw["_id"] in sim.failed_ids:
            assert rec.status is GenerationStatus.FAILED and rec.error
            assert rec.media == () and not files
            continue
        assert rec.status is GenerationStatus.SUCCEEDED
        assert {m.url for m in rec.media} == set(files)
        for m in rec.media:
            assert m.role.value == files[m.url].role
            # the store's deadline: the earlier of the 7-day rule and the URL's own expiry
            deadline = min(d for d in (rec.expires_at, m.url_expires_at) if d is not None)
            assert abs(deadline - _exp(files[m.url])) < timedelta(seconds=1)


def test_fetch_sees_a_task_finish(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http)
    tid = next(t for t in sim.task_ids[:3] if t not in sim.failed_ids)
    assert prov.fetch(tid).status is GenerationStatus.QUEUED
    sim.clock.advance(HALF)
    assert prov.fetch(tid).status is GenerationStatus.RUNNING
    sim.clock.advance(HALF)
    rec = prov.fetch(tid)
    assert rec.status is GenerationStatus.SUCCEEDED and len(rec.media) == 1


def test_business_codes_raise(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http)
    with pytest.raises(NotFoundError, match=r"code 1008 \(content does not exist\)"):
        prov.fetch("f" * 24)
    with pytest.raises(BusinessError, match="code 1003") as info:
        prov.fetch("")
    assert info.value.code == 1003 and info.value.status_code == 200
    with pytest.raises(AuthError, match="code 1101"):
        _provider(sim, http, key="wrong-key-0123456789abcd").fetch(sim.task_ids[-1])


def test_http_401_knob_raises_auth_error(http: httpx.Client) -> None:
    with akool.create(api_key=KEY, count=2, auth_error_status=401) as s:
        with pytest.raises(AuthError) as info:
            _provider(s, http, key="nope").fetch(s.task_ids[0])
        assert info.value.status_code == 401


def test_bearer_auth_style(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http, key=sim.token, auth_style="bearer")
    assert prov.fetch(sim.task_ids[-1]).external_id == sim.task_ids[-1]
    with pytest.raises(AuthError):
        _provider(sim, http, key=KEY, auth_style="bearer").fetch(sim.task_ids[-1])


def test_malformed_bodies_raise(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http)
    tid = sim.task_ids[-1]
    for mode in ("html", "truncated"):
        sim.faults.malformed = mode
        with pytest.raises(MalformedResponseError):
            prov.fetch(tid)
    sim.faults.malformed = "wrong_types"  # numbers as text, lists as null: still readable
    rec = prov.fetch(tid)
    assert rec.status is GenerationStatus.SUCCEEDED and rec.created_at is not None


def test_retries_then_gives_up(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http)
    tid = sim.task_ids[-1]
    sim.faults.fail_next = 2
    assert prov.fetch(tid).external_id == tid  # two 503s, then the answer
    sim.faults.update(rate_limit=True, retry_after=1)
    with pytest.raises(RateLimitedError):
        prov.fetch(tid)
    sim.faults.reset()
    sim.faults.error_rate = 1.0
    with pytest.raises(TransientProviderError):
        prov.fetch(tid)


def test_webhook_from_the_simulator_names_the_task(sim: AkoolSimulator, http: httpx.Client) -> None:
    prov = _provider(sim, http)
    sim.clock.advance(PROCESSING_S + 1)
    tid = sim.task_ids[0]
    body = json.dumps(sim.callback_for(tid)).encode()
    assert prov.webhook_ids(body, {"content-type": "application/json"}) == [tid]
    assert prov.fetch(tid).external_id == tid
    from genvault.errors import WebhookRejectedError

    with pytest.raises(WebhookRejectedError, match="signature"):
        prov.webhook_ids(json.dumps(sim.callback_for(tid, "someone-else-123")).encode(), {})
    with pytest.raises(WebhookRejectedError, match="client_id"):
        _provider(sim, http, client_id=None).webhook_ids(body, {})
