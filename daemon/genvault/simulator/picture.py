"""A small, real JPEG per seed: what the simulators' images start with.

Simulated images used to be a JPEG header over random bytes, which content
sniffing accepts but no browser can draw. The status page shows archived
images as thumbnails, and its browser test (and a person looking at the demo's
archive) needs them to decode. So an image file now starts with a complete
baseline JPEG, a mosaic of two colours derived from the seed; decoders stop at
its end-of-image marker and ignore the deterministic filler that follows, which
keeps sizes arbitrary and hashes known in advance (:mod:`genvault.simulator.media`).

Why hand-written and DC-only: no imaging library is a dependency, and a JPEG
whose 8x8 blocks are each one flat colour needs only the DC coefficient per
block and an end-of-block code, so the encoder is a page of code. The picture
is ~0.5 KB, well under the smallest image size the tests use.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from typing import Final

BLOCKS_WIDE: Final = 16
BLOCKS_HIGH: Final = 12
"""The picture is 128x96 pixels: 16x12 flat 8x8 blocks."""

_APP0: Final = bytes.fromhex("ffe000104a46494600010100000100010000")
"""JFIF 1.1 marker segment (no density, no thumbnail): the magic sniffers look for."""
# Standard luminance DC table (ITU T.81 Annex K.3): code lengths per category 0..11.
_DC_BITS: Final = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_CODES: Final = (
    (0b00, 2),
    (0b010, 3),
    (0b011, 3),
    (0b100, 3),
    (0b101, 3),
    (0b110, 3),
    (0b1110, 4),
    (0b11110, 5),
    (0b111110, 6),
    (0b1111110, 7),
    (0b11111110, 8),
    (0b111111110, 9),
)
_EOB: Final = (0b0, 1)
"""The AC table holds one symbol, end-of-block, as the one-bit code ``0``."""


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _headers(width: int, height: int) -> bytes:
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)  # quantizer 1: DC coefficients as they are
    components = b"".join(bytes((i, 0x11, 0)) for i in (1, 2, 3))  # Y Cb Cr, no subsampling
    sof = _segment(
        0xC0, b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03" + components
    )
    dht_dc = _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(range(12)))
    dht_ac = _segment(0xC4, b"\x10" + bytes((1,) + (0,) * 15) + b"\x00")
    sos = _segment(0xDA, b"\x03" + b"".join(bytes((i, 0x00)) for i in (1, 2, 3)) + b"\x00\x3f\x00")
    return b"\xff\xd8" + _APP0 + dqt + sof + dht_dc + dht_ac + sos


class _Bits:
    """Big-endian bit writer with JPEG's byte stuffing (0xFF is followed by 0x00)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._n = 0

    def put(self, value: int, length: int) -> None:
        self._acc = (self._acc << length) | (value & ((1 << length) - 1))
        self._n += length
        while self._n >= 8:
            self._n -= 8
            byte = (self._acc >> self._n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)
        self._acc &= (1 << self._n) - 1

    def flush(self) -> bytes:
        if self._n:
            self.put((1 << (8 - self._n)) - 1, 8 - self._n)  # pad with one-bits
        return bytes(self.out)


def _dc(bits: _Bits, diff: int) -> None:
    category = abs(diff).bit_length()
    code, length = _DC_CODES[category]
    bits.put(code, length)
    if category:
        bits.put(diff if diff > 0 else diff + (1 << category) - 1, category)
    bits.put(*_EOB)


def _ycbcr(r: float, g: float, b: float) -> tuple[float, float, float]:
    return (
        0.299 * r + 0.587 * g + 0.114 * b,
        128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
        128 + 0.5 * r - 0.418688 * g - 0.081312 * b,
    )


def _colours(seed: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Two gradient ends and a light accent, picked from the seed's hash."""
    d = hashlib.sha256(seed.encode("utf-8")).digest()

    def hue(h: float, light: float) -> tuple[float, ...]:
        return tuple(
            255 * light * (0.55 + 0.45 * math.cos(2 * math.pi * (h + k / 3))) for k in range(3)
        )

    h = d[0] / 256
    return hue(h, 0.55), hue(h + 0.25 + d[1] / 1024, 0.95), hue(h + 0.5, 1.0)


@lru_cache(maxsize=8192)  # ~0.9 KB each; encoding one takes ~1 ms
def tiny_jpeg(seed: str) -> bytes:
    """A complete 128x96 baseline JPEG for ``seed``: a diagonal gradient and a disc."""
    low, high, accent = _colours(seed)
    d = hashlib.sha256(b"disc:" + seed.encode("utf-8")).digest()
    cx, cy, radius = 3 + d[0] % 10, 2 + d[1] % 8, 2 + d[2] % 3
    bits = _Bits()
    previous = [0, 0, 0]
    for by in range(BLOCKS_HIGH):
        for bx in range(BLOCKS_WIDE):
            t = (bx + by) / (BLOCKS_WIDE + BLOCKS_HIGH - 2)
            rgb = [lo + (hi - lo) * t for lo, hi in zip(low, high, strict=True)]
            if math.hypot(bx - cx, by - cy) <= radius:
                rgb = [(c + a) / 2 for c, a in zip(rgb, accent, strict=True)]
            for i, level in enumerate(_ycbcr(*rgb)):
                dc = round(8 * (min(255.0, max(0.0, level)) - 128))
                _dc(bits, dc - previous[i])
                previous[i] = dc
    return _headers(BLOCKS_WIDE * 8, BLOCKS_HIGH * 8) + bits.flush() + b"\xff\xd9"


__all__ = ["tiny_jpeg"]
