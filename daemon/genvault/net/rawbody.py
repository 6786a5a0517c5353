"""A media body read straight from the socket, once httpx has parsed the headers.

httpx hands a body out in 64 KiB pieces, each through ~12 Python calls and four
user-space copies (h11's receive buffer, its slices, httpcore's ``bytes(event.data)``):
most of the interpreter time a fast local download still spends (bench/PROFILE.md §4
finding B, §6 item 6). For the common case, an identity body framed by its
Content-Length, :class:`RawBody` takes over once the headers are in: it ``recv_into``s
the caller's buffer (the local writer's), so each byte is copied once in user space.

**Only where it is provably the same body.** :meth:`RawBody.take` declines (and the
httpx path reads the body, as before) unless every one of these holds: the response
came over an HTTP/1.1 connection of httpcore's own pool on a plain or TLS socket
(the guarded backend made it, so the network policy has vetted its address); h11
frames the body by exactly the Content-Length :func:`~genvault.net.media.open_media`
read (never chunked, never close-delimited); and h11 has not seen the peer close.
What h11 has already buffered past the headers is taken from h11 first, through its
public ``next_event``, so no byte is skipped or read twice. Reads never ask for more
than the body's remaining bytes, so nothing of a later response is consumed.

**The connection afterwards.** While the body is read here h11 still expects it
(``SEND_BODY``), so a response closed early (an error, a cap, an abort) closes its
connection, as httpcore does for any body not read to the end. Only when every byte
has arrived does :meth:`RawBody.__next__` / :meth:`recv_into` tell h11 the body is
complete (its Content-Length reader's count, checked to be exactly what was read
here), so the connection goes back to the pool as idle, exactly as if h11 had read it.
The takeover reaches into httpx/httpcore/h11 internals; it checks each one's type and
declines when any differs, and ``test_raw_body.py`` fails if the takeover stops
happening, so an upgrade cannot silently fall back.

Errors are raised as the httpx exceptions the httpx path raises for the same fault
(``ReadTimeout``, ``ReadError``, ``RemoteProtocolError`` for a body cut short), so
:class:`~genvault.net.media.MediaStream` words and resumes them as before. Each read
keeps httpx's read timeout (a socket timeout applies per ``recv``).
"""

from __future__ import annotations

import socket

import h11
import httpcore
import httpx
from h11._readers import ContentLengthReader
from httpcore._backends.sync import SyncStream

CHUNK = 256 * 1024
"""Most bytes one ``__next__`` returns (``read``/``read1``/the head sniffing). A
``recv_into`` is bounded by the caller's buffer instead."""


def _h11_connection(resp: httpx.Response) -> httpcore.HTTP11Connection | None:
    """The httpcore connection ``resp`` is being read from, or None if not reachable."""
    pool_stream = getattr(getattr(resp.stream, "_stream", None), "_httpcore_stream", None)
    body_stream = getattr(pool_stream, "_stream", None)
    if getattr(body_stream, "_closed", True):
        return None
    conn = getattr(body_stream, "_connection", None)
    return conn if isinstance(conn, httpcore.HTTP11Connection) else None


