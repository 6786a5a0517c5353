"""The Tengr.ai simulator over real loopback HTTP, then the adapter against it.

First the wire format (auth, offset/limit paging with its 400s, v1 versus v2,
status over time, CDN bytes and expiry, faults), then :class:`TengrAI` through a
real :class:`~genvault.net.api.ApiClient`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

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
from genvault.providers.tengrai import TengrAI
from genvault.records import GenerationRecord, GenerationStatus, MediaKind, MediaRole
from genvault.simulator import tengrai
from genvault.simulator.tengrai import TengrAISimulator
from genvault.walk import read_listing
from tests.fixtures.sims import SimStarter, sim_adapter
from tests.integration.sim_checks import assert_files_served

KEY = "tengr-test-key-3b7d"
COUNT = 17
PROCESSING_S = 2.0
SEED_FIELDS = {"id", "artworkType", "parameters", "duration", "results", "status", "createdAt"}
PARAM_FIELDS = {
    "model", "promptMode", "prompt", "negativePrompt", "style", "creativity", "details",
    "aspectRatio", "width", "height", "nsfw",
}  # fmt: skip
UNAUTHORIZED = {"message": "Unauthorized", "statusCode": 401}


@pytest.fixture
def sim(start_sim: SimStarter) -> TengrAISimulator:
    return start_sim(
        tengrai.create,
        api_key=KEY,
        seed=5,
        count=COUNT,
        image_size=12_000,
        processing_count=2,
        processing_seconds=PROCESSING_S,
        failed_count=2,
        canceled_count=1,
        empty_count=1,
        expired_count=2,
        signed_count=2,
        signed_ttl_seconds=3600,
    )


@pytest.fixture
def client(sim: TengrAISimulator) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
        yield c


def _walk(client: httpx.Client, sim: TengrAISimulator, version: str, limit: int) -> list[Any]:
    """Page like the real API: offset/limit, bare arrays, a short page ends it."""
    items: list[Any] = []
    offset = 0
    while True:
        r = client.get(
            f"{sim.api_base}/{version}/artworks", params={"offset": offset, "limit": limit}
        )
        assert r.status_code == 200
        page = r.json()
        assert isinstance(page, list) and len(page) <= limit
        items.extend(page)
        if len(page) < limit:
            return items
        offset += len(page)


def _live_ids(sim: TengrAISimulator) -> list[str]:
    now = sim.clock.now()
    return [
        g["id"]
        for g in sim.generations
        if datetime.fromisoformat(g["createdAt"].replace("Z", "+00:00")) + timedelta(days=8) > now
    ]


# --------------------------------------------------------------------------- wire format


def test_auth_is_bearer_and_401_has_the_provider_shape(sim: TengrAISimulator) -> None:
    art = _live_ids(sim)[-1]
    with httpx.Client(timeout=10) as anon:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": KEY},  # no "Bearer"
            {"x-api-key": KEY},
        ):
            for path in ("/v1/artworks", "/v2/artworks", f"/v2/artworks/{art}"):
                r = anon.get(sim.api_base + path, headers=headers)
                assert r.status_code == 401, (headers, path)
                assert r.json() == UNAUTHORIZED


def test_v2_paging_covers_every_live_artwork_once_newest_first(
    client: httpx.Client, sim: TengrAISimulator
) -> None:
    items = _walk(client, sim, "v2", limit=4)
    ids = [i["id"] for i in items]
    assert ids == _live_ids(sim) and len(ids) == COUNT - 2  # the expired 2 are gone
    created = [i["createdAt"] for i in items]
    assert created == sorted(created, reverse=True)
    for item in items:
        assert item.keys() == SEED_FIELDS
        assert item["parameters"].keys() >= PARAM_FIELDS
        assert item["createdAt"].endswith("Z") and len(item["createdAt"]) == 24
        assert 1 <= item["parameters"]["batch"] <= 2
    assert [i["id"] for i in _walk(client, sim, "v2", limit=500)] == ids
    default = client.get(f"{sim.api_base}/v2/artworks").json()
    assert [i["id"] for i in default] == ids[:10]  # limit defaults to 10
    assert client.get(f"{sim.api_base}/v2/artworks", params={"offset": 999}).json() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit must not be less than 1"),
        ({"limit": 501}, "limit must not be greater than 500"),
        ({"limit": "ten"}, "limit must be an integer number"),
        ({"offset": -1}, "offset must not be less than 0"),
    ],
)
def test_bad_paging_parameters_are_400(
    client: httpx.Client, sim: TengrAISimulator, params: dict[str, Any], message: str
) -> None:
    for version in ("v1", "v2"):
        r = client.get(f"{sim.api_base}/{version}/artworks", params=params)
        assert r.status_code == 400
        assert r.json() == {"message": message, "statusCode": 400, "error": "Bad Request"}


def test_v1_lists_only_terminal_artworks(client: httpx.Client, sim: TengrAISimulator) -> None:
    v1 = _walk(client, sim, "v1", limit=500)
    v2 = {i["id"]: i for i in _walk(client, sim, "v2", limit=500)}
    assert {i["status"] for i in v1} == {"done", "failed"}
    assert len(v1) == len(v2) - 2  # the two in progress
    in_progress = [i for i in v2.values() if i["status"] in ("starting", "processing")]
    assert len(in_progress) == 2
    for item in v1:
        assert "batch" not in item["parameters"]
        expected = {"succeeded": "done", "failed": "failed", "canceled": "failed"}
        assert item["status"] == expected[v2[item["id"]]["status"]]
    for item in in_progress:
        assert client.get(f"{sim.api_base}/v1/artworks/{item['id']}").status_code == 404
        assert client.get(f"{sim.api_base}/v2/artworks/{item['id']}").status_code == 200
    outcomes = sim.outcomes
    empty = [i for i in v1 if outcomes[i["id"]] == "empty"]
    assert len(empty) == 1 and empty[0]["status"] == "done" and empty[0]["results"] == []


def test_detail_and_404s(client: httpx.Client, sim: TengrAISimulator) -> None:
    art = _live_ids(sim)[3]
    r = client.get(f"{sim.api_base}/v2/artworks/{art}")
    assert r.status_code == 200 and r.json()["id"] == art
    expired = [g["id"] for g in sim.generations if g["id"] not in _live_ids(sim)]
    assert len(expired) == 2
    for missing in (*expired, "00000000-0000-4000-8000-000000000000"):
        for version in ("v1", "v2"):
            r = client.get(f"{sim.api_base}/{version}/artworks/{missing}")
            assert r.status_code == 404
            assert r.json() == {
                "message": "Artwork not found",
                "statusCode": 404,
                "error": "Not Found",
            }


def test_status_moves_starting_processing_succeeded(
    client: httpx.Client, sim: TengrAISimulator
) -> None:
    newest = _live_ids(sim)[0]
    url = f"{sim.api_base}/v2/artworks/{newest}"
    first = client.get(url).json()
    assert first["status"] == "starting" and first["results"] == [] and first["duration"] == 0
    files = [f for f in sim.expected_media() if f.generation_id == newest]
    assert files and all(client.get(f.url).status_code == 404 for f in files)

    sim.clock.advance(PROCESSING_S / 2)
    assert client.get(url).json()["status"] == "processing"
    assert client.get(f"{sim.api_base}/v1/artworks/{newest}").status_code == 404

    sim.clock.advance(PROCESSING_S)
    done = client.get(url).json()
    assert done["status"] == "succeeded"
    assert done["results"] == [f.url for f in files]
    assert done["duration"] > 0
    assert client.get(f"{sim.api_base}/v1/artworks/{newest}").json()["status"] == "done"
    for f in files:
        assert hashlib.sha256(client.get(f.url).content).hexdigest() == f.sha256


def test_media_bytes_match_expected_media(client: httpx.Client, sim: TengrAISimulator) -> None:
    sim.clock.advance(PROCESSING_S)
    expected = sim.expected_media()
    exposed = {u for i in _walk(client, sim, "v2", limit=500) for u in i["results"]}
    now = sim.clock.now()
    live = [f for f in expected if f.expires_at is not None and f.expires_at > now]
    assert exposed == {f.url for f in live}
    assert {f.role for f in expected} == {"result"} and {f.kind for f in expected} == {"image"}
    per_art: dict[str, int] = {}
    for f in expected:
        per_art[f.generation_id] = per_art.get(f.generation_id, 0) + 1
    assert set(per_art.values()) == {1, 2}  # batch of 1-2 results
    assert {f.content_type for f in live} == {"image/jpeg"}
    assert all(f.sha256 == sim.media_sha256(f.url) for f in live)
    assert_files_served(client, live)


def test_media_is_403_after_retention_and_signed_urls_die_first(
    client: httpx.Client, sim: TengrAISimulator
) -> None:
    expected = sim.expected_media()
    now = sim.clock.now()
    dead = [f for f in expected if f.expires_at is not None and f.expires_at <= now]
    assert dead, "the expired_count artworks' files"
    for f in dead:
        r = client.get(f.url)
        assert r.status_code == 403 and b"AccessDenied" in r.content

    signed = [f for f in expected if "Expires=" in f.url]
    assert len({f.generation_id for f in signed}) == 2
    for f in signed:
        assert f.expires_at is not None and f.expires_at <= now + timedelta(seconds=3600)
        assert client.get(f.url).status_code == 200
    sim.clock.advance(3601)
    assert all(client.get(f.url).status_code == 403 for f in signed)
    plain = next(f for f in expected if f not in dead and "Expires=" not in f.url)
    assert client.get(plain.url).status_code == 200

    sim.clock.advance(8 * 86_400)  # every artwork is past its 8 days now
    assert client.get(plain.url).status_code == 403
    assert client.get(f"{sim.api_base}/v2/artworks").json() == []
    assert client.get(f"{sim.api_base}/v2/artworks/{plain.generation_id}").status_code == 404


# --------------------------------------------------------------------------- faults


def test_rate_limit_with_retry_after(client: httpx.Client, sim: TengrAISimulator) -> None:
    sim.faults.update(rate_limit=True, retry_after="3")
    r = client.get(f"{sim.api_base}/v1/artworks")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json() == {
        "message": "ThrottlerException: Too Many Requests",
        "statusCode": 429,
        "error": "Too Many Requests",
    }
    sim.faults.update(rate_limit=False)
    assert client.get(f"{sim.api_base}/v1/artworks").status_code == 200


def test_server_errors_and_malformed_bodies(client: httpx.Client, sim: TengrAISimulator) -> None:
    sim.faults.fail_next = 2
    codes = [client.get(f"{sim.api_base}/v2/artworks").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    sim.faults.error_rate = 1.0
    assert {client.get(f"{sim.api_base}/v2/artworks").status_code for _ in range(10)} <= {
        500,
        502,
        503,
    }
    sim.faults.update(error_rate=0.0, malformed="html")
    r = client.get(f"{sim.api_base}/v2/artworks")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html"
    sim.faults.update(malformed="truncated")
    with pytest.raises(json.JSONDecodeError):
        client.get(f"{sim.api_base}/v2/artworks").json()
    sim.faults.update(malformed="wrong_types")
    item = client.get(f"{sim.api_base}/v2/artworks").json()[0]
    assert isinstance(item["createdAt"], int) and isinstance(item["duration"], str)
    assert isinstance(item["parameters"]["creativity"], str)


def test_accounts_on_the_simulator_use_v2() -> None:
    """v2 shows artworks in progress. (Determinism for a seed is in the contract suite.)"""
    assert tengrai.create(seed=3, count=6).account_options == {"api_version": "v2"}


# --------------------------------------------------------------------------- the adapter


def _adapter(sim: TengrAISimulator, key: str = KEY, **options: Any) -> TengrAI:
    """The adapter with its own defaults (api_version v1) but for ``options``."""
    settings = NetworkSettings(api_retries=2, backoff_cap_seconds=5)
    return sim_adapter(sim, TengrAI, key=key, settings=settings, sim_options=False, **options)


def _walk_adapter(adapter: TengrAI) -> list[GenerationRecord]:
    records, walk = read_listing(adapter, "all")
    assert walk.complete
    return records


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_adapter_pages_the_whole_listing(sim: TengrAISimulator, version: str) -> None:
    sim.clock.advance(PROCESSING_S / 2)  # the v2-made ones are "processing"
    adapter = _adapter(sim, api_version=version, page_limit=3)
    records = _walk_adapter(adapter)
    ids = [r.external_id for r in records]
    live = _live_ids(sim)
    assert ids == (live if version == "v2" else live[2:])
    outcomes = sim.outcomes
    files: dict[str, list[str]] = {}
    for f in sim.expected_media():
        files.setdefault(f.generation_id, []).append(f.url)
    truth = {g["id"]: g for g in sim.generations}
    for r in records:
        created = datetime.fromisoformat(truth[r.external_id]["createdAt"].replace("Z", "+00:00"))
        assert r.created_at == created and r.expires_at == created + timedelta(days=8)
        assert r.kind == truth[r.external_id]["artworkType"]
        assert r.model == truth[r.external_id]["parameters"]["model"]
        outcome = outcomes[r.external_id]
        if r.status is GenerationStatus.RUNNING:
            assert version == "v2" and r.media == ()
            continue
        if outcome == "ok":
            assert r.status is GenerationStatus.SUCCEEDED
            assert [m.url for m in r.media] == files[r.external_id]
            assert all(m.role is MediaRole.RESULT and m.kind is MediaKind.IMAGE for m in r.media)
        else:
            assert r.status is GenerationStatus.FAILED
            reasons = {
                "failed": "failed (no reason given)",
                "canceled": "canceled" if version == "v2" else "failed (no reason given)",
                "empty": "done without results" if version == "v1" else "succeeded without results",
            }
            assert r.error == reasons[outcome]
    signed = [m for r in records for m in r.media if m.url_expires_at is not None]
    assert len(signed) >= 2
    exp = {f.url: f.expires_at for f in sim.expected_media()}
    assert all(m.url_expires_at == exp[m.url] for m in signed)


def test_adapter_fetch_follows_a_task_to_success(sim: TengrAISimulator) -> None:
    adapter = _adapter(sim, api_version="v2")
    newest = _live_ids(sim)[0]
    assert adapter.fetch(newest).status is GenerationStatus.QUEUED
    sim.clock.advance(PROCESSING_S / 2)
    assert adapter.fetch(newest).status is GenerationStatus.RUNNING
    sim.clock.advance(PROCESSING_S)
    rec = adapter.fetch(newest)
    assert rec.status is GenerationStatus.SUCCEEDED
    assert [m.url for m in rec.media] == [
        f.url for f in sim.expected_media() if f.generation_id == newest
    ]
    assert rec.completed_at is not None and rec.created_at is not None
    assert rec.completed_at > rec.created_at


def test_adapter_errors(sim: TengrAISimulator) -> None:
    adapter = _adapter(sim, api_version="v2")
    expired = next(g["id"] for g in sim.generations if g["id"] not in _live_ids(sim))
    with pytest.raises(NotFoundError):
        adapter.fetch(expired)
    with pytest.raises(AuthError, match="Unauthorized"):
        _adapter(sim, key="wrong").fetch_page("all", 0)

    sim.error_body_in_200 = {"message": "Insufficient credits", "statusCode": 402}
    with pytest.raises(BusinessError, match="Insufficient credits"):
        adapter.fetch_page("all", 0)
    with pytest.raises(BusinessError, match="Insufficient credits"):
        adapter.fetch(_live_ids(sim)[1])
    sim.error_body_in_200 = {"message": "Forbidden resource", "statusCode": 403}
    with pytest.raises(AuthError):
        adapter.fetch_page("all", 0)
    sim.error_body_in_200 = None

    sim.faults.update(malformed="html")
    with pytest.raises(MalformedResponseError):
        adapter.fetch_page("all", 0)
    sim.faults.update(malformed="truncated")
    with pytest.raises(MalformedResponseError):
        adapter.fetch(_live_ids(sim)[1])
    sim.faults.update(malformed="wrong_types")  # tolerated: same ids, same times
    mangled = adapter.fetch_page("all", 0).records
    sim.faults.update(malformed=None)
    clean = adapter.fetch_page("all", 0).records
    assert [(r.external_id, r.created_at, r.status) for r in mangled] == [
        (r.external_id, r.created_at, r.status) for r in clean
    ]


def test_adapter_retries_transient_errors(sim: TengrAISimulator) -> None:
    adapter = _adapter(sim)
    sim.faults.fail_next = 2  # within api_retries=2
    assert adapter.fetch_page("all", 0).records
    sim.faults.fail_next = 3
    with pytest.raises(TransientProviderError):
        adapter.fetch_page("all", 0)
    sim.faults.update(fail_next=0, rate_limit=True, retry_after="60")  # over the backoff cap
    with pytest.raises(RateLimitedError) as info:
        adapter.fetch_page("all", 0)
    assert info.value.retry_after == 60
    assert sim.stats.snapshot()["routes"]["v1/artworks"] >= 6


def test_created_at_is_recent_utc(sim: TengrAISimulator) -> None:
    """createdAt is relative to the simulator clock, which follows the wall clock."""
    rec = _adapter(sim, api_version="v2").fetch(_live_ids(sim)[0])
    assert rec.created_at is not None
    assert abs(rec.created_at - datetime.now(UTC)) < timedelta(minutes=1)


# --------------------------------------------------------------------------- listing knobs


@contextmanager
def _started(**knobs: Any) -> Iterator[tuple[TengrAISimulator, httpx.Client]]:
    """A simulator whose artworks are all finished with results, plus a client."""
    settings: dict[str, Any] = {
        "api_key": KEY,
        "seed": 11,
        "count": 30,
        "image_size": 4_000,
        "processing_count": 0,
        "failed_count": 0,
        "canceled_count": 0,
        "empty_count": 0,
    }
    s = tengrai.create(**{**settings, **knobs})
    s.start()
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
            yield s, c
    finally:
        s.stop()


def _page(
    c: httpx.Client, s: TengrAISimulator, offset: int, limit: int, v: str = "v2"
) -> list[str]:
    r = c.get(f"{s.api_base}/{v}/artworks", params={"offset": offset, "limit": limit})
    assert r.status_code == 200
    return [i["id"] for i in r.json()]


def test_churn_deletes_after_the_page_so_offsets_shift() -> None:
    with _started(churn_delete_per_request=3, churn_requests=1) as (s, c):
        before = s.live_ids
        assert len(before) == 30 and s.deleted_ids == frozenset()
        assert _page(c, s, 0, 500) == before  # the page served predates the churn
        deleted = s.deleted_ids
        assert len(deleted) == 3 and deleted <= set(before)
        after = _page(c, s, 0, 500)
        assert after == [i for i in before if i not in deleted] == s.live_ids
        # the last artwork was at offset 29 before; all 3 deletions were above it
        # (seed 11 deletes offsets 3, 6 and 24), so it is at offset 26 now
        assert max(before.index(i) for i in deleted) < 29
        assert _page(c, s, 26, 1) == [before[29]] and _page(c, s, 29, 1) == []
        assert _page(c, s, 0, 500) == after  # churn_requests=1: no more churn
        assert _page(c, s, 0, 500, "v1") == after
        gone = [f for f in s.expected_media(include_deleted=True) if f.generation_id in deleted]
        assert len(gone) >= 3
        assert not {f.url for f in gone} & {f.url for f in s.expected_media()}
        for art in deleted:
            for v in ("v1", "v2"):
                r = c.get(f"{s.api_base}/{v}/artworks/{art}")
                assert r.status_code == 404
                assert r.json()["message"] == "Artwork not found"
        for f in gone:
            r = c.get(f.url)
            assert r.status_code == 404 and b"NoSuchKey" in r.content
        kept = s.expected_media()[0]
        assert hashlib.sha256(c.get(kept.url).content).hexdigest() == kept.sha256
        truth = {g["id"] for g in s.generations}
        assert deleted <= truth  # generations keeps every artwork that ever existed


def test_churn_inserts_at_the_top_on_every_listing_request() -> None:
    with _started(churn_insert_per_request=2) as (s, c):
        before = s.live_ids
        first = _page(c, s, 0, 5)
        assert first == before[:5]
        top = s.live_ids[:2]
        assert not set(top) & set(before) and s.live_ids[2:] == before
        second = _page(c, s, 5, 5)  # the next page overlaps the last one by 2
        assert second == before[3:8]
        assert len(s.live_ids) == 34  # churn_requests=0: every listing request churns
        newest = s.live_ids[:4]
        assert newest[2:] == top
        items = {i["id"]: i for i in c.get(f"{s.api_base}/v2/artworks").json()}
        assert list(items)[:4] == newest
        files = {f.generation_id: f for f in s.expected_media() if f.generation_id in newest}
        assert set(files) == set(newest)
        now = s.clock.now()
        for art in newest:
            item = items[art]
            created = datetime.fromisoformat(item["createdAt"].replace("Z", "+00:00"))
            assert timedelta(0) <= now - created < timedelta(seconds=30)
            assert item["status"] == "succeeded" and item["results"] == [files[art].url]
            assert item["parameters"]["batch"] == 1
            r = c.get(files[art].url)
            assert r.status_code == 200
            assert hashlib.sha256(r.content).hexdigest() == files[art].sha256
            v1 = c.get(f"{s.api_base}/v1/artworks/{art}").json()
            assert v1["status"] == "done" and v1["results"] == [files[art].url]


def test_delete_and_insert_by_hand() -> None:
    with _started() as (s, c):
        victim = s.live_ids[7]
        f = next(f for f in s.expected_media() if f.generation_id == victim)
        assert c.get(f.url).status_code == 200
        s.delete_artworks([victim])
        s.delete_artworks([victim])  # idempotent
        assert s.deleted_ids == {victim} and victim not in _page(c, s, 0, 500)
        assert c.get(f"{s.api_base}/v2/artworks/{victim}").status_code == 404
        assert c.get(f.url).status_code == 404
        assert victim not in {e.generation_id for e in s.expected_media()}
        assert victim in {e.generation_id for e in s.expected_media(include_deleted=True)}
        with pytest.raises(KeyError):
            s.delete_artworks(["00000000-0000-4000-8000-000000000000"])
        new = s.insert_artworks(3)
        assert len(new) == 3 and _page(c, s, 0, 3) == new == s.live_ids[:3]
        assert len(_page(c, s, 0, 500)) == 32


def test_churn_is_deterministic_for_a_seed() -> None:
    runs = []
    for _ in range(2):
        with _started(churn_delete_per_request=2, churn_insert_per_request=1) as (s, c):
            for offset in (0, 10, 20):
                _page(c, s, offset, 10)
            runs.append((s.deleted_ids, s.live_ids, [f.sha256 for f in s.expected_media()]))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 6 and len(runs[0][1]) == 30 - 6 + 3


def test_ignore_offset_answers_the_first_page_whatever_the_offset() -> None:
    with _started(ignore_offset=True) as (s, c):
        first = _page(c, s, 0, 10)
        assert first == s.live_ids[:10]
        assert _page(c, s, 10, 10) == first
        assert _page(c, s, 500, 10) == first
        assert _page(c, s, 0, 500) == s.live_ids  # limit still applies
        bad = c.get(f"{s.api_base}/v2/artworks", params={"offset": -1})
        assert bad.status_code == 400  # still validated


def test_oldest_first_order() -> None:
    with _started(list_order="oldest_first") as (s, c):
        items = c.get(f"{s.api_base}/v2/artworks", params={"limit": 500}).json()
        created = [i["createdAt"] for i in items]
        assert created == sorted(created) and len(items) == 30
        ids = [i["id"] for i in items]
        assert ids == s.live_ids == [g["id"] for g in s.generations][::-1]
        assert _page(c, s, 0, 7) + _page(c, s, 7, 7) == ids[:14]
        (new,) = s.insert_artworks(1)
        assert _page(c, s, 0, 500)[-1] == new  # the newest comes last
    with pytest.raises(ValueError, match="list_order"):
        tengrai.create(list_order="random")
    with pytest.raises(ValueError, match="churn_delete_per_request"):
        tengrai.create(churn_delete_per_request=-1)
