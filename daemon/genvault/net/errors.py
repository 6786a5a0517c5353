"""Turning httpx's failures into genvault's errors, and errors into safe one-liners.

httpx stays behind :mod:`genvault.net`: nothing outside this package catches an
httpx exception. Every exchange runs inside :func:`map_httpx_errors`, the one
place httpx's exceptions (and the policy's :class:`~genvault.errors.UnsafeURLError`,
raised from inside httpx's call) are told apart, as a :class:`Fault`; each kind of
exchange then says what that fault means for it (the table is drawn in
:mod:`genvault.net`). :func:`short_error` is what is stored and shown of an error.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import httpx

from genvault.errors import UnsafeURLError
from genvault.logs import scrub


class Fault(enum.Enum):
    """What went wrong in one HTTP exchange, as genvault tells httpx's exceptions apart."""

    REFUSED = "refused"
    """The network policy refused the URL, a redirect hop, or an address met at connect
    time (:class:`~genvault.errors.UnsafeURLError`)."""
    TIMED_OUT = "timed_out"
    """A connect, read, write or pool timeout (``httpx.TimeoutException``)."""
    TOO_MANY_REDIRECTS = "too_many_redirects"
    """More redirects than the client follows (``httpx.TooManyRedirects``)."""
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    """A redirect to a scheme other than http(s) (``httpx.UnsupportedProtocol``)."""
    MALFORMED_REDIRECT = "malformed_redirect"
    """A redirect whose ``Location`` is no valid URL (:func:`is_malformed_redirect`)."""
    BROKEN = "broken"
    """Any other transport failure: connection refused or reset, a protocol error, a body
    cut short of its Content-Length."""
    MALFORMED_URL = "malformed_url"
    """httpx could not build the request's URL (``httpx.InvalidURL``)."""

    @property
    def transport(self) -> bool:
        """The exchange failed on the wire (an ``httpx.TransportError``): no HTTP status."""
        return self in _TRANSPORT


_TRANSPORT = frozenset(
    {Fault.TIMED_OUT, Fault.UNSUPPORTED_SCHEME, Fault.MALFORMED_REDIRECT, Fault.BROKEN}
)


def fault_of(exc: BaseException) -> Fault | None:
    """The :class:`Fault` ``exc`` stands for; None for anything else (it is no HTTP failure)."""
    if isinstance(exc, UnsafeURLError):
        return Fault.REFUSED
    if isinstance(exc, httpx.TimeoutException):
        return Fault.TIMED_OUT
    if isinstance(exc, httpx.TooManyRedirects):
        return Fault.TOO_MANY_REDIRECTS
    if isinstance(exc, httpx.UnsupportedProtocol):
        return Fault.UNSUPPORTED_SCHEME
    if isinstance(exc, httpx.TransportError):
        return Fault.MALFORMED_REDIRECT if is_malformed_redirect(exc) else Fault.BROKEN
    if isinstance(exc, httpx.InvalidURL):
        return Fault.MALFORMED_URL
    return None


Translate = Callable[[Fault, Exception], Exception | None]
"""What one kind of exchange makes of a fault: the error to raise instead of the
exception, or None to let the exception through as it is."""


class _Mapped:
    """The context manager :func:`map_httpx_errors` returns (a class: it wraps every chunk
    read of a download, so it costs no generator)."""

    __slots__ = ("_translate",)

    def __init__(self, translate: Translate) -> None:
        self._translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if not isinstance(exc, Exception):
            return False
        fault = fault_of(exc)
        error = None if fault is None else self._translate(fault, exc)
        if error is None:
            return False
        raise error from None


def map_httpx_errors(translate: Translate) -> _Mapped:
    """Run a block of HTTP work; a failure in it is raised as ``translate`` words it.

    In the manner of httpx's own ``map_exceptions``: the block raises httpx's (or the
    policy's) exception, this sorts it into a :class:`Fault` and raises
    ``translate(fault, exc)`` in its place, ``from None`` (httpx's chain says nothing
    a user can act on). Any other exception, or a fault ``translate`` answers with
    None, passes through untouched.
    """
    return _Mapped(translate)


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


__all__ = [
    "Fault",
    "Translate",
    "clip",
    "fault_of",
    "is_malformed_redirect",
    "map_httpx_errors",
    "short_error",
]
