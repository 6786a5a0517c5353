"""Messages before a loss: a digest of what needs a human, through Apprise.

Metrics and alert rules serve users who run Prometheus; most people who trust genvault
with their only copies run nothing of the kind, and learn of a problem when a file is
already gone. So genvault tells them itself, through Apprise (email, Slack, Telegram,
Matrix, ntfy, plain webhooks and a hundred more), before the deadline passes.

What is said, and how often:

* **files at risk** (pending, deadline within ``metrics.at_risk_hours``) and **files
  lost**: each file once per event, ever; a file that was at risk and is then lost is
  named twice, once for each;
* **conditions** that last, a stream whose sync fails or stays incomplete, a
  provider's circuit open, storage failing: said when they begin, again after
  ``notify.repeat_hours`` of quiet if they still hold, and forgotten once they clear,
  so the next time they begin is news again;
* **verify damage**: each damaged object once.

Everything new since the last digest goes into one message (``run --once``: one per
run; the daemon: at most one per ``notify.interval_minutes``). What was said is
recorded in the database only after Apprise reports it delivered, so a digest that
failed is tried again with the next one, and replicas sharing a database do not say
the same thing twice. The URLs are secrets: they are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from genvault.config import NotifyEvent
from genvault.errors import ConfigError
from genvault.records import STATED_SOURCES

if TYPE_CHECKING:
    from genvault.config import Settings
    from genvault.runtime import Runtime
    from genvault.store import Store

log = structlog.get_logger(__name__)

ONCE_PER_SUBJECT: frozenset[str] = frozenset({"at_risk", "lost", "verify"})
"""Events about one file: said once. The others are conditions: said again after the
quiet period while they last."""
AT_RISK_LIMIT = 1000
"""Files at risk or lost read per digest (the oldest deadlines first); the rest are
news for the next digest."""
MAX_LINES_PER_KIND = 25
"""A digest names at most this many files or streams per event; the rest are counted."""
HEADINGS: dict[str, str] = {
    "lost": "Lost (the provider no longer serves them)",
    "at_risk": "At risk (deadline close, not archived yet)",
    "verify": "Damaged in the archive (found by verify)",
    "storage": "Storage failing",
    "circuit": "Provider unreachable (circuit open)",
    "stream": "History sync failing or incomplete",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell: ``subject`` identifies it within its kind (an asset id, an
    ``account/stream``, an account, ``storage``, an archive key)."""

    kind: NotifyEvent
    subject: str
    text: str


class NotificationLedger(Protocol):
    """What was said and when (the store implements it, under ``genvault.store``)."""

    def notified(self, kind: str, subjects: Sequence[str]) -> dict[str, datetime]:
        """When each of ``subjects`` was last said, for those said at all."""
        ...

    def mark_notified(self, kind: str, subjects: Sequence[str], at: datetime) -> None: ...

    def forget_notified(self, kind: str, keep: Sequence[str]) -> None:
        """Forget the subjects of ``kind`` not in ``keep``: conditions that cleared."""
        ...


@dataclass
class Digest:
    """The events one message carries, in the order of :data:`HEADINGS`."""

    events: list[Event] = field(default_factory=list)
    delivered: bool = False
    """Set once Apprise reported the message delivered (and the ledger recorded it)."""

    def __bool__(self) -> bool:
        return bool(self.events)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out

    def title(self) -> str:
        words = {
            "lost": "lost",
            "at_risk": "at risk",
            "verify": "damaged",
            "storage": "storage failing",
            "circuit": "circuit open",
            "stream": "sync problem",
        }
        parts = [f"{n} {words[k]}" for k, n in self.counts().items()]
        return "genvault: " + ", ".join(parts)

    def body(self) -> str:
        lines: list[str] = []
        for kind, heading in HEADINGS.items():
            of_kind = [e for e in self.events if e.kind == kind]
            if not of_kind:
                continue
            lines.append(f"{heading}: {len(of_kind)}")
            lines += [f"  - {e.text}" for e in of_kind[:MAX_LINES_PER_KIND]]
            if len(of_kind) > MAX_LINES_PER_KIND:
                lines.append(f"  … and {len(of_kind) - MAX_LINES_PER_KIND} more")
        return "\n".join(lines)

    def severity(self) -> Literal["failure", "warning"]:
        return "failure" if {"lost", "storage", "verify"} & set(self.counts()) else "warning"


