"""5. Deadlines: files lost with earliest-deadline-first leasing vs first-in-first-out.

Issue 5: with a backlog larger than the bandwidth can clear and deadlines spread out,
genvault must lose nothing whenever some order loses nothing, and strictly fewer
files than FIFO otherwise.

The inputs are real Tengr.ai simulators on loopback (its signed result URLs die
``signed_ttl_seconds`` after the simulator is built: the CDN answers 403 from then on,
and the listing's ``?Expires=`` is what genvault takes as the file's deadline). Each
scenario has a few "deadline" accounts whose signed URLs die at different times, a
few seconds apart, plus a "bulk" account whose files keep 8 days: that backlog is
what the bandwidth cannot clear before the run ends, and what a FIFO archiver wastes
its bandwidth on. Every media response is paced to ``bandwidth_bps`` (a slow CDN),
so each of genvault's ``slots`` concurrent downloads takes ``file_size /
bandwidth_bps`` seconds a file.

Both orders run at the same time, in this process, on identical inputs: each has
its own simulators (same seeds, built in the same instant, so the same ids,
creation times and signed expiries to the second), its own SQLite database and its
own folder; both archive passes start at the same instant ``t0`` and are stopped
together once the last deadline is past. Running them side by side, rather than one
after the other, gives both the same clock, which noise on this 2-core box would
otherwise make differ; the downloads are paced by sleeping, so the two hardly
compete for CPU. A file is lost when it was not archived and its deadline has passed.

The capacity model (``slots`` downloads at a time, ``file_size / bandwidth_bps``
seconds each) says offline whether a loss-free order exists: sort by deadline, and
the k-th file (from 0) completes at ``(k // slots + 1) * seconds_per_file``, which
must be at or before its deadline. The same greedy, dropping a file that would
complete late, gives the fewest losses any order can have (optimal when every file
takes the same time). The model is stricter than the CDN, which checks the
deadline when a download starts, so genvault may beat the model's minimum slightly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog
from pydantic import SecretStr

from bench.core import Result, Scale
from bench.infra import workspace
from genvault.config import (
    AccountSettings,
    ArchiveSettings,
    DatabaseSettings,
    NetworkSettings,
    ScheduleSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.archive import ArchiveResult, archive_pending
from genvault.jobs.sync import sync_account
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import tengrai
from genvault.store import LeaseOrder, Store

NAME: Final = "deadlines"
TITLE: Final = "earliest-deadline-first vs FIFO: files lost to expiry"
RATIOS: Final = (
    "feasible: share of at-risk files EDF saved",
    "infeasible: FIFO losses - EDF losses",
)
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
API_KEY: Final = "bench-tengrai-deadlines-key"
ORDERS: Final = (LeaseOrder.DEADLINE, LeaseOrder.FIFO)


@dataclass(frozen=True)
class Plan:
    """The network and timing of one scale; scenarios differ only in how many files."""

    slots: int
    """genvault's ``archive.concurrency``: downloads at a time."""
    file_size: int
    bandwidth_bps: int
    """Per download (the simulator paces each media response to this)."""
    deadlines_s: tuple[int, ...]
    """Seconds after ``t0`` at which each deadline account's URLs die. Whole
    seconds: the simulator signs ``Expires=`` in whole Unix seconds."""
    lead_s: int
    """Seconds from building the simulators to ``t0``: time to sync both databases."""
    bulk_artworks: int
    margin_s: float
    """After the last deadline, before stopping: downloads started in time finish."""

    @property
    def seconds_per_file(self) -> float:
        return self.file_size / self.bandwidth_bps


@dataclass(frozen=True)
class Scenario:
    name: str
    artworks: tuple[int, ...]
    """Artworks of each deadline account (1-2 files each), one per ``deadlines_s``."""


