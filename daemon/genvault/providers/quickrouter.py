"""QuickRouter.ai: the unified ``GET /v1/video/query?id=<task id>`` endpoint.

Source: seed 004 (QuickRouter "查询任务", the Grok example) and providers.md §5
(the Veo and Sora shapes of the same endpoint, the status table, the expiry rule).

* Auth: ``Authorization: Bearer <key>``; the doc also marks ``Accept`` and
  ``Content-Type: application/json`` as required, so they travel with the key.
* No listing: ids come from ``genvault track`` or intake, in the relay's own
  ``<model>:<upstream id>`` form (``grok:…``, ``sora-2:task_…``,
  ``veo3.1-fast:…``). They are kept verbatim; a response may name the task
  without the prefix (the seed's Grok example), so :meth:`QuickRouter.fetch`
  always answers with the id it was asked for.
* Three payload shapes behind one endpoint: Grok is flat (``status``,
  ``video_url``, ``enhanced_prompt``, ``status_update_time`` in ms); Veo and Sora
  nest the upstream task in ``detail`` (Veo: ``req``, ``images`` = inputs,
  ``created_at``/``completed_at`` in ms; Sora: ``input``, ``pending_info`` with
  ISO ``created_at``). Parsing looks in both places for every field.
* Status strings vary by upstream, so mapping is tolerant: unknown values are
  "running" (keep polling) and logged once per value; "completed" counts only
  with a URL (the relay flips the status before the file is published), and a
  Veo task's ``error_message`` from an earlier retry does not fail a completed task.
* Deadline: a result URL's own signed expiry (``X-Amz-*``, ``Expires=``, ``ex=``)
  where it has one, else ``completed_at`` + ``url_lifetime_hours`` (undocumented;
  sister relays state 24 h). Signed URLs are re-signed on every query, and the
  archive job re-reads the task after a 403 and adopts the new URL and its expiry.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Literal

from pydantic import Field

from genvault.errors import BusinessError, MalformedResponseError, NotFoundError
from genvault.expiry import url_expiry
from genvault.logs import get_logger
from genvault.providers import _parse as p
from genvault.providers._parse import dedupe_by_url
from genvault.providers.base import Provider, ProviderOptions
from genvault.records import (
    DeadlineSource,
    GenerationRecord,
    GenerationStatus,
    MediaKind,
    MediaRecord,
    MediaRole,
)

log = get_logger("genvault.providers.quickrouter")

QUERY_PATH: Final = "v1/video/query"

_QUEUED: Final = frozenset({"pending", "queued", "submitted", "not_start"})
_RUNNING: Final = frozenset({"processing", "in_progress", "running", "video_generating"})
_DONE: Final = frozenset({"completed", "success", "succeed", "succeeded"})
_FAILED: Final = frozenset(
    {"failed", "failure", "error", "cancelled", "canceled", "video_generation_failed"}
)
_URL_KEYS: Final = ("video_url", "result_url", "url")
_ERROR_KEYS: Final = ("error_message", "error", "failReason", "fail_reason", "failure_reason")
_TASK_KEYS: Final = ("id", "status", "detail", *_URL_KEYS)
_OK_CODES: Final = frozenset({"0", "200", "success", "ok"})

_unknown_statuses: set[str] = set()
"""Status values already warned about (once per value per process, not once per poll)."""


class QuickRouterOptions(ProviderOptions):
    url_lifetime_hours: float = Field(default=24.0, gt=0)
    """How long a finished video stays downloadable when nothing says otherwise
    (undocumented; sister relays on the same upstreams state 24 h)."""
    signed_url_deadline: bool = True
    """Whether a signed URL's own expiry is the file's deadline (exact, so it replaces
    the ``url_lifetime_hours`` guess). False uses only the guess: for a relay that
    signs URLs for minutes although the file lives a day, so healthy files are not
    reported at risk (a 403 is healed by a re-read either way)."""
    forwarded_host: str | None = None
    """Sent as ``X-Forwarded-Host`` (optional in the doc) when set."""


class QuickRouter(Provider):
    name: ClassVar[str] = "quickrouter"
    default_base_url: ClassVar[str] = "https://api.quickrouter.ai"
    Options: ClassVar[type[ProviderOptions]] = QuickRouterOptions
    has_history: ClassVar[bool] = False
    retention: ClassVar[timedelta | None] = timedelta(hours=24)
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "none"
    doctor_probe_id: ClassVar[str] = "grok:00000000-0000-4000-8000-000000000000"
    """A model the relay has a channel for, so "no such task" is what comes back."""

    options: QuickRouterOptions

    @classmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        host = getattr(options, "forwarded_host", None)
        if host:
            headers["X-Forwarded-Host"] = host
        return headers

    def fetch(self, external_id: str) -> GenerationRecord:
        """Query one task by the id it was submitted under; the record keeps that id."""
        body = p.require_dict(self.api.get_json(QUERY_PATH, {"id": external_id}), "video/query")
        task = unwrap(body, external_id)
        returned = p.as_str(task.get("id"))
        if returned and not same_task(returned, external_id):
            log.warning(
                "provider.id_mismatch", provider=self.name, asked=external_id, answered=returned
            )
        return self._parse(task, external_id)

    def parse(self, payload: Any) -> GenerationRecord:
        return self._parse(payload, None)

    def _parse(self, payload: Any, external_id: str | None) -> GenerationRecord:
        return parse_task(
            payload,
            external_id,
            lifetime=timedelta(hours=self.options.url_lifetime_hours),
            signed_deadline=self.options.signed_url_deadline,
        )


# --------------------------------------------------------------------------- envelope


def unwrap(body: dict[str, Any], external_id: str) -> dict[str, Any]:
    """The task object of a query answer, or the relay's error as an exception.

    A task is recognised by its keys; only a body with none of them is read as an
    error envelope (``{"error": {...}}``, ``{"code", "message", "data"}``), because a
    failed *task* may legitimately carry ``error`` too.
    """
    if any(body.get(k) is not None for k in _TASK_KEYS):
        return body
    data = body.get("data")
    if isinstance(data, dict) and any(data.get(k) is not None for k in _TASK_KEYS):
        return data
    err = body.get("error")
    code: Any = body.get("code")
    if isinstance(err, dict):
        message = p.as_str(err.get("message"))
        code = err.get("code") or err.get("type") or code
    elif err is not None:
        message = p.as_str(err)
    elif body.get("success") is False or (
        code is not None and (p.as_str(code) or "").lower() not in _OK_CODES
    ):
        message = p.as_str(body.get("message")) or p.as_str(body.get("msg"))
    else:
        return body  # nothing recognisable: the parser reports the missing id
    text = f"video/query {external_id}: {p.as_str(code) or 'error'}: {message or '(no message)'}"
    low = (message or "").lower()
    if "not found" in low or "not exist" in low or "not_exist" in low:
        raise NotFoundError(text, status_code=200)
    raise BusinessError(text, code=code)


def same_task(returned: str, asked: str) -> bool:
    """Whether an answer's id names the task asked for (it may drop the ``model:`` prefix)."""
    return returned == asked or asked.partition(":")[2] == returned


