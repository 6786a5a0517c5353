"""One request as every endpoint of the daemon sees it, and the one answer it gives.

:class:`Request` is built from the WSGI environ (waitress has already read the
whole request, within the deadline and the size limits of :mod:`.transport`) and
collects the response: status, headers, and a body that is either whole bytes or a
stream of chunks (archived files are never held whole). :class:`Refused` ends a
request with a JSON error from anywhere in a handler. :class:`Desk` is what an
endpoint room may ask of the server around it: the runtime, the settings, and the
counters and refusal log that every room shares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

from genvault.httpd.credentials import bearer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from genvault.config import ServerSettings
    from genvault.runtime import Runtime


class Refused(Exception):
    """Ends a request with a JSON error; ``reason`` is the counter and log label."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = dict(headers or {})


class Desk(Protocol):
    """What an endpoint room uses of :class:`genvault.server.ApiServer`."""

    rt: Runtime
    settings: ServerSettings

    @property
    def counters(self) -> dict[str, int]: ...

    def count(self, key: str, n: int = 1) -> None: ...

    def refuse(
        self,
        kind: str,
        account: str | None,
        status: HTTPStatus,
        message: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Refused:
        """Count and log a refusal (account and reason only), return it to be raised."""
        ...


def json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


class Request:
    """One request as the handlers see it (built from the WSGI environ), and the one
    response they give (``send_body``, ``send_stream``, ``send_json``)."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.command = str(environ.get("REQUEST_METHOD", "GET"))
        query = str(environ.get("QUERY_STRING") or "")
        # The path as sent (percent-escapes intact), as routes and redirects expect it.
        self.path = str(environ.get("REQUEST_URI") or "") or (
            str(environ.get("PATH_INFO") or "/") + (f"?{query}" if query else "")
        )
        self.header_map: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                self.header_map[key[5:].replace("_", "-").lower()] = str(value)
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                self.header_map[key.replace("_", "-").lower()] = str(value)
        self.status = HTTPStatus.INTERNAL_SERVER_ERROR
        self.headers: list[tuple[str, str]] = []
        self.body: Iterable[bytes] = ()

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    @property
    def route_path(self) -> str:
        """The path without the query, as routes match it."""
        return urlsplit(self.path).path

    def bearer(self) -> bytes | None:
        """The token of an ``Authorization: Bearer`` header (:mod:`.credentials`)."""
        return bearer(self.header_map.get("authorization"))

    def check_length(self, limit: int) -> int:
        """Validate the body size the request announced (411/400/413).

        waitress has already refused bodies over the limit and unparsable lengths, and
        turned a chunked body into a counted one; this is what a handler relies on.
        """
        raw = self.header_map.get("content-length")
        if raw is None:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required", "no_length")
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()):
            raise Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length", "bad_length")
        length = int(raw)
        if length > limit:
            raise Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body larger than {limit} bytes",
                "too_large",
            )
        return length

    def read_body(self, length: int) -> bytes:
        """The body, which waitress received whole (within the deadline) before calling us."""
        data = cast(Any, self.environ["wsgi.input"]).read(length)
        if len(data) != length:
            raise Refused(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length", "short")
        return bytes(data)

    def send_json(
        self,
        status: HTTPStatus,
        payload: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_body(status, "application/json", json_body(payload), headers)

    def send_body(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A whole response; ``Cache-Control: no-store`` unless ``headers`` say otherwise."""
        self._head(status, content_type, len(body), headers)
        self.body = [body] if self.command != "HEAD" else []

    def send_stream(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        chunks: Iterable[bytes],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """A response whose ``length`` bytes come from ``chunks``, written as they come.

        For files: nothing is held whole. If ``chunks`` fails or runs short after the
        headers went out, the body simply ends: waitress sees fewer bytes than the
        ``Content-Length`` and closes the connection, so the client sees a truncated
        body instead of waiting for bytes that never come.
        """
        self._head(status, content_type, length, headers)
        self.body = chunks if self.command != "HEAD" else []

    def _head(
        self,
        status: HTTPStatus,
        content_type: str,
        length: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        extra = dict(headers or {})
        self.status = status
        self.headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", extra.pop("Cache-Control", "no-store")),
            *extra.items(),
        ]
