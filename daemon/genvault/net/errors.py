"""Turning httpx's failures into genvault's errors, and errors into safe one-liners.

httpx stays behind :mod:`genvault.net`: nothing outside this package catches an
httpx exception. :func:`short_error` is what is stored and shown of an error.
"""

from __future__ import annotations

import re

import httpx

from genvault.logging import scrub


def is_malformed_redirect(exc: httpx.TransportError) -> bool:
    """True when httpx gave up on a redirect because its ``Location`` is no valid URL.

    httpx reports that as a protocol error (``RemoteProtocolError``, transient to
    genvault), though the same redirect will be malformed the next time too.
    """
    return isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith(
        "Invalid URL in location header"
    )


def clip(text: str, limit: int = 120) -> str:
    """At most ``limit`` characters of ``text``: errors must not quote a 64 KB URL."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


_URL_RE = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of ``exc`` fit to store and show: URLs and secrets masked.

    API errors name the path, never the full URL, but a transport error may quote
    an address and an error body may echo anything; ``status`` prints this, so it
    is scrubbed of registered secrets and of anything that looks like a URL.
    """
    text = _URL_RE.sub("<url>", scrub(f"{type(exc).__name__}: {exc}"))
    return clip(" ".join(text.split()), limit)


__all__ = ["clip", "is_malformed_redirect", "short_error"]
