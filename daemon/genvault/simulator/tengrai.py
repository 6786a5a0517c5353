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

Knobs for a listing that is not a stable snapshot, as on a live account:

* churn (``churn_delete_per_request``, ``churn_insert_per_request``,
  ``churn_requests``): after answering a listing request (the page served reflects
  the state before), the simulator deletes some visible artworks at random (seeded)
  and inserts new ones at the top, so offsets drift between two page requests. A
  deleted artwork leaves the listing, its detail is a 404 like an expired one and its
  files answer 404 on the CDN. Tests can do the same directly with
  :meth:`TengrAISimulator.delete_artworks` and :meth:`TengrAISimulator.insert_artworks`;
* ``ignore_offset``: the listing answers every request as if ``offset`` were 0;
* ``list_order``: newest first (what the real API does today) or oldest first; the
  API documents no order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Final, Literal

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    check_non_negative,
    config_from_knobs,
    expected_file,
    iso_ms,
    trunc_ms,
    uuid4ish,
)
from genvault.simulator.faults import UNCHANGED, mangle_keys
from genvault.simulator.history import HistorySim
from genvault.simulator.messages import Request, Response

CDN: Final = "/cdn/"
RETENTION: Final = timedelta(days=8)
MAX_LIMIT: Final = 500
VERSIONS: Final = ("v1", "v2")

Outcome = Literal["ok", "failed", "canceled", "empty"]
ListOrder = Literal["newest_first", "oldest_first"]
LIST_ORDERS: Final = ("newest_first", "oldest_first")

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
    churn_delete_per_request: int = 0
    """After each churning listing request, delete this many visible artworks, picked
    at random (seeded): gone from the listing, detail 404, files 404 on the CDN."""
    churn_insert_per_request: int = 0
    """After each churning listing request, insert this many new artworks at the top:
    created at the simulator clock's now, finished (``succeeded``/``done``), one result
    image on the CDN."""
    churn_requests: int = 0
    """How many listing requests (v1 or v2, answered with a page) churn; 0 = every one."""
    ignore_offset: bool = False
    """The listing ignores ``offset`` (still validated) and answers as if it were 0."""
    list_order: ListOrder = "newest_first"
    """Order of the listing: ``newest_first`` (as today) or ``oldest_first``; the API
    documents none. Inserted artworks are the newest, so they come last oldest-first."""
    port: int = 0
    clock_anchor: datetime | None = None
    """Pretend the simulation starts at this instant (reproducible timestamps)."""

    def __post_init__(self) -> None:
        check_non_negative(self)
        if not 0 < self.max_age_days < RETENTION.days:
            raise ValueError("max_age_days must be in (0, 8)")
        if self.api_version not in VERSIONS:
            raise ValueError(f"api_version must be one of {VERSIONS}")
        if self.list_order not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {LIST_ORDERS}")


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
        self.now = trunc_ms(now)

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

    def artwork(
        self,
        i: int,
        age: float,
        processing: bool,
        outcome: Outcome,
        signed: bool,
        batch: int | None = None,
    ) -> _Art:
        """Artwork number ``i``, ``age`` seconds old; ``batch`` forces the result count."""
        cfg, r = self.cfg, self.rng
        art_id = uuid4ish(r)
        kind = _TYPES[i % len(_TYPES)]
        aspect = r.choice(list(_SIZES))
        width, height = _SIZES[aspect]
        if batch is None:
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


def _spoil(key: str, value: Any) -> Any:
    """``wrong_types`` fault: numbers and booleans as strings, ``createdAt`` as Unix ms."""
    if key in _NUMERIC_KEYS and isinstance(value, int | float):
        return str(value)
    if key == "nsfw" and isinstance(value, bool):
        return str(value).lower()
    if key == "createdAt" and isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    return UNCHANGED


def _mangle(payload: Any) -> Any:
    return mangle_keys(payload, _spoil)


