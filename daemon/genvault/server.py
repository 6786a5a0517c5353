"""The daemon's HTTP endpoint: task intake, provider webhooks, health and readiness,
and the read-only status page (``/`` and the archived images it shows, ``/files/{id}``;
rendering and access rules in :mod:`genvault.web`).

Why the standard library (``http.server``) and not a framework: the surface is
a handful of routes of small JSON and one HTML page, the daemon already runs its
own threads, and every dependency is one more thing to patch on a box that holds
API keys. What a framework would have given us is written out here on purpose,
because it is the part that matters for an endpoint on a network:

* **limits before work**: a POST needs ``Content-Length`` (411 otherwise; chunked
  bodies are refused), a body over ``server.max_body_bytes`` gets 413 before a
  byte of it is read, every socket read has a timeout (408 / dropped), and a
  response sent with the body unread closes the connection so the unread bytes
  can never be parsed as a next request;
* **never open by accident**: intake without a configured token is *disabled*
  (403), not unauthenticated; token webhooks likewise; the status page without a
  token is served on loopback only (:mod:`genvault.web.auth`); tokens are
  compared with :func:`hmac.compare_digest`;
* **a webhook is a hint**: its ids are stored as due and the account's poll job
  is woken (``on_due``); the result itself is always re-read from the provider;
* **nothing secret in logs**: refusals are logged with account and reason only,
  never the body, headers or query (which may carry ``?token=``); the stdlib's
  per-request access log, which prints the raw request line, is replaced.

Refusals and acceptances are counted in :attr:`ApiServer.counters` (metrics
will export them).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from genvault.config import ServerSettings, resolve_server_token
from genvault.errors import ConfigError, WebhookRejectedError
from genvault.intake import IntakeError, parse_task_objects
from genvault.logging import get_logger, register_secret
from genvault.runtime import Runtime

log = get_logger("genvault.server")

MAX_IDS_PER_REQUEST = 10_000
"""One intake or webhook request registers at most this many ids (one transaction)."""
DEFAULT_REQUEST_TIMEOUT = 10.0
"""Seconds a socket read or write may stall, and the whole body may take to arrive."""
MAX_CONNECTIONS = 64
"""Connections served at once (one thread each); more are answered 503 and closed."""
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 24\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b'{"error":"server busy"}\n'
)
INTAKE_DISABLED = "intake disabled: set server.token_env or server.token_file"
PAGE_CLOSED = (
    "Without a server token the status page is only served on a loopback address. "
    "Set server.token_env or server.token_file to open it on this address."
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


class _ResponseStarted(Exception):
    """A streamed response failed after its headers were sent (no error reply possible)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    """Name of the ``_Handler`` method that serves it (called with the path groups)."""


ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/"), "status_page"),
    _Route("GET", re.compile(r"/files/([0-9]{1,18})"), "archived_file"),
    _Route("GET", re.compile(r"/healthz"), "healthz"),
    _Route("GET", re.compile(r"/readyz"), "readyz"),
    _Route("GET", re.compile(r"/metrics"), "metrics"),
    _Route("POST", re.compile(r"/v1/tasks"), "intake"),
    _Route("POST", re.compile(r"/webhooks/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})"), "webhook"),
)


def _bearer(headers: Mapping[str, str]) -> bytes | None:
    """The raw token of an ``Authorization: Bearer <token>`` header, if there is one.

    http.client decodes header bytes as latin-1, so encoding back gives the bytes sent.
    """
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1")


def _query_token(query: Mapping[str, list[str]]) -> bytes | None:
    values = query.get("token")
    return values[0].encode("utf-8") if values else None


