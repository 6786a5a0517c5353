"""Task ids handed in by people and systems: plain lines or one JSON object per line."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from genvault.intake import MAX_ID_LENGTH, IntakeError, parse_id_lines

WHEN = datetime(2025, 9, 27, 13, 30, 5, tzinfo=UTC)  # epoch 1758979805


def test_plain_ids() -> None:
    lines = ["task_1\n", "  task_2  \n", "c2e1f0a4-6b1d-4f0e-9d3a-0f1e2d3c4b5a"]
    assert parse_id_lines(lines) == [
        {"id": "task_1"},
        {"id": "task_2"},
        {"id": "c2e1f0a4-6b1d-4f0e-9d3a-0f1e2d3c4b5a"},
    ]


def test_reads_a_file_object() -> None:
    fh = io.StringIO('# from the submit script\nabc\n\n{"id": "def"}\n')
    assert parse_id_lines(fh) == [{"id": "abc"}, {"id": "def"}]


def test_comments_and_blank_lines_are_skipped() -> None:
    lines = ["# header", "", "   ", "\t# indented comment", "a", "#b", "c"]
    assert parse_id_lines(lines) == [{"id": "a"}, {"id": "c"}]


def test_empty_input() -> None:
    assert parse_id_lines([]) == []


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        pytest.param('"2025-09-27T13:30:05Z"', WHEN, id="iso-z"),
        pytest.param('"2025-09-27T15:30:05+02:00"', WHEN, id="iso-offset"),
        pytest.param('"2025-09-27T13:30:05.089Z"', WHEN.replace(microsecond=89000), id="iso-ms"),
        pytest.param('"2025-09-27T13:30:05"', WHEN, id="iso-naive-is-utc"),
        pytest.param("1758979805", WHEN, id="epoch-seconds"),
        pytest.param("1758979805.0", WHEN, id="epoch-seconds-float"),
        pytest.param("1758979805089", WHEN.replace(microsecond=89000), id="epoch-ms"),
    ],
)
def test_json_created_at(created_at: str, expected: datetime) -> None:
    [item] = parse_id_lines([f'{{"id": "task_9", "created_at": {created_at}}}'])
    assert item == {"id": "task_9", "created_at": expected}
    assert item["created_at"].tzinfo is not None


def test_json_with_prompt() -> None:
    line = '{"id": "t1", "created_at": "2025-09-27T13:30:05Z", "prompt": "A cat, in the rain"}'
    assert parse_id_lines([line]) == [
        {"id": "t1", "created_at": WHEN, "prompt": "A cat, in the rain"}
    ]


@pytest.mark.parametrize("prompt", ["", "   ", 42, None, ["a"]])
def test_blank_or_non_text_prompt_is_dropped(prompt: Any) -> None:
    [item] = parse_id_lines([json.dumps({"id": "t1", "prompt": prompt})])
    assert item == {"id": "t1"}


def test_json_id_is_stripped_and_numbers_become_text() -> None:
    assert parse_id_lines(['{"id": "  t1  "}', '{"id": 12345}']) == [{"id": "t1"}, {"id": "12345"}]


def test_unknown_json_keys_are_ignored() -> None:
    assert parse_id_lines(['{"id": "t1", "provider": "geminigen", "extra": [1]}']) == [{"id": "t1"}]


# --------------------------------------------------------------------------- errors


def _error(lines: list[str]) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        parse_id_lines(lines)
    assert isinstance(info.value, ValueError)
    return info.value


def test_bad_json_names_the_line() -> None:
    err = _error(["ok_1", "# comment", '{"id": "t1",'])
    assert str(err).startswith("line 3: not valid JSON")


@pytest.mark.parametrize(
    "line",
    [
        "{}",
        '{"id": null}',
        '{"id": ""}',
        '{"id": "   "}',
        '{"id": true}',
        '{"id": ["t1"]}',
        '{"id": {"uuid": "t1"}}',
        '{"task_id": "t1"}',
    ],
)
def test_missing_id(line: str) -> None:
    err = _error(["first", line])
    assert str(err) == "line 2: missing 'id'"


def test_over_long_plain_id() -> None:
    assert parse_id_lines(["x" * MAX_ID_LENGTH]) == [{"id": "x" * MAX_ID_LENGTH}]
    err = _error(["x" * (MAX_ID_LENGTH + 1)])
    assert "line 1" in str(err)
    assert f"longer than {MAX_ID_LENGTH}" in str(err)


def test_over_long_json_id() -> None:
    err = _error(['{"id": "' + "y" * (MAX_ID_LENGTH + 1) + '"}'])
    assert f"longer than {MAX_ID_LENGTH}" in str(err)


@pytest.mark.parametrize(
    "created_at", ['"yesterday"', '"2025-13-01T00:00:00Z"', "0", "-5", "true", "[1]", '{"t": 1}']
)
def test_unreadable_created_at(created_at: str) -> None:
    err = _error([f'{{"id": "t1", "created_at": {created_at}}}'])
    assert str(err) == "line 1: created_at is not a date"


def test_fractional_epoch_seconds_as_time_time_prints_them() -> None:
    (item,) = parse_id_lines(['{"id": "t1", "created_at": 1758979805.5}'])
    assert item["created_at"].timestamp() == 1758979806


def test_null_created_at_is_absent() -> None:
    assert parse_id_lines(['{"id": "t1", "created_at": null}']) == [{"id": "t1"}]
