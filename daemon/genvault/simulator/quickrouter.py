"""Simulator of QuickRouter.ai's unified video task query, with a signing fake CDN.

Follows seed 004 (``GET /v1/video/query?id=``, ``Authorization: Bearer``, the Grok
example) and providers.md §5 (the Veo and Sora shapes of the same endpoint). There is
no listing: tests take the ids from :attr:`QuickRouterSimulator.task_ids` and register
them with ``genvault track``, as a user would from their own submission log.

Three task families, cycled: ``grok:<uuid>`` (flat; the answer's ``id`` drops the
``grok:`` prefix, as in the seed), ``veo3.1-fast:<unix>-<rand>`` (nested ``detail``
with ``req``, input ``images[]`` and ms timestamps) and ``sora-2:task_<ulid>``
(``detail`` with ``input`` and ``pending_info`` holding ISO times). Deliberate traps:

* the first ``processing_count`` tasks are in flight at server start: queued for
  the first half of ``processing_seconds``, running for the second half, then
  completed (or failed);
* the first in-flight task says ``completed`` with ``video_url: null`` for
  ``late_url_seconds`` more before its URL appears;
* one finished Veo task carries an earlier retry's ``error_message`` (reCAPTCHA
  403) although it completed: it must not be read as failed;
* every result URL is *signed* at query time (S3 SigV4-style ``X-Amz-Date`` +
  ``X-Amz-Expires`` for Grok and Sora, Discord-style ``ex=&is=&hm=`` for Veo) with
  a lifetime of ``url_ttl_seconds`` (mutable at runtime via the attribute of the
  same name), capped at the file's end of life (completion + 24 h). The CDN answers
  403 for an expired or forged signature, and for every signature once the file
  itself is older than 24 h. Re-reading the task returns the same path with a fresh
  signature.

Ids, prompts, families, failures and file bytes are a function of ``seed`` alone;
timestamps are relative to the simulator clock at construction (``clock_anchor``
makes them reproducible too).

Error shapes (the relay is a new-api deployment; chosen to match its OpenAI-style
errors): wrong or missing key -> 401 ``{"error": {"message": "Invalid token",
"type": "new_api_error"}}``; unknown id -> 404 ``{"error": {"message": "task not
found", "type": "invalid_request_error"}}``; an id of a model the relay has no
channel for (e.g. ``kling-v2:…``) -> **HTTP 200** ``{"code": "get_channel_failed",
"message": …, "data": null}`` (a business error inside a 200).
"""

from __future__ import annotations

import hashlib
import random
import string
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    MediaFile,
    ProviderSim,
    check_non_negative,
    config_from_knobs,
    expected_file,
    trunc_ms,
    uuid4ish,
)
from genvault.simulator.messages import Request, Response
from genvault.simulator.signing import Signing, SigningServer, sign_query, signature_expiry

QUERY_PATH: Final = "/v1/video/query"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
RETENTION: Final = timedelta(hours=24)
"""How long the CDN keeps a finished file, whatever the signature says."""

Family = Literal["grok", "veo", "sora"]
Phase = Literal["queued", "running", "done", "failed"]

_FAMILIES: Final[tuple[Family, ...]] = ("grok", "veo", "sora")
_VEO_MODELS: Final = ("veo3.1-fast", "veo3.1", "veo3-fast", "veo3.1-pro")
_NO_CHANNEL_MODELS: Final = frozenset({"kling-v2", "kling-v1-6", "luma-ray2", "wan2.5"})
_STATUS: Final[dict[Family, dict[Phase, str]]] = {
    "grok": {"queued": "pending", "running": "processing", "done": "completed", "failed": "failed"},
    "veo": {
        "queued": "pending",
        "running": "video_generating",
        "done": "completed",
        "failed": "failed",
    },
    "sora": {"queued": "pending", "running": "pending", "done": "completed", "failed": "failed"},
}
_SORA_PENDING: Final[dict[Phase, str]] = {
    "queued": "queued",
    "running": "processing",
    "done": "completed",
    "failed": "failed",
}
_FAILURES: Final[dict[Family, tuple[str, ...]]] = {
    "grok": ("Video generation failed: content moderation", "upstream timeout after 600s"),
    "veo": (
        "[400] The prompt could not be submitted. It violates Google's Responsible AI practices.",
        "[500] Internal error encountered during video generation",
    ),
    "sora": ("This content may violate our content policies.", "Generation failed: server busy"),
}
_STALE_ERROR: Final = (
    "[403] reCAPTCHA evaluation failed: score below threshold, retrying with a new session"
)
_SUBJECTS: Final = (
    "a majestic brown cow with feathered wings soaring over farmland",
    "a paper boat drifting down a rain-soaked city street",
    "a hummingbird hovering over a glowing desert flower",
    "an old lighthouse keeper climbing a spiral staircase",
    "a koi pond seen from above as autumn leaves fall",
    "a vintage tram crossing a bridge at golden hour",
)
_STYLES: Final = (
    "cinematic, 35mm",
    "dreamlike watercolor",
    "slow dolly-in",
    "handheld documentary",
)