# --------------------------------------------------------------------------- events


def _when(value: Any) -> str:
    return value.isoformat(timespec="minutes") if isinstance(value, datetime) else str(value)


def _guess(source: str | None) -> str:
    """`` (a guessed deadline)`` unless the deadline is the provider's word, a
    documented rule or a signed URL's: a guess must never read as a fact."""
    return "" if source in STATED_SOURCES else " (a guessed deadline)"


def events_from_status(
    doc: dict[str, Any], at_risk: Iterable[dict[str, Any]], lost: Iterable[dict[str, Any]]
) -> list[Event]:
    """Every event the current state holds: ``doc`` is the status document
    (:func:`genvault.status.read_status`), ``at_risk`` and ``lost`` the asset rows of
    :meth:`Store.at_risk` and :meth:`Store.lost_assets` (more than the document's short
    list: every file must be named once)."""
    events: list[Event] = []
    for r in lost:
        events.append(
            Event(
                "lost",
                str(r["id"]),
                f"{r['account']}: {r['external_id']} {r['role']} ({r.get('last_error') or 'lost'})",
            )
        )
    for r in at_risk:
        events.append(
            Event(
                "at_risk",
                str(r["id"]),
                f"{r['account']}: {r['external_id']} {r['role']} due {_when(r['expires_at'])}"
                + _guess(r.get("expires_source"))
                + (f" (last error: {r['last_error']})" if r.get("last_error") else ""),
            )
        )
    storage = doc.get("storage", {}).get("circuit", {})
    if storage.get("state", "closed") != "closed":
        events.append(
            Event(
                "storage",
                "storage",
                f"{doc['storage']['url']}: circuit {storage['state']}"
                + (f" ({storage['last_error']})" if storage.get("last_error") else ""),
            )
        )
    for acc in doc.get("accounts", []):
        circuit = acc.get("circuit", {})
        if circuit.get("state", "closed") != "closed":
            events.append(
                Event(
                    "circuit",
                    acc["name"],
                    f"{acc['name']} ({acc['provider']}): circuit {circuit['state']}"
                    + (f" ({circuit['last_error']})" if circuit.get("last_error") else ""),
                )
            )
        for s in acc.get("streams", []):
            # The sync itself failing or ending short; missing files are said as lost,
            # file by file, and a stream not walked yet is no news.
            problems = [
                p
                for p in s.get("problems", [])
                if p.startswith(("sync error", "last walk incomplete"))
            ]
            if problems:
                events.append(
                    Event(
                        "stream",
                        f"{acc['name']}/{s['stream']}",
                        f"{acc['name']}/{s['stream']}: {'; '.join(problems)}",
                    )
                )
    return events


def verify_events(damaged: Iterable[tuple[str, str]]) -> list[Event]:
    """``(archive key, what is wrong)`` pairs found by ``genvault verify``."""
    return [Event("verify", key, f"{key}: {why}") for key, why in damaged]


# --------------------------------------------------------------------------- the notifier


