"""Storage keys: where each archived file goes, derived from a configurable template.

Keys are built from provider-supplied values (ids, roles, extensions) that we do
not control, so every value is sanitized *before* it is put into the template:
the template's own slashes are the only path separators, and nothing a provider
sends can climb out of the archive (``../``), hide a file (leading ``.``) or
smuggle in characters that some filesystem, shell or S3 tool mishandles.

Sanitizing is lossy (``a/b`` and ``a_b`` would both become ``a_b``), and a lossy
key would let two generations overwrite each other. So whenever a value has to
be changed, a short hash of the *original* value is appended; values that are
already safe are kept verbatim, which keeps the common case readable.

Templates are validated at start-up (:func:`validate_template`) by rendering a
worst-case sample, so a bad template fails once with a config error instead of
on every archived file.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from genvault.errors import ConfigError, StorageError

MAX_KEY_BYTES = 1024
"""S3's limit on a key, applied to every backend so an archive can move between them."""

COMPONENT_MAX_LEN = 120
"""Per-value cap: long enough for any real id, short enough that a template stays < 1 KiB."""

TEMPLATE_SETTING = "storage.key_template"
SIDECAR_NAME = "generation.json"

_HASH_LEN = 10
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/-]*")
_HASHED_TAIL = re.compile(rf"-[0-9a-f]{{{_HASH_LEN}}}\Z")
_URL_EXT = re.compile(r"[A-Za-z0-9]{1,5}")

_STR_FIELDS = frozenset({"provider", "account", "external_id", "role", "ext", "kind"})
_INT_FIELDS = frozenset({"position", "asset_id"})
_DATE_FIELDS = frozenset({"created"})
ALLOWED_FIELDS = _STR_FIELDS | _INT_FIELDS | _DATE_FIELDS
_PER_FILE_FIELDS = frozenset({"position", "role", "ext", "asset_id"})

_CONTENT_TYPE_EXT = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/pjpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/ogg": "ogg",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/aac": "aac",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/heif": "heic",
    "video/x-matroska": "mkv",
    "video/ogg": "ogv",
}
"""The allowlist: every extension genvault writes comes from here (or _KIND_EXT)."""
_ALLOWED_EXT = frozenset(_CONTENT_TYPE_EXT.values())
_KIND_EXT = {"image": "jpg", "video": "mp4", "audio": "mp3"}


def _short_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def sanitize_component(value: str, max_len: int = COMPONENT_MAX_LEN) -> str:
    """Make one provider-supplied value safe as a single path segment.

    The result matches ``[A-Za-z0-9._-]+``, never starts with ``.`` or ``-``
    (hidden files, options to command-line tools), is never ``.``/``..``, and is
    at most ``max_len`` characters. Values that are already safe come back
    unchanged; any other value gets ``-`` plus 10 hex digits of the sha256 of
    the original appended, so two distinct inputs do not collapse to one key
    (a safe value that itself ends like such a hash is hashed too, for the
    same reason).
    """
    if max_len < _HASH_LEN + 2:
        raise ValueError(f"max_len must be at least {_HASH_LEN + 2}")
    normalized = unicodedata.normalize("NFKC", value)
    base = _UNSAFE_RUN.sub("_", normalized)
    if not base or base[0] in ".-":
        base = "_" + base
    if base == value and len(base) <= max_len and not _HASHED_TAIL.search(base):
        return base
    head = base[: max_len - _HASH_LEN - 1]
    return f"{head}-{_short_hash(value)}"


def check_key(key: str) -> str:
    """Refuse a key that could escape a backend's root or that S3 would reject.

    Backends call this on every key they are handed; :func:`build_key` never
    produces a key that fails it, so a failure means a caller bypassed it.
    """
    if not key or key.startswith("/"):
        raise StorageError(f"invalid storage key {key!r}: empty or absolute")
    if "\x00" in key or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}: NUL or backslash")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}: empty, '.' or '..' segment")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise StorageError(f"invalid storage key: longer than {MAX_KEY_BYTES} bytes")
    return key


# --------------------------------------------------------------------------- templates


_Piece = tuple[str, str | None, str]
"""(literal text, field name or None, format spec)."""


