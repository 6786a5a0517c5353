"""structlog set-up: JSON lines off a terminal, readable console output on one, secrets redacted.

Processors are plain functions (structlog's own style). :func:`redact_secrets`
runs last before rendering, so no code path can print an API key: it masks the
values of sensitive-looking keys and, more importantly, any occurrence of a
registered secret value anywhere in any string of the event, including
exception text and tracebacks.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SENSITIVE_KEYS = (
    "api_key",
    "apikey",
    "token",
    "secret",
    "password",
    "authorization",
    "x-api-key",
    "signature",
)
_MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Make ``value`` unprintable in logs from now on (keys shorter than 4 chars are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret masked."""
    for s in _secrets:
        if s in text:
            text = text.replace(s, _MASK)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask sensitive keys and registered secret values."""
    for key in list(event_dict):
        if any(s in key.lower() for s in _SENSITIVE_KEYS) and key not in ("event",):
            event_dict[key] = _MASK
        else:
            event_dict[key] = _scrub_value(event_dict[key])
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging for libraries) once per process."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = getattr(logging, level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries (botocore, httpx, apscheduler) stay quiet below WARNING.
    logging.basicConfig(
        level=logging.WARNING, stream=out, format="%(name)s %(levelname)s %(message)s"
    )
    for noisy in (
        "botocore",
        "boto3",
        "s3transfer",
        "urllib3",
        "httpx",
        "httpcore",
        "apscheduler",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
