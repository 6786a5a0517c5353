"""The local side of an import: which files of a folder to look at, what their names and
JSON sidecars say, and what their bytes are.

Nothing here touches the database or the network. The folder is walked without
following links out of it; each file is opened once (``O_NOFOLLOW``) and judged
on that descriptor, so what is checked is what is copied.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from genvault.net.media import sniff_media_type

MEDIA_EXTENSIONS: Final = frozenset(
    {
        "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "avif", "heic", "heif",
        "mp4", "m4v", "mov", "webm", "mkv", "ogv",
        "mp3", "wav", "ogg", "oga", "opus", "m4a", "aac", "flac",
        "bin",
    }
)  # fmt: skip
"""Names the import looks at; a file without an extension is looked at too. Others (a
``.json`` sidecar, a ``.txt``, a ``.html``) are ignored, counted but not listed."""
TEMP_SUFFIXES: Final = (
    ".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".aria2", ".ytdl",
    ".swp", "~",
)  # fmt: skip
"""Unfinished downloads of browsers and download tools, editors' swap files."""
ID_KEYS: Final = ("id", "uuid", "taskId", "task_id", "external_id", "externalId", "generation_id")
"""JSON sidecar keys that may hold the provider's id of the generation, by preference."""
NESTED_KEYS: Final = ("data", "task", "generation", "result")
"""Objects one level down in a sidecar that are searched the same way."""
SIDECAR_MAX_BYTES: Final = 1024 * 1024
HEAD_BYTES: Final = 4096
_WHITESPACE: Final = b" \t\r\n\x0b\x0c"
_BOM: Final = b"\xef\xbb\xbf"
_MAJOR_KINDS: Final = frozenset({"image", "video", "audio"})


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file under the folder (or a link to one that stays inside it)."""

    rel: str
    """Its path relative to the folder, as reports show it."""
    path: Path
    """What is opened: the file itself, or the target of a link inside the folder."""
    folders: tuple[str, ...]
    """The names of the folders between the import folder and the file, nearest first."""

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        """The name without a media extension (``a.b.jpg`` -> ``a.b``; ``a`` -> ``a``)."""
        base, dot, ext = self.name.rpartition(".")
        return base if dot and base and ext.lower() in MEDIA_EXTENSIONS else self.name


@dataclass
class Walked:
    """What a walk of the import folder found."""

    files: list[LocalFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(relative path, why) of files that are not looked at but should be named: links
    leading out of the folder, the same file reached twice."""
    ignored: int = 0
    """Hidden files, unfinished downloads and names that are no media (sidecars)."""


def _wanted(name: str) -> bool:
    """Whether a name is worth looking at (the rest is ignored, counted)."""
    if name.startswith(".") or name.endswith(TEMP_SUFFIXES):
        return False
    base, dot, ext = name.rpartition(".")
    if not dot or not base:
        return True
    return ext.lower() in MEDIA_EXTENSIONS


