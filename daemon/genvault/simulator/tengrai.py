"""Simulator of the Tengr.ai artworks API (``/v1`` and ``/v2``), with its fake CDN.

Follows seed 003 ("Find artworks") and providers.md §4: ``Authorization: Bearer``
auth, ``GET /v{1,2}/artworks?offset=&limit=`` answering a **bare JSON array** (no
total; limit 1-500, else 400), ``GET /v{1,2}/artworks/{id}``, NestJS-style errors
``{"message", "statusCode", "error"}`` (401 is ``{"message": "Unauthorized",
"statusCode": 401}``), ISO-8601 UTC ``createdAt`` with milliseconds.

The data is deterministic for a seed, so tests know every media URL and its SHA-256
in advance (:meth:`TengrAISimulator.expected_media`). Behaviour over time:

* v1 creation is synchronous, so the v1 listing shows only terminal artworks
  (``done``/``failed``) and the v1 detail of one still running is a 404;
* the newest ``processing_count`` artworks were made through v2: they are
  ``starting`` for the first quarter of ``processing_seconds`` after server start,
  then ``processing``, then ``succeeded`` with their results (404 on the CDN before);
* retention is 8 days from ``createdAt``: older artworks vanish from the listing,
  their detail is a 404 and their media answers 403 (``expired_count`` start out
  that old; advancing the clock ages the rest);
* ``signed_count`` artworks have signed result URLs (``?Expires=<unix>&Signature=``)
  that die ``signed_ttl_seconds`` after construction, before the retention does;
* ``failed_count`` / ``canceled_count`` artworks failed (v2 ``canceled`` is v1
  ``failed``); ``empty_count`` are ``done`` with no results at all;
* each artwork has 1-2 results (the v2 ``batch``; upscaling always 1).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Final, Literal

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    ProviderSim,
    Request,
    Response,
    SimServer,
    check_non_negative,
    config_from_knobs,
    iso_ms,
)

CDN: Final = "/cdn/"
RETENTION: Final = timedelta(days=8)
MAX_LIMIT: Final = 500
VERSIONS: Final = ("v1", "v2")

Outcome = Literal["ok", "failed", "canceled", "empty"]

_TYPES: Final = ("txt2img", "txt2img", "upscaling", "txt2img")
_MODELS: Final = ("tengrai-20231128-m-d", "tengrai-20240423-m-f")
_STYLES: Final = ("default", "portraiture", "landscape", "analog", "illustration", "manga")
_SIZES: Final = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
}
_SUBJECTS: Final = (
    "a cat in a library",
    "a lighthouse in a storm",
    "a koi pond at dusk",
    "an old tram in Lisbon",
    "a robot watering tulips",
    "a snowy mountain cabin",
)
_NEGATIVE: Final = ("", "blurry", "text, watermark", "extra fingers")


@dataclass(frozen=True, slots=True)
class TengrAISimConfig:
    """Knobs of the Tengr.ai simulator. Counts larger than ``count`` are clamped."""

    api_key: str = "sim-tengrai-key"
    count: int = 25
    seed: int = 0
    image_size: int = 150_000
    processing_count: int = 3
    processing_seconds: float = 2.0
    failed_count: int = 2
    canceled_count: int = 1
    empty_count: int = 0
    expired_count: int = 0
    signed_count: int = 0
    signed_ttl_seconds: float = 3600.0
    max_age_days: float = 7.0
    """Live artworks are spread over this many days (must stay under the 8-day retention)."""
    api_version: Literal["v1", "v2"] = "v2"
    """The version :attr:`TengrAISimulator.account_options` tells genvault to use."""
    port: int = 0
    clock_anchor: datetime | None = None
    """Pretend the simulation starts at this instant (reproducible timestamps)."""

    def __post_init__(self) -> None:
        check_non_negative(self)
        if not 0 < self.max_age_days < RETENTION.days:
            raise ValueError("max_age_days must be in (0, 8)")
        if self.api_version not in VERSIONS:
            raise ValueError(f"api_version must be one of {VERSIONS}")


@dataclass(frozen=True, slots=True)
class _Art:
    """One artwork's time-independent facts; its status is derived at request time."""

    id: str
    type: str
    params: dict[str, Any]
    created_at: datetime
    took: float
    """Seconds from createdAt to the end, for artworks already finished at construction."""
    processing: bool
    outcome: Outcome
    paths: tuple[str, ...]
    """CDN paths of the results (empty unless the outcome is ok)."""
    query: str
    """Signature query of the result URLs ("" when unsigned)."""
    media_expires_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.created_at + RETENTION


