"""``genvault status`` tables and the shared formatting of sizes and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from genvault.formatting import ago, countdown, human_bytes, until, utc_minute
from genvault.report import render_status
from tests.unit.status_rows import stream_row

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _in(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "accounts": [
            {
                "name": "main",
                "provider": "geminigen",
                "has_history": True,
                "generations": {"succeeded": 3},
                "assets": {"archived": 5, "pending": 2, "lost": 1},
                "bytes_archived": 1_500_000,
                "last_sync": _in(minutes=-5),
                "last_error": None,
                "next_deadline": _in(hours=3, minutes=5, seconds=30),
                "circuit": None,
            }
        ],
        "at_risk": [],
        "recent_failures": [],
    }
    doc.update(extra)
    return doc


def _text(doc: dict[str, Any]) -> str:
    console = Console(record=True, width=220, color_system=None)
    render_status(doc, console)
    return console.export_text()


def test_recent_failures_table_with_reasons_as_text() -> None:
    failures = [
        {
            "asset_id": 7,
            "provider": "geminigen",
            "account": "main",
            "external_id": "gen-[bold]7",
            "role": "result",
            "state": "pending",
            "reason": "TransientDownloadError: HTTP 503 [red]from[/red] media URL",
            "attempts": 2,
            "updated_at": _in(minutes=-3),
            "expires_at": _in(hours=2),
            "next_attempt_at": _in(minutes=4, seconds=30),
        },
        {
            "asset_id": 8,
            "provider": "geminigen",
            "account": "main",
            "external_id": "gen-8",
            "role": "thumbnail",
            "state": "lost",
            "reason": "deadline passed before it could be saved",
            "attempts": 0,
            "updated_at": _in(hours=-5),
            "expires_at": _in(hours=-5),
            "next_attempt_at": None,
        },
    ]
    out = _text(_doc(recent_failures=failures))
    assert "recent failures" in out
    assert "HTTP 503 [red]from[/red] media URL" in out, "third-party text is not markup"
    assert "gen-[bold]7" in out
    assert "retry in 4m" in out and "3m ago" in out
    assert "lost" in out and "deadline passed before it could be saved" in out and "5h ago" in out


def test_no_failures_no_table_and_old_documents_still_render() -> None:
    assert "recent failures" not in _text(_doc())
    legacy = _doc()
    del legacy["recent_failures"]  # a document from before the key existed
    out = _text(legacy)
    assert "main" in out and "nothing at risk" in out
    assert "1.5 MB" in out and "3h 05m" in out


def test_at_risk_table_shows_the_countdown() -> None:
    row = {
        "id": 1,
        "account": "main",
        "provider": "geminigen",
        "external_id": "gen-1",
        "role": "result",
        "expires_at": _in(minutes=95, seconds=30),
        "attempts": 1,
        "last_error": "HTTP 503",
    }
    out = _text(_doc(at_risk=[row]))
    assert "at risk" in out and "1h 35m" in out and "HTTP 503" in out


def test_formatting() -> None:
    assert human_bytes(999) == "999 B" and human_bytes(1_500_000) == "1.5 MB"
    later = (NOW + timedelta(days=3, hours=4)).isoformat()
    assert countdown(later, NOW) == "3d 4h"
    assert countdown((NOW + timedelta(minutes=65)).isoformat(), NOW) == "1h 05m"
    assert countdown((NOW - timedelta(seconds=1)).isoformat(), NOW) == "expired"
    assert countdown(None, NOW) == "-"
    assert until((NOW + timedelta(seconds=75)).isoformat(), NOW) == "in 1m 15s"
    assert until(NOW.isoformat(), NOW) == "now"
    assert ago((NOW - timedelta(seconds=12)).isoformat(), NOW) == "12s ago"
    assert ago((NOW - timedelta(minutes=5)).isoformat(), NOW) == "5m ago"
    assert ago((NOW - timedelta(hours=30)).isoformat(), NOW) == "30h ago"
    assert ago((NOW - timedelta(days=3)).isoformat(), NOW) == "3d ago"
    assert ago((NOW + timedelta(seconds=5)).isoformat(), NOW) == "0s ago", "clock skew"
    assert ago(None, NOW) == "-"
    assert utc_minute("2024-05-01T14:07:59+02:00") == "2024-05-01 12:07"


def _stream(name: str, **extra: Any) -> dict[str, Any]:
    return stream_row(name, datetime.now(UTC) - timedelta(hours=2), **extra)


def test_streams_table_names_the_stream_and_its_problem_as_text() -> None:
    error = "BusinessError: history: [red]Failed[/red]: invalid params"
    streams = [
        _stream("wf-ok"),
        _stream(
            "wf-[bold]x",
            listed=None,
            known=3,
            archived=0,
            pending=3,
            missing=2,
            gone_before_capture=1,
            last_complete_walk_at=None,
            error=error,
            complete=False,
            walking=True,
            problems=[f"sync error: {error}", "2 missing files (failed or lost)"],
        ),
    ]
    doc = _doc()
    doc["accounts"][0].update(streams=streams, complete=False)
    out = _text(doc)
    assert "no: 1 stream" in out.splitlines()[4], "the account's row says it"
    assert "streams (completeness per history listing)" in out
    (bad,) = [ln for ln in out.splitlines() if "wf-[bold]x" in ln]
    cells = [c.strip() for c in bad.split("│")]
    assert cells[1:9] == ["main", "wf-[bold]x", "-", "3", "0", "3", "2", "1"]
    assert cells[9] == "never"
    assert "sync error: BusinessError: history: [red]Failed[/red]" in out, "text, not markup"
    assert "(walking)" in out
    (ok,) = [ln for ln in out.splitlines() if "wf-ok" in ln]
    assert "complete" in ok and "(2h ago)" in ok and "12" in ok

    doc["accounts"][0].update(streams=[_stream("all")], complete=True)
    assert " yes " in _text(doc).splitlines()[4]


def test_documents_without_streams_render_as_before() -> None:
    out = _text(_doc())
    assert "streams (completeness" not in out
    assert out.splitlines()[4].rstrip().endswith("│ -        │"), out.splitlines()[4]
