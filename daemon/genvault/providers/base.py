"""The provider contract: what an adapter module must supply.

An adapter maps one API onto :mod:`genvault.records` and does nothing else: no
database, no storage, no scheduling. Per-API facts (auth header, base URL,
paging, retention rule, options) are class attributes, i.e. data, so a reader
sees every API difference in one place.

Paging is declarative (dlt's REST source is the model): a
:class:`PageNumberPaging` or :class:`OffsetPaging` describes the parameters, an
adapter fetches the one page it is asked for and reports what the server said
(items, ``total``, page size), and :mod:`genvault.walk` decides everything else:
where a walk starts, which page comes next, how it checks itself, when it ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from genvault.net.api import ApiClient
from genvault.records import DeadlineSource, GenerationRecord, Page


class ProviderOptions(BaseModel):
    """Provider-specific account keys; subclasses add fields. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class PageNumberPaging:
    """``?page=N&size=M``, 1-based: the server cuts the listing into fixed windows.

    Only a description: which page comes next, and when the walk ends, is decided in
    one place, :mod:`genvault.walk`.
    """

    page_param: str
    size_param: str
    size: int
    first: int = 1

    kind: ClassVar[Literal["page"]] = "page"

    def params(self, position: int) -> dict[str, int]:
        return {self.page_param: position, self.size_param: self.size}


@dataclass(frozen=True, slots=True)
class OffsetPaging:
    """``?offset=N&limit=M``: the client chooses every window (so windows can overlap)."""

    offset_param: str
    limit_param: str
    limit: int

    first: ClassVar[int] = 0
    kind: ClassVar[Literal["offset"]] = "offset"

    @property
    def size(self) -> int:
        return self.limit

    def params(self, position: int) -> dict[str, int]:
        return {self.offset_param: position, self.limit_param: self.limit}


Paging = PageNumberPaging | OffsetPaging


class Provider(ABC):
    """One provider API, bound to one account's client and options."""

    name: ClassVar[str]
    """Registry key and the ``provider`` value in config."""
    default_base_url: ClassVar[str]
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions
    has_history: ClassVar[bool] = True
    """False for APIs with no listing: ids arrive by ``track``, intake or webhook."""
    retention: ClassVar[timedelta | None] = None
    """How long results live when the API gives no per-item expiry."""
    retention_source: ClassVar[DeadlineSource] = DeadlineSource.ASSUMED
    """Whether ``retention`` is documented (``RULE``) or a guess (``ASSUMED``)."""
    full_file_set: ClassVar[Literal["listing", "detail"]] = "listing"
    """Which endpoint names *every* file of a generation. "listing": a listing entry
    provably lists them all. "detail": only :meth:`fetch` does, so the sync marks every
    new or changed generation for one detail read (GeminiGen: the listing leaves out
    images, videos and audio that the detail has)."""
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "none"
    doctor_probe_id: ClassVar[str] = "genvault-doctor-probe"
    """A well-formed id no generation has: ``genvault doctor`` asks :meth:`fetch` for it
    (an API without a listing) and expects "not found", not an auth error."""
    """How callbacks are authenticated: "none" = this API sends none; "token" = the API
    cannot sign, so the receiver requires genvault's own token (query ``token=`` or a
    bearer header); "signature" = :meth:`webhook_ids` verifies the provider's signature."""

    def __init__(
        self, api: ApiClient, options: ProviderOptions, account: str, *, api_key: str = ""
    ) -> None:
        self.api = api
        self.options = options
        self.account = account
        self._api_key = api_key  # only for webhook decryption (Akool); never logged

    @classmethod
    @abstractmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        """The headers that carry the key (never logged)."""

    def streams(self) -> Sequence[str]:
        """Independent history listings (CrowdComputed pages each workflow on its own)."""
        return ("all",) if self.has_history else ()

    @property
    def paging(self) -> Paging:
        """How the listing is paged (only for adapters with ``has_history``)."""
        raise NotImplementedError(f"{self.name} has no history listing")

    def fetch_page(self, stream: str, position: int) -> Page:
        """One page of history as the API answered it, at ``position`` (a page number or
        an offset, per :attr:`paging`). Parse errors of single items are counted on the
        page. It never decides whether the walk goes on: :mod:`genvault.walk` does."""
        raise NotImplementedError(f"{self.name} has no history listing")

    @abstractmethod
    def fetch(self, external_id: str) -> GenerationRecord:
        """Current state of one generation from its status/detail endpoint."""

    @abstractmethod
    def parse(self, payload: Any) -> GenerationRecord:
        """Raw JSON of one item -> record; raises MalformedResponseError only."""

    def webhook_ids(self, body: bytes, headers: Mapping[str, str]) -> list[str]:
        """External ids a provider callback names, to be polled at once.

        A callback is only a hint: genvault never trusts it as the result, it re-reads
        the task from the API. Raise :class:`~genvault.errors.WebhookRejectedError` for a
        body that does not verify or parse. Header names arrive lower-cased.
        """
        from genvault.errors import WebhookRejectedError

        raise WebhookRejectedError(f"{self.name} sends no webhooks")

    def parse_items(self, items: Sequence[Any]) -> tuple[list[GenerationRecord], int]:
        """Parse a page's items, skipping (and counting) the ones that do not parse."""
        from genvault.errors import MalformedResponseError
        from genvault.logs import get_logger

        out: list[GenerationRecord] = []
        bad = 0
        for item in items:
            try:
                out.append(self.parse(item))
            except MalformedResponseError as exc:
                bad += 1
                get_logger("genvault.providers").warning(
                    "provider.item_unparsable",
                    provider=self.name,
                    account=self.account,
                    error=str(exc),
                )
        return out, bad
