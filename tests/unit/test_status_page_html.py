"""The status page's HTML as a pure function of its data: bounds, escaping, search hits,
the streams of each account card."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from genvault.store.queries.activity import ArchivedMedia
from genvault.store.queries.search import SearchHit
from genvault.web.page import (
    MAX_AT_RISK,
    MAX_FAILURES,
    MAX_STREAMS,
    MAX_THUMBNAILS,
    PageData,
    SearchState,
    render_denied,
    render_page,
)
from tests.unit.status_rows import stream_row

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def _account(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "geminigen",
        "has_history": True,
        "generations": {"succeeded": 4, "failed": 1, "running": 2},
        "assets": {"archived": 7, "pending": 1},
        "bytes_archived": 2_500_000,
        "last_sync": (NOW - timedelta(minutes=3)).isoformat(),
        "last_error": None,
        "next_deadline": (NOW + timedelta(hours=5)).isoformat(),
        "circuit": None,
        **extra,
    }


def _media(i: int, prompt: str | None = "a cat") -> ArchivedMedia:
    return ArchivedMedia(
        asset_id=i,
        generation_id=i,
        provider="geminigen",
        account="main",
        external_id=f"gen-{i}",
        prompt=prompt,
        model="imagen-4",
        role="result",
        kind="image",
        content_type="image/jpeg",
        size=1000,
        storage_key=f"k/{i}.jpg",
        archived_at=NOW - timedelta(minutes=i),
    )


def _risk(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "account": "main",
        "provider": "geminigen",
        "external_id": f"risk-{i}",
        "role": "result",
        "expires_at": (NOW + timedelta(minutes=30 + i)).isoformat(),
        "attempts": 1,
        "last_error": None,
    }


def _failure(i: int, reason: str = "HTTP 503") -> dict[str, Any]:
    return {
        "asset_id": i,
        "provider": "geminigen",
        "account": "main",
        "external_id": f"fail-{i}",
        "role": "result",
        "state": "failed",
        "reason": reason,
        "attempts": 3,
        "updated_at": (NOW - timedelta(minutes=i)).isoformat(),
        "expires_at": NOW.isoformat(),
        "next_attempt_at": None,
    }


def _page(**kw: Any) -> str:
    doc = {
        "accounts": kw.pop("accounts", [_account("main")]),
        "at_risk": kw.pop("at_risk", []),
        "recent_failures": kw.pop("failures", []),
    }
    data = PageData(doc=doc, archives=kw.pop("archives", []), at_risk_hours=24, now=NOW, **kw)
    return render_page(data).decode()


def test_lists_are_bounded() -> None:
    html = _page(
        archives=[_media(i) for i in range(40)],
        at_risk=[_risk(i) for i in range(80)],
        failures=[_failure(i) for i in range(35)],
    )
    assert html.count("<img ") == MAX_THUMBNAILS
    assert len(re.findall(r"risk-\d+", html)) == MAX_AT_RISK
    assert len(re.findall(r"fail-\d+", html)) == MAX_FAILURES
    full = _page(at_risk=[_risk(i) for i in range(MAX_AT_RISK)])  # the store's cap
    assert f">{MAX_AT_RISK}+<" in full, "the total says there may be more"
    assert ">3<" in _page(at_risk=[_risk(i) for i in range(3)])


def test_every_dynamic_string_is_escaped() -> None:
    html = _page(
        accounts=[_account(EVIL, provider=EVIL, last_error=EVIL)],
        archives=[_media(1, prompt=EVIL)],
        at_risk=[{**_risk(1), "external_id": EVIL, "last_error": EVIL}],
        failures=[_failure(1, reason=EVIL)],
        search=SearchState(
            query=EVIL,
            providers=(EVIL,),
            hits=[
                SearchHit(
                    generation_id=1,
                    provider=EVIL,
                    account=EVIL,
                    external_id=EVIL,
                    created_at=NOW,
                    model=EVIL,
                    prompt=EVIL,
                    status="succeeded",
                    storage_keys=(EVIL,),
                )
            ],
        ),
    )
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;") >= 10


def test_search_hits_show_where_the_files_are() -> None:
    hit = SearchHit(
        generation_id=7,
        provider="tengrai",
        account="art",
        external_id="art-7",
        created_at=NOW - timedelta(days=2),
        model="flux-pro",
        prompt="a lighthouse in a storm",
        status="succeeded",
        storage_keys=("tengrai/art/2024/04/29/art-7/00-result.jpg",),
    )
    html = _page(
        search=SearchState("lighthouse", "tengrai", ("geminigen", "tengrai"), [hit]),
        locate=lambda key: f"s3://bucket/archive/{key}",
    )
    results = html.split('id="results"', 1)[1]
    assert "1 result for “lighthouse”" in results
    for text in ("tengrai / art", "art-7", "created 2024-04-29 12:00 UTC", "flux-pro"):
        assert text in results, text
    assert "a lighthouse in a storm" in results
    assert "s3://bucket/archive/tengrai/art/2024/04/29/art-7/00-result.jpg" in results
    assert '<option value="tengrai" selected>' in html
    assert 'http-equiv="refresh"' not in html


def test_hits_are_read_defensively() -> None:
    class Partial:  # a hit type with fewer fields and a string date
        provider = "akool"
        account = "ads"
        created_at = "not a date"

    html = _page(search=SearchState("x", None, (), [Partial()]))
    assert "akool / ads" in html and "no archived files" in html and "(no prompt)" in html


def test_cards_and_the_denied_page() -> None:
    html = _page()
    card = html.split('data-account="main"', 1)[1].split("</article>", 1)[0]
    assert re.search(r'data-stat="archived"><span class="n">7<', card)
    assert "2.5 MB" in card and "4 ok · 1 failed · 2 open" in card
    assert "3m ago" in card and "5h 00m" in card and "healthy" in card
    assert '<meta http-equiv="refresh" content="30">' in html

    denied = render_denied("Token required", EVIL, ask_token=True).decode()
    assert "<script" not in denied and 'type="password" name="token"' in denied
    assert 'name="token"' not in render_denied("Closed", "no", ask_token=False).decode()


def _stream(name: str, **extra: Any) -> dict[str, Any]:
    return stream_row(name, NOW - timedelta(hours=2), **extra)


def _stream_items(card: str) -> dict[str, str]:
    """data-stream -> the HTML of that stream's item."""
    return dict(re.findall(r'<li class="stream" data-stream="([^"]*)"(.*?)</li>', card, re.S))


