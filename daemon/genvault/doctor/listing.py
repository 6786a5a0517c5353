"""The listing checks of a provider with a history: find a stream worth sampling,
then paging, page cap, sort order, listing-vs-detail files and media, in that order.

Each check hands the next the page it ended on (a paging fix changes which page
that is), and the sampled page's finished generations, with the details fetched,
are what the media checks probe. A check the API answers with an error fails and
ends the listing checks: what follows would only repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from genvault.doctor.detail import check_detail
from genvault.doctor.findings import Level
from genvault.doctor.media import check_media
from genvault.doctor.paging import check_page_cap, check_paging
from genvault.doctor.session import PROBE_SIZE, ProbeSession
from genvault.errors import BusinessError, ProviderError
from genvault.net.errors import short_error
from genvault.records import Page
from genvault.walk import OrderCheck

MAX_STREAMS: Final = 4
"""History streams tried for one with enough items to sample (CrowdComputed workflows)."""

_PAGE_CHECKS: Final[tuple[tuple[str, Callable[[ProbeSession, str, Page], Page]], ...]] = (
    ("paging", check_paging),
    ("page_cap", check_page_cap),
)


def check_history(session: ProbeSession) -> None:
    """Every listing check, on the first stream with enough items to tell."""
    report = session.report
    stream, page = _sample_stream(session)
    if stream is None or page is None:
        report.add(
            "listing",
            Level.SKIP,
            f"no history stream among the first {MAX_STREAMS} has items: paging, cap, "
            "order, detail and media cannot be checked",
        )
        return
    report.facts["stream"] = stream
    for name, check in _PAGE_CHECKS:
        try:
            page = check(session, stream, page)
        except ProviderError as exc:
            report.add(name, Level.FAIL, short_error(exc))
            return
    _order(session, page)
    try:
        details = check_detail(session, page)
    except ProviderError as exc:
        report.add("detail", Level.FAIL, short_error(exc))
        details = []
    check_media(session, [*details, *page.records])


def _enough(page: Page) -> bool:
    """The stream holds more than one probe page (so paging can be seen)."""
    if page.total is not None:
        return page.total > PROBE_SIZE
    return page.got >= PROBE_SIZE


def _sample_stream(session: ProbeSession) -> tuple[str | None, Page | None]:
    """The first stream that holds more than a probe page, else the first with any item.

    The first stream's first page was fetched by the reach check (``session.first``).
    """
    assert session.first is not None
    stream, page, error = session.first
    best: tuple[str, Page] | None = None
    if error is not None:
        _stream_refused(session, stream, error)
    elif page is not None:
        if _enough(page):
            return stream, page
        if page.records:
            best = (stream, page)
    provider = session.provider(session.options, size=PROBE_SIZE)
    for other in provider.streams()[1:MAX_STREAMS]:
        session.spend()
        try:
            found = provider.fetch_page(other, provider.paging.first)
        except BusinessError as exc:
            _stream_refused(session, other, exc)
            continue
        if _enough(found):
            return other, found
        if best is None and found.records:
            best = (other, found)
    return best if best is not None else (None, None)


def _stream_refused(session: ProbeSession, stream: str, error: ProviderError) -> None:
    session.report.add(
        "listing",
        Level.WARN,
        f"history {stream!r} is refused: {short_error(error)}; every sync of it will fail",
    )


def _order(session: ProbeSession, page: Page) -> None:
    """The listing's sort order, as the walk judges it: newest first lets syncs stop."""
    report = session.report
    check = OrderCheck(None)
    check.feed(page.records)
    seen = check.seen
    if seen is None:
        report.add("order", Level.SKIP, "too few items with a creation time to see the sort order")
        return
    report.facts["order"] = seen.value
    if seen.value == "newest_first":
        report.add("order", Level.OK, "newest first: incremental syncs stop at what they have")
    elif seen.value == "oldest_first":
        report.add(
            "order",
            Level.WARN,
            "oldest first: an incremental sync cannot stop early, every pass reads the "
            "whole history",
        )
    else:
        report.add(
            "order",
            Level.WARN,
            "unsorted: an incremental sync cannot stop early, every pass reads the whole history",
        )


__all__ = ["MAX_STREAMS", "check_history"]
