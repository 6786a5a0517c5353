"""``accounts.<name>.allowed_hosts`` end to end: the API host is allowed, other media hosts are not.

The GeminiGen simulator answers its API on ``localhost`` (allowed) and links
its media on ``127.0.0.1`` (not on the list), which is how a compromised or
confused provider pointing genvault at an unexpected host looks.
"""

from __future__ import annotations

from pathlib import Path

from genvault.records import AssetState
from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import genvault, write_config

API_KEY = "gg-allowlist-key-5c1d"


def _config(tmp_path: Path, sim: geminigen.GeminiGenSimulator, hosts: list[str]) -> Path:
    port = sim.base_url.rsplit(":", 1)[1]
    return write_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'archive'}",
        accounts=[
            {
                "name": "main",
                "provider": "geminigen",
                "api_key_env": "GG_KEY",
                "base_url": sim.api_base.replace("127.0.0.1", "localhost"),
                "media_base": f"http://127.0.0.1:{port}/cdn/",
                "allowed_hosts": hosts,
            }
        ],
    )


def test_media_outside_the_allowlist_is_refused_and_reported(tmp_path: Path) -> None:
    with geminigen.create(
        api_key=API_KEY, seed=5, count=4, processing_count=0, failed_count=0
    ) as sim:
        config = _config(tmp_path, sim, ["localhost"])
        proc = genvault("--config", str(config), "run", "--once", env={"GG_KEY": API_KEY})
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert sim.stats.snapshot()["media_hits"] == {}, "a refused host was contacted"
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        assets = store.assets("main")
    finally:
        store.dispose()
    wanted = [a for a in assets if a["state"] != AssetState.SKIPPED.value]  # references
    assert wanted, "the API (on an allowed host) was synced"
    assert {a["state"] for a in wanted} == {AssetState.FAILED.value}
    assert all("not in the allowlist" in (a["last_error"] or "") for a in wanted)
    assert not list((tmp_path / "archive").rglob("*.png"))


def test_the_same_run_archives_when_the_media_host_is_listed(tmp_path: Path) -> None:
    with geminigen.create(
        api_key=API_KEY, seed=5, count=4, processing_count=0, failed_count=0
    ) as sim:
        config = _config(tmp_path, sim, ["localhost", "127.0.0.1"])
        proc = genvault("--config", str(config), "run", "--once", env={"GG_KEY": API_KEY})
        assert proc.returncode == 0, proc.stderr[-2000:]
