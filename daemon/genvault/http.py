"""Everything that speaks HTTP, so the client library (httpx) stays behind one module.

Three parts:

* :class:`NetworkPolicy` and a guarded transport: URLs come from third parties,
  so every *connection* (not just every URL) is checked. Malformed URLs are
  refused outright (:func:`parse_url`). The host is resolved here, each address
  is vetted (globally routable only; loopback, private and carrier-grade NAT
  space open with ``allow_private``), and the socket connects to the vetted
  address. DNS rebinding cannot slip past, and every redirect hop makes a new
  connection through the same check.
* :class:`ApiClient`: JSON calls to a provider API with the error classes of
  :mod:`genvault.errors`, bounded bodies (bytes, nesting depth, number of
  values), a deadline on each whole request, credentials that never leave the
  account's ``base_url`` origin (:class:`CredentialScope`), and retries with
  capped exponential backoff and jitter that honour ``Retry-After``.
  Each account's client carries a :class:`~genvault.net.throttle.ProviderGuard`: a
  request budget that slows down after 429s and a circuit breaker that stops
  calling a provider that is down.

Media downloads live in :mod:`genvault.download`, on a client built here.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx
import structlog

from genvault import __version__
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
    UnsafeURLError,
)
from genvault.logging import scrub
from genvault.net.throttle import Admission, CallOutcome, ProviderGuard

log = structlog.get_logger("genvault.http")

HttpClient = httpx.Client
"""The client type other modules may hold (they never call httpx themselves)."""

USER_AGENT = f"genvault/{__version__} (+https://github.com/genvault/genvault)"

# --------------------------------------------------------------------------- network policy

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4, _V6 = ipaddress.IPv4Network, ipaddress.IPv6Network

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = _V4("0.0.0.0/8")
"""RFC 791 "this network": never a destination (Linux connects 0.0.0.0 to itself);
Python files it under private, so allow_private would otherwise open it."""
_METADATA: tuple[_Net, ...] = (_V4("100.100.100.200/32"), _V6("fd00:ec2::254/128"))
"""Cloud metadata services outside link-local: Alibaba Cloud's (inside carrier-grade NAT
space) and AWS's IPv6 one. 169.254.169.254 is link-local and refused as such."""
_TUNNELS: tuple[_Net, ...] = (_V6("2002::/16"), _V6("2001::/32"), _V4("192.88.99.0/24"))
"""6to4, Teredo and the 6to4 relay anycast: addresses that wrap an arbitrary IPv4
address (2002:7f00:1:: is 127.0.0.1), so their range says nothing about the target.
Python 3.11 calls 6to4 global."""
_SITE_LOCAL = _V6("fec0::/10")
"""Deprecated (RFC 3879) but still routed inside some networks; Python 3.11 calls it global."""
_SHARED = _V4("100.64.0.0/10")
"""RFC 6598 carrier-grade NAT: Tailscale peers, ISP-internal hosts. Not private to
Python, not global either; allow_private opens it like a private range."""
_NOT_GLOBAL: tuple[_Net, ...] = (_V4("192.0.0.0/24"), _V6("3fff::/20"))
"""Ranges Python 3.11's ``is_global`` wrongly admits: IETF protocol assignments
(192.0.0.9 and .10 are anycast services, never a media host) and the IPv6
documentation range of RFC 9637."""
POLICY_EXTENSION = "genvault_policy"
"""Request extension carrying a per-account :class:`NetworkPolicy`; it follows redirects."""
CREDENTIALS_EXTENSION = "genvault_credentials"
"""Request extension carrying a :class:`CredentialScope`; it follows redirects too."""


_NUMBER_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """``url`` parsed, or :class:`UnsafeURLError` ("malformed URL") if no request may use it.

    Beyond what httpx refuses (``InvalidURL``: octal dotted quads, over 64 KB, bad
    IDNA, a broken IPv6 literal; and ``UnicodeError`` from bad punycode), two
    things httpx accepts are refused:

    * a host whose last label is a number but which is not a dotted quad
      (``0x7f.0.0.1``, ``2130706433``, ``127.1``): URL standards read those as an
      IPv4 address, the system resolver turns them into one (127.0.0.1), and no
      CDN names itself that way; the connect-time check would still vet the
      address, but such a host is a disguise, not a name;
    * a port over 65535, which the socket layer wraps (65536 + 80 connects to 80).
    """
    try:
        u = url if isinstance(url, httpx.URL) else httpx.URL(url)
        host, port = u.host, u.port
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError is a ValueError
        raise UnsafeURLError(f"malformed URL: {_clip(str(exc))}") from None
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if ":" not in host and _NUMBER_LABEL.fullmatch(last):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            raise UnsafeURLError(
                f"malformed URL: {_clip(host)!r} is neither a dotted-quad address nor a name"
            ) from None
    if port is not None and not 0 < port <= 65535:
        raise UnsafeURLError(f"malformed URL: port {port} out of range")
    return u


