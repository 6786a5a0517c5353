"""CrowdComputed 群计AI: per-workflow ``/generate/history`` paging and ``/query/status``.

Source: seed 000 (the Apifox page of ``GET /api/v1/generate/history``) and
providers.md §1 (the ``cc-openapi-docs`` repository).

* Auth: header ``token: <key>`` (the seed's security scheme). The docs' examples
  send ``Authorization: <key>`` raw instead, so ``auth_style`` can send either or both.
* Listing: ``GET /api/v1/generate/history?workflow=W&page_index=N&page_size=M``;
  ``workflow`` is required and there is no "all", so every workflow is its own
  stream with its own cursor. The seed spells the paging ``page_index``/``page_size``,
  the docs ``pageIndex``/``pageSize`` (Option ``paging_params``).
* Envelope: ``{"code": "Success", "message", "data"}``; any other ``code`` is an
  error even on HTTP 200 (``{"code": "Failed", "message": "unauthorized"}``).
* Task: ``taskId`` (18-digit string), ``status`` waiting/generating/finished/failed,
  ``outputs[]`` each with ``urls[]`` (absolute or relative to the data CDN) and
  ``startTime``/``endTime`` in Unix **seconds**. No created time, no prompt, no
  workflow name, no error message, no expiry.
* Deadline: undocumented, so ``completed_at`` + ``retention_hours`` (providers.md's
  conservative 24 h), or a signed URL's own expiry when that is earlier.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Literal

from pydantic import Field, field_validator

from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    WebhookRejectedError,
)
from genvault.expiry import url_expiry
from genvault.logs import get_logger
from genvault.net.api import ApiClient
from genvault.providers import _parse as p
from genvault.providers._parse import dedupe_by_url
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

HISTORY_PATH: Final = "api/v1/generate/history"
STATUS_PATH: Final = "api/v1/query/status"
DEFAULT_RETENTION_HOURS: Final = 24.0

WORKFLOWS: Final[tuple[str, ...]] = (
    "text-to-image",
    "text-to-image-pro",
    "text-to-video",
    "image-to-video",
    "unzoom",
    "upscaler",
    "background-remover",
    "hand-fixer",
    "ai-image-editing",
    "professional-headshot",
    "watermark-remover",
    "photo-restoration",
    "text-remover",
    "hugging-pose",
    "beard-remover",
    "elderly-filter",
    "ghibli-style",
    "cartoon-comic-styles",
    "art-medium-styles",
    "digital-art-styles",
    "classic-art-styles",
    "modern-design-styles",
    "fantasy-theme-styles",
    "world-art-styles",
    "multi-angle-view",
)
"""Every workflow id the seed lists (the history endpoint needs one per call)."""

STATUS: Final = {
    "waiting": GenerationStatus.QUEUED,
    "generating": GenerationStatus.RUNNING,
    "finished": GenerationStatus.SUCCEEDED,
    "failed": GenerationStatus.FAILED,
}
FAILED_REASON: Final = "failed at provider"
"""The API gives no failure message (credits are refunded), so this is the whole reason."""
NO_OUTPUTS_REASON: Final = "finished without outputs"

log = get_logger("genvault.providers")

_MESSAGE_ERRORS: Final[dict[str, type[AuthError] | type[NotFoundError]]] = {
    "unauthorized": AuthError,
    "task not found": NotFoundError,
}


class CrowdComputedOptions(ProviderOptions):
    auth_style: Literal["token", "authorization", "both"] = "token"
    """token: ``token: <key>`` (the seed); authorization: ``Authorization: <key>`` raw, as
    the docs' examples send it; both: send the two headers."""
    workflows: list[str] = Field(default_factory=lambda: list(WORKFLOWS), min_length=1)
    """Workflows to page through; each is a separate history stream with its own cursor."""
    paging_params: Literal["snake", "camel", "both"] = "snake"
    """snake: ``page_index``/``page_size`` (the seed's curl); camel: ``pageIndex``/``pageSize``
    (the docs); both: send both spellings."""
    page_size: int = Field(default=50, ge=1, le=1000)
    media_base: str = "https://data.crowdcomputed.cc/"
    """Base for relative result URLs (``dev/images/task/...jpg`` in the callback example)."""
    retention_hours: float = Field(default=DEFAULT_RETENTION_HOURS, gt=0, le=24 * 365)
    """Assumed lifetime of results after ``endTime``; the API documents none."""

    @field_validator("workflows")
    @classmethod
    def _clean_workflows(cls, v: list[str]) -> list[str]:
        cleaned = [w.strip() for w in v]
        if any(not w for w in cleaned):
            raise ValueError("workflow ids must not be empty")
        return list(dict.fromkeys(cleaned))


