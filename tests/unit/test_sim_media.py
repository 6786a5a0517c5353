"""The simulator's fake media: real magic headers, deterministic, range-consistent."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from genvault.simulator import media
from genvault.simulator.media import MediaSpec

SIZES = [0, 1, 7, 65536, 65537]
KINDS: list[media.MediaKind] = ["image", "video", "audio"]


@pytest.mark.parametrize(
    ("kind", "magic", "content_type"),
    [
        ("image", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        ("video", b"\x00\x00\x00\x20ftypisom", "video/mp4"),
        ("audio", b"ID3", "audio/mpeg"),
    ],
)
def test_magic_header_and_content_type(
    kind: media.MediaKind, magic: bytes, content_type: str
) -> None:
    spec = MediaSpec("magic", 100_000, kind)
    data = media.read_all(spec)
    assert data.startswith(magic)
    assert spec.content_type == content_type == media.content_type(kind)


def test_jpeg_ends_with_eoi_and_mp4_has_mdat() -> None:
    assert media.read_all(MediaSpec("j", 5000, "image")).endswith(b"\xff\xd9")
    mp4 = media.read_all(MediaSpec("v", 5000, "video"))
    assert mp4[36:40] == b"mdat"
    assert int.from_bytes(mp4[32:36], "big") == 5000 - 32


def test_deterministic_and_seed_dependent() -> None:
    a = media.read_all(MediaSpec("seed-a", 200_000, "video"))
    assert a == media.read_all(MediaSpec("seed-a", 200_000, "video"))
    assert a != media.read_all(MediaSpec("seed-b", 200_000, "video"))


def test_content_differs_by_block() -> None:
    data = media.read_all(MediaSpec("blocks", 3 * media.BLOCK_SIZE, "audio"))
    blocks = [data[i : i + media.BLOCK_SIZE] for i in range(0, len(data), media.BLOCK_SIZE)]
    assert len(set(blocks)) == 3
    assert blocks[1][:8] == (1).to_bytes(8, "big")
    assert blocks[2][:8] == (2).to_bytes(8, "big")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_sizes_and_sha256(kind: media.MediaKind, size: int) -> None:
    spec = MediaSpec(f"size-{size}", size, kind)
    data = media.read_all(spec)
    assert len(data) == size
    assert media.sha256(spec) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES)
def test_small_files_are_a_prefix_of_the_header(kind: media.MediaKind, size: int) -> None:
    """Files smaller than the magic header are cut, not padded or broken."""
    big = media.read_all(MediaSpec("prefix", 100_000, kind))
    small = media.read_all(MediaSpec("prefix", size, kind))
    if size <= 16:
        assert small == big[:size]


@pytest.mark.parametrize("size", [*SIZES, 300_001])
def test_ranges_concatenate_to_whole(size: int) -> None:
    spec = MediaSpec("ranges", size, "video")
    whole = media.read_all(spec)
    cuts = sorted({0, size, *(c for c in (1, 5, 8, 9, 65535, 65536, 70_000, 262_145) if c < size)})
    parts = [
        b"".join(media.iter_bytes(spec, lo, hi, chunk=4099)) for lo, hi in itertools.pairwise(cuts)
    ]
    assert b"".join(parts) == whole
    for lo, hi in itertools.pairwise(cuts):
        assert b"".join(media.iter_bytes(spec, lo, hi)) == whole[lo:hi]


@pytest.mark.parametrize("chunk", [1, 7, 8, 65536, 100_000, 1 << 20])
def test_chunk_size_does_not_change_bytes(chunk: int) -> None:
    spec = MediaSpec("chunks", 140_000 if chunk > 1 else 3000, "image")
    pieces = list(media.iter_bytes(spec, chunk=chunk))
    assert all(0 < len(p) <= chunk for p in pieces)
    assert b"".join(pieces) == media.read_all(spec)


def test_range_edges() -> None:
    spec = MediaSpec("edges", 1000, "audio")
    assert list(media.iter_bytes(spec, 1000)) == []
    assert list(media.iter_bytes(spec, 500, 400)) == []
    assert b"".join(media.iter_bytes(spec, 990, 5000)) == media.read_all(spec)[990:]
    with pytest.raises(ValueError):
        list(media.iter_bytes(spec, -1))
    with pytest.raises(ValueError):
        list(media.iter_bytes(spec, chunk=0))


def test_invalid_specs_and_read_all_limit() -> None:
    with pytest.raises(ValueError):
        MediaSpec("neg", -1, "image")
    with pytest.raises(ValueError):
        MediaSpec("kind", 1, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        media.read_all(MediaSpec("huge", media.READ_ALL_LIMIT + 1, "video"))
