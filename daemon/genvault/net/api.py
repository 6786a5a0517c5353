"""JSON calls to a provider account's API, with genvault's error classes and retries.

:class:`ApiClient` bounds each answer (bytes, nesting depth, number of values,
a deadline on the whole request), keeps credentials to the account's
``base_url`` origin (:class:`~genvault.net.policy.CredentialScope`), and retries
transient failures with capped exponential backoff and jitter that honour
``Retry-After``. Each account's client carries a
:class:`~genvault.net.throttle.ProviderGuard`: a request budget that slows down
after 429s and a circuit breaker that stops calling a provider that is down.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import structlog

from genvault.config import NetworkSettings
from genvault.errors import (
    AuthError,
    DeadlineExceededError,
    MalformedResponseError,
    NotFoundError,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.net.errors import Fault, clip, map_httpx_errors, short_error
from genvault.net.policy import (
    CREDENTIALS_EXTENSION,
    CredentialScope,
    NetworkPolicy,
    origin_of,
    policy_extensions,
    strip_foreign_credentials,
)
from genvault.net.throttle import Admission, CallOutcome, ProviderGuard

log = structlog.get_logger("genvault.http")


# --------------------------------------------------------------------------- retry timing


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Capped exponential backoff with full jitter (attempt counts from 0)."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 32))))


# --------------------------------------------------------------------------- provider API


@dataclass
class ApiClient:
    """JSON requests to one provider account's API.

    Auth headers are attached per request and never appear in errors or logs;
    errors carry the path, not the full URL, so query strings stay out too.

    Every call asks :attr:`guard` first: an open circuit or a long Retry-After
    refuses it without a request; every HTTP attempt waits for its slot in the
    request budget. One client serves the job threads and the archive workers
    (URL refreshes) of its account, so the guard is thread-safe.
    """

    http: httpx.Client
    base_url: str
    auth_headers: Mapping[str, str]
    settings: NetworkSettings
    policy: NetworkPolicy
    account: str = ""
    sleep: Callable[[float], None] = time.sleep
    on_response: Callable[[int], None] | None = None
    """Called with each HTTP status (or 0 for a transport error); feeds metrics."""
    on_retry: Callable[[], None] | None = None
    """Called before each repeated attempt (after a transient failure); feeds metrics."""
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0})
    guard: ProviderGuard = field(init=False, repr=False)
    """Budget and breaker of this account, built from ``settings``; replace it to inject clocks."""

    credentials: CredentialScope = field(init=False, repr=False)
    """Where :attr:`auth_headers` may go: the origin of :attr:`base_url`, on every hop."""

    def __post_init__(self) -> None:
        self.guard = ProviderGuard(self.settings, name=self.account, sleep=self.sleep)
        self.credentials = CredentialScope.of(self.base_url, self.auth_headers)
        hooks = self.http.event_hooks if isinstance(self.http, httpx.Client) else None
        if hooks is not None and strip_foreign_credentials not in hooks["request"]:
            # A client not made by build_client: the key must not leak through it either.
            self.http.event_hooks = {
                **hooks,
                "request": [*hooks["request"], strip_foreign_credentials],
            }

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return the decoded JSON, retrying transient failures."""
        return self.request_json("GET", path, params=params)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """One call: guard checks, then attempts with retries; the breaker hears the verdict.

        Only a call that still fails transiently after its retries counts against the
        provider; a 4xx, a business answer or a 429 proves it is up. A half-open
        circuit's trial call gets no retries: it is a probe, not a siege.
        """
        guard = self.guard
        paused = guard.budget.paused_for()
        if paused > 0:
            raise RateLimitedError(
                f"{path}: rate limited; the provider asked for a pause ({paused:.0f} s left)",
                retry_after=paused,
            )
        admission = guard.breaker.admit()  # CircuitOpenError: no request at all
        retries = 0 if admission is Admission.TRIAL else self.settings.api_retries
        outcome = CallOutcome.NO_VERDICT
        error: str | None = None
        try:
            value = self._with_retries(method, path, params, json_body, retries)
            outcome = CallOutcome.OK
            return value
        except RateLimitedError:
            outcome = CallOutcome.RATE_LIMITED
            raise
        except TransientProviderError as exc:
            outcome = CallOutcome.DOWN
            error = short_error(exc)
            raise
        except ProviderError:
            outcome = CallOutcome.ANSWERED
            raise
        finally:
            guard.breaker.record(admission, outcome, error)

    def _with_retries(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        retries: int,
    ) -> Any:
        attempt = 0
        while True:
            try:
                return self._attempt(method, path, params, json_body)
            except TransientProviderError as exc:
                if attempt >= retries:
                    raise
                delay = backoff_delay(attempt, cap=self.settings.backoff_cap_seconds)
                if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                    if exc.retry_after > self.settings.backoff_cap_seconds:
                        raise  # a long pause: end this pass, the next run resumes
                    delay = exc.retry_after
                attempt += 1
                self.stats["retries"] += 1
                if self.on_retry is not None:
                    self.on_retry()
                log.debug(
                    "api.retry", path=path, attempt=attempt, delay=round(delay, 2), error=str(exc)
                )
                self.sleep(delay)

    def _attempt(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any
    ) -> Any:
        """One HTTP exchange in its budget slot; its answer steers the budget."""
        budget = self.guard.budget
        budget.acquire()
        try:
            value = self._once(method, path, params, json_body)
        except RateLimitedError as exc:
            budget.on_rate_limited(exc.retry_after, patience=self.settings.backoff_cap_seconds)
            raise
        budget.on_success()
        return value

    def _once(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any
    ) -> Any:
        url = self.url(path)
        with map_httpx_errors(partial(self._failure, path)):
            self.policy.check_url(url)
            self.stats["requests"] += 1
            deadline = self.settings.api_deadline_seconds
            limit = Deadline(time.monotonic() + deadline, deadline, path)
            with self.http.stream(
                method,
                url,
                params=params,
                json=json_body,
                headers=dict(self.auth_headers),
                extensions={
                    **policy_extensions(self.policy),
                    CREDENTIALS_EXTENSION: self.credentials,
                },
                timeout=_capped_timeout(self.http.timeout, deadline),
            ) as resp:
                self._report(resp.status_code)
                self._check_foreign_refusal(resp, path)
                limit.check()
                body = _read_capped(resp, self.settings.max_json_bytes, path, limit)
                return _decode(resp, body, path)

    def _failure(self, path: str, fault: Fault, exc: Exception) -> ProviderError | None:
        """What a failed exchange becomes (the table in :mod:`genvault.net`); a failure
        on the wire is reported as status 0."""
        if fault.transport:
            self._report(0)
        name = type(exc).__name__
        match fault:
            case Fault.REFUSED:  # the URL, a redirect hop, or an address seen at connect time
                return PermanentProviderError(f"{path}: refused by the network policy: {exc}")
            case Fault.TIMED_OUT:
                return TransientProviderError(f"{path}: timed out ({name})")
            case Fault.MALFORMED_REDIRECT:
                return PermanentProviderError(f"{path}: {clip(str(exc), 200)}")
            case Fault.BROKEN | Fault.UNSUPPORTED_SCHEME:
                return TransientProviderError(f"{path}: {name}: {exc}")
            case Fault.MALFORMED_URL:  # check_url passed, so only a request-building quirk
                return PermanentProviderError(f"{path}: malformed URL: {clip(str(exc))}")
            case Fault.TOO_MANY_REDIRECTS:
                return None

    def _check_foreign_refusal(self, resp: httpx.Response, path: str) -> None:
        """A 401/403 from another origin answers a request that carried no key.

        Read as an :class:`AuthError` it would say "the provider refused the key"
        and stop the account; the truth is a redirect away from ``base_url``.
        """
        if resp.status_code not in (401, 403):
            return
        where = origin_of(resp.request.url)
        if where == self.credentials.origin:
            return
        raise PermanentProviderError(
            f"{path}: redirected to another origin ({where[0]}://{where[1]}:{where[2]}), "
            f"which answered HTTP {resp.status_code} to a request sent without credentials "
            "(keys go only to base_url's origin); if the provider moved, update base_url",
            status_code=resp.status_code,
        )

    def _report(self, status: int) -> None:
        if self.on_response is not None:
            self.on_response(status)


