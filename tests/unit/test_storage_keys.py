"""Storage keys: provider-controlled ids must never escape, hide or collide.

Example tests pin the readable, common case; the hypothesis properties cover
what a hostile or merely odd provider can send (path tricks, NUL, bidi and
zero-width characters, fullwidth lookalikes, very long ids).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from genvault.config import DEFAULT_KEY_TEMPLATE
from genvault.errors import ConfigError, StorageError
from genvault.storage.keys import (
    MAX_KEY_BYTES,
    build_key,
    check_key,
    extension_for,
    sanitize_component,
    sidecar_key,
    validate_template,
)

CREATED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
SAFE_KEY = re.compile(r"[A-Za-z0-9._/-]+")
FIELDS: dict[str, object] = {
    "provider": "openai",
    "account": "main",
    "external_id": "task_123",
    "created": CREATED,
    "position": 0,
    "role": "result",
    "ext": "jpg",
}


def key_for(external_id: str, template: str = DEFAULT_KEY_TEMPLATE, prefix: str = "") -> str:
    return build_key(
        template,
        prefix=prefix,
        provider="openai",
        account="main",
        external_id=external_id,
        created=CREATED,
        position=1,
        role="result",
        ext="png",
    )


# --------------------------------------------------------------------------- examples


def test_default_template_gives_readable_keys() -> None:
    assert key_for("task_123") == "openai/main/2024/05/06/task_123/01-result.png"
    assert key_for("task_123", prefix="/archive/v1/") == (
        "archive/v1/openai/main/2024/05/06/task_123/01-result.png"
    )


def test_sidecar_sits_next_to_the_generation_files() -> None:
    expected = "openai/main/2024/05/06/task_123/generation.json"
    assert sidecar_key(DEFAULT_KEY_TEMPLATE, **FIELDS) == expected  # type: ignore[arg-type]
    # Fields of any asset may be passed: position is always taken as 0.
    fields = {**FIELDS, "position": 7, "role": "thumbnail", "ext": "webp"}
    assert sidecar_key(DEFAULT_KEY_TEMPLATE, **fields) == expected  # type: ignore[arg-type]


def test_sidecar_follows_a_custom_template() -> None:
    template = "{kind}/{created:%Y-%m}/{external_id}/{asset_id}.{ext}"
    fields = {**FIELDS, "kind": "video", "asset_id": 99}
    assert sidecar_key(template, **fields) == "video/2024-05/task_123/generation.json"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"),
        ("Task-1.2_x", "Task-1.2_x"),
        ("a/b", "a_b-"),
        ("../../etc/passwd", "_.._.._etc_passwd-"),
        ("..", "_..-"),
        (".", "_.-"),
        ("", "_-"),
        (".hidden", "_.hidden-"),
        ("-rf", "_-rf-"),
        ("a\x00b", "a_b-"),
        ("\uff46\uff4f\uff4f", "foo-"),  # fullwidth "foo": hashed, so it differs from "foo"
        ("a\u200bb", "a_b-"),  # zero-width space
        ("a  //  b", "a_b-"),  # runs collapse
    ],
)
def test_sanitize_component_examples(value: str, expected: str) -> None:
    out = sanitize_component(value)
    if expected.endswith("-") and expected != value:
        assert re.fullmatch(re.escape(expected) + r"[0-9a-f]{10}", out), out
    else:
        assert out == expected


def test_sanitize_keeps_long_ids_distinct() -> None:
    a, b = "x" * 1000 + "a", "x" * 1000 + "b"
    sa, sb = sanitize_component(a), sanitize_component(b)
    assert len(sa) == len(sb) == 120
    assert sa != sb
    assert sa.startswith("x" * 100)


def test_sanitize_hashes_safe_values_that_look_hashed() -> None:
    """Else the literal id ``a-0123456789`` could equal the sanitized form of another id."""
    out = sanitize_component("a-0123456789")
    assert out.startswith("a-0123456789-")


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_KEY_TEMPLATE,
        "{account}/{external_id}/{asset_id}.{ext}",
        "{kind}/{created:%Y-%m}/{external_id}/{position:03d}_{role}.{ext}",
        "media/{provider}/{account}/{external_id}/{role}-{position}-{asset_id}.{ext}",
    ],
)
def test_valid_templates(template: str) -> None:
    validate_template(template)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{provider}/{nope}/{external_id}/{position}-{role}", "unknown field"),
        ("{provider}/{created.year}/{external_id}/{position}-{role}", "unknown field"),
        ("{provider}/{external_id!r}/{position}-{role}", "conversions"),
        ("{provider}/{external_id}/{position:q}-{role}", "bad format spec"),
        ("{provider}/{external_id}/{position:+d}-{role}", "unsafe"),
        ("{provider:>20}/{external_id}/{position}-{role}", "no format spec"),
        ("{external_id:.4}/{position}-{role}", "no format spec"),
        ("/abs/{external_id}/{position}-{role}", "relative"),
        ("{provider}/{position}-{role}.{ext}", "must contain {external_id}"),
        ("{provider}/{external_id}-{position}-{role}.{ext}", "must be in a folder"),
        ("{provider}/{external_id}/{role}.{ext}", "needs {position} and {role}"),
        ("{provider}/{external_id}/{role}/{position}.{ext}", "not in folders: {role}"),
        ("{provider}/{external_id}/{asset_id}/x.{ext}", "not in folders: {asset_id}"),
        ("{provider}/{created}/{external_id}/{position}-{role}", "strftime"),
        ("{provider}/{created:%c}/{external_id}/{position}-{role}", "unsafe"),
        ("{provider}/{created:%Y/../%m}/{external_id}/{position}-{role}", "'..'"),
        ("{provider}/../{external_id}/{position}-{role}", "'..'"),
        ("{provider}//{external_id}/{position}-{role}", "empty"),
        ("{provider}/.x/{external_id}/{position}-{role}", "hidden"),
        ("{provider} x/{external_id}/{position}-{role}", "only letters"),
        ("{provider/{external_id}/{position}-{role}", "not a valid template"),
        ("{provider}}/{external_id}/{position}-{role}", "not a valid template"),
        ("{external_id}/" + "x" * 1000 + "/{position}-{role}", "bytes"),
    ],
)
def test_invalid_templates(template: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_template(template)
    assert info.value.key == "storage.key_template"
    assert problem in info.value.problem


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/./b", "../x", "a/../b", "a/..", "a\x00b", "a\\b", "x" * 1025]
)
def test_check_key_refuses_unsafe_keys(key: str) -> None:
    with pytest.raises(StorageError):
        check_key(key)


@pytest.mark.parametrize(
    ("url", "content_type", "kind", "expected"),
    [
        ("https://x/a.bin", "image/jpeg", "image", "jpg"),
        ("https://x/a", "IMAGE/PNG; charset=binary", "image", "png"),
        ("https://x/a", "image/webp", "image", "webp"),
        ("https://x/a", "image/gif", "image", "gif"),
        ("https://x/a", "video/mp4", "video", "mp4"),
        ("https://x/a", "video/webm", "video", "webm"),
        ("https://x/a", "video/quicktime", "video", "mov"),
        ("https://x/a", "audio/mpeg", "audio", "mp3"),
        ("https://x/a", "audio/wav", "audio", "wav"),
        ("https://x/a", "audio/ogg", "audio", "ogg"),
        ("https://x/a", "audio/mp4", "audio", "m4a"),
        ("https://cdn/x/file.WEBP?X-Amz-Signature=abc.def", "application/octet-stream", "", "webp"),
        ("https://cdn/x/file.jpeg", None, "image", "jpg"),
        ("https://cdn/x/archive.tar.gz", None, "other", "bin"),  # not a media extension
        ("https://cdn/x/file%2Epng", None, "image", "png"),
        ("https://cdn/x/file.abcdef", None, "video", "mp4"),
        ("https://cdn/x/file.p_g", None, "audio", "mp3"),
        ("https://cdn/x/noext", None, "image", "jpg"),
        ("https://cdn/x/.png", None, "image", "jpg"),
        ("https://cdn/x.y/noext", None, "other", "bin"),
        ("not a url", None, "", "bin"),
    ],
)
def test_extension_for(url: str, content_type: str | None, kind: str, expected: str) -> None:
    assert extension_for(url, content_type, kind) == expected


# --------------------------------------------------------------------------- properties

NASTY = [
    "../",
    "..",
    ".",
    "/",
    "\\",
    "\x00",
    "\n",
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",
    "\uff21\uff22",  # fullwidth
    "\uff0e\uff0e\uff0f",  # fullwidth "../": NFKC turns it into a real "../"
    "é",
    "ﬁ",
    "-",
    "_",
    "a",
    "0",
    " ",
    "%2e%2e%2f",
]
ids = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(NASTY), max_size=12).map("".join),
    st.text(min_size=1000, max_size=1200),
    st.builds(lambda a, b: a * 1000 + b, st.sampled_from(["x", "é", "/"]), st.text(max_size=3)),
)
templates = st.sampled_from(
    [
        DEFAULT_KEY_TEMPLATE,
        "{account}/{external_id}/{asset_id}.{ext}",
        "{kind}/{created:%Y-%m}/{external_id}/{position:03d}_{role}.{ext}",
    ]
)
PREFIX = "tenant-a/archive"


def assert_safe(key: str) -> None:
    assert key.startswith(PREFIX + "/")
    assert SAFE_KEY.fullmatch(key), key
    segments = key.split("/")
    assert all(seg not in ("", ".", "..") for seg in segments), key
    assert not any(seg.startswith(".") for seg in segments), key
    assert len(key.encode("utf-8")) <= MAX_KEY_BYTES
    check_key(key)


@settings(max_examples=300, deadline=None)
@given(template=templates, external_id=ids, provider=ids, account=ids, role=ids, ext=ids)
@example(DEFAULT_KEY_TEMPLATE, "../../../etc/passwd", "..", ".", "/", "\x00")
@example(DEFAULT_KEY_TEMPLATE, "x" * 5000, "é" * 500, "\u202e" * 500, "/" * 500, "\uff0e" * 500)
def test_build_key_is_always_safe(
    template: str, external_id: str, provider: str, account: str, role: str, ext: str
) -> None:
    key = build_key(
        template,
        prefix=PREFIX,
        provider=provider,
        account=account,
        external_id=external_id,
        created=CREATED,
        position=3,
        role=role,
        ext=ext,
        kind=role,
        asset_id=42,
    )
    assert_safe(key)
    side = sidecar_key(
        template,
        prefix=PREFIX,
        provider=provider,
        account=account,
        external_id=external_id,
        created=CREATED,
        role=role,
        ext=ext,
        kind=role,
        asset_id=42,
    )
    assert_safe(side)
    assert side.endswith("/generation.json")


@settings(max_examples=500, deadline=None)
@given(a=ids, b=ids)
@example("a/b", "a_b")
@example("\uff46\uff4f\uff4f", "foo")
@example("a\u200bb", "a_b")
@example("x" * 1000 + "1", "x" * 1000 + "2")
def test_distinct_ids_give_distinct_keys(a: str, b: str) -> None:
    assume(a != b)
    assert key_for(a, prefix=PREFIX) != key_for(b, prefix=PREFIX)
    assert sanitize_component(a) != sanitize_component(b)


@settings(max_examples=200, deadline=None)
@given(value=ids)
def test_sanitize_is_deterministic_and_safe(value: str) -> None:
    out = sanitize_component(value)
    assert out == sanitize_component(value)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", out)
    assert out not in (".", "..")
    assert len(out) <= 120


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,60}", fullmatch=True))
def test_safe_values_are_kept_verbatim(value: str) -> None:
    assume(not re.search(r"-[0-9a-f]{10}$", value))
    assert sanitize_component(value) == value
