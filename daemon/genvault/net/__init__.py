"""Everything that speaks HTTP to the outside, so httpx stays behind one package.

* :mod:`~genvault.net.policy`: which hosts and addresses a request may reach, and
  which origin an account's credentials may go to;
* :mod:`~genvault.net.client`: the one client factory, on a transport that vets
  every connection (each redirect hop included) with the policy;
* :mod:`~genvault.net.api`: :class:`~genvault.net.api.ApiClient`, JSON calls to a
  provider API with bounded bodies, a deadline and retries;
* :mod:`~genvault.net.media`: streaming one media file, verified while it flows;
* :mod:`~genvault.net.throttle`: an account's request budget and circuit breaker;
* :mod:`~genvault.net.errors`: httpx's failures as genvault's errors, and errors as
  safe one-line text.

**Failures.** Every exchange runs inside
:func:`~genvault.net.errors.map_httpx_errors`, which sorts httpx's exception (or the
policy's ``UnsafeURLError``, raised from inside httpx's call) into a
:class:`~genvault.net.errors.Fault`; each kind of exchange decides what the fault
means for it. *P* is a ``PermanentProviderError`` / ``PermanentDownloadError``, *T*
the transient one; a dash lets the exception through (to the enclosing
:func:`~genvault.net.media.open_media` for a resume, which runs inside it)::

    fault (httpx exception)               API call   media request   resume   body read
    REFUSED (UnsafeURLError)              P          P               -        -
    TIMED_OUT (TimeoutException)          T          T               T        resume, else T
    TOO_MANY_REDIRECTS                    -          P               -        -
    UNSUPPORTED_SCHEME (a redirect)       T          P               T        -
    MALFORMED_REDIRECT (bad Location)     P          P               T        -
    BROKEN (any other TransportError)     T          T               T        resume, else T
    MALFORMED_URL (InvalidURL)            P          -               -        -

The API call also reports a fault on the wire (TIMED_OUT to BROKEN) to the metrics
as status 0. The two columns disagree on TOO_MANY_REDIRECTS and UNSUPPORTED_SCHEME
for no stated reason: the API column is what the API code always did.
"""

from __future__ import annotations

import importlib
import sys


def _import_hiding(module: str, hidden: str) -> None:
    """Import ``module`` while ``hidden`` reads as not installed, unless either is
    imported already; ``hidden`` stays importable afterwards.

    With ``hidden`` set to None in :data:`sys.modules` for the duration, ``module``
    takes its "not installed" branch for it. Each use says why below.
    """
    if module in sys.modules or hidden in sys.modules:
        return
    sys.modules[hidden] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        del sys.modules[hidden]


# httpx without ``httpx._main``, its command-line client. httpx's ``__init__`` imports
# ``httpx._main`` (``try: from ._main import main / except ImportError``) whenever
# click, rich and pygments are installed, as they are here; ``_main`` imports rich's
# console, progress, syntax and table and pygments' lexers for a CLI genvault never runs
# (~10-30 ms of every start). With ``httpx._main`` set to None in :data:`sys.modules`
# for the duration, httpx takes its "CLI dependencies missing" branch: ``httpx.main`` in
# this process only says so, and ``httpx._main`` stays importable afterwards. The
# ``httpx`` command itself is another process.
_import_hiding("httpx", "httpx._main")
# httpcore without trio. httpcore's ``_synchronization`` does ``try: import trio /
# except ImportError`` to pick the locks of its *async* pool under trio. genvault only
# uses the sync client, so trio (with attrs, outcome, sortedcontainers: ~40-50 ms, a
# third of the HTTP stack's import) was dead weight on every start wherever trio happens
# to be installed (here selenium, a dev dependency, installs it). With ``trio`` set to
# None in :data:`sys.modules` for the duration, httpcore takes its "trio not installed"
# branch: an async httpcore pool under trio in this process would say trio is missing,
# and ``import trio`` works as before afterwards.
_import_hiding("httpcore", "trio")
