"""``genvault run --once --dry-run``: what a pass would fetch and archive, writing nothing.

For each account it reads the first history pages a real pass would read (from
the stored cursor, stopping where the pass would stop, at most
:data:`MAX_PAGES` per stream) and says how many generations are new, changed or
already known; it lists the tasks due for a status read; then the archive plan:
the files the next pass would download, in its order (earliest deadline first),
with the announced size and the time left, and the totals.

Nothing is written anywhere: the database is opened only if it exists at the
latest schema (no file created, no migration: :mod:`genvault.ops.readonly`), no row
is leased or updated, the circuit-breaker state is read but never saved, no
media URL is requested and storage is not touched (not even the clean-up of
stale uploads). The only requests are the listing GETs themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from structlog.contextvars import bound_contextvars

from genvault.config import Settings
from genvault.errors import ProviderError
from genvault.exitcodes import ExitCode
from genvault.formatting import countdown, human_bytes, iso
from genvault.identity import fingerprint, url_key
from genvault.instance import lock_held
from genvault.jobs import health
from genvault.models import utcnow
from genvault.ops.readonly import open_existing_store
from genvault.runtime import AccountRuntime, Runtime
from genvault.store.queries.operator import ArchivePlan
from genvault.walk import next_walk

MAX_PAGES = 3
"""Listing requests per stream: enough to show what is new, not a walk of everything."""
SHOW = 20
"""Lines per list (tasks, files) before "and N more"."""

Echo = Callable[[str], None]


@dataclass
class StreamPreview:
    stream: str
    pages: int = 0
    items: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    new_files: int = 0
    full: bool = False
    """The pass would walk this stream in full (reconciliation), not incrementally."""
    more: bool = False
    """The walk would go on past the pages read here."""
    error: str | None = None


def preview_stream(rt: Runtime, acc: AccountRuntime, stream: str) -> StreamPreview:
    """Read the pages a pass would read first and compare them with the database.

    The walk is the sync's own (:func:`~genvault.walk.next_walk`, planned from the
    stored cursor), capped at :data:`MAX_PAGES` requests.
    """
    out = StreamPreview(stream)
    provider = acc.provider
    cursor = rt.store.get_cursor(acc.name, stream)
    walk = next_walk(
        provider,
        cursor,
        stream,
        rt.settings.sync,
        max_pages=MAX_PAGES,
        backfill_days=acc.settings.backfill_days,
    )
    out.full = walk.plan.full
    seen_files: set[str] = set()
    try:
        for step in walk:
            page = step.page
            out.pages += 1
            out.items += len(page.records)
            known = rt.store.known_fingerprints(
                provider.name, acc.name, [r.external_id for r in page.records]
            )
            for r in page.records:
                old = known.get(r.external_id)
                if old is None:
                    out.new += 1
                    for m in r.media:
                        key = url_key(m.url)
                        wanted = acc.wants(m.role.value, m.kind.value, rt.settings.archive)
                        if wanted and key not in seen_files:
                            seen_files.add(key)
                            out.new_files += 1
                elif old != fingerprint(r.raw):
                    out.changed += 1
                else:
                    out.unchanged += 1
    except ProviderError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        return out
    out.more = walk.capped
    if walk.end is not None and not walk.end.complete:
        out.error = f"walk incomplete: {walk.end.explain(walk)}"
    return out


def _more(shown: int, total: int) -> str | None:
    return f"    and {total - shown} more" if total > shown else None


def _account(rt: Runtime, acc: AccountRuntime, now: datetime, echo: Echo) -> bool:
    """Print one account's section; True when something went wrong (exit 3)."""
    echo(f"\naccount {acc.name} ({acc.provider.name})")
    blocked = health.blocked_until(rt, acc)
    if blocked is not None:
        echo(
            f"  circuit open until {blocked.isoformat()}: "
            "a real pass skips this account (no request made)"
        )
        return True
    trouble = False
    if not acc.provider.has_history:
        echo("  no history listing: tasks arrive by `genvault track`, the intake or webhooks")
    for stream in acc.provider.streams():
        cursor = rt.store.get_cursor(acc.name, stream)
        p = preview_stream(rt, acc, stream)
        where = (
            f"newer than {cursor.high_water.isoformat()}"
            if cursor.high_water is not None
            else "first walk: all history"
        )
        if p.full and cursor.high_water is not None:
            where = "full walk: all history, compared with the ledger"
        if cursor.scan_position is not None:
            where += f", resuming an unfinished walk at {cursor.scan_position}"
        label = f"  history {stream!r} ({where}):"
        if p.error is not None:
            echo(f"{label} listing failed after {p.pages} page(s): {p.error}")
            trouble = True
            continue
        echo(
            f"{label} {p.pages} page(s) read, {p.items} items: {p.new} new, "
            f"{p.changed} changed, {p.unchanged} known; {p.new_files} new file(s) to archive"
        )
        if p.more:
            echo(f"    more pages follow (only the first {MAX_PAGES} were read)")
    due = rt.store.count_due_for_poll(acc.name, now)
    echo(f"  tasks due for a status read: {due}")
    items = rt.store.due_for_poll(acc.name, now, limit=SHOW)
    for item in items:
        polled = f"  (read {item.poll_attempts} time(s) so far)" if item.poll_attempts else ""
        echo(f"    {item.external_id}  {item.status}{polled}")
    if (line := _more(len(items), due)) is not None:
        echo(line)
    return trouble


