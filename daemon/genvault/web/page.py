"""The status page's HTML: one server-rendered document, inline CSS, no script.

Why no JavaScript and no build step: the page is read-only, refreshes itself
with a ``<meta>`` tag, and its search box is a plain GET form, so there is
nothing a script would add but attack surface; the CSP the server sends
(``default-src 'none'``) forbids scripts outright.

Everything shown comes from :func:`genvault.status.read_status` (the same
document ``genvault status`` prints and ``--json`` emits, so the three never
disagree), the recent archives, and the search hits. Prompts, ids, errors and
model names are third-party text: every dynamic value goes through :func:`_e`
(``html.escape`` with quotes) and nothing is ever inserted unescaped. Every
list is bounded (``MAX_*``), so the page stays small however big the archive.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genvault.formatting import ago, countdown, human_bytes, until, utc_minute
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


def _e(value: object) -> str:
    """HTML-escape anything (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


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


CSS = """
:root{--bg:#f4f5f7;--card:#fff;--ink:#1c2230;--muted:#6b7280;--line:#e3e6eb;
--ok:#067647;--ok-bg:#e7f6ee;--warn:#a15c07;--warn-bg:#fdf3e1;--bad:#b42318;--bad-bg:#fdecea;
--accent:#3250c8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
background:var(--bg);color:var(--ink)}
header{background:#111827;color:#f9fafb}
.wrap{max-width:1240px;margin:0 auto;padding:0 28px}
header .wrap{padding-top:18px;padding-bottom:20px}
.title{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap}
h1{margin:0;font-size:21px;letter-spacing:.01em}
h1 span{color:#9ca3af;font-weight:400}
.asof{color:#9ca3af;font-size:12px}
.totals{display:grid;grid-template-columns:repeat(6,1fr);gap:10px;margin-top:14px}
.total{background:#1f2937;border-radius:8px;padding:10px 14px}
.total .n{display:block;font-size:22px;font-weight:650}
.total .l{color:#9ca3af;font-size:11px;text-transform:uppercase;letter-spacing:.06em}
.total.warn .n{color:#fbbf24}.total.bad .n{color:#f87171}
main.wrap{padding-top:18px;padding-bottom:40px}
h2{font-size:15px;margin:28px 0 10px;text-transform:uppercase;letter-spacing:.05em;color:#374151}
h2 small{font-weight:400;text-transform:none;letter-spacing:0;color:var(--muted)}
form.search{display:flex;gap:8px;background:var(--card);border:1px solid var(--line);
border-radius:10px;padding:10px}
form.search input{flex:1;min-width:0;font:inherit;padding:8px 10px;border:1px solid var(--line);
border-radius:6px}
form.search select,form.search button{font:inherit;padding:8px 12px;border-radius:6px;
border:1px solid var(--line);background:#fff}
form.search button{background:var(--accent);border-color:var(--accent);color:#fff;font-weight:600}
.results{background:var(--card);border:1px solid var(--line);border-radius:10px;margin-top:10px;
padding:4px 16px}
.results p.none{color:var(--muted)}
.hit{padding:10px 0;border-top:1px solid var(--line)}.hit:first-child{border-top:0}
.hit .head{color:var(--muted);font-size:12px}.hit .head b{color:var(--ink)}
.hit .prompt{margin:4px 0}.hit code{font-size:12px;color:#374151;word-break:break-all}
.hit ul{margin:4px 0 0;padding-left:18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .head{display:flex;justify-content:space-between;align-items:center;gap:8px}
.card h3{margin:0;font-size:16px;word-break:break-all}
.card .provider{color:var(--muted);font-size:12px;margin-top:2px}
.stats{display:grid;grid-template-columns:repeat(4,1fr);gap:6px;margin:12px 0 8px}
.stat{background:var(--bg);border-radius:6px;padding:6px 4px;text-align:center}
.stat .n{display:block;font-size:18px;font-weight:650}
.stat .l{font-size:11px;color:var(--muted)}
.stat.bad .n{color:var(--bad)}.stat.warn .n{color:var(--warn)}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:0;font-size:13px}
dt{color:var(--muted)}dd{margin:0;text-align:right}
.card .err{margin:8px 0 0;font-size:12px;color:var(--bad);word-break:break-word}
.banner{background:var(--bad-bg);color:var(--bad);border-radius:10px;padding:10px 14px;
margin:0 0 14px;word-break:break-word}
.streams{list-style:none;margin:10px 0 0;padding:0;border-top:1px solid var(--line)}
.stream{padding:6px 0;border-bottom:1px solid var(--line);font-size:12px}
.stream:last-child{border-bottom:0}
.stream .name{display:flex;justify-content:space-between;gap:8px;font-weight:600;
word-break:break-all}
.stream .figs,.stream .walk{color:var(--muted)}.stream .figs b{color:var(--ink)}
.stream .figs .bad b{color:var(--bad)}.stream .figs .warn b{color:var(--warn)}
.stream .problem{margin:2px 0 0;color:var(--bad);word-break:break-word}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:2px 8px;border-radius:99px;
white-space:nowrap}
.badge.ok{background:var(--ok-bg);color:var(--ok)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.bad{background:var(--bad-bg);color:var(--bad)}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);
border-radius:10px;overflow:hidden;font-size:13px}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
background:#fafbfc}
th,td{padding:7px 12px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
td.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
td.left{white-space:nowrap;font-weight:600}td.left.bad{color:var(--bad)}
td.reason{word-break:break-word}
.empty{background:var(--card);border:1px dashed var(--line);border-radius:10px;padding:14px 16px;
color:var(--muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:10px;
overflow:hidden}
figure img{display:block;width:100%;height:auto;aspect-ratio:4/3;object-fit:cover;
background:#e5e7eb}
figcaption{padding:7px 10px 9px;font-size:12px}
figcaption .prompt{display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
figcaption .meta{display:block;color:var(--muted);font-size:11px;margin-top:2px}
footer{color:var(--muted);font-size:12px;margin-top:32px}
.denied{max-width:440px;margin:80px auto;background:var(--card);border:1px solid var(--line);
border-radius:12px;padding:24px 28px}
.denied h1{font-size:19px}
.denied form{display:flex;gap:8px;margin-top:14px}
.denied input{flex:1;font:inherit;padding:8px 10px;border:1px solid var(--line);border-radius:6px}
.denied button{font:inherit;padding:8px 14px;border-radius:6px;border:0;background:var(--accent);
color:#fff}
@media (max-width:800px){.totals{grid-template-columns:repeat(3,1fr)}}
""".strip()


def _document(title: str, body: str, *, refresh: int | None = None) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"{meta}<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


# --------------------------------------------------------------------------- parts


def _totals(doc: dict[str, Any]) -> dict[str, int]:
    out = {"archived": 0, "bytes": 0, "pending": 0, "failed": 0, "lost": 0}
    for a in doc["accounts"]:
        for state in ("archived", "pending", "failed", "lost"):
            out[state] += int(a["assets"].get(state, 0))
        out["bytes"] += int(a.get("bytes_archived") or 0)
    return out


def _header(data: PageData) -> str:
    t = _totals(data.doc)
    risky = len(data.doc["at_risk"])
    at_risk = f"{risky}+" if risky >= MAX_AT_RISK else str(risky)
    tiles = (
        ("archived", f"{t['archived']:,}", "archived files", ""),
        ("bytes", human_bytes(t["bytes"]), "stored", ""),
        ("pending", f"{t['pending']:,}", "pending", ""),
        ("at-risk", at_risk, f"at risk, next {data.at_risk_hours:g}h", "warn" if risky else ""),
        ("failed", f"{t['failed']:,}", "failed", "warn" if t["failed"] else ""),
        ("lost", f"{t['lost']:,}", "lost", "bad" if t["lost"] else ""),
    )
    cells = "".join(
        f'<div class="total {cls}" data-total="{key}"><span class="n">{_e(n)}</span>'
        f'<span class="l">{label}</span></div>'
        for key, n, label, cls in tiles
    )
    return (
        '<header><div class="wrap"><div class="title"><h1>genvault <span>status</span></h1>'
        f'<span class="asof">as of {_e(data.now.strftime("%Y-%m-%d %H:%M:%S"))} UTC'
        f"{'' if data.search.hits is not None else f' · refreshes every {REFRESH_SECONDS} s'}"
        f'</span></div><div class="totals">{cells}</div></div></header>'
    )


def _search(data: PageData) -> str:
    s = data.search
    options = '<option value="">all providers</option>' + "".join(
        f'<option value="{_e(p)}"{" selected" if p == s.provider else ""}>{_e(p)}</option>'
        for p in s.providers
    )
    form = (
        '<form class="search" method="get" action="/" role="search">'
        f'<input type="search" name="q" value="{_e(s.query)}" maxlength="{MAX_QUERY}" '
        'placeholder="Search prompts and models across every account" aria-label="search">'
        f'<select name="provider" aria-label="provider">{options}</select>'
        '<button type="submit">Search</button></form>'
    )
    if s.hits is None:
        return form
    if s.error:
        inner = f'<p class="none">{_e(s.error)}</p>'
    elif not s.hits:
        inner = f'<p class="none">No results for “{_e(s.query)}”.</p>'
    else:
        shown = list(s.hits)[:MAX_HITS]
        inner = "".join(_hit(h, data) for h in shown)
        inner = (
            f'<p class="none">{len(shown)} result{"s" if len(shown) != 1 else ""} '
            f'for “{_e(s.query)}” · <a href="/">clear</a></p>{inner}'
        )
    return f'{form}<section class="results" id="results">{inner}</section>'


def _hit(hit: Any, data: PageData) -> str:
    """One search hit. Read with getattr: the hit type may gain or lose fields."""
    created = getattr(hit, "created_at", None)
    try:
        created_text = utc_minute(created.isoformat() if isinstance(created, datetime) else created)
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
    count = (
        f'<div class="head">{len(keys)} of {total} files archived</div>'
        if isinstance(total, int) and total > len(keys)
        else ""
    )
    where = count + (
        "<ul>" + "".join(f"<li><code>{_e(loc)}</code></li>" for loc in locations) + "</ul>"
        if locations
        else ("" if count else '<div class="head">no archived files</div>')
    )
    head = " · ".join(
        x
        for x in (
            f"<b>{_e(getattr(hit, 'provider', ''))} / {_e(getattr(hit, 'account', ''))}</b>",
            _e(getattr(hit, "external_id", "")),
            f"created {_e(created_text)} UTC" if created_text not in ("", "-") else "",
            _e(getattr(hit, "model", None) or ""),
            _e(getattr(hit, "status", "") or ""),
        )
        if x
    )
    prompt = _cut(getattr(hit, "prompt", None), 400) or "(no prompt)"
    return (
        f'<div class="hit"><div class="head">{head}</div>'
        f'<p class="prompt">{_e(prompt)}</p>{where}</div>'
    )


def _circuit_badge(c: dict[str, Any] | None) -> str:
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
    extra = ""
    if c and c.get("rate_limited_until"):
        extra = f' <span class="badge warn">quota pause {_e(until(c["rate_limited_until"]))}</span>'
    elif c and c.get("budget_interval_seconds"):
        extra = f' <span class="badge warn">paced {c["budget_interval_seconds"]:g}s</span>'
    state = c.get("state") if c else "closed"
    return f'<span class="badge {cls}" data-circuit="{_e(state)}">{_e(text)}</span>{extra}'


def _storage(data: PageData) -> str:
    """A banner while the storage circuit is not closed: archiving is paused."""
    storage = data.doc.get("storage")
    c = storage.get("circuit") if storage else None
    if not storage or not c or c.get("state") == "closed":
        return ""
    when = "probe due" if c.get("trial_due") else f"next probe {until(c.get('retry_at'))}"
    return (
        f'<p class="banner" id="storage" data-circuit="{_e(c["state"])}"><b>Storage '
        f"unavailable: archiving paused</b> · {_e(storage.get('url'))} · {_e(when)}"
        f"<br>{_e(_cut(c.get('last_error') or 'no detail', 300))}</p>"
    )


def _card(a: dict[str, Any], now: datetime) -> str:
    assets, gens = a["assets"], a["generations"]
    still_open = sum(v for k, v in gens.items() if k not in ("succeeded", "failed"))
    stats = "".join(
        f'<div class="stat {cls if n else ""}" data-stat="{key}">'
        f'<span class="n">{_e(n)}</span><span class="l">{key}</span></div>'
        for key, n, cls in (
            ("archived", int(assets.get("archived", 0)), ""),
            ("pending", int(assets.get("pending", 0)), ""),
            ("failed", int(assets.get("failed", 0)), "warn"),
            ("lost", int(assets.get("lost", 0)), "bad"),
        )
    )
    if a["last_sync"]:
        when = utc_minute(a["last_sync"])
        sync = f'<span title="{_e(when)} UTC">{_e(ago(a["last_sync"], now))}</span>'
    else:
        sync = "never" if a.get("has_history", True) else "no listing"
    err = f'<p class="err">{_e(_cut(a["last_error"], 200))}</p>' if a.get("last_error") else ""
    streams, named = _streams(a, now)
    if a.get("last_error") in named:
        err = ""  # the stream list shows it, under the stream's name
    return (
        f'<article class="card" data-account="{_e(a["name"])}">'
        f'<div class="head"><h3>{_e(a["name"])}</h3>{_circuit_badge(a.get("circuit"))}</div>'
        f'<div class="provider">{_e(a["provider"])}</div>'
        f'<div class="stats">{stats}</div><dl>'
        f"<dt>stored</dt><dd>{_e(human_bytes(a['bytes_archived']))}</dd>"
        f"<dt>tasks</dt><dd>{_e(gens.get('succeeded', 0))} ok · {_e(gens.get('failed', 0))} "
        f"failed · {_e(still_open)} open</dd>"
        f"<dt>last sync</dt><dd>{sync}</dd>"
        f"{_pending_split(a)}"
        f"<dt>next deadline</dt><dd data-deadline>{_e(countdown(a['next_deadline'], now))}</dd>"
        f"</dl>{err}{streams}</article>"
    )


def _streams(a: dict[str, Any], now: datetime) -> tuple[str, set[str]]:
    """The card's history streams (problems first, at most ``MAX_STREAMS``) and the sync
    errors they show. Nothing for a document from before streams were reported."""
    streams = a.get("streams")
    if not streams:
        return "", set()
    ordered = sorted(streams, key=lambda s: bool(s["complete"]))  # stable: name order kept
    shown = ordered[:MAX_STREAMS]
    bad = sum(1 for s in streams if not s["complete"])
    badge = (
        f'<span class="badge bad">{bad} incomplete</span>'
        if bad
        else '<span class="badge ok">complete</span>'
    )
    items = "".join(_stream(s, now) for s in shown)
    more = len(streams) - len(shown)
    note = f'<li class="stream">and {more} more (see <code>genvault status</code>)</li>'
    html = (
        f'<ul class="streams" data-complete="{"yes" if not bad else "no"}">'
        f'<li class="stream"><div class="name"><span>streams</span>{badge}</div></li>'
        f"{items}{note if more > 0 else ''}</ul>"
    )
    return html, {s["error"] for s in shown if s.get("error")}


def _stream(s: dict[str, Any], now: datetime) -> str:
    """One stream: its reconciliation figures, its last complete walk, its problems."""
    listed = s.get("listed")
    figures = [
        ("listed", "-" if listed is None else listed, ""),
        ("known", s["known"], ""),
        ("archived", s["archived"], ""),
        ("pending", s["pending"], ""),
        ("missing", s["missing"], "bad"),
        ("gone_before_capture", s["gone_before_capture"], "warn"),
    ]
    if s.get("awaiting_read"):
        figures.append(("awaiting_read", s["awaiting_read"], ""))
    figs = " · ".join(
        f'<span data-figure="{key}" class="{cls if n else ""}">'
        f"{key.replace('_', ' ')} <b>{_e(n)}</b></span>"
        for key, n, cls in figures
    )
    walked = s.get("last_complete_walk_at")
    if walked:
        walk = (
            f'last complete walk <span title="{_e(utc_minute(walked))} UTC">'
            f"{_e(ago(walked, now))}</span>"
        )
    else:  # never walked to the end: the problems say so
        walk = "no listing: known by id" if s.get("tracked") else ""
    notes = [walk] if walk else []
    if s.get("walking"):
        notes.append("walking now")
    if s.get("retired"):
        notes.append("no longer configured")
    walk = " · ".join(notes)
    if s["complete"]:
        badge = '<span class="badge ok">complete</span>'
    else:
        badge = '<span class="badge bad">incomplete</span>'
    problems = "".join(
        f'<p class="problem">{_e(_cut(p, 300))}</p>' for p in s.get("problems") or []
    )
    return (
        f'<li class="stream" data-stream="{_e(s["stream"])}" '
        f'data-complete="{"yes" if s["complete"] else "no"}">'
        f'<div class="name"><span>{_e(s["stream"])}</span>{badge}</div>'
        f'<div class="figs">{figs}</div><div class="walk">{walk}</div>{problems}</li>'
    )


def _pending_split(a: dict[str, Any]) -> str:
    """Pending files held by a live worker apart from those waiting (none pending: nothing)."""
    if not int(a["assets"].get("pending", 0)):
        return ""
    held, waiting = int(a.get("held", 0)), int(a.get("waiting", 0))
    return f"<dt>pending</dt><dd data-held>{held:,} in progress · {waiting:,} waiting</dd>"


def _cards(data: PageData) -> str:
    accounts = data.doc["accounts"]
    if not accounts:
        return '<h2>Accounts</h2><p class="empty">No accounts configured.</p>'
    more = len(accounts) - MAX_CARDS
    note = f'<p class="empty">and {more} more accounts (see <code>genvault status</code>)</p>'
    return (
        '<h2>Accounts</h2><div class="cards">'
        + "".join(_card(a, data.now) for a in accounts[:MAX_CARDS])
        + "</div>"
        + (note if more > 0 else "")
    )


def _at_risk(data: PageData) -> str:
    rows = data.doc["at_risk"][:MAX_AT_RISK]
    title = (
        f"<h2>At risk <small>pending files whose deadline is within "
        f"{data.at_risk_hours:g} h, soonest first</small></h2>"
    )
    if not rows:
        return title + '<p class="empty">Nothing at risk.</p>'
    body = ""
    for r in rows:
        left = countdown(r.get("expires_at"), data.now)
        urgent = left == "expired" or left.startswith("0h")
        body += (
            f'<tr><td>{_e(r["account"])}</td><td class="id">{_e(r["external_id"])}</td>'
            f"<td>{_e(r['role'])}</td>"
            f'<td class="left{" bad" if urgent else ""}">{_e(left)}</td>'
            f"<td>{_e(r.get('attempts', 0))}</td>"
            f'<td class="reason">{_e(_cut(r.get("last_error"), 160))}</td></tr>'
        )
    return (
        f'{title}<table id="at-risk"><thead><tr><th>account</th><th>external id</th>'
        "<th>role</th><th>time left</th><th>attempts</th><th>last error</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _thumbnails(data: PageData) -> str:
    items = list(data.archives)[:MAX_THUMBNAILS]
    title = "<h2>Recent archives <small>newest images first</small></h2>"
    if not items:
        return title + '<p class="empty">No images archived yet.</p>'
    tiles = ""
    for m in items:
        prompt = _cut(m.prompt, 200)
        alt = prompt or f"image {m.external_id} from {m.account}"
        when = ago(m.archived_at.isoformat(), data.now) if m.archived_at else "-"
        tiles += (
            f'<figure class="thumb" data-asset="{m.asset_id}">'
            f'<a href="/files/{m.asset_id}"><img src="/files/{m.asset_id}" loading="lazy" '
            f'alt="{_e(alt)}" width="240" height="180"></a>'
            f'<figcaption><span class="prompt" title="{_e(prompt)}">'
            f"{_e(prompt or '(no prompt)')}</span>"
            f'<span class="meta">{_e(m.provider)} · {_e(m.account)} · {_e(when)}</span>'
            "</figcaption></figure>"
        )
    return f'{title}<div class="grid" id="archives">{tiles}</div>'


def _failures(data: PageData) -> str:
    rows = (data.doc.get("recent_failures") or [])[:MAX_FAILURES]
    title = "<h2>Recent failures <small>failed, lost, and retrying files</small></h2>"
    if not rows:
        return title + '<p class="empty">No failures.</p>'
    body = ""
    for f in rows:
        state = f["state"]
        if state == "lost":
            badge = '<span class="badge bad">lost</span>'
        elif state == "failed":
            badge = '<span class="badge warn">failed</span>'
        else:
            badge = (
                f'<span class="badge warn">retry {_e(until(f.get("next_attempt_at"), data.now))}'
                "</span>"
            )
        body += (
            f"<tr><td>{_e(ago(f.get('updated_at'), data.now))}</td><td>{_e(f['account'])}</td>"
            f'<td class="id">{_e(f["external_id"])}</td><td>{_e(f["role"])}</td>'
            f"<td>{badge}</td><td>{_e(f.get('attempts', 0))}</td>"
            f'<td class="reason">{_e(_cut(f.get("reason"), 300))}</td></tr>'
        )
    return (
        f'{title}<table id="failures"><thead><tr><th>when</th><th>account</th>'
        "<th>external id</th><th>role</th><th>state</th><th>attempts</th><th>reason</th>"
        f"</tr></thead><tbody>{body}</tbody></table>"
    )


# --------------------------------------------------------------------------- pages


def render_page(data: PageData) -> bytes:
    """The status page. Refreshes itself every 30 s, except when showing search results
    (a refresh would only repeat the search under the reader's eyes)."""
    body = (
        _header(data)
        + '<main class="wrap">'
        + _storage(data)
        + _search(data)
        + _cards(data)
        + _at_risk(data)
        + _thumbnails(data)
        + _failures(data)
        + "<footer>Read-only. The same figures as <code>genvault status</code>; "
        "<code>genvault status --json</code> for machines.</footer></main>"
    )
    refresh = REFRESH_SECONDS if data.search.hits is None else None
    return _document("genvault status", body, refresh=refresh)


def render_denied(title: str, message: str, *, ask_token: bool) -> bytes:
    """The 401/403 page: what is wrong, and (401) a box to enter the server token."""
    form = (
        '<form method="get" action="/"><input type="password" name="token" '
        'placeholder="server token" aria-label="server token" autocomplete="off">'
        '<button type="submit">Open</button></form>'
        if ask_token
        else ""
    )
    body = f'<div class="denied"><h1>{_e(title)}</h1><p>{_e(message)}</p>{form}</div>'
    return _document(f"genvault: {title}", body)
