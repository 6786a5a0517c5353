"""The status page (``GET /``) and archived files (``GET /files/{id}``) over real HTTP.

One runtime per module archives real files from two simulators (GeminiGen by
history, Akool by tracked ids whose prompts a submitter supplied, one of them
hostile markup) into a ``file://`` archive; each test starts its own
:class:`ApiServer` on it and talks HTTP over loopback. What a browser makes of
the page is tests/acceptance/test_status_page_browser.py; here: who gets in,
what bytes and headers come back, and what never comes back.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    DatabaseSettings,
    NetworkSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.pipeline import run_once
from genvault.records import AssetState, MediaKind, MediaRole
from genvault.runtime import Runtime
from genvault.server import ApiServer
from genvault.simulator import akool, geminigen
from genvault.store import Outcome, Store
from genvault.store.queries.activity import LOST_WITHOUT_ERROR
from genvault.web.auth import COOKIE_NAME, cookie_value
from genvault.web.endpoints import PAGE_HEADERS
from tests.fixtures.s3 import S3Server
from tests.fixtures.sims import sim_account
from tests.integration import stream_world
from tests.integration.store_helpers import CDN, media, record, save
from tests.integration.stream_world import DRIFT, EXPECTED, REJECTED_ERROR

KEY = "status-page-sim-key-24ch"  # 24 chars: Akool's AES-192 webhook key is the API key
TOKEN = "page-token-5f1c2a9e7b3d"
XSS = '<script>window.__xss=1</script>"onerror="window.__xss=2" <b>bold</b>'
PAGE_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class World:
    rt: Runtime
    tmp: Path

    def server(self, *, token: str | None = TOKEN, listen: str = "127.0.0.1:0") -> ServerSettings:
        token_file = None
        if token is not None:
            token_file = self.tmp / f"token-{len(token)}-{token[:4]}"
            token_file.write_text(token + "\n")
        return ServerSettings(listen=listen, token_file=token_file)


def _settings(tmp: Path, sims: dict[str, Any], storage: StorageSettings) -> Settings:
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp / 'gv.db'}"),
        storage=storage,
        network=NetworkSettings(allow_private=True, read_timeout=30),
        accounts=tuple(
            AccountSettings(**sim_account(sim, "SIM_KEY", name=name))
            for name, (_, sim) in sims.items()
        ),
    )


def _build(
    tmp: Path, storage: StorageSettings, *, count: int = 4, image_size: int = 150_000
) -> tuple[Runtime, list[Any]]:
    """Archive from a GeminiGen and an Akool simulator; returns the runtime and the sims."""
    gg = geminigen.create(
        api_key=KEY,
        seed=31,
        count=count,
        processing_count=0,
        failed_count=0,
        image_size=image_size,  # by default several 64 KiB chunks per file
        video_size=60_000,
        audio_size=20_000,
        thumbnail_size=9_000,
    )
    ak = akool.create(
        api_key=KEY,
        seed=32,
        count=2,
        processing_count=0,
        failed_count=0,
        upscaled_count=0,
        image_size=20_000,
    )
    sims = [gg, ak]
    for sim in sims:
        sim.start()
    settings = _settings(tmp, {"gemini": ("geminigen", gg), "ads": ("akool", ak)}, storage)
    rt = Runtime.build(settings, {a.name: SecretStr(KEY) for a in settings.accounts})
    prompts = [XSS, "a red bicycle leaning on a wall"]
    rt.store.register_tasks(
        provider="akool",
        account="ads",
        items=[{"id": i, "prompt": p} for i, p in zip(ak.task_ids, prompts, strict=True)],
        source="track",
        poll_horizon=rt.poll_horizon,
    )
    run_once(rt)
    return rt, sims


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("status-page")
    rt, sims = _build(tmp, StorageSettings(url=f"file://{tmp / 'archive'}"))
    try:
        yield World(rt, tmp)
    finally:
        rt.close()
        for sim in sims:
            sim.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    set_cookies: list[str]

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Page:
    url: str

    def get(
        self,
        path: str,
        *,
        bearer: str | None = None,
        cookie: str | None = None,
        method: str = "GET",
        body: bytes | None = None,
        host: str | None = None,
    ) -> Reply:
        headers: dict[str, str] = {}
        if host is not None:
            headers["Host"] = host  # http.client then sends this one instead of its own
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        if cookie is not None:
            headers["Cookie"] = cookie
        parts = urlsplit(self.url)
        assert parts.hostname and parts.port
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Reply(
                resp.status,
                {k.lower(): v for k, v in resp.getheaders()},
                data,
                [v for k, v in resp.getheaders() if k.lower() == "set-cookie"],
            )
        finally:
            conn.close()


@pytest.fixture
def serve(world: World) -> Iterator[Callable[..., Page]]:
    started: list[ApiServer] = []

    def make(*, token: str | None = TOKEN, listen: str = "127.0.0.1:0") -> Page:
        srv = ApiServer(world.rt, world.server(token=token, listen=listen))
        started.append(srv)
        return Page(srv.start())

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def page(serve: Callable[..., Page]) -> Page:
    return serve()


def _images(store: Store) -> list[dict[str, Any]]:
    return [
        a
        for a in store.assets()
        if a["state"] == "archived" and a["kind"] == "image" and a["content_type"]
    ]


# --------------------------------------------------------------------------- who gets in


def test_page_needs_the_token_and_says_so(page: Page) -> None:
    missing = page.get("/")
    assert missing.status == 401
    assert missing.headers["content-type"] == "text/html; charset=utf-8"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Token required" in missing.text and 'name="token"' in missing.text
    assert "gemini" not in missing.text, "nothing of the archive before the token"

    assert page.get("/", bearer=TOKEN + "x").status == 401
    wrong = page.get("/?token=nope")
    assert wrong.status == 401 and "not right" in wrong.text
    assert not wrong.set_cookies
    assert page.get("/", cookie=f"{COOKIE_NAME}=0123abcd").status == 401

    ok = page.get("/", bearer=TOKEN)
    assert ok.status == 200
    assert 'data-account="gemini"' in ok.text


def test_query_token_becomes_a_cookie_and_leaves_the_url(page: Page) -> None:
    first = page.get(f"/?q=red+bicycle&token={TOKEN}&provider=akool")
    assert first.status == 303
    assert first.headers["location"] == "/?q=red+bicycle&provider=akool"
    assert TOKEN not in first.headers["location"]
    (cookie,) = first.set_cookies
    attrs = [p.strip() for p in cookie.split(";")]
    name, _, value = attrs[0].partition("=")
    assert name == COOKIE_NAME and value == cookie_value(TOKEN.encode())
    assert TOKEN not in cookie, "the cookie is derived from the token, not the token"
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attrs)

    assert page.get("/", cookie=attrs[0]).status == 200
    # the cookie opens the read-only page only: it is no bearer for the intake
    intake = page.get(
        "/v1/tasks", bearer=value, method="POST", body=b'{"account":"ads","ids":["x"]}'
    )
    assert intake.status == 401


def test_files_need_the_token_too(page: Page, world: World) -> None:
    asset_id = _images(world.rt.store)[0]["id"]
    assert page.get(f"/files/{asset_id}").status == 401
    assert page.get(f"/files/{asset_id}", bearer="wrong").status == 401
    cookie = f"{COOKIE_NAME}={cookie_value(TOKEN.encode())}"
    assert page.get(f"/files/{asset_id}", cookie=cookie).status == 200
    redirect = page.get(f"/files/{asset_id}?token={TOKEN}")
    assert (redirect.status, redirect.headers["location"]) == (303, f"/files/{asset_id}")


def test_without_a_token_open_on_loopback_closed_elsewhere(serve: Callable[..., Page]) -> None:
    local = serve(token=None)
    assert local.get("/").status == 200

    exposed = serve(token=None, listen="0.0.0.0:0")
    closed = exposed.get("/")
    assert closed.status == 403
    assert "loopback" in closed.text and "gemini" not in closed.text
    assert exposed.get("/files/1").status == 403
    assert exposed.get("/healthz").status == 200, "probes stay open"


def test_without_a_token_only_loopback_host_names_are_served(serve: Callable[..., Page]) -> None:
    """Issue item 11, DNS rebinding: a web page the operator visits points its own name
    at 127.0.0.1, and the browser sends that name as ``Host``. Without a token only
    loopback names are answered, so such a page never reads prompts or images."""
    local = serve(token=None)
    port = urlsplit(local.url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert local.get("/", host=host).status == 200, host
    for host in (f"rebind.example:{port}", "rebind.example", f"10.0.0.8:{port}", "", "[::1"):
        refused = local.get("/", host=host)
        assert refused.status == 403, host
        assert "gemini" not in refused.text and "Host" in refused.text
        assert local.get("/files/1", host=host).status == 403, host
    assert local.get("/healthz", host="rebind.example").status == 200, "probes stay open"

    guarded = serve()  # with a token, the token decides, whatever the name
    assert guarded.get("/", host="rebind.example", bearer=TOKEN).status == 200
    assert guarded.get("/", host="rebind.example").status == 401


# --------------------------------------------------------------------------- the page


def test_page_headers(page: Page) -> None:
    for method in ("GET", "HEAD"):
        r = page.get("/", bearer=TOKEN, method=method)
        assert r.status == 200
        assert r.headers["content-security-policy"] == PAGE_CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert int(r.headers["content-length"]) > 1000
        assert (r.body == b"") is (method == "HEAD")
    assert PAGE_HEADERS["Content-Security-Policy"] == PAGE_CSP
    refused = page.get("/")
    assert refused.headers["content-security-policy"] == PAGE_CSP


def test_page_escapes_third_party_text(page: Page) -> None:
    html = page.get("/", bearer=TOKEN).text
    assert "<script" not in html.lower(), "the page has no script, and prompts add none"
    assert "onerror=" not in html.replace("&quot;onerror=", ""), "no live attribute"
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;&quot;onerror=&quot;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_page_shows_counts_thumbnails_and_refreshes(page: Page, world: World) -> None:
    html = page.get("/", bearer=TOKEN).text
    rows = world.rt.store.assets()
    for account in ("gemini", "ads"):
        archived = sum(1 for a in rows if a["account"] == account and a["state"] == "archived")
        assert archived > 0
        card = html.split(f'data-account="{account}"', 1)[1].split("</article>", 1)[0]
        stat = re.search(r'data-stat="archived"><span class="n">(\d+)<', card)
        assert stat is not None and int(stat.group(1)) == archived
    shown = [int(i) for i in re.findall(r'<img src="/files/(\d+)" loading="lazy"', html)]
    assert shown == [m.asset_id for m in world.rt.store.recent_archives(24)]
    images = {a["id"]: a for a in _images(world.rt.store)}
    assert {images[i]["external_id"] for i in shown} == {
        a["external_id"] for a in images.values()
    }, "one tile for every generation with an archived image"
    assert len(shown) == len({images[i]["external_id"] for i in shown}), "and only one"
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "Nothing at risk." in html and "No failures." in html


def test_search_box_runs_the_store_search(page: Page, world: World) -> None:
    html = page.get("/?q=red+bicycle&provider=akool", bearer=TOKEN).text
    assert 'value="red bicycle"' in html
    assert '<option value="akool" selected>' in html
    assert 'http-equiv="refresh"' not in html, "no refresh under search results"
    hits = world.rt.store.search("red bicycle", provider="akool")
    if hits:
        assert "a red bicycle leaning on a wall" in html.split('id="results"', 1)[1]
    else:  # the search index is not built yet: the box must still answer
        assert "No results for “red bicycle”." in html
    ignored = page.get("/?q=x&provider=../../etc", bearer=TOKEN).text
    assert "selected>" not in ignored, "an unknown provider is not passed on"


# --------------------------------------------------------------------------- /files


def test_files_stream_the_archived_image(page: Page, world: World) -> None:
    big = [a for a in _images(world.rt.store) if a["size"] > 128 * 1024]
    assert big, "an image spanning several chunks"
    for row in big[:2]:
        r = page.get(f"/files/{row['id']}", bearer=TOKEN)
        assert r.status == 200
        assert hashlib.sha256(r.body).hexdigest() == row["sha256"]
        assert r.headers["content-type"] == row["content_type"] == "image/jpeg"
        assert int(r.headers["content-length"]) == row["size"] == len(r.body)
        assert r.headers["cache-control"] == "private, max-age=86400"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
        head = page.get(f"/files/{row['id']}", bearer=TOKEN, method="HEAD")
        assert (head.status, head.body) == (200, b"")
        assert head.headers["content-length"] == str(row["size"])


def test_files_404_unless_an_archived_image(page: Page, world: World) -> None:
    rows = world.rt.store.assets()
    not_images = [a["id"] for a in rows if a["state"] == "archived" and a["kind"] != "image"]
    not_archived = [a["id"] for a in rows if a["state"] != "archived"]
    assert not_images, "the GeminiGen simulator serves videos and audio"
    for asset_id in [*not_images[:2], *not_archived[:2], 10**9]:
        r = page.get(f"/files/{asset_id}", bearer=TOKEN)
        assert r.status == 404, asset_id
        assert r.headers["content-type"] == "application/json"
    for path in ("/files/abc", "/files/", "/files/1/../2", "/files/" + "9" * 19, "/index.html"):
        assert page.get(path, bearer=TOKEN).status == 404, path
    assert page.get("/", bearer=TOKEN, method="POST", body=b"").status == 405


def test_a_file_missing_or_short_in_storage(serve: Callable[..., Page], tmp_path: Path) -> None:
    rt, sims = _build(tmp_path, StorageSettings(url=f"file://{tmp_path / 'archive'}"), count=2)
    srv = ApiServer(rt, ServerSettings(listen="127.0.0.1:0"))
    try:
        page = Page(srv.start())
        big, other = sorted(_images(rt.store), key=lambda a: -a["size"])[:2]
        (tmp_path / "archive" / other["storage_key"]).unlink()
        assert page.get(f"/files/{other['id']}").status == 503

        path = tmp_path / "archive" / big["storage_key"]
        path.write_bytes(path.read_bytes()[: big["size"] // 2])
        with pytest.raises(http.client.IncompleteRead):
            page.get(f"/files/{big['id']}")
        assert page.get("/healthz").status == 200, "the server lives on"
    finally:
        srv.stop()
        rt.close()
        for sim in sims:
            sim.stop()


def test_a_client_that_stops_reading_a_file_is_dropped(tmp_path: Path) -> None:
    """A client that asks for an image and never reads it must not hold the server's
    buffers (or a worker thread) forever: after ``server.request_timeout_seconds``
    without progress the connection is closed, and the one worker thread serves on."""
    rt, sims = _build(
        tmp_path,
        StorageSettings(url=f"file://{tmp_path / 'archive'}"),
        count=1,
        image_size=12 * 1024 * 1024,
    )
    srv = ApiServer(rt, ServerSettings(listen="127.0.0.1:0", threads=1, request_timeout_seconds=1))
    try:
        page = Page(srv.start())
        big = max(_images(rt.store), key=lambda a: a["size"])
        assert big["size"] > 8 * 1024 * 1024, "more than the kernel buffers take"
        parts = urlsplit(page.url)
        assert parts.hostname and parts.port
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((parts.hostname, parts.port))
        sock.sendall(f"GET /files/{big['id']} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        started = time.monotonic()
        while srv.counters.get("http.refused.stalled_reader", 0) == 0:
            assert time.monotonic() - started < 6, srv.counters
            time.sleep(0.1)
        assert page.get("/healthz").status == 200, "the worker thread is free"
        sock.close()
    finally:
        srv.stop()
        rt.close()
        for sim in sims:
            sim.stop()


@pytest.mark.s3
def test_files_stream_from_s3(
    s3_bucket: tuple[str, str], s3_server: S3Server, tmp_path: Path
) -> None:
    endpoint, bucket = s3_bucket
    storage = StorageSettings(url=f"s3://{bucket}/archive", endpoint_url=endpoint)
    rt, sims = _build(tmp_path, storage, count=1)
    srv = ApiServer(rt, ServerSettings(listen="127.0.0.1:0"))
    try:
        page = Page(srv.start())
        rows = _images(rt.store)
        assert rows
        for row in rows[:3]:
            r = page.get(f"/files/{row['id']}")
            assert r.status == 200
            assert hashlib.sha256(r.body).hexdigest() == row["sha256"]
            assert int(r.headers["content-length"]) == row["size"]
    finally:
        srv.stop()
        rt.close()
        for sim in sims:
            sim.stop()


# --------------------------------------------------------------------------- queries


def test_activity_queries_on_both_databases(store: Store) -> None:
    """recent_archives / stored_file / recent_failures on SQLite and PostgreSQL.

    Five generations, each with a result image, a video and a thumbnail; outcomes
    are applied one at a time, so archived_at and updated_at follow their order.
    """
    now = datetime.now(UTC)
    recs = [
        record(
            f"g{i}",
            prompt=f"prompt {i}",
            created_at=now - timedelta(hours=i),
            media_=[
                media(f"{CDN}/g{i}/a.jpg"),
                media(f"{CDN}/g{i}/b.mp4", kind=MediaKind.VIDEO),
                media(f"{CDN}/g{i}/t.jpg", role=MediaRole.THUMBNAIL),
            ],
        )
        for i in range(5)
    ]
    save(store, recs)
    leased = store.leases.acquire("w", limit=100, lease_seconds=60)
    asset = {a.source_url.removeprefix(CDN + "/"): a.id for a in leased}

    def archived(path: str, content_type: str) -> Outcome:
        return Outcome(
            asset[path],
            AssetState.ARCHIVED,
            size=100 + len(path),
            sha256="0" * 64,
            content_type=content_type,
            storage_key=f"k/{path}",
        )

    outcomes = [archived(f"g{i}/a.jpg", "image/jpeg") for i in range(3)]
    outcomes += [archived(f"g{i}/b.mp4", "video/mp4") for i in range(4)]
    outcomes += [
        archived("g3/a.jpg", "text/html"),  # a lying CDN: never drawn
        archived("g3/t.jpg", "image/jpeg"),
        archived("g4/a.jpg", "image/png"),
        archived("g4/t.jpg", "image/jpeg"),
        Outcome(asset["g0/t.jpg"], AssetState.FAILED, error="PermanentDownloadError: too big"),
        Outcome(asset["g1/t.jpg"], AssetState.LOST),
        Outcome(
            asset["g2/t.jpg"],
            AssetState.PENDING,
            error="TransientDownloadError: HTTP 503",
            retry_at=now + timedelta(minutes=5),
        ),
    ]
    for o in outcomes:
        assert store.leases.finish("w", [o]) == 1

    images = store.recent_archives(24)
    assert [(m.external_id, m.role) for m in images] == [
        ("g4", "result"),  # its thumbnail is newer, but the result stands for it
        ("g3", "thumbnail"),  # its "result" is text/html
        ("g2", "result"),
        ("g1", "result"),
        ("g0", "result"),
    ]
    assert images[0].prompt == "prompt 4" and images[0].storage_key == "k/g4/a.jpg"
    assert images[0].content_type == "image/png" and images[0].kind == "image"
    assert [m.external_id for m in store.recent_archives(2)] == ["g4", "g3"]
    videos = store.recent_archives(10, kinds=("video",))
    assert [(m.external_id, m.kind) for m in videos] == [(f"g{i}", "video") for i in (3, 2, 1, 0)]

    got = store.stored_file(asset["g4/a.jpg"])
    assert got is not None and (got.storage_key, got.size) == ("k/g4/a.jpg", 108)
    assert store.stored_file(asset["g4/b.mp4"]) is None, "pending: nothing to serve"
    assert store.stored_file(asset["g0/t.jpg"]) is None, "failed: nothing to serve"
    assert store.stored_file(10**9) is None

    failures = store.recent_failures(20)
    assert [(f.external_id, f.state) for f in failures] == [
        ("g2", "pending"),
        ("g1", "lost"),
        ("g0", "failed"),
    ], "g4's video is pending without an error: not a failure"
    assert failures[0].reason == "TransientDownloadError: HTTP 503"
    assert failures[0].next_attempt_at is not None and failures[0].role == "thumbnail"
    assert failures[1].reason == LOST_WITHOUT_ERROR
    assert failures[2].reason == "PermanentDownloadError: too big"
    assert [f.external_id for f in store.recent_failures(1)] == ["g2"]


# --------------------------------------------------------------------------- streams


def _stream_items(card: str) -> dict[str, str]:
    """data-stream -> the HTML of that stream's item in an account card."""
    return dict(re.findall(r'<li class="stream" data-stream="([^"]*)"(.*?)</li>', card, re.S))


