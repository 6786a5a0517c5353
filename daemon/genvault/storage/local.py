"""A folder as the archive (``file://`` URLs).

Writes are atomic and durable: bytes go to a temp file inside the archive root
(``.genvault-tmp/``, so the final rename never crosses filesystems), the file is
fsynced, renamed over the final path with :func:`os.replace`, and the parent
folder is fsynced so the rename itself survives a power cut. A reader therefore
sees either the old file, or the complete new one, never a partial one.

The sha256 is kept in an extended attribute of the file rather than in a
sidecar file, so it is replaced atomically together with the bytes. Where the
filesystem has no user xattrs, :meth:`LocalStorage.stat` reports ``sha256=None``
and callers fall back to re-hashing the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from genvault.crashpoints import crash_point
from genvault.errors import StorageError
from genvault.storage.base import CHUNK_SIZE, HashingReader, StoredObject
from genvault.storage.keys import check_key

TMP_DIR = ".genvault-tmp"
XATTR_SHA256 = "user.genvault.sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NO_XATTR = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA})


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Turn filesystem failures of *our own* operations into StorageError.

    Only wraps our calls, never ``source.read``: a source's exception must
    reach the caller unchanged (a truncated download is retried differently).
    """
    try:
        yield
    except OSError as exc:
        raise StorageError(f"{what}: {exc.strerror or exc}") from exc


def _current_umask() -> int:
    """The process umask, read without changing it where /proc allows.

    ``mkstemp`` creates files 0600; archived files should get the same mode a
    plain ``open()`` would give them (so a web server or backup job can read
    them). ``os.umask`` can only be read by setting it, which races with other
    threads, so /proc is preferred.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_sha256(fd: int, digest: str) -> None:
    if not hasattr(os, "setxattr"):
        return
    try:
        os.setxattr(fd, XATTR_SHA256, digest.encode("ascii"))
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _get_sha256(path: Path) -> str | None:
    if not hasattr(os, "getxattr"):
        return None
    try:
        raw = os.getxattr(path, XATTR_SHA256)
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return None
        raise
    value = raw.decode("ascii", "replace")
    return value if _HEX64.fullmatch(value) else None


class LocalStorage:
    """Archive into a folder; see the module docstring for the write protocol."""

    def __init__(self, root: Path) -> None:
        # Resolved once, so the containment check compares real paths with real paths.
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self._tmp = self.root / TMP_DIR
        self._file_mode = 0o666 & ~_current_umask()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # ------------------------------------------------------------------ paths

    def _path(self, key: str) -> Path:
        """The file for ``key``, refusing any key that would land outside the root.

        ``check_key`` rejects ``..`` and absolute keys; resolving also catches a
        symlink inside the archive that points elsewhere.
        """
        check_key(key)
        if key.split("/", 1)[0] == TMP_DIR:
            raise StorageError(f"invalid storage key {key!r}: {TMP_DIR} is reserved")
        path = (self.root / key).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key!r} escapes the archive root {self.root}")
        return path

    def _make_parents(self, folder: Path) -> None:
        """Create missing folders, fsyncing each new entry's parent (durable mkdir -p)."""
        missing: list[Path] = []
        current = folder
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            _fsync_dir(path.parent)

    # ------------------------------------------------------------------ protocol

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        size_hint: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        """Stream ``source`` into ``key`` atomically; content type and metadata are not kept.

        Only the sha256 survives (as an xattr): a folder has nowhere atomic to
        put the rest, and the database holds it anyway.
        """
        final = self._path(key)
        with _storage_errors(f"preparing {self._tmp}"):
            self._make_parents(self._tmp)
            fd, tmp_name = tempfile.mkstemp(prefix="put-", suffix=".part", dir=self._tmp)
        try:
            reader = HashingReader(source)
            with open(fd, "wb") as fh:
                with _storage_errors(f"writing {key}"):
                    os.fchmod(fd, self._file_mode)
                while chunk := reader.read(CHUNK_SIZE):
                    with _storage_errors(f"writing {key}"):
                        fh.write(chunk)
                with _storage_errors(f"writing {key}"):
                    fh.flush()
                    _set_sha256(fd, reader.sha256)
                    os.fsync(fd)
            crash_point("local.before_rename")
            with _storage_errors(f"moving {key} into place"):
                self._make_parents(final.parent)
                os.replace(tmp_name, final)
                _fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        """Store a small in-memory object with the same atomic write as :meth:`put`."""
        return self.put(
            key, io.BytesIO(data), size_hint=len(data), content_type=content_type, metadata=metadata
        )

    def stat(self, key: str) -> StoredObject | None:
        """Size and xattr sha256 (None when the filesystem keeps no xattrs)."""
        path = self._path(key)
        with _storage_errors(f"stat {key}"):
            try:
                st = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not path.is_file():
                return None
            return StoredObject(key=key, size=st.st_size, sha256=_get_sha256(path))

    def open(self, key: str) -> BinaryIO:
        """The stored file, opened for reading; StorageError when absent."""
        path = self._path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise StorageError(f"no object at {key!r}") from None
        except OSError as exc:
            raise StorageError(f"opening {key}: {exc.strerror or exc}") from exc

    def location(self, key: str) -> str:
        """``file:///abs/path`` of ``key``."""
        return self._path(key).as_uri()

    def cleanup(self, older_than_seconds: float = 0.0) -> int:
        """Delete temp files of interrupted writes; returns how many.

        The default removes everything, which is right at start-up of the only
        writer. When several processes share one folder (NFS), pass an age so a
        peer's in-flight write is not pulled from under it.
        """
        if not self._tmp.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        with _storage_errors(f"cleaning {self._tmp}"):
            for entry in os.scandir(self._tmp):
                try:
                    too_young = entry.stat(follow_symlinks=False).st_mtime > cutoff
                    if older_than_seconds > 0 and too_young:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        _rmtree(Path(entry.path))
                    else:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def check(self) -> None:
        """Write, fsync and delete a probe file in the temp folder (readiness)."""
        with _storage_errors(f"archive folder {self.root} is not writable"):
            self._make_parents(self._tmp)
            fd, name = tempfile.mkstemp(prefix="probe-", dir=self._tmp)
            try:
                os.write(fd, b"genvault")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name)


def _rmtree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            _rmtree(child)
        else:
            child.unlink()
    path.rmdir()
