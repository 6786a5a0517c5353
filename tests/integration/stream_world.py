"""A crafted archive whose completeness figures are known, per account and stream.

Rows are saved through the store's own ``save_page`` / ``register_tasks`` (the suite's
helpers); the columns the sync job fills (``generation.stream``, ``listed_at``,
``gone_at``, ``next_poll_at``, the cursor's walk outcome) and the files' states are then
set with SQL, so the report is tested on its own, whatever the sync job does.

Accounts (their names are what the status config of the CLI test uses):

* ``cc`` (CrowdComputed-like, one stream per workflow):

  - ``wf-ok``: complete; listed 3, known 2 (one gone after its file was archived),
    4 files archived, one generation awaiting a read; ordered newest first, pages of 20;
  - ``wf-rejected``: the provider refused the workflow: a sync error and no walk ever
    complete; one generation, one pending file;
  - ``wf-lossy``: a walk in progress after one that ended incomplete ("drift not
    repaired"); 2 files missing (a failed and a lost one of a generation still listed),
    2 gone before capture (a pending and a lost file of gone generations; a skipped one
    does not count), 1 archived, 2 pending (one of a gone generation: in both figures);
  - ``(tracked)``: one tracked id still due for a read (no files), one generation with a
    lost file: 1 missing;

* ``gg`` (GeminiGen-like): stream ``all`` walked before schema 0004 (``last_walk_complete``
  NULL, ``last_success_at`` set): complete; one archived file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from genvault.config import Settings
from genvault.records import MediaRole
from genvault.store import Store
from genvault.store.base import A, C, G
from tests.integration.store_helpers import POLL_HORIZON, media, now_utc, record, save, url

WORKFLOWS = ["wf-ok", "wf-rejected", "wf-lossy", "wf-later"]
"""cc's configured workflows: ``wf-later`` was never walked (no cursor, no generation)."""
REJECTED_ERROR = "BusinessError: history: Failed: invalid params"
DRIFT = "drift not repaired"

EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("cc", "wf-ok"): {
        "listed": 3,
        "known": 2,
        "gone": 1,
        "archived": 4,
        "pending": 0,
        "awaiting_read": 1,
        "missing": 0,
        "gone_before_capture": 0,
        "error": None,
        "last_walk_complete": True,
        "incomplete_reason": None,
        "order_seen": "newest_first",
        "page_size_seen": 20,
        "walking": False,
        "complete": True,
    },
    ("cc", "wf-rejected"): {
        "listed": None,
        "known": 1,
        "gone": 0,
        "archived": 0,
        "pending": 1,
        "awaiting_read": 0,
        "missing": 0,
        "gone_before_capture": 0,
        "error": REJECTED_ERROR,
        "last_walk_complete": None,
        "incomplete_reason": None,
        "order_seen": None,
        "page_size_seen": None,
        "walking": False,
        "complete": False,
    },
    ("cc", "wf-lossy"): {
        "listed": 5,
        "known": 2,
        "gone": 2,
        "archived": 1,
        "pending": 2,
        "awaiting_read": 0,
        "missing": 2,
        "gone_before_capture": 2,
        "error": None,
        "last_walk_complete": False,
        "incomplete_reason": DRIFT,
        "order_seen": "unsorted",
        "page_size_seen": None,
        "walking": True,
        "complete": False,
    },
    ("cc", "(tracked)"): {
        "listed": None,
        "known": 2,
        "gone": 0,
        "archived": 0,
        "pending": 0,
        "awaiting_read": 1,
        "missing": 1,
        "gone_before_capture": 0,
        "error": None,
        "last_walk_complete": None,
        "incomplete_reason": None,
        "order_seen": None,
        "page_size_seen": None,
        "walking": False,
        "complete": False,
    },
    ("gg", "all"): {
        "listed": None,
        "known": 1,
        "gone": 0,
        "archived": 1,
        "pending": 0,
        "awaiting_read": 0,
        "missing": 0,
        "gone_before_capture": 0,
        "error": None,
        "last_walk_complete": None,
        "incomplete_reason": None,
        "order_seen": None,
        "page_size_seen": None,
        "walking": False,
        "complete": True,
    },
}
"""(account, stream) -> the figures the report must give."""


@dataclass(frozen=True)
class World:
    now: datetime
    walked: dict[tuple[str, str], datetime]
    """(account, stream) -> its last complete walk (``last_success_at``)."""
    full_walked: dict[tuple[str, str], datetime]
    """(account, stream) -> its last complete full walk."""


def _files(store: Store, account: str, ext: str, states: list[str], now: datetime) -> None:
    """One generation with a file per state (``result`` first, then ``thumbnail``s)."""
    roles = [MediaRole.RESULT] + [MediaRole.THUMBNAIL] * (len(states) - 1)
    links = [url(f"{account}/{ext}/{i}.jpg") for i in range(len(states))]
    save(
        store,
        [
            record(
                ext,
                created_at=now - timedelta(hours=3),
                media_=[media(link, role) for link, role in zip(links, roles, strict=True)],
            )
        ],
        account=account,
        now=now,
    )
    with store.tx() as conn:
        for link, state in zip(links, states, strict=True):
            done = conn.execute(
                A.update().where(A.c.source_url == link).values(state=state)
            ).rowcount
            assert done == 1, link


