"""The base of the per-provider simulators, and what every provider module shares.

genvault cannot reach real providers in tests, so each provider API is simulated on
loopback (see :mod:`genvault.simulator`). The machinery lives in its own modules:
:mod:`.server` (the HTTP server and its routes), :mod:`.messages` (Request,
Response, Headers), :mod:`.faults` (fault settings, decisions and spoiled answers),
:mod:`.cdn` (media table, Range, CDN errors), :mod:`.clock` (SimClock) and
:mod:`.stats`. What stays here is the provider side: :class:`ProviderSim`, which
builds a provider's :class:`SimServer` from class attributes, the ground truth
tests compare archives to (:class:`ExpectedFile`), the ``Simulator`` protocols the
CLI demo relies on, and small helpers every provider module uses.

Only the standard library is used, so simulators add no dependencies.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from genvault.simulator import media
from genvault.simulator.clock import SimClock
from genvault.simulator.faults import Faults, mangle_types
from genvault.simulator.messages import (
    BusinessErrorFactory,
    ErrorFactory,
    default_business_error,
    default_error,
)
from genvault.simulator.server import Serving, SimServer
from genvault.simulator.stats import Stats

Role = Literal["result", "thumbnail", "last_frame", "upscale", "reference"]


@dataclass(frozen=True, slots=True)
class ExpectedFile:
    """Ground truth for one media URL a simulator exposes; tests compare archives to it."""

    url: str
    size: int
    sha256: str
    kind: media.MediaKind
    role: Role
    generation_id: str
    """The provider's external id of the generation (e.g. GeminiGen ``uuid``)."""
    expires_at: datetime | None
    content_type: str
    source_field: str
    """Where the URL appears in the payload, e.g. ``generated_video[].last_frame``."""


def expected_file(
    url: str,
    spec: media.MediaSpec,
    *,
    role: Role,
    generation_id: str,
    expires_at: datetime | None,
    source_field: str,
) -> ExpectedFile:
    """The ground truth of a URL serving ``spec``: its size, kind, type and SHA-256."""
    return ExpectedFile(
        url=url,
        size=spec.size,
        sha256=media.sha256(spec),
        kind=spec.kind,
        role=role,
        generation_id=generation_id,
        expires_at=expires_at,
        content_type=spec.content_type,
        source_field=source_field,
    )


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One file a simulated generation serves: its CDN path, what it is, where the
    payload names it."""

    path: str
    kind: media.MediaKind
    size: int
    role: Role
    source_field: str


# --------------------------------------------------------------------------- config helpers

_C = TypeVar("_C")


def check_non_negative(config: Any) -> None:
    """Refuse a negative numeric knob in a simulator config dataclass (bools excepted)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{f.name} must be >= 0, got {value}")


def config_from_knobs(
    config_cls: type[_C], *, api_key: str | None, seed: int, count: int | None, knobs: Any
) -> _C:
    """The config every ``create(api_key=, seed=, count=, **knobs)`` factory builds:
    ``None`` means "the config's default" for api_key and count."""
    settings: dict[str, Any] = dict(knobs, seed=seed)
    if api_key is not None:
        settings["api_key"] = api_key
    if count is not None:
        settings["count"] = count
    return config_cls(**settings)


class Simulator(Protocol):
    """What the CLI demo and tests rely on, whatever the provider."""

    api_key: str

    @property
    def name(self) -> str: ...
    @property
    def server(self) -> SimServer: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_base(self) -> str: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def account_options(self) -> dict[str, Any]: ...
    def start(self) -> str: ...
    def stop(self) -> None: ...
    def expected_media(self) -> list[ExpectedFile]: ...


class SimulatorFactory(Protocol):
    """Uniform constructor: ``create(api_key=..., seed=..., count=..., port=..., **knobs)``."""

    def __call__(
        self,
        *,
        api_key: str | None = None,
        seed: int = 0,
        count: int | None = None,
        **knobs: Any,
    ) -> Simulator: ...


class SimConfig(Protocol):
    """What :class:`ProviderSim` reads from every provider's config dataclass."""

    @property
    def api_key(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def clock_anchor(self) -> datetime | None: ...


_Config = TypeVar("_Config", bound=SimConfig)


class ProviderSim(Serving, Generic[_Config]):
    """Base of the per-provider simulators: builds a :class:`SimServer`, adds the API.

    A subclass describes its server with class attributes instead of building it:
    ``name`` and ``api_path`` (e.g. ``/uapi/v1``), ``media_prefixes`` (paths the CDN
    answers 404 for when unknown), the provider's ``error_response``,
    ``wrong_types`` and ``business_error`` factories, and ``server_class`` when it
    needs a :class:`SimServer` subclass. The factories are plain functions, read from
    the class (never called through ``self``, which would bind them). Its
    ``__init__`` calls ``super().__init__(config)`` (with any extra keyword options
    of ``server_class``), then registers routes and media, and the subclass
    implements :meth:`expected_media`.
    """

    name: ClassVar[str] = "sim"
    api_path: ClassVar[str] = ""
    media_prefixes: ClassVar[tuple[str, ...]] = ("/cdn/",)
    error_response: ClassVar[ErrorFactory] = default_error
    wrong_types: ClassVar[Callable[[Any], Any]] = mangle_types
    business_error: ClassVar[BusinessErrorFactory] = default_business_error
    server_class: ClassVar[type[SimServer]] = SimServer

    def __init__(self, config: _Config, **server_options: Any) -> None:
        cls = type(self)
        self.config = config
        self.api_key = config.api_key
        self._server = cls.server_class.for_config(
            cls.name,
            config,
            media_prefixes=cls.media_prefixes,
            error_response=cls.error_response,
            wrong_types=cls.wrong_types,
            business_error=cls.business_error,
            **server_options,
        )

    @property
    def server(self) -> SimServer:
        return self._server

    @property
    def faults(self) -> Faults:
        return self._server.faults

    @property
    def stats(self) -> Stats:
        return self._server.stats

    @property
    def clock(self) -> SimClock:
        return self._server.clock

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def api_base(self) -> str:
        """The URL to configure the API client with (base URL + provider API path)."""
        return self._server.base_url + self.api_path

    def start(self) -> str:
        """Start serving; returns the base URL."""
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()

    @property
    def account_options(self) -> dict[str, Any]:
        """Provider option keys an account needs to archive from this simulator (demo/tests)."""
        return {}

    def expected_media(self) -> list[ExpectedFile]:
        raise NotImplementedError

    def media_sha256(self, url: str) -> str:
        """SHA-256 of the file a URL of this server serves (``KeyError`` if unknown)."""
        entry = self._server.media_entry(urlsplit(url).path)
        if entry is None:
            raise KeyError(url)
        return media.sha256(entry.spec)


def iso_ms(value: datetime) -> str:
    """``2025-09-27T13:30:05.089Z``: ISO-8601 UTC with milliseconds, as several APIs use."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def trunc_ms(value: datetime) -> datetime:
    """Drop sub-millisecond digits: the APIs' timestamps carry milliseconds."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def uuid4ish(rng: random.Random) -> str:
    """A UUIDv4-shaped id drawn from ``rng`` (deterministic for a seed)."""
    return (
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"{0x8000 | rng.getrandbits(14):04x}-{rng.getrandbits(48):012x}"
    )
