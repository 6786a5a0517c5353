"""``genvault search`` (issue 6) on a database filled by a real ``run --once``.

The GeminiGen simulator serves twelve generations, two of them "a red fox in fresh
snow" (an image and a video); genvault archives everything into a local folder.
Then the CLI, as a separate process like a person would run it, must find those
two and print where each of their files is, as a table and as JSON, follow grep's
exit codes, and never create or migrate a database (it is a read-only command).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import genvault, run_until_quiet, sim_account, write_config

API_KEY = "k-search-123456"


@dataclass(frozen=True)
class Archived:
    config: Path
    archive: Path
    foxes: set[str]
    """External ids of the simulator's "red fox" generations."""
    locations: set[str]
    """``file://`` locations of the foxes' archived files, from the database."""


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archived]:
    tmp = tmp_path_factory.mktemp("search")
    sim = geminigen.create(
        api_key=API_KEY, seed=2, count=12, processing_count=0, image_size=5_000, video_size=20_000
    )
    sim.start()
    try:
        db = f"sqlite:///{tmp / 'gv.db'}"
        cfg = write_config(
            tmp / "c.toml",
            db_url=db,
            storage_url=f"file://{tmp / 'archive'}",
            accounts=[sim_account(sim, "GG_KEY")],
        )
        runs = run_until_quiet(cfg, {"GG_KEY": API_KEY})
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
        foxes = {g["uuid"] for g in sim.generations if "red fox" in (g["input_text"] or "").lower()}
    finally:
        sim.stop()
    store = Store(db)
    try:
        ids = {g["id"]: g["external_id"] for g in store.generations()}
        keys = [
            a["storage_key"]
            for a in store.assets()
            if a["state"] == "archived" and ids[a["generation_id"]] in foxes
        ]
    finally:
        store.dispose()
    archive = (tmp / "archive").resolve()
    assert len(foxes) == 2 and len(keys) >= 2, (foxes, keys)
    yield Archived(cfg, archive, foxes, {(archive / k).as_uri() for k in keys})


def _path(location: str) -> Path:
    return Path(unquote(urlsplit(location).path))


def test_search_prints_each_match_with_where_its_files_are(archived: Archived) -> None:
    proc = genvault("--config", str(archived.config), "search", "red fox")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2 generations" in out, out
    for location in archived.locations:
        assert location in out, f"{location} not in:\n{out}"
        assert _path(location).is_file()
    assert out.count("│ geminigen/main ") == 2  # one row per generation
    assert "A red fox in fresh snow" in out


def test_search_json_lists_the_hits_and_their_archived_files(archived: Archived) -> None:
    proc = genvault("--config", str(archived.config), "search", '"red fox"', "snow", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["count"] == 2
    assert {h["external_id"] for h in doc["hits"]} == archived.foxes
    files = [f for h in doc["hits"] for f in h["archived"]]
    assert {f["location"] for f in files} == archived.locations
    for f in files:
        assert _path(f["location"]) == archived.archive / f["storage_key"]
    assert all(
        "red fox" in h["prompt"].lower() and h["provider"] == "geminigen" for h in doc["hits"]
    )
    assert all(len(h["archived"]) == h["files_total"] for h in doc["hits"])


def test_nothing_matched_exits_1_like_grep(archived: Archived) -> None:
    cfg = str(archived.config)
    none = genvault("--config", cfg, "search", "red fox", "--provider", "akool")
    assert none.returncode == 1, none.stderr
    assert none.stdout == "" and "no generation matched" in none.stderr
    empty = genvault("--config", cfg, "search", '"', "--since", "7d", "--json")
    assert empty.returncode == 1, empty.stderr
    assert json.loads(empty.stdout) == {"query": '"', "count": 0, "hits": []}


def test_search_never_creates_or_migrates_a_database(archived: Archived, tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    env = {"GENVAULT_DATABASE__URL": f"sqlite:///{missing}"}
    proc = genvault("--config", str(archived.config), "search", "fox", env=env)
    assert proc.returncode == 2 and "database.url" in proc.stderr, proc.stderr
    assert not missing.exists()
