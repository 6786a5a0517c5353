"""3. Memory: peak RSS of genvault archiving one 2 GB video vs one 20 MB file.

Issue 5: the 2 GB case (a multipart upload) must peak at 150 MB RSS or less and within
1.2x of the 20 MB case: bytes are streamed, never buffered whole, so the size of the
file must not show in the process's memory.

Each case is its own ``genvault run --once`` child on a fresh database (its schema
created beforehand by ``genvault db upgrade``, as a deployment does once per release,
so the run starts at head like every run but the first), and its peak
RSS is that child's ``ru_maxrss`` from ``os.wait4`` (the whole process: interpreter,
imports, SQLite, boto3's transfer threads, buffers), forked from a bare launcher so
that the bench's own memory does not leak into the figure (``bench.infra.run_child``).
A third run archiving one 1 MB image (a single ``PutObject``) shows the floor: what
the process costs before any multipart upload starts. Both compared cases are above
the 8 MB multipart threshold, so they take the same code path and differ only in size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.core import Result, Scale
from bench.infra import ChildRun, MiB, Source, run_genvault, s3_kind_for, s3_server, workspace

NAME: Final = "memory"
TITLE: Final = "peak RSS archiving a 2 GB video vs a 20 MB file"
RATIOS: Final = ("large / small peak RSS", "large peak RSS / 150 MB budget")
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
BUDGET_MB: Final = 150.0
CONCURRENCY: Final = 8
BUCKET: Final = "bench-memory"


@dataclass(frozen=True)
class Case:
    label: str
    size: int
    kind: str  # "image" or "video"


CASES: Final = {
    Scale.FULL: (
        Case("floor: one 1 MB image", MiB, "image"),
        Case("small: one 20 MB video", 20 * MiB, "video"),
        Case("large: one 2 GB video", 2048 * MiB, "video"),
    ),
    Scale.SMOKE: (
        Case("floor: one 1 MB image", MiB, "image"),
        Case("small: one 10 MB video", 10 * MiB, "video"),
        Case("large: one 48 MB video", 48 * MiB, "video"),
    ),
}


def source_for(case: Case) -> Source:
    """A source with exactly one file of the case's size."""
    if case.kind == "image":
        return Source(images=1, image_size=case.size, seed=11)
    return Source(videos=1, video_size=case.size, seed=11)


def run(scale: Scale) -> Result:
    """Each case in its own genvault process, smallest first, against one S3 server."""
    result = Result(NAME, TITLE, scale)
    runs: list[tuple[Case, ChildRun]] = []
    with workspace(NAME) as work, s3_server(s3_kind_for(scale), work) as s3:
        s3.create_bucket(BUCKET)
        for i, case in enumerate(CASES[scale]):
            prefix = f"case{i}"
            with source_for(case) as source:
                child = run_genvault(
                    prefix,
                    workdir=work,
                    s3=s3,
                    bucket=BUCKET,
                    prefix=prefix,
                    source=source,
                    concurrency=CONCURRENCY,
                    migrated=True,
                ).child
            s3.empty(BUCKET, f"{prefix}/")
            runs.append((case, child))
        kind = s3.kind
    report(result, runs, kind)
    return result


def report(result: Result, runs: list[tuple[Case, ChildRun]], s3_kind: str) -> None:
    """Peak RSS per case, the large case's throughput, the two target ratios."""
    for case, child in runs:
        result.figure(f"{case.label}: peak RSS", child.max_rss_mb, "MB")
    (_, small), (large_case, large) = runs[-2], runs[-1]
    result.figure(f"{large_case.label}: wall time", large.seconds, "s")
    result.figure(f"{large_case.label}: MB/s", large_case.size / MiB / large.seconds, "MB/s")
    result.ratio(RATIOS[0], large.max_rss_mb / small.max_rss_mb, 1.2, at_most=True)
    result.ratio(RATIOS[1], large.max_rss_mb / BUDGET_MB, 1.0, at_most=True)
    result.note(
        f"ru_maxrss of each genvault run --once process (os.wait4), S3 server {s3_kind}, "
        "default multipart settings (8 MB threshold and parts)"
    )