def _plan(plan: ArchivePlan, now: datetime, echo: Echo) -> None:
    if plan.leasable and plan.unknown_size == plan.leasable:
        sizes = "no size announced: known once downloaded"
    else:
        sizes = f"{human_bytes(plan.known_bytes)} announced"
        if plan.unknown_size:
            sizes += f", {plan.unknown_size} of unknown size"
    echo(
        f"\narchive plan: {plan.leasable} file(s) to download now, "
        f"earliest deadline first ({sizes})"
    )
    width = len(str(len(plan.files)))
    for i, f in enumerate(plan.files, 1):
        size = human_bytes(f.expected_size) if f.expected_size is not None else "size ?"
        left = countdown(iso(f.expires_at), now)
        retry = f", attempt {f.attempts + 1}" if f.attempts else ""
        echo(
            f"  {i:>{width}}. {f.account}  {f.external_id}  {f.role}/{f.kind}  {size}  "
            f"deadline {left}{retry}"
        )
    if (line := _more(len(plan.files), plan.leasable)) is not None:
        echo(line)
    if plan.backoff or plan.leased:
        echo(
            f"  not yet: {plan.backoff} waiting for their retry time, "
            f"{plan.leased} leased by another worker"
        )
    if plan.roles_to_queue:
        echo(f"  {plan.roles_to_queue} skipped file(s) of roles now archived would be queued")


def dry_run(
    settings: Settings, secrets: dict[str, SecretStr], *, echo: Callable[[str], None]
) -> int:
    """Print the plan of one pass; returns 0, or 3 when a listing failed or a circuit is open.

    Raises :class:`~genvault.errors.ConfigError` (exit 2) when there is no database
    at the latest schema to compare with: a dry run never creates or migrates one.
    """
    open_existing_store(settings.database.url).dispose()
    rt = Runtime.build(settings, secrets, upgrade=False)
    try:
        db = make_url(settings.database.url).render_as_string(hide_password=True)
        echo(f"dry run: nothing will be written (database {db}, storage {rt.storage.url})")
        now = utcnow()
        trouble = False
        for acc in rt.accounts.values():
            with bound_contextvars(account=acc.name):  # health.restore's lines name it
                trouble |= _account(rt, acc, now, echo)
        # a killed run's leases do not hold the real pass back: do not count them here
        dead = rt.store.dead_lease_owners(process_alive=lock_held(settings.database.url))
        plan = rt.store.archive_plan(roles=rt.archive_roles, limit=SHOW, now=now, dead_owners=dead)
        _plan(plan, now, echo)
        return int(ExitCode.RETRYING if trouble else ExitCode.OK)
    finally:
        rt.close()
