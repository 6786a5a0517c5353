"""The daemon's HTTP server over real loopback HTTP: intake, webhooks, limits, probes.

Each test runs a real :class:`ApiServer` on port 0 against a Runtime with a SQLite
database and a ``file://`` archive. No provider is called: intake and webhooks
only store ids; the poll job (not running here) would read the tasks later.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from genvault.config import Settings, load_settings, resolve_secrets
from genvault.errors import ConfigError, WebhookRejectedError
from genvault.httpd.intake import MAX_IDS_PER_REQUEST
from genvault.providers.geminigen import GeminiGen
from genvault.runtime import Runtime
from genvault.server import ApiServer
from genvault.store import Store
from tests.acceptance.helpers import GENVAULT, write_config
from tests.fixtures.sims import sim_account

TOKEN = "srv-token-0123456789abcdef"
HOOK = "hook-secret-main-5e8d1c"
"""The webhook secret of account ``main`` (``webhook_secret_file``): not the server token."""
NOWHERE = "http://127.0.0.1:9/uapi/v1"  # the discard port: nothing answers, nothing is asked


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Api:
    server: ApiServer
    rt: Runtime
    url: str
    due: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request on a fresh connection; ``body`` is JSON-encoded unless bytes."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        if raw is not None:
            all_headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(*self.address, timeout=10)
        try:
            conn.request(method, path, body=raw, headers=all_headers)
            resp = conn.getresponse()
            data = resp.read()
            return Reply(
                resp.status,
                json.loads(data) if data else {},
                {k.lower(): v for k, v in resp.getheaders()},
            )
        finally:
            conn.close()

    def intake(self, body: Any, token: str | None = TOKEN) -> Reply:
        return self.request("POST", "/v1/tasks", body, token=token)

    def generations(self) -> dict[str, dict[str, Any]]:
        return {g["external_id"]: g for g in self.rt.store.generations()}


def raw_exchange(address: tuple[str, int], head: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """Send raw request bytes, parse one response; returns (status, what follows it).

    What follows is ``b""`` when the server closed the connection after answering.
    """
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(head)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        resp.read()
        sock.settimeout(0.5)
        try:
            rest = sock.recv(1)
        except TimeoutError:
            rest = b"<still open>"
        return resp.status, rest


def build_settings(
    tmp_path: Path,
    *,
    token: str | None = TOKEN,
    accounts: list[dict[str, Any]] | None = None,
    server: str = "",
    environ: dict[str, str] | None = None,
) -> tuple[Settings, dict[str, str]]:
    env = {"GG_KEY": "gg-key-1234", **(environ or {})}
    lines = [
        "[database]",
        f'url = "sqlite:///{tmp_path / "gv.db"}"',
        "[storage]",
        f'url = "file://{tmp_path / "archive"}"',
        "[server]",
        'listen = "127.0.0.1:0"',
    ]
    if token is not None:
        token_file = tmp_path / "server-token"
        token_file.write_text(token + "\n")
        lines.append(f'token_file = "{token_file}"')
    lines.append(server)
    hook_file = tmp_path / "hook-main"
    hook_file.write_text(HOOK + "\n")
    for acc in accounts or [
        {
            "name": "main",
            "provider": "geminigen",
            "api_key_env": "GG_KEY",
            "base_url": NOWHERE,
            "webhook_secret_file": str(hook_file),
        }
    ]:
        lines.append("[[accounts]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in acc.items()]
    cfg = tmp_path / "genvault.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return load_settings(cfg, environ=env), env


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Start ApiServers on port 0; every one is stopped and its Runtime closed afterwards."""
    started: list[Api] = []

    def make(
        *,
        token: str | None = TOKEN,
        accounts: list[dict[str, Any]] | None = None,
        server: str = "",
        environ: dict[str, str] | None = None,
        is_healthy: Callable[[], bool] | None = None,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Api:
        settings, env = build_settings(
            tmp_path, token=token, accounts=accounts, server=server, environ=environ
        )
        rt = Runtime.build(settings, resolve_secrets(settings, env))
        due: list[str] = []
        srv = ApiServer(
            rt,
            settings.server,
            on_due=due.append,
            is_healthy=is_healthy,
            request_timeout=request_timeout,
            clock=clock,
        )
        api = Api(srv, rt, srv.start(), due)
        started.append(api)
        return api

    yield make
    for api in started:
        api.server.stop()
        api.rt.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture
def token_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """GeminiGen, for this test only, sends unsigned callbacks naming ``{"uuid": ...}``."""

    def webhook_ids(self: GeminiGen, body: bytes, headers: Mapping[str, str]) -> list[str]:
        try:
            return [str(json.loads(body)["uuid"])]
        except (ValueError, KeyError, TypeError):
            raise WebhookRejectedError("no uuid") from None

    monkeypatch.setattr(GeminiGen, "webhook_auth", "token")
    monkeypatch.setattr(GeminiGen, "webhook_ids", webhook_ids)


# --------------------------------------------------------------------------- intake


def test_intake_requires_the_bearer_token(api: Api) -> None:
    body = {"account": "main", "ids": ["t-1", "t-2"]}
    missing = api.intake(body, token=None)
    assert missing.status == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert api.intake(body, token=TOKEN + "x").status == 401
    assert api.request("POST", "/v1/tasks", body, headers={"Authorization": TOKEN}).status == 401
    assert api.generations() == {}

    ok = api.intake(body)
    assert (ok.status, ok.body) == (200, {"account": "main", "registered": 2, "known": 0})
    gens = api.generations()
    assert set(gens) == {"t-1", "t-2"}
    now = datetime.now(UTC).replace(tzinfo=None)
    for g in gens.values():
        assert g["source"] == "intake" and g["status"] == "queued"
        due = g["next_poll_at"].replace(tzinfo=None)
        assert due <= now, "stored before the first poll and due at once"
    assert api.due == ["main"]
    counters = api.server.counters
    assert counters["intake.refused.bad_token"] == 3
    assert counters["intake.accepted"] == 1
    assert counters["intake.ids_new"] == 2


def test_intake_is_disabled_not_open_without_a_token(make_api: Callable[..., Api]) -> None:
    api = make_api(token=None)
    for token in (None, "anything"):
        reply = api.intake({"account": "main", "ids": ["t-1"]}, token=token)
        assert reply.status == 403
        assert "intake disabled" in reply.body["error"]
        assert "server.token_env" in reply.body["error"]
    assert api.generations() == {}
    assert api.server.counters["intake.refused.disabled"] == 2


def test_reregistering_reports_known_ids_and_tasks_carry_details(api: Api) -> None:
    assert api.intake({"account": "main", "ids": ["a", "b"]}).body["registered"] == 2
    again = api.intake({"account": "main", "ids": ["b", "c", "c", " c "]})
    assert again.body == {"account": "main", "registered": 1, "known": 1}
    assert api.due == ["main", "main"]
    quiet = api.intake({"account": "main", "ids": ["a"]})
    assert quiet.body == {"account": "main", "registered": 0, "known": 1}
    assert api.due == ["main", "main"], "nothing new: the poll job is not woken"

    tasks = api.intake(
        {
            "account": "main",
            "tasks": [
                {"id": "d", "prompt": "a red fox", "created_at": "2025-09-27T13:30:05Z"},
                {"id": "e", "created_at": 1758979805},
                "f",
            ],
        }
    )
    assert tasks.body == {"account": "main", "registered": 3, "known": 0}
    gens = api.generations()
    assert gens["d"]["prompt"] == "a red fox"
    assert gens["d"]["created_at"].replace(tzinfo=None) == datetime(2025, 9, 27, 13, 30, 5)
    assert gens["e"]["created_at"].replace(tzinfo=None) == datetime(2025, 9, 27, 13, 30, 5)


def test_keep_alive_serves_several_requests_on_one_connection(api: Api) -> None:
    conn = http.client.HTTPConnection(*api.address, timeout=10)
    try:
        for i in range(3):
            body = json.dumps({"account": "main", "ids": [f"k-{i}"]})
            conn.request("POST", "/v1/tasks", body, {"Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["registered"] == 1
    finally:
        conn.close()


def test_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    limit = api.rt.settings.server.max_body_bytes
    assert limit == 1024**2
    head = (
        f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    status, rest = raw_exchange(api.address, head)  # not one byte of the body is sent
    assert status == 413
    assert rest == b"", "the unread body must not be parsed as a next request"
    assert time.monotonic() - started < 3
    assert api.server.counters["intake.refused.too_large"] == 1


def test_post_without_content_length_is_411(api: Api) -> None:
    head = f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    assert raw_exchange(api.address, head.encode())[0] == 411
    assert api.server.counters["intake.refused.no_length"] == 1


def test_chunked_bodies_are_read_within_the_same_limit(api: Api) -> None:
    """waitress de-chunks a body as it arrives and stops at ``server.max_body_bytes``."""
    body = json.dumps({"account": "main", "ids": ["c-1"]}).encode()
    chunked = (
        (
            f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n"
        ).encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    assert raw_exchange(api.address, chunked)[0] == 200
    assert set(api.generations()) == {"c-1"}

    limit = api.rt.settings.server.max_body_bytes
    piece = b"x" * 65536
    with socket.create_connection(api.address, timeout=5) as sock:
        sock.sendall(
            f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        with contextlib.suppress(OSError):  # the server hangs up once the limit is passed
            for _ in range(limit // len(piece) + 2):
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 413
        assert json.loads(resp.read()) == {"error": f"body larger than {limit} bytes"}
    assert api.server.counters["intake.refused.too_large"] == 1


def test_two_content_lengths_are_refused(api: Api) -> None:
    head = (
        f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}"
    )
    assert raw_exchange(api.address, head.encode()) == (400, b"")


def test_connections_beyond_the_cap_wait_until_one_closes(make_api: Callable[..., Api]) -> None:
    """``server.max_connections`` open at once; the next waits in the listen backlog
    (nothing of it is read) and is served as soon as one of them closes."""
    api = make_api(server="max_connections = 16")
    idle = [socket.create_connection(api.address, timeout=5) for _ in range(16)]
    try:
        for sock in idle:  # each one answered: all 16 are accepted and open
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            assert resp.status == 200
            resp.read()
        waiting = socket.create_connection(api.address, timeout=5)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(1)  # not accepted while 16 are open
        idle.pop().close()
        waiting.settimeout(5)
        resp = http.client.HTTPResponse(waiting)
        resp.begin()
        assert resp.status == 200
        waiting.close()
    finally:
        for sock in idle:
            sock.close()


def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_deadline(
    make_api: Callable[..., Api],
) -> None:
    """Issue item 10: a per-read timeout never fires on a client that keeps sending, so
    the whole head (and body) must arrive within ``server.request_timeout_seconds``."""
    api = make_api(request_timeout=1.0)
    with socket.create_connection(api.address, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        started = time.monotonic()
        answer = b""
        while not answer and time.monotonic() - started < 5:
            with contextlib.suppress(OSError):
                sock.sendall(b"a")  # a byte every 0.1 s: never idle
            if select.select([sock], [], [], 0.1)[0]:
                answer = sock.recv(4096)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'{"error":"request not received in time"}' in answer
    assert 1.0 <= took < 3.5, took
    assert api.server.counters["http.refused.timeout"] == 1
    assert api.request("GET", "/healthz").status == 200


def test_a_stalled_body_times_out(make_api: Callable[..., Api]) -> None:
    api = make_api(request_timeout=0.5)
    head = (
        f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        'Content-Length: 40\r\n\r\n{"account": '
    )
    started = time.monotonic()
    status, rest = raw_exchange(api.address, head.encode())
    assert (status, rest) == (408, b"")
    assert time.monotonic() - started < 4


def test_bad_json_is_400(api: Api) -> None:
    reply = api.intake(b'{"account": "main", "ids": [')
    assert reply.status == 400 and "JSON" in reply.body["error"]
    assert api.server.counters["intake.refused.bad_json"] == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (["main", "a"], "JSON object"),
        ({"ids": ["a"]}, "account"),
        ({"account": "main"}, "exactly one"),
        ({"account": "main", "ids": ["a"], "tasks": []}, "exactly one"),
        ({"account": "main", "ids": "a"}, "must be a list"),
        ({"account": "main", "ids": ["a", 7]}, "ids[1]"),
        ({"account": "main", "ids": ["a", "  "]}, "ids[1]"),
        ({"account": "main", "ids": ["x" * 513]}, "longer than"),
        ({"account": "main", "tasks": [{"prompt": "no id"}]}, "tasks[0]"),
        ({"account": "main", "tasks": [{"id": "a", "created_at": "soon"}]}, "not a date"),
        ({"account": "main", "tasks": [["a"]]}, "tasks[0]"),
    ],
)
def test_malformed_intake_bodies_are_400_naming_the_problem(
    api: Api, body: Any, needle: str
) -> None:
    reply = api.intake(body)
    assert reply.status == 400
    assert needle in reply.body["error"]
    assert api.generations() == {}


def test_unknown_account_is_404(api: Api) -> None:
    reply = api.intake({"account": "nope", "ids": ["a"]})
    assert reply.status == 404 and "nope" in reply.body["error"]
    assert api.server.counters["intake.refused.unknown_account"] == 1


def test_too_many_ids_in_one_request(api: Api) -> None:
    ids = [f"id-{i}" for i in range(MAX_IDS_PER_REQUEST + 1)]
    assert api.intake({"account": "main", "ids": ids}).status == 413
    assert api.intake({"account": "main", "ids": ids[:-1]}).body["registered"] == len(ids) - 1


def test_unknown_routes_404_and_wrong_methods_405(api: Api) -> None:
    assert api.request("GET", "/nope").status == 404  # "/" is the status page now
    assert api.request("GET", "/v1/tasks/extra").status == 404
    reply = api.request("GET", "/v1/tasks")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    assert api.request("DELETE", "/healthz").headers["allow"] == "GET"
    assert api.request("POST", "/healthz", {"x": 1}).status == 405
    assert api.request("GET", "/webhooks/main").status == 405
    assert api.request("POST", "/webhooks/..%2f..").status == 404


# --------------------------------------------------------------------------- webhooks


def test_provider_without_webhooks_is_404(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from genvault.providers.geminigen import GeminiGen

    monkeypatch.setattr(GeminiGen, "webhook_auth", "none")  # as QuickRouter's: no callbacks
    reply = api.request("POST", f"/webhooks/main?token={HOOK}", {"uuid": "x"})
    assert reply.status == 404 and "no webhooks" in reply.body["error"]
    assert api.request("POST", "/webhooks/ghost", {"uuid": "x"}).status == 404
    assert api.generations() == {}
    counters = api.server.counters
    assert counters["webhook.refused.no_webhooks"] == 1
    assert counters["webhook.refused.unknown_account"] == 1


@pytest.mark.usefixtures("token_webhooks")
def test_webhook_with_a_bad_token_is_401_and_counted(api: Api) -> None:
    body = {"uuid": "w-1"}
    assert api.request("POST", "/webhooks/main", body).status == 401
    assert api.request("POST", "/webhooks/main?token=wrong", body).status == 401
    assert api.request("POST", "/webhooks/main", body, token="wrong").status == 401
    assert api.request("POST", f"/webhooks/main?token={HOOK[:-1]}", body).status == 401
    assert api.server.counters["webhook.refused.bad_token"] == 4
    assert api.generations() == {}
    assert api.due == []


@pytest.mark.usefixtures("token_webhooks")
def test_good_webhook_makes_the_task_due_and_wakes_the_poll(api: Api) -> None:
    reply = api.request("POST", f"/webhooks/main?token={HOOK}", {"uuid": "w-new"})
    assert (reply.status, reply.body) == (200, {"accepted": 1})
    assert api.due == ["main"]
    gens = api.generations()
    assert gens["w-new"]["source"] == "webhook"
    assert gens["w-new"]["next_poll_at"] is not None

    # A known running task that is not due for an hour becomes due at once.
    later = datetime.now(UTC) + timedelta(hours=1)
    api.rt.store.register_tasks(
        provider="geminigen",
        account="main",
        items=[{"id": "w-known"}],
        source="intake",
        poll_horizon=timedelta(hours=48),
        now=later,
    )
    before = datetime.now(UTC).replace(tzinfo=None)
    reply = api.request("POST", "/webhooks/main", {"uuid": "w-known"}, token=HOOK)
    assert reply.body == {"accepted": 1}
    due_at = api.generations()["w-known"]["next_poll_at"].replace(tzinfo=None)
    assert due_at < later.replace(tzinfo=None) - timedelta(minutes=30)
    assert due_at >= before - timedelta(seconds=5)
    assert api.due == ["main", "main"]
    assert api.server.counters["webhook.accepted"] == 2


@pytest.mark.usefixtures("token_webhooks")
def test_webhook_refusals_4xx(api: Api) -> None:
    unreadable = api.request("POST", f"/webhooks/main?token={HOOK}", {"no": "uuid"})
    assert unreadable.status == 400
    # Only the headers are sent: the answer must not wait for (or read) the body.
    head = f"POST /webhooks/main?token={HOOK} HTTP/1.1\r\nContent-Length: {1024**2 + 1}\r\n\r\n"
    assert raw_exchange(api.address, head.encode()) == (413, b"")
    counters = api.server.counters
    assert counters["webhook.refused.bad_body"] == 1
    assert counters["webhook.refused.too_large"] == 1
    assert api.generations() == {} and api.due == []


@pytest.mark.usefixtures("token_webhooks")
def test_webhooks_take_their_own_secret_per_account_not_the_server_token(
    make_api: Callable[..., Api], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue item 12: the secret in a callback URL (handed to a provider, kept in its
    logs) opens that account's webhook and nothing else; the server token, which opens
    the intake and the page, no longer opens webhooks."""
    other = "hook-secret-other-91ab"
    monkeypatch.setenv("GV_HOOK_OTHER", other)  # read like API keys: env or file
    main_file = tmp_path / "hook-main-own"
    main_file.write_text(HOOK + "\n")
    account = {"provider": "geminigen", "api_key_env": "GG_KEY", "base_url": NOWHERE}
    api = make_api(
        accounts=[
            {"name": "main", **account, "webhook_secret_file": str(main_file)},
            {"name": "other", **account, "webhook_secret_env": "GV_HOOK_OTHER"},
            {"name": "bare", **account},
        ]
    )

    def hook(account: str, secret: str, *, bearer: bool = False) -> int:
        body = {"uuid": f"{account}-{secret[:4]}"}
        if bearer:
            return api.request("POST", f"/webhooks/{account}", body, token=secret).status
        return api.request("POST", f"/webhooks/{account}?token={secret}", body).status

    assert hook("main", TOKEN) == 401, "the server token does not open webhooks"
    assert hook("main", TOKEN, bearer=True) == 401
    assert hook("main", other) == 401, "nor does another account's secret"
    assert hook("other", HOOK) == 401
    assert api.server.counters["webhook.refused.bad_token"] == 4
    assert api.generations() == {}

    assert hook("main", HOOK) == 200
    assert hook("other", other, bearer=True) == 200
    assert set(api.generations()) == {"main-hook", "other-hook"}

    bare = api.request("POST", f"/webhooks/bare?token={TOKEN}", {"uuid": "b"})
    assert bare.status == 403
    assert "accounts[bare].webhook_secret_env" in bare.body["error"]
    assert api.server.counters["webhook.refused.disabled"] == 1

    # ... and a webhook secret opens neither the intake nor the page.
    assert api.intake({"account": "main", "ids": ["x"]}, token=HOOK).status == 401
    for path, headers in (("/", {"Authorization": f"Bearer {HOOK}"}), (f"/?token={HOOK}", {})):
        conn = http.client.HTTPConnection(*api.address, timeout=10)
        conn.request("GET", path, headers=headers)
        assert conn.getresponse().status == 401
        conn.close()


def test_a_named_but_missing_webhook_secret_stops_the_server(tmp_path: Path) -> None:
    settings, _env = build_settings(
        tmp_path,
        accounts=[
            {
                "name": "main",
                "provider": "geminigen",
                "api_key_env": "GG_KEY",
                "base_url": NOWHERE,
                "webhook_secret_env": "GV_HOOK_NOT_SET_X",
            }
        ],
    )
    rt = Runtime.build(settings, {"main": _secret("gg-key-1234")})
    try:
        with pytest.raises(ConfigError) as err:
            ApiServer(rt, settings.server)
        assert err.value.key == "accounts[main].webhook_secret_env"
        assert "GV_HOOK_NOT_SET_X" in str(err.value)
    finally:
        rt.close()


def test_refusals_log_account_and_reason_but_never_the_body_or_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genvault.server as server_module

    events: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def warning(self, event: str, **kw: Any) -> None:
            events.append((event, kw))

        def __getattr__(self, _name: str) -> Callable[..., None]:
            return lambda *_a, **_k: None

    monkeypatch.setattr(server_module, "log", Recorder())
    api.request("POST", "/webhooks/main?token=leaky-guess", {"uuid": "secret-body"})
    api.intake({"account": "main", "ids": ["secret-body"]}, token="leaky-guess")
    assert [e for e, _ in events] == ["webhook.refused", "intake.refused"]
    for _, kw in events:
        assert set(kw) == {"account", "reason", "status"}
        assert "secret-body" not in repr(kw) and "leaky" not in repr(kw)


def test_akool_signed_webhooks(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    akool = pytest.importorskip("genvault.providers.akool")
    from genvault.providers import registry

    # Independent of whether the registry line for Akool has landed yet.
    monkeypatch.setitem(registry.PROVIDERS, "akool", "genvault.providers.akool:Akool")
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    api_key, client_id = "akool-secret-key-0123456789abcde", "client-id-16byte"
    hook_file = tmp_path / "hook-ak2"
    hook_file.write_text("hook-secret-ak2-33\n")
    account = {
        "provider": "akool",
        "api_key_env": "AK_KEY",
        "base_url": "http://127.0.0.1:9",
        "client_id": client_id,
    }
    api = make_api(
        accounts=[
            {"name": "ak", **account},
            {"name": "ak2", **account, "webhook_secret_file": str(hook_file)},
        ],
        environ={"AK_KEY": api_key},
    )

    def callback(
        payload: dict[str, Any], signature: str | None = None, nonce: str = "n0nce"
    ) -> dict[str, Any]:
        padder = padding.PKCS7(128).padder()
        plain = padder.update(json.dumps(payload).encode()) + padder.finalize()
        enc = Cipher(algorithms.AES(api_key.encode()), modes.CBC(client_id.encode())).encryptor()
        data = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
        stamp = str(int(time.time() * 1000))
        sig = signature or akool.callback_signature(client_id, stamp, nonce, data)
        return {"signature": sig, "dataEncrypt": data, "timestamp": stamp, "nonce": nonce}

    task_id = "66f0c0ffee0123456789abcd"
    task: dict[str, Any] = {"_id": task_id, "type": "image", "status": 3}
    forged = api.request("POST", "/webhooks/ak", callback(task, signature="0" * 40))
    assert forged.status == 401
    assert api.server.counters["webhook.refused.bad_signature"] == 1
    assert api.generations() == {}

    signed = callback(task)
    good = api.request("POST", "/webhooks/ak", signed)
    assert (good.status, good.body) == (200, {"accepted": 1})
    assert api.generations()[task_id]["source"] == "webhook"
    assert api.due == ["ak"]

    # Issue item 14: the signature is a hash of values a sender can know, so anyone
    # can re-send a captured callback; inside the age window it is refused.
    replay = api.request("POST", "/webhooks/ak", signed)
    assert replay.status == 401
    resigned = {**signed, "nonce": "other", "timestamp": str(int(signed["timestamp"]) + 1)}
    resigned["signature"] = akool.callback_signature(
        client_id, resigned["timestamp"], "other", signed["dataEncrypt"]
    )
    assert api.request("POST", "/webhooks/ak", resigned).status == 401
    assert api.server.counters["webhook.refused.replayed"] == 2
    assert api.due == ["ak"]

    # With a webhook secret, the callback URL must carry it as well (a real secret).
    second = callback({**task, "status": 4}, nonce="n2")
    assert api.request("POST", "/webhooks/ak2", second).status == 401
    assert api.server.counters["webhook.refused.bad_token"] == 1
    ok = api.request("POST", "/webhooks/ak2?token=hook-secret-ak2-33", second)
    assert ok.status == 200


# --------------------------------------------------------------------------- probes


def test_healthz_follows_is_healthy(make_api: Callable[..., Api]) -> None:
    healthy = [True]
    api = make_api(is_healthy=lambda: healthy[0])
    reply = api.request("GET", "/healthz")
    assert (reply.status, reply.body) == (200, {"status": "ok"})
    assert reply.headers["content-type"] == "application/json"
    head = api.request("HEAD", "/healthz")
    assert head.status == 200 and head.body == {}
    healthy[0] = False
    assert api.request("GET", "/healthz").status == 503


class Clock:
    """A monotonic clock the test moves by hand: the readiness cache expires without a wait."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counting(monkeypatch: pytest.MonkeyPatch, obj: Any, calls: list[str], name: str) -> None:
    """Wrap ``obj.check`` (the real one still runs) to record each call as ``name``."""
    real = obj.check

    def check() -> None:
        calls.append(name)
        real()

    monkeypatch.setattr(obj, "check", check)


def test_readyz_checks_database_and_storage(make_api: Callable[..., Api], tmp_path: Path) -> None:
    clock = Clock()
    api = make_api(clock=clock)
    reply = api.request("GET", "/readyz")
    assert reply.status == 200
    assert reply.body == {"status": "ready", "database": "ok", "storage": "ok"}

    original = api.rt.store
    api.rt.store = Store(f"sqlite:///{tmp_path / 'removed' / 'gv.db'}")  # no such folder
    try:
        clock.now += api.rt.settings.server.ready_cache_seconds + 0.1
        reply = api.request("GET", "/readyz")
        assert reply.status == 503
        assert reply.body["failed"] == ["database"]
        assert reply.body["storage"] == "ok"
    finally:
        api.rt.store.dispose()
        api.rt.store = original


def test_readyz_is_cached_for_a_few_seconds(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue item 13: ``/readyz`` needs no token, and each check writes and fsyncs a
    probe file and queries the database: a flood of probes must not become a flood of
    fsyncs. One check serves every probe for ``server.ready_cache_seconds`` (5)."""
    clock = Clock()
    api = make_api(clock=clock)
    calls: list[str] = []
    _counting(monkeypatch, api.rt.storage, calls, "storage")
    _counting(monkeypatch, api.rt.store, calls, "database")
    window = api.rt.settings.server.ready_cache_seconds
    assert window == 5

    threads = [threading.Thread(target=lambda: api.request("GET", "/readyz")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(10):
        assert api.request("GET", "/readyz").status == 200
    assert sorted(calls) == ["database", "storage"], "one check for 18 probes"

    clock.now += window - 0.1
    api.request("GET", "/readyz")
    assert len(calls) == 2
    clock.now += 0.2  # past the window: checked again
    assert api.request("GET", "/readyz").body["status"] == "ready"
    assert sorted(calls) == ["database", "database", "storage", "storage"]


def test_metrics_can_require_a_token_of_its_own(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    """Issue item 13: each scrape runs several queries; ``server.metrics_token_env`` or
    ``_file`` puts ``/metrics`` behind a bearer token that opens nothing else."""
    metrics_file = tmp_path / "metrics-token"
    metrics_file.write_text("metrics-token-7c2e90\n")
    api = make_api(server=f'metrics_token_file = "{metrics_file}"')

    def scrape(token: str | None) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection(*api.address, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    for token in (None, TOKEN, HOOK, "metrics-token-7c2e9"):
        status, _, headers = scrape(token)
        assert status == 401, token
        assert headers["www-authenticate"].startswith("Bearer")
    status, body, headers = scrape("metrics-token-7c2e90")
    assert status == 200 and b"genvault_" in body
    assert headers["content-type"].startswith("text/plain")
    assert api.server.counters["metrics.refused.bad_token"] == 4
    assert api.intake({"account": "main", "ids": ["m"]}, token="metrics-token-7c2e90").status == 401

    open_api = make_api()  # without one, /metrics stays open like the probes
    conn = http.client.HTTPConnection(*open_api.address, timeout=10)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200
    conn.close()


# --------------------------------------------------------------------------- settings


def test_a_named_but_missing_token_stops_the_server(tmp_path: Path) -> None:
    settings, _env = build_settings(tmp_path, token=None, server='token_env = "GV_NOT_SET_X"')
    rt = Runtime.build(settings, {"main": _secret("gg-key-1234")})
    try:
        with pytest.raises(ConfigError) as err:
            ApiServer(rt, settings.server)
        assert err.value.key == "server.token_env" and "GV_NOT_SET_X" in str(err.value)
    finally:
        rt.close()


@pytest.mark.parametrize("listen", ["8787", "::1:8787", "127.0.0.1:", "127.0.0.1:70000"])
def test_listen_must_be_host_port(tmp_path: Path, listen: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert err.value.key == "server.listen"
    assert load_settings(None, environ={}).server.host_port == ("127.0.0.1", 8787)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


# --------------------------------------------------------------------------- the daemon


def test_daemon_serves_intake_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    from genvault.simulator import geminigen

    sim = geminigen.create(api_key="k-srv-123456", seed=5, count=3, processing_seconds=0.1)
    sim.start()
    proc: subprocess.Popen[str] | None = None
    try:
        cfg = write_config(
            tmp_path / "c.toml",
            db_url=f"sqlite:///{tmp_path / 'gv.db'}",
            storage_url=f"file://{tmp_path / 'a'}",
            accounts=[sim_account(sim, "GG")],
            extra="[schedule]\nsync_seconds = 30\npoll_seconds = 30\narchive_seconds = 1\n"
            "jitter_seconds = 0\nshutdown_grace_seconds = 5\n"
            '[server]\nlisten = "127.0.0.1:0"\ntoken_env = "GV_SERVER_TOKEN"\n',
        )
        env = {**os.environ, "GG": "k-srv-123456", "GV_SERVER_TOKEN": TOKEN}
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            [*GENVAULT, "--config", str(cfg), "--log-format", "json", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        listening = threading.Event()
        url: list[str] = []

        def drain() -> None:  # keep the pipe empty so the daemon never blocks on logging
            assert proc is not None and proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if '"server.listening"' in line and not url:
                    url.append(json.loads(line)["url"])
                    listening.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        assert listening.wait(60), "".join(lines)[-3000:]
        parts = urlsplit(url[0])
        assert parts.hostname == "127.0.0.1" and parts.port

        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        body = json.dumps({"account": "main", "ids": ["ext-1", "ext-2"]})
        conn.request("POST", "/v1/tasks", body, {"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert json.loads(resp.read()) == {"account": "main", "registered": 2, "known": 0}
        deadline = time.monotonic() + 20
        while True:  # the scheduler starts right after the server
            conn.request("GET", "/healthz")
            health = conn.getresponse()
            health.read()
            if health.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert health.status == 200
        conn.close()

        store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
        try:
            gens = {g["external_id"]: g for g in store.generations()}
        finally:
            store.dispose()
        assert {"ext-1", "ext-2"} <= set(gens)
        assert gens["ext-1"]["source"] == "intake"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(lines)[-3000:]
        reader.join(timeout=5)
        log_text = "".join(lines)
        assert "daemon.stopped" in log_text
        assert TOKEN not in log_text
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        sim.stop()


def test_poll_now_moves_the_poll_job_and_ignores_unknown_accounts() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from genvault.scheduler import poll_now

    sched = BackgroundScheduler(timezone=UTC)
    later = datetime.now(UTC) + timedelta(hours=1)
    sched.add_job(lambda: None, "interval", hours=2, id="poll:main", next_run_time=later)
    sched.start(paused=True)
    try:
        poll_now(sched, "main")
        job = sched.get_job("poll:main")
        assert job is not None and job.next_run_time < later - timedelta(minutes=30)
        poll_now(sched, "ghost")  # no such job: the stored ids wait for the next pass
    finally:
        sched.shutdown(wait=False)