def _card(html: str, account: str) -> str:
    return html.split(f'data-account="{account}"', 1)[1].split("</article>", 1)[0]


def test_the_pipeline_s_streams_are_complete(page: Page) -> None:
    html = page.get("/", bearer=TOKEN).text
    gemini = _stream_items(_card(html, "gemini"))
    assert 'data-complete="yes"' in gemini["all"], "one complete walk of GeminiGen's listing"
    assert "last complete walk" in gemini["all"]
    ads = _stream_items(_card(html, "ads"))
    assert list(ads) == ["(tracked)"], "Akool has no listing: its ids were tracked"
    assert 'data-complete="yes"' in ads["(tracked)"]


def test_page_shows_each_stream_s_figures_and_names_the_failing_one(
    db_url: str, tmp_path: Path
) -> None:
    rt = Runtime.build(stream_world.settings(db_url, tmp_path), stream_world.SECRETS)
    srv = ApiServer(rt, ServerSettings(listen="127.0.0.1:0"))
    try:
        world = stream_world.build(rt.store)
        page = Page(srv.start())
        r = page.get("/")
        assert r.status == 200
        cc, gg = _card(r.text, "cc"), _card(r.text, "gg")
        assert '<span class="badge bad">4 incomplete</span>' in cc
        assert '<ul class="streams" data-complete="yes">' in gg
        items = {
            (account, name): item
            for account, card in (("cc", cc), ("gg", gg))
            for name, item in _stream_items(card).items()
        }
        assert list(items)[:4] == [
            ("cc", "wf-later"),
            ("cc", "wf-lossy"),
            ("cc", "wf-rejected"),
            ("cc", "(tracked)"),
        ], "the incomplete ones first"
        for key, want in EXPECTED.items():
            item = items[key]
            shown = dict(
                re.findall(r'data-figure="(\w+)" class="\w*">[a-z ]+ <b>([^<]*)</b>', item)
            )
            for fig in ("listed", "known", "archived", "pending", "missing"):
                assert shown[fig] == ("-" if want[fig] is None else str(want[fig])), (key, fig)
            assert shown["gone_before_capture"] == str(want["gone_before_capture"]), key
            assert shown.get("awaiting_read", "0") == str(want["awaiting_read"]), key
            assert f'data-complete="{"yes" if want["complete"] else "no"}"' in item, key
            if key in world.walked:
                assert "last complete walk" in item
        rejected = items[("cc", "wf-rejected")]
        assert f'<p class="problem">sync error: {REJECTED_ERROR}</p>' in rejected
        assert f"last walk incomplete: {DRIFT}" in items[("cc", "wf-lossy")]
        assert "walking now" in items[("cc", "wf-lossy")]
        assert "never walked to the end" in items[("cc", "wf-later")]
        assert cc.count(REJECTED_ERROR) == 1, "named under its stream, not again unnamed"
    finally:
        srv.stop()
        rt.close()