class RawBody:
    """The rest of one Content-Length body, read from the socket; an iterator of bytes."""

    __slots__ = ("_h11", "_h11_missing", "_pending", "_reader", "_remaining", "_sock")

    def __init__(
        self,
        sock: socket.socket,
        h11_conn: h11.Connection | None,
        reader: ContentLengthReader,
        pending: bytes,
        rest: int,
    ) -> None:
        self._sock = sock
        self._h11: h11.Connection | None = h11_conn
        self._reader = reader
        self._pending = pending
        """Body bytes h11 had buffered with the headers, handed out first."""
        self._remaining = rest
        """Body bytes still in the socket (after ``_pending``)."""
        self._h11_missing = rest
        """What h11's reader counts as missing while this reads them (checked at the end)."""

    @classmethod
    def take(cls, resp: httpx.Response, length: int | None) -> RawBody | None:
        """Take over reading ``resp``'s body of ``length`` bytes, or None (httpx reads it)."""
        if length is None or resp.is_stream_consumed:
            return None
        if "transfer-encoding" in resp.headers or "content-encoding" in resp.headers:
            return None
        conn = _h11_connection(resp)
        if conn is None:
            return None
        network = getattr(conn, "_network_stream", None)
        h11_conn = getattr(conn, "_h11_state", None)
        if (
            network is not resp.extensions.get("network_stream")
            or type(network) is not SyncStream  # exactly httpcore's socket stream
            or not isinstance(network, SyncStream)
            or not isinstance(h11_conn, h11.Connection)
        ):
            return None
        sock = network.get_extra_info("socket")
        reader = getattr(h11_conn, "_reader", None)
        if (
            not isinstance(sock, socket.socket)
            or h11_conn.their_state is not h11.SEND_BODY
            or h11_conn.trailing_data[1]  # h11 has seen the peer close: let it say so
            or not isinstance(reader, ContentLengthReader)
            or type(reader) is not ContentLengthReader
            or reader._remaining != length
        ):
            return None
        pending: list[bytes] = []
        while True:  # what h11 buffered past the headers: its public next_event hands it out
            try:
                event = h11_conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if not isinstance(event, h11.Data):
                break
            pending.append(bytes(event.data))
        rest = reader._remaining
        if isinstance(event, h11.EndOfMessage):
            h11_conn = None  # the whole body was buffered; h11 is done with it already
        elif event is not h11.NEED_DATA:
            raise httpx.RemoteProtocolError(f"unexpected {event!r} in a response body")
        timeout = resp.request.extensions.get("timeout", {}).get("read")
        try:
            sock.settimeout(timeout)  # per recv, as httpcore's own reads
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        body = cls(sock, h11_conn, reader, b"".join(pending), rest)
        if rest == 0:
            body._finish()
        return body

    # ------------------------------------------------------------------ reading

    def __iter__(self) -> RawBody:
        return self

    def __next__(self) -> bytes:
        """The next received bytes (at most :data:`CHUNK`); StopIteration at the end."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._remaining == 0:
            raise StopIteration
        try:
            data = self._sock.recv(min(CHUNK, self._remaining))
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        self._took(len(data))
        return data

    def recv_into(self, buffer: memoryview) -> int:
        """Receive into ``buffer``; 0 only when the whole body has been read."""
        if self._pending:
            n = min(len(buffer), len(self._pending))
            buffer[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._remaining == 0:
            return 0
        want = min(len(buffer), self._remaining)
        try:
            n = self._sock.recv_into(buffer, want)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        self._took(n)
        return n

    @property
    def remaining(self) -> int:
        """Body bytes not yet handed out."""
        return len(self._pending) + self._remaining

    def _took(self, n: int) -> None:
        if n == 0:  # the peer closed before the Content-Length: h11's own words for it
            length = self._reader._length
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {length - self._remaining} bytes, expected {length})"
            )
        self._remaining -= n
        if self._remaining == 0:
            self._finish()

    def _finish(self) -> None:
        """Every body byte is in: tell h11, so the connection is reused, not closed.

        h11's reader still counts the bytes read here as missing; it is told they
        arrived (after checking it expects exactly those), and h11 then ends the
        message as if it had read them. Anything else leaves h11 mid-body, and
        httpcore closes the connection when the response is closed.
        """
        conn, self._h11 = self._h11, None
        reader = self._reader
        if conn is None or reader._remaining != self._h11_missing or conn._reader is not reader:
            return
        self._reader._remaining = 0
        event = conn.next_event()
        if not isinstance(event, h11.EndOfMessage):  # pragma: no cover - h11 changed
            raise httpx.RemoteProtocolError(f"h11 did not end the body: {event!r}")


__all__ = ["CHUNK", "RawBody"]
