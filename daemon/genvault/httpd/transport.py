"""waitress, configured and adapted: how requests reach the daemon's handlers.

:mod:`genvault.server` says why waitress. One asyncore loop thread reads every
request, so a slow client costs a socket and a buffer, never a thread; only whole
requests reach the small pool of worker threads that run the WSGI app. Its limits
are set from ``[server]`` (:func:`adjustments`):

* **head size**: ``server.max_header_bytes`` (request line and headers): 431 once
  that much has arrived, never read further;
* **connection cap**: ``server.max_connections`` open connections; beyond, new
  ones wait in the listen backlog (nothing is read from them) until one closes;
* **deadline** (the one thing waitress lacks, added by :class:`Channel` and
  :meth:`Server.maintenance`): a request must arrive whole, line, headers and body,
  within ``server.request_timeout_seconds`` of its first byte, or it is answered
  408 and closed; an idle keep-alive connection and one whose client stopped
  reading its response are closed after the same time;
* **body size**: a body over ``server.max_body_bytes`` (announced, or chunked as
  it streams) gets 413 before it is read; bodies are read whole by the loop thread
  before a handler runs (above 64 KiB into a temp file, not memory).

Refusals made here, before any handler runs (413, 431, 400, 408), are JSON like
every other answer and are counted and logged by the app (:meth:`App.server_refusal`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from genvault.config import ServerSettings
from genvault.httpd.request import json_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

INBUF_MEMORY = 64 * 1024
"""Request bodies above this are spooled by waitress to a temp file, not held in memory:
``max_connections`` bodies in flight must not become ``max_connections`` MB of RSS."""
STOP_WAIT_SECONDS = 2
"""How long a stop waits for handlers still running (they are not awaited longer: the
scheduler's shutdown grace is for downloads, not for HTTP answers)."""


class App(Protocol):
    """What the transport needs of the app it serves (:class:`genvault.server.ApiServer`)."""

    request_timeout: float

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application, run on waitress's worker threads."""
        ...

    def server_refusal(self, raw_path: str, status: HTTPStatus) -> str:
        """Count and log a refusal made before any handler ran; its message."""
        ...

    def count(self, key: str, n: int = 1) -> None: ...


def adjustments(settings: ServerSettings, host: str, port: int, timeout: float) -> Adjustments:
    """waitress's settings from ``[server]``; ``timeout`` is the request deadline."""
    deadline = max(1, int(timeout + 0.999))  # waitress counts whole seconds
    return Adjustments(
        host=host,
        port=port,
        ident="genvault",  # the Server header: no version for a scanner
        threads=settings.threads,
        connection_limit=settings.max_connections + 2,  # + listener and trigger
        max_request_header_size=settings.max_header_bytes,
        # waitress refuses a length >= its limit; ours refuses a length > max_body_bytes
        max_request_body_size=settings.max_body_bytes + 1,
        inbuf_overflow=INBUF_MEMORY,
        channel_timeout=deadline,
        cleanup_interval=1,
        asyncore_loop_timeout=1,
        asyncore_use_poll=True,  # select() fails on descriptors above 1023
        log_socket_errors=False,  # a client hanging up is routine, not a traceback
        expose_tracebacks=False,
    )


def raw_response(status: HTTPStatus, message: str) -> bytes:
    """A whole ``Connection: close`` JSON response, for the loop thread to write itself."""
    body = json_body({"error": message})
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (413 body too large, 431 head too large, 400 unparsable)
    as JSON like every other answer of this server, counted and logged like them."""

    def execute(self) -> None:
        error: Any = cast(Any, self.request).error
        status = HTTPStatus(int(error.code))
        server = cast(Server, self.channel.server)
        message = server.app.server_refusal(str(getattr(self.request, "path", "") or ""), status)
        body = json_body({"error": message})
        self.status = f"{status.value} {status.phrase}"
        cast(list[tuple[str, str]], self.response_headers).extend(
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """waitress's connection, plus the one clock it lacks: when the request now
    arriving began (None between requests). waitress only times *inactivity*, so a
    client sending a byte a second would never be cut; :meth:`Server.maintenance`
    compares this clock with the deadline."""

    request_began: float | None = None
    timed_out_at: float | None = None
    error_task_class = JsonErrorTask

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.request_began is None:
            self.request_began = time.monotonic()
        handled = super().received(data)
        if self.request is None:  # every request in ``data`` arrived whole
            self.request_began = None
        return handled


class Server(TcpWSGIServer):
    """waitress's TCP server on a bound socket, with :class:`Channel` and the request
    deadline; :meth:`serve_until` is the loop thread, :meth:`request_stop` ends it."""

    channel_class = Channel

    def __init__(self, app: App, sock: socket.socket, adj: Adjustments) -> None:
        # "Task queue depth is N": every thread busy for a moment (a page of thumbnails).
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.app = app
        self.socket_map: dict[int, Any] = {}
        family, addr = sock.family, sock.getsockname()
        super().__init__(
            app.wsgi,
            map=self.socket_map,
            _sock=sock,
            adj=adj,
            bind_socket=False,
            sockinfo=(family, socket.SOCK_STREAM, 0, addr),
        )

    def serve_until(self, stopping: threading.Event) -> None:
        """The loop thread: waitress's asyncore loop until ``stopping``, then close all."""
        try:
            while not stopping.is_set():
                wasyncore.loop(timeout=1.0, use_poll=True, map=self.socket_map, count=1)
        finally:
            wasyncore.close_all(self.socket_map)
            self.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_WAIT_SECONDS)

    def request_stop(self, stopping: threading.Event) -> None:
        """Make :meth:`serve_until` return: the loop thread sets ``stopping`` itself (a thunk run
        by waitress's trigger), since setting it here could let the loop exit and close
        the trigger first."""
        try:
            self.trigger.pull_trigger(stopping.set)  # type: ignore[attr-defined]
        except OSError:  # the loop thread is gone already
            stopping.set()

    def maintenance(self, now: float) -> None:
        """Every second on the loop thread: waitress closes idle keep-alive connections
        (``channel_timeout``); this adds the deadline of a request still arriving and
        of a response the client stopped reading."""
        super().maintenance(now)  # type: ignore[arg-type]  # the stubs say int; it is time.time()
        limit = self.app.request_timeout
        mono = time.monotonic()
        channels = cast(dict[int, Channel], self.active_channels)
        for channel in list(channels.values()):
            if channel.timed_out_at is not None:
                if mono - channel.timed_out_at > 1.0:  # the 408 could not be flushed
                    channel.handle_close()
                continue
            began = channel.request_began
            if began is not None and mono - began > limit:
                channel.request_began = None
                path = str(getattr(channel.request, "path", "") or "")
                message = self.app.server_refusal(path, HTTPStatus.REQUEST_TIMEOUT)
                if channel.requests:  # a response is being written: no room for a 408
                    channel.handle_close()
                    continue
                channel.timed_out_at = mono
                try:
                    channel.write_soon(raw_response(HTTPStatus.REQUEST_TIMEOUT, message))
                except Exception:  # the client is gone already
                    channel.handle_close()
                    continue
                channel.close_when_flushed = True
            elif channel.total_outbufs_len and now - channel.last_activity > limit:
                # The client stopped reading its answer: free the buffers, and the worker
                # thread if one waits for room in them.
                self.app.count("http.refused.stalled_reader")
                channel.handle_close()
