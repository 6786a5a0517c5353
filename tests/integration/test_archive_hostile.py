"""Whole archive passes (``archive_pending``) over files a hostile or broken server hands out.

The lower-level tests (``test_hostile_network.py``, ``test_media_content.py``,
``test_api_json_bounds.py``) show what :func:`open_media` and the API client do; these
show what ends up in the database and in storage when the archive job meets the same
input: the real runtime, a real SQLite store, a ``file://`` archive, and scripted
loopback origins for the CDN and the provider's API.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    ArchiveSettings,
    DatabaseSettings,
    NetworkSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.archive import archive_pending
from genvault.runtime import Runtime
from tests.fixtures.origin import Origin, Reply
from tests.integration.store_helpers import media, record, save

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
KEY = "gg-hostile-archive-key"


def _runtime(tmp_path: Path, api: Origin) -> Runtime:
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'gv.db'}"),
        storage=StorageSettings(url=f"file://{tmp_path / 'archive'}"),
        network=NetworkSettings(allow_private=True, connect_timeout=2.0, read_timeout=2.0),
        archive=ArchiveSettings(concurrency=2),
        accounts=(
            AccountSettings(
                name="main", provider="geminigen", api_key_env="UNUSED", base_url=api.url
            ),
        ),
    )
    rt = Runtime.build(settings, {"main": SecretStr(KEY)})
    return rt


def _rows(rt: Runtime) -> dict[str, dict[str, Any]]:
    return {str(r["external_id"]): r for r in rt.store.assets()}


def _events(log: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, log.getvalue().splitlines()) if e.get("event") == name]


def test_malformed_urls_fail_at_once_without_a_traceback(
    tmp_path: Path, info_json_log: io.StringIO
) -> None:
    """Each malformed URL is one permanent failure on its first attempt, named as such;
    before, httpx's InvalidURL counted as a bug: a traceback and a retry, 8 times over."""
    cdn = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG))
    api = Origin(lambda req: Reply(500, {}, b"unused"))
    bad = {
        "octal": "http://0177.0.0.1/a.png",
        "hex": f"http://0x7f.0.0.1:{cdn.port}/a.png",
        "long": "https://cdn.example.com/" + "a" * 70_000 + ".png",
        "idna": "https://\u2603.-com/a.png",
    }
    rt = _runtime(tmp_path, api)
    try:
        save(rt.store, [record(n, media_=[media(u)]) for n, u in bad.items()])
        save(rt.store, [record("good", media_=[media(cdn.url + "/good.png")])])
        result = archive_pending(rt)
        rows = _rows(rt)
    finally:
        rt.close()
    assert result.archived == 1 and rows["good"]["state"] == "archived"
    for name in bad:
        row = rows[name]
        assert row["state"] == "failed", (name, row["last_error"])
        assert row["attempts"] == 1
        assert "malformed URL" in str(row["last_error"])
        assert len(str(row["last_error"])) < 300
    assert _events(info_json_log, "asset.unexpected_error") == []
    assert "Traceback" not in info_json_log.getvalue()
    assert [r.url.path for r in cdn.requests] == ["/good.png"]


def test_a_deeply_nested_detail_during_a_url_refresh_does_not_end_the_pass(
    tmp_path: Path, info_json_log: io.StringIO
) -> None:
    """A 404 sends ``archive_one`` to the provider for a fresh URL, inside its
    ``except MediaGoneError`` handler. The detail answer is nested 50,000 levels deep:
    the JSON decoder's RecursionError escaped that handler and ended the whole pass.
    Now it is a MalformedResponseError, a failed refresh like any other."""

    def cdn_script(req: httpx.Request) -> Reply:
        if req.url.path == "/gone.png":
            return Reply(404, {"Content-Type": "application/xml"}, b"<Error/>")
        return Reply(200, {"Content-Type": "image/png"}, PNG)

    cdn = Origin(cdn_script)
    deep = b"[" * 50_000 + b"]" * 50_000
    api = Origin(
        lambda req: Reply(200, {"Content-Type": "application/json"}, b'{"uuid": ' + deep + b"}")
    )
    rt = _runtime(tmp_path, api)
    try:
        save(rt.store, [record("gone", media_=[media(cdn.url + "/gone.png")])])
        save(rt.store, [record(f"ok{i}", media_=[media(f"{cdn.url}/ok{i}.png")]) for i in range(4)])
        result = archive_pending(rt)
        rows = _rows(rt)
    finally:
        rt.close()
    assert result.archived == 4
    assert {rows[f"ok{i}"]["state"] for i in range(4)} == {"archived"}
    assert rows["gone"]["state"] == "pending", "404 before its deadline: retried later"
    refresh = _events(info_json_log, "asset.refresh_failed")
    assert refresh and "nested deeper than 64" in refresh[0]["error"]
    assert [r.url.path for r in api.requests] == ["/history/gone"]


def test_stored_extensions_come_from_the_bytes_not_the_url(tmp_path: Path) -> None:
    """Before, a generic Content-Type let the URL's extension through: a PNG behind
    ``…/x.html`` was stored as ``….html``, which a web server over the archive would
    serve as a page. Now the bytes decide, from an allowlist of media extensions."""
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 200
    files = {
        # name: (URL ending, Content-Type sent, body) -> expected extension, stored type
        "html": ("x.html", "application/octet-stream", PNG, "png", "image/png"),
        "svg": ("x.svg", "application/octet-stream", PNG, "png", "image/png"),
        "php": ("x.php", "binary/octet-stream", gif, "gif", "image/gif"),
        "liar": ("x.jpg", "image/jpeg", PNG, "png", "image/png"),
        "unknown": ("x.phtml", "application/octet-stream", b"\x00\x01" * 300, "jpg", None),
    }
    bodies = {f"/{n}/{u}": (ct, body) for n, (u, ct, body, _, _) in files.items()}

    def script(req: httpx.Request) -> Reply:
        ctype, body = bodies[req.url.path]
        return Reply(200, {"Content-Type": ctype}, body)

    cdn = Origin(script)
    api = Origin(lambda req: Reply(500, {}, b"unused"))
    rt = _runtime(tmp_path, api)
    try:
        save(
            rt.store,
            [record(n, media_=[media(f"{cdn.url}/{n}/{u}")]) for n, (u, *_) in files.items()],
        )
        assert archive_pending(rt).archived == len(files)
        rows = _rows(rt)
    finally:
        rt.close()
    for name, (_, sent, body, ext, stored_type) in files.items():
        row = rows[name]
        assert str(row["storage_key"]).endswith(f".{ext}"), (name, row["storage_key"])
        assert row["content_type"] == (stored_type or sent), name
        assert (tmp_path / "archive" / str(row["storage_key"])).read_bytes() == body