def walk(root: Path) -> Walked:
    """The files under ``root`` worth matching, in a stable (sorted) order.

    Hidden files and folders and unfinished downloads are left out. Symbolic links
    are never followed out of ``root``: a link to a file inside it is looked at once
    (as the file it names, deduplicated), a link leading out is named as skipped, a
    link to a folder is not descended into.
    """
    root = root.resolve()
    out = Walked()
    seen: dict[tuple[int, int], str] = {}
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        rel_folder = here.relative_to(root)
        folders = tuple(reversed(rel_folder.parts))
        for name in sorted(names):
            rel = (rel_folder / name).as_posix()
            wanted = _wanted(name)
            if not wanted:
                out.ignored += 1
                continue
            path = here / name
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = path.resolve(strict=True)
                    if not target.is_relative_to(root):
                        out.skipped.append((rel, "a symbolic link leading out of the folder"))
                        continue
                    path, st = target, target.stat()
            except (OSError, RuntimeError) as exc:  # a dangling or looping link
                out.skipped.append((rel, f"cannot be read: {exc.__class__.__name__}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                out.ignored += 1
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                out.skipped.append((rel, f"the same file as {seen[ident]}"))
                continue
            seen[ident] = rel
            out.files.append(LocalFile(rel, path, folders))
    return out


class OpenedFile:
    """One local file opened for good: what is sniffed, checked and copied is this
    descriptor's content, whatever happens to the name meanwhile."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(f"{path} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.size = st.st_size
        self.head = os.pread(fd, HEAD_BYTES, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def tail(self, n: int) -> bytes:
        return os.pread(self.fd, n, max(0, self.size - n))

    def reader(self) -> ExactReader:
        """The whole content from its first byte, as a stream storage can read."""
        return ExactReader(self.fd, self.size)


class FileChangedError(Exception):
    """The file grew or shrank while it was copied."""


class ExactReader:
    """Reads exactly ``size`` bytes from ``fd`` (from offset 0): a file that ends early or
    goes on past the size it had when opened raises :class:`FileChangedError` (storage
    then keeps nothing, as with a download cut short)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        left = self._size - self._pos
        if left <= 0:
            if os.pread(self._fd, 1, self._pos):
                raise FileChangedError("the file grew while it was being copied")
            return b""
        want = left if n is None or n < 0 else min(n, left)
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise FileChangedError(
                f"the file shrank while it was being copied ({self._pos} of {self._size} bytes)"
            )
        self._pos += len(data)
        return data


# --------------------------------------------------------------------------- content


@dataclass(frozen=True, slots=True)
class Content:
    """What a file's first bytes prove it is."""

    types: tuple[str, ...]
    """The media types the bytes prove (() when none: not media as far as genvault knows)."""
    problem: str | None = None
    """Why it is no media, when it is not."""

    @property
    def kinds(self) -> frozenset[str]:
        """image / video / audio: the asset kinds this file can be."""
        return frozenset(t.split("/", 1)[0] for t in self.types) & _MAJOR_KINDS

    def content_type_for(self, kind: str) -> str | None:
        """The type to store it with as a file of ``kind`` (an ``isom`` MP4 may be audio)."""
        for t in self.types:
            if t.split("/", 1)[0] == kind:
                return t
        return self.types[0] if self.types else None


def sniff(head: bytes, size: int) -> Content:
    """Judge a file by its first bytes, as a download is (an error page saved under a
    media name is refused whatever the name says)."""
    if size == 0:
        return Content((), "the file is empty")
    types = sniff_media_type(head)
    if types:
        return Content(types)
    text = head.removeprefix(_BOM).lstrip(_WHITESPACE)[:64].lower()
    if not text:
        return Content((), "the file starts with nothing but whitespace: not media")
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<title")):
        return Content((), "an HTML page, not media (an error page saved as a file?)")
    if text.startswith((b"<?xml", b"<error", b"<!--", b"<")):
        return Content((), "an XML or HTML document, not media (an error page saved as a file?)")
    if text.startswith((b"{", b"[")):
        return Content((), "a JSON document, not media (an error answer saved as a file?)")
    return Content((), f"not a media format genvault knows (starts with {head[:8].hex()})")


def completeness(f: OpenedFile, content: Content) -> str | None:
    """Why the file looks cut short, by its own format, or None (whole, or a format with
    no end to check: MP3, Ogg, FLAC, Matroska).

    Used when the provider no longer says how big the file is: a download that
    stopped early is still refused where the format can tell.
    """
    if not content.types:
        return None
    kind = content.types[0]
    size = f.size
    if kind == "image/jpeg":
        end = f.tail(4096).rstrip(b"\x00")  # some encoders pad after the end marker
        return None if end.endswith(b"\xff\xd9") else "a JPEG without its end marker (cut short?)"
    if kind == "image/png":
        return None if f.tail(8) == b"IEND\xaeB`\x82" else "a PNG without its IEND chunk"
    if kind == "image/gif":
        return None if f.tail(1) == b";" else "a GIF without its trailer byte"
    if f.head.startswith(b"RIFF") and len(f.head) >= 8:
        declared = int.from_bytes(f.head[4:8], "little") + 8
        if size in (declared, declared + 1):
            return None
        return f"the RIFF header says {declared} bytes, the file has {size}"
    if f.head[4:8] == b"ftyp":
        return _boxes_problem(f)
    return None


def _boxes_problem(f: OpenedFile) -> str | None:
    """ISO BMFF (MP4, MOV, HEIC, AVIF): the top-level boxes must tile the file exactly."""
    pos = 0
    for _ in range(100_000):
        if pos == f.size:
            return None
        header = os.pread(f.fd, 16, pos)
        if len(header) < 8:
            break
        box = int.from_bytes(header[:4], "big")
        if box == 1 and len(header) == 16:
            box = int.from_bytes(header[8:16], "big")
        elif box == 0:  # "to the end of the file"
            return None
        if box < 8:
            return f"a broken MP4 box at byte {pos}"
        pos += box
        if pos > f.size:
            return f"the last MP4 box needs {pos} bytes, the file has {f.size} (cut short?)"
    return f"MP4 boxes do not end with the file ({f.size} bytes)"


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class SidecarHints:
    """What a JSON file next to a media file says about it."""

    name: str
    ids: tuple[str, ...]
    urls: tuple[str, ...]
    problem: str | None = None


def read_sidecar(f: LocalFile) -> SidecarHints | None:
    """``<name>.json`` or ``<stem>.json`` next to the file, if there is one: the ids and
    URLs it names (top level, and one level down in ``data``/``task``/...)."""
    for candidate in (f.path.with_name(f.path.name + ".json"), f.path.with_name(f.stem + ".json")):
        try:
            st = candidate.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # a link (or a folder) is not read
        name = candidate.name
        if st.st_size > SIDECAR_MAX_BYTES:
            return SidecarHints(name, (), (), "the JSON sidecar is over 1 MiB: not read")
        try:
            doc = json.loads(candidate.read_bytes())
        except (OSError, ValueError) as exc:
            return SidecarHints(name, (), (), f"the JSON sidecar cannot be read: {exc}"[:200])
        if not isinstance(doc, dict):
            return SidecarHints(name, (), (), "the JSON sidecar is not an object")
        ids: list[str] = []
        urls: list[str] = []
        for obj in (doc, *(doc[k] for k in NESTED_KEYS if isinstance(doc.get(k), dict))):
            _collect(obj, ids, urls)
        return SidecarHints(name, tuple(dict.fromkeys(ids)), tuple(dict.fromkeys(urls)))
    return None


def _collect(obj: dict[str, Any], ids: list[str], urls: list[str]) -> None:
    for key in ID_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            ids.append(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            ids.append(str(value))
    for value in obj.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.startswith(("http://", "https://")):
                urls.append(item)


def _word(c: str) -> bool:
    return c.isascii() and c.isalnum()


def spans(text: str, max_len: int = 512) -> Iterator[tuple[int, int]]:
    """Every ``(start, end)`` of a substring of ``text`` that starts and ends at a word
    boundary (ASCII letters and digits are word characters): where an id can sit in a
    name (``img_<uuid>-2``, ``<id> (1)``, ``grok_<id>``) without matching inside a
    longer number or word."""
    n = len(text)
    starts = [i for i in range(n) if _word(text[i]) and (i == 0 or not _word(text[i - 1]))]
    ends = [j for j in range(1, n + 1) if _word(text[j - 1]) and (j == n or not _word(text[j]))]
    for i in starts:
        for j in ends:
            if j > i and j - i <= max_len:
                yield i, j


_GENVAULT_NAME: Final = re.compile(r"(\d{2,})-(result|thumbnail|last_frame|upscale|reference)")
"""The file name genvault's default key template gives: ``{position:02d}-{role}``."""
_ROLE_WORDS: Final = {
    "thumb": "thumbnail",
    "thumbnail": "thumbnail",
    "thumbnails": "thumbnail",
    "lastframe": "last_frame",
    "upscale": "upscale",
    "upscaled": "upscale",
    "reference": "reference",
}


def genvault_name(stem: str) -> tuple[int, str] | None:
    """(position, role) when the name is one genvault's key template gives."""
    m = _GENVAULT_NAME.fullmatch(stem)
    return (int(m.group(1)), m.group(2)) if m else None


def role_word(stem: str) -> str | None:
    """The role a name says (``<id>_thumb``, ``last-frame``), when it says exactly one."""
    words = [w for w in re.split(r"[^a-z0-9]+", stem.lower()) if w]
    joined = {f"{a}{b}" for a, b in itertools.pairwise(words)}
    roles = {_ROLE_WORDS[w] for w in (*words, *joined) if w in _ROLE_WORDS}
    return roles.pop() if len(roles) == 1 else None