def is_malformed_redirect(exc: httpx.TransportError) -> bool:
    """True when httpx gave up on a redirect because its ``Location`` is no valid URL.

    httpx reports that as a protocol error (``RemoteProtocolError``, transient to
    genvault), though the same redirect will be malformed the next time too.
    """
    return isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith(
        "Invalid URL in location header"
    )


def _clip(text: str, limit: int = 120) -> str:
    """At most ``limit`` characters of ``text``: errors must not quote a 64 KB URL."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _within(ip: _IP, nets: tuple[_Net, ...]) -> bool:
    # Compare like with like: ipaddress does not check versions in ``in``.
    return any(ip.version == net.version and ip in net for net in nets)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Which hosts genvault may connect to."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] | None = None
    """When set, only these host names (and their subdomains) are reachable."""

    def check_url(self, url: str | httpx.URL) -> None:
        """Refuse URLs that are not http(s), malformed, or whose host the allowlist excludes.

        A malformed URL (see :func:`parse_url`) is refused here, as an
        :class:`UnsafeURLError` saying "malformed URL": httpx's own ``InvalidURL``
        is no error class of genvault's, so it escaped as an unexpected exception
        and the file was retried as if the failure might pass.
        """
        u = parse_url(url)
        if u.scheme not in ("http", "https"):
            raise UnsafeURLError(f"refused URL scheme {u.scheme!r}")
        host = u.host.lower().rstrip(".")
        if not host:
            raise UnsafeURLError("refused URL without a host")
        if self.allowed_hosts is not None and not any(
            host == h or host.endswith("." + h) for h in self.allowed_hosts
        ):
            raise UnsafeURLError(f"host {host!r} is not in the allowlist")
        with contextlib.suppress(ValueError):
            self.check_address(ipaddress.ip_address(host.strip("[]")), host)

    def check_address(self, ip: _IP, host: str) -> None:
        """Refuse an address a third-party URL must never reach.

        The rule is "globally routable only", with explicit ranges where Python's
        ``is_global`` is wrong (see the module constants). ``allow_private`` opens
        loopback, private and carrier-grade NAT space for the simulators; metadata
        services, link-local, tunnels and reserved space stay closed regardless.
        """
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        # Reserved before private: Python also counts 0.0.0.0/8, 240/4 and broadcast as
        # "private", and allow_private must never open those (::1 is loopback, though
        # IPv6 files it under the reserved ::/8).
        reserved = (
            ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
            or ip == _BROADCAST
            or _within(ip, (_THIS_NETWORK,))
        )
        if reserved and not ip.is_loopback:
            raise UnsafeURLError(f"refused reserved address {ip} for host {host!r}")
        # Link-local is never allowed: 169.254.169.254 and fd00:ec2::254 are where
        # cloud metadata (and its credentials) lives; no media is served from there.
        if ip.is_link_local:
            raise UnsafeURLError(f"refused link-local address {ip} for host {host!r}")
        if _within(ip, _METADATA):
            raise UnsafeURLError(f"refused cloud metadata address {ip} for host {host!r}")
        if _within(ip, _TUNNELS):
            raise UnsafeURLError(f"refused 6to4/Teredo tunnel address {ip} for host {host!r}")
        if _within(ip, (_SITE_LOCAL,)):
            raise UnsafeURLError(f"refused site-local address {ip} for host {host!r}")
        if ip.is_global and not _within(ip, _NOT_GLOBAL):
            return
        if _within(ip, (_SHARED,)):
            if self.allow_private:
                return
            raise UnsafeURLError(
                f"refused shared (carrier-grade NAT) address {ip} for host {host!r}"
            )
        if ip.is_loopback or ip.is_private:
            if self.allow_private:
                return
            raise UnsafeURLError(f"refused private/loopback address {ip} for host {host!r}")
        raise UnsafeURLError(f"refused non-global address {ip} for host {host!r}")


_DEFAULT_PORTS = {"http": 80, "https": 443}
_NOT_SECRET = frozenset({"accept", "content-type", "user-agent"})


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    scheme = url.scheme.lower()
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return scheme, url.host.lower().rstrip("."), port


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """The one origin an account's credential headers may be sent to.

    httpx copies a request's headers onto each redirect and removes only
    ``Authorization`` when the origin changes, so ``x-api-key`` (GeminiGen, Akool)
    and ``token`` (CrowdComputed) went to whatever host a redirect named, plain
    http included. The client's request hook calls :meth:`strip` before every hop.
    """

    origin: tuple[str, str, int]
    headers: frozenset[str]
    """Lower-case names of the headers that carry credentials."""

    @classmethod
    def of(cls, base_url: str, auth_headers: Mapping[str, str]) -> CredentialScope:
        names = frozenset(n.lower() for n in auth_headers) - _NOT_SECRET
        return cls(origin_of(httpx.URL(base_url)), names | {"authorization"})

    def strip(self, request: httpx.Request) -> None:
        """Remove the credential headers from ``request`` unless it goes to the origin.

        Once removed they stay removed for the hops after it (each redirect copies
        the previous request's headers), back at the origin included.
        """
        if origin_of(request.url) != self.origin:
            for name in self.headers:
                request.headers.pop(name, None)


def _strip_foreign_credentials(request: httpx.Request) -> None:
    scope = request.extensions.get(CREDENTIALS_EXTENSION)
    if scope is not None:
        scope.strip(request)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and vets every address before the socket connects."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        last: Exception | None = None
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0])
            self._policy.check_address(ip, host)  # raises UnsafeURLError, never connects
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise httpcore.ConnectError(f"cannot connect to {host!r}: {last}")


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool rebuilt on the guarded backend."""

    def __init__(self, policy: NetworkPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


def build_client(
    settings: NetworkSettings,
    policy: NetworkPolicy,
    *,
    max_connections: int = 32,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one place an httpx client is made: timeouts, pool size, redirects, the guard."""

    def _check_hop(request: httpx.Request) -> None:
        # httpx copies extensions onto every redirect request, so an account's
        # allowlist applies to each hop, not just the first URL.
        hop_policy = request.extensions.get(POLICY_EXTENSION, policy)
        hop_policy.check_url(request.url)

    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.Client(
        transport=transport or _GuardedTransport(policy, limits),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.read_timeout,
        ),
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": USER_AGENT},
        event_hooks={"request": [_check_hop, _strip_foreign_credentials]},
        trust_env=False,
    )


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


def policy_extensions(policy: NetworkPolicy) -> dict[str, Any]:
    """``extensions=`` for a request that must obey ``policy`` on every hop."""
    return {POLICY_EXTENSION: policy}


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
        if hooks is not None and _strip_foreign_credentials not in hooks["request"]:
            # A client not made by build_client: the key must not leak through it either.
            self.http.event_hooks = {
                **hooks,
                "request": [*hooks["request"], _strip_foreign_credentials],
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
        try:
            self.policy.check_url(url)
        except UnsafeURLError as exc:
            raise PermanentProviderError(f"{path}: refused by the network policy: {exc}") from None
        self.stats["requests"] += 1
        deadline = self.settings.api_deadline_seconds
        limit = Deadline(time.monotonic() + deadline, deadline, path)
        try:
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
        except UnsafeURLError as exc:  # a redirect hop, or an address seen at connect time
            raise PermanentProviderError(f"{path}: refused by the network policy: {exc}") from None
        except httpx.TimeoutException as exc:
            self._report(0)
            raise TransientProviderError(f"{path}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            self._report(0)
            if is_malformed_redirect(exc):
                raise PermanentProviderError(f"{path}: {_clip(str(exc), 200)}") from None
            raise TransientProviderError(f"{path}: {type(exc).__name__}: {exc}") from None
        except httpx.InvalidURL as exc:  # check_url passed, so only a request-building quirk
            raise PermanentProviderError(f"{path}: malformed URL: {_clip(str(exc))}") from None

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


_URL_RE = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of ``exc`` fit to store and show: URLs and secrets masked.

    API errors name the path, never the full URL, but a transport error may quote
    an address and an error body may echo anything; ``status`` prints this, so it
    is scrubbed of registered secrets and of anything that looks like a URL.
    """
    text = " ".join(_URL_RE.sub("<url>", scrub(f"{type(exc).__name__}: {exc}")).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    "ApiClient",
    "HttpClient",
    "NetworkPolicy",
    "ProviderError",
    "backoff_delay",
    "build_client",
    "parse_retry_after",
    "policy_extensions",
    "short_error",
]
