"""The simulators' fault knobs over real loopback HTTP.

The acceptance tests blame the daemon when a run goes wrong under a fault, so each
knob must first be shown to do exactly what it says on the wire: a TCP reset really
is a RST (not a polite FIN), a slow drip really paces the body after prompt headers,
``bad_item`` really spoils one item and no more, each provider's business error is
the envelope its documents describe, and the media faults count down as promised.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from genvault.providers.registry import provider_class
from genvault.simulator import SIMULATORS, SimServer, akool, geminigen, simulator_factory
from genvault.simulator.faults import FAULT_FIELDS, Faults, spoil_one_item
from genvault.simulator.geminigen import GeminiGenSimulator
from genvault.simulator.messages import Response
from tests.fixtures.sims import SimStarter

KEY = "sim-faults-key-0123456789"  # 24+ characters: Akool's callback key is the API key


@pytest.fixture
def sim(start_sim: SimStarter) -> GeminiGenSimulator:
    """Everything finished and nothing expired, so answers are stable between requests."""
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=3,
        count=5,
        image_size=8_000,
        video_size=40_000,
        audio_size=6_000,
        thumbnail_size=2_000,
        processing_count=0,
        failed_count=0,
    )


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as c:
        yield c


def _histories(sim: GeminiGenSimulator) -> str:
    return f"{sim.api_base}/histories?items_per_page=10"


def _big_file(sim: GeminiGenSimulator) -> str:
    """URL of the largest file the simulator serves (a video when there is one)."""
    return max(sim.expected_media(), key=lambda f: f.size).url


def _stats(client: httpx.Client, sim: GeminiGenSimulator) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"{sim.base_url}/_sim/stats").json()
    return data


# --------------------------------------------------------------------------- settings


NEW_KNOBS: dict[str, Any] = {
    "reset_next": 2,
    "rate_limit_next": 1,
    "pass_next": 3,
    "api_drip_bps": 500,
    "media_truncate_next": 1,
    "media_error_page": "html_as_image",
    "media_status_next": 2,
    "media_status": 410,
    "malformed": "bad_item",
}


def test_new_knobs_are_set_over_http_and_reset_restores_every_default(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    """Tests in another process steer faults only through /_sim/faults."""
    defaults = client.get(f"{sim.base_url}/_sim/faults").json()
    assert set(defaults) == set(FAULT_FIELDS)
    assert defaults["media_status"] == 503 and defaults["api_drip_bps"] is None
    r = client.post(f"{sim.base_url}/_sim/faults", json=NEW_KNOBS)
    assert r.status_code == 200
    assert {k: r.json()[k] for k in NEW_KNOBS} == NEW_KNOBS
    assert client.post(f"{sim.base_url}/_sim/reset").status_code == 200
    assert client.get(f"{sim.base_url}/_sim/faults").json() == defaults
    assert Faults().as_dict() == defaults


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("reset_next", -1),
        ("reset_next", True),
        ("rate_limit_next", 1.5),
        ("pass_next", "2"),
        ("api_drip_bps", 0),
        ("api_drip_bps", -5),
        ("media_truncate_next", None),
        ("media_error_page", "pdf"),
        ("media_status_next", -1),
        ("media_status", 200),
        ("media_status", 700),
        ("media_status", "404"),
        ("malformed", "bad_items"),
    ],
)
def test_bad_knob_values_are_refused_with_400(
    client: httpx.Client, sim: GeminiGenSimulator, name: str, value: Any
) -> None:
    """A typo in a test's fault setting must fail loudly, not silently inject nothing."""
    r = client.post(f"{sim.base_url}/_sim/faults", json={name: value})
    assert r.status_code == 400 and name in r.json()["error"]
    assert client.get(f"{sim.base_url}/_sim/faults").json() == Faults().as_dict()


# --------------------------------------------------------------------------- API faults


def test_reset_next_is_a_tcp_rst_without_any_response(sim: GeminiGenSimulator) -> None:
    """A raw socket shows the difference between RST (ECONNRESET) and an orderly close."""
    sim.faults.update(reset_next=1)
    split = urlsplit(sim.api_base)
    request = (
        f"GET {split.path}/histories HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\n\r\n"
    ).encode()
    with socket.create_connection((split.hostname or "", split.port or 80), timeout=5) as s:
        s.sendall(request)
        with pytest.raises(ConnectionResetError):
            data = s.recv(65536)
            assert data == b"", "the simulator answered instead of resetting"
            raise AssertionError("orderly close (FIN) instead of a reset")
    stats = sim.stats.snapshot()
    assert stats["faults"]["reset_next"] == 1 and stats["statuses"]["0"] == 1


