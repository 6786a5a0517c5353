"""Kill harness: SIGKILL ``genvault run --once`` at random points, then check nothing was harmed.

A *trial* starts fresh simulators of several providers in this process (small
files of a few KB, plus a few of 6-11 MB so that S3 multipart uploads happen),
a fresh database and an empty archive (S3 on moto, or a folder). It then runs
``genvault run --once`` as a subprocess again and again, each time with a
randomly chosen kill:

* a crash point (``GENVAULT_CRASH_AT=point:N``, see :mod:`genvault.crashpoints`):
  the process SIGKILLs itself the N-th time it gets there (between a page fetch
  and its commit, mid-download, mid-multipart upload, between upload and DB
  commit, before a temp file is renamed, ...);
* or a timed kill: the harness sends SIGKILL after a random delay.

Only runs that really died of SIGKILL (return code -9) count as kill points; a
run that finished first just did some work. If files are left and the last kill
left no lease behind, one more run is killed mid-download. Then the trial runs
genvault exactly once more, without a kill, with the default
``archive.lease_seconds`` (15 minutes), and that one run must finish everything:
exit 0, nothing to poll, nothing pending, no sidecar due. The leases the killed
runs left behind are never waited out: the clean run takes them over at once
(SQLite voids them when it takes the database's lock; on PostgreSQL their
workers' locks died with their sessions and the archive pass reaps them). Then
it checks storage and database against the simulators' truth
(:meth:`Trial.verify`).

The RNG is seeded; the seed is printed with the results, and
``GENVAULT_CRASH_SEED=<seed>`` replays the same choices (timing still varies).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from genvault.config import DEFAULT_KEY_TEMPLATE
from genvault.crashpoints import CRASH_POINTS, ENV_VAR
from genvault.identity import url_key
from genvault.simulator import Simulator, simulator_factory
from genvault.storage.keys import sidecar_key
from genvault.storage.local import TMP_DIR
from genvault.storage.posix import XATTR_SHA256
from genvault.store import A, G, Store
from tests.fixtures.sims import sim_account

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

GENVAULT = [sys.executable, "-m", "genvault.cli"]
SEED_ENV = "GENVAULT_CRASH_SEED"
VERBOSE = bool(os.environ.get("GENVAULT_CRASH_VERBOSE"))
API_KEY = "crash-harness-key-24chrs"  # 24 characters suit every simulator
TIMED = "timed"
"""Pseudo crash point: the harness kills the process after a random delay."""
SUMMARIES: list[str] = []
"""One line per harness run; ``tests/crash/conftest.py`` prints them at the end of pytest."""

# Small files everywhere, and 6-11 MB videos on two providers (multipart with 5 MiB parts).
SIMULATORS: dict[str, dict[str, Any]] = {
    "crowdcomputed": {
        "count": 9,
        "workflows": ("text-to-image", "text-to-video", "upscaler"),
        "image_size": 3_000,
        "video_size": 11_000_000,
        "processing_count": 1,
        "failed_count": 1,
        "empty_count": 0,
    },
    "geminigen": {
        "count": 16,
        "image_size": 3_000,
        "video_size": 9_000,
        "audio_size": 4_000,
        "thumbnail_size": 1_500,
        "processing_count": 2,
        "failed_count": 1,
    },
    "tengrai": {
        "count": 16,
        "image_size": 3_000,
        "processing_count": 2,
        "failed_count": 1,
        "canceled_count": 1,
        "api_version": "v2",
    },
    "quickrouter": {
        "count": 3,
        "image_size": 3_000,
        "video_size": 6_500_000,
        "processing_count": 1,
        "late_url_seconds": 0.2,
        "failed_count": 1,
    },
}
ACCOUNT_OPTIONS: dict[str, dict[str, Any]] = {
    "crowdcomputed": {"workflows": ["text-to-image", "text-to-video", "upscaler"], "page_size": 2},
    "geminigen": {"items_per_page": 3},
    "tengrai": {"page_limit": 3},
    "quickrouter": {},
}
TRACKED = ("quickrouter",)
"""Providers without a listing: their task ids are registered, as ``genvault track`` would."""

# Crash points and the range of hit counts tried at first (narrowed as runs survive them).
HITS: dict[str, tuple[int, int]] = {
    "sync.page_fetched": (1, 10),
    "sync.page_saved": (1, 10),
    "poll.fetched": (1, 6),
    "archive.download_read": (2, 14),  # from 2: some bytes have streamed already
    "archive.before_commit": (1, 8),
    "archive.after_commit": (1, 6),
    "archive.sidecar_before_put": (1, 10),
    "archive.sidecar_after_put": (1, 10),
    "s3.multipart_read": (2, 4),  # from 2: a part is on its way, or uploaded
    "s3.before_sha256_copy": (1, 3),
    "s3.deferred_put": (1, 8),  # a put returned, its PutObject not sent: nothing recorded
    "local.before_rename": (1, 12),
}
WEIGHTS: dict[str, float] = {
    "sync.page_fetched": 0.6,
    "sync.page_saved": 0.6,
    "poll.fetched": 1.5,
    "archive.download_read": 1.5,
    "archive.before_commit": 1.5,
    "archive.after_commit": 1.0,
    "archive.sidecar_before_put": 0.7,
    "archive.sidecar_after_put": 0.7,
    "s3.multipart_read": 2.0,
    "s3.before_sha256_copy": 2.0,
    "s3.deferred_put": 1.5,
    "local.before_rename": 1.5,
    TIMED: 1.2,
}
assert set(HITS) == set(CRASH_POINTS), "a crash point is missing from the harness"
ONLY_FOR = {"s3.": "s3", "local.": "file"}
BOOST = 4.0
"""Weight factor of crash points the trial has not killed at yet."""
STARTUP = 0.45
"""Seconds from spawn until ``genvault`` starts its first job (imports, config, DB)."""
TIMED_WINDOW = 0.7
"""Timed kills land at most this many seconds after STARTUP."""
LARGE = 5 * 1024 * 1024
"""Files above this go through a multipart upload (``multipart_threshold_mb = 5``)."""


def choose_seed() -> int:
    raw = os.environ.get(SEED_ENV, "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


# --------------------------------------------------------------------------- results


@dataclass
class Counts:
    """What verification found; every field must be zero."""

    lost: int = 0
    duplicated: int = 0
    corrupt: int = 0
    disagree: int = 0
    orphans: int = 0
    stuck_leases: int = 0
    open_uploads: int = 0
    temp_files: int = 0
    bad_sidecars: int = 0
    unfinished: int = 0
    problems: list[str] = field(default_factory=list)

    FIELDS = (
        "lost",
        "duplicated",
        "corrupt",
        "disagree",
        "orphans",
        "stuck_leases",
        "open_uploads",
        "temp_files",
        "bad_sidecars",
        "unfinished",
    )

    def add(self, kind: str, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 40:
            self.problems.append(f"{kind}: {detail}")

    def merge(self, other: Counts) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(other.problems[: max(0, 40 - len(self.problems))])

    @property
    def clean(self) -> bool:
        return all(getattr(self, name) == 0 for name in self.FIELDS)


@dataclass
class TrialReport:
    storage: str
    kills: Counter[str] = field(default_factory=Counter)
    survived: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    files: int = 0
    objects: int = 0
    leftovers_after_kills: Counter[str] = field(default_factory=Counter)
    """Evidence that kills left something to clean: open uploads, temp files, leases."""
    stranded: int = 0
    """Files still leased by killed runs when the clean run started (taken over by it)."""
    clean_exit: int | None = None
    """The exit code of the one clean run after the kills."""
    odd_exits: list[str] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0


# --------------------------------------------------------------------------- storage views


class ArchiveView:
    """Read-only access to what a trial's storage holds, for verification."""

    def objects(self) -> dict[str, tuple[int, str, str | None]]:
        """key (relative to the storage URL) -> (size, sha256 of the bytes, recorded sha256)."""
        raise NotImplementedError

    def leftovers(self) -> int:
        """Open multipart uploads (S3) or temp files (folder)."""
        raise NotImplementedError


