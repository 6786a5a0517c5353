"""1b. Raw throughput on loopback into a local folder: genvault vs rclone vs a bare script.

Issue 14: 200 x 1 MB images and 5 x 50 MB videos (450 MB) from the loopback simulators
into a local folder, 8 transfers each; genvault must reach at least rclone's
throughput, rclone's time **including a syncfs of its folder** (genvault fsyncs every
file it archives and the folder it renames it into; rclone fsyncs nothing, so its
bytes would still be in the page cache when it exits). On loopback nothing waits on
the network: this measures CPU per byte on a 2-core box where the source and the
contender share the cores.

Contenders, each a child process with the same concurrency and the same source bytes,
each writing into a fresh folder on the same filesystem:

* **genvault**: ``genvault run --once`` (``storage.url = file://...``) with two
  CrowdComputed accounts (images, videos): sync, archive with size and sha256 checks,
  fsync, metadata, sidecars. Its database is at the latest schema beforehand
  (``genvault db upgrade``, untimed), as after a release's first run;
* **rclone** (Debian's): ``sh -c 'rclone copy :http: DIR ... && sync -f DIR'`` with
  ``--files-from --no-traverse`` (a HEAD, then a GET per file; see ``throughput``),
  ``--transfers 8 --checkers 8``; ``sync -f`` is coreutils' ``syncfs(2)`` of the
  folder's filesystem, inside the timed process;
* **bare**: :func:`bare_copy`, 8 threads, httpx ``stream`` -> ``iter_raw`` (httpx's
  default read size) -> ``sha256.update`` + ``write`` -> ``fsync`` per file: the same
  durability and hash as genvault with nothing else (no checks, no database, no
  sidecars, no temp file and rename). The floor of a Python archiver on this stack.

The bench calls ``sync(2)`` before every run so that no contender pays for another's
dirty pages, and empties the folders between runs. Every contender runs ``rounds``
times in rotating order; the **median** counts (noise on a shared box goes both
ways), and the best is printed too.

``python -m bench.local bare JOB.json`` is the bare pipeline's child entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from bench.core import Result, Scale
from bench.infra import (
    ChildRun,
    MiB,
    Phases,
    Source,
    child_env,
    python_module,
    read_json,
    run_child,
    run_genvault,
    verify_folder,
    workspace,
    write_json,
)
from bench.throughput import Sizes

NAME: Final = "local"
TITLE: Final = "raw loopback into a local folder vs rclone (+ syncfs) and a bare script"
RATIOS: Final = (
    "genvault / rclone incl. syncfs (throughput)",
    "genvault / bare hash+write+fsync (throughput)",
)
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
CONCURRENCY: Final = 8
"""genvault's default ``archive.concurrency``; rclone ``--transfers``, the bare pool."""
CONTENDERS: Final = ("genvault", "rclone", "bare")
SYNC: Final = "/usr/bin/sync" if Path("/usr/bin/sync").exists() else "sync"


SIZES: Final = {
    Scale.FULL: Sizes(images=200, image_size=MiB, videos=5, video_size=50 * MiB, rounds=3),
    Scale.SMOKE: Sizes(images=10, image_size=256 * 1024, videos=1, video_size=4 * MiB, rounds=1),
}


@dataclass(frozen=True)
class Setup:
    """Everything a contender needs for one run."""

    work: Path
    source: Source
    round: int
    phases: dict[str, Phases]
    """genvault's phases by child name, filled by the genvault contender."""

    def folder(self, contender: str) -> Path:
        return self.work / "archive" / f"{contender}-{self.round}"


def run(scale: Scale) -> Result:
    """All contenders, ``rounds`` times each, against one source, into fresh folders."""
    sizes = SIZES[scale]
    result = Result(NAME, TITLE, scale)
    source = Source(sizes.images, sizes.image_size, sizes.videos, sizes.video_size)
    runs: dict[str, list[ChildRun]] = {name: [] for name in CONTENDERS}
    phases: dict[str, Phases] = {}
    loads: list[float] = []
    with workspace(NAME) as work, source:
        for rnd in range(sizes.rounds):
            order = CONTENDERS[rnd % 3 :] + CONTENDERS[: rnd % 3]
            for name in order:
                setup = Setup(work, source, rnd, phases)
                os.sync()  # nobody pays for the previous contender's dirty pages
                loads.append(os.getloadavg()[0])
                runs[name].append(RUNNERS[name](setup))
                shutil.rmtree(setup.folder(name), ignore_errors=True)
    report(result, sizes, source, runs, phases, loads)
    return result