@dataclass(frozen=True, slots=True)
class Deadline:
    """The whole-request limit of one attempt (``network.api_deadline_seconds``).

    Checked as bytes arrive: a body dripped a byte at a time resets httpx's read
    timeout with every byte, so only a limit on the total ends it. A read that
    stalls completely is ended by the read timeout, which :func:`_capped_timeout`
    keeps within the deadline, so one attempt lasts at most about twice the deadline.
    """

    at: float
    """time.monotonic() value past which the attempt is abandoned."""
    seconds: float
    path: str

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise DeadlineExceededError(
                f"{self.path}: no complete answer within {self.seconds:g} s (slow body)"
            )


def _capped_timeout(timeout: httpx.Timeout, deadline: float) -> httpx.Timeout:
    """The client's timeouts with no single read allowed to outlast the deadline."""
    read = deadline if timeout.read is None else min(timeout.read, deadline)
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def _read_capped(
    resp: httpx.Response, cap: int, path: str, deadline: Deadline | None = None
) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise MalformedResponseError(f"{path}: body of {declared} bytes exceeds the cap of {cap}")
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_bytes():
        total += len(chunk)
        if total > cap:
            raise MalformedResponseError(f"{path}: body exceeds the cap of {cap} bytes")
        chunks.append(chunk)
        if deadline is not None:
            deadline.check()
    return b"".join(chunks)


