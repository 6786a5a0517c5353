"""Shared machinery of the benchmarks: S3 servers, simulated sources, child processes.

Every contender (genvault, rclone, the bare pipeline, the sequential script) runs as
its own **child process**, and only the simulators live in the bench process: each
contender then pays for its own interpreter start and imports, none shares a GIL with
the source or the sink, and ``os.wait4`` gives each one's wall time, CPU time and
peak RSS exactly (:func:`run_child` forks contenders from a bare launcher, because a
child of the bench itself would inherit the bench's peak RSS). The S3 server is a
child process too, for the same GIL reason:

* ``moto`` (``ThreadedMotoServer`` in a child): smoke runs; objects live in memory
  (~0.75 GB RSS per GB stored, MEASURED.md), so only small data sets;
* ``s3rver`` (disk-backed, installed with npm into ``bench/.cache/`` on first use):
  full runs, ~100 MB RSS flat whatever is stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from bench.core import Scale
from genvault.simulator import crowdcomputed
from genvault.simulator.crowdcomputed import CrowdComputedSimulator
from genvault.simulator.server import SimServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MiB: Final = 1024 * 1024
REPO: Final = Path(__file__).resolve().parent.parent
CACHE: Final = REPO / "bench" / ".cache"
"""Ignored by git: s3rver's node_modules live here."""
S3RVER_VERSION: Final = "3.7.1"
API_KEY_ENV: Final = "BENCH_CC_KEY"
API_KEY: Final = "bench-crowdcomputed-key"
REGION: Final = "us-east-1"
DATA_PREFIX: Final = "/data/"
"""Where the CrowdComputed simulator's fake CDN serves files."""

S3Kind = Literal["moto", "s3rver"]


class BenchError(RuntimeError):
    """A contender did not do what it was asked (wrong object count, exit code, ...)."""


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ChildRun:
    """What ``os.wait4`` told about one finished child process."""

    name: str
    seconds: float
    returncode: int
    max_rss_mb: float
    cpu_seconds: float
    stdout: Path
    stderr: Path
    started_at: float = 0.0
    """Wall clock (POSIX seconds) just before the launcher was spawned: log lines'
    timestamps are read against it (the first download's delay)."""

    def tail(self, chars: int = 1500) -> str:
        """The end of the child's stderr, for error messages."""
        return self.stderr.read_text(errors="replace")[-chars:]

    def check(self) -> ChildRun:
        """Raise unless the child exited 0 (a benchmark of a failed run means nothing)."""
        if self.returncode != 0:
            raise BenchError(f"{self.name} exited {self.returncode}:\n{self.tail()}")
        return self

    def json_events(self, event: str) -> list[dict[str, Any]]:
        """genvault's JSON log lines with this ``event`` (structlog writes them to stderr)."""
        found: list[dict[str, Any]] = []
        for line in self.stderr.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    found.append(record)
        return found


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every contender: no CA bundle, no proxy, no AWS profile.

    rclone's S3 backend fails when ``AWS_CA_BUNDLE`` is set (MEASURED.md); nothing
    here uses TLS, so it is dropped for every contender alike. A developer's
    ``~/.aws`` must not change what is measured.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GENVAULT_"))
        and k.lower() not in ("http_proxy", "https_proxy")
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


_LAUNCHER: Final = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(report, "w") as out:
    json.dump({"seconds": seconds, "returncode": code, "max_rss_kib": usage.ru_maxrss,
               "cpu_seconds": usage.ru_utime + usage.ru_stime}, out)
sys.exit(code if code >= 0 else 128 - code)
"""
"""Forks and times one contender from a small process, then reports its ``wait4``.

