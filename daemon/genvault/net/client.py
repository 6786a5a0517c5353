"""The one place an httpx client is made, on a transport that vets every connection.

:func:`build_client` sets timeouts, pool size and redirects, and hooks every
request (each redirect hop included) to the account's :class:`NetworkPolicy` and
:class:`CredentialScope`. Its transport resolves each host here, vets every
address with the policy and connects the socket to the vetted address, so DNS
rebinding cannot slip past: one transport seam, as httpx's own ``_transports``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

import httpcore
import httpx

from genvault import __version__
from genvault.config import NetworkSettings
from genvault.net.policy import POLICY_EXTENSION, NetworkPolicy, strip_foreign_credentials

HttpClient = httpx.Client
"""The client type other modules may hold (they never call httpx themselves)."""

USER_AGENT = f"genvault/{__version__} (+https://github.com/genvault/genvault)"


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


class _GuardedPool(httpcore.ConnectionPool):
    """httpcore's pool, with its TLS context made on the first ``https`` connection.

    Loading the system's CA certificates costs ~18 ms of CPU per context, and a
    ``run --once`` with nothing new (or any run against plain-HTTP endpoints) never
    opens a TLS connection: it need not pay for one. The context is the same
    ``ssl.create_default_context()`` as ever, made under the pool's lock (httpcore
    calls :meth:`create_connection` holding it) and shared by every later connection.
    """

    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        if origin.scheme in (b"https", b"wss") and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return super().create_connection(origin)


_UNUSED_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
"""What httpx's own pool (replaced at once, never used) is built with, so that httpx does
not load a CA bundle for it. It verifies certificates against no CA at all, so even if
it were ever used it could only refuse connections, never trust one."""


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool rebuilt on the guarded backend."""

    def __init__(self, policy: NetworkPolicy, limits: httpx.Limits) -> None:
        super().__init__(verify=_UNUSED_TLS, limits=limits, trust_env=False)
        self._pool = _GuardedPool(
            ssl_context=None,  # made on the first https connection (_GuardedPool)
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
        event_hooks={"request": [_check_hop, strip_foreign_credentials]},
        trust_env=False,
    )


__all__ = ["USER_AGENT", "HttpClient", "build_client"]
