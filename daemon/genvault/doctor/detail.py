"""The listing-vs-detail check: whether a generation's detail names files its listing
entry leaves out, and whether the sync would read that detail.

Some APIs list a generation with its first file only and name the rest in its
detail; an adapter marks such entries ``needs_detail`` so the sync fetches the
detail. When it does not, those files are never archived, silently. Doctor fetches
the detail of up to :data:`DETAIL_SAMPLES` finished generations of the sampled page
and compares; for a miss it re-parses the entry under each other ``Literal`` option
value to find a setting that would mark it.
"""

from __future__ import annotations

from typing import Final

from genvault.doctor.findings import Level
from genvault.doctor.media_urls import bare_url
from genvault.doctor.options import (
    other_literal_alternatives,
    toml_value,
    valid_alternatives,
)
from genvault.doctor.session import ProbeSession
from genvault.errors import ProviderError
from genvault.net.errors import short_error
from genvault.records import GenerationRecord, GenerationStatus, Page

DETAIL_SAMPLES: Final = 3
"""Finished generations whose detail is compared with their listing entry."""


def check_detail(session: ProbeSession, page: Page) -> list[GenerationRecord]:
    """Compare sampled details with their listing entries; the details fetched."""
    report = session.report
    samples = [r for r in page.records if r.status is GenerationStatus.SUCCEEDED]
    samples = samples[:DETAIL_SAMPLES]
    if not samples:
        report.add("detail", Level.SKIP, "no finished generation on the sampled page")
        return []
    provider = session.provider(session.options)
    details: list[GenerationRecord] = []
    missed: list[tuple[GenerationRecord, int]] = []
    covered: list[tuple[GenerationRecord, int]] = []
    failed: list[str] = []
    for listed in samples:
        session.spend()
        try:
            detail = provider.fetch(listed.external_id)
        except ProviderError as exc:
            failed.append(f"{listed.external_id}: {short_error(exc)}")
            continue
        details.append(detail)
        more = {bare_url(m.url) for m in detail.media} - {bare_url(m.url) for m in listed.media}
        if more:
            (covered if listed.needs_detail else missed).append((listed, len(more)))
    ids = ", ".join(r.external_id for r in samples)
    if failed:
        report.add(
            "detail",
            Level.FAIL,
            f"the status/detail endpoint fails for a listed generation ({failed[0]}): "
            "tasks in progress could not be followed",
        )
    if missed:
        _detail_missed(session, *missed[0])
    elif covered:
        first, extra = covered[0]
        report.add(
            "detail",
            Level.OK,
            f"the detail of {first.external_id} lists {extra} more file(s) than its "
            "listing entry; the sync reads the detail of such generations",
        )
    elif details:
        report.add(
            "detail",
            Level.OK,
            f"the detail names no file the listing leaves out ({len(details)} sampled: {ids})",
        )
    return details


def _detail_missed(session: ProbeSession, listed: GenerationRecord, extra: int) -> None:
    """A FAIL for a detail the sync would not read, with an option value that would."""
    text = (
        f"the detail of {listed.external_id} lists {extra} more file(s) than its listing "
        "entry, and the sync would not read it: those files would not be archived"
    )
    options = session.options
    for option, value, alt in valid_alternatives(options, other_literal_alternatives(options)):
        try:
            reparsed = session.offline(alt).parse(listed.raw)
        except ProviderError:
            continue
        if reparsed.needs_detail:
            session.add_fix(
                "detail",
                Level.FAIL,
                f"{text}; with {option} = {toml_value(value)} it would",
                option,
                value,
            )
            return
    session.report.add("detail", Level.FAIL, text)


__all__ = ["DETAIL_SAMPLES", "check_detail"]