Why not ``wait4`` on a child of the bench process itself: Linux carries the peak RSS
of the address space a process had before ``execve`` into its ``ru_maxrss``, and
``subprocess`` spawns with ``vfork``, whose pre-exec address space *is* the parent's.
A child of the bench (which holds the simulators, easily 140 MB) would report at
least the bench's own peak. Forked from this bare interpreter (``python -S``, ~10 MB),
the contender's ``ru_maxrss`` is its own.
"""


def run_child(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    logs: Path,
    timeout: float,
    cwd: Path = REPO,
) -> ChildRun:
    """Run one contender to completion: wall time, CPU time and peak RSS from ``wait4``.

    The contender is forked by :data:`_LAUNCHER` (see there why), which times it and
    writes its rusage; ``ru_maxrss`` is Linux KiB. Output goes to files, never to
    pipes nobody reads while the child runs. On timeout the launcher's whole process
    group (the launcher and the contender, nothing else) is killed.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    report = logs / f"{name}.rusage.json"
    report.unlink(missing_ok=True)
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv]
    started_at = time.time()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            launcher, stdout=out, stderr=err, env=dict(env), cwd=cwd, start_new_session=True
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise BenchError(f"{name} did not finish within {timeout:.0f} s") from None
    if not report.exists():
        raise BenchError(f"{name}: the launcher exited {proc.returncode} without a report")
    usage = read_json(report)
    return ChildRun(
        name=name,
        seconds=float(usage["seconds"]),
        returncode=int(usage["returncode"]),
        max_rss_mb=int(usage["max_rss_kib"]) / 1024,
        cpu_seconds=float(usage["cpu_seconds"]),
        stdout=out_path,
        stderr=err_path,
        started_at=started_at,
    )


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", module, *args]


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class Usage:
    """Objects under a prefix: how many and how many bytes."""

    objects: int
    bytes: int


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3 server on loopback and the credentials it accepts."""

    kind: S3Kind
    url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def client(self) -> S3Client:
        """A boto3 client with explicit credentials (the bench's own environment is untouched)."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3})
        return session.client("s3", endpoint_url=self.url, config=config)

    def env(self) -> dict[str, str]:
        """Credentials for a child using boto3's standard chain (genvault, bare, sequential)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def usage(self, bucket: str, prefix: str, *, skip_suffix: str = ".json") -> Usage:
        """Count objects and bytes under ``prefix``, leaving out sidecars (``.json``)."""
        count = size = 0
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(skip_suffix):
                    count += 1
                    size += obj["Size"]
        return Usage(count, size)

    def empty(self, bucket: str, prefix: str) -> None:
        """Delete everything under ``prefix``: moto gives memory back, s3rver disk space."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": o["Key"]} for o in page.get("Contents", [])
            ]
            for start in range(0, len(keys), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})


def child_s3_client(endpoint: str) -> S3Client:
    """A boto3 client built like genvault's (storage/s3.py), for the bench's own contenders.

    Credentials from the standard chain (the child's environment), path-style
    addressing, 64 pooled connections, standard retries.
    """
    config = Config(
        max_pool_connections=64,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def s3_kind_for(scale: Scale) -> S3Kind:
    """moto for smoke runs (no npm, fast start), disk-backed s3rver for the issue's sizes.

    ``BENCH_S3=moto`` or ``BENCH_S3=s3rver`` overrides the choice (e.g. a smoke run on
    s3rver to check the full-run setup quickly).
    """
    forced = os.environ.get("BENCH_S3", "")
    if forced in ("moto", "s3rver"):
        return cast(S3Kind, forced)
    if forced:
        raise BenchError(f"BENCH_S3 must be moto or s3rver, not {forced!r}")
    return "moto" if scale is Scale.SMOKE else "s3rver"


_MOTO_CHILD: Final = """
import sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""


@contextlib.contextmanager
def s3_server(kind: S3Kind, workdir: Path) -> Iterator[S3Endpoint]:
    """Start an S3 server in a child process, yield its endpoint, stop it."""
    env = dict(os.environ)
    if kind == "moto":
        argv = [sys.executable, "-c", _MOTO_CHILD]
        creds = ("bench-access-key", "bench-secret-key")
    else:
        # s3rver signs ListObjectsV2 continuation tokens with DES, which node >= 17
        # (OpenSSL 3) only has in its legacy provider: without it, listing more than
        # 1,000 keys answers 500 InternalError.
        env["NODE_OPTIONS"] = "--openssl-legacy-provider"
        data = workdir / "s3rver-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = ["node", str(ensure_s3rver()), "-d", str(data), "-a", "127.0.0.1", "-p", "0", "-s"]
        creds = ("S3RVER", "S3RVER")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=workdir, env=env
    )
    try:
        port = _read_port(proc, kind)
        yield S3Endpoint(kind, f"http://127.0.0.1:{port}", *creds)
    finally:
        _stop(proc)


def _read_port(proc: subprocess.Popen[str], kind: S3Kind, timeout: float = 30.0) -> int:
    """The port the server printed: moto's child prints it, s3rver says 'listening on h:p'."""
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(_first_line(proc.stdout)), daemon=True)
    reader.start()
    reader.join(timeout)
    line = box[0] if box else ""
    if not line:
        raise BenchError(f"{kind} did not start within {timeout:.0f} s (exit {proc.poll()})")
    return int(line.rsplit(":", 1)[-1])


def _first_line(stream: IO[str] | None) -> str:
    """The first non-empty line of a stream ("" at EOF)."""
    assert stream is not None
    for line in stream:
        if line.strip():
            return line.strip()
    return ""