class TengrAISimulator(HistorySim[TengrAISimConfig, _Art]):
    """The Tengr.ai artworks API on loopback. Use :func:`create` or pass a config."""

    name = "tengrai"
    api_path = ""  # the version is part of each path, not of the base URL
    media_prefixes = (CDN,)
    error_response = _error
    wrong_types = _mangle
    business_error = _business_error

    def __init__(self, config: TengrAISimConfig | None = None) -> None:
        super().__init__(config or TengrAISimConfig())
        cfg, server = self.config, self.server
        self.error_body_in_200: dict[str, Any] | None = None
        """When set, every authorized API call answers HTTP 200 with this body."""
        self._builder = _Builder(cfg, server.clock.now())
        self._start_history(self._builder.build())
        for a in self._items:
            self._serve(a, cfg.processing_seconds if a.processing else 0.0)
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

    def _spec(self, path: str) -> media.MediaSpec:
        return media.MediaSpec(f"tengrai/{self.config.seed}{path}", self.config.image_size, "image")

    def _serve(self, a: _Art, delay: float) -> None:
        for path in a.paths:
            self.server.add_media(
                path, self._spec(path), expires_at=a.media_expires_at, available_after_s=delay
            )

    def _item_id(self, a: _Art) -> str:
        return a.id

    def _item_paths(self, a: _Art) -> Iterable[str]:
        return a.paths

    def _new_item(self, i: int, now: datetime) -> _Art:
        """An inserted artwork: finished, one result image, the usual 8 days to live."""
        self._builder.now = now
        return self._builder.artwork(i, 0.0, False, "ok", False, batch=1)

    def _churn_candidates(self) -> list[str]:
        return [a.id for a in self._items if self._visible(a, "v2")]

    @property
    def account_options(self) -> dict[str, Any]:
        """``api_version``: v2 shows artworks in progress (and so exercises polling)."""
        return {"api_version": self.config.api_version}

    # ------------------------------------------------------------------ truth for tests

    @property
    def generations(self) -> list[dict[str, Any]]:
        """Every artwork (expired and deleted ones too) as the v2 detail would render it
        now, newest first; :attr:`deleted_ids` tells the deleted ones."""
        with self._lock:
            return [self._render(a, "v2") for a in self._items]

    @property
    def outcomes(self) -> dict[str, Outcome]:
        """How each artwork ends: ok, failed, canceled or empty (done with no results)."""
        with self._lock:
            return {a.id: a.outcome for a in self._items}

    @property
    def live_ids(self) -> list[str]:
        """Ids the v2 listing shows right now, in the listing's order (``list_order``).

        Not expired, not deleted; the v1 listing shows these minus the ones in progress.
        """
        with self._lock:
            return [a.id for a in self._listed("v2")]

    def delete_artworks(self, ids: Iterable[str]) -> None:
        """Delete these artworks now: gone from the listing, detail 404, files 404.

        Deleting one already deleted is a no-op; an unknown id raises ``KeyError``.
        """
        self._delete(ids)

    def insert_artworks(self, n: int) -> list[str]:
        """Create ``n`` artworks now, at the top of the (newest-first) listing.

        Each is created at the simulator clock's now, finished (v2 ``succeeded``, v1
        ``done``) and has one result image served by the CDN; it lives the usual 8 days.
        Returns the new ids, newest first (the last one created is the newest).
        """
        return self._insert(n)

    def expected_media(self, include_deleted: bool = False) -> list[ExpectedFile]:
        """Every result URL of every artwork that is or will be successful, newest first.

        Inserted artworks are included; deleted ones are left out unless
        ``include_deleted`` (their files are no longer served).
        """
        return [
            expected_file(
                self.server.url(path) + a.query,
                self._spec(path),
                role="result",
                generation_id=a.id,
                expires_at=a.media_expires_at,
                source_field="results[]",
            )
            for a in self._kept(include_deleted)
            for path in a.paths
        ]

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
        """Not deleted nor removed by retention; for v1 also finished (v1 creation is
        synchronous)."""
        if a.id in self._deleted or self.clock.now() >= a.expires_at:
            return False
        return version == "v2" or self._state(a)[0] not in ("starting", "processing")

    def _listed(self, version: str) -> list[_Art]:
        """What the listing of ``version`` shows now, in ``list_order`` (lock held)."""
        arts = [a for a in self._items if self._visible(a, version)]
        if self.config.list_order == "oldest_first":
            arts.reverse()
        return arts

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
        if self.config.ignore_offset:
            offset = 0
        version = req.params["version"]
        with self._lock:
            arts = self._listed(version)
            page = [self._render(a, version) for a in arts[offset : offset + limit]]
            resp = Response.json(page)  # encoded now: the churn below comes after it
            self.churn()
        return resp

    def _detail(self, req: Request) -> Response:
        denied = self._denied(req)
        if denied is not None:
            return denied
        version = req.params["version"]
        with self._lock:
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


__all__ = ["CDN", "LIST_ORDERS", "RETENTION", "TengrAISimConfig", "TengrAISimulator", "create"]