def median_run(runs: list[ChildRun]) -> ChildRun:
    """The run with the median wall time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[(len(ordered) - 1) // 2]


def report(
    result: Result,
    sizes: Sizes,
    source: Source,
    runs: dict[str, list[ChildRun]],
    phases: dict[str, Phases],
    loads: list[float],
) -> None:
    """Figures per contender (median run), the target ratios, and how it was measured."""
    total = source.total_bytes
    med = {name: median_run(runs[name]) for name in CONTENDERS}
    for name in CONTENDERS:
        child = med[name]
        result.figure(f"{name}: MB/s (wall, whole process, median)", mb_s(total, child), "MB/s")
        result.figure(f"{name}: wall time (median)", child.seconds, "s")
        result.figure(f"{name}: wall time (best)", min(r.seconds for r in runs[name]), "s")
        result.figure(f"{name}: CPU time (median run)", child.cpu_seconds, "CPU-s")
        result.figure(f"{name}: CPU time per GB", child.cpu_seconds / (total / 1024**3), "CPU-s")
        result.figure(f"{name}: peak RSS (median run)", child.max_rss_mb, "MB")
    result.figure("genvault: peak RSS (largest of all runs)", max_rss(runs["genvault"]), "MB")
    ph = phases[med["genvault"].name]
    result.figure("genvault: archive phase (job.archive log)", ph.archive, "s")
    result.figure("genvault: archive phase MB/s", total / MiB / ph.archive if ph.archive else 0.0)
    result.figure("genvault: sidecars after the last file", ph.sidecars, "s")
    result.figure("genvault: start-up, sync, shutdown", med["genvault"].seconds - ph.archive, "s")
    result.figure("genvault: start to the first download", ph.first_download, "s")
    result.figure("load average (1 min) before the runs, median", statistics.median(loads))
    g = med["genvault"].seconds
    result.ratio(RATIOS[0], med["rclone"].seconds / g, 1.0)
    result.ratio(RATIOS[1], med["bare"].seconds / g)
    per_round = [
        runs["rclone"][i].seconds / runs["genvault"][i].seconds for i in range(sizes.rounds)
    ]
    images = sum(1 for f in source.files if f.kind == "image")
    result.note(
        f"{images} x {sizes.image_size / MiB:g} MB + {len(source.files) - images} x "
        f"{sizes.video_size / MiB:g} MB ({total / MiB:.0f} MB), concurrency {CONCURRENCY}, "
        f"into a local folder; median of {sizes.rounds} run(s) each, rotating order; "
        "times are whole child processes (start-up included)"
    )
    result.note("genvault / rclone per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    result.note(
        "rclone's time includes `sync -f` (syncfs) of its folder; genvault and bare fsync "
        "each file themselves; ratios are throughput ratios (other's time / genvault's)"
    )


def mb_s(total: int, child: ChildRun) -> float:
    return total / MiB / child.seconds


def max_rss(runs: list[ChildRun]) -> float:
    return max(r.max_rss_mb for r in runs)


# --------------------------------------------------------------------------- contenders


def run_genvault_contender(setup: Setup) -> ChildRun:
    name = f"genvault-{setup.round}"
    run = run_genvault(
        name,
        workdir=setup.work,
        s3=None,
        bucket="",
        prefix="",
        source=setup.source,
        concurrency=CONCURRENCY,
        migrated=True,
        folder=setup.folder("genvault"),
    )
    setup.phases[run.child.name] = run.phases
    return run.child


def rclone_argv(setup: Setup, files_from: Path, folder: Path) -> list[str]:
    """``rclone copy`` from the origin into ``folder``, then ``sync -f`` of it, one process."""
    rclone = [
        "rclone", "copy", ":http:", str(folder),
        "--config", "/dev/null",
        "--http-url", setup.source.origin_data_url,
        "--files-from", str(files_from),
        "--no-traverse",
        "--transfers", str(CONCURRENCY),
        "--checkers", str(CONCURRENCY),
        "--stats", "0",
        "--log-level", "NOTICE",
    ]  # fmt: skip
    script = 'folder="$1"; shift; "$@" && exec ' + SYNC + ' -f "$folder"'
    return ["sh", "-c", script, "sh", str(folder), *rclone]


def run_rclone(setup: Setup) -> ChildRun:
    files_from = setup.work / "rclone-files.txt"
    files_from.write_text("".join(f"{f.path}\n" for f in setup.source.files))
    folder = setup.folder("rclone")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"rclone-{setup.round}"
    argv = rclone_argv(setup, files_from, folder)
    child = run_child(name, argv, env=child_env(), logs=setup.work / "logs", timeout=1800).check()
    verify_folder(folder, setup.source, who=name)
    return child


def run_bare(setup: Setup) -> ChildRun:
    name = f"bare-{setup.round}"
    folder = setup.folder("bare")
    job = write_json(
        setup.work / f"{name}.json",
        {
            "folder": str(folder),
            "concurrency": CONCURRENCY,
            "files": [{"url": f.url, "path": f.path} for f in setup.source.files],
        },
    )
    argv = python_module("bench.local", "bare", str(job))
    child = run_child(name, argv, env=child_env(), logs=setup.work / "logs", timeout=1800).check()
    verify_folder(folder, setup.source, who=name)
    return child


RUNNERS: Final[dict[str, Callable[[Setup], ChildRun]]] = {
    "genvault": run_genvault_contender,
    "rclone": run_rclone,
    "bare": run_bare,
}


# --------------------------------------------------------------------------- bare pipeline


def bare_copy(job: dict[str, Any]) -> None:
    """Stream every file into ``folder/path`` with a sha256, fsync each: nothing else."""
    concurrency = int(job["concurrency"])
    folder = Path(str(job["folder"]))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=60.0, limits=limits) as http:

        def one(item: dict[str, str]) -> str:
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with http.stream("GET", item["url"]) as response, target.open("wb") as out:
                response.raise_for_status()
                for chunk in response.iter_raw():
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return digest.hexdigest()

        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(one, job["files"]):
                pass


def main(argv: list[str]) -> int:
    """Child entry: ``python -m bench.local bare JOB.json``."""
    if len(argv) != 2 or argv[0] != "bare":
        print("usage: python -m bench.local bare JOB.json", file=sys.stderr)
        return 2
    bare_copy(read_json(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
