"""The pure parts of ``genvault import``: ids in names, role words, formats that say
whether a file is whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genvault.ops.importer.files import (
    OpenedFile,
    completeness,
    genvault_name,
    role_word,
    sniff,
    spans,
    walk,
)
from genvault.ops.importer.matching import IdIndex, id_variants
from genvault.store.imports import KnownFile


def _index() -> IdIndex:
    gens = [
        (1, "grok:9ff2280e-6d40-4627-91d0-20dea769a5ee"),
        (2, "582080479780879840"),
        (3, "51de393a-26b4-11f1-9f29-518ad50838c9"),
        (4, "veo3-fast:1776388284-AeRfBUAKEz"),
        (5, "abc"),
    ]
    g3 = "51de393a-26b4-11f1-9f29-518ad50838c9"
    files = [
        KnownFile(10, 2, gens[1][1], "https://x/task/1/output/20256823688333103407.jpg", "k1"),
        KnownFile(11, 3, g3, f"https://x/cdn/{g3}.jpg", "k2"),
        KnownFile(12, 3, g3, f"https://x/cdn/{g3}_thumb.jpg", "k3"),
    ]
    return IdIndex(gens, files)


@pytest.mark.parametrize(
    ("name", "gens", "files"),
    [
        ("grok_9ff2280e-6d40-4627-91d0-20dea769a5ee", {1}, set()),
        ("grok-9ff2280e-6d40-4627-91d0-20dea769a5ee", {1}, set()),
        ("grok:9ff2280e-6d40-4627-91d0-20dea769a5ee", {1}, set()),
        ("9ff2280e-6d40-4627-91d0-20dea769a5ee (1)", {1}, set()),
        ("GROK_9FF2280E-6D40-4627-91D0-20DEA769A5EE", {1}, set()),
        ("veo3-fast_1776388284-AeRfBUAKEz", {4}, set()),
        ("crowd 582080479780879840 final", {2}, set()),
        ("20256823688333103407", {2}, {10}),
        ("51de393a-26b4-11f1-9f29-518ad50838c9", {3}, {11}),
        ("51de393a-26b4-11f1-9f29-518ad50838c9_thumb", {3}, {12}),
        # the generation's id inside a longer name names the generation, not its result
        ("51de393a-26b4-11f1-9f29-518ad50838c9_thumbnail", {3}, set()),
        ("abc", {5}, set()),
    ],
)
def test_ids_are_found_in_names_in_the_forms_files_give_them(
    name: str, gens: set[int], files: set[int]
) -> None:
    match = _index().find_in(name)
    assert match is not None
    assert set(match.generations) == gens and set(match.files) == files


@pytest.mark.parametrize(
    "name",
    [
        "5820804797808798401",  # a longer number is another id
        "x582080479780879840",
        "abc_1",  # a short id matches only a whole name
        "grok",
        "photo",
    ],
)
def test_ids_do_not_match_inside_other_words(name: str) -> None:
    assert _index().find_in(name) is None


def test_two_generations_in_one_name_are_both_reported() -> None:
    match = _index().find_in("582080479780879840 vs 51de393a-26b4-11f1-9f29-518ad50838c9")
    assert match is not None and set(match.generations) == {2, 3}


def test_id_variants_and_spans() -> None:
    v = id_variants("grok:9ff2280e")
    assert {"grok:9ff2280e", "grok_9ff2280e", "grok-9ff2280e", "grok9ff2280e"} <= v
    assert "9ff2280e" in v
    assert ("a-b", (0, 3)) in [("a-b", s) for s in spans("a-b")]
    assert list(spans("--")) == []


def test_roles_in_names() -> None:
    assert role_word("x_thumb") == "thumbnail"
    assert role_word("x-last-frame") == "last_frame"
    assert role_word("x_thumb_upscaled") is None  # two roles: no hint
    assert role_word("sunset") is None
    assert genvault_name("01-thumbnail") == (1, "thumbnail")
    assert genvault_name("1-thumbnail") is None


def _opened(tmp_path: Path, data: bytes) -> OpenedFile:
    path = tmp_path / "f"
    path.write_bytes(data)
    return OpenedFile(path)


def _mp4(payload: int) -> bytes:
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return ftyp + (payload + 8).to_bytes(4, "big") + b"mdat" + b"\x01" * payload


@pytest.mark.parametrize(
    ("data", "whole"),
    [
        (b"\xff\xd8\xff\xe0" + b"\x01" * 100 + b"\xff\xd9", True),
        (b"\xff\xd8\xff\xe0" + b"\x01" * 100 + b"\xff\xd9\x00\x00", True),
        (b"\xff\xd8\xff\xe0" + b"\x01" * 100, False),
        (b"\x89PNG\r\n\x1a\n" + b"\x01" * 50 + b"\x00\x00\x00\x00IEND\xaeB`\x82", True),
        (b"\x89PNG\r\n\x1a\n" + b"\x01" * 50, False),
        (_mp4(1000), True),
        (_mp4(1000)[:-1], False),
        (b"RIFF" + (92).to_bytes(4, "little") + b"WEBPVP8 " + b"\x00" * 84, True),
        (b"RIFF" + (92).to_bytes(4, "little") + b"WEBPVP8 " + b"\x00" * 80, False),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + b"\x00" * 10, True),  # no end
    ],
)
def test_formats_say_whether_a_file_is_whole(tmp_path: Path, data: bytes, whole: bool) -> None:
    with _opened(tmp_path, data) as f:
        content = sniff(f.head, f.size)
        assert content.types
        assert (completeness(f, content) is None) is whole


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\n\n  <!DOCTYPE html><html>", "HTML"),
        (b'{"error": "expired"}', "JSON"),
        (b"<?xml version='1.0'?><Error/>", "XML"),
        (b"plain words", "not a media format"),
    ],
)
def test_documents_are_no_media(data: bytes, says: str) -> None:
    content = sniff(data, len(data))
    assert not content.types and content.problem is not None and says in content.problem


def test_walk_skips_hidden_temporary_and_links_out(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "a.jpg").write_bytes(b"x")
    (root / "sub" / "b.jpg").write_bytes(b"x")
    (root / "c.mp4.part").write_bytes(b"x")
    (root / "d.json").write_text("{}")
    (root / "noext").write_bytes(b"x")
    (tmp_path / "out.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "out.jpg", root / "out.jpg")
    os.symlink(root / "sub" / "b.jpg", root / "again.jpg")
    os.symlink(tmp_path, root / "dirlink")
    walked = walk(root)
    assert [f.rel for f in walked.files] == ["again.jpg", "noext"]
    assert walked.files[0].path == (root / "sub" / "b.jpg").resolve()
    reasons = dict(walked.skipped)
    assert "leading out" in reasons["out.jpg"]
    assert reasons["sub/b.jpg"] == "the same file as again.jpg"
    assert walked.ignored == 2  # c.mp4.part, d.json (the hidden folder is not entered)
