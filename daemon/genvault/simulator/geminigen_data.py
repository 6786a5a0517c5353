"""The seeded generation list of the GeminiGen simulator (:mod:`.geminigen`).

What the simulated account holds, independent of time: each generation's ids, kind,
prompt, model, ages, outcome and the files it serves on the fake CDN (paths, sizes,
roles, and the payload field that names each). :class:`Builder` draws them from an
RNG seeded by the config's ``seed``, in a fixed order, so a seed always yields the
same list; the simulator derives statuses and renders payloads at request time.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from genvault.simulator import media
from genvault.simulator.base import MediaFile, check_non_negative, trunc_ms

CDN: Final = "/cdn/"
RETENTION: Final = timedelta(days=30)

GenKind = Literal["image", "video", "audio"]

_TYPE_CYCLE: Final[tuple[GenKind, ...]] = ("image", "image", "video", "image", "audio")
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


def uri(f: MediaFile) -> str:
    """The relative form GeminiGen puts in ``*_uri`` fields (``videos/x.mp4``)."""
    return f.path.removeprefix(CDN)


@dataclass(frozen=True, slots=True)
class Output:
    """One entry of ``generated_image``/``generated_video``/``generated_audio``."""

    id: int
    uuid: str
    file: MediaFile
    thumbnail: MediaFile | None = None
    last_frame: MediaFile | None = None

    @property
    def kind(self) -> media.MediaKind:
        return self.file.kind


@dataclass(frozen=True, slots=True)
class Reference:
    id: int
    uuid: str
    original: MediaFile
    thumbnail: MediaFile


@dataclass(frozen=True, slots=True)
class Gen:
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
    outputs: tuple[Output, ...]
    thumbnail: MediaFile | None
    reference: Reference | None
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

    def files(self) -> list[MediaFile]:
        """Every served file of the generation, results first, in payload order."""
        out: list[MediaFile] = []
        for o in self.outputs:
            out.append(o.file)
            out.extend(f for f in (o.thumbnail, o.last_frame) if f is not None)
        if self.thumbnail is not None:
            out.append(self.thumbnail)
        if self.reference is not None:
            out.extend((self.reference.original, self.reference.thumbnail))
        return out


class Builder:
    """Builds the deterministic generation list from a seeded RNG."""

    def __init__(self, cfg: GeminiGenSimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"geminigen:{cfg.seed}")
        self.now = trunc_ms(now)
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

    def build(self) -> list[Gen]:
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

    def detail_only_outputs(self) -> tuple[Output, ...]:
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
    ) -> Gen:
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
        outputs: tuple[Output, ...] = ()
        thumb: MediaFile | None = None
        reference: Reference | None = None
        if has_media:
            two_images = i % 4 == 3 and not plain_image
            outputs, thumb = self.media_for(kind, uuid, two_images=two_images)
            if kind != "audio" and i % 3 == 1 and not plain_image:
                ref_uuid = self.uuid1ish()
                reference = Reference(
                    self.sub_id(),
                    ref_uuid,
                    MediaFile(
                        f"{CDN}references/{ref_uuid}.jpg",
                        "image",
                        max(1, cfg.image_size // 2),
                        "reference",
                        "input_file_path",
                    ),
                    MediaFile(
                        f"{CDN}thumbnails/{ref_uuid}_thumb.jpg",
                        "image",
                        min(cfg.thumbnail_size, cfg.image_size),
                        "reference",
                        "reference_item[].thumbnail_url",
                    ),
                )
        return Gen(
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
    ) -> tuple[tuple[Output, ...], MediaFile | None]:
        """Output entries and the generation-level thumbnail of a successful item."""
        cfg = self.cfg
        thumb_size = min(cfg.thumbnail_size, cfg.image_size)
        thumb = MediaFile(
            f"{CDN}thumbnails/{uuid}_thumb.jpg", "image", thumb_size, "thumbnail", "thumbnail_url"
        )
        if kind == "audio":
            aud = self.uuid1ish()
            file = MediaFile(
                f"{CDN}audio/{aud}.mp3",
                "audio",
                cfg.audio_size,
                "result",
                "generated_audio[].audio_url",
            )
            return (Output(self.sub_id(), aud, file),), None
        if kind == "video":
            vid = self.uuid1ish()
            file = MediaFile(
                f"{CDN}videos/{vid}.mp4",
                "video",
                cfg.video_size,
                "result",
                "generated_video[].video_url",
            )
            frame = MediaFile(
                f"{CDN}frames/{vid}_last.jpg",
                "image",
                cfg.image_size,
                "last_frame",
                "generated_video[].last_frame",
            )
            return (Output(self.sub_id(), vid, file, last_frame=frame),), thumb
        first = Output(
            self.sub_id(),
            self.uuid1ish(),
            MediaFile(
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

    def second_image(self) -> Output:
        """Another image output, with its own thumbnail (in ``thumbnails[]``)."""
        cfg = self.cfg
        thumb_size = min(cfg.thumbnail_size, cfg.image_size)
        img = self.uuid1ish()
        return Output(
            self.sub_id(),
            img,
            MediaFile(
                f"{CDN}images/{img}.jpg",
                "image",
                cfg.image_size,
                "result",
                "generated_image[].image_url",
            ),
            thumbnail=MediaFile(
                f"{CDN}thumbnails/{img}_thumb.jpg",
                "image",
                thumb_size,
                "thumbnail",
                "generated_image[].thumbnails[].url",
            ),
        )
