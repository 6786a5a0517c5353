"""Simulator of the GeminiGen.AI history API (``/uapi/v1``), with its fake CDN.

Follows the "Generation History APIs" doc (seed 001) field by field, plus what
third-party clients show (see ``providers.md`` section 2): ``x-api-key`` auth, errors
as ``{"detail": {"error_code", "error_message"}}``, status ``1``/``2``/``3``,
ISO-8601 UTC timestamps with milliseconds and ``expired_at`` = created + 30 days.

The data is deterministic for a seed (ids, uuids, prompts, types, sizes, ages), so
tests know in advance every media URL and its SHA-256 (:meth:`expected_media`).
Timestamps are relative to the simulator clock at construction. Deliberate traps
for the archiver, as the real API is believed to behave:

* the list's ``media_files`` of a video omits the video itself (only the last frame
  is listed), so the archiver must read the detail;
* ``*_uri`` fields are relative (``videos/x.mp4``), ``*_url`` fields absolute;
* some image generations have two images, some items have a reference input;
* the newest ``processing_count`` items are status 1 (no media, ``expired_at: null``)
  until ``processing_seconds`` after server start; then they turn 2 and their
  ``updated_at`` moves forward;
* ``expired_count`` oldest items are older than 30 days: their CDN URLs answer 403;
* ``detail_only_count`` completed image generations hold more in their detail than
  the list shows, like the seed's detail example: a second image (with a thumbnail)
  in ``generated_image``, a video (with ``last_frame``) in ``generated_video`` and an
  audio in ``generated_audio``, while the list's ``media_files`` and
  ``generate_result`` name only the first image.

Churn (``churn_delete_per_request``, ``churn_insert_per_request``, ``churn_requests``):
after answering a ``/histories`` request (the page served reflects the state before),
the simulator deletes some generations at random (seeded) and inserts new completed
image generations at the top. Pages are cut from the current list at request time and
``total`` is the current count, so items shift between two page requests as on a live
account. A deleted generation leaves the list, its detail is a 404 and its files answer
404 on the CDN. Tests can do the same directly with
:meth:`GeminiGenSimulator.delete_generations` and
:meth:`GeminiGenSimulator.insert_generations`.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    ProviderSim,
    Role,
    check_non_negative,
    config_from_knobs,
    iso_ms,
)
from genvault.simulator.messages import Request, Response

API_PATH: Final = "/uapi/v1"
CDN: Final = "/cdn/"
RETENTION: Final = timedelta(days=30)

GenKind = Literal["image", "video", "audio"]

_TYPE_CYCLE: Final[tuple[GenKind, ...]] = ("image", "image", "video", "image", "audio")
_TYPE_NAMES: Final[dict[GenKind, str]] = {
    "image": "image_generation",
    "video": "video_generation",
    "audio": "text_to_speech",
}
_FILTERS: Final[dict[str, str | None]] = {
    "all": None,
    "image": "image_generation",
    "video": "video_generation",
    "audio": "text_to_speech",
}
_MODELS: Final[dict[GenKind, tuple[str, ...]]] = {
    "image": ("imagen-4", "nano-banana", "imagen-4-ultra"),
    "video": ("veo-3-fast", "veo-3", "veo-2"),
    "audio": ("tts-flash", "tts-pro"),
}
_ERRORS: Final = (
    ("GEMINI_RATE_LIMIT", "Gemini API rate limit reached, please try again later"),
    ("SAFETY_FILTER_BLOCKED", "The prompt was blocked by the safety filter"),
    ("GENERATION_TIMEOUT", "The generation did not finish in time"),
)
_SUBJECTS: Final = (
    "a lighthouse on a cliff",
    "a red fox in fresh snow",
    "a neon-lit street market",
    "an astronaut tending a garden",
    "a glass teapot full of galaxies",
    "a mountain lake at dawn",
    "a steam train crossing a viaduct",
    "a cat reading a newspaper",
)
_STYLES: Final = (
    "photorealistic",
    "watercolor",
    "cinematic lighting",
    "isometric 3D render",
    "35mm film grain",
    "studio ghibli style",
)
_SPEECH: Final = (
    "Welcome back to the channel, today we are baking bread.",
    "Your order has shipped and will arrive on Thursday.",
    "Breathe in slowly, hold, and breathe out.",
    "The museum opens at nine and closes at six.",
)
_VOICES: Final = ("Gacrux", "Kore", "Puck", "Charon", "Zephyr")


@dataclass(frozen=True, slots=True)
class GeminiGenSimConfig:
    """Knobs of the GeminiGen simulator. Counts larger than ``count`` are clamped."""

    api_key: str = "sim-geminigen-key"
    count: int = 25
    seed: int = 0
    image_size: int = 200_000
    video_size: int = 2_000_000
    audio_size: int = 300_000
    thumbnail_size: int = 12_000
    processing_count: int = 3
    processing_seconds: float = 2.0
    failed_count: int = 2
    expired_count: int = 0
    detail_only_count: int = 0
    """Completed one-image generations (not expired) whose detail adds a second image
    with a thumbnail, a video with its last frame and an audio that the list's
    ``media_files``/``generate_result`` do not name (clamped to how many there are)."""
    max_items_per_page: int = 100
    """Server-side page cap: a page holds ``min(items_per_page, cap)`` items and starts at
    ``(page - 1) * min(items_per_page, cap)``, so a client asking for more than the cap
    and stepping ``page`` still sees every item once; ``total`` is the full count."""
    churn_delete_per_request: int = 0
    """After each churning ``/histories`` request, delete this many generations picked at
    random (seeded): gone from the list and ``total``, detail 404, files 404 on the CDN."""
    churn_insert_per_request: int = 0
    """After each churning ``/histories`` request, insert this many new generations at
    the top: completed (status 2) image generations created at the simulator clock's
    now, one image and its thumbnail on the CDN."""
    churn_requests: int = 0
    """How many ``/histories`` requests (answered with a page) churn; 0 = every one."""
    port: int = 0
    clock_anchor: datetime | None = None
    """Pretend the simulation starts at this instant (reproducible timestamps)."""

    def __post_init__(self) -> None:
        check_non_negative(self)
        if self.max_items_per_page < 1:
            raise ValueError("max_items_per_page must be >= 1")


@dataclass(frozen=True, slots=True)
class _File:
    """One media file of a generation, as a path on the fake CDN."""

    path: str
    kind: media.MediaKind
    size: int
    role: Role
    source_field: str

    @property
    def uri(self) -> str:
        """The relative form GeminiGen puts in ``*_uri`` fields (``videos/x.mp4``)."""
        return self.path.removeprefix(CDN)


@dataclass(frozen=True, slots=True)
class _Output:
    """One entry of ``generated_image``/``generated_video``/``generated_audio``."""

    id: int
    uuid: str
    file: _File
    thumbnail: _File | None = None
    last_frame: _File | None = None

    @property
    def kind(self) -> media.MediaKind:
        return self.file.kind


@dataclass(frozen=True, slots=True)
class _Reference:
    id: int
    uuid: str
    original: _File
    thumbnail: _File


@dataclass(frozen=True, slots=True)
class _Gen:
    """One generation, with its time-independent facts; status is derived at request time."""

    id: int
    uuid: str
    kind: GenKind
    model_name: str
    prompt: str
    name: str
    negative_prompt: str
    used_credit: int
    created_at: datetime
    finished_at: datetime
    processing: bool
    failed: bool
    error_code: str
    error_message: str
    outputs: tuple[_Output, ...]
    thumbnail: _File | None
    reference: _Reference | None
    aspect_ratio: str
    voice: str
    detail_only: bool = False
    """The list names only the first output; the rest appear in the detail alone."""

    @property
    def expires_at(self) -> datetime:
        return self.created_at + RETENTION

    @property
    def inference_type(self) -> str:
        if self.kind == "audio":
            return "text_to_speech"
        source = "image" if self.reference else "text"
        return f"{source}_to_{self.kind}"

    def files(self) -> list[_File]:
        """Every served file of the generation, results first, in payload order."""
        out: list[_File] = []
        for o in self.outputs:
            out.append(o.file)
            out.extend(f for f in (o.thumbnail, o.last_frame) if f is not None)
        if self.thumbnail is not None:
            out.append(self.thumbnail)
        if self.reference is not None:
            out.extend((self.reference.original, self.reference.thumbnail))
        return out


class _Builder:
    """Builds the deterministic generation list from a seeded RNG."""

    def __init__(self, cfg: GeminiGenSimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"geminigen:{cfg.seed}")
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self.next_sub_id = self.rng.randint(10_000, 50_000)

    def uuid1ish(self) -> str:
        """A UUIDv1-shaped id (``548b28e6-2733-11f1-9105-4638fdaf9e0b``) from the RNG."""
        r = self.rng
        return (
            f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-11f1-"
            f"{0x8000 | r.getrandbits(14):04x}-{r.getrandbits(48):012x}"
        )

    def sub_id(self) -> int:
        self.next_sub_id += self.rng.randint(1, 7)
        return self.next_sub_id

    def ages(self) -> list[float]:
        """Age in seconds of each item, newest first (index 0 is the newest)."""
        cfg, r = self.cfg, self.rng
        n = cfg.count
        n_proc = min(cfg.processing_count, n)
        n_exp = min(cfg.expired_count, n - n_proc)
        n_mid = n - n_proc - n_exp
        proc = [5.0 + 7.0 * i + r.random() for i in range(n_proc)]
        mid = sorted(r.uniform(120.0, 20 * 86_400.0) for _ in range(n_mid))
        old = sorted(r.uniform(31 * 86_400.0, 40 * 86_400.0) for _ in range(n_exp))
        return proc + mid + old

    def build(self) -> list[_Gen]:
        cfg, r = self.cfg, self.rng
        ages = self.ages()
        n_proc = min(cfg.processing_count, cfg.count)
        n_exp = min(cfg.expired_count, cfg.count - n_proc)
        pool = list(range(n_proc, cfg.count - n_exp))
        failed = set(r.sample(pool, min(cfg.failed_count, len(pool))))
        first_id = r.randint(1_000, 90_000)
        gens = [
            self.generation(i, first_id + cfg.count - i, ages[i], i < n_proc, i in failed)
            for i in range(cfg.count)
        ]
        # drawn after the list is built, so the knob leaves every other item unchanged
        single = [i for i in pool if i not in failed and gens[i].kind == "image"]
        single = [i for i in single if len(gens[i].outputs) == 1]
        for i in sorted(r.sample(single, min(cfg.detail_only_count, len(single)))):
            g = gens[i]
            gens[i] = dataclasses.replace(
                g, outputs=g.outputs + self.detail_only_outputs(), detail_only=True
            )
        return gens

    def detail_only_outputs(self) -> tuple[_Output, ...]:
        """What ``detail_only_count`` adds to an image generation's detail: a second
        image with its thumbnail, a video with its last frame, an audio."""
        (video,), _ = self.media_for("video", "", two_images=False)
        (audio,), _ = self.media_for("audio", "", two_images=False)
        return self.second_image(), video, audio

    def generation(
        self,
        i: int,
        gen_id: int,
        age: float,
        processing: bool,
        failed: bool,
        *,
        plain_image: bool = False,
    ) -> _Gen:
        """Item number ``i``, ``age`` seconds old; ``plain_image``: an image generation
        with one image and no reference input, whatever ``i`` says."""
        cfg, r = self.cfg, self.rng
        kind: GenKind = "image" if plain_image else _TYPE_CYCLE[i % len(_TYPE_CYCLE)]
        uuid = self.uuid1ish()
        created = self.now - timedelta(milliseconds=round(age * 1000))
        took = {"image": 12.0, "video": 95.0, "audio": 6.0}[kind] * (0.5 + r.random())
        finished = min(self.now, created + timedelta(milliseconds=round(took * 1000)))
        if kind == "audio":
            prompt = r.choice(_SPEECH)
        else:
            prompt = f"{r.choice(_SUBJECTS).capitalize()}, {r.choice(_STYLES)}"
        code, message = r.choice(_ERRORS)
        has_media = not failed
        outputs: tuple[_Output, ...] = ()
        thumb: _File | None = None
        reference: _Reference | None = None
        if has_media:
            two_images = i % 4 == 3 and not plain_image
            outputs, thumb = self.media_for(kind, uuid, two_images=two_images)
            if kind != "audio" and i % 3 == 1 and not plain_image:
                ref_uuid = self.uuid1ish()
                reference = _Reference(
                    self.sub_id(),
                    ref_uuid,
                    _File(
                        f"{CDN}references/{ref_uuid}.jpg",
                        "image",
                        max(1, cfg.image_size // 2),
                        "reference",
                        "input_file_path",
                    ),
                    _File(
                        f"{CDN}thumbnails/{ref_uuid}_thumb.jpg",
                        "image",
                        min(cfg.thumbnail_size, cfg.image_size),
                        "reference",
                        "reference_item[].thumbnail_url",
                    ),
                )
        return _Gen(
            id=gen_id,
            uuid=uuid,
            kind=kind,
            model_name=r.choice(_MODELS[kind]),
            prompt=prompt,
            name=" ".join(w.capitalize() for w in prompt.split(",")[0].split()[:4]),
            negative_prompt=r.choice(("", "", "blurry, low quality", "text, watermark")),
            used_credit={"image": 10, "video": 60, "audio": 5}[kind] * r.randint(1, 3),
            created_at=created,
            finished_at=finished,
            processing=processing,
            failed=failed,
            error_code=code if failed else "",
            error_message=message if failed else "",
            outputs=outputs,
            thumbnail=thumb,
            reference=reference,
            aspect_ratio=r.choice(("16:9", "1:1", "9:16")),
            voice=r.choice(_VOICES),
        )

    def media_for(
        self, kind: GenKind, uuid: str, *, two_images: bool
    ) -> tuple[tuple[_Output, ...], _File | None]:
        """Output entries and the generation-level thumbnail of a successful item."""
        cfg = self.cfg
        thumb_size = min(cfg.thumbnail_size, cfg.image_size)
        thumb = _File(
            f"{CDN}thumbnails/{uuid}_thumb.jpg", "image", thumb_size, "thumbnail", "thumbnail_url"
        )
        if kind == "audio":
            aud = self.uuid1ish()
            file = _File(
                f"{CDN}audio/{aud}.mp3",
                "audio",
                cfg.audio_size,
                "result",
                "generated_audio[].audio_url",
            )
            return (_Output(self.sub_id(), aud, file),), None
        if kind == "video":
            vid = self.uuid1ish()
            file = _File(
                f"{CDN}videos/{vid}.mp4",
                "video",
                cfg.video_size,
                "result",
                "generated_video[].video_url",
            )
            frame = _File(
                f"{CDN}frames/{vid}_last.jpg",
                "image",
                cfg.image_size,
                "last_frame",
                "generated_video[].last_frame",
            )
            return (_Output(self.sub_id(), vid, file, last_frame=frame),), thumb
        first = _Output(
            self.sub_id(),
            self.uuid1ish(),
            _File(
                f"{CDN}images/{uuid}.jpg",
                "image",
                cfg.image_size,
                "result",
                "generated_image[].image_url",
            ),
            thumbnail=thumb,
        )
        if not two_images:
            return (first,), thumb
        return (first, self.second_image()), thumb

    def second_image(self) -> _Output:
        """Another image output, with its own thumbnail (in ``thumbnails[]``)."""
        cfg = self.cfg
        thumb_size = min(cfg.thumbnail_size, cfg.image_size)
        img = self.uuid1ish()
        return _Output(
            self.sub_id(),
            img,
            _File(
                f"{CDN}images/{img}.jpg",
                "image",
                cfg.image_size,
                "result",
                "generated_image[].image_url",
            ),
            thumbnail=_File(
                f"{CDN}thumbnails/{img}_thumb.jpg",
                "image",
                thumb_size,
                "thumbnail",
                "generated_image[].thumbnails[].url",
            ),
        )


def _business_error() -> Response:
    """``malformed="business_error"``: the documented ``{"detail": {...}}`` body, HTTP 200."""
    detail = {"error_code": "SYSTEM_ERROR", "error_message": "Something went wrong"}
    return Response.json({"detail": detail})


def _error(status: int, code: str, message: str) -> Response:
    """GeminiGen's error shape: ``{"detail": {"error_code", "error_message"}}``."""
    return Response.json({"detail": {"error_code": code, "error_message": message}}, status)


