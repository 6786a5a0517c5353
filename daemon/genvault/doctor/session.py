"""One account's probe session: its request budget, its clients and adapters, the
answers' headers.

Every request goes through the production path: an :class:`~genvault.net.api.ApiClient`
on a client from :func:`~genvault.net.client.build_client`, under the account's
network policy (its host allowlist), with the key confined to ``base_url``'s origin.
The checks (:mod:`.account`, :mod:`.listing`, :mod:`.media`, :mod:`.status_call`...)
share one :class:`ProbeSession` so that the budget is the account's, not a check's:
at most :data:`MAX_REQUESTS` requests and none after the time limit, whichever
check asks. A :class:`~genvault.net.probe.ResponseLog` on the API client keeps every
answer's ``Date`` and rate-limit headers for :mod:`.headers`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from genvault.config import AccountSettings, NetworkSettings
from genvault.doctor.findings import AccountReport, Level
from genvault.doctor.options import config_line, with_option
from genvault.errors import ProviderError
from genvault.net.api import ApiClient
from genvault.net.client import HttpClient, build_client
from genvault.net.policy import NetworkPolicy
from genvault.net.probe import ResponseLog
from genvault.providers.base import Provider, ProviderOptions
from genvault.records import Page

MAX_REQUESTS: Final = 30
"""API and media requests per account at most (a healthy account needs about ten)."""
PROBE_SIZE: Final = 2
"""Items per probe page: two tell whether paging is honoured and which item is newer."""
_KEY_MARK: Final = "\x00genvault-doctor-key\x00"


class OutOfBudgetError(Exception):
    """The account's request budget or time limit is used up: the remaining checks skip."""


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float = 60.0
    """Seconds per account; no request starts after it."""
    max_requests: int = MAX_REQUESTS


DEFAULT_LIMITS: Final = Limits()
"""A minute and :data:`MAX_REQUESTS` requests per account."""


def doctor_network(net: NetworkSettings) -> NetworkSettings:
    """The configured network settings, cut short: a probe waits seconds, not minutes."""
    return net.model_copy(
        update={
            "api_retries": min(net.api_retries, 1),
            "backoff_cap_seconds": min(net.backoff_cap_seconds, 2.0),
            "api_deadline_seconds": min(net.api_deadline_seconds, 20.0),
            "connect_timeout": min(net.connect_timeout, 10.0),
            "read_timeout": min(net.read_timeout, 20.0),
        }
    )


def page_ids(page: Page) -> list[str]:
    """The external ids of a page's records, in order (to compare two pages)."""
    return [r.external_id for r in page.records]


class ProbeSession:
    """What the checks of one account share: its settings, budget, clients and report.

    ``cls``, ``options``, ``key`` and the two clients are set by
    :func:`~genvault.doctor.account.configure`; the checks that run after it may
    replace ``options`` with an alternative the server was found to honour.
    """

    def __init__(
        self,
        acc: AccountSettings,
        network: NetworkSettings,
        policy: NetworkPolicy,
        *,
        environ: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.acc = acc
        self.where = f"accounts[{acc.name}]"
        self.network = network
        self.policy = (
            replace(policy, allowed_hosts=frozenset(acc.allowed_hosts))
            if acc.allowed_hosts is not None
            else policy
        )
        self.global_policy = policy
        self.environ = os.environ if environ is None else environ
        self.limits = limits
        self.log = ResponseLog(now)
        self.base_url = acc.base_url or ""
        self.report = AccountReport(acc.name, acc.provider, self.base_url)
        self.requests = 0
        self.deadline = 0.0
        self._http: list[HttpClient] = []
        self.cls: type[Provider]
        self.options: ProviderOptions
        self.size_field: str | None = None
        self.key = ""
        self.api_http: HttpClient
        self.media_http: HttpClient
        self.first: tuple[str, Page | None, ProviderError | None] | None = None
        """The first listing call's stream and answer (a page, or the error it got)."""
        self.status_answer: ProviderError | None = None
        """How the status call for a made-up id answered (None: as if it existed)."""

    # ------------------------------------------------------------------ budget

    def start(self, started: float) -> None:
        self.deadline = started + self.limits.timeout

    def spend(self) -> None:
        """Called before every request: raises :class:`OutOfBudgetError` when none is left."""
        if self.requests >= self.limits.max_requests:
            raise OutOfBudgetError(f"{self.requests} requests made, the most doctor sends")
        if time.monotonic() > self.deadline:
            raise OutOfBudgetError(f"the time limit of {self.limits.timeout:g} s is reached")

    def _count(self, _status: int) -> None:
        self.requests += 1

    # ------------------------------------------------------------------ clients and adapters

    def client(self) -> HttpClient:
        """A client under the global policy, closed by :meth:`close`."""
        client = build_client(self.network, self.global_policy, max_connections=2)
        self._http.append(client)
        return client

    def close(self) -> None:
        for client in self._http:
            client.close()

    def provider(self, options: ProviderOptions, *, size: int | None = None) -> Provider:
        """The adapter with ``options`` (and page size ``size``), sending the key, counted."""
        if size is not None and self.size_field is not None:
            options = with_option(options, **{self.size_field: size})
        api = ApiClient(
            http=self.api_http,
            base_url=self.base_url,
            auth_headers=self.cls.auth_headers(self.key, options),
            settings=self.network,
            policy=self.policy,
            account=self.acc.name,
            on_response=self._count,
        )
        return self.cls(api, options, self.acc.name, api_key=self.key)

    def offline(self, options: ProviderOptions) -> Provider:
        """An adapter for what needs no request (paging descriptions, parsing)."""
        api = ApiClient(
            http=self.api_http,
            base_url=self.base_url,
            auth_headers={},
            settings=self.network,
            policy=self.policy,
            account=self.acc.name,
        )
        return self.cls(api, options, self.acc.name)

    # ------------------------------------------------------------------ words

    def style(self, options: ProviderOptions) -> str:
        """How the key travels, with the key itself masked: ``token: <key>``."""
        headers = self.cls.auth_headers(_KEY_MARK, options)
        parts = [
            f"{n}: {v.replace(_KEY_MARK, '<key>')}" for n, v in headers.items() if _KEY_MARK in v
        ]
        return ", ".join(parts) or "(no key header)"

    def key_source(self) -> tuple[str, str]:
        """(words, config key) of where the API key comes from."""
        if self.acc.api_key_env:
            return f"environment variable {self.acc.api_key_env}", f"{self.where}.api_key_env"
        return f"file {self.acc.api_key_file}", f"{self.where}.api_key_file"

    def line(self, option: str, value: Any) -> str:
        """The config line that sets this account's ``option`` to ``value``."""
        return config_line(self.acc.name, option, value)

    def add_fix(self, check: str, level: Level, message: str, option: str, value: Any) -> None:
        """A finding about this account's ``option``, with the line that sets ``value``."""
        self.report.add(
            check,
            level,
            message,
            key=f"{self.where}.{option}",
            suggest=self.line(option, value),
        )


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_REQUESTS",
    "PROBE_SIZE",
    "Limits",
    "OutOfBudgetError",
    "ProbeSession",
    "doctor_network",
    "page_ids",
]
