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

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    MediaFile,
    config_from_knobs,
    expected_file,
    iso_ms,
)
from genvault.simulator.faults import UNCHANGED, mangle_keys
from genvault.simulator.geminigen_data import (
    CDN,
    Builder,
    GeminiGenSimConfig,
    Gen,
    GenKind,
    Output,
    Reference,
    uri,
)
from genvault.simulator.history import HistorySim
from genvault.simulator.messages import Request, Response

API_PATH: Final = "/uapi/v1"
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


def _spoil(key: str, value: Any) -> Any:
    """``wrong_types`` fault: numbers as strings, ``created_at`` as Unix seconds."""
    if key in _MANGLED_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if key == "created_at" and isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    return UNCHANGED


def _mangle(payload: Any) -> Any:
    return mangle_keys(payload, _spoil)


class GeminiGenSimulator(HistorySim[GeminiGenSimConfig, Gen]):
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
        self._builder = Builder(cfg, server.clock.now())
        self._start_history(self._builder.build())
        self._next_id = max((g.id for g in self._items), default=1_000) + 1
        for g in self._items:
            self._serve(g, cfg.processing_seconds if g.processing else 0.0)
        server.route("GET", API_PATH + r"/histories/?", self._histories, name="histories")
        server.route("GET", API_PATH + r"/history/(?P<uuid>[^/]+)", self._history, name="history")

    def _spec(self, f: MediaFile) -> media.MediaSpec:
        return media.MediaSpec(f"geminigen/{self.config.seed}{f.path}", f.size, f.kind)

    def _serve(self, g: Gen, delay: float) -> None:
        for f in g.files():
            self.server.add_media(
                f.path, self._spec(f), expires_at=g.expires_at, available_after_s=delay
            )

    def _item_id(self, g: Gen) -> str:
        return g.uuid

    def _item_paths(self, g: Gen) -> Iterable[str]:
        return [f.path for f in g.files()]

    def _new_item(self, i: int, now: datetime) -> Gen:
        """An inserted generation: a completed image, with a larger ``id`` than any."""
        self._builder.now = now
        g = self._builder.generation(i, self._next_id, 0.0, False, False, plain_image=True)
        self._next_id += 1
        return g

    def _churn_candidates(self) -> list[str]:
        return [g.uuid for g in self._items if g.uuid not in self._deleted]

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
            return [self._render(g, detail=True) for g in self._items]

    @property
    def detail_only_ids(self) -> frozenset[str]:
        """Uuids of the ``detail_only_count`` items: their detail lists more files than
        the list (a second image, a video, an audio)."""
        with self._lock:
            return frozenset(g.uuid for g in self._items if g.detail_only)

    @property
    def live_ids(self) -> list[str]:
        """Uuids ``/histories?filter_by=all`` lists right now, newest first."""
        with self._lock:
            return self._churn_candidates()

    def delete_generations(self, uuids: Iterable[str]) -> None:
        """Delete these generations now: gone from the list and ``total``, detail 404,
        files 404 on the CDN. Deleting one twice is a no-op; an unknown uuid raises
        ``KeyError``."""
        self._delete(uuids)

    def insert_generations(self, n: int) -> list[str]:
        """Create ``n`` generations now, at the top of the list (newest first).

        Each is a completed (status 2) image generation created at the simulator
        clock's now, with one image and its thumbnail on the CDN and a larger ``id``
        than any before. Returns the new uuids, newest first.
        """
        return self._insert(n)

    def expected_media(self, include_deleted: bool = False) -> list[ExpectedFile]:
        """Every distinct media URL of every generation that is or will be status 2.

        Inserted generations are included; deleted ones are left out unless
        ``include_deleted`` (their files are no longer served).
        """
        seen: set[str] = set()
        out: list[ExpectedFile] = []
        for g in self._kept(include_deleted):
            if g.failed:
                continue
            for f in g.files():
                url = self.server.url(f.path)
                if url not in seen:
                    seen.add(url)
                    out.append(
                        expected_file(
                            url,
                            self._spec(f),
                            role=f.role,
                            generation_id=g.uuid,
                            expires_at=g.expires_at,
                            source_field=f.source_field,
                        )
                    )
        return out

    # ------------------------------------------------------------------ rendering

    def _state(self, g: Gen) -> tuple[int, str, int, datetime]:
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

    def _render(self, g: Gen, *, detail: bool) -> dict[str, Any]:
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
    def _list_media(g: Gen) -> list[MediaFile]:
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

    def _video(self, g: Gen, o: Output) -> dict[str, Any]:
        url = self.server.url
        return {
            "id": o.id,
            "uuid": o.uuid,
            "history_id": g.id,
            "video_uri": uri(o.file),
            "duration": 8,
            "aspect_ratio": g.aspect_ratio,
            "resolution": "720p",
            "person_generation": "allow_adult",
            "last_frame": url(o.last_frame.path) if o.last_frame else "",
            "status": 2,
            "error_message": "",
            "video_url": url(o.file.path),
        }

    def _image(self, g: Gen, o: Output) -> dict[str, Any]:
        url = self.server.url
        thumbs = []
        if o.thumbnail is not None:
            thumbs.append(
                {
                    "id": o.id + 100_000,
                    "uuid": f"thumb_{o.uuid}",
                    "size": "small",
                    "uri": uri(o.thumbnail),
                    "url": url(o.thumbnail.path),
                }
            )
        return {
            "id": o.id,
            "uuid": o.uuid,
            "history_id": g.id,
            "model": g.model_name,
            "image_uri": uri(o.file),
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

    def _audio(self, g: Gen, o: Output) -> dict[str, Any]:
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
            "audio_uri": uri(o.file),
            "emotion": "neutral",
            "output_format": "mp3",
            "vibe_id": 1,
            "accent": "american",
            "output_channel": "mono",
            "audio_url": url,
            "file_download_url": url,
        }

    def _reference(self, g: Gen, ref: Reference) -> dict[str, Any]:
        return {
            "id": ref.id,
            "history_id": g.id,
            "uuid": ref.uuid,
            "media_type": "image",
            "uri": uri(ref.original),
            "thumbnail_uri": uri(ref.thumbnail),
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
                for g in self._items
                if g.uuid not in self._deleted and (wanted is None or _TYPE_NAMES[g.kind] == wanted)
            ]
            page = [self._render(g, detail=False) for g in gens[start : start + per_page]]
            resp = Response.json({"success": True, "total": len(gens), "result": page})
            self.churn()  # after the page: what was served stays consistent
        return resp

    def _history(self, req: Request) -> Response:
        if not self._authorized(req):
            return _error(401, "API_KEY_NOT_FOUND", "API key not found")
        with self._lock:
            g = self._by_id.get(req.params["uuid"])
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
