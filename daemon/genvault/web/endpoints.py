"""The status page's endpoints: ``GET /`` and ``GET /files/{asset_id}``, with the access
rule in front of both.

:class:`StatusPage` is the room :mod:`genvault.server` routes these two paths to: it
applies :func:`genvault.web.auth.check_access` (the token, the one-time ``?token=``
that becomes a cookie, or loopback only), reads the status document and the recent
archives, has :mod:`.page` render them, and streams archived images found by
:mod:`.files`. What it refuses it counts and logs with the reason only (the query
may hold a token), and every answer carries :data:`PAGE_HEADERS` or the files' own.

The page's renderer (Jinja2) and the status queries are imported on first use: a
daemon whose page nobody opens, and ``run --once``, never load them.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from genvault.errors import StorageError
from genvault.httpd.request import Desk, Refused, Request
from genvault.logs import get_logger
from genvault.web.auth import Verdict, check_access
from genvault.web.files import FILE_HEADERS, find_image, iter_chunks

log = get_logger("genvault.server")

PAGE_CLOSED = (
    "Without a server token the status page is only served on a loopback address. "
    "Set server.token_env or server.token_file to open it on this address."
)
PAGE_FOREIGN_HOST = (
    "Without a server token the status page only answers requests whose Host header "
    "names this machine (localhost, 127.0.0.1 or [::1]): another name may be a web "
    "page pointing its domain here (DNS rebinding). Open it as http://localhost:PORT/, "
    "or set server.token_env or server.token_file."
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""Sent with the page and its refusals: no script, no foreign content, no framing."""


class StatusPage:
    """``/`` and ``/files/{id}`` for :class:`genvault.server.ApiServer`; ``token`` is the
    server token (None: loopback only)."""

    def __init__(self, desk: Desk, token: bytes | None) -> None:
        self.desk = desk
        self.token = token

    def access(self, req: Request, kind: str) -> bool:
        """Apply :func:`genvault.web.auth.check_access`; True when the request may go on.

        Otherwise the answer (303 with the cookie, 401, 403) has been sent: an HTML
        page for ``/``, a line of text for files. Refusals are counted and logged
        with the reason only (the query may hold a token).
        """
        from genvault.web.page import render_denied

        access = check_access(
            token=self.token,
            listen_host=self.desk.settings.host_port[0],
            path=req.route_path,
            query=req.query,
            headers=req.header_map,
        )
        if access.verdict is Verdict.ALLOW:
            return True
        if access.verdict is Verdict.REDIRECT:
            self.desk.count(f"{kind}.token_redirect")
            req.send_body(
                HTTPStatus.SEE_OTHER,
                "text/plain; charset=utf-8",
                b"",
                {"Location": access.location, "Set-Cookie": access.set_cookie, **PAGE_HEADERS},
            )
            return False
        self.desk.count(f"{kind}.refused.{access.reason}")
        log.warning(f"{kind}.refused", reason=access.reason)
        if access.verdict is Verdict.CLOSED:
            status = HTTPStatus.FORBIDDEN
            title = "Status page closed"
            message = PAGE_FOREIGN_HOST if access.reason == "foreign_host" else PAGE_CLOSED
            headers = dict(PAGE_HEADERS)
        else:
            status = HTTPStatus.UNAUTHORIZED
            title = "Token required"
            message = (
                "That token is not right."
                if access.reason in ("bad_token", "bad_cookie")
                else "This page needs the server token (server.token_env or token_file)."
            )
            headers = {**PAGE_HEADERS, "WWW-Authenticate": 'Bearer realm="genvault"'}
        if kind == "page":
            body = render_denied(title, message, ask_token=status == HTTPStatus.UNAUTHORIZED)
            req.send_body(status, "text/html; charset=utf-8", body, headers)
        else:
            req.send_body(status, "text/plain; charset=utf-8", f"{title}\n".encode(), headers)
        return False

    def status_page(self, req: Request) -> None:
        """``GET /``: the read-only status page (see :mod:`genvault.web`).

        The figures are :func:`genvault.status.read_status`, the very document
        ``genvault status`` renders; ``?q=`` (and ``&provider=``) runs the search box.
        """
        from genvault.status import at_risk_window, read_status
        from genvault.web.page import (
            MAX_HITS,
            MAX_QUERY,
            MAX_THUMBNAILS,
            PageData,
            SearchState,
            render_denied,
            render_page,
        )

        if not self.access(req, "page"):
            return
        rt, query = self.desk.rt, req.query
        text = " ".join((query.get("q") or [""])[0].split())[:MAX_QUERY]
        providers = tuple(sorted({a.provider for a in rt.settings.accounts}))
        wanted = (query.get("provider") or [""])[0]
        provider = wanted if wanted in providers else None
        window = at_risk_window(rt.settings)
        try:
            doc = read_status(rt.store, rt.settings, window)
            archives = rt.store.recent_archives(MAX_THUMBNAILS)
        except Exception as exc:
            log.error("page.store_failed", error=type(exc).__name__)
            body = render_denied("Database unavailable", "Try again in a moment.", ask_token=False)
            req.send_body(
                HTTPStatus.SERVICE_UNAVAILABLE, "text/html; charset=utf-8", body, PAGE_HEADERS
            )
            return
        search = SearchState(provider=provider, providers=providers)
        if text:
            try:
                hits = rt.store.search(text, provider=provider, limit=MAX_HITS)
                search = SearchState(text, provider, providers, hits)
            except Exception as exc:
                log.warning("page.search_failed", error=type(exc).__name__)
                search = SearchState(text, provider, providers, [], "The search failed.")
        data = PageData(
            doc=doc,
            archives=archives,
            at_risk_hours=window.total_seconds() / 3600,
            search=search,
            locate=rt.storage.location,
        )
        self.desk.count("page.served")
        req.send_body(HTTPStatus.OK, "text/html; charset=utf-8", render_page(data), PAGE_HEADERS)

    def archived_file(self, req: Request, asset_id: str) -> None:
        """``GET /files/{asset_id}``: an archived image, streamed (:mod:`genvault.web.files`)."""
        if not self.access(req, "files"):
            return
        storage = self.desk.rt.storage
        not_found = Refused(HTTPStatus.NOT_FOUND, "no archived image with that id", "not_found")
        image = find_image(self.desk.rt.store, int(asset_id))
        if image is None:
            raise not_found
        try:
            size = image.size
            if size is None:
                stat = storage.stat(image.key)
                if stat is None:
                    raise not_found
                size = stat.size
            stream = storage.open(image.key) if req.command != "HEAD" else None
        except StorageError as exc:
            log.warning("files.storage_failed", asset_id=int(asset_id), error=type(exc).__name__)
            raise Refused(
                HTTPStatus.SERVICE_UNAVAILABLE, "archived file unavailable", "storage"
            ) from None
        self.desk.count("files.served")
        if stream is None:
            req.send_stream(HTTPStatus.OK, image.content_type, size, (), FILE_HEADERS)
            return
        req.send_stream(
            HTTPStatus.OK, image.content_type, size, _file_body(stream, size), FILE_HEADERS
        )


def _file_body(stream: Any, size: int) -> Iterator[bytes]:
    """The chunks of an archived file for waitress to send; the stream is closed at the end.

    A failure after the headers went out (the object shorter than recorded, storage
    gone) can only end the body early: waitress then closes the connection. A client
    that leaves mid-file closes this generator (waitress calls ``close``).
    """
    with stream:
        try:
            yield from iter_chunks(stream, size)
        except Exception as exc:  # headers are out: no error answer can follow them
            log.warning("http.response_cut", error=type(exc).__name__)