class S3View(ArchiveView):
    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def objects(self) -> dict[str, tuple[int, str, str | None]]:
        out: dict[str, tuple[int, str, str | None]] = {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                resp = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])
                digest = hashlib.sha256()
                size = 0
                for chunk in resp["Body"].iter_chunks(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
                recorded = resp.get("Metadata", {}).get("sha256")
                out[obj["Key"].removeprefix(self.prefix + "/")] = (
                    size,
                    digest.hexdigest(),
                    recorded,
                )
        return out

    def leftovers(self) -> int:
        return len(self._uploads())

    def _uploads(self) -> list[Any]:
        resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + "/")
        return list(resp.get("Uploads", []))

    def uploads_with_parts(self) -> int:
        """Open uploads that already hold at least one uploaded part."""
        return sum(
            1
            for u in self._uploads()
            if self.client.list_parts(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]).get(
                "Parts"
            )
        )


class FolderView(ArchiveView):
    def __init__(self, root: Path) -> None:
        self.root = root

    def objects(self) -> dict[str, tuple[int, str, str | None]]:
        out: dict[str, tuple[int, str, str | None]] = {}
        if not self.root.exists():
            return out
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if rel.parts[0] == TMP_DIR or not path.is_file():
                continue
            data = path.read_bytes()
            try:
                recorded: str | None = os.getxattr(path, XATTR_SHA256).decode()
            except OSError:
                recorded = None  # no xattrs on this filesystem: nothing recorded to compare
            out[rel.as_posix()] = (len(data), hashlib.sha256(data).hexdigest(), recorded)
        return out

    def leftovers(self) -> int:
        tmp = self.root / TMP_DIR
        return len(list(tmp.iterdir())) if tmp.is_dir() else 0