def _stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a server we started, killing it if it lingers."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def ensure_s3rver() -> Path:
    """s3rver's entry point, installed with npm into ``bench/.cache/s3rver`` on first use."""
    home = CACHE / "s3rver"
    entry = home / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if entry.exists():
        return entry
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise BenchError("full runs need node and npm for s3rver (apt-get install nodejs npm)")
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(home),
         f"s3rver@{S3RVER_VERSION}"],
        check=True,
        cwd=home,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if not entry.exists():
        raise BenchError(f"npm installed s3rver but {entry} is missing")
    return entry


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceFile:
    """One media file a simulator serves: its URL, size and path under the data CDN."""

    url: str
    size: int
    path: str
    """Relative to ``/data/`` (rclone's ``--files-from`` entries, object keys)."""
    kind: Literal["image", "video"]


def image_tasks_for(files: int) -> int:
    """Tasks of the ``upscaler`` workflow that yield ``files`` images.

    The simulator gives an upscaler task one image, two for every fourth task
    (``i % 4 == 0``), so ``t`` tasks yield ``t + ceil(t / 4)`` images: exact for
    multiples of 5 (200 images = 160 tasks), one more than asked otherwise.
    """
    tasks = max(0, math.floor(files * 4 / 5) - 1)
    while tasks + math.ceil(tasks / 4) < files:
        tasks += 1
    return tasks


@dataclass
class Source:
    """Images and videos served by CrowdComputed simulators on loopback, plus an origin.

    One simulator cannot mix kinds in arbitrary proportions (its workflows cycle task
    by task), so images come from an ``upscaler``-only simulator and videos from a
    ``text-to-video``-only one, archived by genvault as two accounts in one run. No
    task is failed, processing, empty or expired, and every URL is absolute: the bench
    measures moving bytes, the acceptance tests cover the traps.

    The **origin** is one more simulator server (same class, same process, same byte
    generator, same faults) that serves every file of both simulators under the same
    paths: the contenders that take a file list (rclone, the bare pipeline, the
    sequential script) need a single base URL, and genvault needs the provider APIs.
    """

    images: int = 0
    image_size: int = MiB
    videos: int = 0
    video_size: int = 200 * MiB
    seed: int = 7
    sims: dict[str, CrowdComputedSimulator] = field(init=False, default_factory=dict)
    origin: SimServer = field(init=False)
    files: list[SourceFile] = field(init=False)
    """Every file, images first, with its URL on the origin."""

    def __post_init__(self) -> None:
        common: dict[str, Any] = {
            "api_key": API_KEY,
            "processing_count": 0,
            "failed_count": 0,
            "empty_count": 0,
            "expired_count": 0,
            "relative_every": 0,
        }
        if self.images:
            self.sims["img"] = crowdcomputed.create(
                seed=self.seed,
                count=image_tasks_for(self.images),
                workflows=("upscaler",),
                image_size=self.image_size,
                **common,
            )
        if self.videos:
            self.sims["vid"] = crowdcomputed.create(
                seed=self.seed + 1,
                count=self.videos,
                workflows=("text-to-video",),
                video_size=self.video_size,
                **common,
            )
        self.origin = SimServer(name="origin", media_prefixes=(DATA_PREFIX,))
        self.files = [f for sim in self.sims.values() for f in self._mirror(sim)]

    def _mirror(self, sim: CrowdComputedSimulator) -> list[SourceFile]:
        """Serve every file of ``sim`` on the origin too; its files as the origin's URLs."""
        out: list[SourceFile] = []
        for gen in sim.generations:
            for output in gen["outputs"]:
                for url in output["urls"]:
                    path = urlsplit(url).path
                    entry = sim.server.media_entry(path)
                    if entry is None:
                        raise BenchError(f"simulator lists {url} but does not serve it")
                    self.origin.add_media(path, entry.spec)
                    out.append(
                        SourceFile(
                            url=self.origin.url(path),
                            size=entry.spec.size,
                            path=path.removeprefix(DATA_PREFIX),
                            kind="video" if entry.spec.kind == "video" else "image",
                        )
                    )
        return out

    def __enter__(self) -> Source:
        for sim in self.sims.values():
            sim.start()
        self.origin.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sim in self.sims.values():
            sim.stop()
        self.origin.stop()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def origin_data_url(self) -> str:
        """``http://127.0.0.1:PORT/data/``: the base of every origin file's ``path``."""
        return self.origin.url(DATA_PREFIX)

    def accounts(self) -> list[dict[str, Any]]:
        """genvault ``[[accounts]]`` tables: one per simulator, only its workflow."""
        return [
            {
                "name": name,
                "provider": "crowdcomputed",
                "api_key_env": API_KEY_ENV,
                "base_url": sim.api_base,
                "workflows": list(sim.config.workflows),
                "page_size": sim.config.max_page_size,  # fewest history requests
                **sim.account_options,
            }
            for name, sim in self.sims.items()
        ]

    def network(self, *, latency_s: float, bandwidth_bps: int | None) -> None:
        """Make every server a distant CDN: first-byte delay, per-response rate cap.

        ``latency_s`` sleeps before the status line of every response (API and media);
        ``bandwidth_bps`` paces each media body on its own, so it caps every connection
        separately (see ``SimServer._send``).
        """
        for faults in [*(sim.faults for sim in self.sims.values()), self.origin.faults]:
            faults.update(latency_s=latency_s, bandwidth_bps=bandwidth_bps)


