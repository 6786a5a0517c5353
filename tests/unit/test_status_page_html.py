"""The status page's HTML as a pure function of its data: bounds, escaping, search hits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from genvault.queries.activity import ArchivedMedia
from genvault.queries.search import SearchHit
from genvault.web.page import (
    MAX_AT_RISK,
    MAX_FAILURES,
    MAX_THUMBNAILS,
    PageData,
    SearchState,
    render_denied,
    render_page,
)

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
