"""``genvault demo``: a first look with no config, no keys and no network.

Starts every built-in provider simulator on loopback, points one account at
each, and runs the real pipeline (the same Runtime and jobs as production)
into ``./genvault-demo/`` (SQLite + a local folder) until everything that can
be archived is, with a progress display and a summary at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from genvault.config import (
    AccountSettings,
    DatabaseSettings,
    NetworkSettings,
    PollSettings,
    Settings,
    StorageSettings,
)
from genvault.exitcodes import ExitCode
from genvault.formatting import human_bytes
from genvault.jobs.pipeline import RunReport, run_once
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import SIMULATORS, simulator_factory

DEMO_KEY = "demo-key-not-a-secret-2024"  # 24 chars: Akool derives an AES-192 key from it
DEMO_KEY_ENV = "GENVAULT_DEMO_KEY"


@dataclass
class DemoResult:
    generations: int
    files: int
    bytes: int
    seconds: float
    lost: int
    pending: int


def demo_settings(directory: Path, sims: dict[str, Any]) -> Settings:
    """Settings for the demo: SQLite and a folder under ``directory``, loopback allowed."""
    root = directory.resolve()
    return Settings(
        database=DatabaseSettings(url=f"sqlite:///{root / 'genvault.db'}"),
        storage=StorageSettings(url=f"file://{root / 'archive'}"),
        network=NetworkSettings(allow_private=True, read_timeout=30),
        poll=PollSettings(backoff_seconds=(1, 1, 2, 3)),
        accounts=tuple(
            AccountSettings(
                name=f"demo-{name}",
                provider=name,
                api_key_env=DEMO_KEY_ENV,
                base_url=sim.api_base,
                **getattr(sim, "account_options", {}),
            )
            for name, sim in sims.items()
        ),
    )


def start_simulators(count: int, seed: int = 7, **knobs: Any) -> dict[str, Any]:
    sims = {}
    for name in SIMULATORS:
        sim = simulator_factory(name)(api_key=DEMO_KEY, seed=seed, count=count, **knobs)
        sim.start()
        sims[name] = sim
    return sims


def write_demo_config(directory: Path, settings: Settings) -> Path:
    """The demo's whole config as TOML: every setting it ran with, not just the paths.

    ``genvault --config <it> status`` shows the demo's results; ``run --once
    --dry-run`` on it reaches for the demo's loopback simulators (gone once the demo
    ends: connection refused), never the providers' real hosts. The demo key is no
    secret, but it is still read from an environment variable like any key.
    """
    import tomli_w

    data = settings.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    path = directory / "genvault.toml"
    header = (
        "# Written by `genvault demo`: the settings it ran with. Inspect its results with\n"
        f"#   genvault --config {path} status\n"
        f"# Its simulators listened on loopback ports that close when the demo ends; to run\n"
        f"# a pass on this config, export {DEMO_KEY_ENV}={DEMO_KEY} (not a secret).\n\n"
    )
    path.write_text(header + tomli_w.dumps(data), encoding="utf-8")
    return path


def register_simulated_tasks(rt: Runtime, sims: dict[str, Any]) -> None:
    """APIs without a history listing learn task ids from whoever submitted them:
    in the demo, from each simulator's own list, as ``genvault track`` would."""
    for name, sim in sims.items():
        ids = getattr(sim, "task_ids", None)
        if ids:
            rt.store.register_tasks(
                provider=name,
                account=f"demo-{name}",
                items=[{"id": i} for i in ids],
                source="track",
                poll_horizon=rt.poll_horizon,
            )


def archive_until_quiet(
    rt: Runtime, *, timeout: float, on_pass: Any = None, on_outcome: Any = None
) -> list[RunReport]:
    """Run passes until no task is still running and no file is pending (or timeout)."""
    deadline = time.monotonic() + timeout
    reports = []
    while True:
        report = run_once(rt, on_outcome=on_outcome)
        reports.append(report)
        if on_pass is not None:
            on_pass(report)
        polling, pending = rt.store.outstanding_work()
        if (polling == 0 and pending == 0) or time.monotonic() > deadline:
            return reports
        time.sleep(0.5)


def demo_pipeline(
    directory: Path, *, count: int, timeout: float, console: Console
) -> tuple[DemoResult, dict[str, list[Any]], list[RunReport]]:
    """Run the demo; returns the summary, each account's simulator truth, and the passes."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sims = start_simulators(count)
    try:
        truth = {f"demo-{name}": sim.expected_media() for name, sim in sims.items()}
        settings = demo_settings(directory, sims)
        write_demo_config(directory, settings)
        secrets = {acc.name: SecretStr(DEMO_KEY) for acc in settings.accounts}
        rt = Runtime.build(settings, secrets)
        try:
            register_simulated_tasks(rt, sims)
            console.print(
                f"[bold]genvault demo[/bold]: {len(sims)} simulated providers "
                f"({', '.join(sims)}) on loopback -> {directory}/"
            )
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[size]}"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=False) as progress:
                files = progress.add_task("archiving files", total=None, size="0 B")
                archived_bytes = 0

                def on_outcome(outcome: Any, _asset: Any) -> None:
                    nonlocal archived_bytes
                    if outcome.state is AssetState.ARCHIVED:
                        archived_bytes += outcome.size or 0
                        progress.update(files, advance=1, size=human_bytes(archived_bytes))

                def on_pass(_report: RunReport) -> None:
                    total = rt.store.count_assets() - rt.store.count_assets(AssetState.SKIPPED)
                    progress.update(files, total=total)

                reports = archive_until_quiet(
                    rt, timeout=timeout, on_pass=on_pass, on_outcome=on_outcome
                )
            result = summarize(rt, time.monotonic() - started)
        finally:
            rt.close()
    finally:
        for sim in sims.values():
            sim.stop()
    return result, truth, reports


def run_demo(
    directory: Path, *, count: int = 24, timeout: float = 90.0, console: Console | None = None
) -> int:
    """``genvault demo``: run, print a summary, return the exit code."""
    console = console or Console()
    result, _truth, reports = demo_pipeline(
        directory, count=count, timeout=timeout, console=console
    )
    archive_dir = (directory / "archive").resolve()
    console.print(
        f"\n[bold green]done[/bold green] in {result.seconds:.1f} s: "
        f"{result.generations} generations, {result.files} files archived "
        f"({human_bytes(result.bytes)}), {result.pending} pending, {result.lost} lost\n"
        f"  files:    {archive_dir}\n"
        f"  database: {(directory / 'genvault.db').resolve()}\n"
        f"  next:     genvault --config {directory / 'genvault.toml'} status"
    )
    if result.lost:
        return int(ExitCode.LOST)
    return 0 if result.pending == 0 else int(max(r.exit_code for r in reports))


def summarize(rt: Runtime, seconds: float) -> DemoResult:
    summary = rt.store.summary()
    gens = sum(sum(s["generations"].values()) for s in summary.values())
    files = sum(s["assets"].get(AssetState.ARCHIVED.value, 0) for s in summary.values())
    lost = sum(s["assets"].get(AssetState.LOST.value, 0) for s in summary.values())
    pending = sum(s["assets"].get(AssetState.PENDING.value, 0) for s in summary.values())
    size = sum(s["bytes_archived"] for s in summary.values())
    return DemoResult(gens, files, size, seconds, lost, pending)
