"""The simulators' images start with a whole small JPEG (drawn by a browser in
tests/acceptance/test_status_page_browser.py); here its structure, byte by byte."""

from __future__ import annotations

from genvault.simulator import media
from genvault.simulator.media import MediaSpec
from genvault.simulator.picture import tiny_jpeg


def _segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of each segment up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    pos, out = 2, []
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return out


def test_a_baseline_jpeg_of_128_by_96() -> None:
    data = tiny_jpeg("seed")
    segments = dict(_segments(data))
    assert segments[0xE0].startswith(b"JFIF\x00")
    sof = segments[0xC0]
    assert (int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")) == (96, 128)
    assert sof[5] == 3, "three components: colour"
    assert data.endswith(b"\xff\xd9")
    scan = data[data.index(b"\xff\xda") + 14 : -2]
    assert all(scan[i + 1] == 0 for i in range(len(scan) - 1) if scan[i] == 0xFF), "stuffed"
    assert len(data) < 1200, "fits well inside the smallest image the tests use"


def test_deterministic_and_seed_dependent() -> None:
    assert tiny_jpeg("a") == tiny_jpeg("a")
    assert tiny_jpeg("a") != tiny_jpeg("b")


def test_image_files_start_with_it() -> None:
    spec = MediaSpec("file-seed", 20_000, "image")
    data = media.read_all(spec)
    assert data.startswith(tiny_jpeg("file-seed"))
    assert len(data) == 20_000 and data.endswith(b"\xff\xd9")