def _same_secret(offered: bytes | None, expected: bytes) -> bool:
    """Constant time: how much of a guess matched must not show in the response time."""
    return offered is not None and hmac.compare_digest(offered, expected)


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First entry per id: one request registers each id once (PostgreSQL refuses an
    ``ON CONFLICT DO UPDATE`` that touches the same row twice in one statement)."""
    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        seen.setdefault(it["id"], it)
    return list(seen.values())


class _HttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its :class:`ApiServer` and skips reverse DNS."""

    daemon_threads = True  # a stuck client never holds up shutdown
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], app: ApiServer, family: int, handler: type[_Handler]
    ) -> None:
        self.address_family = family
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # A thread per connection, but not without bound: a flood of idle connections
        # must not exhaust threads or memory of the process that archives the media.
        if not self._slots.acquire(blocking=False):
            self.app._count("http.refused.busy")
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-response is routine: no traceback on stderr."""
        exc = sys.exc_info()[1]
        log.debug("http.connection_error", error=type(exc).__name__)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall start-up for seconds; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    """One connection. Route, limits, auth; the endpoint logic lives on :class:`ApiServer`."""

    server_version = "genvault"
    protocol_version = "HTTP/1.1"  # keep-alive for submitters that send many batches
    timeout = DEFAULT_REQUEST_TIMEOUT  # replaced per server in ApiServer.start
    _body_pending = False  # the client announced a body that we have not read

    @property
    def app(self) -> ApiServer:
        return cast(_HttpServer, self.server).app

    # ------------------------------------------------------------------ plumbing

    def version_string(self) -> str:
        """No Python version in the ``Server`` header: it helps nobody but a scanner."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib access log: it prints the request line, query token included."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug(
            "http.request",
            method=self.command,
            path=urlsplit(getattr(self, "path", "") or "").path,
            status=int(code) if str(code).isdigit() else code,
        )

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, 414, 431...) as JSON like ours."""
        self.close_connection = True
        self._send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def _send_json(
        self,
        status: HTTPStatus,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self.send_body(status, "application/json", body, headers)

    def send_body(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A whole response; ``Cache-Control: no-store`` unless ``headers`` say otherwise."""
        self._send_head(status, content_type, len(body), headers)
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_stream(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        chunks: Iterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A response whose ``length`` bytes come from ``chunks``, written as they come.

        For files: nothing is held whole. If ``chunks`` fails or runs short after
        the headers went out, the connection is closed so the client sees a
        truncated body instead of waiting for bytes that never come.
        """
        self._send_head(status, content_type, length, headers)
        if self.command == "HEAD":
            return
        sent = 0
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        except Exception:
            self.close_connection = True
            raise
        if sent != length:  # the client would wait for the missing bytes: hang up
            self.close_connection = True

    def _send_head(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        """Status line and headers; ``Cache-Control: no-store`` unless ``headers`` say
        otherwise, and ``Connection: close`` when the connection will not be reused."""
        if self._body_pending:
            # The client may still be sending a body we will not read: close, or its
            # bytes would be parsed as the next request on this connection.
            self.close_connection = True
        extra = dict(headers or {})
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", extra.pop("Cache-Control", "no-store"))
        for name, value in extra.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _dispatch(self) -> None:
        # Until read_body has consumed it, any announced body counts as unread, so
        # answering early (404, 403, 401...) closes the connection.
        length = (self.headers.get("Content-Length") or "0").strip()
        chunked = self.headers.get("Transfer-Encoding") is not None
        self._body_pending = chunked or length != "0"
        path = urlsplit(self.path).path
        method = "GET" if self.command == "HEAD" else self.command  # HEAD: GET without body
        allowed = []
        for route in ROUTES:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            try:
                getattr(self.app, route.handler)(self, *m.groups())
            except _Refused as exc:
                self._send_json(exc.status, {"error": exc.message}, exc.headers)
            except _ResponseStarted as exc:
                # The status line is out: all that is left is to drop the connection.
                self.close_connection = True
                level = log.debug if exc.reason == "client_gone" else log.warning
                level("http.response_cut", path=path, error=exc.reason)
            except Exception as exc:
                # Type only: exception text from a parser could quote the body.
                log.error("http.error", path=path, error=type(exc).__name__)
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            return
        if allowed:
            self._send_json(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method {self.command} not allowed"},
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    # ------------------------------------------------------------------ request parts

    @property
    def header_map(self) -> dict[str, str]:
        """Headers with lower-cased names (what ``Provider.webhook_ids`` expects)."""
        return {k.lower(): v for k, v in self.headers.items()}

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    def check_length(self, limit: int) -> int:
        """Validate the announced body size from the headers alone (411/400/413)."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refused(
                HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted", "no_length"
            )
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required", "no_length")
        raw = values[0].strip()
        # One plain ASCII number only: two lengths are how requests get smuggled.
        if len(values) > 1 or not (raw.isascii() and raw.isdigit()):
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
        """Exactly ``length`` bytes within one ``timeout`` overall, or 408/400 (and close).

        The overall deadline matters: a per-read timeout alone lets a client trickle a
        byte every few seconds and hold a thread for hours.
        """
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 65536))
                if not chunk:
                    raise _Refused(
                        HTTPStatus.BAD_REQUEST, "body shorter than Content-Length", "short"
                    )
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            raise _Refused(
                HTTPStatus.REQUEST_TIMEOUT, "body not received in time", "timeout"
            ) from None
        finally:
            self.connection.settimeout(self.timeout)
        self._body_pending = False
        return b"".join(chunks)


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
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.rt = rt
        self.settings = settings
        self.on_due = on_due
        self.is_healthy = is_healthy or (lambda: True)
        self.request_timeout = request_timeout
        # Resolved here, from the full settings, so the server cannot be built open by
        # mistake when a token is named but unreadable (ConfigError).
        token = resolve_server_token(rt.settings.model_copy(update={"server": settings}))
        self._token: bytes | None = None
        if token is not None:
            register_secret(token.get_secret_value())
            self._token = token.get_secret_value().encode("utf-8")
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Bind ``settings.listen`` (port 0 picks a free one), serve in a thread, return the URL."""
        host, port = self.settings.host_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            handler = type("_TimedHandler", (_Handler,), {"timeout": self.request_timeout})
            httpd = _HttpServer((host, port), self, family, handler)
        except OSError as exc:
            raise ConfigError(
                "server.listen", f"cannot listen on {self.settings.listen}: {exc.strerror or exc}"
            ) from None
        self._httpd = httpd
        bound_port = httpd.server_address[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="genvault-http",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop accepting, close the socket (idempotent). In-flight requests are not awaited."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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

    def healthz(self, req: _Handler) -> None:
        try:
            ok = bool(self.is_healthy())
        except Exception:
            ok = False
        if ok:
            req._send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            req._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy"})

    def readyz(self, req: _Handler) -> None:
        """Database and storage reachable. Details go to the log, not to the caller."""
        parts: dict[str, str] = {}
        for name, check in (("database", self.rt.store.check), ("storage", self.rt.storage.check)):
            try:
                check()
                parts[name] = "ok"
            except Exception as exc:
                parts[name] = "failed"
                log.warning("server.not_ready", part=name, error=type(exc).__name__)
        failed = sorted(k for k, v in parts.items() if v != "ok")
        if failed:
            req._send_json(
                HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "failed": failed, **parts}
            )
        else:
            req._send_json(HTTPStatus.OK, {"status": "ready", **parts})

    # ------------------------------------------------------------------ status page

    def _page_access(self, req: _Handler, kind: str) -> bool:
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
            title, message = "Status page closed", PAGE_CLOSED
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

    def status_page(self, req: _Handler) -> None:
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

    def archived_file(self, req: _Handler, asset_id: str) -> None:
        """``GET /files/{asset_id}``: an archived image, streamed (:mod:`genvault.web.files`)."""
        from genvault.errors import StorageError
        from genvault.web.files import FILE_HEADERS, ShortFileError, find_image, iter_chunks

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
        with stream:
            try:
                req.send_stream(
                    HTTPStatus.OK, image.content_type, size, iter_chunks(stream, size), FILE_HEADERS
                )
            except (BrokenPipeError, ConnectionResetError):
                raise _ResponseStarted("client_gone") from None  # a page left mid-load
            except (ShortFileError, StorageError) as exc:
                raise _ResponseStarted(type(exc).__name__) from None
            except Exception as exc:  # headers are out: no 500 can follow them
                raise _ResponseStarted(type(exc).__name__) from None

    def metrics(self, req: _Handler) -> None:
        """``GET /metrics``: Prometheus text format (counters of this process, gauges
        read from the database at scrape time, so every replica reports the same backlog)."""
        from genvault.metrics import exposition

        body, content_type = exposition(self.rt, self.counters)
        req.send_body(HTTPStatus.OK, content_type, body)

    def intake(self, req: _Handler) -> None:
        """``POST /v1/tasks``: a submitter hands over ids of generations it started."""
        if self._token is None:
            raise self._refuse("intake", None, HTTPStatus.FORBIDDEN, INTAKE_DISABLED, "disabled")
        try:
            length = req.check_length(self.settings.max_body_bytes)
        except _Refused as exc:
            raise self._refuse("intake", None, exc.status, exc.message, exc.reason) from None
        if not _same_secret(_bearer(req.header_map), self._token):
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

    def webhook(self, req: _Handler, account: str) -> None:
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
        if provider.webhook_auth == "token":
            if self._token is None:
                raise self._refuse(
                    "webhook",
                    account,
                    HTTPStatus.FORBIDDEN,
                    f"{provider.name} webhooks need a token: set server.token_env or "
                    "server.token_file and add ?token= to the callback URL",
                    "disabled",
                )
            offered = _bearer(req.header_map) or _query_token(req.query)
            if not _same_secret(offered, self._token):
                raise self._refuse(
                    "webhook",
                    account,
                    HTTPStatus.UNAUTHORIZED,
                    "missing or wrong token",
                    "bad_token",
                )
        try:
            body = req.read_body(length)
        except _Refused as exc:
            raise self._refuse("webhook", account, exc.status, exc.message, exc.reason) from None
        try:
            raw_ids = provider.webhook_ids(body, req.header_map)
        except WebhookRejectedError:
            if provider.webhook_auth == "signature":
                raise self._refuse(
                    "webhook", account, HTTPStatus.UNAUTHORIZED, "callback refused", "bad_signature"
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
