"""What a simulator route handler sees and returns: Request, Response, Headers.

Every other simulator module speaks in these types (the server parses into a
:class:`Request`, handlers and fault injectors build :class:`Response` objects, the
CDN answers with them), so they live apart from the server that writes them to a
socket. The two default error factories are here because they are the fallback
shape of a :class:`Response` when a provider supplies none of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[["Request"], "Response"]
ErrorFactory = Callable[[int, str, str], "Response"]
"""``(status, error_code, message) -> Response`` in the provider's own error shape."""
BusinessErrorFactory = Callable[[], "Response"]
"""``() -> Response``: the provider's in-band error envelope, answered with HTTP 200."""


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (HTTP header names are case-insensitive)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, str] = {}
        for key, value in items:
            low = key.lower()
            self._items[low] = f"{self._items[low]}, {value}" if low in self._items else value

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, str]
    """First value of each query parameter (blank values kept)."""
    headers: Headers
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    """Named groups of the route regex that matched the path."""

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` if it is not)."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass(slots=True)
class Response:
    """What a handler returns. ``body`` is bytes, or an iterable of chunks with ``length``.

    ``payload`` keeps the JSON object behind a JSON body so the ``wrong_types`` fault can
    re-encode it with mangled types; ``close`` ends the keep-alive connection afterwards.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    length: int | None = None
    payload: Any = None
    close: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.body, bytes | bytearray):
            self.body = bytes(self.body)
            self.length = len(self.body)
        elif self.length is None:
            raise ValueError("a streamed Response needs a known length")

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A JSON response (UTF-8, compact enough, with the payload kept for faults)."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return cls(status=status, headers=hdrs, body=body, payload=payload)

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A text response (HTML error pages, XML CDN errors, plain messages)."""
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        return cls(status=status, headers=hdrs, body=text.encode("utf-8"))


def default_error(status: int, code: str, message: str) -> Response:
    """Generic JSON error shape, used when a simulator does not supply its own."""
    return Response.json({"error": {"code": code, "message": message}}, status=status)


def default_business_error() -> Response:
    """Generic in-band error (HTTP 200), used when a simulator does not supply its own.

    Many APIs report failures inside a successful HTTP answer; a client that only
    looks at the status code would take this for data.
    """
    return Response.json(
        {"success": False, "error": {"code": "BUSINESS_ERROR", "message": "request failed"}}
    )