PLANS: Final = {
    # 1 s a file, 4 at a time: 4 files/s; deadlines 8-26 s; ~35 s of work queued.
    Scale.FULL: Plan(
        slots=4,
        file_size=100_000,
        bandwidth_bps=100_000,
        deadlines_s=(8, 14, 20, 26),
        lead_s=2,
        bulk_artworks=45,
        margin_s=2.5,
    ),
    # 0.25 s a file, 4 at a time: 16 files/s; deadlines 1 and 2 s.
    Scale.SMOKE: Plan(
        slots=4,
        file_size=10_000,
        bandwidth_bps=40_000,
        deadlines_s=(1, 2),
        lead_s=2,
        bulk_artworks=10,
        margin_s=0.75,
    ),
}
SCENARIOS: Final = {
    Scale.FULL: (
        Scenario("feasible", (15, 15, 15, 15)),  # ~21 files each: 21, 42, 63, 84 by 8..26 s
        Scenario("infeasible", (26, 26, 26, 26)),  # ~37 each: 37, 74, 111, 148 vs 32..104
    ),
    Scale.SMOKE: (
        Scenario("feasible", (7, 7)),  # ~10 files each: 10, 20 vs capacity 16, 32
        Scenario("infeasible", (16, 16)),  # ~22 each: 22, 44 vs 16, 32
    ),
}


# --------------------------------------------------------------------------- the model


