"""Make glibc return freed multipart buffers to the OS instead of keeping them.

genvault moves large files to S3 as 8 MiB parts (three part buffers per file in flight,
made per file and freed with it: :mod:`genvault.storage.s3_multipart`). glibc serves an
allocation of 128 KiB or more with a mapping of its own and unmaps it on free, but the
first such free *raises* that threshold (its "dynamic mmap threshold", up to 32 MiB on
64-bit): from then on the 8 MiB parts are carved from the heap and from per-thread
arenas, where freed blocks stay resident and fragment. The process then grows with the
number of parts it has handled, not with the parts in flight. Pinning the threshold with
``mallopt`` also turns the adjustment off, so every part lives in its own mapping and is
handed back whole when freed. Bench 3 (peak RSS archiving one 2 GB video): 157 MB
before, 146 MB after. The price is a page fault per 4 KiB of every fresh part: about
+0.7 CPU-s per GB in bench 1, with its wall-time ratios unchanged within this machine's
noise (0.80-0.84 of the bare pipeline either way). A long-running daemon gains most: its
resident size no longer creeps with every large file it has moved.

An operator's own ``MALLOC_MMAP_THRESHOLD_`` wins (glibc applied it at start, and
we leave it alone), and on a libc without ``mallopt`` (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

M_MMAP_THRESHOLD: Final = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""
DEFAULT_THRESHOLD: Final = 4 * 1024 * 1024
"""Allocations from 4 MiB up get their own mapping: multipart parts (5 MiB at the
least), not 1 MB images nor the interpreter's small objects, which the heap reuses
without a system call or a page fault."""
OPERATOR_ENV: Final = "MALLOC_MMAP_THRESHOLD_"


def pin_mmap_threshold(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Set glibc's mmap threshold once for this process; True when it was applied."""
    if not sys.platform.startswith("linux") or OPERATOR_ENV in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold) == 1)