# --------------------------------------------------------------------------- parsing


def parse_task(
    payload: Any,
    external_id: str | None = None,
    *,
    lifetime: timedelta = timedelta(hours=24),
    signed_deadline: bool = True,
) -> GenerationRecord:
    """One ``/v1/video/query`` answer (any of the three shapes) -> record.

    ``external_id`` is the id the task was queried with; it wins over the body's.
    """
    top = p.require_dict(payload, "quickrouter task")
    detail = p.as_dict(top.get("detail"))
    ext = external_id or p.as_str(top.get("id")) or p.as_str(detail.get("id"))
    if not ext:
        raise MalformedResponseError("quickrouter task has no id")
    url = _first_url(top, detail)
    raw_status, status = _status(top, detail, has_url=url is not None)
    completed = _completed_at(top, detail) if status is GenerationStatus.SUCCEEDED else None
    media = _media(detail, url, signed_deadline) if status is GenerationStatus.SUCCEEDED else ()
    prefix = ext.partition(":")[0] if ":" in ext else None
    deadline, deadline_source = (
        _deadline(top, detail, completed, url, lifetime, signed_deadline)
        if status is GenerationStatus.SUCCEEDED
        else (None, None)
    )
    req = p.as_dict(detail.get("req"))
    sora_input = p.as_dict(detail.get("input"))
    return GenerationRecord(
        external_id=ext,
        status=status,
        provider_status=raw_status,
        created_at=_first_time(
            detail.get("created_at"),
            p.as_dict(detail.get("pending_info")).get("created_at"),
            top.get("created_at"),
        ),
        completed_at=completed,
        updated_at=_first_time(
            top.get("status_update_time"), detail.get("updated_at"), top.get("updated_at")
        ),
        expires_at=deadline,
        expires_source=deadline_source,
        kind=prefix,
        # Sora's input.model is an upstream code name ("sy_ore"): the id prefix says more.
        model=p.as_str(req.get("model")) or p.as_str(top.get("model")) or prefix,
        prompt=_first_str(
            req.get("prompt"),
            sora_input.get("prompt"),
            top.get("prompt"),
            top.get("enhanced_prompt"),
            detail.get("enhanced_prompt"),
        ),
        error=_error(top, detail) if status is GenerationStatus.FAILED else None,
        media=media,
        raw=top,
    )


def map_status(value: str | None, *, has_url: bool) -> GenerationStatus:
    """One raw status string -> normalized status (providers.md's QuickRouter column)."""
    key = (value or "").strip().lower()
    if key in _QUEUED:
        return GenerationStatus.QUEUED
    if key in _RUNNING:
        return GenerationStatus.RUNNING
    if key in _DONE:
        # The relay says "completed" before the file is published: keep polling.
        return GenerationStatus.SUCCEEDED if has_url else GenerationStatus.RUNNING
    if key in _FAILED:
        return GenerationStatus.FAILED
    if key not in _unknown_statuses:
        _unknown_statuses.add(key)
        log.warning("provider.unknown_status", provider="quickrouter", status=value or "(missing)")
    return GenerationStatus.RUNNING


