"""The media checks: whether a sample media URL answers a one-byte Range GET, and
whether URLs come relative (and resolve against the right base).

A sync that lists and parses well but cannot download is the worst kind: it looks
healthy. So doctor takes up to two URLs from the finished generations sampled by
the listing checks, one named whole in its payload and one resolved from a relative
path, and asks each for its first byte, without the key (media is fetched without
it, as :func:`~genvault.net.media.open_media` does) and under the account's policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from genvault.doctor.findings import Level
from genvault.doctor.media_urls import bare_url, relative_source
from genvault.doctor.options import toml_value
from genvault.doctor.policy_refusal import report_refusal
from genvault.doctor.session import ProbeSession
from genvault.net.probe import RangeAnswer, range_probe
from genvault.records import GenerationRecord, GenerationStatus, MediaRole


def check_media(session: ProbeSession, records: Sequence[GenerationRecord]) -> None:
    """Probe one absolute and one relative media URL of ``records`` (result files first)."""
    absolute: str | None = None
    relative: tuple[str, str] | None = None
    for record in records:
        if record.status is not GenerationStatus.SUCCEEDED:
            continue
        for m in sorted(record.media, key=lambda m: m.role is not MediaRole.RESULT):
            source = relative_source(record.raw, m.url)
            if source is None and absolute is None:
                absolute = m.url
            elif source is not None and relative is None:
                relative = (m.url, source)
    if absolute is None and relative is None:
        session.report.add("media", Level.SKIP, "no finished generation with a file to sample")
        return
    session.report.facts["relative_urls"] = relative is not None
    if absolute is not None:
        _probe_media(session, absolute, None)
    if relative is not None:
        _probe_media(session, *relative)
    elif absolute is not None:
        session.report.add(
            "media_urls", Level.OK, "the sampled generations' media URLs come absolute"
        )


def _base_option(session: ProbeSession, url: str) -> str | None:
    """The string option a relative URL was resolved against (``media_base``)."""
    options = session.options
    for name in type(options).model_fields:
        value = getattr(options, name)
        if (
            isinstance(value, str)
            and value.startswith(("http://", "https://"))
            and url.startswith(value)
        ):
            return name
    return None


def _probe_media(session: ProbeSession, url: str, source: str | None) -> None:
    """One Range GET of ``url`` (resolved from ``source`` when relative), said in words."""
    report = session.report
    session.spend()
    session.requests += 1
    answer = range_probe(session.media_http, url, session.policy)
    statuses = report.facts.setdefault("media_status", [])
    statuses.append(answer.status)
    option = _base_option(session, url) if source is not None else None
    base = url[: len(url) - len(source)] if source and url.endswith(source) else None
    if source is not None:
        where = f"{option} = {toml_value(base)}" if option and base else str(base)
        report.add(
            "media_urls",
            Level.OK,
            f"media URLs come relative (e.g. {source[:80]!r}), resolved against {where}",
        )
    if answer.ok:
        report.add("media", Level.OK, _media_ok(answer, source))
        return
    if answer.refused:
        report_refusal(session, "media", answer.error or "refused", url)
        return
    what = "relative media URL" if source is not None else "sample media URL"
    problem = f"HTTP {answer.status}" if answer.status is not None else f"no answer: {answer.error}"
    if source is not None:
        report.add(
            "media",
            Level.FAIL,
            f"a {what} resolved to {bare_url(url)[:160]} gets {problem}: the base it is "
            "resolved against looks wrong",
            key=f"{session.where}.{option}" if option else None,
        )
    elif answer.status is None:
        report.add("media", Level.FAIL, f"a {what} gets {problem}")
    else:
        report.add(
            "media",
            Level.WARN,
            f"a {what} ({bare_url(url)[:160]}) gets {problem}: expired, or the CDN wants "
            "something genvault does not send",
        )


def _media_ok(answer: RangeAnswer, source: str | None) -> str:
    kind = "a relative" if source is not None else "a sample"
    ctype = f", {answer.content_type}" if answer.content_type else ""
    if answer.status == 206:
        return f"{kind} media URL answers a one-byte Range GET (HTTP 206{ctype})"
    return (
        f"{kind} media URL answers (HTTP 200{ctype}) but ignores Range: an interrupted "
        "download starts over"
    )


__all__ = ["check_media"]
