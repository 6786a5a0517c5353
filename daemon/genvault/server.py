"""The daemon's HTTP endpoint: task intake, provider webhooks, health and readiness,
and the read-only status page (``/`` and the archived images it shows, ``/files/{id}``;
rendering and access rules in :mod:`genvault.web`).

**Why waitress.** The daemon used to serve with the standard library's
``http.server``, which Python documents as not meant for production, and the probes
showed why: a thread per connection reading the request head with only a per-read
timeout, so 64 clients sending a byte a second held every slot (``/healthz`` then
answered 503 and a liveness probe would restart the daemon), and 64 clients sending
99 headers of 64 kB grew RSS by 413 MB. Candidates were measured against those
probes (``python -m bench.server_probes``; figures in docs/reliability.md):
cheroot reads heads on its worker threads too and starved the same way; hypercorn
has a head deadline but no connection cap, and grew RSS past the 50 MB budget;
uvicorn and waitress both held (``/healthz`` under 50 ms, RSS +5 MB), neither has
a head deadline. waitress fits this daemon's threads: one asyncore loop thread reads
every request, so a slow client costs a socket and a buffer, never a thread, and
only whole requests reach a small pool of worker threads that run the synchronous
handlers below (database reads, page rendering, file streams) beside APScheduler's
threads, with no event loop to bridge; it caps connections and answers an oversized
head 431. Its limits are set from ``[server]``:

* **head size**: ``server.max_header_bytes`` (request line and headers): 431 once
  that much has arrived, never read further;
* **connection cap**: ``server.max_connections`` open connections; beyond, new
  ones wait in the listen backlog (nothing is read from them) until one closes;
* **deadline** (the one thing waitress lacks, added by :class:`_Channel` and
  :meth:`_Server.maintenance`): a request must arrive whole, line, headers and body,
  within ``server.request_timeout_seconds`` of its first byte, or it is answered
  408 and closed; an idle keep-alive connection and one whose client stopped
  reading its response are closed after the same time;
* **body size**: a body over ``server.max_body_bytes`` (announced, or chunked as
  it streams) gets 413 before it is read; bodies are read whole by the loop thread
  before a handler runs (above 64 KiB into a temp file, not memory).

What the handlers add, because it matters for an endpoint on a network:

* **never open by accident**: intake without a configured token is *disabled*
  (403), not unauthenticated; token webhooks without their account's
  ``webhook_secret_*`` likewise; the status page without a token is served on
  loopback only, to loopback ``Host`` names (:mod:`genvault.web.auth`); secrets
  are read and compared in constant time by :mod:`genvault.httpd.credentials`;
* **one secret, one door**: the server token opens the intake and the page; each
  account's webhook secret opens that account's webhook only (a callback URL is
  handed to a third party); an optional metrics token opens ``/metrics`` only;
* **a webhook is a hint**: its ids are stored as due and the account's poll job
  is woken (``on_due``); the result itself is always re-read from the provider;
* **nothing secret in logs**: refusals are logged with account and reason only,
  never the body, headers or query (which may carry ``?token=``); waitress writes
  no access log.

Refusals and acceptances are counted in :attr:`ApiServer.counters` (metrics
will export them).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from genvault.config import (
    ServerSettings,
    resolve_metrics_token,
    resolve_server_token,
    resolve_webhook_secrets,
)
from genvault.errors import ConfigError, WebhookRejectedError
from genvault.httpd.credentials import bearer, query_token, same_secret
from genvault.intake import IntakeError, parse_task_objects
from genvault.logging import get_logger, register_secret
from genvault.runtime import Runtime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = get_logger("genvault.server")

MAX_IDS_PER_REQUEST = 10_000
"""One intake or webhook request registers at most this many ids (one transaction)."""
INBUF_MEMORY = 64 * 1024
"""Request bodies above this are spooled by waitress to a temp file, not held in memory:
``max_connections`` bodies in flight must not become ``max_connections`` MB of RSS."""
STOP_WAIT_SECONDS = 2
"""How long :meth:`ApiServer.stop` waits for handlers still running (they are not awaited
longer: the scheduler's shutdown grace is for downloads, not for HTTP answers)."""
INTAKE_DISABLED = "intake disabled: set server.token_env or server.token_file"
PAGE_CLOSED = (
    "Without a server token the status page is only served on a loopback address. "
    "Set server.token_env or server.token_file to open it on this address."
)
PAGE_FOREIGN_HOST = (
    "Without a server token the status page only answers requests whose Host header "
    "names this machine (localhost, 127.0.0.1 or [::1]): another name may be a web "
    "page pointing its domain here (DNS rebinding). Open it as http://localhost:PORT/, "
    "or set server.token_env or server.token_file."
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Sent with the page and its refusals: no script, no foreign content, no framing."""


class _Refused(Exception):
    """Ends a request with a JSON error; ``reason`` is the counter and log label."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    """Name of the :class:`ApiServer` method that serves it (called with the path groups)."""


ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/"), "status_page"),
    _Route("GET", re.compile(r"/files/([0-9]{1,18})"), "archived_file"),
    _Route("GET", re.compile(r"/healthz"), "healthz"),
    _Route("GET", re.compile(r"/readyz"), "readyz"),
    _Route("GET", re.compile(r"/metrics"), "metrics"),
    _Route("POST", re.compile(r"/v1/tasks"), "intake"),
    _Route("POST", re.compile(r"/webhooks/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})"), "webhook"),
)


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First entry per id: one request registers each id once (PostgreSQL refuses an
    ``ON CONFLICT DO UPDATE`` that touches the same row twice in one statement)."""
    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        seen.setdefault(it["id"], it)
    return list(seen.values())


def _json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def _raw_response(status: HTTPStatus, message: str) -> bytes:
    """A whole ``Connection: close`` JSON response, for the loop thread to write itself."""
    body = _json_body({"error": message})
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


# --------------------------------------------------------------------------- waitress


class _ErrorTask(ErrorTask):
    """waitress's own refusals (413 body too large, 431 head too large, 400 unparsable)
    as JSON like every other answer of this server, counted and logged like them."""

    def execute(self) -> None:
        error: Any = cast(Any, self.request).error
        status = HTTPStatus(int(error.code))
        server = cast(_Server, self.channel.server)
        message = server.api.server_refusal(str(getattr(self.request, "path", "") or ""), status)
        body = _json_body({"error": message})
        self.status = f"{status.value} {status.phrase}"
        cast(list[tuple[str, str]], self.response_headers).extend(
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """waitress's connection, plus the one clock it lacks: when the request now
    arriving began (None between requests). waitress only times *inactivity*, so a
    client sending a byte a second would never be cut; :meth:`_Server.maintenance`
    compares this clock with the deadline."""

    request_began: float | None = None
    timed_out_at: float | None = None
    error_task_class = _ErrorTask

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.request_began is None:
            self.request_began = time.monotonic()
        handled = super().received(data)
        if self.request is None:  # every request in ``data`` arrived whole
            self.request_began = None
        return handled


class _Server(TcpWSGIServer):
    """waitress's TCP server with :class:`_Channel` and the request deadline."""

    channel_class = _Channel

    def __init__(self, api: ApiServer, sock: socket.socket, adj: Adjustments) -> None:
        self.api = api
        self.socket_map: dict[int, Any] = {}
        family, addr = sock.family, sock.getsockname()
        super().__init__(
            api.wsgi,
            map=self.socket_map,
            _sock=sock,
            adj=adj,
            bind_socket=False,
            sockinfo=(family, socket.SOCK_STREAM, 0, addr),
        )

    def maintenance(self, now: float) -> None:
        """Every second on the loop thread: waitress closes idle keep-alive connections
        (``channel_timeout``); this adds the deadline of a request still arriving and
        of a response the client stopped reading."""
        super().maintenance(now)  # type: ignore[arg-type]  # the stubs say int; it is time.time()
        limit = self.api.request_timeout
        mono = time.monotonic()
        channels = cast(dict[int, _Channel], self.active_channels)
        for channel in list(channels.values()):
            if channel.timed_out_at is not None:
                if mono - channel.timed_out_at > 1.0:  # the 408 could not be flushed
                    channel.handle_close()
                continue
            began = channel.request_began
            if began is not None and mono - began > limit:
                channel.request_began = None
                path = str(getattr(channel.request, "path", "") or "")
                message = self.api.server_refusal(path, HTTPStatus.REQUEST_TIMEOUT)
                if channel.requests:  # a response is being written: no room for a 408
                    channel.handle_close()
                    continue
                channel.timed_out_at = mono
                try:
                    channel.write_soon(_raw_response(HTTPStatus.REQUEST_TIMEOUT, message))
                except Exception:  # the client is gone already
                    channel.handle_close()
                    continue
                channel.close_when_flushed = True
            elif channel.total_outbufs_len and now - channel.last_activity > limit:
                # The client stopped reading its answer: free the buffers, and the worker
                # thread if one waits for room in them.
                self.api._count("http.refused.stalled_reader")
                channel.handle_close()


class _Request:
    """One request as the handlers see it (built from the WSGI environ), and the one
    response they give (``send_body``, ``send_stream``, ``_send_json``)."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.command = str(environ.get("REQUEST_METHOD", "GET"))
        query = str(environ.get("QUERY_STRING") or "")
        # The path as sent (percent-escapes intact), as routes and redirects expect it.
        self.path = str(environ.get("REQUEST_URI") or "") or (
            str(environ.get("PATH_INFO") or "/") + (f"?{query}" if query else "")
        )
        self.header_map: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                self.header_map[key[5:].replace("_", "-").lower()] = str(value)
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                self.header_map[key.replace("_", "-").lower()] = str(value)
        self.status = HTTPStatus.INTERNAL_SERVER_ERROR
        self.headers: list[tuple[str, str]] = []
        self.body: Iterable[bytes] = ()

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def check_length(self, limit: int) -> int:
        """Validate the body size the request announced (411/400/413).

        waitress has already refused bodies over the limit and unparsable lengths, and
        turned a chunked body into a counted one; this is what a handler relies on.
        """
        raw = self.header_map.get("content-length")
        if raw is None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required", "no_length")
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()):
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length", "bad_length")
        length = int(raw)
        if length > limit:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body larger than {limit} bytes",
                "too_large",
            )
        return length

    def read_body(self, length: int) -> bytes:
        """The body, which waitress received whole (within the deadline) before calling us."""
        data = cast(Any, self.environ["wsgi.input"]).read(length)
        if len(data) != length:
            raise _Refused(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length", "short")
        return bytes(data)

    def _send_json(
        self,
        status: HTTPStatus,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_body(status, "application/json", _json_body(payload), headers)

    def send_body(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A whole response; ``Cache-Control: no-store`` unless ``headers`` say otherwise."""
        self._head(status, content_type, len(body), headers)
        self.body = [body] if self.command != "HEAD" else []

    def send_stream(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        chunks: Iterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A response whose ``length`` bytes come from ``chunks``, written as they come.

        For files: nothing is held whole. If ``chunks`` fails or runs short after the
        headers went out, the body simply ends: waitress sees fewer bytes than the
        ``Content-Length`` and closes the connection, so the client sees a truncated
        body instead of waiting for bytes that never come.
        """
        self._head(status, content_type, length, headers)
        self.body = chunks if self.command != "HEAD" else []

    def _head(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        extra = dict(headers or {})
        self.status = status
        self.headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", extra.pop("Cache-Control", "no-store")),
            *extra.items(),
        ]


class ApiServer:
    """The HTTP server of ``genvault run``; :meth:`start` it in the background, :meth:`stop` it.

    ``on_due(account)`` is called after a webhook (or intake) stored ids that are due
    now; the scheduler wires it to "run this account's poll job now". ``is_healthy``
    answers ``/healthz`` (the scheduler is running).
    """

    def __init__(
        self,
        rt: Runtime,
        settings: ServerSettings,
        *,
        on_due: Callable[[str], None] | None = None,
        is_healthy: Callable[[], bool] | None = None,
        request_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rt = rt
        self._clock = clock  # the readiness cache's; tests move it instead of sleeping
        self.settings = settings
        self.on_due = on_due
        self.is_healthy = is_healthy or (lambda: True)
        self.request_timeout = (
            settings.request_timeout_seconds if request_timeout is None else request_timeout
        )
        # Resolved here, from the full settings, so the server cannot be built open by
        # mistake when a token is named but unreadable (ConfigError).
        token = resolve_server_token(rt.settings.model_copy(update={"server": settings}))
        self._token: bytes | None = None
        if token is not None:
            register_secret(token.get_secret_value())
            self._token = token.get_secret_value().encode("utf-8")
        full = rt.settings.model_copy(update={"server": settings})
        metrics_token = resolve_metrics_token(full)
        self._metrics_token: bytes | None = None
        if metrics_token is not None:
            register_secret(metrics_token.get_secret_value())
            self._metrics_token = metrics_token.get_secret_value().encode("utf-8")
        self._ready_lock = threading.Lock()
        self._ready: tuple[float, HTTPStatus, dict[str, Any]] | None = None
        # One secret per account for its callbacks (``webhook_secret_env``/``_file``).
        self._webhook_secrets: dict[str, bytes] = {}
        for account, secret in resolve_webhook_secrets(rt.settings).items():
            register_secret(secret.get_secret_value())
            self._webhook_secrets[account] = secret.get_secret_value().encode("utf-8")
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind ``settings.listen`` (port 0 picks a free one), serve in a thread, return the URL."""
        host, port = self.settings.host_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                "server.listen", f"cannot listen on {self.settings.listen}: {exc.strerror or exc}"
            ) from None
        bound_port = sock.getsockname()[1]
        deadline = max(1, int(self.request_timeout + 0.999))  # waitress counts whole seconds
        adj = Adjustments(
            host=host,
            port=bound_port,
            ident="genvault",  # the Server header: no version for a scanner
            threads=self.settings.threads,
            connection_limit=self.settings.max_connections + 2,  # + listener and trigger
            max_request_header_size=self.settings.max_header_bytes,
            # waitress refuses a length >= its limit; ours refuses a length > max_body_bytes
            max_request_body_size=self.settings.max_body_bytes + 1,
            inbuf_overflow=INBUF_MEMORY,
            channel_timeout=deadline,
            cleanup_interval=1,
            asyncore_loop_timeout=1,
            asyncore_use_poll=True,  # select() fails on descriptors above 1023
            log_socket_errors=False,  # a client hanging up is routine, not a traceback
            expose_tracebacks=False,
        )
        # "Task queue depth is N": every thread busy for a moment (a page of thumbnails).
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._stopping.clear()
        server = _Server(self, sock, adj)
        self._server = server
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._serve, args=(server,), name="genvault-http", daemon=True
        )
        self._thread.start()
        return self.url

    def _serve(self, server: _Server) -> None:
        """The loop thread: waitress's asyncore loop until :meth:`stop`, then close all."""
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1.0, use_poll=True, map=server.socket_map, count=1)
        except Exception:
            log.exception("http.loop_crashed")
            raise
        finally:
            wasyncore.close_all(server.socket_map)
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_WAIT_SECONDS)

    def stop(self) -> None:
        """Stop accepting, close every connection (idempotent). Handlers still running
        get :data:`STOP_WAIT_SECONDS`; they are not awaited longer."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            # The loop thread sets the flag itself (a thunk run by waitress's trigger):
            # setting it here could let the loop exit and close the trigger first.
            server.trigger.pull_trigger(self._stopping.set)  # type: ignore[attr-defined]
        except OSError:  # the loop thread is gone already
            self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_SECONDS + 5)
            self._thread = None

    # ------------------------------------------------------------------ WSGI

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application waitress runs on its worker threads: route, answer."""
        req = _Request(environ)
        self._dispatch(req)
        log.debug(
            "http.request",
            method=req.command,
            path=urlsplit(req.path).path,
            status=int(req.status),
        )
        start_response(f"{req.status.value} {req.status.phrase}", req.headers)
        return req.body

    def _route(self, path: str) -> tuple[_Route, tuple[str, ...]] | None:
        for route in ROUTES:
            m = route.pattern.fullmatch(path)
            if m is not None:
                return route, m.groups()
        return None

    def _dispatch(self, req: _Request) -> None:
        path = urlsplit(req.path).path
        method = "GET" if req.command == "HEAD" else req.command  # HEAD: GET without body
        allowed = []
        for route in ROUTES:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            try:
                getattr(self, route.handler)(req, *m.groups())
            except _Refused as exc:
                req._send_json(exc.status, {"error": exc.message}, exc.headers)
            except Exception as exc:
                # Type only: exception text from a parser could quote the body.
                log.error("http.error", path=path, error=type(exc).__name__)
                req._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            return
        if allowed:
            req._send_json(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method {req.command} not allowed"},
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        else:
            req._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def server_refusal(self, raw_path: str, status: HTTPStatus) -> str:
        """Count and log a refusal waitress or the deadline made before any handler ran
        (413, 431, 400, 408); the message for its JSON body. Intake and webhook
        refusals are counted under their own names, as the handlers count theirs."""
        reason, message = {
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE: (
                "too_large",
                f"body larger than {self.settings.max_body_bytes} bytes",
            ),
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
                "head_too_large",
                f"request line and headers larger than {self.settings.max_header_bytes} bytes",
            ),
            HTTPStatus.REQUEST_TIMEOUT: ("timeout", "request not received in time"),
        }.get(status, ("bad_request", status.phrase.lower()))
        path = urlsplit(raw_path).path
        found = self._route(path) if path else None
        if found is not None and found[0].handler in ("intake", "webhook"):
            account = found[1][0] if found[1] else None
            self._refuse(found[0].handler, account, status, message, reason)
        else:
            self._count(f"http.refused.{reason}")
            log.info("http.refused", reason=reason, status=int(status))
        return message

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: ``intake.accepted``, ``webhook.refused.bad_token``, ``intake.ids_new``..."""
        with self._lock:
            return dict(self._counters)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def _refuse(
        self,
        kind: str,
        account: str | None,
        status: HTTPStatus,
        message: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> _Refused:
        """Count and log a refusal (account and reason only), return it to be raised."""
        self._count(f"{kind}.refused.{reason}")
        log.warning(f"{kind}.refused", account=account, reason=reason, status=int(status))
        return _Refused(status, message, reason, headers=headers)

    def _wake(self, account: str) -> None:
        if self.on_due is None:
            return
        try:
            self.on_due(account)
        except Exception as exc:  # the ids are stored; the next regular poll finds them
            log.warning("server.on_due_failed", account=account, error=type(exc).__name__)

    def _register(self, account: str, items: list[dict[str, Any]], source: str) -> int:
        acc = self.rt.accounts[account]
        try:
            return self.rt.store.register_tasks(
                provider=acc.provider.name,
                account=account,
                items=items,
                source=source,
                poll_horizon=self.rt.poll_horizon,
            )
        except Exception as exc:
            log.error("server.store_failed", account=account, error=type(exc).__name__)
            raise _Refused(
                HTTPStatus.SERVICE_UNAVAILABLE, "database unavailable", "store_failed"
            ) from None

    # ------------------------------------------------------------------ endpoints

    def healthz(self, req: _Request) -> None:
        try:
            ok = bool(self.is_healthy())
        except Exception:
            ok = False
        if ok:
            req._send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            req._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy"})

    def readyz(self, req: _Request) -> None:
        """Database and storage reachable. Details go to the log, not to the caller."""
        status, payload = self._readiness()
        req._send_json(status, payload)

    def _readiness(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """The last check's answer while it is younger than ``server.ready_cache_seconds``.

        ``/readyz`` is unauthenticated and each check writes and fsyncs a probe file and
        queries the database, so probes must not be able to multiply that work: one
        check at a time (the lock), and probes that arrive meanwhile take its answer.
        """
        with self._ready_lock:
            cached = self._ready
            if cached is not None and self._clock() - cached[0] < self.settings.ready_cache_seconds:
                return cached[1], cached[2]
            parts: dict[str, str] = {}
            for name, check in (
                ("database", self.rt.store.check),
                ("storage", self.rt.storage.check),
            ):
                try:
                    check()
                    parts[name] = "ok"
                except Exception as exc:
                    parts[name] = "failed"
                    log.warning("server.not_ready", part=name, error=type(exc).__name__)
            failed = sorted(k for k, v in parts.items() if v != "ok")
            if failed:
                answer = (
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"status": "unavailable", "failed": failed, **parts},
                )
            else:
                answer = (HTTPStatus.OK, {"status": "ready", **parts})
            self._ready = (self._clock(), *answer)
            return answer

    # ------------------------------------------------------------------ status page

    def _page_access(self, req: _Request, kind: str) -> bool:
        """Apply :func:`genvault.web.auth.check_access`; True when the request may go on.

        Otherwise the answer (303 with the cookie, 401, 403) has been sent: an HTML
        page for ``/``, a line of text for files. Refusals are counted and logged
        with the reason only (the query may hold a token).
        """
        from genvault.web.auth import Verdict, check_access
        from genvault.web.page import render_denied

        path = urlsplit(req.path).path
        access = check_access(
            token=self._token,
            listen_host=self.settings.host_port[0],
            path=path,
            query=req.query,
            headers=req.header_map,
        )
        if access.verdict is Verdict.ALLOW:
            return True
        if access.verdict is Verdict.REDIRECT:
            self._count(f"{kind}.token_redirect")
            req.send_body(
                HTTPStatus.SEE_OTHER,
                "text/plain; charset=utf-8",
                b"",
                {"Location": access.location, "Set-Cookie": access.set_cookie, **PAGE_HEADERS},
            )
            return False
        self._count(f"{kind}.refused.{access.reason}")
        log.warning(f"{kind}.refused", reason=access.reason)
        if access.verdict is Verdict.CLOSED:
            status = HTTPStatus.FORBIDDEN
            title = "Status page closed"
            message = PAGE_FOREIGN_HOST if access.reason == "foreign_host" else PAGE_CLOSED
            headers = dict(PAGE_HEADERS)
        else:
            status = HTTPStatus.UNAUTHORIZED
            title = "Token required"
            message = (
                "That token is not right."
                if access.reason in ("bad_token", "bad_cookie")
                else "This page needs the server token (server.token_env or token_file)."
            )
            headers = {**PAGE_HEADERS, "WWW-Authenticate": 'Bearer realm="genvault"'}
        if kind == "page":
            body = render_denied(title, message, ask_token=status == HTTPStatus.UNAUTHORIZED)
            req.send_body(status, "text/html; charset=utf-8", body, headers)
        else:
            req.send_body(status, "text/plain; charset=utf-8", f"{title}\n".encode(), headers)
        return False

    def status_page(self, req: _Request) -> None:
        """``GET /``: the read-only status page (see :mod:`genvault.web`).

        The figures are :func:`genvault.status.read_status`, the very document
        ``genvault status`` renders; ``?q=`` (and ``&provider=``) runs the search box.
        """
        from genvault.status import at_risk_window, read_status
        from genvault.web.page import (
            MAX_HITS,
            MAX_QUERY,
            MAX_THUMBNAILS,
            PageData,
            SearchState,
            render_denied,
            render_page,
        )

        if not self._page_access(req, "page"):
            return
        query = req.query
        text = " ".join((query.get("q") or [""])[0].split())[:MAX_QUERY]
        providers = tuple(sorted({a.provider for a in self.rt.settings.accounts}))
        wanted = (query.get("provider") or [""])[0]
        provider = wanted if wanted in providers else None
        window = at_risk_window(self.rt.settings)
        try:
            doc = read_status(self.rt.store, self.rt.settings, window)
            archives = self.rt.store.recent_archives(MAX_THUMBNAILS)
        except Exception as exc:
            log.error("page.store_failed", error=type(exc).__name__)
            body = render_denied("Database unavailable", "Try again in a moment.", ask_token=False)
            req.send_body(
                HTTPStatus.SERVICE_UNAVAILABLE, "text/html; charset=utf-8", body, PAGE_HEADERS
            )
            return
        search = SearchState(provider=provider, providers=providers)
        if text:
            try:
                hits = self.rt.store.search(text, provider=provider, limit=MAX_HITS)
                search = SearchState(text, provider, providers, hits)
            except Exception as exc:
                log.warning("page.search_failed", error=type(exc).__name__)
                search = SearchState(text, provider, providers, [], "The search failed.")
        data = PageData(
            doc=doc,
            archives=archives,
            at_risk_hours=window.total_seconds() / 3600,
            search=search,
            locate=self.rt.storage.location,
        )
        self._count("page.served")
        req.send_body(HTTPStatus.OK, "text/html; charset=utf-8", render_page(data), PAGE_HEADERS)

    def archived_file(self, req: _Request, asset_id: str) -> None:
        """``GET /files/{asset_id}``: an archived image, streamed (:mod:`genvault.web.files`)."""
        from genvault.errors import StorageError
        from genvault.web.files import FILE_HEADERS, find_image

        if not self._page_access(req, "files"):
            return
        not_found = _Refused(HTTPStatus.NOT_FOUND, "no archived image with that id", "not_found")
        image = find_image(self.rt.store, int(asset_id))
        if image is None:
            raise not_found
        try:
            size = image.size
            if size is None:
                stat = self.rt.storage.stat(image.key)
                if stat is None:
                    raise not_found
                size = stat.size
            stream = self.rt.storage.open(image.key) if req.command != "HEAD" else None
        except StorageError as exc:
            log.warning("files.storage_failed", asset_id=int(asset_id), error=type(exc).__name__)
            raise _Refused(
                HTTPStatus.SERVICE_UNAVAILABLE, "archived file unavailable", "storage"
            ) from None
        self._count("files.served")
        if stream is None:
            req.send_stream(HTTPStatus.OK, image.content_type, size, (), FILE_HEADERS)
            return
        req.send_stream(
            HTTPStatus.OK, image.content_type, size, _file_body(stream, size), FILE_HEADERS
        )

    def metrics(self, req: _Request) -> None:
        """``GET /metrics``: Prometheus text format (counters of this process, gauges
        read from the database at scrape time, so every replica reports the same backlog).
        With ``server.metrics_token_*`` set, only for that bearer token: a scrape runs
        several queries, which an open endpoint lets anyone repeat."""
        from genvault.metrics import exposition

        if self._metrics_token is not None and not same_secret(
            bearer(req.header_map.get("authorization")), self._metrics_token
        ):
            raise self._refuse(
                "metrics",
                None,
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token (server.metrics_token_env / _file)",
                "bad_token",
                headers={"WWW-Authenticate": 'Bearer realm="genvault metrics"'},
            )
        body, content_type = exposition(self.rt, self.counters)
        req.send_body(HTTPStatus.OK, content_type, body)

    def intake(self, req: _Request) -> None:
        """``POST /v1/tasks``: a submitter hands over ids of generations it started."""
        if self._token is None:
            raise self._refuse("intake", None, HTTPStatus.FORBIDDEN, INTAKE_DISABLED, "disabled")
        try:
            length = req.check_length(self.settings.max_body_bytes)
        except _Refused as exc:
            raise self._refuse("intake", None, exc.status, exc.message, exc.reason) from None
        if not same_secret(bearer(req.header_map.get("authorization")), self._token):
            raise self._refuse(
                "intake",
                None,
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                "bad_token",
                headers={"WWW-Authenticate": 'Bearer realm="genvault"'},
            )
        try:
            data = json.loads(req.read_body(length))
        except _Refused as exc:
            raise self._refuse("intake", None, exc.status, exc.message, exc.reason) from None
        except ValueError:
            raise self._refuse(
                "intake", None, HTTPStatus.BAD_REQUEST, "body is not valid JSON", "bad_json"
            ) from None
        account, items = self._intake_items(data)
        unique = _dedupe(items)
        new = self._register(account, unique, "intake")
        self._count("intake.accepted")
        self._count("intake.ids_new", new)
        self._count("intake.ids_known", len(unique) - new)
        if new:
            self._wake(account)
        log.info("intake.registered", account=account, new=new, known=len(unique) - new)
        req._send_json(
            HTTPStatus.OK, {"account": account, "registered": new, "known": len(unique) - new}
        )

    def _intake_items(self, data: Any) -> tuple[str, list[dict[str, Any]]]:
        def bad(message: str, account: str | None = None) -> _Refused:
            return self._refuse("intake", account, HTTPStatus.BAD_REQUEST, message, "bad_body")

        if not isinstance(data, dict):
            raise bad('body must be a JSON object {"account": ..., "ids": [...]}')
        account = data.get("account")
        if not isinstance(account, str) or not account:
            raise bad("'account' must be a non-empty string")
        if account not in self.rt.accounts:
            raise self._refuse(
                "intake",
                account if len(account) <= 63 else account[:63],
                HTTPStatus.NOT_FOUND,
                f"no enabled account named {account!r}"[:200],
                "unknown_account",
            )
        if ("ids" in data) == ("tasks" in data):
            raise bad("send exactly one of 'ids' or 'tasks'", account)
        key = "ids" if "ids" in data else "tasks"
        entries = data[key]
        if not isinstance(entries, list):
            raise bad(f"'{key}' must be a list", account)
        if len(entries) > MAX_IDS_PER_REQUEST:
            raise self._refuse(
                "intake",
                account,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"at most {MAX_IDS_PER_REQUEST} ids per request",
                "too_many",
            )
        if key == "ids":
            for i, entry in enumerate(entries):
                if not isinstance(entry, str):
                    raise bad(f"ids[{i}]: must be a string", account)
        try:
            return account, parse_task_objects(entries, where=key)
        except IntakeError as exc:
            raise bad(str(exc), account) from None

    def webhook(self, req: _Request, account: str) -> None:
        """``POST /webhooks/{account}``: a provider says a task changed; poll it now."""
        acc = self.rt.accounts.get(account)
        if acc is None:
            raise self._refuse(
                "webhook", account, HTTPStatus.NOT_FOUND, "no such account", "unknown_account"
            )
        provider = acc.provider
        if provider.webhook_auth == "none":
            raise self._refuse(
                "webhook",
                account,
                HTTPStatus.NOT_FOUND,
                f"{provider.name} sends no webhooks",
                "no_webhooks",
            )
        try:
            length = req.check_length(self.settings.max_body_bytes)
        except _Refused as exc:
            raise self._refuse("webhook", account, exc.status, exc.message, exc.reason) from None
        secret = self._webhook_secrets.get(account)
        if provider.webhook_auth == "token" and secret is None:
            raise self._refuse(
                "webhook",
                account,
                HTTPStatus.FORBIDDEN,
                f"{provider.name} webhooks need a secret: set accounts[{account}]."
                "webhook_secret_env or webhook_secret_file and add ?token=<secret> to the "
                "callback URL",
                "disabled",
            )
        if secret is not None:
            # Token webhooks: the only check there is. Signed ones (Akool): a real secret
            # beside a signature that is not one (providers/akool.py says why).
            offered = bearer(req.header_map.get("authorization")) or query_token(req.query)
            if not same_secret(offered, secret):
                raise self._refuse(
                    "webhook",
                    account,
                    HTTPStatus.UNAUTHORIZED,
                    "missing or wrong webhook secret",
                    "bad_token",
                )
        try:
            body = req.read_body(length)
        except _Refused as exc:
            raise self._refuse("webhook", account, exc.status, exc.message, exc.reason) from None
        try:
            raw_ids = provider.webhook_ids(body, req.header_map)
        except WebhookRejectedError as exc:
            if provider.webhook_auth == "signature":
                reason = str(getattr(exc, "reason", "bad_signature"))  # e.g. "replayed"
                raise self._refuse(
                    "webhook", account, HTTPStatus.UNAUTHORIZED, "callback refused", reason
                ) from None
            raise self._refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback unreadable", "bad_body"
            ) from None
        except Exception:
            # An adapter bug must not become a 500 with a trace that might quote the body.
            raise self._refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback unreadable", "bad_body"
            ) from None
        if len(raw_ids) > MAX_IDS_PER_REQUEST:
            raise self._refuse(
                "webhook",
                account,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"at most {MAX_IDS_PER_REQUEST} ids per callback",
                "too_many",
            )
        try:
            items = parse_task_objects([str(i) for i in raw_ids], where="ids")
        except IntakeError:
            raise self._refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback names no valid id", "bad_id"
            ) from None
        unique = _dedupe(items)
        if unique:
            self._register(account, unique, "webhook")
            self._wake(account)
        self._count("webhook.accepted")
        self._count("webhook.ids", len(unique))
        log.info("webhook.accepted", account=account, ids=len(unique))
        req._send_json(HTTPStatus.OK, {"accepted": len(unique)})


def _file_body(stream: Any, size: int) -> Iterator[bytes]:
    """The chunks of an archived file for waitress to send; the stream is closed at the end.

    A failure after the headers went out (the object shorter than recorded, storage
    gone) can only end the body early: waitress then closes the connection. A client
    that leaves mid-file closes this generator (waitress calls ``close``).
    """
    from genvault.web.files import iter_chunks

    with stream:
        try:
            yield from iter_chunks(stream, size)
        except Exception as exc:  # headers are out: no error answer can follow them
            log.warning("http.response_cut", error=type(exc).__name__)