class Messenger:
    """Decides what is news, sends it as one digest, and records what was delivered."""

    def __init__(
        self,
        urls: Sequence[str],
        ledger: NotificationLedger,
        *,
        events: Iterable[str],
        repeat: timedelta,
    ) -> None:
        self.ledger = ledger
        self.wanted = frozenset(events)
        self.repeat = repeat
        self._apprise = _apprise_for(urls) if urls else None

    @property
    def enabled(self) -> bool:
        return self._apprise is not None

    def news(self, events: Sequence[Event], now: datetime) -> Digest:
        """The events not said yet (or, for a lasting condition, not within the quiet
        period); conditions no longer present are forgotten."""
        digest = Digest()
        for kind in HEADINGS:
            of_kind = [e for e in events if e.kind == kind]
            if kind not in ONCE_PER_SUBJECT:
                self.ledger.forget_notified(kind, [e.subject for e in of_kind])
            if kind not in self.wanted or not of_kind:
                continue
            said = self.ledger.notified(kind, [e.subject for e in of_kind])
            for e in of_kind:
                last = said.get(e.subject)
                if last is None or (kind not in ONCE_PER_SUBJECT and now - last >= self.repeat):
                    digest.events.append(e)
        return digest

    def send(self, digest: Digest, now: datetime) -> bool:
        """Send ``digest`` as one message; record its events only once delivered."""
        if not digest or self._apprise is None:
            return False
        import apprise

        kind = (
            apprise.NotifyType.FAILURE
            if digest.severity() == "failure"
            else (apprise.NotifyType.WARNING)
        )
        try:
            delivered = bool(
                self._apprise.notify(title=digest.title(), body=digest.body(), notify_type=kind)
            )
        except Exception as exc:  # a notification service must never crash a pass
            log.warning("notify.failed", error=type(exc).__name__, counts=digest.counts())
            return False
        if not delivered:
            log.warning("notify.failed", error="not delivered", counts=digest.counts())
            return False
        for k in {e.kind for e in digest.events}:
            self.ledger.mark_notified(k, [e.subject for e in digest.events if e.kind == k], now)
        digest.delivered = True
        log.info("notify.sent", counts=digest.counts())
        return True

    def notify(self, events: Sequence[Event], now: datetime) -> Digest:
        """``news`` then ``send``; returns what was news (sent or not)."""
        digest = self.news(events, now)
        if digest:
            self.send(digest, now)
        return digest

    def test(self) -> bool:
        """``genvault notify --test``: one message, recorded nowhere."""
        if self._apprise is None:
            return False
        return bool(
            self._apprise.notify(
                title="genvault: test notification",
                body="genvault can reach you here. Files at risk and lost will be reported "
                "this way.",
            )
        )


def _apprise_for(urls: Sequence[str]) -> Any:
    """An Apprise object holding every URL; a URL Apprise does not know is a config
    error naming its position and scheme (never the URL: it may hold a secret)."""
    import logging

    import apprise

    from genvault.logs import register_secret

    # Apprise logs the endpoints it talks to, and they can carry tokens: only its
    # errors pass (masked like every secret), and none while URLs are parsed, where
    # the one-line config error says it all.
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.CRITICAL)
    ap = apprise.Apprise()
    for i, url in enumerate(urls):
        register_secret(url)
        if not ap.add(url):
            scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
            raise ConfigError(f"notify.urls[{i}]", f"not an Apprise URL (scheme {scheme!r})")
    apprise_log.setLevel(logging.ERROR)
    return ap


def messenger_for(settings: Settings, ledger: NotificationLedger) -> Messenger:
    """The configured notifier (disabled when no URL is configured)."""
    from genvault.config import resolve_notify_urls

    n = settings.notify
    return Messenger(
        resolve_notify_urls(settings),
        ledger,
        events=n.events,
        repeat=timedelta(hours=n.repeat_hours),
    )


def notify_after_pass(rt: Runtime) -> Digest:
    """After a pass (or on the daemon's interval): :func:`notify_state` for a runtime."""
    return notify_state(rt.settings, rt.store, rt.messenger)


def notify_state(settings: Settings, store: Store, messenger: Messenger) -> Digest:
    """Tell what the database holds now that was not said yet (no-op without URLs).

    Never raises: a notification service or a query failing must not fail the pass
    whose files are safe; the failure is logged and the news stays news for next time.
    """
    if not messenger.enabled:
        return Digest()
    try:
        from genvault.status import at_risk_window, read_status

        window = at_risk_window(settings)
        doc = read_status(store, settings, window, failures=0)
        events = events_from_status(
            doc, store.at_risk(window, limit=AT_RISK_LIMIT), store.lost_assets(AT_RISK_LIMIT)
        )
        return messenger.notify(events, datetime.now(UTC))
    except Exception as exc:
        log.warning("notify.failed", error=repr(exc)[:300])
        return Digest()
