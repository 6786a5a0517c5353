"""How a parsed media URL relates to the payload it came from: named there whole, or
resolved from a relative path.

An adapter resolves a relative media path against a base (``media_base``...); when
that base is wrong, every download fails. Doctor finds the payload string a URL was
resolved from, to probe one relative URL as well as an absolute one and to name the
base it was resolved against. The URLs are compared without their query, since a
signed URL is re-signed on every read.
"""

from __future__ import annotations

from typing import Any, Final

MAX_WALK_STEPS: Final = 20_000
"""Values of a payload looked at, at most, when collecting its strings."""


def bare_url(url: str) -> str:
    """A URL without its query: signed URLs are re-signed on every read."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _strings(value: Any, out: set[str], budget: list[int]) -> None:
    """Every string in a JSON value (bounded: a payload is walked at most 20,000 steps)."""
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out, budget)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, budget)


def relative_source(raw: Any, url: str) -> str | None:
    """The relative string of ``raw`` that ``url`` was resolved from; None when the
    payload names ``url`` itself (or nothing that explains it)."""
    strings: set[str] = set()
    _strings(raw, strings, [MAX_WALK_STEPS])
    if url in strings or bare_url(url) in strings:
        return None
    for s in sorted(strings, key=len, reverse=True):
        if len(s) < 3 or s.lower().startswith(("http://", "https://", "//")):
            continue
        if url.endswith(s) or bare_url(url).endswith(s):
            return s
    return None


__all__ = ["bare_url", "relative_source"]