def _validation_error(param: str, value: str, msg: str) -> Response:
    """FastAPI-style 422 for a bad query parameter."""
    detail = [{"type": "value_error", "loc": ["query", param], "msg": msg, "input": value}]
    return Response.json({"detail": detail}, 422)


_MANGLED_KEYS: Final = ("id", "status", "total", "used_credit", "file_size", "history_id")


def _mangle(payload: Any) -> Any:
    """``wrong_types`` fault: numbers as strings, ``created_at`` as Unix seconds."""
    if isinstance(payload, list):
        return [_mangle(v) for v in payload]
    if not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _MANGLED_KEYS and isinstance(value, int) and not isinstance(value, bool):
            out[key] = str(value)
        elif key == "created_at" and isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            out[key] = int(parsed.timestamp())
        else:
            out[key] = _mangle(value)
    return out


class GeminiGenSimulator(ProviderSim[GeminiGenSimConfig]):
    """The GeminiGen.AI history API on loopback. Use :func:`create` or pass a config."""

    name = "geminigen"
    api_path = API_PATH
    media_prefixes = (CDN,)
    error_response = _error
    wrong_types = _mangle
    business_error = _business_error

    def __init__(self, config: GeminiGenSimConfig | None = None) -> None:
        super().__init__(config or GeminiGenSimConfig())
        cfg, server = self.config, self.server
        self._lock = threading.RLock()
        """Guards the generation list, the deletions and the churn state below."""
        self._builder = _Builder(cfg, server.clock.now())
        self._gens = self._builder.build()
        """Every generation that ever existed (deleted ones too), newest first."""
        self._by_uuid = {g.uuid: g for g in self._gens}
        self._deleted: set[str] = set()
        self._inserted = 0
        self._churned = 0
        self._churn_rng = random.Random(f"geminigen:{cfg.seed}:churn")
        self._next_id = max((g.id for g in self._gens), default=1_000) + 1
        for g in self._gens:
            self._serve(g, cfg.processing_seconds if g.processing else 0.0)
        server.route("GET", API_PATH + r"/histories/?", self._histories, name="histories")
        server.route("GET", API_PATH + r"/history/(?P<uuid>[^/]+)", self._history, name="history")

    def _spec(self, f: _File) -> media.MediaSpec:
        return media.MediaSpec(f"geminigen/{self.config.seed}{f.path}", f.size, f.kind)

    def _serve(self, g: _Gen, delay: float) -> None:
        for f in g.files():
            self.server.add_media(
                f.path, self._spec(f), expires_at=g.expires_at, available_after_s=delay
            )

    @property
    def account_options(self) -> dict[str, Any]:
        """Account keys for a genvault account pointed at this simulator.

        ``media_base``: the ``*_uri`` fields are relative to this server's ``/cdn/``.
        Nothing else: tests and the demo run with the defaults a user gets (the detail
        read of every item among them).
        """
        return {"media_base": self.server.url(CDN)}

    # ------------------------------------------------------------------ truth for tests

    @property
    def generations(self) -> list[dict[str, Any]]:
        """Every generation (deleted ones too: see :attr:`deleted_ids`) as the detail
        endpoint would render it right now, newest first."""
        with self._lock:
            return [self._render(g, detail=True) for g in self._gens]

    @property
    def detail_only_ids(self) -> frozenset[str]:
        """Uuids of the ``detail_only_count`` items: their detail lists more files than
        the list (a second image, a video, an audio)."""
        with self._lock:
            return frozenset(g.uuid for g in self._gens if g.detail_only)

    @property
    def deleted_ids(self) -> frozenset[str]:
        """Uuids of the generations deleted so far (by churn or :meth:`delete_generations`)."""
        with self._lock:
            return frozenset(self._deleted)

    @property
    def live_ids(self) -> list[str]:
        """Uuids ``/histories?filter_by=all`` lists right now, newest first."""
        with self._lock:
            return [g.uuid for g in self._gens if g.uuid not in self._deleted]

    def delete_generations(self, uuids: Iterable[str]) -> None:
        """Delete these generations now: gone from the list and ``total``, detail 404,
        files 404 on the CDN. Deleting one twice is a no-op; an unknown uuid raises
        ``KeyError``."""
        with self._lock:
            gens = [self._by_uuid[u] for u in uuids]
            for g in gens:
                if g.uuid in self._deleted:
                    continue
                self._deleted.add(g.uuid)
                for f in g.files():
                    self.server.remove_media(f.path)

    def insert_generations(self, n: int) -> list[str]:
        """Create ``n`` generations now, at the top of the list (newest first).

        Each is a completed (status 2) image generation created at the simulator
        clock's now, with one image and its thumbnail on the CDN and a larger ``id``
        than any before. Returns the new uuids, newest first.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            now = self.clock.now()
            self._builder.now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            fresh: list[_Gen] = []
            for _ in range(n):
                i = self.config.count + self._inserted
                self._inserted += 1
                g = self._builder.generation(i, self._next_id, 0.0, False, False, plain_image=True)
                self._next_id += 1
                self._by_uuid[g.uuid] = g
                self._serve(g, 0.0)
                fresh.append(g)
            fresh.reverse()
            self._gens[:0] = fresh
            return [g.uuid for g in fresh]

    def expected_media(self, include_deleted: bool = False) -> list[ExpectedFile]:
        """Every distinct media URL of every generation that is or will be status 2.

        Inserted generations are included; deleted ones are left out unless
        ``include_deleted`` (their files are no longer served).
        """
        with self._lock:
            gens = [g for g in self._gens if include_deleted or g.uuid not in self._deleted]
        seen: set[str] = set()
        out: list[ExpectedFile] = []
        for g in gens:
            if g.failed:
                continue
            for f in g.files():
                url = self.server.url(f.path)
                if url in seen:
                    continue
                seen.add(url)
                spec = self._spec(f)
                out.append(
                    ExpectedFile(
                        url=url,
                        size=f.size,
                        sha256=media.sha256(spec),
                        kind=f.kind,
                        role=f.role,
                        generation_id=g.uuid,
                        expires_at=g.expires_at,
                        content_type=spec.content_type,
                        source_field=f.source_field,
                    )
                )
        return out

    # ------------------------------------------------------------------ rendering

    def _state(self, g: _Gen) -> tuple[int, str, int, datetime]:
        """``(status, status_desc, status_percentage, updated_at)`` at the current clock."""
        if g.failed:
            return 3, "failed", 0, g.finished_at
        if not g.processing:
            return 2, "completed", 100, g.finished_at
        wait = self.config.processing_seconds
        elapsed = self.clock.elapsed()
        if elapsed < wait:
            return 1, "Processing", min(99, int(100 * elapsed / wait)), g.created_at
        started = self.clock.started_at or g.created_at
        return 2, "completed", 100, max(g.created_at, started + timedelta(seconds=wait))

    def _render(self, g: _Gen, *, detail: bool) -> dict[str, Any]:
        status, desc, pct, updated = self._state(g)
        done = status == 2
        url = self.server.url
        outputs = g.outputs if done else ()
        stamp = iso_ms(updated)
        media_files = [
            {
                "type": f.kind,
                "url": url(f.path),
                "size": f.size,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for f in self._list_media(g)
            if done
        ]
        item: dict[str, Any] = {
            "id": g.id,
            "uuid": g.uuid,
            "user_id": self._user_id,
            "model_name": g.model_name,
            "input_text": g.prompt,
            "negative_prompt": g.negative_prompt,
            "generate_result": url(outputs[0].file.path) if outputs else "",
            "input_file_path": url(g.reference.original.path) if g.reference else "",
            "type": _TYPE_NAMES[g.kind],
            "used_credit": g.used_credit,
            "status": status,
            "status_desc": desc,
            "status_percentage": pct,
            "error_code": g.error_code,
            "error_message": g.error_message,
            "rating": "",
            "rating_content": "",
            "custom_prompt": "",
            "created_at": iso_ms(g.created_at),
            "updated_at": stamp,
            "file_size": sum(o.file.size for o in outputs),
            "expired_at": None if status == 1 else iso_ms(g.expires_at),
            "inference_type": g.inference_type,
            "name": g.name,
            "media_files": media_files,
            "created_by": f"user_{self._user_id}",
            "thumbnail_url": url(g.thumbnail.path) if done and g.thumbnail else "",
        }
        if detail:  # by the kind of each output: a detail-only image item has all three
            item["generated_video"] = [self._video(g, o) for o in outputs if o.kind == "video"]
            item["generated_image"] = [self._image(g, o) for o in outputs if o.kind == "image"]
            item["generated_audio"] = [self._audio(g, o) for o in outputs if o.kind == "audio"]
            item["reference_item"] = [self._reference(g, g.reference)] if g.reference else []
        return item

    @staticmethod
    def _list_media(g: _Gen) -> list[_File]:
        """What the list's ``media_files`` shows: for videos only the last frame (a trap),
        for a ``detail_only`` item only its first image (another trap)."""
        if g.kind == "video":
            return [o.last_frame for o in g.outputs if o.last_frame is not None]
        if g.detail_only:
            return [g.outputs[0].file]
        return [o.file for o in g.outputs]

    @property
    def _user_id(self) -> int:
        return 700 + self.config.seed % 300

    def _video(self, g: _Gen, o: _Output) -> dict[str, Any]:
        url = self.server.url
        return {
            "id": o.id,
            "uuid": o.uuid,
            "history_id": g.id,
            "video_uri": o.file.uri,
            "duration": 8,
            "aspect_ratio": g.aspect_ratio,
            "resolution": "720p",
            "person_generation": "allow_adult",
            "last_frame": url(o.last_frame.path) if o.last_frame else "",
            "status": 2,
            "error_message": "",
            "video_url": url(o.file.path),
        }

    def _image(self, g: _Gen, o: _Output) -> dict[str, Any]:
        url = self.server.url
        thumbs = []
        if o.thumbnail is not None:
            thumbs.append(
                {
                    "id": o.id + 100_000,
                    "uuid": f"thumb_{o.uuid}",
                    "size": "small",
                    "uri": o.thumbnail.uri,
                    "url": url(o.thumbnail.path),
                }
            )
        return {
            "id": o.id,
            "uuid": o.uuid,
            "history_id": g.id,
            "model": g.model_name,
            "image_uri": o.file.uri,
            "response_text": "Generated successfully",
            "status": 2,
            "error_message": "",
            "style": "Photorealistic",
            "aspect_ratio": g.aspect_ratio,
            "person_generation": "allow_adult",
            "safety_filter_level": "medium",
            "image_url": url(o.file.path),
            "file_download_url": url(o.file.path),
            "thumbnails": thumbs,
            "base64_data": "",
        }

    def _audio(self, g: _Gen, o: _Output) -> dict[str, Any]:
        url = self.server.url(o.file.path)
        return {
            "history_id": g.id,
            "id": o.id,
            "uuid": o.uuid,
            "voices": [g.voice],
            "speed": 1.0,
            "model": g.model_name,
            "model_name": g.model_name.replace("-", " ").title().replace("Tts", "TTS"),
            "status": 2,
            "custom_prompt": "",
            "audio_uri": o.file.uri,
            "emotion": "neutral",
            "output_format": "mp3",
            "vibe_id": 1,
            "accent": "american",
            "output_channel": "mono",
            "audio_url": url,
            "file_download_url": url,
        }

    def _reference(self, g: _Gen, ref: _Reference) -> dict[str, Any]:
        return {
            "id": ref.id,
            "history_id": g.id,
            "uuid": ref.uuid,
            "media_type": "image",
            "uri": ref.original.uri,
            "thumbnail_uri": ref.thumbnail.uri,
            "thumbnail_url": self.server.url(ref.thumbnail.path),
            "mask_uri": "",
            "mask_url": "",
        }

    # ------------------------------------------------------------------ routes

    def _authorized(self, req: Request) -> bool:
        return req.headers.get("x-api-key") == self.api_key

    def _histories(self, req: Request) -> Response:
        if not self._authorized(req):
            return _error(401, "API_KEY_NOT_FOUND", "API key not found")
        filter_by = req.query.get("filter_by", "all") or "all"
        if filter_by not in _FILTERS:
            return _validation_error("filter_by", filter_by, "unknown filter")
        numbers: dict[str, int] = {}
        for param, default in (("items_per_page", 10), ("page", 1)):
            raw = req.query.get(param, str(default))
            try:
                numbers[param] = int(raw)
            except ValueError:
                return _validation_error(param, raw, "Input should be a valid integer")
            if numbers[param] < 1:
                return _validation_error(param, raw, "Input should be greater than 0")
        per_page = min(numbers["items_per_page"], self.config.max_items_per_page)
        wanted = _FILTERS[filter_by]
        start = (numbers["page"] - 1) * per_page
        with self._lock:  # the window is cut from the list as it is now
            gens = [
                g
                for g in self._gens
                if g.uuid not in self._deleted and (wanted is None or _TYPE_NAMES[g.kind] == wanted)
            ]
            page = [self._render(g, detail=False) for g in gens[start : start + per_page]]
            resp = Response.json({"success": True, "total": len(gens), "result": page})
            self._churn()  # after the page: what was served stays consistent
        return resp

    def _churn(self) -> None:
        """After a ``/histories`` request: delete and insert as the churn knobs say."""
        cfg = self.config
        if not (cfg.churn_delete_per_request or cfg.churn_insert_per_request):
            return
        with self._lock:
            if cfg.churn_requests and self._churned >= cfg.churn_requests:
                return
            self._churned += 1
            live = [g.uuid for g in self._gens if g.uuid not in self._deleted]
            doomed = self._churn_rng.sample(live, min(cfg.churn_delete_per_request, len(live)))
            self.delete_generations(doomed)
            self.insert_generations(cfg.churn_insert_per_request)

    def _history(self, req: Request) -> Response:
        if not self._authorized(req):
            return _error(401, "API_KEY_NOT_FOUND", "API key not found")
        with self._lock:
            g = self._by_uuid.get(req.params["uuid"])
            if g is None or g.uuid in self._deleted:
                return _error(404, "HISTORY_NOT_FOUND", "History not found")
            return Response.json(self._render(g, detail=True))


def create(
    *, api_key: str | None = None, seed: int = 0, count: int | None = None, **knobs: Any
) -> GeminiGenSimulator:
    """Uniform factory used by the simulator registry; knobs are GeminiGenSimConfig fields."""
    return GeminiGenSimulator(
        config_from_knobs(GeminiGenSimConfig, api_key=api_key, seed=seed, count=count, knobs=knobs)
    )


__all__ = ["API_PATH", "GeminiGenSimConfig", "GeminiGenSimulator", "create"]
