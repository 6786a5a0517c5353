"""Task ids handed to genvault by people and systems (``track`` and the HTTP intake).

APIs without a history listing (Akool, QuickRouter) can only be archived if
whoever submitted the generation tells genvault its id. This module turns the
accepted input shapes into ``{"id", "created_at"?, "prompt"?}`` items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from genvault.providers._parse import epoch_millis, epoch_seconds, iso_datetime

MAX_ID_LENGTH = 512


class IntakeError(ValueError):
    """An input line cannot be read as a task id."""


def _item(obj: dict[str, Any], where: str) -> dict[str, Any]:
    raw_id = obj.get("id")
    if raw_id is None or isinstance(raw_id, (dict, list, bool)) or not str(raw_id).strip():
        raise IntakeError(f"{where}: missing 'id'")
    tid = str(raw_id).strip()
    if len(tid) > MAX_ID_LENGTH:
        raise IntakeError(f"{where}: id longer than {MAX_ID_LENGTH} characters")
    item: dict[str, Any] = {"id": tid}
    created = obj.get("created_at")
    if created is not None:
        when = iso_datetime(created)
        if when is None and isinstance(created, (int, float)) and not isinstance(created, bool):
            n = round(created)
            when = epoch_millis(n) if created > 10**11 else epoch_seconds(n)
        if when is None:
            raise IntakeError(f"{where}: created_at is not a date")
        item["created_at"] = when
    prompt = obj.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        item["prompt"] = prompt
    return item


def parse_id_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Plain ids, one per line, or JSON objects per line; blank lines and ``#`` comments skipped."""
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise IntakeError(f"line {n}: not valid JSON: {exc}") from None
            out.append(_item(obj, f"line {n}"))
        else:
            out.append(_item({"id": text}, f"line {n}"))
    return out


def parse_task_objects(items: Sequence[Any], *, where: str = "tasks") -> list[dict[str, Any]]:
    """JSON task entries (objects with ``id``, or bare id strings) -> intake items.

    The HTTP intake and ``track --from-file`` must accept and reject exactly the
    same ids, so both go through :func:`_item`; errors name the entry as
    ``where[i]`` so a submitter can find the bad one in a batch of thousands.
    """
    out = []
    for i, obj in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(obj, str):
            out.append(_item({"id": obj}, at))
        elif isinstance(obj, dict):
            out.append(_item(obj, at))
        else:
            raise IntakeError(f"{at}: must be an id string or an object with 'id'")
    return out
