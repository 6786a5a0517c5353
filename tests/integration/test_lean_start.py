"""A start loads only what a pass uses: Alembic only to migrate, cryptography only for webhooks.

Every start of ``run --once`` (a CronJob, a timer) pays for its imports in time and
resident memory, and issue 5's memory budget counts the whole process. These tests
run each probe in a fresh interpreter, because this one has long imported everything.
"""

from __future__ import annotations

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