def _status(
    top: dict[str, Any], detail: dict[str, Any], *, has_url: bool
) -> tuple[str, GenerationStatus]:
    """``(raw, normalized)``: the top-level status, else the upstream task's.

    Sora keeps ``detail.status = "pending"`` while ``pending_info.status`` already
    says processing; that only ever moves a queued task to running.
    """
    pending = p.as_str(p.as_dict(detail.get("pending_info")).get("status"))
    raw = p.as_str(top.get("status")) or p.as_str(detail.get("status")) or pending
    status = map_status(raw, has_url=has_url)
    if (
        status is GenerationStatus.QUEUED
        and pending
        and pending != raw
        and map_status(pending, has_url=has_url) is GenerationStatus.RUNNING
    ):
        status = GenerationStatus.RUNNING
    return raw or "", status


def _first_url(top: dict[str, Any], detail: dict[str, Any]) -> str | None:
    for obj in (top, detail):
        for key in _URL_KEYS:
            url = p.http_url(obj.get(key))
            if url:
                return url
    return None


def _media(
    detail: dict[str, Any], url: str | None, signed_deadline: bool
) -> tuple[MediaRecord, ...]:
    """The one result video, then the inputs (Veo ``images[]``/``req.images``, Sora
    ``input.images``): the relay's own copies of what the user uploaded."""
    found: list[MediaRecord] = []

    def add(u: str | None, role: MediaRole, default: MediaKind) -> None:
        if u:
            found.append(
                MediaRecord(
                    url=u,
                    role=role,
                    kind=p.kind_from_url(u, default),
                    url_expires_at=url_expiry(u) if signed_deadline else None,
                )
            )

    add(url, MediaRole.RESULT, MediaKind.VIDEO)
    for img in p.as_list(detail.get("images")):
        ref = p.http_url(p.as_dict(img).get("url")) if isinstance(img, dict) else p.http_url(img)
        add(ref, MediaRole.REFERENCE, MediaKind.IMAGE)
    for source in ("req", "input"):
        for img in p.as_list(p.as_dict(detail.get(source)).get("images")):
            add(p.http_url(img), MediaRole.REFERENCE, MediaKind.IMAGE)
    return dedupe_by_url(found)


def _completed_at(top: dict[str, Any], detail: dict[str, Any]) -> datetime | None:
    return _first_time(
        detail.get("completed_at"),
        top.get("completed_at"),
        detail.get("finished_at"),
        top.get("finished_at"),
        top.get("status_update_time"),
        detail.get("updated_at"),
    )


def _deadline(
    top: dict[str, Any],
    detail: dict[str, Any],
    completed: datetime | None,
    url: str | None,
    lifetime: timedelta,
    signed_deadline: bool,
) -> tuple[datetime | None, DeadlineSource | None]:
    """The earlier of a stated ``expires_at`` and the URL's signed expiry, else the
    assumed lifetime after completion; with where it comes from."""
    stated = _first_time(top.get("expires_at"), detail.get("expires_at"))
    signed = url_expiry(url) if signed_deadline and url else None
    if stated or signed:
        if signed is not None and (stated is None or signed < stated):
            return signed, DeadlineSource.SIGNED_URL
        return stated, DeadlineSource.PROVIDER
    if completed is None:
        return None, None  # the store falls back to first-seen + retention
    with contextlib.suppress(OverflowError):
        return completed + lifetime, DeadlineSource.ASSUMED
    return None, None


def _error(top: dict[str, Any], detail: dict[str, Any]) -> str:
    for obj in (top, detail):
        for key in _ERROR_KEYS:
            value = obj.get(key)
            if isinstance(value, dict):
                parts = [p.as_str(value.get("code")), p.as_str(value.get("message"))]
                text = ": ".join(x for x in parts if x)
            else:
                text = p.as_str(value) or ""
            if text:
                return text
    return "failed (no reason given)"


def _first_str(*values: Any) -> str | None:
    for v in values:
        s = p.as_str(v)
        if s:
            return s
    return None


def when(value: Any) -> datetime | None:
    """A timestamp in any of the relay's encodings: Unix ms, Unix s, or ISO-8601 text."""
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    n = p.as_int(value)
    if n is not None:
        return p.epoch_millis(n) if abs(n) >= 10**11 else p.epoch_seconds(n)
    return p.iso_datetime(value)


def _first_time(*values: Any) -> datetime | None:
    for v in values:
        t = when(v)
        if t is not None:
            return t
    return None


__all__ = [
    "QUERY_PATH",
    "QuickRouter",
    "QuickRouterOptions",
    "map_status",
    "parse_task",
    "same_task",
    "unwrap",
    "when",
]
