"""The paging checks of a history listing: whether the server honours the paging
parameters as the adapter spells them, and its real page cap.

A server that ignores a parameter spelling (``pageSize`` asked as ``page_size``)
answers every page with the first one, and a walk pages through nothing; so when
paging is not honoured, each other ``paging`` alternative of the options is tried
and the one that works is suggested and used for the checks that follow. Probe pages
hold :data:`~genvault.doctor.session.PROBE_SIZE` items; the cap is seen from one page
asked for at the configured size.
"""

from __future__ import annotations

from genvault.doctor.findings import Level
from genvault.doctor.options import PAGING_WORD, alternatives, toml_value, valid_alternatives
from genvault.doctor.session import PROBE_SIZE, ProbeSession, page_ids
from genvault.errors import MalformedResponseError, ProviderError
from genvault.net.errors import short_error
from genvault.providers.base import Provider
from genvault.records import Page


def _paging_verdict(
    session: ProbeSession, provider: Provider, stream: str, first: Page
) -> tuple[bool | None, str]:
    """Whether the server honours ``provider``'s paging (None: cannot tell), and why."""
    paging = provider.paging
    size = paging.size
    echoed = first.page_size
    if first.got > size or (echoed is not None and echoed > size):
        got = max(first.got, echoed or 0)
        return False, f"asked for {size} items per page, the server sent {got}"
    if first.got < size:
        return None, f"history {stream!r} holds too few items to check paging"
    session.spend()
    try:
        second = provider.fetch_page(stream, paging.first + 1)
    except MalformedResponseError as exc:
        return False, short_error(exc)
    ids1, ids2 = page_ids(first), page_ids(second)
    if ids2 and ids2 == ids1:
        where = "page 2" if paging.kind == "page" else "offset 1"
        return False, f"{where} came back with the items of the first page"
    if paging.kind == "offset":
        if not ids2:
            return None, f"history {stream!r} holds too few items to check paging"
        if len(ids1) > 1 and ids2[0] != ids1[1]:
            return False, "offset 1 does not start with the second item of offset 0"
        return True, "offset and limit are honoured"
    if set(ids1) & set(ids2):
        return False, "page 2 repeats items of page 1"
    if not ids2:
        if first.total is not None and first.total > size:
            return False, f"page 2 came back empty although the API counts {first.total}"
        return None, f"history {stream!r} holds too few items to check paging"
    return True, "page number and size are honoured"


def check_paging(session: ProbeSession, stream: str, page: Page) -> Page:
    """Whether paging is honoured (else a spelling that is); the first page to go on with."""
    report, options = session.report, session.options
    small = session.provider(options, size=PROBE_SIZE)
    ok, why = _paging_verdict(session, small, stream, page)
    spelled = [
        f"{option} = {toml_value(getattr(options, option))}"
        for option in dict(alternatives(options, PAGING_WORD))
    ]
    setting = f" ({', '.join(spelled)})" if spelled else ""
    if ok:
        report.add("paging", Level.OK, why + setting)
        report.facts["paging"] = "honoured"
        return page
    if ok is None:
        report.add("paging", Level.SKIP, why)
        return page
    for option, value, alt in valid_alternatives(options, alternatives(options, PAGING_WORD)):
        provider = session.provider(alt, size=PROBE_SIZE)
        session.spend()
        try:
            first = provider.fetch_page(stream, provider.paging.first)
        except ProviderError:
            continue
        alt_ok, _ = _paging_verdict(session, provider, stream, first)
        if alt_ok:
            session.add_fix(
                "paging",
                Level.FAIL,
                f"the server ignores the paging parameters{setting}: {why}; with "
                f"{option} = {toml_value(value)} it honours them",
                option,
                value,
            )
            report.facts["paging"] = f"{option} = {value}"
            session.options = alt
            return first
    report.add(
        "paging",
        Level.FAIL,
        f"the server ignores the paging parameters{setting}: {why}; a walk cannot page "
        "through this listing",
    )
    report.facts["paging"] = "ignored"
    return page


def check_page_cap(session: ProbeSession, stream: str, _page: Page) -> Page:
    """Whether pages of the configured size come whole; that page, to go on with."""
    report = session.report
    provider = session.provider(session.options)
    paging = provider.paging
    size = paging.size
    session.spend()
    page = provider.fetch_page(stream, paging.first)
    cap: int | None = None
    if page.page_size is not None and 0 < page.page_size < size:
        cap = page.page_size
    elif page.got < size and page.total is not None and page.total > page.got:
        cap = page.got
    elif 0 < page.got < size and page.total is None:
        # the end of the listing, or a cap: the next window tells
        session.spend()
        step = page.got if paging.kind == "offset" else 1
        more = provider.fetch_page(stream, paging.first + step)
        if set(page_ids(more)) - set(page_ids(page)):
            cap = page.got
    report.facts["page_size"] = size
    if cap is not None:
        report.facts["page_cap"] = cap
        field = session.size_field
        report.add(
            "page_cap",
            Level.WARN,
            f"the server caps pages at {cap} items (asked for {size}); walks notice and "
            "adapt, but asking for the real size keeps every page whole",
            key=f"{session.where}.{field}" if field else None,
            suggest=session.line(field, cap) if field else None,
        )
    elif page.got >= size:
        report.add("page_cap", Level.OK, f"pages of {size} come whole")
    else:
        report.add(
            "page_cap",
            Level.OK,
            f"history {stream!r} fits in one page of {size} ({page.got} items): no cap seen",
        )
    return page


__all__ = ["check_page_cap", "check_paging"]