@lru_cache(maxsize=64)
def _parse(template: str) -> tuple[_Piece, ...]:
    """Split a template into pieces, refusing anything beyond ``{name}``/``{name:spec}``.

    Cached: :func:`build_key` runs once per archived file with the same template.
    """
    pieces: list[_Piece] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(TEMPLATE_SETTING, f"not a valid template: {exc}") from None
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None, ""))
            continue
        if name not in ALLOWED_FIELDS:
            known = ", ".join(sorted(ALLOWED_FIELDS))
            raise ConfigError(TEMPLATE_SETTING, f"unknown field {{{name}}} (known: {known})")
        if conversion is not None:
            raise ConfigError(TEMPLATE_SETTING, f"conversions like !{conversion} are not allowed")
        spec = spec or ""
        if "{" in spec or "}" in spec:
            raise ConfigError(TEMPLATE_SETTING, f"nested fields in {{{name}:{spec}}}")
        if name in _STR_FIELDS and spec:
            # Padding adds unsafe fill characters, precision truncates ids (collisions).
            raise ConfigError(TEMPLATE_SETTING, f"{{{name}}} takes no format spec")
        pieces.append((literal, name, spec))
    return tuple(pieces)


def _format_int(name: str, value: int, spec: str) -> str:
    try:
        out = format(value, spec)
    except ValueError as exc:
        raise ConfigError(TEMPLATE_SETTING, f"bad format spec for {{{name}}}: {exc}") from None
    if not _SAFE_COMPONENT.fullmatch(out):
        raise ConfigError(TEMPLATE_SETTING, f"{{{name}:{spec}}} yields unsafe text {out!r}")
    return out


def _format_created(value: datetime, spec: str) -> str:
    if not spec:
        raise ConfigError(
            TEMPLATE_SETTING, "{created} needs a strftime format, e.g. {created:%Y/%m/%d}"
        )
    try:
        out = format(value, spec)
    except ValueError as exc:
        raise ConfigError(TEMPLATE_SETTING, f"bad strftime format for {{created}}: {exc}") from None
    if not _SAFE_PATH.fullmatch(out):
        raise ConfigError(TEMPLATE_SETTING, f"{{created:{spec}}} yields unsafe text {out!r}")
    return out


def _render(pieces: tuple[_Piece, ...], values: dict[str, str | int | datetime]) -> str:
    out: list[str] = []
    for literal, name, spec in pieces:
        out.append(literal)
        if name is None:
            continue
        value = values[name]
        if name in _STR_FIELDS:
            assert isinstance(value, str)
            out.append(sanitize_component(value))
        elif name in _INT_FIELDS:
            assert isinstance(value, int)
            out.append(_format_int(name, value, spec))
        else:
            assert isinstance(value, datetime)
            out.append(_format_created(value, spec))
    return "".join(out)


def _check_rendered(key: str) -> None:
    if key.startswith("/"):
        raise ConfigError(TEMPLATE_SETTING, "keys must be relative (no leading '/')")
    if not _SAFE_PATH.fullmatch(key):
        raise ConfigError(TEMPLATE_SETTING, "use only letters, digits, '.', '_', '-' and '/'")
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            raise ConfigError(TEMPLATE_SETTING, f"key {key!r} has an empty, '.' or '..' segment")
        if seg.startswith("."):
            raise ConfigError(TEMPLATE_SETTING, f"key {key!r} has a hidden ('.') segment")


def _fields_in(pieces: tuple[_Piece, ...]) -> set[str]:
    return {name for _, name, _ in pieces if name is not None}