def _generation(
    store: Store,
    account: str,
    ext: str,
    stream: str | None,
    now: datetime,
    *,
    gone: bool = False,
    awaiting_read: bool = False,
) -> None:
    with store.tx() as conn:
        done = conn.execute(
            G.update()
            .where(G.c.account == account, G.c.external_id == ext)
            .values(
                stream=stream,
                listed_at=now - timedelta(hours=2) if stream else None,
                gone_at=now - timedelta(hours=1) if gone else None,
                next_poll_at=now if awaiting_read else None,
            )
        ).rowcount
    assert done == 1, (account, ext)


def _cursor(store: Store, account: str, stream: str, **values: Any) -> None:
    with store.tx() as conn:
        conn.execute(
            C.insert().values(
                provider="crowdcomputed" if account == "cc" else "geminigen",
                account=account,
                stream=stream,
                items_seen=0,
                **values,
            )
        )


def build(store: Store, now: datetime | None = None) -> World:
    now = now or now_utc()
    # cc / wf-ok
    _files(store, "cc", "ok-1", ["archived", "archived"], now)
    _files(store, "cc", "ok-2", ["archived"], now)
    _files(store, "cc", "ok-3", ["archived"], now)
    _generation(store, "cc", "ok-1", "wf-ok", now)
    _generation(store, "cc", "ok-2", "wf-ok", now, awaiting_read=True)
    _generation(store, "cc", "ok-3", "wf-ok", now, gone=True)  # archived before it went
    # cc / wf-rejected
    _files(store, "cc", "rej-1", ["pending"], now)
    _generation(store, "cc", "rej-1", "wf-rejected", now)
    # cc / wf-lossy
    _files(store, "cc", "lossy-1", ["failed", "lost"], now)
    _files(store, "cc", "lossy-2", ["archived", "pending"], now)
    _files(store, "cc", "lossy-3", ["pending", "skipped"], now)
    _files(store, "cc", "lossy-4", ["lost"], now)
    _generation(store, "cc", "lossy-1", "wf-lossy", now)
    _generation(store, "cc", "lossy-2", "wf-lossy", now)
    _generation(store, "cc", "lossy-3", "wf-lossy", now, gone=True)
    _generation(store, "cc", "lossy-4", "wf-lossy", now, gone=True)
    # cc / (tracked)
    store.register_tasks(
        provider="crowdcomputed",
        account="cc",
        items=[{"id": "tracked-1"}],
        source="track",
        poll_horizon=POLL_HORIZON,
        now=now,
    )
    _generation(store, "cc", "tracked-1", None, now, awaiting_read=True)
    _files(store, "cc", "tracked-2", ["lost"], now)
    _generation(store, "cc", "tracked-2", None, now)
    # gg / all
    _files(store, "gg", "gg-1", ["archived"], now)
    _generation(store, "gg", "gg-1", "all", now)

    walked = {
        ("cc", "wf-ok"): now - timedelta(minutes=30),
        ("cc", "wf-lossy"): now - timedelta(hours=5),
        ("gg", "all"): now - timedelta(hours=1),
    }
    full_walked = {
        ("cc", "wf-ok"): now - timedelta(hours=26),
        ("cc", "wf-lossy"): now - timedelta(days=3),
    }
    _cursor(
        store,
        "cc",
        "wf-ok",
        listed=3,
        last_success_at=walked[("cc", "wf-ok")],
        last_full_walk_at=full_walked[("cc", "wf-ok")],
        last_walk_complete=True,
        order_seen="newest_first",
        page_size_seen=20,
    )
    _cursor(store, "cc", "wf-rejected", last_error=REJECTED_ERROR, last_run_at=now)
    _cursor(
        store,
        "cc",
        "wf-lossy",
        listed=5,
        last_success_at=walked[("cc", "wf-lossy")],
        last_full_walk_at=full_walked[("cc", "wf-lossy")],
        last_walk_complete=False,
        incomplete_reason=DRIFT,
        order_seen="unsorted",
        scan_position=2,
        walk_full=True,
        walk_started_at=now - timedelta(minutes=5),
    )
    _cursor(store, "gg", "all", last_success_at=walked[("gg", "all")])
    return World(now=now, walked=walked, full_walked=full_walked)


def figures(report: Any) -> dict[str, Any]:
    """The fields of a StreamReport (or of its status-document dict) that EXPECTED lists."""
    get = report.get if isinstance(report, dict) else lambda k: getattr(report, k)
    return {k: get(k) for k in EXPECTED[("cc", "wf-ok")]}


def settings(db_url: str, tmp: Path, **extra: Any) -> Settings:
    """A config for the world's accounts (cc with :data:`WORKFLOWS`, gg, and ak: Akool,
    no listing); their APIs are never called (nothing listens on port 9)."""
    dead = "http://127.0.0.1:9/api"
    return Settings.model_validate(
        {
            "database": {"url": db_url},
            "storage": {"url": f"file://{tmp / 'archive'}"},
            "network": {"allow_private": True},
            "server": {"listen": "127.0.0.1:0"},  # tests run side by side: no fixed port
            "accounts": [
                {
                    "name": "cc",
                    "provider": "crowdcomputed",
                    "api_key_env": "X",
                    "base_url": dead,
                    "workflows": WORKFLOWS,
                },
                {"name": "gg", "provider": "geminigen", "api_key_env": "X", "base_url": dead},
                {"name": "ak", "provider": "akool", "api_key_env": "X", "base_url": dead},
            ],
            **extra,
        }
    )


SECRETS = {name: SecretStr(f"{name}-unused-key-0000") for name in ("cc", "gg", "ak")}
"""The accounts' keys for ``Runtime.build`` (never sent)."""