def test_card_lists_streams_problems_first_and_bounded() -> None:
    error = "BusinessError: history: Failed: invalid params"
    streams = [_stream(f"wf-{i:02d}") for i in range(MAX_STREAMS + 3)] + [
        _stream(
            "wf-rejected",
            error=error,
            listed=None,
            last_complete_walk_at=None,
            complete=False,
            problems=[f"sync error: {error}", "never walked to the end"],
        ),
        _stream(
            "(tracked)",
            tracked=True,
            listed=None,
            missing=2,
            gone_before_capture=3,
            awaiting_read=4,
            last_complete_walk_at=None,
            complete=False,
            problems=["2 missing files (failed or lost)"],
        ),
    ]
    html = _page(accounts=[_account("main", streams=streams, complete=False, last_error=error)])
    card = html.split('data-account="main"', 1)[1].split("</article>", 1)[0]
    items = _stream_items(card)
    assert len(items) == MAX_STREAMS
    assert list(items)[:2] == ["wf-rejected", "(tracked)"], "problems first"
    assert "and 5 more" in card
    assert '<span class="badge bad">2 incomplete</span>' in card
    rejected = items["wf-rejected"]
    assert 'data-complete="no"' in rejected and "sync error: " + error in rejected
    assert card.count(error) == 1, "the card's error line gives way to the named stream"
    tracked = items["(tracked)"]
    for key, n in (("missing", 2), ("gone_before_capture", 3), ("awaiting_read", 4)):
        assert re.search(rf'data-figure="{key}" class="\w*">[a-z ]+ <b>{n}</b>', tracked), key
    assert "no listing: known by id" in tracked
    fine = items["wf-00"]
    assert 'data-complete="yes"' in fine and "last complete walk" in fine and "2h ago" in fine
    assert 'data-figure="listed" class="">listed <b>12</b>' in fine


def test_stream_names_and_problems_are_escaped() -> None:
    bad = _stream(EVIL, error=EVIL, complete=False, problems=[f"sync error: {EVIL}"])
    html = _page(accounts=[_account("main", streams=[bad], complete=False)])
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;") >= 3
