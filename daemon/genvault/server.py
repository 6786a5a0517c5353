"""The daemon's HTTP endpoint: task intake, provider webhooks, health and readiness,
and the read-only status page (``/`` and the archived images it shows, ``/files/{id}``).

This module is the server itself: :class:`ApiServer` resolves the secrets, binds the
socket, runs waitress in a thread, routes each request (:data:`ROUTES`) to the room
that serves it, and keeps the counters and the refusal log every room shares. The
rooms: :mod:`genvault.httpd.intake` (``/v1/tasks``, ``/webhooks/{account}``),
:mod:`genvault.httpd.probes` (``/healthz``, ``/readyz``, ``/metrics``) and
:mod:`genvault.web.endpoints` (the page and its files); waitress's configuration and
the request deadline are :mod:`genvault.httpd.transport`.

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
head 431. How it is configured from ``[server]``, and the request deadline genvault
adds to it, are in :mod:`genvault.httpd.transport`.

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

Refusals and acceptances are counted in :attr:`ApiServer.counters` (``/metrics``
exports them).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from genvault.config import (
    ServerSettings,
    resolve_metrics_token,
    resolve_server_token,
    resolve_webhook_secrets,
)
from genvault.errors import ConfigError
from genvault.httpd.intake import Intake
from genvault.httpd.probes import Probes
from genvault.httpd.request import Refused, Request
from genvault.httpd.transport import STOP_WAIT_SECONDS, Server, adjustments
from genvault.logs import get_logger, register_secret
from genvault.runtime import Runtime
from genvault.web.endpoints import StatusPage

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = get_logger("genvault.server")


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    """The handler that serves it (``ApiServer._handlers``, called with the path groups);
    also the counter and log prefix of the intake and webhook refusals."""


ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/"), "status_page"),
    _Route("GET", re.compile(r"/files/([0-9]{1,18})"), "archived_file"),
    _Route("GET", re.compile(r"/healthz"), "healthz"),
    _Route("GET", re.compile(r"/readyz"), "readyz"),
    _Route("GET", re.compile(r"/metrics"), "metrics"),
    _Route("POST", re.compile(r"/v1/tasks"), "intake"),
    _Route("POST", re.compile(r"/webhooks/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})"), "webhook"),
)


def _secret(secret: SecretStr) -> bytes:
    """A configured secret as the bytes to compare with; kept out of every log line."""
    register_secret(secret.get_secret_value())
    return secret.get_secret_value().encode("utf-8")


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
        self.settings = settings
        self.request_timeout = (
            settings.request_timeout_seconds if request_timeout is None else request_timeout
        )
        # Resolved here, from the full settings, so the server cannot be built open by
        # mistake when a token is named but unreadable (ConfigError).
        full = rt.settings.model_copy(update={"server": settings})
        server_token, metrics_token = resolve_server_token(full), resolve_metrics_token(full)
        token = None if server_token is None else _secret(server_token)
        webhook_secrets = {  # one per account, for its callbacks (``webhook_secret_*``)
            account: _secret(secret)
            for account, secret in resolve_webhook_secrets(rt.settings).items()
        }
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.url: str | None = None
        page = StatusPage(self, token)
        probes = Probes(
            self,
            is_healthy=is_healthy,
            metrics_token=None if metrics_token is None else _secret(metrics_token),
            clock=clock,
        )
        intake = Intake(self, token=token, webhook_secrets=webhook_secrets, on_due=on_due)
        self._handlers: dict[str, Callable[..., None]] = {
            "status_page": page.status_page,
            "archived_file": page.archived_file,
            "healthz": probes.healthz,
            "readyz": probes.readyz,
            "metrics": probes.metrics,
            "intake": intake.intake,
            "webhook": intake.webhook,
        }

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
        adj = adjustments(self.settings, host, bound_port, self.request_timeout)
        self._stopping.clear()
        server = Server(self, sock, adj)
        self._server = server
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._serve, args=(server,), name="genvault-http", daemon=True
        )
        self._thread.start()
        return self.url

    def _serve(self, server: Server) -> None:
        try:
            server.serve_until(self._stopping)
        except Exception:
            log.exception("http.loop_crashed")
            raise

    def stop(self) -> None:
        """Stop accepting, close every connection (idempotent). Handlers still running
        get :data:`~genvault.httpd.transport.STOP_WAIT_SECONDS`; they are not awaited longer."""
        server, self._server = self._server, None
        if server is None:
            return
        server.request_stop(self._stopping)
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_SECONDS + 5)
            self._thread = None

    # ------------------------------------------------------------------ WSGI

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application waitress runs on its worker threads: route, answer."""
        req = Request(environ)
        self._dispatch(req)
        log.debug(
            "http.request",
            method=req.command,
            path=req.route_path,
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

    def _dispatch(self, req: Request) -> None:
        path = req.route_path
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
                self._handlers[route.handler](req, *m.groups())
            except Refused as exc:
                req.send_json(exc.status, {"error": exc.message}, exc.headers)
            except Exception as exc:
                # Type only: exception text from a parser could quote the body.
                log.error("http.error", path=path, error=type(exc).__name__)
                req.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
            return
        if allowed:
            req.send_json(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"method {req.command} not allowed"},
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        else:
            req.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

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
            self.refuse(found[0].handler, account, status, message, reason)
        else:
            self.count(f"http.refused.{reason}")
            log.info("http.refused", reason=reason, status=int(status))
        return message

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot: ``intake.accepted``, ``webhook.refused.bad_token``, ``intake.ids_new``..."""
        with self._lock:
            return dict(self._counters)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def refuse(
        self,
        kind: str,
        account: str | None,
        status: HTTPStatus,
        message: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Refused:
        """Count and log a refusal (account and reason only), return it to be raised."""
        self.count(f"{kind}.refused.{reason}")
        log.warning(f"{kind}.refused", account=account, reason=reason, status=int(status))
        return Refused(status, message, reason, headers=headers)
