"""``Store.stream_report``: completeness per account and stream, on SQLite and PostgreSQL.

The crafted archive of :mod:`tests.integration.stream_world` has a figure of every
kind (gone generations, failed, lost, skipped and pending files, a stream with a
sync error, a walk in progress after an incomplete one, the ``(tracked)``
pseudo-stream); each figure is compared with the one the world was built to give.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from genvault.store import Store
from genvault.store.queries.streams import TRACKED, StreamReport, with_configured
from tests.integration import stream_world
from tests.integration.stream_world import EXPECTED, figures


def test_every_figure_on_a_crafted_archive(store: Store) -> None:
    world = stream_world.build(store)
    later = world.now + timedelta(minutes=10)
    report = store.stream_report(now=later)
    assert [(r.account, r.stream) for r in report] == [
        ("cc", "wf-lossy"),
        ("cc", "wf-ok"),
        ("cc", "wf-rejected"),
        ("cc", TRACKED),
        ("gg", "all"),
    ], "by account, then stream, (tracked) last"
    for r in report:
        key = (r.account, r.stream)
        assert figures(r) == EXPECTED[key], key
        assert r.tracked is (r.stream == TRACKED)
        assert r.retired is False
        walked = world.walked.get(key)
        assert r.last_complete_walk_at == walked, key
        assert r.last_full_walk_at == world.full_walked.get(key), key
        if walked is None:
            assert r.last_complete_walk_age_seconds is None
        else:
            assert r.last_complete_walk_age_seconds == (later - walked).total_seconds()


def test_accounts_filter_and_the_age_default_to_now(store: Store) -> None:
    world = stream_world.build(store)
    (gg,) = store.stream_report(accounts=["gg"])
    assert (gg.account, gg.stream, gg.complete) == ("gg", "all", True)
    age = gg.last_complete_walk_age_seconds
    assert age is not None and 3600 <= age < 3600 + 120
    assert {r.stream for r in store.stream_report(["cc"], world.now)} == {
        "wf-ok",
        "wf-rejected",
        "wf-lossy",
        TRACKED,
    }
    assert store.stream_report(["nobody"]) == []
    assert store.stream_report([]) == []


def test_empty_database_reports_nothing(store: Store) -> None:
    assert store.stream_report() == []
    # configured streams of an empty database: each one never walked, not complete
    (never,) = store.stream_report(configured={"cc": ["wf-a"], "ak": []})
    assert never == StreamReport.never_walked("cc", "wf-a")
    assert (never.complete, never.known, never.listed, never.error) == (False, 0, None, None)


def test_tracked_only_account_is_complete_without_missing_files(store: Store) -> None:
    store.register_tasks(
        provider="akool",
        account="ak",
        items=[{"id": "t-1"}, {"id": "t-2"}],
        source="track",
        poll_horizon=timedelta(hours=1),
    )
    (tracked,) = store.stream_report()
    assert (tracked.account, tracked.stream, tracked.tracked) == ("ak", TRACKED, True)
    assert (tracked.known, tracked.awaiting_read, tracked.missing) == (2, 2, 0)
    assert tracked.complete, "(tracked) is complete when nothing is missing"
    assert tracked.last_complete_walk_at is None and not tracked.walking


def test_configured_streams_never_walked_and_retired_ones(store: Store) -> None:
    world = stream_world.build(store)
    report = store.stream_report(
        now=world.now, configured={"cc": ["wf-ok", "wf-new"], "gg": ["all"]}
    )
    by = {(r.account, r.stream): r for r in report}
    assert list(by) == [
        ("cc", "wf-lossy"),
        ("cc", "wf-new"),
        ("cc", "wf-ok"),
        ("cc", "wf-rejected"),
        ("cc", TRACKED),
        ("gg", "all"),
    ]
    assert by[("cc", "wf-new")] == StreamReport.never_walked("cc", "wf-new")
    # no longer configured: its walks do not matter any more, its missing files still do
    rejected, lossy = by[("cc", "wf-rejected")], by[("cc", "wf-lossy")]
    assert rejected.retired and rejected.complete and rejected.error is not None
    assert lossy.retired and not lossy.complete and lossy.missing == 2
    assert not by[("cc", "wf-ok")].retired and by[("cc", "wf-ok")].complete
    assert not by[("cc", TRACKED)].retired
    # an account absent from the mapping is left as the database has it
    assert with_configured(report, {}) == report


def test_three_grouped_queries_whatever_the_row_count(store: Store) -> None:
    stream_world.build(store)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.stream_report()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, statements
    assert all("GROUP BY" in s for s in selects[1:])
