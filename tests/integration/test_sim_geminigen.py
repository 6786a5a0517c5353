"""The GeminiGen simulator over real loopback HTTP: API shape, CDN semantics, faults."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from genvault.simulator import geminigen, media
from genvault.simulator.geminigen import GeminiGenSimulator
from tests.fixtures.sims import SimStarter
from tests.integration.sim_checks import assert_files_served

KEY = "test-geminigen-key"
COUNT = 23
# Every field of the seed's example list item; the simulator must send all of them.
SEED_ITEM_FIELDS = {
    "id", "uuid", "user_id", "model_name", "input_text", "negative_prompt", "generate_result",
    "input_file_path", "type", "used_credit", "status", "status_desc", "status_percentage",
    "error_code", "error_message", "rating", "rating_content", "custom_prompt", "created_at",
    "updated_at", "file_size", "expired_at", "inference_type", "name", "media_files",
    "created_by", "thumbnail_url",
}  # fmt: skip
DAEMON_DIR = Path(geminigen.__file__).resolve().parents[2]


@pytest.fixture
def sim(start_sim: SimStarter) -> GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=7,
        count=COUNT,
        image_size=20_000,
        video_size=150_000,
        audio_size=30_000,
        thumbnail_size=3_000,
        processing_seconds=0.5,
        expired_count=2,
        max_items_per_page=10,
    )


@pytest.fixture
def client(sim: GeminiGenSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as c:
        yield c


def _all_items(client: httpx.Client, sim: GeminiGenSimulator, per_page: int) -> list[Any]:
    items: list[Any] = []
    page = 1
    while True:
        r = client.get(
            f"{sim.api_base}/histories",
            params={"filter_by": "all", "items_per_page": per_page, "page": page},
        )
        assert r.status_code == 200
        body = r.json()
        assert body["success"] is True
        assert body["total"] == COUNT
        if not body["result"]:
            return items
        assert len(body["result"]) <= per_page
        items.extend(body["result"])
        page += 1


def _wait_processing_done(sim: GeminiGenSimulator) -> None:
    deadline = time.monotonic() + 5
    while sim.clock.elapsed() < sim.config.processing_seconds:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _payload_urls(value: Any) -> set[str]:
    """Every absolute URL anywhere in a payload."""
    if isinstance(value, dict):
        return set().union(*(_payload_urls(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_payload_urls(v) for v in value))
    return {value} if isinstance(value, str) and value.startswith("http") else set()


def test_paging_covers_every_item_once(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    items = _all_items(client, sim, per_page=4)
    uuids = [i["uuid"] for i in items]
    assert len(uuids) == COUNT == len(set(uuids))
    assert uuids == [g["uuid"] for g in sim.generations]
    created = [i["created_at"] for i in items]
    assert created == sorted(created, reverse=True)  # newest first
    for item in items:
        assert item.keys() >= SEED_ITEM_FIELDS
        assert item["created_at"].endswith("Z") and len(item["created_at"]) == 24
    # items_per_page is capped at max_items_per_page (10 here)
    capped = client.get(f"{sim.api_base}/histories", params={"items_per_page": 500}).json()
    assert len(capped["result"]) == 10
    big_pages = _all_items(client, sim, per_page=500)
    assert [i["uuid"] for i in big_pages] == uuids
    past = client.get(f"{sim.api_base}/histories", params={"page": 99}).json()
    assert past == {"success": True, "total": COUNT, "result": []}
    bad = client.get(f"{sim.api_base}/histories", params={"page": "x"})
    assert bad.status_code == 422


def test_page_cap_windows_pages_by_the_capped_size(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    """max_items_per_page=10: asking 500 per page gives pages of 10 at (page-1)*10."""
    truth = [g["uuid"] for g in sim.generations]
    for page in (1, 2, 3):
        body = client.get(
            f"{sim.api_base}/histories", params={"items_per_page": 500, "page": page}
        ).json()
        assert body["total"] == COUNT
        assert [i["uuid"] for i in body["result"]] == truth[(page - 1) * 10 : page * 10]
    under = client.get(f"{sim.api_base}/histories", params={"items_per_page": 7, "page": 2})
    assert [i["uuid"] for i in under.json()["result"]] == truth[7:14]
    video = client.get(
        f"{sim.api_base}/histories", params={"filter_by": "video", "items_per_page": 3, "page": 2}
    ).json()
    videos = [g["uuid"] for g in sim.generations if g["type"] == "video_generation"]
    assert video["total"] == len(videos)
    assert [i["uuid"] for i in video["result"]] == videos[3:6]


def test_filter_by_type(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    totals = 0
    for filter_by, type_name in [
        ("image", "image_generation"),
        ("video", "video_generation"),
        ("audio", "text_to_speech"),
    ]:
        body = client.get(
            f"{sim.api_base}/histories", params={"filter_by": filter_by, "items_per_page": 10}
        ).json()
        assert body["total"] > 0
        assert {i["type"] for i in body["result"]} == {type_name}
        totals += body["total"]
    assert totals == COUNT


def test_auth_401_shape(sim: GeminiGenSimulator) -> None:
    expected = {"detail": {"error_code": "API_KEY_NOT_FOUND", "error_message": "API key not found"}}
    with httpx.Client(timeout=10) as anon:
        for headers in ({}, {"x-api-key": "wrong"}):
            r = anon.get(f"{sim.api_base}/histories", headers=headers)
            assert r.status_code == 401
            assert r.json() == expected
        uuid = sim.generations[0]["uuid"]
        assert anon.get(f"{sim.api_base}/history/{uuid}").status_code == 401


def test_video_detail_has_video_and_last_frame(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    items = _all_items(client, sim, per_page=10)
    video = next(i for i in items if i["type"] == "video_generation" and i["status"] == 2)
    detail = client.get(f"{sim.api_base}/history/{video['uuid']}").json()
    (gv,) = detail["generated_video"]
    assert gv["video_url"].startswith(sim.base_url + "/cdn/videos/")
    assert gv["video_url"].endswith(".mp4")
    assert gv["last_frame"].startswith(sim.base_url + "/cdn/frames/")
    assert sim.account_options["media_base"] + gv["video_uri"] == gv["video_url"]
    assert detail["generate_result"] == gv["video_url"] == video["generate_result"]
    # the list's media_files deliberately lacks the video: a detail read is needed
    assert gv["video_url"] not in {m["url"] for m in video["media_files"]}
    assert detail["generated_image"] == [] and detail["generated_audio"] == []
    missing = client.get(f"{sim.api_base}/history/nope-not-a-uuid")
    assert missing.status_code == 404
    assert missing.json()["detail"]["error_code"] == "HISTORY_NOT_FOUND"


def test_failed_items(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    failed = [i for i in _all_items(client, sim, per_page=10) if i["status"] == 3]
    assert len(failed) == 2
    for item in failed:
        assert item["error_code"] and item["error_message"]
        assert item["media_files"] == [] and item["generate_result"] == ""


def test_processing_items_flip_to_completed(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    first = client.get(f"{sim.api_base}/histories", params={"items_per_page": 3}).json()
    processing = first["result"]
    assert [i["status"] for i in processing] == [1, 1, 1]
    for item in processing:
        assert item["expired_at"] is None
        assert item["media_files"] == [] and item["generate_result"] == ""
    pending_urls = [f.url for f in sim.expected_media() if f.generation_id == processing[0]["uuid"]]
    assert pending_urls and client.get(pending_urls[0]).status_code == 404

    _wait_processing_done(sim)
    later = client.get(f"{sim.api_base}/histories", params={"items_per_page": 3}).json()
    for before, after in zip(processing, later["result"], strict=True):
        assert after["uuid"] == before["uuid"]
        assert after["status"] == 2 and after["status_percentage"] == 100
        assert after["expired_at"] is not None
        assert after["generate_result"].startswith(sim.base_url)
        assert after["updated_at"] > before["updated_at"]
        detail = client.get(f"{sim.api_base}/history/{after['uuid']}").json()
        assert detail["generated_image"] or detail["generated_video"]
    assert client.get(pending_urls[0]).status_code == 200


def test_media_bytes_match_expected_media(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.clock.advance(1.0)  # past processing_seconds: every non-failed item is done
    expected = sim.expected_media()
    urls = [f.url for f in expected]
    assert len(urls) == len(set(urls))
    # expected_media is exactly the set of URLs the API exposes (list + detail)
    exposed: set[str] = set()
    for item in _all_items(client, sim, per_page=10):
        exposed |= _payload_urls(item)
        exposed |= _payload_urls(client.get(f"{sim.api_base}/history/{item['uuid']}").json())
    assert exposed == set(urls)
    assert {f.role for f in expected} == {"result", "thumbnail", "last_frame", "reference"}
    now = datetime.now(UTC)
    live = [f for f in expected if f.expires_at is None or f.expires_at > now]
    assert 0 < len(live) < len(expected)
    assert all(f.sha256 == sim.media_sha256(f.url) for f in live)
    served = assert_files_served(client, live)
    assert sim.server.stats.snapshot()["media_bytes"] == served


def test_detail_only_files() -> None:
    """detail_only_count: the detail adds a 2nd image, a video and an audio to an image item."""
    s = geminigen.create(
        api_key=KEY, seed=7, count=COUNT, image_size=5_000, video_size=20_000,
        audio_size=6_000, thumbnail_size=1_000, processing_count=0, detail_only_count=3,
    )  # fmt: skip
    with s, httpx.Client(headers={"x-api-key": KEY}, timeout=10) as client:
        chosen = s.detail_only_ids
        assert len(chosen) == 3
        expected = s.expected_media()
        by_url = {f.url: f for f in expected}
        listed = _all_items(client, s, per_page=10)
        exposed: set[str] = set()
        for item in listed:
            detail = client.get(f"{s.api_base}/history/{item['uuid']}").json()
            exposed |= _payload_urls(item) | _payload_urls(detail)
            if item["uuid"] not in chosen:
                continue
            assert item["type"] == "image_generation" and item["status"] == 2
            (gi1, gi2) = detail["generated_image"]
            (gv,) = detail["generated_video"]
            (ga,) = detail["generated_audio"]
            # the list names only the first image
            assert [m["url"] for m in item["media_files"]] == [gi1["image_url"]]
            assert item["generate_result"] == detail["generate_result"] == gi1["image_url"]
            (thumb,) = gi2["thumbnails"]
            extra = {
                gi2["image_url"]: ("result", "image", "generated_image[].image_url"),
                thumb["url"]: ("thumbnail", "image", "generated_image[].thumbnails[].url"),
                gv["video_url"]: ("result", "video", "generated_video[].video_url"),
                gv["last_frame"]: ("last_frame", "image", "generated_video[].last_frame"),
                ga["audio_url"]: ("result", "audio", "generated_audio[].audio_url"),
            }
            assert not set(extra) & _payload_urls(item)
            assert s.account_options["media_base"] + gv["video_uri"] == gv["video_url"]
            for url, (role, kind, field) in extra.items():
                f = by_url[url]
                assert (f.role, f.kind, f.source_field, f.generation_id) == (
                    role, kind, field, item["uuid"],
                )  # fmt: skip
                r = client.get(url)
                assert r.status_code == 200 and r.headers["content-type"] == f.content_type
                assert hashlib.sha256(r.content).hexdigest() == f.sha256
        assert exposed == set(by_url)  # expected_media is still exactly what the API shows


def test_head_and_range(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.clock.advance(1.0)  # past processing_seconds
    f = next(f for f in sim.expected_media() if f.kind == "video" and f.size == 150_000)
    entry = sim.server.media_entry(urlsplit(f.url).path)
    assert entry is not None
    whole = media.read_all(entry.spec)

    head = client.head(f.url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == f.size
    assert head.headers["accept-ranges"] == "bytes"

    for header, lo, hi in [
        ("bytes=100-199", 100, 200),
        ("bytes=149000-", 149_000, f.size),
        ("bytes=-50", f.size - 50, f.size),
        ("bytes=140000-999999", 140_000, f.size),
    ]:
        r = client.get(f.url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {lo}-{hi - 1}/{f.size}"
        assert r.content == whole[lo:hi]
    bad = client.get(f.url, headers={"Range": f"bytes={f.size}-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{f.size}"
    stale = client.get(f.url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == f.size


def test_expired_media_is_403(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    now = datetime.now(UTC)
    expired = [f for f in sim.expected_media() if f.expires_at and f.expires_at <= now]
    assert expired
    for f in expired:
        r = client.get(f.url)
        assert r.status_code == 403
        assert b"<Code>AccessDenied</Code>" in r.content
    items = _all_items(client, sim, per_page=10)
    old = [i for i in items if i["expired_at"] and i["expired_at"] < now.isoformat()[:23]]
    assert {i["uuid"] for i in old} == {f.generation_id for f in expired}
    assert client.get(sim.base_url + "/cdn/images/unknown.jpg").status_code == 404


def test_rate_limit_with_retry_after(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.faults.update(rate_limit=True, retry_after="2")
    r = client.get(f"{sim.api_base}/histories")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["detail"]["error_code"] == "RATE_LIMIT_ERROR"
    media_url = sim.expected_media()[-1].url
    assert client.head(media_url).status_code in (200, 403)  # media is not rate limited

    admin = client.post(f"{sim.base_url}/_sim/faults", json={"rate_limit": False})
    assert admin.status_code == 200 and admin.json()["rate_limit"] is False
    assert client.get(f"{sim.api_base}/histories").status_code == 200

    client.post(f"{sim.base_url}/_sim/faults", json={"rate_limit": True, "retry_after": None})
    r = client.get(f"{sim.api_base}/histories")
    assert r.status_code == 429 and "retry-after" not in r.headers
    bad = client.post(f"{sim.base_url}/_sim/faults", json={"no_such_fault": 1})
    assert bad.status_code == 400


def test_truncated_media(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.clock.advance(1.0)
    f = next(f for f in sim.expected_media() if f.kind == "video" and f.size == 150_000)
    sim.faults.media_truncate = True
    received = b""
    # the server promises the whole size, sends half, then hangs up mid-body
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", f.url) as r:
        assert int(r.headers["content-length"]) == f.size
        for chunk in r.iter_bytes():
            received += chunk
    assert len(received) < f.size
    sim.faults.media_truncate = False
    assert len(client.get(f.url).content) == f.size


def test_fail_next_then_recovers(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    client.post(f"{sim.base_url}/_sim/faults", json={"fail_next": 2})
    statuses = [client.get(f"{sim.api_base}/histories").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    stats = client.get(f"{sim.base_url}/_sim/stats").json()
    assert stats["faults"]["fail_next"] == 2
    assert stats["routes"]["histories"] == 3
    assert stats["statuses"]["503"] == 2


def test_error_rate_and_malformed(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.faults.error_rate = 1.0
    codes = {client.get(f"{sim.api_base}/histories").status_code for _ in range(12)}
    assert codes <= {500, 502, 503} and len(codes) > 1
    sim.faults.update(error_rate=0.0, malformed="html")
    r = client.get(f"{sim.api_base}/histories")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html"
    sim.faults.update(malformed="truncated")
    r = client.get(f"{sim.api_base}/histories")
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()
    sim.faults.update(malformed="wrong_types")
    body = client.get(f"{sim.api_base}/histories").json()
    assert isinstance(body["total"], str)
    assert isinstance(body["result"][0]["status"], str)
    assert isinstance(body["result"][0]["created_at"], int)


def test_latency_and_bandwidth(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    sim.clock.advance(1.0)
    f = next(f for f in sim.expected_media() if f.kind == "audio" and f.size == 30_000)
    sim.faults.update(bandwidth_bps=100_000)
    t0 = time.monotonic()
    assert len(client.get(f.url).content) == f.size
    assert time.monotonic() - t0 >= 0.25
    sim.faults.update(bandwidth_bps=None, latency_s=0.2)
    t0 = time.monotonic()
    assert client.get(f"{sim.api_base}/histories").status_code == 200
    assert time.monotonic() - t0 >= 0.2


def test_keep_alive_reuses_one_connection(sim: GeminiGenSimulator) -> None:
    host = urlsplit(sim.base_url)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/uapi/v1/histories?items_per_page=2", headers={"x-api-key": KEY})
            resp = conn.getresponse()
            assert resp.status == 200
            assert len(resp.read()) == int(resp.headers["Content-Length"])
            assert not resp.will_close
    finally:
        conn.close()


def test_runner_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(DAEMON_DIR)}
    cmd = [sys.executable, "-m", "genvault.simulator", "geminigen", "--port", "0"]
    cmd += ["--count", "5", "--api-key", "K", "--set", "processing_count=0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        r = httpx.get(f"{base_url}/uapi/v1/histories", headers={"x-api-key": "K"}, timeout=5)
        assert r.json()["total"] == 5
        assert {i["status"] for i in r.json()["result"]} <= {2, 3}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- churn


@contextmanager
def _churning(**knobs: Any) -> Iterator[tuple[GeminiGenSimulator, httpx.Client]]:
    settings: dict[str, Any] = {
        "api_key": KEY, "seed": 7, "count": COUNT, "image_size": 5_000, "video_size": 20_000,
        "audio_size": 6_000, "thumbnail_size": 1_000, "processing_count": 0,
    }  # fmt: skip
    s = geminigen.create(**{**settings, **knobs})
    with s, httpx.Client(headers={"x-api-key": KEY}, timeout=10) as c:
        yield s, c


def _histories(c: httpx.Client, s: GeminiGenSimulator, page: int, per_page: int) -> Any:
    r = c.get(f"{s.api_base}/histories", params={"items_per_page": per_page, "page": page})
    assert r.status_code == 200
    return r.json()


def test_churn_deletes_shift_the_next_page() -> None:
    with _churning(churn_delete_per_request=2, churn_requests=1) as (s, c):
        before = s.live_ids
        first = _histories(c, s, 1, 10)
        assert first["total"] == COUNT  # the page served predates the churn
        assert [i["uuid"] for i in first["result"]] == before[:10]
        deleted = s.deleted_ids
        # seed 7 deletes offsets 9 and 12: the item at offset 10 moves up to page 1
        assert sorted(before.index(u) for u in deleted) == [9, 12]
        second = _histories(c, s, 2, 10)
        assert second["total"] == COUNT - 2
        after = [u for u in before if u not in deleted]
        assert after == s.live_ids
        assert [i["uuid"] for i in second["result"]] == after[10:20]
        walked = [i["uuid"] for i in first["result"] + second["result"]]
        assert before[10] not in walked  # a naive page walk missed it
        assert _histories(c, s, 2, 10)["total"] == COUNT - 2  # churn_requests=1: done
        gone = [f for f in s.expected_media(include_deleted=True) if f.generation_id in deleted]
        assert gone and not {f.url for f in gone} & {f.url for f in s.expected_media()}
        for u in deleted:
            r = c.get(f"{s.api_base}/history/{u}")
            assert r.status_code == 404
            assert r.json()["detail"]["error_code"] == "HISTORY_NOT_FOUND"
        for f in gone:
            r = c.get(f.url)
            assert r.status_code == 404 and b"NoSuchKey" in r.content
        assert deleted <= {g["uuid"] for g in s.generations}


def test_churn_inserts_at_the_top_and_total_follows() -> None:
    with _churning(churn_insert_per_request=1) as (s, c):
        before = s.live_ids
        old_ids = [g["id"] for g in s.generations]
        first = _histories(c, s, 1, 5)
        assert first["total"] == COUNT and [i["uuid"] for i in first["result"]] == before[:5]
        second = _histories(c, s, 2, 5)
        assert second["total"] == COUNT + 1
        assert [i["uuid"] for i in second["result"]] == before[4:9]  # overlaps by one
        assert len(s.live_ids) == COUNT + 2  # every request churns
        new = s.live_ids[:2]
        assert not set(new) & set(before)
        top = _histories(c, s, 1, 2)["result"]
        assert [i["uuid"] for i in top] == new
        assert top[0]["id"] > top[1]["id"] > max(old_ids)
        files = {f.url: f for f in s.expected_media() if f.generation_id in new}
        for item in top:
            assert item["status"] == 2 and item["type"] == "image_generation"
            assert item["created_at"] >= first["result"][0]["created_at"]
            detail = c.get(f"{s.api_base}/history/{item['uuid']}").json()
            (image,) = detail["generated_image"]
            assert image["image_url"] == item["generate_result"]
            assert {image["image_url"], item["thumbnail_url"]} == {
                f.url for f in files.values() if f.generation_id == item["uuid"]
            }
        assert len(files) == 4
        for f in files.values():
            r = c.get(f.url)
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f.sha256


def test_delete_and_insert_generations_by_hand() -> None:
    with _churning() as (s, c):
        victim = s.live_ids[3]
        s.delete_generations([victim])
        s.delete_generations([victim])
        assert s.deleted_ids == {victim}
        body = _histories(c, s, 1, 100)
        assert body["total"] == COUNT - 1 and victim not in {i["uuid"] for i in body["result"]}
        with pytest.raises(KeyError):
            s.delete_generations(["no-such-uuid"])
        new = s.insert_generations(2)
        assert [i["uuid"] for i in _histories(c, s, 1, 2)["result"]] == new
        assert _histories(c, s, 1, 1)["total"] == COUNT + 1


def test_churn_is_deterministic_for_a_seed() -> None:
    runs = []
    for _ in range(2):
        with _churning(churn_delete_per_request=1, churn_insert_per_request=2) as (s, c):
            for page in (1, 2, 3):
                _histories(c, s, page, 10)
            runs.append((s.deleted_ids, s.live_ids, [f.sha256 for f in s.expected_media()]))
    assert runs[0] == runs[1] and len(runs[0][1]) == COUNT - 3 + 6
