"""1. Raw throughput on loopback (CPU-bound): genvault vs rclone vs a bare pipeline.

Issue 5: 200 x 1 MB images and 5 x 200 MB videos archived to S3; genvault must reach
at least rclone's throughput and 0.9x a bare pipeline with no bookkeeping. On loopback
nothing waits on the network, so this measures CPU spent per byte on a 2-core box
where the source, the S3 server and the contender all compete for the same cores.

Contenders, each a child process with the same concurrency (genvault's default
``archive.concurrency``), the same source bytes and the same S3 server:

* **genvault**: ``genvault run --once`` with two CrowdComputed accounts (images,
  videos): sync, archive with size and sha256 checks, metadata, sidecars;
* **rclone** (Debian's): ``rclone copy :http: :s3:`` with ``--files-from`` and
  ``--no-traverse``, so it addresses each file on the origin directly (a HEAD, then
  a GET) instead of parsing directory listings, with genvault's part size (8 MiB),
  multipart cutoff (8 MiB) and upload concurrency per file (4);
* **bare**: :func:`bare_copy`, httpx ``stream`` -> ``iter_raw`` -> boto3
  ``upload_fileobj`` with genvault's part size and parts in flight (the TransferConfig
  genvault used before its own multipart upload, ``storage/s3_multipart.py``), in a pool:
  the floor of what any Python archiver on this stack can cost.

``python -m bench.throughput bare JOB.json`` is the bare pipeline's child entry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import httpx
from boto3.s3.transfer import TransferConfig

from bench.core import Result, Scale
from bench.infra import (
    ChildRun,
    MiB,
    Phases,
    S3Endpoint,
    Source,
    child_env,
    child_s3_client,
    python_module,
    read_json,
    run_child,
    run_genvault,
    s3_kind_for,
    s3_server,
    verify,
    workspace,
    write_json,
)

NAME: Final = "throughput"
TITLE: Final = "raw loopback throughput vs rclone and a bare httpx -> boto3 pipeline"
RATIOS: Final = ("genvault / rclone (throughput)", "genvault / bare pipeline (throughput)")
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
CONCURRENCY: Final = 8
"""genvault's default ``archive.concurrency``; rclone ``--transfers``, the bare pool."""
PART: Final = 8 * MiB
"""genvault's default multipart threshold and part size, given to every contender."""
PART_CONCURRENCY: Final = 4
"""Parts in flight per multipart upload: genvault's TransferConfig and rclone's default."""
BUCKET: Final = "bench-throughput"
CONTENDERS: Final = ("genvault", "rclone", "bare")


@dataclass(frozen=True)
class Sizes:
    images: int
    image_size: int
    videos: int
    video_size: int
    rounds: int
    """Each contender runs this many times, in alternating order (``throughput``: the
    fastest run counts; ``local``: the median)."""


SIZES: Final = {
    Scale.FULL: Sizes(images=200, image_size=MiB, videos=5, video_size=200 * MiB, rounds=2),
    Scale.SMOKE: Sizes(images=10, image_size=256 * 1024, videos=1, video_size=12 * MiB, rounds=1),
}


@dataclass(frozen=True)
class Setup:
    """Everything a contender needs for one run."""

    work: Path
    s3: S3Endpoint
    source: Source
    round: int
    phases: dict[str, Phases]
    """genvault's phases by child name, filled by the genvault contender."""

    def prefix(self, contender: str) -> str:
        return f"{contender}-{self.round}/"


def run(scale: Scale) -> Result:
    """All contenders, ``rounds`` times each, against one source and one S3 server."""
    sizes = SIZES[scale]
    result = Result(NAME, TITLE, scale)
    source = Source(sizes.images, sizes.image_size, sizes.videos, sizes.video_size)
    best: dict[str, ChildRun] = {}
    phases: dict[str, Phases] = {}
    with workspace(NAME) as work, s3_server(s3_kind_for(scale), work) as s3, source:
        s3.create_bucket(BUCKET)
        for rnd in range(sizes.rounds):
            order = CONTENDERS if rnd % 2 == 0 else tuple(reversed(CONTENDERS))
            for name in order:
                setup = Setup(work, s3, source, rnd, phases)
                child = RUNNERS[name](setup)
                s3.empty(BUCKET, setup.prefix(name))
                if name not in best or child.seconds < best[name].seconds:
                    best[name] = child
    report(result, sizes, source, best, phases[best["genvault"].name], s3.kind)
    return result


