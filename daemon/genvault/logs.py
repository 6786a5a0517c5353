"""structlog set-up: JSON lines off a terminal, readable console output on one, secrets redacted.

Processors are plain functions (structlog's own style). :func:`redact_secrets`
runs last before rendering, so no code path can print an API key: it masks the
values of sensitive-looking keys and, more importantly, any occurrence of a
registered secret value anywhere in any string of the event, including
exception text and tracebacks.

Context is bound once, not repeated on every call: a job that starts on an
account binds ``job`` and ``account`` with
:func:`structlog.contextvars.bound_contextvars`, and ``merge_contextvars`` (first
in the chain) adds them to every line logged inside, a keyword given on the call
itself still winning. Context variables do not follow work handed to another
thread (a ``ThreadPoolExecutor`` worker starts with an empty context): bind inside
the worker, or run it in :func:`contextvars.copy_context`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO


def _import_structlog_without_rich() -> None:
    """Import structlog as if rich were not installed, unless either is imported already.

    ``import structlog`` always imports ``structlog.dev`` and ``structlog.tracebacks``,
    and when rich is installed they import it (and ``rich.pretty`` imports attrs) for
    one thing: rendering ``exc_info`` on a console. genvault never hands them one:
    :func:`configure` puts ``format_exc_info`` before the renderer, so an exception
    reaches the console renderer as text already, and JSON never uses them. That
    import was ~50 ms of every start (rich, pygments, attrs). With ``rich`` set to
    None in :data:`sys.modules` for the duration, structlog takes its own "rich is not
    installed" branch (``try: import rich / except ImportError``); nothing genvault
    prints changes (``tests/unit/test_logging.py``), and rich stays importable for
    the status tables and progress bars, which import it themselves.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    except ImportError:
        pass  # a structlog that needs rich: imported normally below
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

import structlog  # noqa: E402

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


class LineWriter:
    """Writes whole log lines to one stream under one lock.

    structlog's loggers and the stdlib handler (library records: APScheduler,
    botocore) both write through it, so lines from different threads and from
    both systems never interleave inside a line: every line stays parseable JSON.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()


class LineLogger:
    """structlog's final logger: one :meth:`LineWriter.write_line` per event."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write_line(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


EXPECTED_LIBRARY_NOISE: tuple[tuple[str, str], ...] = (
    ("apscheduler", "maximum number of running instances reached"),
)
"""(logger prefix, message fragment) of library warnings that describe normal operation.

With ``max_instances=1`` APScheduler warns whenever a pass outlasts its interval and
the next run is skipped, which is exactly what that setting is for; in a busy hour
it would be the loudest line in the log while nothing is wrong.
"""


class DemoteExpected(logging.Filter):
    """Handler filter: library records that describe normal operation become debug.

    A handler filter, not a logger filter: logger filters only see records logged on
    that very logger, not those propagated from ``apscheduler.scheduler`` below it.
    The record is rewritten to DEBUG (so it renders as debug) and kept only when
    genvault logs at debug.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        message = record.getMessage()
        for prefix, fragment in EXPECTED_LIBRARY_NOISE:
            if record.name.startswith(prefix) and fragment in message:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return self.level <= logging.DEBUG
        return True


class LineHandler(logging.Handler):
    """The stdlib handler for library records, rendered by structlog like our own."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write_line(self.format(record))
        except Exception:
            self.handleError(record)


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (and stdlib logging for libraries) once per process.

    Library records go through the same processors and renderer, so with JSON
    on, every line of the process is one JSON object, redacted like the rest.
    """
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = getattr(logging, level.upper(), logging.INFO)
    writer = LineWriter(out)
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
        logger_factory=lambda *_args: LineLogger(writer),
        cache_logger_on_first_use=False,
    )
    # Libraries (botocore, httpx, apscheduler) stay quiet below WARNING: APScheduler's
    # "Running job" / "executed successfully" / "Added job" are INFO on every run.
    handler = LineHandler(writer)
    handler.addFilter(DemoteExpected(numeric))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                redact_secrets,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(old)  # configure() again (tests, the demo) replaces, never stacks
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
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