class _Builder:
    """Builds the deterministic artwork list from a seeded RNG."""

    def __init__(self, cfg: TengrAISimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"tengrai:{cfg.seed}")
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def uuid4ish(self) -> str:
        r = self.rng
        return (
            f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}-"
            f"{0x8000 | r.getrandbits(14):04x}-{r.getrandbits(48):012x}"
        )

    def ages(self, n_proc: int, n_exp: int) -> list[float]:
        """Age in seconds of each artwork, newest first."""
        cfg, r = self.cfg, self.rng
        n_mid = cfg.count - n_proc - n_exp
        proc = [5.0 + 7.0 * i + r.random() for i in range(n_proc)]
        mid = sorted(r.uniform(120.0, cfg.max_age_days * 86_400.0) for _ in range(n_mid))
        old = sorted(r.uniform(8.5 * 86_400.0, 12 * 86_400.0) for _ in range(n_exp))
        return proc + mid + old

    def build(self) -> list[_Art]:
        cfg, r = self.cfg, self.rng
        n_proc = min(cfg.processing_count, cfg.count)
        n_exp = min(cfg.expired_count, cfg.count - n_proc)
        ages = self.ages(n_proc, n_exp)
        pool = list(range(n_proc, cfg.count - n_exp))
        outcomes: dict[int, Outcome] = {}
        plan: tuple[tuple[Outcome, int], ...] = (
            ("failed", cfg.failed_count),
            ("canceled", cfg.canceled_count),
            ("empty", cfg.empty_count),
        )
        for outcome, wanted in plan:
            free = [i for i in pool if i not in outcomes]
            for i in r.sample(free, min(wanted, len(free))):
                outcomes[i] = outcome
        ok = [i for i in pool if i not in outcomes]
        signed = set(r.sample(ok, min(cfg.signed_count, len(ok))))
        return [
            self.artwork(i, ages[i], i < n_proc, outcomes.get(i, "ok"), i in signed)
            for i in range(cfg.count)
        ]

    def artwork(self, i: int, age: float, processing: bool, outcome: Outcome, signed: bool) -> _Art:
        cfg, r = self.cfg, self.rng
        art_id = self.uuid4ish()
        kind = _TYPES[i % len(_TYPES)]
        aspect = r.choice(list(_SIZES))
        width, height = _SIZES[aspect]
        batch = 1 if kind == "upscaling" else r.choice((1, 2))
        params = {
            "model": r.choice(_MODELS),
            "promptMode": r.choice(("seer", "servitor")),
            "prompt": f"{r.choice(_SUBJECTS)}, {r.choice(_STYLES)} style",
            "negativePrompt": r.choice(_NEGATIVE),
            "style": r.choice(_STYLES),
            "creativity": r.randint(1, 5),
            "details": r.randint(1, 5),
            "aspectRatio": aspect,
            "width": width,
            "height": height,
            "nsfw": False,
            "batch": batch,
        }
        created = self.now - timedelta(milliseconds=round(age * 1000))
        paths = (
            tuple(f"{CDN}artworks/{art_id}/{n}.jpg" for n in range(batch))
            if outcome == "ok"
            else ()
        )
        expires = created + RETENTION
        query = ""
        if signed:
            stamp = int((self.now + timedelta(seconds=cfg.signed_ttl_seconds)).timestamp())
            digest = hashlib.sha256(f"{art_id}|{stamp}".encode()).hexdigest()[:32]
            query = f"?Expires={stamp}&Signature={digest}"
            expires = min(expires, datetime.fromtimestamp(stamp, UTC))
        return _Art(
            id=art_id,
            type=kind,
            params=params,
            created_at=created,
            took=round(min(age, 4.0 + 12.0 * r.random()), 1),
            processing=processing,
            outcome=outcome,
            paths=paths,
            query=query,
            media_expires_at=expires,
        )


