"""The loopback HTTP server under every provider simulator.

Talking real HTTP (keep-alive, Content-Length, slow and truncated bodies, TCP
resets) is the point of the simulators: the daemon's HTTP stack is exercised
exactly as in production, with no mocks. :class:`SimServer` binds the socket,
parses requests, dispatches them to the route table, the CDN (:mod:`.cdn`) or the
``/_sim/`` admin API, applies the faults :mod:`.faults` decides on and writes the
answers, paced or cut as asked. It knows nothing of any provider's API.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self, cast
from urllib.parse import parse_qs, urlsplit

from genvault.simulator import media
from genvault.simulator.cdn import MediaEntry, MediaTable
from genvault.simulator.clock import SimClock
from genvault.simulator.faults import (
    FaultDecision,
    Faults,
    fault_response,
    malformed_answer,
    mangle_types,
)
from genvault.simulator.messages import (
    BusinessErrorFactory,
    ErrorFactory,
    Handler,
    Headers,
    Request,
    Response,
    default_business_error,
    default_error,
)
from genvault.simulator.stats import Stats

log = logging.getLogger(__name__)

MAX_BODY: Final = 2 * 1024 * 1024
"""Request bodies above this are refused with 413 (the simulator is not a sink)."""

RouteKind = Literal["api", "media", "admin"]


def _abort_connection(h: _Handler) -> None:
    """Drop the connection with a TCP RST and no answer (``reset_next``).

    ``SO_LINGER (1, 0)`` makes close() discard the socket and send RST instead of FIN.
    The request's read file holds a reference to the socket, so it is closed first or
    close() would not release the descriptor.
    """
    h.close_connection = True
    conn = h.connection
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        h.rfile.close()
    with contextlib.suppress(OSError):
        conn.close()


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its SimServer and its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: SimServer) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Thin adapter: all logic lives in :meth:`SimServer._handle`."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections and stuck writes end eventually
    server_version = "genvault-sim/1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def handle(self) -> None:
        # A client (or stop()) dropping a keep-alive connection is routine, not an error.
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def setup(self) -> None:
        super().setup()
        srv = cast(_HTTPServer, self.server)
        with srv.connections_lock:
            srv.connections.add(self.connection)

    def finish(self) -> None:
        srv = cast(_HTTPServer, self.server)
        with srv.connections_lock:
            srv.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _dispatch(self) -> None:
        cast(_HTTPServer, self.server).sim._handle(self)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class Serving:
    """``with`` support for what starts and stops: the server, and every provider
    simulator around one (``with create() as sim:`` starts it and stops it after)."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimServer(Serving):
    """A provider simulator's HTTP server: routes, fake CDN, faults, stats, clock.

    The socket is bound lazily (on :meth:`start` or the first ``base_url`` access), so
    URLs are known before serving starts. Media paths are looked up in the media table
    first; an unknown path under one of ``media_prefixes`` is a CDN 404, anything else
    goes through the route table. ``/_sim/...`` is the admin API (never faulted).
    """

    ADMIN_PREFIX: ClassVar[str] = "/_sim/"

    @classmethod
    def for_config(cls, name: str, config: Any, **options: Any) -> Self:
        """A server from a simulator config's ``port``, ``seed`` and ``clock_anchor``."""
        return cls(
            name=name,
            port=config.port,
            seed=config.seed,
            clock=SimClock(config.clock_anchor),
            **options,
        )

    def __init__(
        self,
        *,
        name: str = "sim",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        clock: SimClock | None = None,
        media_prefixes: tuple[str, ...] = ("/cdn/",),
        max_body: int = MAX_BODY,
        error_response: ErrorFactory | None = None,
        wrong_types: Callable[[Any], Any] | None = None,
        business_error: BusinessErrorFactory | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.clock = clock or SimClock()
        self.faults = Faults(seed)
        self.stats = Stats()
        self.media_prefixes = media_prefixes
        self.max_body = max_body
        self.error_response: ErrorFactory = error_response or default_error
        self.wrong_types: Callable[[Any], Any] = wrong_types or mangle_types
        self.business_error: BusinessErrorFactory = business_error or default_business_error
        """The ``malformed="business_error"`` answer; replaceable at any time."""
        self._routes: list[Route] = []
        self._media = MediaTable()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def _bind(self) -> _HTTPServer:
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"simulator {self.name} was stopped; create a new one")
            if self._httpd is None:
                self._httpd = _HTTPServer((self.host, self.port), self)
                self.port = int(self._httpd.server_address[1])
            return self._httpd

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (binds the socket if needed; still readable after stop)."""
        if not self._stopped:
            self._bind()
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL. Idempotent."""
        httpd = self._bind()
        with self._lock:
            if self._thread is None:
                self.clock.mark_started()
                self._thread = threading.Thread(
                    target=httpd.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name=f"sim-{self.name}",
                    daemon=True,
                )
                self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections, close the socket. Idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._stopped = True
            self._httpd = None
            self._thread = None
        if httpd is None:
            return
        if thread is not None:
            httpd.shutdown()
            thread.join(timeout=5)
        with httpd.connections_lock:
            conns = list(httpd.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------ registration

    def route(self, method: str, pattern: str, handler: Handler, *, name: str = "") -> None:
        """Register ``handler`` for ``method`` and a full-match path regex.

        A GET route also answers HEAD (without the body). ``name`` keys the stats.
        """
        self._routes.append(
            Route(method.upper(), re.compile(pattern), handler, name or f"{method} {pattern}")
        )

    def add_media(
        self,
        path: str,
        spec: media.MediaSpec,
        *,
        expires_at: datetime | None = None,
        available_after_s: float = 0.0,
    ) -> None:
        """Serve ``spec`` at ``path`` (absolute path, e.g. ``/cdn/images/x.jpg``).

        Does not bind the socket, so simulators can register media while building
        their data; :meth:`url` turns the path into an absolute URL later.
        """
        self._media.add(path, MediaEntry(spec, expires_at, available_after_s))

    def remove_media(self, path: str) -> MediaEntry | None:
        """Stop serving ``path``: from now on the CDN answers 404 ``NoSuchKey`` for it,
        as S3 does for a deleted object. Returns the entry it served, or None.

        Safe while serving: one dict operation, atomic against the lookups of the
        request threads (as :meth:`add_media` is).
        """
        return self._media.remove(path)

    def media_entry(self, path: str) -> MediaEntry | None:
        return self._media.get(path)

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return self.base_url + path

    # ------------------------------------------------------------------ request handling

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = Headers(h.headers.items())
        try:
            body_or_error = self._read_body(h, headers)
            if isinstance(body_or_error, Response):
                self._send(h, "GET", body_or_error, "api", bandwidth_bps=None)
                return
            req = Request(h.command.upper(), path, query, headers, body_or_error)
            if path.startswith(self.ADMIN_PREFIX):
                self._send(h, req.method, self._admin(req), "admin", bandwidth_bps=None)
            elif req.method in ("GET", "HEAD") and (
                path in self._media or path.startswith(self.media_prefixes)
            ):
                self._serve_media(h, req)
            else:
                self._serve_api(h, req)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            h.close_connection = True

    def _read_body(self, h: _Handler, headers: Headers) -> bytes | Response:
        if "transfer-encoding" in headers:
            resp = self.error_response(411, "LENGTH_REQUIRED", "chunked bodies not supported")
            resp.close = True
            return resp
        raw = headers.get("content-length", "0").strip() or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            resp = self.error_response(400, "BAD_REQUEST", "invalid Content-Length")
            resp.close = True
            return resp
        if length > self.max_body:
            resp = self.error_response(413, "PAYLOAD_TOO_LARGE", "request body too large")
            resp.close = True
            return resp
        return h.rfile.read(length) if length else b""

    def _serve_api(self, h: _Handler, req: Request) -> None:
        route, params = self._match(req)
        if route is None:
            self.stats.record("unmatched", 404)
            resp = self.error_response(404, "NOT_FOUND", f"no route for {req.method} {req.path}")
            self._send(h, req.method, resp, "api", bandwidth_bps=None)
            return
        decision = self.faults.decide_api()
        if decision.reset:
            self.stats.record_fault(decision.reason)
            self.stats.record(route.name, 0)  # status 0: no answer at all
            _abort_connection(h)
            return
        if decision.status is not None:
            self.stats.record_fault(decision.reason)
            resp = self._fault_response(decision)
        else:
            try:
                resp = route.handler(
                    Request(req.method, req.path, req.query, req.headers, req.body, params)
                )
            except Exception as exc:  # a simulator bug must not kill the connection thread
                log.exception("simulator %s: handler %s failed", self.name, route.name)
                resp = self.error_response(500, "SIM_HANDLER_ERROR", repr(exc))
            if not decision.exempt:
                resp = self._apply_malformed(resp)
        self.stats.record(route.name, resp.status)
        drip = None if decision.exempt else self.faults.api_drip_bps
        if drip:
            self.stats.record_fault("api_drip")
        self._send(h, req.method, resp, "api", bandwidth_bps=drip)

    def _match(self, req: Request) -> tuple[Route | None, dict[str, str]]:
        wanted = ("GET", "HEAD") if req.method == "HEAD" else (req.method,)
        for route in self._routes:
            if route.method in wanted:
                match = route.pattern.fullmatch(req.path)
                if match:
                    return route, {k: v for k, v in match.groupdict().items() if v is not None}
        return None, {}

    def _fault_response(self, decision: FaultDecision) -> Response:
        return fault_response(decision, self.error_response)

    def _apply_malformed(self, resp: Response) -> Response:
        resp, fault = malformed_answer(
            resp, self.faults.malformed, self.wrong_types, self.business_error
        )
        if fault is not None:
            self.stats.record_fault(fault)
        return resp

    # ------------------------------------------------------------------ media

    def _serve_media(self, h: _Handler, req: Request) -> None:
        answer = self._media.answer(req, self.clock, self.faults, self.stats)
        self._send(
            h,
            req.method,
            answer.response,
            "media",
            bandwidth_bps=answer.bandwidth_bps,
            truncate=answer.truncate,
        )

    # ------------------------------------------------------------------ writing

    def _send(
        self,
        h: _Handler,
        method: str,
        resp: Response,
        kind: RouteKind,
        bandwidth_bps: int | None,
        truncate: bool = False,
    ) -> None:
        """Write status, headers and body, applying latency/truncation/bandwidth faults.

        ``bandwidth_bps`` paces the body (media bandwidth, API slow drip); ``truncate``
        stops after half the body and hangs up.
        """
        if kind != "admin":
            delay = self.faults.latency_s
            if delay > 0:
                time.sleep(delay)
        length = resp.length or 0
        h.send_response(resp.status)
        for key, value in resp.headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(length))
        if resp.close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if method == "HEAD":
            return
        is_media_body = kind == "media" and resp.status in (200, 206)
        limit = length // 2 if truncate else length
        body: Iterable[bytes] = [resp.body] if isinstance(resp.body, bytes) else resp.body
        if bandwidth_bps and isinstance(resp.body, bytes):
            # one write would defeat the pacing: about 20 writes per second instead
            step = max(1, bandwidth_bps // 20)
            body = [resp.body[i : i + step] for i in range(0, len(resp.body), step)]
        sent = 0
        began = time.monotonic()
        for piece in body:
            if sent >= limit:
                break
            piece = piece[: limit - sent]
            # counted before the write: a client that has read the last byte must
            # already see it in the stats (counting after raced with fast readers)
            if is_media_body:
                self.stats.add_media_bytes(len(piece))
            try:
                h.wfile.write(piece)
            except OSError:
                if is_media_body:
                    self.stats.add_media_bytes(-len(piece))
                raise
            sent += len(piece)
            if bandwidth_bps:
                ahead = sent / bandwidth_bps - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if sent < length:  # promised more than we sent: the only honest end is to hang up
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ admin

    def _admin(self, req: Request) -> Response:
        """``/_sim/*``: steer a simulator running in another process."""
        sub = req.path[len(self.ADMIN_PREFIX) :].rstrip("/")
        if sub == "health" and req.method in ("GET", "HEAD"):
            return Response.json({"ok": True, "name": self.name})
        if sub == "faults":
            if req.method == "POST":
                try:
                    data = req.json()
                    if not isinstance(data, dict):
                        raise ValueError("body must be a JSON object of fault settings")
                    self.faults.update(**data)
                except ValueError as exc:
                    return Response.json({"error": str(exc)}, status=400)
            elif req.method not in ("GET", "HEAD"):
                return Response.json({"error": "method not allowed"}, status=405)
            return Response.json(self.faults.as_dict())
        if sub == "stats" and req.method in ("GET", "HEAD"):
            return Response.json(self.stats.snapshot())
        if sub == "reset" and req.method == "POST":
            self.faults.reset()
            self.stats.reset()
            return Response.json({"ok": True})
        if sub == "clock":
            if req.method == "POST":
                try:
                    data = req.json()
                    self.clock.advance(float(data.get("advance_s", 0)))
                except (ValueError, TypeError, AttributeError) as exc:
                    return Response.json({"error": f"bad clock request: {exc}"}, status=400)
            return Response.json(
                {"now": self.clock.now().isoformat(), "elapsed_s": self.clock.elapsed()}
            )
        return Response.json({"error": f"unknown admin endpoint {req.path}"}, status=404)