@dataclass(frozen=True, slots=True)
class QuickRouterSimConfig:
    """Knobs of the QuickRouter simulator. Counts larger than ``count`` are clamped."""

    api_key: str = "sim-quickrouter-key"
    count: int = 12
    seed: int = 0
    video_size: int = 1_500_000
    image_size: int = 60_000
    processing_count: int = 4
    processing_seconds: float = 2.0
    late_url_seconds: float = 1.0
    failed_count: int = 2
    url_ttl_seconds: int = 86_400
    """Initial lifetime of each signed URL; ``QuickRouterSimulator.url_ttl_seconds`` changes it."""
    port: int = 0
    clock_anchor: datetime | None = None

    def __post_init__(self) -> None:
        check_non_negative(self)
        if self.url_ttl_seconds < 1:
            raise ValueError("url_ttl_seconds must be >= 1")


@dataclass(frozen=True, slots=True)
class _Task:
    """One task with its time-independent facts; the status is derived per request."""

    id: str
    """As submitted and as the user stores it: ``<model>:<upstream id>``."""
    upstream_id: str
    family: Family
    model: str
    prompt: str
    created_at: datetime
    completed_at: datetime
    """When the task finishes (or failed); for in-flight tasks, in the future at build."""
    in_flight: bool
    failed: bool
    error: str
    late_url: bool
    stale_error: bool
    video: MediaFile | None
    inputs: tuple[MediaFile, ...]
    aspect_ratio: str

    @property
    def signing(self) -> Signing:
        return "discord" if self.family == "veo" else "s3"

    @property
    def files(self) -> tuple[MediaFile, ...]:
        return ((self.video,) if self.video else ()) + self.inputs


# --------------------------------------------------------------------------- data


