"""An interrupted history walk resumes where it stopped: nothing skipped, nothing twice.

The cursor of a stream advances only in the transaction that saves the rows of
the page it covers (``Store.save_page``). So after a SIGKILL right after page 3
was committed, the database holds exactly pages 1-3 and a cursor at page 3; a
SIGKILL between fetching page 4 and saving it changes nothing at all; and the
next run re-reads page 3 (one page of overlap) and carries on to the end
instead of starting over. Rows are counted against the simulator's own list.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from genvault.identity import url_key
from genvault.simulator import crowdcomputed
from genvault.store import Store
from tests.acceptance.helpers import genvault, write_config
from tests.fixtures.sims import SimStarter, sim_account

KEY = "sync-resume-key"
WORKFLOW = "text-to-image"
PAGE_SIZE = 3
TASKS = 24  # 8 pages


@pytest.fixture
def sim(start_sim: SimStarter) -> crowdcomputed.CrowdComputedSimulator:
    return start_sim(
        crowdcomputed.create,
        api_key=KEY,
        seed=4,
        count=TASKS,
        workflows=(WORKFLOW,),
        image_size=2_000,
        processing_count=0,
        failed_count=2,
        empty_count=1,
    )


def _snapshot(db_url: str) -> tuple[Counter[str], int | None, object]:
    store = Store(db_url)
    try:
        ids = Counter(g["external_id"] for g in store.generations())
        cursor = store.get_cursor("cc", WORKFLOW)
    finally:
        store.dispose()
    return ids, cursor.scan_position, cursor.high_water


def test_killed_sync_resumes_without_gaps_or_duplicate_rows(
    sim: crowdcomputed.CrowdComputedSimulator, db_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=db_url,
        storage_url=f"file://{tmp_path / 'archive'}",
        accounts=[sim_account(sim, "CC_KEY", name="cc", workflows=[WORKFLOW], page_size=PAGE_SIZE)],
    )
    newest_first = [g["taskId"] for g in sim.generations]
    assert len(newest_first) == TASKS

    def run(crash_at: str | None = None) -> int:
        env = {"CC_KEY": KEY}
        if crash_at:
            env["GENVAULT_CRASH_AT"] = crash_at
        return genvault("--config", str(config), "run", "--once", env=env).returncode

    def history_requests() -> int:
        return int(sim.stats.snapshot()["routes"].get("history", 0))

    # Killed right after page 3's commit: exactly its rows and the cursor covering them.
    assert run("sync.page_saved:3") == -signal.SIGKILL
    ids, position, high_water = _snapshot(db_url)
    assert list(ids) and max(ids.values()) == 1
    assert set(ids) == set(newest_first[: 3 * PAGE_SIZE])
    assert (position, high_water) == (3, None)
    assert history_requests() == 3

    # Killed between fetching page 4 and saving it: the page is simply not there.
    assert run("sync.page_fetched:2") == -signal.SIGKILL  # hit 1 is page 3, read again
    ids, position, _ = _snapshot(db_url)
    assert set(ids) == set(newest_first[: 3 * PAGE_SIZE]) and max(ids.values()) == 1
    assert position == 3
    assert history_requests() == 5

    # The next run resumes at page 3, not page 1, and walks to the end.
    assert run() == 0
    assert history_requests() == 5 + (TASKS // PAGE_SIZE - 2)
    ids, position, high_water = _snapshot(db_url)
    assert Counter(ids) == Counter(newest_first), "every task exactly once"
    assert position is None and high_water is not None

    # Files: one row per URL, all archived, nothing skipped.
    store = Store(db_url)
    try:
        rows = store.assets()
    finally:
        store.dispose()
    per_url = Counter(r["url_key"] for r in rows)
    assert max(per_url.values()) == 1
    assert set(per_url) == {url_key(f.url) for f in sim.expected_media()}
    assert {r["state"] for r in rows} == {"archived"}
