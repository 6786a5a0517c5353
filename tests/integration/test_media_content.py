"""What a media body really is, whatever its packets and headers say: sniffing, encodings.

Each test runs :func:`genvault.download.open_media` through the real guarded client
against a scripted loopback origin (:class:`tests.fixtures.origin.Origin`), which
splits a body into packets exactly where the test says (``Reply.pauses``), closes
connections mid-body, and sends whatever ``Content-Encoding`` it likes.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.download import DownloadLimits, open_media
from genvault.errors import PermanentDownloadError
from genvault.http import NetworkPolicy, build_client
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
