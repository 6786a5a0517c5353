"""Secret redaction in genvault's structlog set-up: no code path may print an API key."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import genvault.logs as gvlog

SECRET = "sk-live-abcdef123456"
MASK = "***"


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """JSON logging into a StringIO, with a private secret registry; all undone afterwards."""
    monkeypatch.setattr(gvlog, "_secrets", set())
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved_level = root.level
    out = io.StringIO()
    gvlog.configure(level="debug", fmt="json", stream=out)
    gvlog.register_secret(SECRET)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text, "nothing was logged"
    assert SECRET not in text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_secret_in_message(stream: io.StringIO) -> None:
    gvlog.get_logger("t").info(f"calling with key {SECRET}")
    [line] = _lines(stream)
    assert line["event"] == f"calling with key {MASK}"
    assert line["level"] == "info"
    assert "timestamp" in line


def test_secret_in_positional_format_args(stream: io.StringIO) -> None:
    gvlog.get_logger("t").info("calling with key %s", SECRET)
    [line] = _lines(stream)
    assert line["event"] == f"calling with key {MASK}"


def test_secret_in_nested_values(stream: io.StringIO) -> None:
    gvlog.get_logger("t").info(
        "request",
        request={"headers": {"x-key": SECRET}, "params": [f"k={SECRET}", ("t", SECRET)]},
        url=f"https://api.example/v1?key={SECRET}&page=2",
    )
    [line] = _lines(stream)
    assert line["request"]["headers"]["x-key"] == MASK
    assert line["request"]["params"] == [f"k={MASK}", ["t", MASK]]
    assert line["url"] == f"https://api.example/v1?key={MASK}&page=2"


def test_secret_in_exception(stream: io.StringIO) -> None:
    log = gvlog.get_logger("t")
    try:
        raise RuntimeError(f"401 Unauthorized for key {SECRET}")
    except RuntimeError:
        log.exception("api.failed")
    [line] = _lines(stream)
    assert line["event"] == "api.failed"
    assert line["level"] == "error"
    assert "RuntimeError" in line["exception"]
    assert f"for key {MASK}" in line["exception"]


def test_exception_object_as_value(stream: io.StringIO) -> None:
    gvlog.get_logger("t").warning("retry", error=ValueError(f"bad key {SECRET}"))
    [line] = _lines(stream)
    assert line["error"] == f"ValueError: bad key {MASK}"


@pytest.mark.parametrize(
    "key", ["api_key", "API_KEY", "x_api_key", "auth_token", "password", "authorization"]
)
def test_sensitive_key_names_are_masked(stream: io.StringIO, key: str) -> None:
    # Masked by name even when the value was never registered.
    gvlog.get_logger("t").info("configured", **{key: "unregistered-value-42"})
    text = stream.getvalue()
    assert "unregistered-value-42" not in text
    [line] = _lines(stream)
    assert line[key] == MASK


def test_api_key_field_with_the_secret(stream: io.StringIO) -> None:
    gvlog.get_logger("t").info("configured", api_key=SECRET, account="main")
    [line] = _lines(stream)
    assert line["api_key"] == MASK
    assert line["account"] == "main"


def test_bound_context_is_redacted(stream: io.StringIO) -> None:
    gvlog.get_logger("t").bind(auth=f"Bearer {SECRET}").info("bound")
    [line] = _lines(stream)
    assert line["auth"] == f"Bearer {MASK}"


def test_non_secret_text_is_untouched(stream: io.StringIO) -> None:
    gvlog.get_logger("t").info("sync.page", page=3, account="main", note="sk-live-other")
    [line] = _lines(stream)
    assert line["event"] == "sync.page"
    assert (line["page"], line["account"], line["note"]) == (3, "main", "sk-live-other")
    assert MASK not in stream.getvalue()


def test_level_filtering(stream: io.StringIO) -> None:
    gvlog.configure(level="warning", fmt="json", stream=stream)
    log = gvlog.get_logger("t")
    log.info(f"hidden {SECRET}")
    log.warning(f"shown {SECRET}")
    [line] = _lines(stream)
    assert line["event"] == f"shown {MASK}"


def test_short_values_are_not_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gvlog, "_secrets", set())
    gvlog.register_secret("abc")
    gvlog.register_secret("")
    assert gvlog._secrets == set()
    assert gvlog.scrub("abc abc") == "abc abc"


def test_scrub_masks_every_occurrence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gvlog, "_secrets", set())
    gvlog.register_secret(SECRET)
    assert gvlog.scrub(f"{SECRET}/{SECRET}") == f"{MASK}/{MASK}"


def test_library_records_are_json_lines_and_redacted(stream: io.StringIO) -> None:
    """APScheduler, botocore & co. log through stdlib logging: with JSON on, their lines
    must be JSON too (a log shipper parses every line), and secrets masked as well."""
    logging.getLogger("apscheduler.scheduler").warning("job %s skipped, key %s", "sync", SECRET)
    [line] = _lines(stream)
    assert line["event"] == f"job sync skipped, key {MASK}"
    assert line["level"] == "warning" and line["logger"] == "apscheduler.scheduler"


def test_lines_from_many_threads_never_interleave(stream: io.StringIO) -> None:
    import threading

    def spam(n: int) -> None:
        for i in range(200):
            if n % 2:
                gvlog.get_logger("t").info("structlog line", n=n, i=i, pad="x" * 300)
            else:
                logging.getLogger("lib").warning("stdlib line %d %d %s", n, i, "y" * 300)

    threads = [threading.Thread(target=spam, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(stream)  # every line parses as one JSON object
    assert len(lines) == 6 * 200


_CONSOLE = """
import io, logging, sys
from genvault.logs import configure, get_logger
out = io.StringIO()
configure("info", sys.argv[1], stream=out)
try:
    raise RuntimeError("boom")
except RuntimeError:
    get_logger("t").exception("failed", account="a")
try:
    {}["k"]
except KeyError:
    logging.getLogger("botocore").error("lib error", exc_info=True)
print(repr("rich" in sys.modules))
print(out.getvalue())
from genvault.report import Console  # rich stays importable for the tables
print(Console.__module__)
"""


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_logging_loads_no_rich_and_tracebacks_stay_whole(fmt: str) -> None:
    """structlog is imported with rich hidden (``genvault.logs``): in either format,
    exceptions (genvault's and libraries') are the full plain traceback, as before,
    because ``format_exc_info`` renders them before any renderer sees them."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", _CONSOLE, fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    first, *rest = done.stdout.splitlines()
    assert first == "False"
    text = "\n".join(rest)
    for expected in (
        "Traceback (most recent call last)",
        "line 7, in <module>",
        "RuntimeError: boom",
        "KeyError: 'k'",
        "rich.console",
    ):
        assert expected in text
    assert "╭" not in text  # no rich panel