def validate_template(template: str) -> None:
    """Raise ConfigError unless ``template`` always yields safe, unique keys.

    Besides syntax, this enforces uniqueness, because a collision silently
    overwrites archived files:

    * ``{external_id}`` must appear in the *folder* part: the generation's
      sidecar (``generation.json``) lives in that folder, so two generations
      must never share it;
    * the folder may not use per-file fields (position, role, ext, asset_id),
      so all files of a generation share one folder and one sidecar;
    * the file name must tell a generation's files apart, by ``{position}``
      and ``{role}`` (a result and its thumbnail share a position) or by
      ``{asset_id}``.
    """
    pieces = _parse(template)
    names = _fields_in(pieces)
    if "external_id" not in names:
        raise ConfigError(TEMPLATE_SETTING, "must contain {external_id} (keys must stay unique)")
    folder, sep, file_part = template.rpartition("/")
    folder_names = _fields_in(_parse(folder)) if sep else set()
    if "external_id" not in folder_names:
        raise ConfigError(
            TEMPLATE_SETTING,
            "{external_id} must be in a folder (the generation's sidecar lives there)",
        )
    per_file = sorted(folder_names & _PER_FILE_FIELDS)
    if per_file:
        raise ConfigError(
            TEMPLATE_SETTING,
            f"per-file fields belong in the file name, not in folders: {{{per_file[0]}}}",
        )
    file_names = _fields_in(_parse(file_part))
    if not ({"position", "role"} <= file_names or "asset_id" in file_names):
        raise ConfigError(
            TEMPLATE_SETTING, "the file name needs {position} and {role}, or {asset_id}"
        )
    # Render a worst case (longest values, two-digit month/day) and a typical case.
    long_value = "x" * (COMPONENT_MAX_LEN + 1)
    worst: dict[str, str | int | datetime] = dict.fromkeys(_STR_FIELDS, long_value)
    worst.update(position=9999, asset_id=2**63 - 1, created=datetime(2099, 12, 31, 23, 59, 59))
    sample: dict[str, str | int | datetime] = {
        "provider": "prov",
        "account": "acct",
        "external_id": "id",
        "role": "result",
        "ext": "jpg",
        "kind": "image",
        "position": 0,
        "asset_id": 1,
        "created": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    for values in (sample, worst):
        key = _render(pieces, values)
        _check_rendered(key)
    longest = len(_render(pieces, worst).encode())
    if longest > MAX_KEY_BYTES - 100:
        raise ConfigError(
            TEMPLATE_SETTING,
            f"keys can reach {longest} bytes; keep templates under {MAX_KEY_BYTES - 100}",
        )


def _clean_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    for seg in prefix.split("/"):
        if not _SAFE_COMPONENT.fullmatch(seg) or seg.startswith("."):
            raise ValueError(f"unsafe key prefix {prefix!r}")
    return prefix


def build_key(
    template: str,
    *,
    prefix: str = "",
    provider: str,
    account: str,
    external_id: str,
    created: datetime,
    position: int,
    role: str,
    ext: str,
    kind: str = "",
    asset_id: int = 0,
) -> str:
    """The storage key of one file of a generation.

    ``prefix`` is a logical folder inside the backend (the backend adds its own
    URL prefix on top). String values are sanitized before formatting, so the
    template's slashes are the only separators besides those of the ``created``
    format. The result has no empty, ``.`` or ``..`` segment, no leading ``/``,
    only ``[A-Za-z0-9._/-]`` and at most 1024 bytes; ConfigError otherwise
    (only a template that skipped :func:`validate_template` can get there).
    """
    pieces = _parse(template)
    values: dict[str, str | int | datetime] = {
        "provider": provider,
        "account": account,
        "external_id": external_id,
        "created": created,
        "position": position,
        "role": role,
        "ext": ext,
        "kind": kind,
        "asset_id": asset_id,
    }
    key = _render(pieces, values)
    clean = _clean_prefix(prefix)
    if clean:
        key = f"{clean}/{key}"
    _check_rendered(key)
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ConfigError(TEMPLATE_SETTING, f"key longer than {MAX_KEY_BYTES} bytes: {key[:80]}…")
    return key


def sidecar_key(
    template: str,
    *,
    prefix: str = "",
    provider: str,
    account: str,
    external_id: str,
    created: datetime,
    position: int = 0,
    role: str,
    ext: str,
    kind: str = "",
    asset_id: int = 0,
) -> str:
    """The key of the generation's ``generation.json``, next to its files.

    It is the folder of the media key for position 0. ``position`` is accepted
    (so the fields of any asset can be passed as they are) but always taken as
    0: every file of a generation must agree on one sidecar.
    """
    del position
    media = build_key(
        template,
        prefix=prefix,
        provider=provider,
        account=account,
        external_id=external_id,
        created=created,
        position=0,
        role=role,
        ext=ext,
        kind=kind,
        asset_id=asset_id,
    )
    folder, sep, _ = media.rpartition("/")
    if not sep:
        raise ConfigError(TEMPLATE_SETTING, "keys need a folder for the sidecar")
    return f"{folder}/{SIDECAR_NAME}"


# --------------------------------------------------------------------------- extensions


def extension_for(url: str, content_type: str | None, kind: str) -> str:
    """The file extension for a download, always one of an allowlist of media extensions.

    The media type decides: :func:`genvault.net.media.open_media` has already put the
    type the file's first bytes prove in place of the CDN's label, and only types of
    :data:`_CONTENT_TYPE_EXT` map to an extension. A URL's extension is used only when
    the type says nothing (``application/octet-stream``, unknown bytes) *and* it is on
    the same allowlist (signed URLs often end in ``.bin`` or nothing). A URL's word
    alone never names the file: ``.html``, ``.svg`` or ``.php`` would make an archive
    served by a web server run what the provider (or whoever forged the URL) chose.
    Otherwise the media kind's usual extension, then ``bin``.
    """
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime in _CONTENT_TYPE_EXT:
            return _CONTENT_TYPE_EXT[mime]
    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        path = ""
    name = path.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if dot and stem and _URL_EXT.fullmatch(ext):
        ext = ext.lower()
        ext = "jpg" if ext == "jpeg" else ext
        if ext in _ALLOWED_EXT:
            return ext
    return _KIND_EXT.get(kind, "bin")
