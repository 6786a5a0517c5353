"""What a media body really is, whatever its packets and headers say: sniffing, encodings.

Each test runs :func:`genvault.net.media.open_media` through the real guarded client
against a scripted loopback origin (:class:`tests.fixtures.origin.Origin`), which
splits a body into packets exactly where the test says (``Reply.pauses``), closes
connections mid-body, and sends whatever ``Content-Encoding`` it likes.
"""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import PermanentDownloadError, TransientDownloadError
from genvault.net.client import build_client
from genvault.net.media import DownloadLimits, open_media
from genvault.net.policy import NetworkPolicy
from tests.fixtures.origin import Origin, Reply

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400
POLICY = NetworkPolicy(allow_private=True)
PAUSE = 0.05
"""Long enough for the first packet to be read on its own, short enough not to matter."""


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(NetworkSettings(read_timeout=2.0, connect_timeout=2.0), POLICY) as c:
        yield c


def download(client: httpx.Client, url: str, limits: DownloadLimits | None = None) -> bytes:
    with open_media(client, url, policy=POLICY, limits=limits or DownloadLimits()) as stream:
        out = bytearray()
        while chunk := stream.read(64 * 1024):
            out += chunk
        return bytes(out)


# --------------------------------------------------------------------------- sniffing

HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body></body></html>"


@pytest.mark.parametrize(
    ("body", "pauses"),
    [
        (b"\n" + HTML, {1: PAUSE}),  # the case from the issue
        (b"\r\n  \t" + HTML, {1: PAUSE, 3: PAUSE, 5: PAUSE}),
        (b"\n\n" + b"<html><body>Access denied</body></html>", {2: PAUSE}),
        (b"\n" + b'{"code": 1101, "msg": "token invalid"}', {1: PAUSE}),
        (b"   " + b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", {3: PAUSE}),
        (b"\xef\xbb\xbf" + HTML, {}),  # a byte-order mark first
        (b" " * 3000 + HTML, {1000: PAUSE, 2000: PAUSE}),
        (b" " * 5000, {}),  # nothing but whitespace: no media starts like that
        (b"\n<!-- cdn error -->" + HTML, {1: PAUSE}),
    ],
    ids=[
        "newline",
        "split-whitespace",
        "html",
        "json",
        "xml",
        "bom",
        "3k-spaces",
        "spaces",
        "comment",
    ],
)
def test_a_document_behind_leading_whitespace_is_not_media(
    client: httpx.Client, body: bytes, pauses: dict[int, float]
) -> None:
    """The old sniff looked at the first chunk only: ``"\\n"`` alone passed as an image."""
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, body, pauses=pauses))
    with pytest.raises(PermanentDownloadError, match="not media"):
        download(client, origin.url + "/a.png")


def test_a_document_split_before_its_first_byte_is_refused_at_open(client: httpx.Client) -> None:
    """The head is read and judged before the stream is handed out, so a caller never
    picks a storage key (or writes a byte) for an error page."""
    origin = Origin(
        lambda req: Reply(200, {"Content-Type": "image/png"}, b"\n" + HTML, pauses={1: PAUSE})
    )
    with (
        pytest.raises(PermanentDownloadError, match="not media"),
        open_media(client, origin.url + "/a.png", policy=POLICY, limits=DownloadLimits()),
    ):
        pytest.fail("the stream was handed out")


@pytest.mark.parametrize("pauses", [{1: PAUSE}, {1: PAUSE, 2: PAUSE, 700: PAUSE}, {}])
def test_media_split_anywhere_arrives_whole(client: httpx.Client, pauses: dict[int, float]) -> None:
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG, pauses=pauses))
    assert download(client, origin.url + "/a.png") == PNG