def _error_detail(body: bytes) -> str:
    """A short, safe description of an error body (no secrets are ever in these)."""
    text = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    return text or "(empty body)"


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects an API answer may have. Provider answers
nest under 10 levels; Python's JSON decoder recurses per level and raises
``RecursionError`` (no ``ValueError``) near 1,000, and code walking the result
(sidecars, log scrubbing) recurses too."""
MAX_JSON_VALUES = 1_000_000
"""Most values (array elements, object members and containers) in one answer. The
largest real page (1,000 items of ~60 fields) has ~60,000; a million bounds the
Python objects a 32 MiB body can become (``[{},{},...]`` makes a 64-byte dict of
every 3 bytes)."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
"""A JSON string, escapes included; possessive, and the closing quote optional so an
unterminated string ends the match instead of backtracking: linear on any input."""
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[]{},")))
_TOO_DEEP_RUN = b"[" * (MAX_JSON_DEPTH + 1)


def check_json_shape(body: bytes, path: str, status: int = 200) -> None:
    """Refuse a JSON body nested deeper than :data:`MAX_JSON_DEPTH` or with more than
    :data:`MAX_JSON_VALUES` values, before ``json.loads`` builds (or recurses into) it.

    Works on the body's skeleton: strings removed, then everything but brackets and
    commas, all at C speed. Each pass of ``replace(b"[]", b"")`` removes one level of
    nesting, so at most ``MAX_JSON_DEPTH + 1`` passes decide. A skeleton that does not
    pair up is not JSON at all; that is left to ``json.loads`` to say.
    """
    skeleton = _JSON_STRING.sub(b"", body).translate(_SQUARE, _NOT_STRUCTURE)
    opens = skeleton.count(b"[")
    if skeleton.count(b",") + opens > MAX_JSON_VALUES:
        raise MalformedResponseError(
            f"{path}: JSON with more than {MAX_JSON_VALUES:,} values "
            "(array elements and object members)",
            status_code=status,
        )
    nest = skeleton.replace(b",", b"")
    if len(nest) != 2 * opens:
        return
    for _ in range(MAX_JSON_DEPTH + 1):
        if not nest:
            return
        if _TOO_DEEP_RUN in nest:
            break
        shorter = nest.replace(b"[]", b"")
        if len(shorter) == len(nest):
            return  # brackets out of order
        nest = shorter
    raise MalformedResponseError(
        f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels", status_code=status
    )


def _decode(resp: httpx.Response, body: bytes, path: str) -> Any:
    status = resp.status_code
    if status == 429:
        raise RateLimitedError(
            f"{path}: 429 rate limited",
            retry_after=parse_retry_after(resp.headers.get("retry-after")),
        )
    if status >= 500:
        raise TransientProviderError(
            f"{path}: HTTP {status}: {_error_detail(body)}", status_code=status
        )
    if status in (401, 403):
        raise AuthError(f"{path}: HTTP {status}: {_error_detail(body)}", status_code=status)
    if status == 404:
        raise NotFoundError(f"{path}: HTTP 404: {_error_detail(body)}", status_code=status)
    if status == 408:
        raise TransientProviderError(f"{path}: HTTP 408", status_code=status)
    if status >= 400:
        raise PermanentProviderError(
            f"{path}: HTTP {status}: {_error_detail(body)}", status_code=status
        )
    check_json_shape(body, path, status)
    try:
        return json.loads(body)
    except RecursionError:  # unbalanced brackets the shape check left to the decoder
        raise MalformedResponseError(
            f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels", status_code=status
        ) from None
    except (ValueError, UnicodeDecodeError):
        ctype = resp.headers.get("content-type", "?")
        raise MalformedResponseError(
            f"{path}: HTTP {status} body is not JSON (content-type {ctype}): {_error_detail(body)}",
            status_code=status,
        ) from None


__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "ApiClient",
    "backoff_delay",
    "check_json_shape",
    "parse_retry_after",
]
