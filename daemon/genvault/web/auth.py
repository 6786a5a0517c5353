"""Who may see the status page and the archived files behind it.

The page shows prompts and images: what people asked a model for is private, so
it is protected by the same server token as the intake whenever one is set:

* ``Authorization: Bearer <token>`` (scripts, ``curl``);
* ``?token=<token>`` once, for a person with a browser: answered with a
  ``303`` to the same URL without the token (so it does not stay in the
  address bar, history or a proxy's log) and a cookie that carries the access
  from then on (``HttpOnly``: no script reads it; ``SameSite=Strict``: no other
  site can make the browser send it; ``Path=/``: the thumbnails get it too);
* that cookie. Its value is derived from the token (HMAC), not the token
  itself: a leaked cookie opens this read-only page, never the intake.

Tokens are read and compared by :mod:`genvault.httpd.credentials`, as at every
other door of the server (:func:`hmac.compare_digest`).

**Without a token** the page is open only while the server listens on a
loopback address (the default, ``127.0.0.1:8787``): then only processes on this
machine can reach it, which already can read the database file. Listening on
any other address without a token (e.g. ``0.0.0.0`` for Kubernetes probes)
keeps ``/healthz`` and ``/readyz`` open but closes the page (403), because
there it would hand every prompt and image to the whole network.

And even on loopback, only requests that *name* a loopback host are served
(``Host: localhost``, ``127.x.x.x`` or ``[::1]``, any port): a web page the
operator visits can point its own domain at 127.0.0.1 (DNS rebinding), and the
browser then lets that page read our answers as same-origin. Its requests carry
the attacker's name in ``Host``, so they get 403. With a token, the token
decides: a rebinding page cannot send it (the cookie is ``SameSite=Strict`` and
bound to our own host name).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode

from genvault.httpd.credentials import bearer, query_token, same_secret

COOKIE_NAME = "genvault_page"
_COOKIE_CONTEXT = b"genvault status page v1"


class Verdict(enum.Enum):
    ALLOW = "allow"
    REDIRECT = "redirect"
    """Right ``?token=``: set the cookie and send the browser to the URL without it."""
    UNAUTHORIZED = "unauthorized"
    """A token is configured and none, or a wrong one, was offered (401)."""
    CLOSED = "closed"
    """No token is configured and the server is reachable beyond loopback, or the
    request names a host that is not loopback (403)."""


@dataclass(frozen=True, slots=True)
class Access:
    verdict: Verdict
    reason: str = ""
    """For the log and the counters: ``missing``, ``bad_token``, ``not_loopback``,
    ``foreign_host``."""
    location: str = ""
    """Where a REDIRECT goes (path and the query without ``token``)."""
    set_cookie: str = ""
    """The ``Set-Cookie`` header value of a REDIRECT."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_is_loopback(host_header: str | None) -> bool:
    """True when a ``Host`` header names this machine: ``localhost``, 127.0.0.0/8 or
    ``[::1]``, with or without a port. A missing or malformed one is not."""
    host = (host_header or "").strip()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return False
    else:
        name, colon, port = host.partition(":")
        if colon and not port.isdigit():
            return False
    return bool(name) and is_loopback(name.removesuffix("."))


def cookie_value(token: bytes) -> str:
    """What the cookie holds: an HMAC of a fixed label under the token (hex)."""
    return hmac.new(token, _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def _cookie(header: str | None) -> bytes | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value.encode("utf-8", "replace") if morsel is not None else None


def check_access(
    *,
    token: bytes | None,
    listen_host: str,
    path: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
) -> Access:
    """Decide one request to the page or a file. ``headers`` have lower-cased names.

    ``path`` is the request path as routed (``/`` or ``/files/<id>``), so a
    redirect can only go back to one of this server's own pages.
    """
    if token is None:
        if not is_loopback(listen_host):
            return Access(Verdict.CLOSED, "not_loopback")
        if not host_is_loopback(headers.get("host")):
            return Access(Verdict.CLOSED, "foreign_host")  # DNS rebinding
        return Access(Verdict.ALLOW)
    if "token" in query:
        if not same_secret(query_token(query), token):
            return Access(Verdict.UNAUTHORIZED, "bad_token")
        rest = [(k, v) for k, values in query.items() if k != "token" for v in values]
        location = path + ("?" + urlencode(rest) if rest else "")
        cookie = f"{COOKIE_NAME}={cookie_value(token)}; HttpOnly; SameSite=Strict; Path=/"
        return Access(Verdict.REDIRECT, location=location, set_cookie=cookie)
    offered = bearer(headers.get("authorization"))
    if offered is not None:
        if same_secret(offered, token):
            return Access(Verdict.ALLOW)
        return Access(Verdict.UNAUTHORIZED, "bad_token")
    from_cookie = _cookie(headers.get("cookie"))
    if from_cookie is not None:
        if same_secret(from_cookie, cookie_value(token).encode()):
            return Access(Verdict.ALLOW)
        return Access(Verdict.UNAUTHORIZED, "bad_cookie")
    return Access(Verdict.UNAUTHORIZED, "missing")