def loss_free_order_exists(deadlines: Sequence[float], slots: int, per_file: float) -> bool:
    """Whether every file can complete by its deadline (EDF on ``slots`` equal slots)."""
    return all((k // slots + 1) * per_file <= d for k, d in enumerate(sorted(deadlines)))


def minimum_losses(deadlines: Sequence[float], slots: int, per_file: float) -> int:
    """The fewest files any order loses: EDF, dropping a file that would complete late.

    With equal processing times, keeping the earliest-deadline files that still fit is
    optimal (an exchange argument: a kept file can always replace a dropped one with
    a later deadline without making anything late).
    """
    kept = lost = 0
    for d in sorted(deadlines):
        if (kept // slots + 1) * per_file <= d:
            kept += 1
        else:
            lost += 1
    return lost


def fifo_losses(files: Sequence[tuple[float, float]], slots: int, per_file: float) -> int:
    """Files a FIFO archiver loses: ``files`` are (created, deadline), taken oldest first.

    As the CDN does, a file is lost when its download would *start* after the
    deadline; such a file costs no bandwidth (a quick 403).
    """
    free = [0.0] * slots
    lost = 0
    for _created, deadline in sorted(files):
        i = min(range(slots), key=free.__getitem__)
        if free[i] >= deadline:
            lost += 1
        else:
            free[i] += per_file
    return lost


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    """One archive pass (one order) over its own simulators, database and folder."""

    order: LeaseOrder
    dir: Path
    sims: list[tengrai.TengrAISimulator] = field(default_factory=list)
    rt: Runtime | None = None
    result: ArchiveResult | None = None
    error: BaseException | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.dir / 'genvault.db'}"

    def settings(self, plan: Plan) -> Settings:
        return Settings(
            database=DatabaseSettings(url=self.db_url),
            storage=StorageSettings(url=f"file://{self.dir / 'archive'}"),
            network=NetworkSettings(allow_private=True, read_timeout=30),
            archive=ArchiveSettings(
                concurrency=plan.slots, retry_base_seconds=0.2, thumbnails=False
            ),
            schedule=ScheduleSettings(shutdown_grace_seconds=0),
            accounts=tuple(
                AccountSettings(
                    name=_account(i),
                    provider="tengrai",
                    api_key_env="BENCH_UNUSED",  # the key is handed over below
                    base_url=sim.api_base,
                    **sim.account_options,
                )
                for i, sim in enumerate(self.sims)
            ),
        )

    def archive(self, stop: threading.Event) -> None:
        assert self.rt is not None
        try:
            self.result = archive_pending(self.rt, stop=stop, order=self.order)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def _account(i: int) -> str:
    return f"acc{i}"


def _build_sims(plan: Plan, scenario: Scenario, built_at: float) -> list[tengrai.TengrAISimulator]:
    """The deadline accounts, then the bulk account; seeds fixed, so runs are identical.

    A signed URL expires ``signed_ttl_seconds`` after the simulator's construction,
    rounded down to a whole second: with ``built_at`` safely inside a second and a
    whole-second ttl, every simulator of every run gets the same expiries.
    """
    sims: list[tengrai.TengrAISimulator] = []
    common: dict[str, Any] = {
        "api_key": API_KEY,
        "image_size": plan.file_size,
        "processing_count": 0,
        "failed_count": 0,
        "canceled_count": 0,
        "empty_count": 0,
    }
    for i, (count, deadline) in enumerate(zip(scenario.artworks, plan.deadlines_s, strict=True)):
        sims.append(
            tengrai.create(
                seed=100 + i,
                count=count,
                signed_count=count,
                signed_ttl_seconds=float(plan.lead_s + deadline),
                **common,
            )
        )
    sims.append(tengrai.create(seed=99, count=plan.bulk_artworks, signed_count=0, **common))
    if time.time() - built_at > 0.2:  # the next run's expiries could fall a second later
        raise RuntimeError("building the simulators took too long; try again")
    for sim in sims:
        sim.faults.bandwidth_bps = plan.bandwidth_bps
        sim.start()
    return sims


@contextlib.contextmanager
def _genvault_logs(path: Path) -> Iterator[None]:
    """genvault's structured logs (one ``asset.lost`` error per lost file) go to a file."""
    old = structlog.get_config()
    with path.open("w") as out:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(file=out),
            cache_logger_on_first_use=False,
        )
        try:
            yield
        finally:
            structlog.configure(**old)


def _wait_until(instant: float) -> None:
    delay = instant - time.time()
    if delay > 0:
        time.sleep(delay)


def _inside_a_second() -> float:
    """Now, once it is well inside a wall-clock second (see :func:`_build_sims`)."""
    while not 0.05 <= time.time() % 1 <= 0.75:
        time.sleep(0.05)
    return time.time()


def _inputs(store: Store) -> list[tuple[str, int, datetime, datetime]]:
    """(external id, position, created, deadline) of every pending file, sorted."""
    return sorted(
        (a["external_id"], a["position"], a["created_at"], a["expires_at"]) for a in store.assets()
    )


def _same(inputs: list[tuple[str, int, datetime, datetime]]) -> tuple[object, ...]:
    """What must be identical across runs: the files, their deadlines, their FIFO order.

    Creation times themselves differ by the milliseconds between the simulators'
    constructions (they are "now minus an age"), and so do the 8-day deadlines of the
    bulk files that derive from them; the signed expiries are whole seconds.
    """
    soon = datetime.now(UTC) + timedelta(days=1)
    by_age = sorted(inputs, key=lambda f: (f[2], f[0], f[1]))
    return (
        tuple((e, p, d if d < soon else None) for e, p, _, d in inputs),
        tuple((e, p) for e, p, _, _ in by_age),
    )


@dataclass(frozen=True)
class Outcome:
    at_risk: int
    """Files whose deadline falls before the run stops."""
    bulk: int
    feasible: bool
    model_min: int
    model_fifo: int
    lost: dict[LeaseOrder, int]
    archived: dict[LeaseOrder, int]
    start_lag_s: float


def run_scenario(plan: Plan, scenario: Scenario, work: Path) -> Outcome:
    """Both orders side by side on identical inputs; counts of lost files."""
    runs = [Run(order, work / f"{scenario.name}-{order.value}") for order in ORDERS]
    for r in runs:
        r.dir.mkdir(parents=True)
        store = Store(r.db_url)  # the schema first, so that the clock starts after it
        store.upgrade()
        store.dispose()
    try:
        built_at = _inside_a_second()
        for r in runs:
            r.sims = _build_sims(plan, scenario, built_at)
        t0 = float(int(built_at) + plan.lead_s)
        for r in runs:
            r.rt = Runtime.build(
                r.settings(plan),
                {_account(i): SecretStr(API_KEY) for i in range(len(r.sims))},
                upgrade=False,
            )
            for acc in r.rt.accounts.values():
                synced = sync_account(r.rt, acc)
                if synced.error or not synced.complete:
                    raise RuntimeError(f"sync of {acc.name} failed: {synced}")
        inputs = [_inputs(r.rt.store) for r in runs if r.rt is not None]
        if [_same(i) for i in inputs[1:]] != [_same(inputs[0])] * (len(inputs) - 1):
            raise RuntimeError("the two runs did not get identical inputs")
        start_lag = max(0.0, time.time() - t0)
        stop_at = t0 + plan.deadlines_s[-1] + plan.margin_s
        files = [(c.timestamp() - t0, d.timestamp() - t0) for _, _, c, d in inputs[0]]
        at_risk = [d for _, d in files if d <= stop_at - t0]
        stop = threading.Event()
        threads = [
            threading.Thread(target=r.archive, args=(stop,), name=f"bench-{r.order.value}")
            for r in runs
        ]
        _wait_until(t0)
        for t in threads:
            t.start()
        _wait_until(stop_at)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        lost: dict[LeaseOrder, int] = {}
        archived: dict[LeaseOrder, int] = {}
        now = datetime.now(UTC)
        for r in runs:
            if r.error is not None:
                raise RuntimeError(f"{r.order.value} archive pass failed") from r.error
            assert r.rt is not None
            rows = r.rt.store.assets()
            archived[r.order] = sum(a["state"] == AssetState.ARCHIVED.value for a in rows)
            lost[r.order] = sum(
                a["state"] != AssetState.ARCHIVED.value and a["expires_at"] <= now for a in rows
            )
        per_file = plan.seconds_per_file
        return Outcome(
            at_risk=len(at_risk),
            bulk=len(files) - len(at_risk),
            feasible=loss_free_order_exists(at_risk, plan.slots, per_file),
            model_min=minimum_losses(at_risk, plan.slots, per_file),
            model_fifo=fifo_losses(files, plan.slots, per_file),
            lost=lost,
            archived=archived,
            start_lag_s=start_lag,
        )
    finally:
        for r in runs:
            if r.rt is not None:
                r.rt.close()
            for sim in r.sims:
                sim.stop()


def run(scale: Scale) -> Result:
    """Each scenario once: both orders side by side, then the model's verdict."""
    result = Result(NAME, TITLE, scale)
    plan = PLANS[scale]
    result.note(
        f"{plan.slots} downloads at a time, {plan.file_size // 1000} kB files at "
        f"{plan.bandwidth_bps // 1000} kB/s each ({plan.seconds_per_file:g} s a file); "
        f"deadlines {', '.join(str(d) for d in plan.deadlines_s)} s after the start"
    )
    with workspace(NAME) as work, _genvault_logs(work / "genvault.log"):
        for scenario in SCENARIOS[scale]:
            out = run_scenario(plan, scenario, work)
            edf, fifo = out.lost[LeaseOrder.DEADLINE], out.lost[LeaseOrder.FIFO]
            s = scenario.name
            result.figure(f"{s}: files with a deadline in the run", out.at_risk, "files")
            result.figure(f"{s}: files without (8-day bulk)", out.bulk, "files")
            result.figure(f"{s}: loss-free order exists (model)", int(out.feasible))
            result.figure(f"{s}: fewest possible losses (model)", out.model_min, "files")
            result.figure(f"{s}: FIFO losses (model)", out.model_fifo, "files")
            result.figure(f"{s}: lost, earliest deadline first", edf, "files")
            result.figure(f"{s}: lost, FIFO", fifo, "files")
            result.figure(f"{s}: archived, EDF", out.archived[LeaseOrder.DEADLINE], "files")
            result.figure(f"{s}: archived, FIFO", out.archived[LeaseOrder.FIFO], "files")
            if out.start_lag_s > 0:
                result.note(f"{s}: the sync ran {out.start_lag_s:.2f} s past t0")
            if s == "feasible":
                if not out.feasible:
                    result.note("feasible scenario: the model finds no loss-free order")
                saved = (out.at_risk - edf) / out.at_risk if out.at_risk else 0.0
                result.ratio("feasible: share of at-risk files EDF saved", saved, 1.0)
            else:
                if out.feasible:
                    result.note("infeasible scenario: the model finds a loss-free order")
                result.ratio("infeasible: FIFO losses - EDF losses", fifo - edf, 1.0)
    return result