def test_a_tiny_media_file_is_read_whole(client: httpx.Client) -> None:
    gif = (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
        b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/gif"}, gif, pauses={1: PAUSE}))
    assert download(client, origin.url + "/a.gif") == gif


# --------------------------------------------------------------------------- content encodings

GZ_PNG = gzip.compress(PNG)


def encoded(body: bytes, encoding: str = "gzip", **kw: object) -> Origin:
    headers = {"Content-Type": "image/png", "Content-Encoding": encoding}
    return Origin(lambda req: Reply(200, headers, body, **kw))  # type: ignore[arg-type]


def test_media_requests_ask_for_identity(client: httpx.Client) -> None:
    """httpx asks for ``gzip, deflate`` by default; media must come as it is stored."""
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG))
    assert download(client, origin.url + "/a.png") == PNG
    assert origin.requests[0].headers["accept-encoding"] == "identity"


def test_a_gzip_body_cut_in_half_is_never_complete(client: httpx.Client) -> None:
    """No Content-Length, the connection closed halfway: httpx's decoder says nothing
    about a stream without its end, so half a file was stored as a whole one."""
    origin = encoded(GZ_PNG, send_bytes=len(GZ_PNG) // 2, declare_length=False)
    with pytest.raises(TransientDownloadError, match="gzip body ended before its end"):
        download(client, origin.url + "/a.png")


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_whole_gzip_body_is_decoded_and_verified(
    client: httpx.Client, declare_length: bool
) -> None:
    origin = encoded(GZ_PNG, declare_length=declare_length, pauses={10: PAUSE})
    assert download(client, origin.url + "/a.png") == PNG


@pytest.mark.parametrize("encoding", ["deflate", "x-gzip", "GZIP"])
def test_other_spellings_of_gzip_and_zlib_deflate(client: httpx.Client, encoding: str) -> None:
    body = zlib.compress(PNG) if encoding == "deflate" else GZ_PNG
    assert download(client, encoded(body, encoding).url + "/a.png") == PNG


def test_a_decompression_bomb_is_refused(client: httpx.Client) -> None:
    """64 KiB of gzip that expands to 64 MiB (1,000 to 1): refused long before the end."""
    bomb = gzip.compress(b"\0" * 64 * 1024**2, compresslevel=9)
    assert len(bomb) < 100 * 1024
    origin = encoded(bomb)
    with pytest.raises(PermanentDownloadError, match="expands more than 100 times"):
        download(client, origin.url + "/a.png")


def test_decoding_holds_one_bounded_chunk_at_a_time(client: httpx.Client) -> None:
    """Before, one 64 KiB raw read was decoded in one piece: 32 MiB of zeros compress to
    32 KiB, so all of it sat in memory at once. Measured with tracemalloc (zlib's
    buffers included), with the expansion cap lifted so the whole body is read."""
    size = 32 * 1024**2
    origin = encoded(gzip.compress(b"\0" * size, compresslevel=9))
    digest = hashlib.sha256()
    limits = DownloadLimits(max_expansion=10_000)
    tracemalloc.start()
    try:
        with open_media(client, origin.url + "/a.bin", policy=POLICY, limits=limits) as stream:
            while chunk := stream.read(64 * 1024):
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(b"\0" * size).hexdigest()
    assert peak < 8 * 1024**2, f"peak {peak / 1024**2:.1f} MiB"


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "gzip, br"])
def test_encodings_that_cannot_be_verified_are_refused(client: httpx.Client, encoding: str) -> None:
    with pytest.raises(PermanentDownloadError, match="content encoding"):
        download(client, encoded(b"\x00" * 100, encoding).url + "/a.png")


def test_garbage_after_the_end_of_the_gzip_stream_is_an_error(client: httpx.Client) -> None:
    with pytest.raises(TransientDownloadError, match="after the end"):
        download(client, encoded(GZ_PNG + b"<html>trailer</html>").url + "/a.png")


def test_a_corrupt_gzip_body_is_an_error(client: httpx.Client) -> None:
    corrupt = GZ_PNG[:200] + bytes(b ^ 0x55 for b in GZ_PNG[200:400]) + GZ_PNG[400:]
    with pytest.raises(TransientDownloadError, match="corrupt gzip body"):
        download(client, encoded(corrupt).url + "/a.png")


def test_an_error_page_inside_gzip_is_still_not_media(client: httpx.Client) -> None:
    origin = encoded(gzip.compress(b"\n\n" + HTML))
    with pytest.raises(PermanentDownloadError, match="not media"):
        download(client, origin.url + "/a.png")