# --------------------------------------------------------------------------- genvault


def write_genvault_config(
    path: Path,
    *,
    db: Path,
    s3: S3Endpoint | None,
    bucket: str,
    prefix: str,
    accounts: list[dict[str, Any]],
    concurrency: int,
    db_url: str | None = None,
    folder: Path | None = None,
) -> Path:
    """A production-like config: defaults everywhere except what loopback needs.

    ``db_url`` replaces the SQLite file ``db`` (PostgreSQL for the scale-out runs).
    ``folder`` archives into a local folder (``file://``) instead of ``s3`` (then
    ``None``; ``bucket`` and ``prefix`` are ignored).
    ``allow_private`` opens loopback (the simulators); the HTTP server is off (``run
    --once`` never serves anyway); logs are JSON so the bench can read genvault's own
    phase timings (``job.archive``).
    """
    lines = [
        "[database]",
        f"url = {json.dumps(db_url or f'sqlite:///{db}')}",
        "[storage]",
        *_storage_lines(s3, bucket, prefix, folder),
        "[network]",
        "allow_private = true",
        "[archive]",
        f"concurrency = {concurrency}",
        "[server]",
        "enabled = false",
        "[logging]",
        'format = "json"',
    ]
    for account in accounts:
        lines.append("[[accounts]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in account.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _storage_lines(
    s3: S3Endpoint | None, bucket: str, prefix: str, folder: Path | None
) -> list[str]:
    """The ``[storage]`` keys: a local folder, or a bucket on the S3 endpoint."""
    if folder is not None:
        return [f"url = {json.dumps(folder.resolve().as_uri())}"]
    if s3 is None:
        raise BenchError("genvault needs an S3 endpoint or a folder")
    return [
        f"url = {json.dumps(f's3://{bucket}/{prefix}')}",
        f"endpoint_url = {json.dumps(s3.url)}",
        f"region = {json.dumps(s3.region)}",
    ]


@dataclass(frozen=True)
class FileLog:
    """One ``asset.archived`` line: when the file's download started, how long, how big."""

    started: float
    seconds: float
    bytes: int


@dataclass(frozen=True)
class Phases:
    """Where a genvault run spent its time, from its own JSON log lines.

    ``sync`` sums the ``job.sync`` lines, ``archive`` is the ``job.archive`` line (the
    download pool and then the sidecars), ``sidecars`` the time between the last
    ``asset.archived`` line and ``job.archive`` (sidecars are written after the pool
    drains). Whatever the run took beyond these is start-up and shutdown.
    ``files`` has one entry per archived file, in the order the downloads started.
    """

    sync: float = 0.0
    archive: float = 0.0
    sidecars: float = 0.0
    files: tuple[FileLog, ...] = ()
    first_download: float = 0.0
    """From the process's start to the first download's start (0 without a start time)."""
    span: float = 0.0
    """From the first sync or archive job's start to the last one's end: they overlap
    since issue 14, so the wall time outside them is start-up and shutdown."""

    @classmethod
    def from_log(cls, run: ChildRun) -> Phases:
        sync = sum(float(e.get("seconds", 0.0)) for e in run.json_events("job.sync"))
        jobs = run.json_events("job.archive")
        if not jobs:
            return cls(sync=sync)
        files = sorted(
            (
                FileLog(_stamp(e) - float(e["seconds"]), float(e["seconds"]), int(e["bytes"]))
                for e in run.json_events("asset.archived")
            ),
            key=lambda f: f.started,
        )
        done = _stamp(jobs[-1])
        last = max((f.started + f.seconds for f in files), default=done)
        archive = float(sum(float(e.get("seconds", 0.0)) for e in jobs))
        spans = [(_stamp(e) - float(e["seconds"]), _stamp(e)) for e in run.json_events("job.sync")]
        spans += [(_stamp(e) - float(e["seconds"]), _stamp(e)) for e in jobs]
        span = max(end for _, end in spans) - min(start for start, _ in spans)
        first = files[0].started - run.started_at if files and run.started_at else 0.0
        return cls(sync, archive, max(0.0, done - last), tuple(files), first, span)


