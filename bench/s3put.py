"""``S3Storage.put`` alone into s3rver: wall, the client's CPU and the server's CPU.

Not one of the benchmarks ``python -m bench`` runs (no ratio, no target): a probe used
for the S3 write path of issue 14 (bench/README.md, section 1, "The S3 write path") to
tell the client's cost from the server's. The same files as ``throughput`` (200 x 1 MB
+ 5 x 200 MB) from an in-memory source that hands out 64 KiB chunks (``read1``, like a
download), 8 puts at once through one storage, into a fresh s3rver; no simulators, no
database, no start-up. Run it against two trees to compare them::

    PYTHONPATH=TREE/daemon:$PWD .venv/bin/python -m bench.s3put [ROUNDS]

It prints each round's wall time and the client process's CPU, then the CPU s3rver
used over its whole life (every round, the warm-up and the deletes).
"""

from __future__ import annotations

import os
import random
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, cast

from bench.infra import MiB, s3_server, workspace
from genvault.malloc import pin_mmap_threshold
from genvault.storage.s3 import S3Storage

BUCKET = "bench-s3put"
CHUNK = 64 * 1024
BLOCK = random.Random(1).randbytes(MiB)


class ChunkSource:
    """``size`` bytes in chunks of at most 64 KiB (httpcore's read size)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0

    def _take(self, n: int) -> bytes:
        n = min(n, CHUNK, self.size - self.pos)
        if n <= 0:
            return b""
        off = self.pos % MiB
        end = off + n
        out = BLOCK[off:end] if end <= MiB else BLOCK[off:] + BLOCK[: end - MiB]
        self.pos += n
        return out

    def read1(self, n: int = -1) -> bytes:
        return self._take(CHUNK if n < 0 else n)

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        got = 0
        while n < 0 or got < n:
            chunk = self._take(CHUNK if n < 0 else n - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def readable(self) -> bool:
        return True


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 2
    pin_mmap_threshold()  # as genvault's CLI does at start
    files = [(f"v{i}", 200 * MiB) for i in range(5)] + [(f"i{i}", MiB) for i in range(200)]
    with workspace("s3put") as work, s3_server("s3rver", work) as s3:
        s3.create_bucket(BUCKET)
        os.environ.update(s3.env())
        storage = S3Storage(BUCKET, "p", endpoint_url=s3.url, region="us-east-1")
        storage.put("warm", cast(BinaryIO, ChunkSource(9 * MiB)), size_hint=9 * MiB)
        for rnd in range(rounds):
            cpu0, wall0 = time.process_time(), time.monotonic()

            def one(item: tuple[str, int], rnd: int = rnd) -> None:
                name, size = item
                storage.put(f"{rnd}/{name}", cast(BinaryIO, ChunkSource(size)), size_hint=size)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, files))
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
            print(
                f"round {rnd}: {wall:.2f} s wall, client {cpu:.2f} CPU-s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            s3.empty(BUCKET, f"{rnd}/")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"client peak RSS {rss:.1f} MB")
    times = os.times()
    print(f"s3rver over its life: {times.children_user + times.children_system:.2f} CPU-s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
