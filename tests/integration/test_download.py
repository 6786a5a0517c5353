"""Media downloads against a scripted origin over loopback: what gets refused, what resumes.

Each test drives :func:`genvault.net.media.open_media` through the real guarded
client against :class:`tests.fixtures.origin.Origin`, so truncation, lying
lengths, drips and Range resumes are real socket behaviour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import MediaGoneError, PermanentDownloadError, TransientDownloadError
from genvault.net.client import build_client
from genvault.net.media import DownloadLimits, open_media
from genvault.net.policy import NetworkPolicy
from tests.fixtures.origin import Origin, Reply

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400  # ~100 KiB, starts like an image
ETAG = '"v1"'
POLICY = NetworkPolicy(allow_private=True)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_client(NetworkSettings(read_timeout=2.0, connect_timeout=2.0), POLICY) as c:
        yield c


def ranged(body: bytes, *, cut_first_at: int | None = None, etag: str = ETAG) -> Origin:
    """An origin serving ``body`` with Range support; the first full reply is cut short."""
    state = {"cut": cut_first_at}

    def script(req: httpx.Request) -> Reply:
        headers = {"Content-Type": "image/png", "Accept-Ranges": "bytes", "ETag": etag}
        rng = req.headers.get("range")
        if rng and req.headers.get("if-range") == etag:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            assert m is not None
            start = int(m.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return Reply(206, headers, body[start:])
        cut, state["cut"] = state["cut"], None
        return Reply(200, headers, body, send_bytes=cut)

    return Origin(script)


def download(client: httpx.Client, url: str, limits: DownloadLimits | None = None) -> bytes:
    with open_media(client, url, policy=POLICY, limits=limits or DownloadLimits()) as stream:
        out = bytearray()
        while chunk := stream.read(64 * 1024):
            out += chunk
        return bytes(out)


# --------------------------------------------------------------------------- resume


def test_a_broken_body_resumes_with_range_and_if_range(client: httpx.Client) -> None:
    origin = ranged(PNG, cut_first_at=30_000)
    with open_media(client, origin.url + "/a.png", policy=POLICY, limits=DownloadLimits()) as s:
        data = s.read()
        resumes = s.resumes
    assert hashlib.sha256(data).digest() == hashlib.sha256(PNG).digest()
    assert resumes == 1
    second = origin.requests[1]
    assert second.headers["range"] == "bytes=30000-"
    assert second.headers["if-range"] == ETAG


def test_resume_is_off_when_attempts_are_zero(client: httpx.Client) -> None:
    origin = ranged(PNG, cut_first_at=30_000)
    with pytest.raises(TransientDownloadError, match="connection broke after 30000 of 102408"):
        download(client, origin.url + "/a.png", DownloadLimits(resume_attempts=0))
    assert len(origin.requests) == 1


def test_a_changed_file_is_not_spliced(client: httpx.Client) -> None:
    """If-Range mismatch: the origin sends the whole new file (200), which must not be appended."""
    calls = {"n": 0}

    def script(req: httpx.Request) -> Reply:
        calls["n"] += 1
        headers = {"Content-Type": "image/png", "Accept-Ranges": "bytes"}
        if calls["n"] == 1:
            return Reply(200, {**headers, "ETag": '"old"'}, PNG, send_bytes=10_000)
        return Reply(200, {**headers, "ETag": '"new"'}, PNG[::-1])

    origin = Origin(script)
    with pytest.raises(TransientDownloadError, match="HTTP 200 to a Range request"):
        download(client, origin.url + "/a.png")


def test_no_resume_without_a_validator(client: httpx.Client) -> None:
    def script(req: httpx.Request) -> Reply:
        return Reply(200, {"Content-Type": "image/png", "Accept-Ranges": "bytes"}, PNG, 5_000)

    origin = Origin(script)
    with pytest.raises(TransientDownloadError, match="connection broke after 5000 of"):
        download(client, origin.url + "/a.png")
    assert len(origin.requests) == 1, "without ETag/Last-Modified a resume could splice files"


def test_resumes_are_capped(client: httpx.Client) -> None:
    """Every reply, ranged or not, breaks off: the download gives up after the cap."""

    def script(req: httpx.Request) -> Reply:
        headers = {"Content-Type": "image/png", "Accept-Ranges": "bytes", "ETag": ETAG}
        m = re.fullmatch(r"bytes=(\d+)-", req.headers.get("range", ""))
        if m:
            start = int(m.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(PNG) - 1}/{len(PNG)}"
            return Reply(206, headers, PNG[start:], send_bytes=1_000)
        return Reply(200, headers, PNG, send_bytes=1_000)

    origin = Origin(script)
    with pytest.raises(TransientDownloadError, match="connection broke after 3000 of"):
        download(client, origin.url + "/a.png", DownloadLimits(resume_attempts=2))
    assert len(origin.requests) == 3


def test_a_range_reply_at_the_wrong_offset_is_refused(client: httpx.Client) -> None:
    def script(req: httpx.Request) -> Reply:
        headers = {"Content-Type": "image/png", "Accept-Ranges": "bytes", "ETag": ETAG}
        if req.headers.get("range"):
            headers["Content-Range"] = f"bytes 0-{len(PNG) - 1}/{len(PNG)}"
            return Reply(206, headers, PNG)
        return Reply(200, headers, PNG, send_bytes=4_000)

    origin = Origin(script)
    with pytest.raises(TransientDownloadError, match="wanted bytes 4000-"):
        download(client, origin.url + "/a.png")


# --------------------------------------------------------------------------- not media, not whole


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
        ("application/json", b'{"error": "expired"}'),
        ("image/png", b"<!doctype html><html><body>403</body></html>"),  # a lying CDN
        ("video/mp4", b'  {"code": 1101, "msg": "token invalid"}'),
        ("application/octet-stream", b"<?xml version='1.0'?><Error><Code>x</Code></Error>"),
    ],
)
def test_error_pages_are_never_media(client: httpx.Client, ctype: str, body: bytes) -> None:
    origin = Origin(lambda req: Reply(200, {"Content-Type": ctype}, body))
    with pytest.raises(PermanentDownloadError, match="not media"):
        download(client, origin.url + "/x")


def test_a_short_body_is_never_complete(client: httpx.Client) -> None:
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG, send_bytes=777))
    with pytest.raises(TransientDownloadError, match="connection broke after 777 of 102408"):
        download(client, origin.url + "/x")


def test_size_cap_from_the_declared_length(client: httpx.Client) -> None:
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG))
    with pytest.raises(PermanentDownloadError, match="exceeds the cap of 1000"):
        download(client, origin.url + "/x", DownloadLimits(max_bytes=1000))


def test_size_cap_while_streaming_a_body_of_unknown_length(client: httpx.Client) -> None:
    def script(req: httpx.Request) -> Reply:
        return Reply(200, {"Content-Type": "image/png"}, PNG, declare_length=False)

    origin = Origin(script)
    with pytest.raises(PermanentDownloadError, match="exceeds the cap of 50000 bytes"):
        download(client, origin.url + "/x", DownloadLimits(max_bytes=50_000))


def test_a_body_of_unknown_length_is_read_to_the_end(client: httpx.Client) -> None:
    origin = Origin(
        lambda req: Reply(200, {"Content-Type": "image/png"}, PNG, declare_length=False)
    )
    assert download(client, origin.url + "/x") == PNG


def test_a_dripping_origin_is_abandoned(client: httpx.Client) -> None:
    """One byte at a time never trips a read timeout; the low-speed limit catches it."""
    origin = Origin(lambda req: Reply(200, {"Content-Type": "image/png"}, PNG, drip_bps=2_000))
    limits = DownloadLimits(low_speed_bps=50_000, low_speed_seconds=0.5, resume_attempts=0)
    with pytest.raises(TransientDownloadError, match="too slow"):
        download(client, origin.url + "/x", limits)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_gone_statuses(client: httpx.Client, status: int) -> None:
    origin = Origin(lambda req: Reply(status, {"Content-Type": "application/xml"}, b"<Error/>"))
    with pytest.raises(MediaGoneError):
        download(client, origin.url + "/x")


@pytest.mark.parametrize("status", [429, 500, 502, 503, 408])
def test_transient_statuses(client: httpx.Client, status: int) -> None:
    origin = Origin(lambda req: Reply(status, {}, b"busy"))
    with pytest.raises(TransientDownloadError, match=f"HTTP {status}"):
        download(client, origin.url + "/x")
