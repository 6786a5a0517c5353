"""Media bodies read straight from the socket (:mod:`genvault.net.rawbody`), over loopback.

The raw reader steps under httpx: these tests fail if it skips, repeats or over-reads a
byte, loses a check of :class:`~genvault.net.media.MediaStream` (truncation, the low
speed limit, the read timeout, Range resume), leaves a connection in the pool that is
not at a message boundary, or silently stops taking bodies over (an httpx/httpcore/h11
upgrade that changes what it relies on). A byte-scripted server sends exactly the
packets a test needs (headers and body in one write, an overrun, a stall, keep-alive),
over plain TCP and over TLS; :class:`tests.fixtures.origin.Origin` serves Range resumes.
Both ways of reading are exercised: ``read`` (S3, tests) and ``readinto1`` (a folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore
import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import PermanentDownloadError, TransientDownloadError
from genvault.net.client import build_client
from genvault.net.media import DownloadLimits, MediaStream, open_media
from genvault.net.policy import NetworkPolicy
from genvault.storage.local import LocalStorage
from tests.integration.test_download import ranged
from tests.integration.test_tls_client import _self_signed

POLICY = NetworkPolicy(allow_private=True)
BODY = b"\x89PNG\r\n\x1a\n" + hashlib.sha256(b"x").digest() * 40_000  # ~1.25 MB, looks like a PNG
CLOSE = None
"""A script step: hang up."""

Step = bytes | float | None
"""What the server does next: send these bytes, sleep this long, or hang up (``CLOSE``)."""
Script = Callable[[str, int], list[Step]]
"""(request head, request number from 1) -> the steps of the answer."""


def head(length: int, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


class ByteServer:
    """Answers each request on a connection with its script's steps, byte for byte."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        host = "localhost" if tls else "127.0.0.1"
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}/m.png"
        self.requests: list[tuple[int, str]] = []
        """(connection number, request head) of every request."""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        count = 0
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            count += 1
            threading.Thread(target=self._serve, args=(conn, count), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError), contextlib.closing(conn):
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                request, buf = buf.split(b"\r\n\r\n", 1)
                self.requests.append((number, request.decode()))
                for step in self._script(request.decode(), len(self.requests)):
                    if step is None:
                        return
                    if isinstance(step, float):
                        time.sleep(step)
                    else:
                        conn.sendall(step)

    def stop(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ByteServer]]:
    servers: list[ByteServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> ByteServer:
        servers.append(ByteServer(script, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    settings = NetworkSettings(read_timeout=1.0, connect_timeout=2.0)
    with build_client(settings, POLICY) as c:
        yield c


def by_read(stream: MediaStream) -> bytes:
    out = bytearray()
    while chunk := stream.read(100_000):
        out += chunk
    return bytes(out)


def by_readinto1(stream: MediaStream) -> bytes:
    buffer = memoryview(bytearray(64 * 1024))
    out = bytearray()
    while n := stream.readinto1(buffer):
        out += buffer[:n]
    return bytes(out)


READERS = pytest.mark.parametrize("reader", [by_read, by_readinto1], ids=["read", "readinto1"])


def fetch(
    client: httpx.Client,
    url: str,
    reader: Callable[[MediaStream], bytes] = by_readinto1,
    limits: DownloadLimits | None = None,
    *,
    raw: bool = True,
) -> bytes:
    """Download ``url``, asserting whether the body was taken over from httpx."""
    with open_media(client, url, policy=POLICY, limits=limits or DownloadLimits()) as stream:
        assert (stream._raw is not None) is raw, "the raw reader should (not) have taken over"
        return reader(stream)


def connections(client: httpx.Client) -> list[httpcore.ConnectionInterface]:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.ConnectionPool)
    return list(pool.connections)


# --------------------------------------------------------------------------- whole bodies


@READERS
@pytest.mark.parametrize("split", [0, 1, 500, 70_000])
def test_headers_and_body_in_one_packet(
    client: httpx.Client,
    serve: Callable[..., ByteServer],
    reader: Callable[[MediaStream], bytes],
    split: int,
) -> None:
    """Whatever h11 buffered with the headers is handed out first, then the socket's bytes."""
    body = BODY[:200_000]
    server = serve(lambda req, n: [head(len(body)) + body[:split], 0.05, body[split:]])
    assert fetch(client, server.url, reader) == body


@READERS
def test_a_whole_small_body_in_the_header_packet(
    client: httpx.Client, serve: Callable[..., ByteServer], reader: Callable[[MediaStream], bytes]
) -> None:
    body = BODY[:3_000]
    server = serve(lambda req, n: [head(len(body)) + body])
    assert fetch(client, server.url, reader) == body
    assert fetch(client, server.url, reader) == body
    assert {number for number, _ in server.requests} == {1}, "kept alive"


@READERS
def test_a_large_body_arrives_whole_and_into_a_folder(
    client: httpx.Client,
    serve: Callable[..., ByteServer],
    reader: Callable[[MediaStream], bytes],
    tmp_path: Path,
) -> None:
    server = serve(lambda req, n: [head(len(BODY)), BODY])
    assert fetch(client, server.url, reader) == BODY
    storage = LocalStorage(tmp_path / "archive")
    with open_media(client, server.url, policy=POLICY, limits=DownloadLimits()) as stream:
        stored = storage.put("a/m.png", stream)  # type: ignore[arg-type]
    assert stored.size == len(BODY) and stored.sha256 == hashlib.sha256(BODY).hexdigest()
    assert (tmp_path / "archive" / "a" / "m.png").read_bytes() == BODY


# --------------------------------------------------------------------------- broken bodies


@READERS
@pytest.mark.parametrize("cut", [100, 150_000])
def test_a_truncated_body_is_never_complete(
    client: httpx.Client,
    serve: Callable[..., ByteServer],
    reader: Callable[[MediaStream], bytes],
    cut: int,
) -> None:
    server = serve(lambda req, n: [head(len(BODY)) + BODY[:cut], CLOSE])
    with pytest.raises(
        TransientDownloadError, match=f"connection broke after {cut} of {len(BODY)}"
    ):
        fetch(client, server.url, reader)


@READERS
def test_an_overrun_is_never_read_into_the_file_nor_the_next_answer(
    client: httpx.Client, serve: Callable[..., ByteServer], reader: Callable[[MediaStream], bytes]
) -> None:
    """Bytes past the Content-Length belong to no answer: the file ends at the length, and
    the connection they wait on is not reused for the next request."""
    body = BODY[:300_000]
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nJUNK" + b"x" * 5000

    def script(req: str, n: int) -> list[Step]:
        if n == 1:
            return [head(len(body)) + body[:100_000], 0.05, body[100_000:] + junk]
        return [head(len(body)) + body]

    server = serve(script)
    assert fetch(client, server.url, reader) == body
    time.sleep(0.1)  # the junk is in the socket before the next request
    assert fetch(client, server.url, reader) == body
    assert [number for number, _ in server.requests] == [1, 2], "a new connection"


def test_a_cut_body_resumes_from_the_socket_and_is_stored_whole(
    client: httpx.Client, tmp_path: Path
) -> None:
    origin = ranged(BODY, cut_first_at=400_000)
    storage = LocalStorage(tmp_path / "archive")
    url = origin.url + "/a.png"
    with open_media(client, url, policy=POLICY, limits=DownloadLimits()) as stream:
        assert stream._raw is not None
        stored = storage.put("m.png", stream)  # type: ignore[arg-type]
        assert stream.resumes == 1 and stream._raw is not None, "the 206 read raw as well"
        assert stream.received == len(BODY)
    assert stored.size == len(BODY) and stored.sha256 == hashlib.sha256(BODY).hexdigest()
    assert origin.requests[1].headers["range"] == "bytes=400000-"


@READERS
def test_a_cut_body_without_a_validator_fails(
    client: httpx.Client, serve: Callable[..., ByteServer], reader: Callable[[MediaStream], bytes]
) -> None:
    server = serve(lambda req, n: [head(len(BODY), "Accept-Ranges: bytes\r\n"), BODY[:5000], CLOSE])
    with pytest.raises(TransientDownloadError, match=f"connection broke after 5000 of {len(BODY)}"):
        fetch(client, server.url, reader)
    assert len(server.requests) == 1


@READERS
def test_a_stalled_body_times_out(
    client: httpx.Client, serve: Callable[..., ByteServer], reader: Callable[[MediaStream], bytes]
) -> None:
    """The client's read timeout (1 s) applies to each read of the raw body."""
    server = serve(lambda req, n: [head(len(BODY)) + BODY[:1000], 0.1, BODY[1000:9000], 4.0])
    started = time.monotonic()
    with pytest.raises(TransientDownloadError, match=f"read timed out after 9000 of {len(BODY)}"):
        fetch(client, server.url, reader)
    assert time.monotonic() - started < 3.0


@READERS
def test_a_dripping_body_is_abandoned(
    client: httpx.Client, serve: Callable[..., ByteServer], reader: Callable[[MediaStream], bytes]
) -> None:
    drip: list[Step] = []
    for i in range(600, 10_600, 100):  # 100 bytes every 20 ms: 5 kB/s for 2 s
        drip += [BODY[i : i + 100], 0.02]
    server = serve(lambda req, n: [head(len(BODY)) + BODY[:600], *drip])
    limits = DownloadLimits(low_speed_bps=50_000, low_speed_seconds=0.3, resume_attempts=0)
    with pytest.raises(TransientDownloadError, match="too slow"):
        fetch(client, server.url, reader, limits)


def test_a_document_is_refused_before_any_byte_is_handed_out(
    client: httpx.Client, serve: Callable[..., ByteServer]
) -> None:
    page = b"\n\n" + b"<!DOCTYPE html><html>" + b"x" * 100_000
    server = serve(lambda req, n: [head(len(page)) + page[:2], 0.05, page[2:]])
    with pytest.raises(PermanentDownloadError, match="not media"):
        fetch(client, server.url)


# --------------------------------------------------------------------------- the connection after


def test_the_connection_is_reused_after_a_whole_raw_body(
    client: httpx.Client, serve: Callable[..., ByteServer]
) -> None:
    server = serve(lambda req, n: [head(len(BODY)), BODY])
    for _ in range(3):
        assert fetch(client, server.url) == BODY
        [conn] = connections(client)
        assert conn.is_idle(), "back in the pool at a message boundary"
    assert [number for number, _ in server.requests] == [1, 1, 1]


def test_a_body_left_half_read_closes_its_connection(
    client: httpx.Client, serve: Callable[..., ByteServer]
) -> None:
    server = serve(lambda req, n: [head(len(BODY)), BODY])
    with open_media(client, server.url, policy=POLICY, limits=DownloadLimits()) as stream:
        assert stream._raw is not None
        buffer = memoryview(bytearray(64 * 1024))
        assert stream.readinto1(buffer) > 0
    assert connections(client) == [], "closed, never pooled mid-body"
    assert fetch(client, server.url) == BODY
    assert [number for number, _ in server.requests] == [1, 2]


def test_chunked_bodies_take_the_httpx_path(
    client: httpx.Client, serve: Callable[..., ByteServer]
) -> None:
    body = BODY[:100_000]
    chunked = b"".join(
        f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:60_000], body[60_000:])
    )
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked
        + b"0\r\n\r\n"
    )
    server = serve(lambda req, n: [reply])
    assert fetch(client, server.url, raw=False) == body
    assert fetch(client, server.url, raw=False) == body
    assert [number for number, _ in server.requests] == [1, 1]


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's trust store
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@READERS
def test_tls_bodies_are_read_from_the_ssl_socket(
    serve: Callable[..., ByteServer], tls: ssl.SSLContext, reader: Callable[[MediaStream], bytes]
) -> None:
    body = BODY * 3
    server = serve(lambda req, n: [head(len(body)) + body[:20_000], 0.05, body[20_000:]], tls)
    with build_client(NetworkSettings(read_timeout=2.0), POLICY) as tls_client:
        assert fetch(tls_client, server.url, reader) == body
        assert fetch(tls_client, server.url, reader) == body
    assert [number for number, _ in server.requests] == [1, 1]


def test_a_truncated_tls_body_is_never_complete(
    serve: Callable[..., ByteServer], tls: ssl.SSLContext
) -> None:
    server = serve(lambda req, n: [head(len(BODY)), BODY[:70_000], CLOSE], tls)
    with (
        build_client(NetworkSettings(read_timeout=2.0), POLICY) as tls_client,
        pytest.raises(TransientDownloadError, match="connection broke after 70000 of"),
    ):
        fetch(tls_client, server.url)
