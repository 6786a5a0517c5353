"""One account's probes: a handful of read-only GETs that say what is wrong, and what to set.

Every request goes through the production path: an :class:`~genvault.net.api.ApiClient`
on a client from :func:`~genvault.net.client.build_client`, under the account's
network policy (its host allowlist), with the key confined to ``base_url``'s origin.
Media is probed without the key, one byte at a time. Only GETs are sent, at most
:data:`MAX_REQUESTS` per account and none after its time limit; pages are small
(:data:`PROBE_SIZE` items) but for one at the configured size, which shows the cap.

The checks are generic: they use the adapter's own ``auth_headers``, ``paging``,
``fetch_page``, ``fetch`` and ``parse``, and the ``Literal`` alternatives of its
options (:mod:`genvault.doctor.options`). The one per-provider fact is
:attr:`~genvault.providers.base.Provider.doctor_probe_id`, the made-up id an API
without a listing is asked about.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from genvault.config import AccountSettings, NetworkSettings, read_secret
from genvault.doctor.findings import AccountReport, Level
from genvault.doctor.options import (
    AUTH_WORD,
    PAGING_WORD,
    alternatives,
    config_line,
    other_literal_alternatives,
    size_option,
    toml_value,
    with_option,
)
from genvault.errors import (
    AuthError,
    BusinessError,
    ConfigError,
    MalformedResponseError,
    NotFoundError,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.logging import register_secret
from genvault.net.api import ApiClient
from genvault.net.client import HttpClient, build_client
from genvault.net.errors import short_error
from genvault.net.policy import NetworkPolicy
from genvault.net.probe import RangeAnswer, ResponseLog, range_probe
from genvault.providers.base import Provider, ProviderOptions
from genvault.providers.registry import PROVIDERS, provider_class, validate_options
from genvault.records import GenerationRecord, GenerationStatus, MediaRole, Page
from genvault.walk import OrderCheck

MAX_REQUESTS: Final = 30
"""API and media requests per account at most (a healthy account needs about ten)."""
PROBE_SIZE: Final = 2
"""Items per probe page: two tell whether paging is honoured and which item is newer."""
MAX_STREAMS: Final = 4
"""History streams tried for one with enough items to sample (CrowdComputed workflows)."""
DETAIL_SAMPLES: Final = 3
"""Finished generations whose detail is compared with their listing entry."""
SKEW_WARN_SECONDS: Final = 30.0
SKEW_FAIL_SECONDS: Final = 300.0
"""Clock skew past which deadlines, signed-URL expiries and webhook ages are judged wrong."""
CONTROL_PATH: Final = "genvault-doctor-no-such-endpoint"
"""Asked for when a status call answers HTTP 404: a path no API has, to tell "no such
task" from "no such endpoint" (a wrong ``base_url`` 404s on both alike)."""
_KEY_MARK: Final = "\x00genvault-doctor-key\x00"


class OutOfBudgetError(Exception):
    """The account's request budget or time limit is used up: the remaining checks skip."""


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float = 60.0
    """Seconds per account; no request starts after it."""
    max_requests: int = MAX_REQUESTS


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


def _ids(page: Page) -> list[str]:
    return [r.external_id for r in page.records]


def _bare(url: str) -> str:
    """A URL without its query: signed URLs are re-signed on every read."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _strings(value: Any, out: set[str], budget: list[int]) -> None:
    """Every string in a JSON value (bounded: a payload is walked at most 20,000 steps)."""
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out, budget)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, budget)


def relative_source(raw: Any, url: str) -> str | None:
    """The relative string of ``raw`` that ``url`` was resolved from; None when the
    payload names ``url`` itself (or nothing that explains it)."""
    strings: set[str] = set()
    _strings(raw, strings, [20_000])
    if url in strings or _bare(url) in strings:
        return None
    for s in sorted(strings, key=len, reverse=True):
        if len(s) < 3 or s.lower().startswith(("http://", "https://", "//")):
            continue
        if url.endswith(s) or _bare(url).endswith(s):
            return s
    return None


def _detail_text(exc: Exception) -> str:
    """An HTTP error's body as :class:`ApiClient` quotes it, paths masked, to compare two."""
    text = str(exc).split(": HTTP ", 1)[-1]
    return re.sub(r"/[^\s\"'<>]*", "<path>", text)