def _business_error() -> Response:
    """``malformed="business_error"``: the NestJS error body inside an HTTP 200."""
    return Response.json({"message": "Bad Request", "statusCode": 400, "error": "Bad Request"})


def _error(status: int, code: str, message: str) -> Response:
    """Tengr.ai's (NestJS) error shape: ``{"message", "statusCode", "error"}``."""
    if status == 401:
        return Response.json({"message": "Unauthorized", "statusCode": 401}, 401)
    if status == 429:
        message = "ThrottlerException: Too Many Requests"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = code
    return Response.json({"message": message, "statusCode": status, "error": phrase}, status)


_NUMERIC_KEYS: Final = ("creativity", "details", "width", "height", "duration", "batch")


def _mangle(payload: Any) -> Any:
    """``wrong_types`` fault: numbers and booleans as strings, ``createdAt`` as Unix ms."""
    if isinstance(payload, list):
        return [_mangle(v) for v in payload]
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _NUMERIC_KEYS and isinstance(value, int | float):
            out[key] = str(value)
        elif key == "nsfw" and isinstance(value, bool):
            out[key] = str(value).lower()
        elif key == "createdAt" and isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            out[key] = int(parsed.timestamp() * 1000)
        else:
            out[key] = _mangle(value)
    return out


class TengrAISimulator(ProviderSim):
    """The Tengr.ai artworks API on loopback. Use :func:`create` or pass a config."""

    name = "tengrai"
    api_path = ""  # the version is part of each path, not of the base URL

    def __init__(self, config: TengrAISimConfig | None = None) -> None:
        cfg = config or TengrAISimConfig()
        server = SimServer.for_config(
            "tengrai",
            cfg,
            media_prefixes=(CDN,),
            error_response=_error,
            wrong_types=_mangle,
            business_error=_business_error,
        )
        super().__init__(server, cfg.api_key)
        self.config = cfg
        self.error_body_in_200: dict[str, Any] | None = None
        """When set, every authorized API call answers HTTP 200 with this body."""
        self._arts = _Builder(cfg, server.clock.now()).build()
        self._by_id = {a.id: a for a in self._arts}
        for a in self._arts:
            delay = cfg.processing_seconds if a.processing else 0.0
            for path in a.paths:
                spec = media.MediaSpec(f"tengrai/{cfg.seed}{path}", cfg.image_size, "image")
                server.add_media(path, spec, expires_at=a.media_expires_at, available_after_s=delay)
        for version in VERSIONS:
            server.route(
                "GET",
                rf"/(?P<version>{version})/artworks/?",
                self._list,
                name=f"{version}/artworks",
            )
            server.route(
                "GET",
                rf"/(?P<version>{version})/artworks/(?P<id>[^/]+)",
                self._detail,
                name=f"{version}/artworks/id",
            )

    @property
    def account_options(self) -> dict[str, Any]:
        """``api_version``: v2 shows artworks in progress (and so exercises polling)."""
        return {"api_version": self.config.api_version}

    # ------------------------------------------------------------------ truth for tests

    @property
    def generations(self) -> list[dict[str, Any]]:
        """Every artwork (expired ones too) as the v2 detail would render it now."""
        return [self._render(a, "v2") for a in self._arts]

    @property
    def outcomes(self) -> dict[str, Outcome]:
        """How each artwork ends: ok, failed, canceled or empty (done with no results)."""
        return {a.id: a.outcome for a in self._arts}

    def expected_media(self) -> list[ExpectedFile]:
        """Every result URL of every artwork that is or will be successful."""
        out: list[ExpectedFile] = []
        for a in self._arts:
            for path in a.paths:
                entry = self.server.media_entry(path)
                assert entry is not None
                out.append(
                    ExpectedFile(
                        url=self.server.url(path) + a.query,
                        size=entry.spec.size,
                        sha256=media.sha256(entry.spec),
                        kind="image",
                        role="result",
                        generation_id=a.id,
                        expires_at=a.media_expires_at,
                        content_type=entry.spec.content_type,
                        source_field="results[]",
                    )
                )
        return out

    # ------------------------------------------------------------------ rendering

    def _state(self, a: _Art) -> tuple[str, datetime | None]:
        """``(v2 status, finished_at)`` at the current clock."""
        if a.outcome in ("failed", "canceled"):
            return a.outcome, a.created_at + timedelta(seconds=a.took)
        if not a.processing:
            return "succeeded", a.created_at + timedelta(seconds=a.took)
        wait = self.config.processing_seconds
        elapsed = self.clock.elapsed()
        if elapsed < wait / 4:
            return "starting", None
        if elapsed < wait:
            return "processing", None
        started = self.clock.started_at or a.created_at
        return "succeeded", max(a.created_at, started + timedelta(seconds=wait))

    def _render(self, a: _Art, version: str) -> dict[str, Any]:
        status, finished = self._state(a)
        done = status == "succeeded"
        params = dict(a.params)
        if version == "v1":
            params.pop("batch")
            status = "done" if done else "failed"
        duration = 0.0
        if finished is not None:
            duration = round((finished - a.created_at).total_seconds(), 1)
        return {
            "id": a.id,
            "artworkType": a.type,
            "parameters": params,
            "duration": duration,
            "results": [self.server.url(p) + a.query for p in a.paths] if done else [],
            "status": status,
            "createdAt": iso_ms(a.created_at),
        }

    def _visible(self, a: _Art, version: str) -> bool:
        """Not yet removed by retention; for v1 also finished (v1 creation is synchronous)."""
        if self.clock.now() >= a.expires_at:
            return False
        return version == "v2" or self._state(a)[0] not in ("starting", "processing")

    # ------------------------------------------------------------------ routes

    def _denied(self, req: Request) -> Response | None:
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "UNAUTHORIZED", "Unauthorized")
        if self.error_body_in_200 is not None:
            return Response.json(self.error_body_in_200, 200)
        return None

    def _list(self, req: Request) -> Response:
        denied = self._denied(req)
        if denied is not None:
            return denied
        offset = _int_param(req, "offset", 0, 0, None)
        limit = _int_param(req, "limit", 10, 1, MAX_LIMIT)
        for value in (offset, limit):
            if isinstance(value, Response):
                return value
        assert isinstance(offset, int) and isinstance(limit, int)
        version = req.params["version"]
        arts = [a for a in self._arts if self._visible(a, version)]
        return Response.json([self._render(a, version) for a in arts[offset : offset + limit]])

    def _detail(self, req: Request) -> Response:
        denied = self._denied(req)
        if denied is not None:
            return denied
        version = req.params["version"]
        a = self._by_id.get(req.params["id"])
        if a is None or not self._visible(a, version):
            return _error(404, "NOT_FOUND", "Artwork not found")
        return Response.json(self._render(a, version))


def _int_param(req: Request, name: str, default: int, low: int, high: int | None) -> int | Response:
    """A query integer with class-validator's messages as a 400 body."""
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return _error(400, "BAD_REQUEST", f"{name} must be an integer number")
    if value < low:
        return _error(400, "BAD_REQUEST", f"{name} must not be less than {low}")
    if high is not None and value > high:
        return _error(400, "BAD_REQUEST", f"{name} must not be greater than {high}")
    return value


def create(
    *, api_key: str | None = None, seed: int = 0, count: int | None = None, **knobs: Any
) -> TengrAISimulator:
    """Uniform factory used by the simulator registry; knobs are TengrAISimConfig fields."""
    return TengrAISimulator(
        config_from_knobs(TengrAISimConfig, api_key=api_key, seed=seed, count=count, knobs=knobs)
    )


__all__ = ["CDN", "RETENTION", "TengrAISimConfig", "TengrAISimulator", "create"]
