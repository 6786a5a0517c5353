"""GeminiGen.AI: ``/histories`` paging and ``/history/{uuid}`` detail.

Source: seed 001 (GeminiGen "Generation History APIs") and providers.md §2.

* Auth: header ``x-api-key``.
* Listing: ``GET /histories?filter_by=all&items_per_page=N&page=P`` ->
  ``{"success": true, "total": T, "result": [item, ...]}``, newest first.
* Detail: ``GET /history/{uuid}`` -> the item plus ``generated_image[]``,
  ``generated_video[]``, ``generated_audio[]``, ``reference_item[]``. Only the
  detail names every file: the list's ``media_files`` is incomplete (seed 001's item
  lists one image, its detail a second image, a video and an audio), so every new or
  changed item is re-read through it (``full_file_set = "detail"``; the option
  ``fetch_detail = "auto"`` lowers this for a user who accepts the risk).
* Status: 0 queued, 1 processing, 2 completed, 3 failed (``status_desc`` varies
  in case and is not used).
* Deadline: ``expired_at`` per item; when absent, ``created_at`` + 30 days
  (what the seed example shows).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field

from genvault.errors import BusinessError, MalformedResponseError, WebhookRejectedError
from genvault.expiry import url_expiry
from genvault.providers import _parse as p
from genvault.providers.base import PageNumberPaging, Provider, ProviderOptions
from genvault.records import (
    DeadlineSource,
    GenerationRecord,
    GenerationStatus,
    MediaKind,
    MediaRecord,
    MediaRole,
    Page,
)

STATUS = {
    0: GenerationStatus.QUEUED,
    1: GenerationStatus.RUNNING,
    2: GenerationStatus.SUCCEEDED,
    3: GenerationStatus.FAILED,
}
DETAIL_KEYS = ("generated_image", "generated_video", "generated_audio", "reference_item")


class GeminiGenOptions(ProviderOptions):
    filter_by: str = "all"
    items_per_page: int = Field(default=100, ge=1, le=1000)
    media_base: str = "https://cdn.geminigen.ai/"
    """Prefix for the relative ``*_uri`` fields, used only when the ``*_url`` twin is missing."""
    fetch_detail: Literal["always", "auto"] = "always"
    """always (the default): read ``/history/{uuid}`` once for every new or changed
    generation, the only endpoint that names all of its files (the listing's
    ``media_files`` can name one image where the detail has a second image, a video and
    an audio: seed 001's own example). auto: only for items in progress and for
    video/audio, one request per generation less, at the risk of missing files the
    listing does not name; for a user who accepts that risk."""


class GeminiGen(Provider):
    name: ClassVar[str] = "geminigen"
    default_base_url: ClassVar[str] = "https://api.geminigen.ai/uapi/v1"
    Options: ClassVar[type[ProviderOptions]] = GeminiGenOptions
    retention: ClassVar[timedelta | None] = timedelta(days=30)
    full_file_set: ClassVar[Literal["listing", "detail"]] = "detail"
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "token"

    options: GeminiGenOptions

    @classmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        return {"x-api-key": api_key}

    @property
    def paging(self) -> PageNumberPaging:
        return PageNumberPaging("page", "items_per_page", self.options.items_per_page)

    def fetch_page(self, stream: str, position: int) -> Page:
        params: dict[str, Any] = {"filter_by": self.options.filter_by}
        params.update(self.paging.params(position))
        body = p.require_dict(self.api.get_json("histories", params), "histories")
        if body.get("success") is False:
            raise BusinessError(f"histories: success=false: {str(body)[:200]}")
        items = body.get("result")
        if not isinstance(items, list):
            raise MalformedResponseError("histories: 'result' is not a list")
        records, bad = self.parse_items(items)
        return Page(
            records=tuple(records),
            position=position,
            got=len(items),
            total=p.as_int(body.get("total")),
            errors=bad,
        )

    def webhook_ids(self, body: bytes, headers: Mapping[str, str]) -> list[str]:
        """The uuid a callback names. Both shapes seen in clients are accepted:
        ``{event, uuid, data: {uuid, ...}}`` and ``{event_name, event_uuid, data: {uuid}}``.

        GeminiGen signs callbacks (``x-signature``, RSA over an MD5 digest) with a key
        and input no public source pins down, so the receiver authenticates them with
        genvault's own token instead (``webhook_auth = "token"``); the callback is a
        hint either way, the result is read back from ``/history/{uuid}``.
        """
        try:
            doc = json.loads(body)
        except ValueError:
            raise WebhookRejectedError("geminigen webhook: body is not JSON") from None
        if not isinstance(doc, dict):
            raise WebhookRejectedError("geminigen webhook: body is not an object")
        uuid = p.as_str(p.as_dict(doc.get("data")).get("uuid")) or p.as_str(doc.get("uuid"))
        if not uuid:
            raise WebhookRejectedError("geminigen webhook: no uuid in the body")
        return [uuid]

    def fetch(self, external_id: str) -> GenerationRecord:
        body = self.api.get_json(f"history/{quote(external_id, safe='')}")
        return self.parse(body)

    # ------------------------------------------------------------------ parsing

    def parse(self, payload: Any) -> GenerationRecord:
        return parse_item(
            payload, self.options.media_base, always_detail=self.options.fetch_detail == "always"
        )


def parse_item(
    payload: Any, media_base: str = GeminiGenOptions().media_base, *, always_detail: bool = False
) -> GenerationRecord:
    """One history item (list or detail shape) -> record."""
    item = p.require_dict(payload, "geminigen history item")
    external_id = p.as_str(item.get("uuid"))
    if not external_id:
        raise MalformedResponseError("geminigen history item has no uuid")
    code = p.as_int(item.get("status"))
    status = (
        STATUS.get(code, GenerationStatus.UNKNOWN) if code is not None else GenerationStatus.UNKNOWN
    )
    created = p.iso_datetime(item.get("created_at"))
    updated = p.iso_datetime(item.get("updated_at"))
    expires = p.iso_datetime(item.get("expired_at"))
    source = DeadlineSource.PROVIDER if expires is not None else None
    if expires is None and created is not None:
        with contextlib.suppress(OverflowError):  # created_at near datetime.max
            expires = created + timedelta(days=30)
            source = DeadlineSource.ASSUMED  # the seed example's +30 d, not a documented rule
    is_detail = any(k in item for k in DETAIL_KEYS)
    kind = p.as_str(item.get("type")) or p.as_str(item.get("inference_type"))
    media = _media(item, media_base) if status is GenerationStatus.SUCCEEDED else ()
    av = any(m.kind in (MediaKind.VIDEO, MediaKind.AUDIO) for m in media) or _is_av(kind)
    incomplete = status is GenerationStatus.SUCCEEDED and (av or not media or always_detail)
    needs_detail = not is_detail and (not status.terminal or incomplete)
    error = None
    if status is GenerationStatus.FAILED:
        parts = [p.as_str(item.get("error_code")), p.as_str(item.get("error_message"))]
        error = ": ".join(x for x in parts if x) or "failed (no reason given)"
    return GenerationRecord(
        external_id=external_id,
        status=status,
        provider_status=str(item.get("status")),
        created_at=created,
        updated_at=updated,
        completed_at=updated if status is GenerationStatus.SUCCEEDED else None,
        expires_at=expires,
        expires_source=source,
        kind=kind,
        model=p.as_str(item.get("model_name")),
        prompt=p.as_str(item.get("input_text")),
        error=error,
        media=media,
        raw=item,
        needs_detail=needs_detail,
    )


def _is_av(kind: str | None) -> bool:
    k = (kind or "").lower()
    return any(w in k for w in ("video", "audio", "speech", "tts", "music"))


def _media(item: dict[str, Any], base: str) -> tuple[MediaRecord, ...]:
    """Every file of a completed item, results first, deduplicated by URL."""
    found: list[MediaRecord] = []

    def add(url: str | None, role: MediaRole, kind: MediaKind, size: Any = None) -> None:
        if url:
            found.append(
                MediaRecord(
                    url=url,
                    role=role,
                    kind=kind,
                    size=p.as_int(size),
                    url_expires_at=url_expiry(url),
                )
            )

    def first_url(obj: dict[str, Any], *keys: str) -> str | None:
        for k in keys:
            u = p.http_url(obj.get(k), base if k.endswith("uri") else None)
            if u:
                return u
        return None

    # The detail's typed arrays come first: they say what each URL is. The listing's
    # generic media_files / generate_result only fill in what those did not name.
    for img in map(p.as_dict, p.as_list(item.get("generated_image"))):
        add(
            first_url(img, "image_url", "file_download_url", "image_uri"),
            MediaRole.RESULT,
            MediaKind.IMAGE,
        )
    for vid in map(p.as_dict, p.as_list(item.get("generated_video"))):
        add(first_url(vid, "video_url", "video_uri"), MediaRole.RESULT, MediaKind.VIDEO)
        add(p.http_url(vid.get("last_frame"), base), MediaRole.LAST_FRAME, MediaKind.IMAGE)
    for aud in map(p.as_dict, p.as_list(item.get("generated_audio"))):
        add(
            first_url(aud, "audio_url", "file_download_url", "audio_uri"),
            MediaRole.RESULT,
            MediaKind.AUDIO,
        )
    for img in map(p.as_dict, p.as_list(item.get("generated_image"))):
        for th in map(p.as_dict, p.as_list(img.get("thumbnails"))):
            add(first_url(th, "url", "uri"), MediaRole.THUMBNAIL, MediaKind.IMAGE)
    result = p.http_url(item.get("generate_result"))
    if result:
        add(result, MediaRole.RESULT, _kind(p.as_str(item.get("type")), result))
    for mf in map(p.as_dict, p.as_list(item.get("media_files"))):
        url = p.http_url(mf.get("url"))
        add(url, MediaRole.RESULT, _kind(p.as_str(mf.get("type")), url), mf.get("size"))
    add(p.http_url(item.get("thumbnail_url")), MediaRole.THUMBNAIL, MediaKind.IMAGE)
    for ref in map(p.as_dict, p.as_list(item.get("reference_item"))):
        ref_kind = _kind(p.as_str(ref.get("media_type")), None)
        add(first_url(ref, "url", "uri"), MediaRole.REFERENCE, ref_kind)
        add(first_url(ref, "thumbnail_url", "thumbnail_uri"), MediaRole.REFERENCE, MediaKind.IMAGE)
    return p.dedupe_by_url(found)


def _kind(declared: str | None, url: str | None) -> MediaKind:
    d = (declared or "").lower()
    for kind in (MediaKind.VIDEO, MediaKind.AUDIO, MediaKind.IMAGE):
        if kind.value in d:
            return kind
    if "speech" in d:
        return MediaKind.AUDIO
    return p.kind_from_url(url, MediaKind.IMAGE) if url else MediaKind.IMAGE
