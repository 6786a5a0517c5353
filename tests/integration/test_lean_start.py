"""A start loads only what a pass uses: Alembic only to migrate, cryptography only for webhooks.

Every start of ``run --once`` (a CronJob, a timer) pays for its imports in time and
resident memory, and issue 5's memory budget counts the whole process. These tests
run each probe in a fresh interpreter, because this one has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from genvault.providers.registry import PROVIDERS
from genvault.store import MIGRATIONS, SCHEMA_HEAD


def _probe(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_schema_head_is_alembics_single_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [SCHEMA_HEAD]


_UPGRADE = """
import sys
from genvault.store import Store
store = Store(sys.argv[1])
store.upgrade()
print(store.schema_revision(), "alembic" in sys.modules)
"""


def test_only_a_database_behind_head_loads_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gv.db'}"
    assert _probe(_UPGRADE, url) == f"{SCHEMA_HEAD} True"  # a new database: Alembic migrates
    assert _probe(_UPGRADE, url) == f"{SCHEMA_HEAD} False"  # at head: nothing loaded


_PROVIDERS = """
import sys
import genvault.cli, genvault.runtime
from genvault.providers.registry import PROVIDERS, provider_class
for name in PROVIDERS:
    provider_class(name)
print(sorted(PROVIDERS), "cryptography" in sys.modules)
from genvault.providers.akool import aes_cipher
aes_cipher("k" * 32, "i" * 16)
print("cryptography" in sys.modules)
"""


def test_cryptography_loads_only_when_a_webhook_is_decrypted() -> None:
    before, after = _probe(_PROVIDERS).splitlines()
    assert before == f"{sorted(PROVIDERS)} False"
    assert after == "True"


_NET = """
import importlib.util, sys
import genvault.net.client
installed = importlib.util.find_spec("trio") is not None
print("trio" in sys.modules, installed)
if installed:
    import trio  # hidden from httpcore only: anyone else still imports it
    print(trio.__name__)
"""


def test_the_http_stack_loads_without_trio_and_trio_stays_importable() -> None:
    """httpcore imports trio for an async pool genvault never uses (``genvault.net``);
    with trio installed (the dev extras), it is not loaded, and still importable."""
    hidden, installed, *rest = _probe(_NET).split()
    assert hidden == "False"
    if installed == "True":
        assert rest == ["trio"]


_RUN_ONCE = """
import gc, json, sys
from genvault.cli import main
seen = []  # whether the runtime was built at each garbage collection
def collecting(phase, _info):
    if phase == "start":
        seen.append("genvault.runtime" in sys.modules)
gc.callbacks.append(collecting)
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
report = {"code": code, "modules": sorted(sys.modules), "collections": seen}
print(json.dumps({**report, "frozen": gc.get_freeze_count() > 0, "gc_after": gc.isenabled()}))
"""

NOT_FOR_RUN_ONCE = (
    "apscheduler",  # the daemon's scheduler
    "waitress",  # and its HTTP server
    "genvault.scheduler",
    "genvault.server",
    "genvault.cli.backfill",  # other commands: registered lazily
    "genvault.cli.search",
    "genvault.cli.export",
    "genvault.cli.verify",
    "alembic",  # the database is at head
    "boto3",  # a local folder
    "rich",  # JSON logs; neither structlog nor httpx's CLI loads it any more
    "pygments",
    "httpx._main",
    "trio",  # httpcore's async pool under trio (genvault.net); with attrs and outcome
    "prometheus_client",  # no --metrics-file: nothing reads the counters (UnreadMetrics)
    "http.server",  # prometheus_client's exposition server
)
"""Modules a nothing-to-do ``run --once`` (SQLite, local folder, JSON logs) must not
import: each was ~5-120 ms of every cron start (``python -m bench startup``)."""


def test_run_once_imports_only_what_a_pass_uses(tmp_path: Path) -> None:
    from genvault.simulator import geminigen
    from tests.acceptance.helpers import local_config, sim_account

    key = "gg-lean-start-key-5f1d"
    sim = geminigen.create(api_key=key, seed=5, count=3, processing_count=0, failed_count=0)
    with sim:
        config = local_config(tmp_path, [sim_account(sim, "GG")])
        argv = ["--config", str(config), "--log-format", "json", "run", "--once"]
        env = {**os.environ, "GG": key}
        runs = [
            subprocess.run(
                [sys.executable, "-c", _RUN_ONCE, *argv],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            for _ in range(2)  # the first archives, the second has nothing to do
        ]
    # the first run migrates: Alembic (and Mako, which imports pygments) is allowed there
    for done, allowed in zip(runs, (("alembic", "pygments"), ()), strict=True):
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["code"] == 0, done.stderr[-3000:]
        loaded = set(report["modules"])
        assert "genvault.jobs.pipeline" in loaded  # it did run a pass
        # no garbage collection during start-up, some in the pass (genvault.cli.start_up_done)
        assert report["collections"] and all(report["collections"]), report["collections"]
        assert report["gc_after"] and report["frozen"]
        unwanted = sorted(
            m
            for m in loaded
            for n in NOT_FOR_RUN_ONCE
            if (m == n or m.startswith(n + ".")) and n not in allowed
        )
        assert unwanted == []


_COMMAND_LINE = """
import atexit, os, sys
def teardown(event, _args, write=os.write):  # a normal exit clears the interpreter
    if event == "cpython.PyInterpreterState_Clear":
        write(2, b"interpreter torn down\\n")
sys.addaudithook(teardown)
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
sys.stdout.write("buffered without a newline")
from genvault.cli import main
how, sys.argv[1:] = sys.argv[1], sys.argv[2:]
if how == "cli":
    main(sys.argv[1:])  # a caller's own arguments: a normal exit
if how == "profiled":  # as python -m cProfile -m genvault.cli: it reports after main()
    import cProfile
    cProfile.Profile().enable()
main(prog_name="genvault")  # the command line, as the genvault script calls it
"""


def test_run_once_from_the_command_line_skips_only_the_teardown(tmp_path: Path) -> None:
    """``run --once`` ends with ``os._exit`` (``genvault.cli.skip_teardown``) only when
    called as the command line and not profiled: its exit code, its metrics file, its log
    lines, buffered output and atexit handlers are all there; only the teardown is not."""
    from genvault.simulator import geminigen
    from tests.acceptance.helpers import local_config, sim_account

    key = "gg-lean-exit-key-8a2c"
    sim = geminigen.create(api_key=key, seed=7, count=3, processing_count=0, failed_count=0)
    with sim:
        config = local_config(tmp_path, [sim_account(sim, "GG")])
        env = {**os.environ, "GG": key}
        done = {}
        for how in ("cli", "command line", "profiled"):  # the first one migrates
            metrics = tmp_path / f"{how}.prom"
            argv = ["--config", str(config), "--log-format", "json", "run", "--once"]
            argv += ["--metrics-file", str(metrics)]
            done[how] = subprocess.run(
                [sys.executable, "-c", _COMMAND_LINE, how, *argv],
                capture_output=True,
                text=True,
                env=env,
            )
            assert done[how].returncode == 0, done[how].stderr[-3000:]
            assert done[how].stdout == "buffered without a newline"
            assert "atexit ran" in done[how].stderr
            assert '"event": "run.done"' in done[how].stderr
            assert "genvault_job_runs_total" in metrics.read_text()
    assert "interpreter torn down" in done["cli"].stderr
    assert "interpreter torn down" not in done["command line"].stderr
    assert "interpreter torn down" in done["profiled"].stderr
    assert not [line for line in done["command line"].stderr.splitlines() if "Traceback" in line]