class CrowdComputed(Provider):
    name: ClassVar[str] = "crowdcomputed"
    default_base_url: ClassVar[str] = "https://api.crowdcomputed.com"
    Options: ClassVar[type[ProviderOptions]] = CrowdComputedOptions
    retention: ClassVar[timedelta | None] = timedelta(hours=DEFAULT_RETENTION_HOURS)
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "token"

    options: CrowdComputedOptions

    def __init__(
        self, api: ApiClient, options: ProviderOptions, account: str, *, api_key: str = ""
    ) -> None:
        super().__init__(api, options, account, api_key=api_key)
        # The store falls back to ``provider.retention`` when a task has no end time yet;
        # an instance attribute makes that fallback follow the account's retention_hours.
        setattr(self, "retention", timedelta(hours=self.options.retention_hours))  # noqa: B010
        self._workflow_of: dict[str, str] = {}
        """taskId -> workflow of listed tasks still running: /query/status does not name it,
        and the poller overwrites a generation's kind with what :meth:`fetch` returns."""

    @classmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        style = options.auth_style if isinstance(options, CrowdComputedOptions) else "token"
        headers: dict[str, str] = {}
        if style in ("token", "both"):
            headers["token"] = api_key
        if style in ("authorization", "both"):
            headers["Authorization"] = api_key
        return headers

    # ------------------------------------------------------------------ history

    def streams(self) -> Sequence[str]:
        return tuple(self.options.workflows)

    @property
    def paging(self) -> PageNumberPaging:
        """Page numbers from 1; :meth:`paging_query` spells the parameters."""
        return PageNumberPaging("page_index", "page_size", self.options.page_size)

    def paging_query(self, position: int) -> dict[str, int]:
        """The page parameters in the configured spelling(s)."""
        size = self.options.page_size
        query: dict[str, int] = {}
        if self.options.paging_params in ("snake", "both"):
            query.update(page_index=position, page_size=size)
        if self.options.paging_params in ("camel", "both"):
            query.update(pageIndex=position, pageSize=size)
        return query

    def fetch_page(self, stream: str, position: int) -> Page:
        params: dict[str, Any] = {"workflow": stream, **self.paging_query(position)}
        data = unwrap(self.api.get_json(HISTORY_PATH, params), "history")
        if data is None:
            data = {}  # "Success" with no data: nothing listed for this workflow
        data = p.require_dict(data, "history data")
        items = data.get("pageData")
        if items is None:
            items = []  # an empty workflow may answer with a null list
        if not isinstance(items, list):
            raise MalformedResponseError("history: 'pageData' is not a list")
        echoed = p.as_int(data.get("pageIndex"))
        if items and echoed is not None and echoed > 0 and echoed != position:
            raise MalformedResponseError(
                f"history: asked for page {position} of {stream!r}, got page {echoed}: the API "
                "ignores these paging parameters (see the paging_params option)"
            )
        records, bad = self._parse_page(stream, items)
        size = p.as_int(data.get("pageSize"))
        return Page(
            records=tuple(records),
            position=position,
            got=len(items),
            total=p.as_int(data.get("total")),
            page_size=size if size is not None and size > 0 else None,
            errors=bad,
        )

    def _parse_page(self, workflow: str, items: list[Any]) -> tuple[list[GenerationRecord], int]:
        """:meth:`parse_items` with the page's workflow as kind and model (no task names it)."""
        out: list[GenerationRecord] = []
        bad = 0
        for item in items:
            try:
                record = self._parse(item, workflow)
            except MalformedResponseError as exc:
                bad += 1
                log.warning(
                    "provider.item_unparsable",
                    provider=self.name,
                    account=self.account,
                    workflow=workflow,
                    error=str(exc),
                )
                continue
            if not record.status.terminal:  # only those get polled; keeps the map small
                self._workflow_of[record.external_id] = workflow
            out.append(record)
        return out, bad

    # ------------------------------------------------------------------ one task

    def fetch(self, external_id: str) -> GenerationRecord:
        body = self.api.get_json(STATUS_PATH, {"taskId": external_id})
        record = self._parse(unwrap(body, "query/status"), self._workflow_of.get(external_id))
        if record.status.terminal:
            self._workflow_of.pop(external_id, None)
        return record

    def parse(self, payload: Any) -> GenerationRecord:
        return self._parse(payload, None)

    def _parse(self, payload: Any, workflow: str | None) -> GenerationRecord:
        return parse_task(
            payload,
            media_base=self.options.media_base,
            retention=timedelta(hours=self.options.retention_hours),
            workflow=workflow,
        )

    # ------------------------------------------------------------------ webhook

    def webhook_ids(self, body: bytes, headers: Mapping[str, str]) -> list[str]:
        """The callback is the task object (``{"taskId", "status", "outputs"}``), unsigned."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejectedError("crowdcomputed callback: body is not JSON") from None
        if not isinstance(doc, dict):
            raise WebhookRejectedError("crowdcomputed callback: body is not an object")
        task_id = _task_id(doc.get("taskId"))
        if task_id is None and isinstance(doc.get("data"), dict):
            task_id = _task_id(doc["data"].get("taskId"))  # the envelope shape, just in case
        if task_id is None:
            raise WebhookRejectedError("crowdcomputed callback: no taskId")
        return [task_id]


# --------------------------------------------------------------------------- envelope


def unwrap(body: Any, what: str) -> Any:
    """``data`` of a ``{"code": "Success", ...}`` envelope; any other code raises.

    The API reports errors as ``{"code": "Failed", "message": ..., "data": null}``,
    possibly on HTTP 200, so the code is checked whatever the HTTP status was.
    """
    env = p.require_dict(body, what)
    code = p.as_str(env.get("code"))
    if code is None:
        raise MalformedResponseError(f"{what}: response has no 'code'")
    if code.lower() == "success":
        return env.get("data")
    message = p.as_str(env.get("message")) or "(no message)"
    text = f"{what}: code {code!r}: {message[:200]}"
    error_class = _MESSAGE_ERRORS.get(message.strip().lower())
    if error_class is not None:
        raise error_class(text, status_code=200)
    raise BusinessError(text, code=code)


# --------------------------------------------------------------------------- parsing


def parse_task(
    payload: Any,
    *,
    media_base: str = CrowdComputedOptions().media_base,
    retention: timedelta = timedelta(hours=DEFAULT_RETENTION_HOURS),
    workflow: str | None = None,
) -> GenerationRecord:
    """One task object (history ``pageData[]``, status ``data`` or a callback) -> record."""
    task = p.require_dict(payload, "crowdcomputed task")
    external_id = _task_id(task.get("taskId"))
    if external_id is None:
        raise MalformedResponseError("crowdcomputed task has no taskId")
    outputs = [o for o in p.as_list(task.get("outputs")) if isinstance(o, dict)]
    raw_status = p.as_str(task.get("status"))
    status = STATUS.get((raw_status or "").lower(), GenerationStatus.UNKNOWN)
    media = _media(outputs, media_base, workflow) if status is GenerationStatus.SUCCEEDED else ()
    error = FAILED_REASON if status is GenerationStatus.FAILED else None
    if status is GenerationStatus.SUCCEEDED and not media:
        status, error = GenerationStatus.FAILED, NO_OUTPUTS_REASON
    starts = _times(outputs, "startTime")
    ends = _times(outputs, "endTime")
    created = min(starts, default=None)
    completed = max(ends, default=None) if status.terminal else None
    expires = None
    if completed is not None:
        with contextlib.suppress(OverflowError):  # endTime near datetime.max
            expires = completed + retention
    return GenerationRecord(
        external_id=external_id,
        status=status,
        provider_status=raw_status or "",
        created_at=created,
        completed_at=completed,
        updated_at=max([*starts, *ends], default=None),
        expires_at=expires,
        expires_source=DeadlineSource.ASSUMED if expires else None,
        kind=workflow,
        model=workflow,
        error=error,
        media=media,
        raw=task,
    )


def _task_id(value: Any) -> str | None:
    """``taskId`` as text: an 18-digit id that a JSON number would round, so never int."""
    if isinstance(value, bool | float):
        return None  # a float was rounded by a lossy encoder: not the real id
    return p.as_str(value)


def _times(outputs: list[dict[str, Any]], key: str) -> list[datetime]:
    """Every set (non-zero) Unix-seconds time of ``key`` across the outputs."""
    return [t for t in (p.epoch_seconds(o.get(key)) for o in outputs) if t is not None]


def _media(
    outputs: list[dict[str, Any]], base: str, workflow: str | None
) -> tuple[MediaRecord, ...]:
    """Every URL of every output, in order, relative ones resolved against ``base``."""
    default = _workflow_kind(workflow)
    found: list[MediaRecord] = []
    for output in outputs:
        for value in p.as_list(output.get("urls")):
            url = p.http_url(value, base)
            if url:
                found.append(
                    MediaRecord(
                        url=url,
                        role=MediaRole.RESULT,
                        kind=p.kind_from_url(url, default),
                        url_expires_at=url_expiry(url),
                    )
                )
    return dedupe_by_url(found)


def _workflow_kind(workflow: str | None) -> MediaKind:
    """Kind of an extension-less URL: videos for ``*-video`` workflows, else images."""
    return MediaKind.VIDEO if workflow and "video" in workflow.lower() else MediaKind.IMAGE