def _stamp(event: dict[str, Any]) -> float:
    """A log line's ``timestamp`` (ISO 8601, UTC) as POSIX seconds."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


@dataclass(frozen=True)
class GenvaultRun:
    """A finished ``genvault run --once``: the process figures and its phases."""

    child: ChildRun
    phases: Phases

    @property
    def seconds(self) -> float:
        return self.child.seconds


def run_genvault(
    name: str,
    *,
    workdir: Path,
    s3: S3Endpoint | None,
    bucket: str,
    prefix: str,
    source: Source,
    concurrency: int,
    timeout: float = 1800,
    migrated: bool = False,
    folder: Path | None = None,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> GenvaultRun:
    """``genvault run --once`` as a child process on a fresh SQLite database.

    The whole run is timed, as cron would see it: interpreter start, migrations,
    history sync, archive, sidecars. Exit code 0 is required, and the bucket must hold
    exactly the source's files and bytes afterwards. ``migrated`` first creates the
    schema with ``genvault db upgrade`` (untimed, in a child of its own), as a
    deployment does once per release: the measured run then starts at head, like
    every run but the first.

    ``folder``: archive into this local folder instead of ``s3`` (which is then
    ``None``); the folder must then hold the source's files (sidecars and genvault's
    temp folder aside). ``wrap`` rewrites the child's argv (a profiler: ``py-spy
    record ... -- ARGV``, ``perf record ... -- ARGV``; see ``bench/profile.py``).
    """
    config = write_genvault_config(
        workdir / f"{name}.toml",
        db=workdir / f"{name}.db",
        s3=s3,
        bucket=bucket,
        prefix=prefix,
        accounts=source.accounts(),
        concurrency=concurrency,
        folder=folder,
    )
    env = child_env({API_KEY_ENV: API_KEY, **(s3.env() if s3 is not None else {})})
    if migrated:
        upgrade = python_module("genvault.cli", "--config", str(config), "db", "upgrade")
        run_child(f"{name}-migrate", upgrade, env=env, logs=workdir / "logs", timeout=120).check()
    argv = python_module("genvault.cli", "--config", str(config), "run", "--once")
    if wrap is not None:
        argv = wrap(argv)
    run = run_child(name, argv, env=env, logs=workdir / "logs", timeout=timeout).check()
    if folder is not None:
        verify_folder(folder, source, who=name)
    else:
        assert s3 is not None
        verify(s3, bucket, prefix, source, who=name)
    return GenvaultRun(run, Phases.from_log(run))


def verify(s3: S3Endpoint, bucket: str, prefix: str, source: Source, *, who: str) -> Usage:
    """Require every source file under ``prefix``: same count, same total size."""
    want = Usage(len(source.files), source.total_bytes)
    got = s3.usage(bucket, prefix)
    if got != want:
        raise BenchError(f"{who}: bucket holds {got}, expected {want}")
    return got


def folder_usage(folder: Path, *, skip_suffix: str = ".json") -> Usage:
    """Files and bytes under ``folder``, leaving out sidecars and genvault's temp folder."""
    count = size = 0
    for path in folder.rglob("*"):
        if ".genvault-tmp" in path.parts or path.name.endswith(skip_suffix):
            continue
        if path.is_file():
            count += 1
            size += path.stat().st_size
    return Usage(count, size)


def verify_folder(folder: Path, source: Source, *, who: str) -> Usage:
    """Require every source file under ``folder``: same count, same total size."""
    want = Usage(len(source.files), source.total_bytes)
    got = folder_usage(folder)
    if got != want:
        raise BenchError(f"{who}: {folder} holds {got}, expected {want}")
    return got


# --------------------------------------------------------------------------- misc


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Path]:
    """A temp folder for one benchmark run (databases, logs, s3rver data), removed after.

    ``BENCH_KEEP=1`` keeps it, to read the contenders' logs after a surprise.
    """
    path = Path(tempfile.mkdtemp(prefix=f"genvault-bench-{name}-"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def mb(n_bytes: float) -> float:
    """Bytes as MiB (every size in the bench is binary: 1 MB means 1 MiB)."""
    return n_bytes / MiB


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
