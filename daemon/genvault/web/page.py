"""The status page's HTML: one server-rendered document, inline CSS, no script.

Why no JavaScript and no build step: the page is read-only, refreshes itself
with a ``<meta>`` tag, and its search box is a plain GET form, so there is
nothing a script would add but attack surface; the CSP the server sends
(``default-src 'none'``) forbids scripts outright.

Everything shown comes from :func:`genvault.status.read_status` (the same
document ``genvault status`` prints and ``--json`` emits, so the three never
disagree), the recent archives, and the search hits. This module decides what
is shown: it bounds every list (``MAX_*``, so the page stays small however big
the archive), formats every figure, and reads search hits defensively; the
markup is in the Jinja2 templates beside it (``templates/``: the page, the
401/403 page, the stylesheet), which receive plain values only.

Prompts, ids, errors and model names are third-party text. The templates are
rendered with **autoescaping on** and strict undefined names, so every
``{{ value }}`` is escaped and a misspelt one fails instead of printing nothing.
:func:`_escaped` (the environment's ``finalize``) escapes first, with
:func:`html.escape` (``&quot;``, ``&#x27;``) as the page always has, and shows
None as nothing; autoescaping then passes its result through unchanged.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from genvault.formatting import ago, countdown, human_bytes, iso, until, utc_minute
from genvault.records import STATED_SOURCES
from genvault.store.queries.activity import ArchivedMedia

MAX_CARDS = 60
MAX_AT_RISK = 50
MAX_THUMBNAILS = 24
MAX_FAILURES = 20
MAX_HITS = 50
MAX_STREAMS = 12
"""History streams listed per account card, those with a problem first."""
MAX_QUERY = 200
"""Longest search query accepted (characters); longer ones are cut."""
REFRESH_SECONDS = 30


def _escaped(value: object) -> Markup:
    """Every ``{{ value }}``, HTML-escaped (quotes too, so it is safe in attributes)."""
    if isinstance(value, Markup):  # a macro's output, or already escaped by a filter
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


_TEMPLATES = Environment(
    loader=PackageLoader("genvault.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    finalize=_escaped,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)


def _cut(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SearchState:
    """The search box: what was asked, and what came back (``hits`` None: nothing asked)."""

    query: str = ""
    provider: str | None = None
    providers: tuple[str, ...] = ()
    hits: Sequence[Any] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PageData:
    doc: dict[str, Any]
    """The status document (:func:`genvault.status.read_status`)."""
    archives: Sequence[ArchivedMedia]
    at_risk_hours: float
    search: SearchState = field(default_factory=SearchState)
    locate: Callable[[str], str] = str
    """Storage key -> a location a person can use (``s3://…``, ``file:///…``)."""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


# --------------------------------------------------------------------------- what the
# templates receive: plain values, formatted and bounded here


@dataclass(frozen=True, slots=True)
class _Figure:
    """A count with a name: a header tile, a card's stat, a stream's figure."""

    key: str
    n: object
    cls: str = ""
    """``warn``/``bad`` (only while ``n`` is not zero), or nothing."""
    label: str = ""

    @staticmethod
    def of(key: str, n: object, cls: str = "", label: str = "") -> _Figure:
        return _Figure(key, n, cls if n else "", label or key.replace("_", " "))


@dataclass(frozen=True, slots=True)
class _Moment:
    minute: str
    """``2024-05-01 13:07`` (UTC), for the tooltip."""
    ago: str


@dataclass(frozen=True, slots=True)
class _Badge:
    text: str
    cls: str
    state: str
    note: str = ""
    """A second badge beside it: a quota pause or a request budget."""


@dataclass(frozen=True, slots=True)
class _Stream:
    name: str
    complete: bool
    figures: tuple[_Figure, ...]
    walked: _Moment | None
    notes: tuple[str, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Streams:
    incomplete: int
    shown: tuple[_Stream, ...]
    more: int


@dataclass(frozen=True, slots=True)
class _Card:
    name: str
    provider: str
    badge: _Badge
    stats: tuple[_Figure, ...]
    stored: str
    succeeded: object
    failed: object
    still_open: int
    synced: _Moment | None
    never_synced: str
    pending: str
    deadline: str
    error: str
    streams: _Streams | None


@dataclass(frozen=True, slots=True)
class _Hit:
    provider: str
    account: str
    details: tuple[str, ...]
    prompt: str
    stored: int
    total: int | None
    """All files of the generation, when more than ``stored`` (else None)."""
    locations: tuple[str, ...]


def _totals(doc: dict[str, Any]) -> dict[str, int]:
    out = {"archived": 0, "bytes": 0, "pending": 0, "failed": 0, "lost": 0}
    for a in doc["accounts"]:
        for state in ("archived", "pending", "failed", "lost"):
            out[state] += int(a["assets"].get(state, 0))
        out["bytes"] += int(a.get("bytes_archived") or 0)
    return out


def _tiles(data: PageData) -> list[_Figure]:
    t = _totals(data.doc)
    risky = len(data.doc["at_risk"])
    at_risk = f"{risky}+" if risky >= MAX_AT_RISK else str(risky)
    return [
        _Figure("archived", f"{t['archived']:,}", "", "archived files"),
        _Figure("bytes", human_bytes(t["bytes"]), "", "stored"),
        _Figure("pending", f"{t['pending']:,}", "", "pending"),
        _Figure("at-risk", at_risk, "warn" if risky else "", _at_risk_label(data)),
        _Figure("failed", f"{t['failed']:,}", "warn" if t["failed"] else "", "failed"),
        _Figure("lost", f"{t['lost']:,}", "bad" if t["lost"] else "", "lost"),
    ]


def _at_risk_label(data: PageData) -> str:
    return f"at risk, next {data.at_risk_hours:g}h"


def _hit(hit: Any, data: PageData) -> _Hit:
    """One search hit. Read with getattr: the hit type may gain or lose fields."""
    created = getattr(hit, "created_at", None)
    try:
        created_text = utc_minute(iso(created))
    except (TypeError, ValueError):
        created_text = str(created or "")
    keys = tuple(getattr(hit, "storage_keys", ()) or ())
    locations = []
    for key in keys[:8]:
        try:
            locations.append(data.locate(str(key)))
        except Exception:
            locations.append(str(key))
    total = getattr(hit, "files_total", None)
    details = (
        str(getattr(hit, "external_id", "")),
        f"created {created_text} UTC" if created_text not in ("", "-") else "",
        str(getattr(hit, "model", None) or ""),
        str(getattr(hit, "status", "") or ""),
    )
    return _Hit(
        provider=str(getattr(hit, "provider", "")),
        account=str(getattr(hit, "account", "")),
        details=tuple(d for d in details if d),
        prompt=_cut(getattr(hit, "prompt", None), 400) or "(no prompt)",
        stored=len(keys),
        total=total if isinstance(total, int) and total > len(keys) else None,
        locations=tuple(locations),
    )


def _circuit_badge(c: dict[str, Any] | None) -> _Badge:
    if not c or (c.get("state") == "closed" and not c.get("consecutive_failures")):
        text, cls = "healthy", "ok"
    elif c.get("state") == "closed":
        text, cls = f"{c['consecutive_failures']} failed calls", "warn"
    elif c.get("trial_due"):
        text, cls = "trial due", "warn"
    elif c.get("state") == "open":
        text, cls = f"circuit open · retry {until(c.get('retry_at'))}", "bad"
    else:
        text, cls = "half-open", "warn"
    note = ""
    if c and c.get("rate_limited_until"):
        note = f"quota pause {until(c['rate_limited_until'])}"
    elif c and c.get("budget_interval_seconds"):
        note = f"paced {c['budget_interval_seconds']:g}s"
    return _Badge(text, cls, str(c.get("state") if c else "closed"), note)


def _storage_banner(data: PageData) -> dict[str, str] | None:
    """A banner while the storage circuit is not closed: archiving is paused."""
    storage = data.doc.get("storage")
    c = storage.get("circuit") if storage else None
    if not storage or not c or c.get("state") == "closed":
        return None
    return {
        "state": c["state"],
        "url": storage.get("url"),
        "when": "probe due" if c.get("trial_due") else f"next probe {until(c.get('retry_at'))}",
        "error": _cut(c.get("last_error") or "no detail", 300),
    }


def _card(a: dict[str, Any], now: datetime) -> _Card:
    assets, gens = a["assets"], a["generations"]
    synced = None
    if a["last_sync"]:
        synced = _Moment(utc_minute(a["last_sync"]), ago(a["last_sync"], now))
    pending = ""
    if int(assets.get("pending", 0)):  # those held by a live worker apart from those waiting
        held, waiting = int(a.get("held", 0)), int(a.get("waiting", 0))
        pending = f"{held:,} in progress · {waiting:,} waiting"
    streams, named = _streams(a, now)
    error = a.get("last_error")
    return _Card(
        name=a["name"],
        provider=a["provider"],
        badge=_circuit_badge(a.get("circuit")),
        stats=(
            _Figure.of("archived", int(assets.get("archived", 0))),
            _Figure.of("pending", int(assets.get("pending", 0))),
            _Figure.of("failed", int(assets.get("failed", 0)), "warn"),
            _Figure.of("lost", int(assets.get("lost", 0)), "bad"),
        ),
        stored=human_bytes(a["bytes_archived"]),
        succeeded=gens.get("succeeded", 0),
        failed=gens.get("failed", 0),
        still_open=sum(v for k, v in gens.items() if k not in ("succeeded", "failed")),
        synced=synced,
        never_synced="never" if a.get("has_history", True) else "no listing",
        pending=pending,
        deadline=countdown(a["next_deadline"], now),
        # A sync error a stream shows is shown there, under the stream's name.
        error=_cut(error, 200) if error and error not in named else "",
        streams=streams,
    )


def _streams(a: dict[str, Any], now: datetime) -> tuple[_Streams | None, set[str]]:
    """The card's history streams (problems first, at most ``MAX_STREAMS``) and the sync
    errors they show. Nothing for a document from before streams were reported."""
    streams = a.get("streams")
    if not streams:
        return None, set()
    ordered = sorted(streams, key=lambda s: bool(s["complete"]))  # stable: name order kept
    shown = ordered[:MAX_STREAMS]
    return (
        _Streams(
            incomplete=sum(1 for s in streams if not s["complete"]),
            shown=tuple(_stream(s, now) for s in shown),
            more=len(streams) - len(shown),
        ),
        {s["error"] for s in shown if s.get("error")},
    )


def _stream(s: dict[str, Any], now: datetime) -> _Stream:
    """One stream: its reconciliation figures, its last complete walk, its problems."""
    listed = s.get("listed")
    figures = [
        _Figure.of("listed", "-" if listed is None else listed),
        _Figure.of("known", s["known"]),
        _Figure.of("archived", s["archived"]),
        _Figure.of("pending", s["pending"]),
        _Figure.of("missing", s["missing"], "bad"),
        _Figure.of("gone_before_capture", s["gone_before_capture"], "warn"),
    ]
    if s.get("awaiting_read"):
        figures.append(_Figure.of("awaiting_read", s["awaiting_read"]))
    walked_at = s.get("last_complete_walk_at")
    notes = []
    if not walked_at and s.get("tracked"):  # never walked to the end: the problems say so
        notes.append("no listing: known by id")
    if s.get("walking"):
        notes.append("walking now")
    if s.get("retired"):
        notes.append("no longer configured")
    return _Stream(
        name=s["stream"],
        complete=bool(s["complete"]),
        figures=tuple(figures),
        walked=_Moment(utc_minute(walked_at), ago(walked_at, now)) if walked_at else None,
        notes=tuple(notes),
        problems=tuple(_cut(p, 300) for p in s.get("problems") or []),
    )


def _at_risk(data: PageData) -> list[dict[str, Any]]:
    rows = []
    for r in data.doc["at_risk"][:MAX_AT_RISK]:
        left = countdown(r.get("expires_at"), data.now)
        rows.append(
            {
                "account": r["account"],
                "external_id": r["external_id"],
                "role": r["role"],
                "left": left,
                "urgent": left == "expired" or left.startswith("0h"),
                "source": (r.get("expires_source") or "unknown").replace("_", " "),
                "guess": r.get("expires_source") not in STATED_SOURCES,
                "attempts": r.get("attempts", 0),
                "error": _cut(r.get("last_error"), 160),
            }
        )
    return rows


def _thumbnails(data: PageData) -> list[dict[str, Any]]:
    tiles = []
    for m in list(data.archives)[:MAX_THUMBNAILS]:
        prompt = _cut(m.prompt, 200)
        tiles.append(
            {
                "asset_id": m.asset_id,
                "prompt": prompt,
                "alt": prompt or f"image {m.external_id} from {m.account}",
                "provider": m.provider,
                "account": m.account,
                "when": ago(m.archived_at.isoformat(), data.now) if m.archived_at else "-",
            }
        )
    return tiles


def _failures(data: PageData) -> list[dict[str, Any]]:
    rows = []
    for f in (data.doc.get("recent_failures") or [])[:MAX_FAILURES]:
        state = f["state"]
        rows.append(
            {
                "when": ago(f.get("updated_at"), data.now),
                "account": f["account"],
                "external_id": f["external_id"],
                "role": f["role"],
                "state": state,
                "state_text": state
                if state in ("lost", "failed")
                else f"retry {until(f.get('next_attempt_at'), data.now)}",
                "attempts": f.get("attempts", 0),
                "reason": _cut(f.get("reason"), 300),
            }
        )
    return rows


# --------------------------------------------------------------------------- pages


def render_page(data: PageData) -> bytes:
    """The status page. Refreshes itself every 30 s, except when showing search results
    (a refresh would only repeat the search under the reader's eyes)."""
    search = data.search
    accounts = data.doc["accounts"]
    page = _TEMPLATES.get_template("status.html.j2").render(
        refresh=REFRESH_SECONDS if search.hits is None else None,
        as_of=data.now.strftime("%Y-%m-%d %H:%M:%S"),
        tiles=_tiles(data),
        banner=_storage_banner(data),
        search=search,
        max_query=MAX_QUERY,
        hits=None if search.hits is None else [_hit(h, data) for h in list(search.hits)[:MAX_HITS]],
        cards=[_card(a, data.now) for a in accounts[:MAX_CARDS]],
        more_cards=len(accounts) - MAX_CARDS,
        at_risk_hours=f"{data.at_risk_hours:g}",
        at_risk=_at_risk(data),
        thumbnails=_thumbnails(data),
        failures=_failures(data),
    )
    return page.encode()


def render_denied(title: str, message: str, *, ask_token: bool) -> bytes:
    """The 401/403 page: what is wrong, and (401) a box to enter the server token."""
    page = _TEMPLATES.get_template("denied.html.j2").render(
        refresh=None, title=title, message=message, ask_token=ask_token
    )
    return page.encode()