# --------------------------------------------------------------------------- a trial


@dataclass
class StorageTarget:
    kind: str  # "s3" or "file"
    url: str
    view: ArchiveView
    endpoint_url: str | None = None


class Trial:
    """Simulators, config, database and archive for one sequence of kills."""

    def __init__(
        self,
        *,
        workdir: Path,
        db_url: str,
        target: StorageTarget,
        rng: random.Random,
        sim_seed: int,
        log: Callable[[str], None] = print,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.target = target
        self.rng = rng
        self.sim_seed = sim_seed
        self.log = log
        self.sims: dict[str, Simulator] = {}
        self.report = TrialReport(storage=target.kind)
        self.config = workdir / "genvault.toml"
        self.hits = dict(HITS)
        self.leases_seen: set[tuple[int, str]] = set()

    # ------------------------------------------------------------------ setup

    @contextmanager
    def running(self) -> Iterator[Trial]:
        try:
            for name, knobs in SIMULATORS.items():
                sim = simulator_factory(name)(
                    api_key=API_KEY, seed=self.sim_seed, processing_seconds=0.5, **knobs
                )
                sim.start()
                self.sims[name] = sim
            self._write_config()
            self._register_tracked()
            yield self
        finally:
            for sim in self.sims.values():
                sim.stop()

    def _write_config(self) -> None:
        lines = [
            "[database]",
            f'url = "{self.db_url}"',
            "[storage]",
            f'url = "{self.target.url}"',
            "multipart_threshold_mb = 5",
            "multipart_chunk_mb = 5",
            "stale_upload_seconds = 0",
        ]
        if self.target.endpoint_url:
            lines.append(f'endpoint_url = "{self.target.endpoint_url}"')
        lines += [  # the poll ladder, file retries and timeouts a user gets
            "[network]",
            "allow_private = true",
            "[archive]",
            "concurrency = 2",
            "batch_size = 4",
            "[server]",
            'listen = "127.0.0.1:0"',
        ]
        for name, sim in self.sims.items():
            account = sim_account(sim, "CRASH_SIM_KEY", name=name, **ACCOUNT_OPTIONS[name])
            lines += ["[[accounts]]", *(f"{k} = {json.dumps(v)}" for k, v in account.items())]
        self.config.write_text("\n".join(lines) + "\n")

    def _register_tracked(self) -> None:
        store = Store(self.db_url)
        try:
            store.upgrade()
            for name in TRACKED:
                ids = self.sims[name].task_ids
                store.register_tasks(
                    provider=name,
                    account=name,
                    items=[{"id": t} for t in ids],
                    source="track",
                    poll_horizon=timedelta(hours=1),
                )
        finally:
            store.dispose()

    # ------------------------------------------------------------------ runs

    def _env(self, crash_at: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(ENV_VAR, None)
        env.update(CRASH_SIM_KEY=API_KEY, PYTHONUNBUFFERED="1")
        if crash_at:
            env[ENV_VAR] = crash_at
        return env

    def run(self, crash_at: str | None = None, kill_after: float | None = None) -> tuple[int, str]:
        """One ``run --once``; returns (return code, stderr)."""
        proc = subprocess.Popen(
            [*GENVAULT, "--config", str(self.config), "run", "--once"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self._env(crash_at),
            text=True,
        )
        try:
            if kill_after is not None:
                try:
                    proc.wait(timeout=kill_after)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        self.report.runs += 1
        return proc.returncode, err

    def _work(self) -> dict[str, int]:
        """What the next run can still do: the hit counts a crash point can reach."""
        now = datetime.now(UTC)
        large = {
            url_key(f.url)
            for sim in self.sims.values()
            for f in sim.expected_media()
            if f.size > LARGE
        }
        with self._db() as conn:
            listed = conn.execute(
                sa.select(sa.func.count()).select_from(G).where(G.c.source == "history")
            ).scalar_one()
            # Between runs nobody is alive: every lease is a killed run's, and the next
            # run takes those files over at once, so a lease does not make a file busy.
            free = (
                conn.execute(
                    sa.select(A.c.url_key).where(
                        A.c.state == "pending",
                        sa.or_(A.c.next_attempt_at.is_(None), A.c.next_attempt_at <= now),
                    )
                )
                .scalars()
                .all()
            )
            polls = conn.execute(
                sa.select(sa.func.count()).select_from(G).where(G.c.next_poll_at <= now)
            ).scalar_one()
            pending = (
                sa.select(A.c.id)
                .where(A.c.generation_id == G.c.id, A.c.state == "pending")
                .exists()
            )
            sidecars = conn.execute(
                sa.select(sa.func.count()).select_from(G).where(G.c.sidecar_due.is_(True), ~pending)
            ).scalar_one()
        if not listed:  # nothing synced yet: the whole truth is ahead
            files = [f for sim in self.sims.values() for f in sim.expected_media()]
            return {
                "files": len(files),
                "large": sum(1 for f in files if f.size > LARGE),
                "polls": 4,
                "sidecars": 0,
            }
        return {
            "files": len(free),
            "large": sum(1 for k in free if k in large),
            "polls": int(polls),
            "sidecars": int(sidecars),
        }

    def _reach(self, name: str, work: dict[str, int]) -> int:
        """The highest hit count of ``name`` worth drawing for the next run (0: none).

        Counts stay small where they can: a run that gets far archives much before
        it dies, and what it archived is gone for the kills that follow. Sidecars
        are written as their generations' files settle during the pass, and the rest
        after it: with downloads left, their points reach a few hits (about one per
        generation finished on the way, a generation having one to a few files).
        """
        files, large, sidecars = work["files"], work["large"], work["sidecars"]
        reach = {
            "sync.page_fetched": 10,
            "sync.page_saved": 10,
            "poll.fetched": work["polls"],
            "archive.download_read": min(2 * files + 1, 8) if files else 0,
            "archive.before_commit": min(files, 4),
            "archive.after_commit": min((files + 1) // 2, 3),
            "archive.sidecar_before_put": min(sidecars + files // 4, 4 if files else 8),
            "archive.sidecar_after_put": min(sidecars + files // 4, 4 if files else 8),
            "s3.multipart_read": min(2 * large, 4),
            "s3.before_sha256_copy": min(large, 2),
            "s3.deferred_put": min(files - large + sidecars, 6),
            "local.before_rename": min(files or sidecars, 6),
        }[name]
        return min(reach, self.hits[name][1]) if name in self.hits else 0

    def _pick(self) -> tuple[str, str | None, float | None]:
        """(label, GENVAULT_CRASH_AT, kill delay) for the next kill attempt.

        Points the next run cannot reach (no file left to download, say) are not
        drawn, and hit counts stay within what is left: a run that outlives its
        kill does all the remaining work and leaves nothing for later kills.
        """
        work = self._work()
        names = [
            n
            for n in WEIGHTS
            if n == TIMED
            or (
                n in self.hits
                and self._reach(n, work) >= self.hits[n][0]
                and all(self.target.kind == kind for p, kind in ONLY_FOR.items() if n.startswith(p))
            )
        ]
        # Multipart uploads are few and soon done: while one is to be had, go for it half
        # of the time. Otherwise favour the points this trial has not killed at yet.
        multipart = [n for n in names if n in ("s3.multipart_read", "s3.before_sha256_copy")]
        if multipart and self.rng.random() < 0.5:
            names = multipart
        weights = [WEIGHTS[n] * (1 if self.report.kills[n] else BOOST) for n in names]
        name = self.rng.choices(names, weights)[0]
        if name == TIMED:
            # sync, poll and the first downloads: later, a run with work left would do it all
            delay = round(self.rng.uniform(STARTUP, STARTUP + TIMED_WINDOW), 2)
            return TIMED, None, delay
        n = self.rng.randint(self.hits[name][0], self._reach(name, work))
        return name, f"{name}:{n}", None

    def _survived(self, name: str, crash_at: str | None) -> None:
        """A run finished before the kill: next time, try fewer hits (or drop the point)."""
        self.report.survived[name] += 1
        if crash_at is None:
            return
        n = int(crash_at.rpartition(":")[2])
        lo, _ = self.hits[name]
        if n <= lo:
            del self.hits[name]  # not reached any more in this trial
        else:
            self.hits[name] = (lo, n - 1)

    def kill_runs(self, kills: int, max_attempts: int) -> None:
        attempts = 0
        while sum(self.report.kills.values()) < kills and attempts < max_attempts:
            attempts += 1
            name, crash_at, delay = self._pick()
            code, err = self.run(crash_at, delay)
            if VERBOSE:
                self.log(f"    {crash_at or f'timed {delay}s'} -> {code} work={self._work()}")
            if code == -signal.SIGKILL:
                self.report.kills[name] += 1
                self._note_leftovers()
            else:
                self._survived(name, crash_at)
                self._check_exit(code, err, f"survived {crash_at or f'timed {delay}s'}")

    def strand_leases(self) -> None:
        """If files are left but no killed run holds a lease, kill one more run mid-download.

        So the clean run that follows has a dead run's leases to take over whenever
        there is work left at all (the random kills may have ended in a sync).
        """
        if not self._work()["files"]:
            return
        with self._db() as conn:
            leased = conn.execute(
                sa.select(sa.func.count()).select_from(A).where(A.c.lease_owner.is_not(None))
            ).scalar_one()
        if leased:
            return
        crash_at = "archive.download_read:2"
        code, err = self.run(crash_at)
        if code == -signal.SIGKILL:
            self.report.kills["archive.download_read"] += 1
            self._note_leftovers()
        else:
            self._check_exit(code, err, f"survived {crash_at}")

    def _note_leftovers(self) -> None:
        left = self.target.view.leftovers()
        if left:
            self.report.leftovers_after_kills[
                "open_uploads" if self.target.kind == "s3" else "temp_files"
            ] += left
        view = self.target.view
        if left and isinstance(view, S3View) and (with_parts := view.uploads_with_parts()):
            self.report.leftovers_after_kills["open_uploads_with_parts"] += with_parts
        with self._db() as conn:
            leases = conn.execute(
                sa.select(A.c.id, A.c.lease_owner).where(A.c.lease_owner.is_not(None))
            ).all()
        self.leases_seen.update((r.id, r.lease_owner) for r in leases)
        self.report.leftovers_after_kills["leased_assets"] = len(self.leases_seen)

    def _check_exit(self, code: int, err: str, what: str) -> None:
        if code not in (0, 3):
            self.report.odd_exits.append(f"{what}: exit {code}: {err[-1500:]}")
        # errors logged by a run that was not killed deserve a look, whatever its code
        for line in err.splitlines():
            if '"level": "error"' in line or "Traceback" in line:
                self.report.odd_exits.append(f"{what}: {line[:600]}")

    def clean_run(self) -> None:
        """Exactly one ``run --once`` without a kill; it must leave nothing to do.

        The poll and retry timers the killed runs set are let pass first, through the
        store (:meth:`_settle`), so that only leases could hold the run back, and those
        are never waited for.
        """
        self._settle()
        with self._db() as conn:
            self.report.stranded = conn.execute(
                sa.select(sa.func.count())
                .select_from(A)
                .where(A.c.state == "pending", A.c.lease_owner.is_not(None))
            ).scalar_one()
        code, err = self.run()
        self.report.clean_exit = code
        self._check_exit(code, err, "clean run")
        if code != 0:
            self.report.counts.add("unfinished", f"the clean run exited {code}: {err[-2000:]}")

    @contextmanager
    def _db(self) -> Iterator[sa.Connection]:
        engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def _settle(self) -> None:
        """Every poll and retry scheduled in the future is due now, as when the next
        CronJob run comes after them (the defaults' timers are seconds to an hour):
        time passes through the store, never by waiting. Leases are left alone."""
        now = datetime.now(UTC)
        with self._db() as conn:
            conn.execute(G.update().where(G.c.next_poll_at > now).values(next_poll_at=now))
            conn.execute(
                A.update()
                .where(A.c.state == "pending", A.c.next_attempt_at > now)
                .values(next_attempt_at=now)
            )
            conn.commit()

    # ------------------------------------------------------------------ verification

    def verify(self) -> Counts:
        """Compare storage and database with the simulators' truth."""
        counts = Counts()
        roles = {"result", "thumbnail", "last_frame", "upscale"}
        now = datetime.now(UTC)
        truth = {
            (name, url_key(f.url)): f
            for name, sim in self.sims.items()
            for f in sim.expected_media()
            if f.role in roles and (f.expires_at is None or f.expires_at > now)
        }
        store = Store(self.db_url)
        try:
            rows = store.assets()
            gens = store.generations()
        finally:
            store.dispose()
        objects = self.target.view.objects()
        self.report.files = len(truth)
        self.report.objects = len(objects)

        by_file: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by_file.setdefault((r["account"], r["url_key"]), []).append(r)
        for (account, key), same in by_file.items():
            if len(same) > 1:
                counts.add("duplicated", f"{len(same)} asset rows for {account} {key[:12]}")
        gen_ids = Counter((g["provider"], g["account"], g["external_id"]) for g in gens)
        for ident, n in gen_ids.items():
            if n > 1:
                counts.add("duplicated", f"{n} generation rows for {ident}")

        for (account, key), f in truth.items():
            found = by_file.get((account, key), [])
            archived = [r for r in found if r["state"] == "archived"]
            if not archived:
                states = [r["state"] for r in found] or ["no row"]
                counts.add("lost", f"{account} {f.url} ({', '.join(states)})")
                continue
            row = archived[0]
            obj = objects.get(row["storage_key"])
            if obj is None:
                counts.add("lost", f"{account} {f.url}: {row['storage_key']} not in storage")
                continue
            size, digest, recorded = obj
            if (size, digest) != (f.size, f.sha256):
                counts.add("corrupt", f"{row['storage_key']}: {size} B {digest[:12]}")
            elif self.target.kind == "s3" and recorded != f.sha256:
                counts.add("corrupt", f"{row['storage_key']}: sha256 metadata {recorded}")
            elif recorded is not None and recorded != f.sha256:
                counts.add("corrupt", f"{row['storage_key']}: sha256 xattr {recorded}")

        media_keys: set[str] = set()
        for r in rows:
            if r["lease_owner"] is not None or r["lease_until"] is not None:
                counts.add(
                    "stuck_leases", f"asset {r['id']} ({r['state']}) held by {r['lease_owner']}"
                )
            if r["state"] == "pending":
                counts.add("unfinished", f"asset {r['id']} still pending: {r['last_error']}")
            if r["state"] != "archived":
                continue
            media_keys.add(r["storage_key"])
            obj = objects.get(r["storage_key"])
            if obj is None:
                counts.add("disagree", f"row {r['id']} says archived at {r['storage_key']}: absent")
            elif (obj[0], obj[1]) != (r["size"], r["sha256"]):
                counts.add("disagree", f"row {r['id']} {r['storage_key']}: DB and object differ")

        sidecars = self._check_sidecars(gens, rows, objects, counts)
        truth_shas = Counter(f.sha256 for f in truth.values())
        stored_shas = Counter(objects[k][1] for k in media_keys if k in objects)
        for key, (_, digest, _) in objects.items():
            if key in media_keys or key in sidecars:
                continue
            if digest in truth_shas:
                counts.add("duplicated", f"{key}: another copy of a file stored elsewhere")
            else:
                counts.add("orphans", f"{key}: an object no row points to")
        for digest, n in stored_shas.items():
            if digest in truth_shas and n > truth_shas[digest]:
                counts.add("duplicated", f"content {digest[:12]} stored {n} times")

        for g in gens:
            if g["next_poll_at"] is not None:
                counts.add("unfinished", f"generation {g['external_id']} still due for a poll")
            if g["sidecar_due"]:
                counts.add("unfinished", f"generation {g['external_id']}: sidecar still due")
        left = self.target.view.leftovers()
        if left:
            counts.add("open_uploads" if self.target.kind == "s3" else "temp_files", f"{left} left")
        return counts

    def _check_sidecars(
        self,
        gens: list[dict[str, Any]],
        rows: list[dict[str, Any]],
        objects: dict[str, tuple[int, str, str | None]],
        counts: Counts,
    ) -> set[str]:
        """Every succeeded generation has a current generation.json; returns their keys."""
        keys: set[str] = set()
        assets: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            assets.setdefault(r["generation_id"], []).append(r)
        for g in gens:
            key = sidecar_key(
                DEFAULT_KEY_TEMPLATE,
                provider=g["provider"],
                account=g["account"],
                external_id=g["external_id"],
                created=g["created_at"],
                role="result",
                ext="json",
            )
            keys.add(key)
            if g["status"] != "succeeded":
                continue
            if key not in objects:
                counts.add("bad_sidecars", f"{g['account']} {g['external_id']}: no {key}")
                continue
            doc = json.loads(self._read(key))
            listed = {f["sha256"] for f in doc["files"] if f["state"] == "archived"}
            have = {a["sha256"] for a in assets.get(g["id"], []) if a["state"] == "archived"}
            if doc["external_id"] != g["external_id"] or listed != have:
                counts.add("bad_sidecars", f"{key}: stale ({len(listed)} vs {len(have)} files)")
        return keys

    def _read(self, key: str) -> bytes:
        view = self.target.view
        if isinstance(view, S3View):
            full = f"{view.prefix}/{key}"
            return view.client.get_object(Bucket=view.bucket, Key=full)["Body"].read()
        assert isinstance(view, FolderView)
        return (view.root / key).read_bytes()


# --------------------------------------------------------------------------- the harness


@dataclass
class HarnessResult:
    database: str
    seed: int
    trials: list[TrialReport]
    seconds: float

    @property
    def kills(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for t in self.trials:
            total.update(t.kills)
        return total

    @property
    def counts(self) -> Counts:
        total = Counts()
        for t in self.trials:
            total.merge(t.counts)
        return total

    def summary(self) -> str:
        kills = self.kills
        by_point = ", ".join(f"{k} {v}" for k, v in sorted(kills.items()))
        c = self.counts
        storages = Counter(t.storage for t in self.trials)
        leftovers: Counter[str] = Counter()
        for t in self.trials:
            leftovers.update(t.leftovers_after_kills)
        return (
            f"kill harness [{self.database}]: {sum(kills.values())} kill points "
            f"(by point: {by_point}), {c.lost} lost, {c.duplicated} duplicated, "
            f"{c.corrupt} corrupt, {c.disagree} DB/storage disagreements, {c.orphans} orphans, "
            f"{c.stuck_leases} stuck leases, {c.open_uploads} open uploads, "
            f"{c.temp_files} temp files, {c.bad_sidecars} bad sidecars, {c.unfinished} unfinished; "
            f"{len(self.trials)} trials ({', '.join(f'{k} {v}' for k, v in storages.items())}), "
            f"{sum(t.runs for t in self.trials)} runs, "
            f"{sum(t.files for t in self.trials)} files checked, "
            f"left behind by kills and cleaned up: {dict(leftovers) or 'nothing'}; "
            f"one clean run per trial (default lease_seconds), started with "
            f"{sum(t.stranded for t in self.trials)} files still leased by killed runs; "
            f"{self.seconds:.0f}s, seed={self.seed}"
        )


def run_harness(
    *,
    database: str,
    new_db_url: Callable[[], str],
    targets: list[Callable[[int], StorageTarget]],
    kills_per_trial: int,
    seed: int,
    workdir: Path,
    min_kills: int = 0,
    log: Callable[[str], None] = print,
) -> HarnessResult:
    """One trial per entry of ``targets`` (each builds a fresh storage for trial i), then
    more rounds of them while the trials together killed fewer than ``min_kills`` runs
    at a real crash point (a trial runs dry when its runs outlive their kills and do
    the work: how often depends on how fast genvault is), at most twice the targets."""
    rng = random.Random(seed)
    started = time.monotonic()
    reports: list[TrialReport] = []
    for i in range(2 * len(targets)):
        if i >= len(targets) and sum(sum(r.kills.values()) for r in reports) >= min_kills:
            break
        make_target = targets[i % len(targets)]
        target = make_target(i)
        trial_dir = workdir / f"trial-{i}-{target.kind}"
        trial_dir.mkdir(parents=True)
        trial = Trial(
            workdir=trial_dir,
            db_url=new_db_url(),
            target=target,
            rng=random.Random(rng.randrange(2**31)),
            sim_seed=rng.randrange(1000),
            log=log,
        )
        t0 = time.monotonic()
        with trial.running():
            trial.kill_runs(kills_per_trial, max_attempts=kills_per_trial * 3)
            trial.strand_leases()
            trial.clean_run()
            trial.report.counts.merge(trial.verify())
        trial.report.seconds = time.monotonic() - t0
        r = trial.report
        log(
            f"trial {i} [{database}/{target.kind}]: {sum(r.kills.values())} kills "
            f"{dict(r.kills)}, survived {dict(r.survived)}, {r.runs} runs, "
            f"{r.files} files, {r.objects} objects, {r.seconds:.1f}s, "
            f"leftovers {dict(r.leftovers_after_kills)}, clean run exit {r.clean_exit}, "
            f"started with {r.stranded} files still leased by killed runs"
        )
        for p in r.counts.problems:
            log(f"  PROBLEM {p}")
        for o in r.odd_exits[:10]:
            log(f"  ODD {o[:800]}")
        reports.append(r)
    return HarnessResult(database, seed, reports, time.monotonic() - started)