class _Builder:
    """Builds the deterministic task list from a seeded RNG."""

    def __init__(self, cfg: QuickRouterSimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"quickrouter:{cfg.seed}")
        self.now = trunc_ms(now)

    def token(self, n: int, alphabet: str) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def build(self) -> list[_Task]:
        cfg, r = self.cfg, self.rng
        n = cfg.count
        n_proc = min(cfg.processing_count, n)
        families = [_FAMILIES[i % 3] for i in range(n)]
        stale = next(
            (i for i in range(n_proc, n) if families[i] == "veo"),
            None,
        )
        pool = [i for i in range(n) if i != stale and not (i == 0 and n_proc)]
        failed = set(r.sample(pool, min(cfg.failed_count, len(pool))))
        return [
            self.task(i, families[i], i < n_proc, i in failed, i == 0 and n_proc > 0, i == stale)
            for i in range(n)
        ]

    def task(
        self, i: int, family: Family, in_flight: bool, failed: bool, late: bool, stale: bool
    ) -> _Task:
        cfg, r = self.cfg, self.rng
        if in_flight:
            created = self.now - timedelta(seconds=5 + 7 * i, milliseconds=r.randint(0, 999))
            done = trunc_ms(self.now + timedelta(seconds=cfg.processing_seconds))
        else:
            created = self.now - timedelta(seconds=r.uniform(600, 20 * 3600))
            created = trunc_ms(created)
            took = {"grok": 60.0, "veo": 150.0, "sora": 200.0}[family] * (0.5 + r.random())
            done = created + timedelta(milliseconds=round(took * 1000))
        prompt = f"{r.choice(_SUBJECTS).capitalize()}, {r.choice(_STYLES)}"
        stamp = created.strftime("%Y%m%d")
        if family == "grok":
            upstream = uuid4ish(r)
            task_id, model = f"grok:{upstream}", "grok-video-3"
            video_path, field = f"/storage/grok/{upstream}.mp4", "video_url"
        elif family == "veo":
            model = r.choice(_VEO_MODELS)
            # "<unix seconds>-<random>" like the doc's; drawn from the RNG, not the clock,
            # so a seed always yields the same ids.
            unix = 1_770_000_000 + r.randint(0, 9_999_999)
            upstream = f"{unix}-{self.token(10, string.ascii_letters)}"
            task_id = f"{model}:{upstream}"
            video_path, field = f"/cdn/{stamp}/{r.getrandbits(128):032x}.mp4", "detail.video_url"
        else:
            upstream = "task_" + self.token(26, "0123456789abcdefghjkmnpqrstvwxyz")
            task_id, model = f"sora-2:{upstream}", "sora-2"
            video_path, field = f"/storage/sora/{upstream}.mp4", "detail.url"
        inputs: tuple[MediaFile, ...] = ()
        if family != "grok" and i % 2 == 0:
            source = "detail.images[].url" if family == "veo" else "detail.input.images[]"
            inputs = tuple(
                MediaFile(
                    f"/cdn/{stamp}/{self.token(30, string.ascii_letters + string.digits)}.jpg",
                    "image",
                    cfg.image_size,
                    "reference",
                    source,
                )
                for _ in range(1 + i % 4 // 2)
            )
        video = None if failed else MediaFile(video_path, "video", cfg.video_size, "result", field)
        return _Task(
            id=task_id,
            upstream_id=upstream,
            family=family,
            model=model,
            prompt=prompt,
            created_at=created,
            completed_at=done,
            in_flight=in_flight,
            failed=failed,
            error=r.choice(_FAILURES[family]) if failed else "",
            late_url=late,
            stale_error=stale,
            video=video,
            inputs=inputs,
            aspect_ratio=r.choice(("16:9", "9:16")),
        )


def _business_error() -> Response:
    """``malformed="business_error"``: the relay's OpenAI-style error inside an HTTP 200.

    QuickRouter documents no error shape; new-api relays answer ``{"error": {...}}``.
    """
    return Response.json({"error": {"message": "upstream request failed", "type": "new_api_error"}})


def _error(status: int, code: str, message: str) -> Response:
    """The relay's OpenAI-style error; ``code`` is the ``type`` (faults pass generic codes)."""
    kind = code.lower() if code.lower().endswith("_error") else "new_api_error"
    return Response.json({"error": {"message": message, "type": kind}}, status)


# --------------------------------------------------------------------------- simulator


class QuickRouterSimulator(ProviderSim[QuickRouterSimConfig]):
    """QuickRouter's ``/v1/video/query`` on loopback. Use :func:`create` or pass a config."""

    name = "quickrouter"
    api_path = ""
    media_prefixes = ("/cdn/", "/storage/")
    error_response = _error
    business_error = _business_error
    server_class = SigningServer

    def __init__(self, config: QuickRouterSimConfig | None = None) -> None:
        cfg = config or QuickRouterSimConfig()
        secret = hashlib.sha256(f"quickrouter-cdn:{cfg.seed}".encode()).digest()
        super().__init__(cfg, secret=secret)
        server = cast(SigningServer, self.server)
        self.url_ttl_seconds = cfg.url_ttl_seconds
        """Lifetime of URLs signed from now on (tests shorten or lengthen it at runtime)."""
        self.last_headers: dict[str, str] = {}
        """Headers of the last authorized query (tests check Accept/Content-Type)."""
        self._server_ref = server
        self._lock = threading.Lock()
        self._tasks = _Builder(cfg, server.clock.now()).build()
        self._by_id = {t.id: t for t in self._tasks}
        for t in self._tasks:
            for n, f in enumerate(t.files):
                available = 0.0
                if t.in_flight and f.role == "result":
                    available = cfg.processing_seconds + (cfg.late_url_seconds if t.late_url else 0)
                server.add_media(
                    f.path,
                    self._spec(t, n, f),
                    expires_at=t.completed_at + RETENTION,
                    available_after_s=available,
                )
                if f.role == "result":
                    server.signed_paths.add(f.path)
        server.route("GET", QUERY_PATH, self._query, name="video/query")

    def _spec(self, t: _Task, n: int, f: MediaFile) -> media.MediaSpec:
        """The bytes of a task's ``n``-th file: the seed and the task id only (paths
        carry dates)."""
        return media.MediaSpec(f"quickrouter/{self.config.seed}/{t.id}/{n}", f.size, f.kind)

    @property
    def account_options(self) -> dict[str, Any]:
        """The simulated CDN keeps files for 24 h, which is also the adapter's default rule."""
        return {"url_lifetime_hours": RETENTION.total_seconds() / 3600}

    # ------------------------------------------------------------------ truth for tests

    @property
    def task_ids(self) -> list[str]:
        """Every task id as the user submitted it (what ``genvault track`` is given)."""
        return [t.id for t in self._tasks]

    @property
    def failures(self) -> dict[str, str]:
        """Failed task id -> the reason the relay reports."""
        return {t.id: t.error for t in self._tasks if t.failed}

    @property
    def late_url_id(self) -> str | None:
        """The task that is ``completed`` for a while before its URL appears."""
        return next((t.id for t in self._tasks if t.late_url), None)

    @property
    def stale_error_id(self) -> str | None:
        """The completed Veo task that still carries an earlier retry's ``error_message``."""
        return next((t.id for t in self._tasks if t.stale_error), None)

    def deadline(self, task_id: str) -> datetime:
        """When the CDN drops the task's files: completion + 24 h."""
        return self._by_id[task_id].completed_at + RETENTION

    def task(self, task_id: str) -> dict[str, Any]:
        """What ``/v1/video/query?id=`` answers for a task right now."""
        return self._render(self._by_id[task_id])

    def signed_url(self, path: str) -> str:
        """A freshly signed URL of a result path (unsigned paths are returned plain)."""
        url = self.server.url(path)
        if path not in self._server_ref.signed_paths:
            return url
        task = next(t for t in self._tasks if t.video and t.video.path == path)
        now = self.clock.now().replace(microsecond=0)
        # A signature never outlives the file: at most up to the 24 h retention.
        left = int((task.completed_at + RETENTION - now).total_seconds())
        ttl = max(1, min(self.url_ttl_seconds, left))
        return f"{url}?{sign_query(path, task.signing, now, ttl, self._server_ref.secret)}"

    def expected_media(self) -> list[ExpectedFile]:
        """Every file of every task that is or will be completed (URLs signed now).

        Signatures change on every read, so compare with ``identity.url_key`` or the path.
        """
        return [
            expected_file(
                self.signed_url(f.path),
                self._spec(t, n, f),
                role=f.role,
                generation_id=t.id,
                expires_at=t.completed_at + RETENTION,
                source_field=f.source_field,
            )
            for t in self._tasks
            if not t.failed
            for n, f in enumerate(t.files)
        ]

    # ------------------------------------------------------------------ rendering

    def _phase(self, t: _Task) -> tuple[Phase, bool]:
        """``(phase, url_published)`` at the current clock."""
        if not t.in_flight:
            return ("failed", False) if t.failed else ("done", True)
        wait = self.config.processing_seconds
        elapsed = self.clock.elapsed()
        if elapsed < wait / 2:
            return "queued", False
        if elapsed < wait:
            return "running", False
        if t.failed:
            return "failed", False
        return "done", not t.late_url or elapsed >= wait + self.config.late_url_seconds

    def _render(self, t: _Task) -> dict[str, Any]:
        phase, published = self._phase(t)
        url = self.signed_url(t.video.path) if published and t.video else None
        if t.family == "grok":
            return self._grok(t, phase, url)
        if t.family == "veo":
            return self._veo(t, phase, url)
        return self._sora(t, phase, url)

    def _changed_at(self, t: _Task, phase: Phase) -> datetime:
        """When the task last changed status (the relay's ``status_update_time``)."""
        if phase in ("done", "failed"):
            return t.completed_at
        if phase == "running":
            return t.completed_at - timedelta(seconds=self.config.processing_seconds / 2)
        return t.created_at

    def _grok(self, t: _Task, phase: Phase, url: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": t.upstream_id,  # the seed's example: no "grok:" prefix in the answer
            "status": _STATUS["grok"][phase],
            "video_url": url,
            "enhanced_prompt": f"```\n{t.prompt}. The scene is bathed in warm light.\n```",
            "status_update_time": _ms(self._changed_at(t, phase)),
        }
        if phase == "failed":
            body["error"] = t.error
        return body

    def _veo(self, t: _Task, phase: Phase, url: str | None) -> dict[str, Any]:
        inputs = [self.server.url(f.path) for f in t.inputs]
        retries = 3 if t.stale_error else (1 if phase == "failed" else 0)
        error = _STALE_ERROR if t.stale_error else (t.error if phase == "failed" else None)
        return {
            "id": t.id,
            "detail": {
                "id": t.id,  # the doc's example repeats the full id here
                "req": {
                    "model": t.model,
                    "prompt": t.prompt,
                    "images": inputs,
                    "aspect_ratio": t.aspect_ratio,
                    "enhance_prompt": True,
                    "enable_upsample": False,
                },
                "images": [
                    {"url": u, "status": "completed", "mediaId": f"CAMa{i}{t.upstream_id[-6:]}"}
                    for i, u in enumerate(inputs)
                ],
                "status": _STATUS["veo"][phase],
                "running": phase in ("queued", "running"),
                "video_url": url,
                "created_at": _ms(t.created_at),
                "error_sleep": 5000,
                "max_retries": 3,
                "retry_count": retries,
                "completed_at": _ms(t.completed_at) if phase in ("done", "failed") else None,
                "error_message": error,
                "video_media_id": f"vm_{t.upstream_id}" if url else None,
            },
        }

    def _sora(self, t: _Task, phase: Phase, url: str | None) -> dict[str, Any]:
        progress = {"queued": 0.0, "running": 0.47, "done": 1.0, "failed": 0.0}[phase]
        portrait = t.aspect_ratio == "9:16"
        detail: dict[str, Any] = {
            "id": t.upstream_id,
            "input": {
                "size": "small",
                "model": "sy_ore",  # the upstream's code name, as in the doc's example
                "images": [self.server.url(f.path) for f in t.inputs],
                "prompt": t.prompt,
                "orientation": "portrait" if portrait else "landscape",
            },
            "status": _STATUS["sora"][phase],
            "pending_info": {
                "id": t.upstream_id,
                "seed": None,
                "type": "video_gen",
                "model": "sy_8",
                "title": "New Video",
                "width": 352 if portrait else 640,
                "height": 640 if portrait else 352,
                "prompt": t.prompt,
                "status": _SORA_PENDING[phase],
                "n_frames": 450,
                "priority": 2,
                "operation": "simple_compose",
                "created_at": _iso_us(t.created_at),
                "n_variants": 1,
                "generations": [],
                "progress_pct": progress,
            },
            "url": url,
        }
        if phase in ("done", "failed"):
            detail["completed_at"] = _iso_us(t.completed_at)
        if phase == "failed":
            detail["failure_reason"] = t.error
        return {"id": t.id, "detail": detail}

    # ------------------------------------------------------------------ route

    def _query(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        if not auth:
            return _error(401, "new_api_error", "No token provided")
        if auth != f"Bearer {self.api_key}":
            return _error(401, "new_api_error", "Invalid token")
        with self._lock:
            self.last_headers = dict(req.headers.items())
        task_id = req.query.get("id", "").strip()
        if not task_id:
            return _error(400, "invalid_request_error", "id is required")
        prefix = task_id.partition(":")[0] if ":" in task_id else ""
        if prefix in _NO_CHANNEL_MODELS:
            message = f"no available channel for model {prefix} under group default"
            return Response.json({"code": "get_channel_failed", "message": message, "data": None})
        t = self._by_id.get(task_id)
        if t is None:
            return _error(404, "invalid_request_error", "task not found")
        return Response.json(self._render(t))


def _ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _iso_us(value: datetime) -> str:
    """``2025-10-06T15:10:26.875000Z``: Sora's ISO form with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create(
    *, api_key: str | None = None, seed: int = 0, count: int | None = None, **knobs: Any
) -> QuickRouterSimulator:
    """Uniform factory used by the simulator registry; knobs are QuickRouterSimConfig fields."""
    return QuickRouterSimulator(
        config_from_knobs(
            QuickRouterSimConfig, api_key=api_key, seed=seed, count=count, knobs=knobs
        )
    )


__all__ = [
    "QUERY_PATH",
    "QuickRouterSimConfig",
    "QuickRouterSimulator",
    "create",
    "sign_query",
    "signature_expiry",
]