class AccountDoctor:
    """Probes one account and fills an :class:`AccountReport`."""

    def __init__(
        self,
        acc: AccountSettings,
        network: NetworkSettings,
        policy: NetworkPolicy,
        *,
        environ: Mapping[str, str] | None = None,
        limits: Limits = Limits(),
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
        self.status_answer: ProviderError | None = None

    # ------------------------------------------------------------------ plumbing

    def run(self) -> AccountReport:
        started = time.monotonic()
        self.deadline = started + self.limits.timeout
        try:
            self._run()
        except OutOfBudgetError as exc:
            self.report.add("limits", Level.SKIP, f"remaining checks skipped: {exc}")
            self._headers()
        finally:
            for client in self._http:
                client.close()
            self.report.requests = self.requests
            self.report.seconds = time.monotonic() - started
        return self.report

    def _spend(self) -> None:
        if self.requests >= self.limits.max_requests:
            raise OutOfBudgetError(f"{self.requests} requests made, the most doctor sends")
        if time.monotonic() > self.deadline:
            raise OutOfBudgetError(f"the time limit of {self.limits.timeout:g} s is reached")

    def _count(self, _status: int) -> None:
        self.requests += 1

    def _client(self) -> HttpClient:
        client = build_client(self.network, self.global_policy, max_connections=2)
        self._http.append(client)
        return client

    def _provider(self, options: ProviderOptions, *, size: int | None = None) -> Provider:
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

    def _offline(self, options: ProviderOptions) -> Provider:
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

    def _style(self, options: ProviderOptions) -> str:
        """How the key travels, with the key itself masked: ``token: <key>``."""
        headers = self.cls.auth_headers(_KEY_MARK, options)
        parts = [
            f"{n}: {v.replace(_KEY_MARK, '<key>')}" for n, v in headers.items() if _KEY_MARK in v
        ]
        return ", ".join(parts) or "(no key header)"

    def _key_source(self) -> tuple[str, str]:
        """(words, config key) of where the API key comes from."""
        if self.acc.api_key_env:
            return f"environment variable {self.acc.api_key_env}", f"{self.where}.api_key_env"
        return f"file {self.acc.api_key_file}", f"{self.where}.api_key_file"

    def _line(self, option: str, value: Any) -> str:
        return config_line(self.acc.name, option, value)

    # ------------------------------------------------------------------ the run

    def _run(self) -> None:
        if not self._configure():
            return
        if not self._reach():
            self._headers()
            return
        if self.cls.has_history:
            self._history()
        else:
            self._status_call()
        self._headers()

    def _configure(self) -> bool:
        """Provider, options and key as production reads them; False (and a finding) if not."""
        if self.acc.provider not in PROVIDERS:
            self.report.add(
                "config",
                Level.FAIL,
                f"unknown provider {self.acc.provider!r}; known: {', '.join(sorted(PROVIDERS))}",
                key=f"{self.where}.provider",
            )
            return False
        self.cls = provider_class(self.acc.provider)
        self.base_url = self.acc.base_url or self.cls.default_base_url
        self.report.base_url = self.base_url
        try:
            self.options = validate_options(self.acc, self.where)
            secret = read_secret(
                f"{self.where}.",
                "api_key_env",
                self.acc.api_key_env,
                "api_key_file",
                self.acc.api_key_file,
                self.environ,
            )
        except ConfigError as exc:
            self.report.add("config", Level.FAIL, exc.problem, key=exc.key)
            return False
        if secret is None:
            self.report.add(
                "config",
                Level.FAIL,
                "no API key: set api_key_env or api_key_file",
                key=f"{self.where}.api_key_env",
            )
            return False
        self.key = secret.get_secret_value()
        register_secret(self.key)
        self.api_http = self._client()
        self.log.attach(self.api_http)
        self.media_http = self._client()
        if self.cls.has_history:
            self.size_field = size_option(self.options, self._offline)
        return True

    # ------------------------------------------------------------------ base URL and key

    def _contact(self, options: ProviderOptions) -> ProviderError | None:
        """The first call with ``options``: None when the API answered with the key taken."""
        self._spend()
        if not self.cls.has_history:
            return self._ask_status(self._provider(options))
        provider = self._provider(options, size=PROBE_SIZE)
        stream = provider.streams()[0]
        try:
            page = provider.fetch_page(stream, provider.paging.first)
        except BusinessError as exc:  # the API answered, but not for this stream
            self.first = (stream, None, exc)
            return None
        except ProviderError as exc:
            return exc
        self.first = (stream, page, None)
        return None

    def _ask_status(self, provider: Provider) -> ProviderError | None:
        """The status call for an id that cannot exist: "not found" is the healthy answer."""
        try:
            provider.fetch(self.cls.doctor_probe_id)
        except NotFoundError as exc:
            if exc.status_code == 404 and self._no_route(provider.api, exc):
                return NotFoundError(
                    f"{exc} (and so does a path no API has: this is no {self.cls.name} endpoint)",
                    status_code=404,
                )
            self.status_answer = exc
            return None
        except BusinessError as exc:
            self.status_answer = exc
            return None
        except ProviderError as exc:
            return exc
        self.status_answer = None
        return None

    def _no_route(self, api: ApiClient, exc: NotFoundError) -> bool:
        """Whether a path that cannot exist answers the same 404 as the status call."""
        self._spend()
        try:
            api.get_json(CONTROL_PATH)
        except NotFoundError as control:
            return _detail_text(control) == _detail_text(exc)
        except ProviderError:
            return False
        return False

    def _reach(self) -> bool:
        """base_url and auth; True when the rest can be probed."""
        error = self._contact(self.options)
        style = self._style(self.options)
        if error is None:
            self.report.add("base_url", Level.OK, f"{self.base_url} answers")
            self.report.add("auth", Level.OK, f"the key is accepted, sent as `{style}`")
            self.report.facts["auth_header"] = style
            return True
        if isinstance(error, AuthError):
            self.report.add(
                "base_url",
                Level.OK,
                f"{self.base_url} answers (it checks the key: the API is there)",
            )
            return self._other_auth(error, style)
        self._base_url_failure(error)
        return False

    def _other_auth(self, error: AuthError, style: str) -> bool:
        words, key = self._key_source()
        for option, value in alternatives(self.options, AUTH_WORD):
            try:
                alt = with_option(self.options, **{option: value})
            except ValidationError:
                continue
            if self._contact(alt) is None:
                alt_style = self._style(alt)
                current = getattr(self.options, option)
                self.report.add(
                    "auth",
                    Level.FAIL,
                    f"the API refuses the key sent as `{style}` ({option} = "
                    f"{toml_value(current)}) but accepts it as `{alt_style}`",
                    key=f"{self.where}.{option}",
                    suggest=self._line(option, value),
                )
                self.report.facts["auth_header"] = alt_style
                self.options = alt
                return True
        tried = " (every auth style was tried)" if alternatives(self.options, AUTH_WORD) else ""
        self.report.add(
            "auth",
            Level.FAIL,
            f"the API refuses the key from {words}, sent as `{style}`{tried}: "
            f"{short_error(error)}; check the key (and that it belongs to this provider)",
            key=key,
        )
        return False

    def _base_url_failure(self, error: ProviderError) -> None:
        default = self.cls.default_base_url
        hint = (
            self._line("base_url", default)
            if self.acc.base_url and self.acc.base_url.rstrip("/") != default.rstrip("/")
            else None
        )
        key = f"{self.where}.base_url"
        text = short_error(error)
        if isinstance(error, RateLimitedError):
            self.report.add("base_url", Level.OK, f"{self.base_url} answers")
            self.report.add(
                "auth",
                Level.WARN,
                f"rate limited before the key could be checked ({text}): run doctor again later",
            )
            return
        if isinstance(error, TransientProviderError):
            status = error.status_code
            if status is not None and status >= 500:
                message = f"{self.base_url} answers HTTP {status}: the provider (or a gateway) "
                message += f"is in trouble, or this is not its API: {text}"
            else:
                message = f"{self.base_url} does not answer: {text}"
            self.report.add("base_url", Level.FAIL, message, key=key, suggest=hint)
            return
        if "refused by the network policy" in str(error):
            self._policy_failure("base_url", str(error), self.base_url)
            return
        if isinstance(error, NotFoundError):
            message = (
                f"{self.base_url} answers, but not as the {self.cls.name} API: the endpoint is "
                f"not found there ({text}); base_url must be the API root"
            )
            if hint is None:
                message += f", e.g. {default}"
        elif isinstance(error, MalformedResponseError):
            message = (
                f"{self.base_url} answers, but not with the {self.cls.name} API's JSON: {text}"
            )
        elif isinstance(error, PermanentProviderError):
            message = f"{self.base_url} refuses the request: {text}"
        else:
            message = f"{self.base_url}: {text}"
        self.report.add("base_url", Level.FAIL, message, key=key, suggest=hint)

    def _policy_failure(self, check: str, error: str, url: str) -> None:
        if "allowlist" in error:
            from urllib.parse import urlsplit

            host = (urlsplit(url).hostname or "").lower()
            hosts = [*(self.acc.allowed_hosts or ()), host]
            self.report.add(
                check,
                Level.FAIL,
                f"{url}: the host is not in this account's allowed_hosts ({error})",
                key=f"{self.where}.allowed_hosts",
                suggest=self._line("allowed_hosts", hosts),
            )
        elif "private" in error or "shared" in error:
            self.report.add(
                check,
                Level.FAIL,
                f"{url}: a private or loopback address, refused unless allowed ({error})",
                key="network.allow_private",
                suggest="network.allow_private = true",
            )
        else:
            self.report.add(check, Level.FAIL, f"{url}: refused ({error})")

    # ------------------------------------------------------------------ no listing

    def _status_call(self) -> None:
        answer = self.status_answer
        probe = self.cls.doctor_probe_id
        if isinstance(answer, NotFoundError):
            self.report.add(
                "status_call",
                Level.OK,
                f"a status call for the made-up id {probe!r} answers 'not found' "
                f"({short_error(answer, 90)}): the endpoint and the key work",
            )
        elif answer is not None:
            self.report.add(
                "status_call",
                Level.WARN,
                f"a status call for the made-up id {probe!r} answers {short_error(answer)} "
                "instead of 'not found': the key is taken, but the answer is unexpected",
            )
        else:
            self.report.add(
                "status_call",
                Level.WARN,
                f"a status call for the made-up id {probe!r} answered as if it existed",
            )
        self.report.add(
            "listing",
            Level.SKIP,
            "no history listing (ids come from `genvault track`, the intake or webhooks): "
            "paging, page cap, order, detail and media checks do not apply",
        )

    # ------------------------------------------------------------------ history

    def _history(self) -> None:
        stream, page = self._sample_stream()
        if stream is None or page is None:
            self.report.add(
                "listing",
                Level.SKIP,
                f"no history stream among the first {MAX_STREAMS} has items: paging, cap, "
                "order, detail and media cannot be checked",
            )
            return
        self.report.facts["stream"] = stream
        for check in (self._paging, self._page_cap):
            try:
                page = check(stream, page)
            except ProviderError as exc:
                self.report.add(check.__name__.strip("_"), Level.FAIL, short_error(exc))
                return
        self._order(page)
        try:
            details = self._detail(page)
        except ProviderError as exc:
            self.report.add("detail", Level.FAIL, short_error(exc))
            details = []
        self._media([*details, *page.records])

    def _enough(self, page: Page) -> bool:
        """The stream holds more than one probe page (so paging can be seen)."""
        if page.total is not None:
            return page.total > PROBE_SIZE
        return page.got >= PROBE_SIZE

    def _sample_stream(self) -> tuple[str | None, Page | None]:
        assert self.first is not None
        stream, page, error = self.first
        best: tuple[str, Page] | None = None
        if error is not None:
            self._stream_refused(stream, error)
        elif page is not None:
            if self._enough(page):
                return stream, page
            if page.records:
                best = (stream, page)
        provider = self._provider(self.options, size=PROBE_SIZE)
        for other in provider.streams()[1:MAX_STREAMS]:
            self._spend()
            try:
                found = provider.fetch_page(other, provider.paging.first)
            except BusinessError as exc:
                self._stream_refused(other, exc)
                continue
            if self._enough(found):
                return other, found
            if best is None and found.records:
                best = (other, found)
        return best if best is not None else (None, None)

    def _stream_refused(self, stream: str, error: ProviderError) -> None:
        self.report.add(
            "listing",
            Level.WARN,
            f"history {stream!r} is refused: {short_error(error)}; every sync of it will fail",
        )

    def _paging_verdict(
        self, provider: Provider, stream: str, first: Page
    ) -> tuple[bool | None, str]:
        """Whether the server honours ``provider``'s paging (None: cannot tell), and why."""
        paging = provider.paging
        size = paging.size
        echoed = first.page_size
        if first.got > size or (echoed is not None and echoed > size):
            got = max(first.got, echoed or 0)
            return False, f"asked for {size} items per page, the server sent {got}"
        if first.got < size:
            return None, f"history {stream!r} holds too few items to check paging"
        self._spend()
        try:
            second = provider.fetch_page(stream, paging.first + 1)
        except MalformedResponseError as exc:
            return False, short_error(exc)
        ids1, ids2 = _ids(first), _ids(second)
        if ids2 and ids2 == ids1:
            where = "page 2" if paging.kind == "page" else "offset 1"
            return False, f"{where} came back with the items of the first page"
        if paging.kind == "offset":
            if not ids2:
                return None, f"history {stream!r} holds too few items to check paging"
            if len(ids1) > 1 and ids2[0] != ids1[1]:
                return False, "offset 1 does not start with the second item of offset 0"
            return True, "offset and limit are honoured"
        if set(ids1) & set(ids2):
            return False, "page 2 repeats items of page 1"
        if not ids2:
            if first.total is not None and first.total > size:
                return False, f"page 2 came back empty although the API counts {first.total}"
            return None, f"history {stream!r} holds too few items to check paging"
        return True, "page number and size are honoured"

    def _paging(self, stream: str, page: Page) -> Page:
        small = self._provider(self.options, size=PROBE_SIZE)
        ok, why = self._paging_verdict(small, stream, page)
        spelled = [
            f"{option} = {toml_value(getattr(self.options, option))}"
            for option in dict(alternatives(self.options, PAGING_WORD))
        ]
        setting = f" ({', '.join(spelled)})" if spelled else ""
        if ok:
            self.report.add("paging", Level.OK, why + setting)
            self.report.facts["paging"] = "honoured"
            return page
        if ok is None:
            self.report.add("paging", Level.SKIP, why)
            return page
        for option, value in alternatives(self.options, PAGING_WORD):
            try:
                alt = with_option(self.options, **{option: value})
            except ValidationError:
                continue
            provider = self._provider(alt, size=PROBE_SIZE)
            self._spend()
            try:
                first = provider.fetch_page(stream, provider.paging.first)
            except ProviderError:
                continue
            alt_ok, _ = self._paging_verdict(provider, stream, first)
            if alt_ok:
                self.report.add(
                    "paging",
                    Level.FAIL,
                    f"the server ignores the paging parameters{setting}: {why}; with "
                    f"{option} = {toml_value(value)} it honours them",
                    key=f"{self.where}.{option}",
                    suggest=self._line(option, value),
                )
                self.report.facts["paging"] = f"{option} = {value}"
                self.options = alt
                return first
        self.report.add(
            "paging",
            Level.FAIL,
            f"the server ignores the paging parameters{setting}: {why}; a walk cannot page "
            "through this listing",
        )
        self.report.facts["paging"] = "ignored"
        return page

    def _page_cap(self, stream: str, _page: Page) -> Page:
        provider = self._provider(self.options)
        paging = provider.paging
        size = paging.size
        self._spend()
        page = provider.fetch_page(stream, paging.first)
        cap: int | None = None
        if page.page_size is not None and 0 < page.page_size < size:
            cap = page.page_size
        elif page.got < size and page.total is not None and page.total > page.got:
            cap = page.got
        elif 0 < page.got < size and page.total is None:
            # the end of the listing, or a cap: the next window tells
            self._spend()
            step = page.got if paging.kind == "offset" else 1
            more = provider.fetch_page(stream, paging.first + step)
            if set(_ids(more)) - set(_ids(page)):
                cap = page.got
        self.report.facts["page_size"] = size
        if cap is not None:
            self.report.facts["page_cap"] = cap
            field = self.size_field
            self.report.add(
                "page_cap",
                Level.WARN,
                f"the server caps pages at {cap} items (asked for {size}); walks notice and "
                "adapt, but asking for the real size keeps every page whole",
                key=f"{self.where}.{field}" if field else None,
                suggest=self._line(field, cap) if field else None,
            )
        elif page.got >= size:
            self.report.add("page_cap", Level.OK, f"pages of {size} come whole")
        else:
            self.report.add(
                "page_cap",
                Level.OK,
                f"history {stream!r} fits in one page of {size} ({page.got} items): no cap seen",
            )
        return page

    def _order(self, page: Page) -> None:
        check = OrderCheck(None)
        check.feed(page.records)
        seen = check.seen
        if seen is None:
            self.report.add(
                "order", Level.SKIP, "too few items with a creation time to see the sort order"
            )
            return
        self.report.facts["order"] = seen.value
        if seen.value == "newest_first":
            self.report.add(
                "order", Level.OK, "newest first: incremental syncs stop at what they have"
            )
        elif seen.value == "oldest_first":
            self.report.add(
                "order",
                Level.WARN,
                "oldest first: an incremental sync cannot stop early, every pass reads the "
                "whole history",
            )
        else:
            self.report.add(
                "order",
                Level.WARN,
                "unsorted: an incremental sync cannot stop early, every pass reads the whole "
                "history",
            )

    def _detail(self, page: Page) -> list[GenerationRecord]:
        samples = [r for r in page.records if r.status is GenerationStatus.SUCCEEDED]
        samples = samples[:DETAIL_SAMPLES]
        if not samples:
            self.report.add("detail", Level.SKIP, "no finished generation on the sampled page")
            return []
        provider = self._provider(self.options)
        details: list[GenerationRecord] = []
        missed: list[tuple[GenerationRecord, int]] = []
        covered: list[tuple[GenerationRecord, int]] = []
        failed: list[str] = []
        for listed in samples:
            self._spend()
            try:
                detail = provider.fetch(listed.external_id)
            except ProviderError as exc:
                failed.append(f"{listed.external_id}: {short_error(exc)}")
                continue
            details.append(detail)
            more = {_bare(m.url) for m in detail.media} - {_bare(m.url) for m in listed.media}
            if more:
                (covered if listed.needs_detail else missed).append((listed, len(more)))
        ids = ", ".join(r.external_id for r in samples)
        if failed:
            self.report.add(
                "detail",
                Level.FAIL,
                f"the status/detail endpoint fails for a listed generation ({failed[0]}): "
                "tasks in progress could not be followed",
            )
        if missed:
            self._detail_missed(*missed[0])
        elif covered:
            first, extra = covered[0]
            self.report.add(
                "detail",
                Level.OK,
                f"the detail of {first.external_id} lists {extra} more file(s) than its "
                "listing entry; the sync reads the detail of such generations",
            )
        elif details:
            self.report.add(
                "detail",
                Level.OK,
                f"the detail names no file the listing leaves out ({len(details)} sampled: {ids})",
            )
        return details

    def _detail_missed(self, listed: GenerationRecord, extra: int) -> None:
        text = (
            f"the detail of {listed.external_id} lists {extra} more file(s) than its listing "
            "entry, and the sync would not read it: those files would not be archived"
        )
        for option, value in other_literal_alternatives(self.options):
            try:
                alt = with_option(self.options, **{option: value})
            except ValidationError:
                continue
            try:
                reparsed = self._offline(alt).parse(listed.raw)
            except ProviderError:
                continue
            if reparsed.needs_detail:
                self.report.add(
                    "detail",
                    Level.FAIL,
                    f"{text}; with {option} = {toml_value(value)} it would",
                    key=f"{self.where}.{option}",
                    suggest=self._line(option, value),
                )
                return
        self.report.add("detail", Level.FAIL, text)

    def _media(self, records: Sequence[GenerationRecord]) -> None:
        absolute: str | None = None
        relative: tuple[str, str] | None = None
        for record in records:
            if record.status is not GenerationStatus.SUCCEEDED:
                continue
            for m in sorted(record.media, key=lambda m: m.role is not MediaRole.RESULT):
                source = relative_source(record.raw, m.url)
                if source is None and absolute is None:
                    absolute = m.url
                elif source is not None and relative is None:
                    relative = (m.url, source)
        if absolute is None and relative is None:
            self.report.add("media", Level.SKIP, "no finished generation with a file to sample")
            return
        self.report.facts["relative_urls"] = relative is not None
        if absolute is not None:
            self._probe_media(absolute, None)
        if relative is not None:
            self._probe_media(*relative)
        elif absolute is not None:
            self.report.add(
                "media_urls", Level.OK, "the sampled generations' media URLs come absolute"
            )

    def _base_option(self, url: str) -> str | None:
        """The string option a relative URL was resolved against (``media_base``)."""
        for name in type(self.options).model_fields:
            value = getattr(self.options, name)
            if (
                isinstance(value, str)
                and value.startswith(("http://", "https://"))
                and url.startswith(value)
            ):
                return name
        return None

    def _probe_media(self, url: str, source: str | None) -> None:
        self._spend()
        self.requests += 1
        answer = range_probe(self.media_http, url, self.policy)
        statuses = self.report.facts.setdefault("media_status", [])
        statuses.append(answer.status)
        option = self._base_option(url) if source is not None else None
        base = url[: len(url) - len(source)] if source and url.endswith(source) else None
        if source is not None:
            where = f"{option} = {toml_value(base)}" if option and base else str(base)
            self.report.add(
                "media_urls",
                Level.OK,
                f"media URLs come relative (e.g. {source[:80]!r}), resolved against {where}",
            )
        if answer.ok:
            self.report.add("media", Level.OK, self._media_ok(answer, source))
            return
        if answer.refused:
            self._policy_failure("media", answer.error or "refused", url)
            return
        what = "relative media URL" if source is not None else "sample media URL"
        problem = (
            f"HTTP {answer.status}" if answer.status is not None else f"no answer: {answer.error}"
        )
        if source is not None:
            self.report.add(
                "media",
                Level.FAIL,
                f"a {what} resolved to {_bare(url)[:160]} gets {problem}: the base it is "
                "resolved against looks wrong",
                key=f"{self.where}.{option}" if option else None,
            )
        elif answer.status is None:
            self.report.add("media", Level.FAIL, f"a {what} gets {problem}")
        else:
            self.report.add(
                "media",
                Level.WARN,
                f"a {what} ({_bare(url)[:160]}) gets {problem}: expired, or the CDN wants "
                "something genvault does not send",
            )

    @staticmethod
    def _media_ok(answer: RangeAnswer, source: str | None) -> str:
        kind = "a relative" if source is not None else "a sample"
        ctype = f", {answer.content_type}" if answer.content_type else ""
        if answer.status == 206:
            return f"{kind} media URL answers a one-byte Range GET (HTTP 206{ctype})"
        return (
            f"{kind} media URL answers (HTTP 200{ctype}) but ignores Range: an interrupted "
            "download starts over"
        )

    # ------------------------------------------------------------------ headers

    def _headers(self) -> None:
        """Clock skew from ``Date`` and the rate-limit headers of every API answer."""
        seen = list(self.log.observations)
        if not seen:
            return
        skews = [s for s in (o.skew_seconds for o in seen) if s is not None]
        if not skews:
            self.report.add("clock", Level.SKIP, "no answer carried a Date header")
        else:
            skew = statistics.median(skews)
            self.report.facts["clock_skew_seconds"] = round(skew, 1)
            ahead = "ahead of" if skew > 0 else "behind"
            words = f"the server's clock is {abs(skew):.0f} s {ahead} this machine's"
            if abs(skew) >= SKEW_FAIL_SECONDS:
                self.report.add(
                    "clock",
                    Level.FAIL,
                    f"{words}: deadlines and signed-URL expiries are misjudged; "
                    "sync this machine's clock (NTP)",
                )
            elif abs(skew) >= SKEW_WARN_SECONDS:
                self.report.add("clock", Level.WARN, f"{words}: check this machine's clock (NTP)")
            else:
                self.report.add(
                    "clock",
                    Level.OK,
                    f"the server's Date agrees with this machine's clock ({round(skew):+d} s; "
                    f"warned from {SKEW_WARN_SECONDS:g} s)",
                )
        headers: dict[str, str] = {}
        for o in seen:
            headers.update(o.rate_headers)
        limited = sum(o.status == 429 for o in seen)
        if headers:
            self.report.facts["rate_limit_headers"] = headers
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(headers.items()))
        if limited:
            self.report.add(
                "rate_limit",
                Level.WARN,
                f"{limited} answer(s) were 429 (rate limited)" + (f"; {shown}" if shown else ""),
            )
        elif headers:
            self.report.add("rate_limit", Level.OK, f"rate-limit headers seen: {shown}")
        else:
            self.report.add("rate_limit", Level.OK, "no rate-limit headers seen")


__all__ = ["MAX_REQUESTS", "AccountDoctor", "Limits", "OutOfBudgetError", "doctor_network"]
