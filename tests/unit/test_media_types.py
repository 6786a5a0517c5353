"""Which media type a file's first bytes prove, and which extension a stored file gets.

The extension of a stored file used to come from the URL when the Content-Type was
generic, so ``.html``, ``.svg``, ``.php`` were possible: an archive served by a web
server would then run what a provider (or whoever forged a URL) chose. Extensions
now come from an allowlist keyed by the media type the bytes prove
(``sniff_media_type``), with the media kind's usual extension as the default. The
archive pass end to end, over HTTP: ``tests/integration/test_archive_hostile.py``.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

from genvault.net.media import sniff_media_type
from genvault.simulator.media import MediaSpec, read_all
from genvault.storage.keys import extension_for


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("image", "image/jpeg"), ("video", "video/mp4"), ("audio", "audio/mpeg")],
)
def test_the_simulators_files_are_recognised(kind: str, expected: str) -> None:
    head = read_all(MediaSpec("sniff", 4096, kind))[:512]  # type: ignore[arg-type]
    assert sniff_media_type(head)[0] == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"\x00\x00\x00\x1cftypqt  \x00\x00\x02\x00", "video/quicktime"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00", "audio/mp4"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "image/avif"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),
        (b"\xff\xf3\x90\x64", "audio/mpeg"),
        (b"\xff\xfd\x90\x64", "audio/mpeg"),  # layer II
        (b"\xff\xf1\x50\x80", "audio/aac"),
    ],
)
def test_magic_numbers(head: bytes, expected: str) -> None:
    assert sniff_media_type(head)[0] == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<svg xmlns='http://www.w3.org/2000/svg'>",
        b"<?php echo 1; ?>",
        b"MZ\x90\x00",  # a Windows executable
        b"%PDF-1.7",
        gzip.compress(b"x"),
        zlib.compress(b"x"),
        b"\xff\xd8",  # too short to be a JPEG
    ],
)
def test_anything_else_proves_nothing(head: bytes) -> None:
    assert sniff_media_type(head) == ()


def test_an_isom_mp4_may_be_audio() -> None:
    """The bytes cannot tell an M4A with an ``isom`` brand from a video: both are accepted."""
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2"
    assert {"video/mp4", "audio/mp4"} <= set(sniff_media_type(head))


@pytest.mark.parametrize(
    ("url", "content_type", "kind", "expected"),
    [
        ("https://cdn/x/page.html", "application/octet-stream", "image", "jpg"),
        ("https://cdn/x/page.htm", None, "image", "jpg"),
        ("https://cdn/x/drawing.svg", None, "image", "jpg"),
        ("https://cdn/x/drawing.svg", "image/svg+xml", "image", "jpg"),
        ("https://cdn/x/shell.php", None, "video", "mp4"),
        ("https://cdn/x/shell.phtml", None, "audio", "mp3"),
        ("https://cdn/x/run.exe", "application/octet-stream", "", "bin"),
        ("https://cdn/x/run.js", None, "", "bin"),
        ("https://cdn/x/archive.tar.gz", None, "other", "bin"),
        ("https://cdn/x/page.html%00.png", None, "image", "png"),  # no NUL trick: png
        ("https://cdn/x/real.png", "text/html", "image", "png"),  # the URL is on the list
        ("https://cdn/x/real.WEBP", None, "image", "webp"),
        ("https://cdn/x/a.html", "image/png", "image", "png"),  # the type decides
        ("https://cdn/x/a.flac", None, "audio", "flac"),
        ("https://cdn/x/a", "image/avif", "image", "avif"),
    ],
)
def test_extensions_come_from_the_allowlist(
    url: str, content_type: str | None, kind: str, expected: str
) -> None:
    assert extension_for(url, content_type, kind) == expected