def report(
    result: Result,
    sizes: Sizes,
    source: Source,
    best: dict[str, ChildRun],
    phases: Phases,
    s3_kind: str,
) -> None:
    """Figures per contender, the two target ratios, and how it was measured."""
    total = source.total_bytes
    for name in CONTENDERS:
        child = best[name]
        result.figure(f"{name}: MB/s (wall, whole process)", total / MiB / child.seconds, "MB/s")
        result.figure(f"{name}: wall time", child.seconds, "s")
        result.figure(f"{name}: CPU time per GB", child.cpu_seconds / (total / 1024**3), "CPU-s")
        result.figure(f"{name}: peak RSS", child.max_rss_mb, "MB")
    result.figure("genvault: archive phase (job.archive log)", phases.archive, "s")
    result.figure("genvault: sidecars after the last file", phases.sidecars, "s")
    rest = best["genvault"].seconds - phases.archive
    result.figure("genvault: start-up, sync, shutdown", rest, "s")
    g = best["genvault"].seconds
    result.ratio(RATIOS[0], best["rclone"].seconds / g, 1.0)
    result.ratio(RATIOS[1], best["bare"].seconds / g, 0.95)
    images = sum(1 for f in source.files if f.kind == "image")
    result.note(
        f"{images} x {sizes.image_size / MiB:g} MB + {len(source.files) - images} x "
        f"{sizes.video_size / MiB:g} MB ({total / MiB:.0f} MB), concurrency {CONCURRENCY}, "
        f"S3 server {s3_kind}; best of {sizes.rounds} run(s) each, alternating order; "
        "times are whole child processes (start-up included)"
    )
    result.note(
        "ratios are throughput ratios (other's time / genvault's time); "
        "CPU time is the contender's own, not the source's or the S3 server's"
    )


# --------------------------------------------------------------------------- contenders


def run_genvault_contender(setup: Setup) -> ChildRun:
    run = run_genvault(
        f"genvault-{setup.round}",
        workdir=setup.work,
        s3=setup.s3,
        bucket=BUCKET,
        prefix=setup.prefix("genvault").rstrip("/"),
        source=setup.source,
        concurrency=CONCURRENCY,
    )
    setup.phases[run.child.name] = run.phases
    return run.child


def rclone_argv(setup: Setup, files_from: Path) -> list[str]:
    """``rclone copy`` from the origin into the bucket, sized like genvault."""
    return rclone_s3_argv(
        setup.s3,
        f"{BUCKET}/{setup.prefix('rclone')}",
        origin=setup.source.origin_data_url,
        files_from=files_from,
        transfers=CONCURRENCY,
    )


def rclone_s3_argv(
    s3: S3Endpoint, dest: str, *, origin: str, files_from: Path, transfers: int
) -> list[str]:
    """``rclone copy :http: :s3:DEST`` of the files listed in ``files_from`` on ``origin``:
    ``--no-traverse`` (a HEAD, then a GET per file), ``transfers`` at once (and as many
    checkers), genvault's part size, multipart cutoff and parts in flight. Shared with
    ``network`` so both benchmarks run rclone the same way."""
    return [
        "rclone", "copy", ":http:", f":s3:{dest}",
        "--config", "/dev/null",
        "--http-url", origin,
        "--files-from", str(files_from),
        "--no-traverse",
        "--s3-provider", "Other",
        "--s3-endpoint", s3.url,
        "--s3-force-path-style=true",
        "--s3-access-key-id", s3.access_key,
        "--s3-secret-access-key", s3.secret_key,
        "--s3-region", s3.region,
        "--transfers", str(transfers),
        "--checkers", str(transfers),
        "--s3-upload-cutoff", f"{PART // MiB}Mi",
        "--s3-chunk-size", f"{PART // MiB}Mi",
        "--s3-upload-concurrency", str(PART_CONCURRENCY),
        "--stats", "0",
        "--log-level", "NOTICE",
    ]  # fmt: skip