def test_reset_next_counts_down_then_the_api_answers(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    client.post(f"{sim.base_url}/_sim/faults", json={"reset_next": 2})
    for _ in range(2):
        with pytest.raises(httpx.ReadError):  # httpx's name for ECONNRESET while reading
            client.get(_histories(sim))
    assert client.get(_histories(sim)).status_code == 200
    assert client.get(f"{sim.base_url}/_sim/faults").json()["reset_next"] == 0
    assert _stats(client, sim)["faults"]["reset_next"] == 2


def test_rate_limit_next_and_pass_next(client: httpx.Client, sim: GeminiGenSimulator) -> None:
    """pass_next lets the first requests through, so a fault can land mid-walk."""
    sim.faults.update(pass_next=1, rate_limit_next=2, retry_after=3, malformed="html")
    first = client.get(_histories(sim))
    assert first.status_code == 200 and first.json()["success"] is True  # exempt from html too
    limited = [client.get(_histories(sim)) for _ in range(2)]
    assert [(r.status_code, r.headers.get("retry-after")) for r in limited] == [(429, "3")] * 2
    sim.faults.update(malformed=None)
    assert client.get(_histories(sim)).status_code == 200
    faults = sim.stats.snapshot()["faults"]
    assert faults == {"rate_limit_next": 2}  # a pass is no fault
    assert sim.faults.pass_next == sim.faults.rate_limit_next == 0


def test_api_drip_sends_headers_at_once_and_paces_the_body(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    """A slow drip never trips a read timeout: bytes keep coming, just slowly."""
    clean = client.get(_histories(sim)).content
    bps = max(1000, len(clean) // 2)  # about two seconds for the whole body
    sim.faults.update(api_drip_bps=bps)
    t0 = time.monotonic()
    gaps: list[float] = []
    received = b""
    with client.stream("GET", _histories(sim)) as r:
        headers_after = time.monotonic() - t0
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(clean)
        last = time.monotonic()
        for chunk in r.iter_raw():
            received += chunk
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
    total = time.monotonic() - t0
    assert received == clean
    assert headers_after < 0.5
    assert total >= 0.8 * len(clean) / bps
    assert max(gaps) < 0.5, "the body must trickle, not stall and then burst"
    assert sim.stats.snapshot()["faults"]["api_drip"] == 1


def test_bad_item_spoils_exactly_one_item_of_the_page(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    clean = client.get(_histories(sim)).json()
    sim.faults.update(malformed="bad_item")
    r = client.get(_histories(sim))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    spoiled = r.json()
    assert spoiled["result"][1:] == clean["result"][1:]
    assert {k: v for k, v in spoiled.items() if k != "result"} == {
        k: v for k, v in clean.items() if k != "result"
    }
    bad, good = spoiled["result"][0], clean["result"][0]
    assert set(bad) == set(good)
    assert bad["uuid"] == {"value": good["uuid"]} and bad["id"] == {"value": good["id"]}
    assert bad["status"] == {"value": good["status"]}  # numbers become objects
    assert bad["created_at"] == [good["created_at"]]  # strings become lists
    assert bad["media_files"] == {"items": good["media_files"]}  # lists become objects
    assert sim.stats.snapshot()["faults"]["malformed:bad_item"] == 1


def test_spoil_one_item_takes_the_first_list_of_objects_depth_first() -> None:
    page = {
        "code": "Success",
        "tags": ["a", "b"],  # a list, but not of objects
        "data": {
            "pageData": [
                {"taskId": "1", "outputs": [{"urls": ["u"], "endTime": 5}]},
                {"taskId": "2", "outputs": []},
            ]
        },
    }
    spoiled = spoil_one_item(page)
    assert spoiled is not None
    items = spoiled["data"]["pageData"]
    assert items[0]["taskId"] == {"value": "1"}  # id-like keys become objects
    assert items[0]["outputs"] == {"items": [{"urls": ["u"], "endTime": 5}]}
    assert items[1] == page["data"]["pageData"][1]  # type: ignore[index]
    assert page["data"]["pageData"][0]["taskId"] == "1", "the original is left alone"  # type: ignore[index]
    top = spoil_one_item([{"id": "x", "nsfw": False, "parameters": {"a": 1}}, {"id": "y"}])
    assert top == [
        {"id": {"value": "x"}, "nsfw": {"value": False}, "parameters": [{"a": 1}]},
        {"id": "y"},
    ]
    assert spoil_one_item({"code": 1000, "data": {"buttons": ["U1"], "image": "u"}}) is None
    assert spoil_one_item({"result": []}) is None


def test_bad_item_leaves_answers_without_items_alone() -> None:
    """Akool's status answer is one object: nothing to spoil, no fault recorded."""
    with akool.create(api_key=KEY, count=2, image_size=2_000) as s:
        url = s.api_base + "/api/open/v3/content/image/infobymodelid"
        params = {"image_model_id": s.task_ids[-1]}
        with httpx.Client(headers={"x-api-key": KEY}, timeout=10) as c:
            clean = c.get(url, params=params).json()
            s.faults.update(malformed="bad_item")
            assert c.get(url, params=params).json() == clean
        assert "malformed:bad_item" not in s.stats.snapshot()["faults"]


# Each provider's in-band error, as its documents (providers.md, seeds) describe it.
BUSINESS_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    "crowdcomputed": (
        "/api/v1/generate/history?workflow=text-to-image",
        {"code": "Failed", "message": "invalid params", "data": None},
    ),
    "geminigen": (
        "/uapi/v1/histories",
        {"detail": {"error_code": "SYSTEM_ERROR", "error_message": "Something went wrong"}},
    ),
    "akool": (
        "/api/open/v3/content/image/infobymodelid?image_model_id=x",
        {"code": 1108, "msg": "image generate error"},
    ),
    "tengrai": (
        "/v2/artworks",
        {"message": "Bad Request", "statusCode": 400, "error": "Bad Request"},
    ),
    "quickrouter": (
        "/v1/video/query?id=grok:x",
        {"error": {"message": "upstream request failed", "type": "new_api_error"}},
    ),
}


@pytest.mark.parametrize("provider", sorted(SIMULATORS))
def test_business_error_is_the_providers_own_envelope_in_http_200(provider: str) -> None:
    path, envelope = BUSINESS_ERRORS[provider]
    s = simulator_factory(provider)(api_key=KEY, count=2)
    s.start()
    try:
        cls = provider_class(provider)
        headers = cls.auth_headers(KEY, cls.Options(**s.account_options))
        s.faults.update(malformed="business_error")
        with httpx.Client(headers=headers, timeout=10) as c:
            r = c.get(s.base_url + path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json() == envelope
        assert s.server.stats.snapshot()["faults"]["malformed:business_error"] == 1
    finally:
        s.stop()


def test_business_error_hook_has_a_default_and_can_be_replaced() -> None:
    with SimServer(name="bare") as server:
        server.route("GET", "/thing", lambda _req: Response.json({"ok": True}))
        server.faults.update(malformed="business_error")
        with httpx.Client(timeout=10) as c:
            r = c.get(server.url("/thing"))
            assert r.status_code == 200 and r.json()["success"] is False
            server.business_error = lambda: Response.json({"status": "error", "code": 7})
            assert c.get(server.url("/thing")).json() == {"status": "error", "code": 7}


# --------------------------------------------------------------------------- media faults


def test_media_truncate_next_cuts_n_bodies_then_serves_whole(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    url = _big_file(sim)
    size = int(client.head(url).headers["content-length"])
    sim.faults.update(media_truncate_next=2)
    assert client.head(url).status_code == 200  # no body: does not use up the count
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", url) as r:
        assert int(r.headers["content-length"]) == size
        for chunk in r.iter_bytes():
            received += chunk
    assert len(received) == size // 2
    with pytest.raises(httpx.RemoteProtocolError):  # a Range answer (206) is cut too
        client.get(url, headers={"Range": "bytes=100-"})
    assert len(client.get(url).content) == size
    assert sim.stats.snapshot()["faults"]["media_truncate"] == 2


@pytest.mark.parametrize(
    ("mode", "content_type", "start"),
    [
        ("html", "text/html; charset=utf-8", b"<!DOCTYPE html>"),
        ("json", "application/json", b'{"error"'),
        ("html_as_image", "image/png", b"<!DOCTYPE html>"),
    ],
)
def test_media_error_page_is_http_200_with_an_error_document(
    client: httpx.Client, sim: GeminiGenSimulator, mode: str, content_type: str, start: bytes
) -> None:
    """A CDN that answers 200 with an error page: only the body gives it away."""
    url = _big_file(sim)
    real = client.get(url).content
    sim.faults.update(media_error_page=mode)
    for headers in ({}, {"Range": "bytes=0-99"}):
        r = client.get(url, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == content_type
        assert r.content.startswith(start) and r.content != real[: len(r.content)]
        assert len(r.content) < 1000
    if mode == "json":
        assert json.loads(r.content)["error"]["code"] == "NOT_FOUND"
    sim.faults.update(media_error_page=None)
    assert client.get(url).content == real
    assert sim.stats.snapshot()["faults"][f"media_error_page:{mode}"] == 2


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (404, "NoSuchKey"),
                                              (410, "Gone"), (500, "InternalError")])  # fmt: skip
def test_media_status_next_answers_that_status_with_xml(
    client: httpx.Client, sim: GeminiGenSimulator, status: int, code: str
) -> None:
    url = _big_file(sim)
    sim.faults.update(media_status_next=2, media_status=status)
    for method in ("HEAD", "GET"):  # HEAD is a media request too
        r = client.request(method, url)
        assert r.status_code == status
        assert r.headers["content-type"] == "application/xml"
    assert f"<Code>{code}</Code>" in r.text
    assert client.get(url).status_code == 200
    assert sim.stats.snapshot()["faults"]["media_status"] == 2


def test_media_status_defaults_to_503_and_leaves_unknown_files_alone(
    client: httpx.Client, sim: GeminiGenSimulator
) -> None:
    sim.faults.update(media_status_next=1)
    missing = client.get(f"{sim.base_url}/cdn/no/such/file.jpg")
    assert missing.status_code == 404 and "NoSuchKey" in missing.text  # not consumed
    r = client.get(_big_file(sim))
    assert r.status_code == 503 and "<Code>ServiceUnavailable</Code>" in r.text
    assert client.get(_big_file(sim)).status_code == 200
