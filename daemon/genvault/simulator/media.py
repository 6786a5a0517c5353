"""Deterministic fake media bytes, generated on the fly and never held in memory.

Simulated providers must serve files of realistic size (up to GBs, for benchmarks)
whose SHA-256 the tests know in advance, without keeping them anywhere. A file is
therefore a pure function of a :class:`MediaSpec`: a 64 KiB pseudo-random block
derived from the seed is repeated, the first 8 bytes of every 64 KiB block are
replaced by the block's index (so content differs by offset and a resumed download
that splices at the wrong place is caught by the hash), and a real magic header for
the kind is laid over the start so content sniffing accepts the file.

Generating a byte range costs one ``bytes.join`` over zero-copy memoryview slices,
which runs at several GB/s.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from genvault.simulator.picture import tiny_jpeg

MediaKind = Literal["image", "video", "audio"]

BLOCK_SIZE: Final = 64 * 1024
"""Period of the pseudo-random pattern; each block starts with its 8-byte index."""
DEFAULT_CHUNK: Final = 256 * 1024
READ_ALL_LIMIT: Final = 64 * 1024 * 1024
"""``read_all`` refuses bigger files: it exists for small test sizes only."""

CONTENT_TYPES: Final[dict[str, str]] = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
}
EXTENSIONS: Final[dict[str, str]] = {"image": ".jpg", "video": ".mp4", "audio": ".mp3"}

# JPEG: SOI + APP0 "JFIF\0" v1.1, 72x72 dpi, no thumbnail. Ends with EOI (see _suffix).
_JPEG_HEAD: Final = bytes.fromhex("ffd8ffe000104a46494600010101004800480000")
_JPEG_TAIL: Final = b"\xff\xd9"
# MP4: a 32-byte ftyp box (isom, minor 0x200, brands isom iso2 avc1 mp41); an mdat box
# header covering the rest of the file is appended when the file is big enough.
_MP4_FTYP: Final = (
    b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + b"isom" + b"iso2" + b"avc1" + b"mp41"
)
# MP3: an empty ID3v2.4 tag, then an MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz).
_MP3_HEAD: Final = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64"


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """Everything that determines a fake file's bytes: same spec, same bytes, forever."""

    seed: str
    size: int
    kind: MediaKind

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"media size must be >= 0, got {self.size}")
        if self.kind not in CONTENT_TYPES:
            raise ValueError(f"unknown media kind {self.kind!r}")

    @property
    def content_type(self) -> str:
        """MIME type a CDN would send for this kind."""
        return CONTENT_TYPES[self.kind]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.kind]


def content_type(kind: MediaKind) -> str:
    """MIME type for a media kind (image/jpeg, video/mp4, audio/mpeg)."""
    return CONTENT_TYPES[kind]


@lru_cache(maxsize=256)
def _block(seed: str) -> bytes:
    """The 64 KiB pseudo-random pattern of a seed (cached: at most 16 MiB in total)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest, "big")).randbytes(BLOCK_SIZE)


def _prefix(spec: MediaSpec) -> bytes:
    """Bytes laid over the start of the file: the kind's magic header."""
    if spec.kind == "image":
        return tiny_jpeg(spec.seed)  # a whole small JPEG, so browsers can draw the file
    if spec.kind == "audio":
        return _MP3_HEAD
    head = _MP4_FTYP
    rest = spec.size - len(head)
    if rest >= 8 and rest < 2**32:
        head += rest.to_bytes(4, "big") + b"mdat"
    elif rest >= 16:
        head += b"\x00\x00\x00\x01mdat" + rest.to_bytes(8, "big")
    return head


def _suffix(spec: MediaSpec) -> bytes:
    """Bytes laid over the end of the file (JPEG's EOI marker), if it has room for them."""
    if spec.kind == "image" and spec.size >= len(_JPEG_HEAD) + len(_JPEG_TAIL):
        return _JPEG_TAIL
    return b""


def _render(block: bytes, start: int, stop: int) -> bytes:
    """Bytes [start, stop) of the repeating pattern, with each block's index stamped in."""
    view = memoryview(block)
    parts: list[bytes | memoryview] = []
    pos = start
    while pos < stop:
        index, offset = divmod(pos, BLOCK_SIZE)
        upto = min(BLOCK_SIZE, offset + (stop - pos))
        if offset < 8:
            parts.append(index.to_bytes(8, "big")[offset : min(8, upto)])
        if upto > 8:
            parts.append(view[max(offset, 8) : upto])
        pos += upto - offset
    return b"".join(parts)


def _overlay(piece: bytes, piece_start: int, patch: bytes, patch_start: int) -> bytes:
    """Return ``piece`` with the overlapping part of ``patch`` written over it."""
    lo = max(piece_start, patch_start)
    hi = min(piece_start + len(piece), patch_start + len(patch))
    if lo >= hi:
        return piece
    buf = bytearray(piece)
    buf[lo - piece_start : hi - piece_start] = patch[lo - patch_start : hi - patch_start]
    return bytes(buf)


def iter_bytes(
    spec: MediaSpec, start: int = 0, end: int | None = None, chunk: int = DEFAULT_CHUNK
) -> Iterator[bytes]:
    """Yield bytes ``[start, end)`` of the file (``end`` exclusive, clamped to the size).

    Chunks are at most ``chunk`` bytes; the output does not depend on the chunk size,
    so any split of the file into ranges concatenates back to the whole.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    stop = spec.size if end is None else min(end, spec.size)
    if start >= stop:
        return
    block = _block(spec.seed)
    prefix = _prefix(spec)
    suffix = _suffix(spec)
    suffix_start = spec.size - len(suffix)
    pos = start
    while pos < stop:
        nxt = min(stop, pos + chunk)
        piece = _render(block, pos, nxt)
        if pos < len(prefix):
            piece = _overlay(piece, pos, prefix, 0)
        if suffix and nxt > suffix_start:
            piece = _overlay(piece, pos, suffix, suffix_start)
        yield piece
        pos = nxt


@lru_cache(maxsize=8192)
def sha256(spec: MediaSpec) -> str:
    """Hex SHA-256 of the whole file, computed by streaming and cached per spec."""
    digest = hashlib.sha256()
    for piece in iter_bytes(spec, chunk=1024 * 1024):
        digest.update(piece)
    return digest.hexdigest()


def read_all(spec: MediaSpec) -> bytes:
    """The whole file in memory; for small test sizes only (refuses > 64 MiB)."""
    if spec.size > READ_ALL_LIMIT:
        raise ValueError(f"read_all is for small files; {spec.size} bytes is too big")
    return b"".join(iter_bytes(spec))