def run_rclone(setup: Setup) -> ChildRun:
    files_from = setup.work / "rclone-files.txt"
    files_from.write_text("".join(f"{f.path}\n" for f in setup.source.files))
    argv = rclone_argv(setup, files_from)
    name = f"rclone-{setup.round}"
    child = run_child(name, argv, env=child_env(), logs=setup.work / "logs", timeout=1800).check()
    verify(setup.s3, BUCKET, setup.prefix("rclone"), setup.source, who=name)
    return child


def run_bare(setup: Setup) -> ChildRun:
    name = f"bare-{setup.round}"
    job = write_json(
        setup.work / f"{name}.json",
        {
            "endpoint": setup.s3.url,
            "bucket": BUCKET,
            "concurrency": CONCURRENCY,
            "files": [
                {"url": f.url, "key": setup.prefix("bare") + f.path} for f in setup.source.files
            ],
        },
    )
    argv = python_module("bench.throughput", "bare", str(job))
    env = child_env(setup.s3.env())
    child = run_child(name, argv, env=env, logs=setup.work / "logs", timeout=1800).check()
    verify(setup.s3, BUCKET, setup.prefix("bare"), setup.source, who=name)
    return child


RUNNERS: Final[dict[str, Callable[[Setup], ChildRun]]] = {
    "genvault": run_genvault_contender,
    "rclone": run_rclone,
    "bare": run_bare,
}


# --------------------------------------------------------------------------- bare pipeline


class ChunkReader:
    """``read(n)`` over an iterator of byte chunks: the file-like ``upload_fileobj`` wants.

    Returns exactly ``n`` bytes until EOF (s3transfer makes one part per read) with a
    single join per read; only the chunk straddling the boundary is split.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            rest, self._pending = self._pending, b""
            return rest + b"".join(self._chunks)
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk, self._pending = self._pending or next(self._chunks, b""), b""
            if not chunk:
                break
            if len(chunk) > n - got:
                chunk, self._pending = chunk[: n - got], chunk[n - got :]
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def transfer_config() -> TransferConfig:
    """genvault's former TransferConfig: 8 MiB parts, 4 threads, 2 parts buffered (so 2 in
    flight: what ``storage/s3_multipart.py`` uploads per file now, without s3transfer)."""
    config = TransferConfig(
        multipart_threshold=PART,
        multipart_chunksize=PART,
        max_concurrency=PART_CONCURRENCY,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    config.max_in_memory_upload_chunks = 2
    return config


def bare_copy(job: dict[str, Any]) -> None:
    """Stream every file from its URL into S3: no checks, no hash, no database, no retry."""
    concurrency = int(job["concurrency"])
    s3 = child_s3_client(str(job["endpoint"]))
    config = transfer_config()
    bucket = str(job["bucket"])
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=60.0, limits=limits) as http:

        def one(item: dict[str, str]) -> None:
            with http.stream("GET", item["url"]) as response:
                response.raise_for_status()
                ctype = response.headers.get("content-type", "application/octet-stream")
                s3.upload_fileobj(
                    cast(BinaryIO, ChunkReader(response.iter_raw())),
                    bucket,
                    item["key"],
                    ExtraArgs={"ContentType": ctype},
                    Config=config,
                )

        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(one, job["files"]):
                pass


def main(argv: list[str]) -> int:
    """Child entry: ``python -m bench.throughput bare JOB.json``."""
    if len(argv) != 2 or argv[0] != "bare":
        print("usage: python -m bench.throughput bare JOB.json", file=sys.stderr)
        return 2
    bare_copy(read_json(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
