"""A folder as the archive (``file://`` URLs).

Writes are atomic and durable: bytes go to a temp file inside the archive root
(``.genvault-tmp/``, so the final rename never crosses filesystems), the file is
fsynced, renamed over the final path with :func:`os.replace`, and the parent
folder is fsynced so the rename itself survives a power cut. A reader therefore
sees either the old file, or the complete new one, never a partial one.

**Batched durability** (``put(..., durable=False)``, the archive job's writes): the
fsyncs move out of the write into :meth:`LocalStorage.sync`, which the caller runs
before it records the files anywhere. The file's descriptor stays open until then;
``sync`` calls ``syncfs(2)`` on the archive's filesystem (one writeback and one
journal commit for the whole batch, where a per-file fsync paid a commit for every
file and another for its folder), then fsyncs each file (now cheap; it reports a
write error of that very file, which ``syncfs`` on older kernels does not) and each
folder that gained an entry, once. The guarantee is the same as the per-file
protocol's: nothing is recorded as stored before its bytes and its name are on disk.

The sha256 is kept in an extended attribute of the file rather than in a
sidecar file, so it is replaced atomically together with the bytes. Where the
filesystem has no user xattrs, :meth:`LocalStorage.stat` reports ``sha256=None``
and callers fall back to re-hashing the file.

**Several writers on one folder** (replicas on PostgreSQL sharing an NFS export):
each temp file is held under an exclusive ``flock`` by its writer from its creation
until it has been renamed into place, and the start-up :meth:`LocalStorage.cleanup`
removes only temp files whose lock it can take, i.e. those no live process holds.
A writer that dies (SIGKILL, OOM) loses its lock with its process, so its leftovers
go at the next start; a peer's write in flight is never pulled from under it (it
was: "moving … into place: No such file or directory"). On NFS, Linux implements
``flock`` with the server's byte-range locks (NFSv4, or v3 with lockd), so the locks
are seen across hosts.

**``.genvault-tmp`` must be a real folder.** Temp files are created, renamed and
cleaned through a descriptor of that folder opened with ``O_NOFOLLOW``; a symlink
there is refused (a :class:`StorageError` naming it), because cleanup would
otherwise empty whatever folder the link points to.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import itertools
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from genvault.crashpoints import crash_point
from genvault.errors import StorageError
from genvault.logs import get_logger
from genvault.storage.base import CHUNK_SIZE, HashingReader, StoredObject
from genvault.storage.keys import check_key
from genvault.storage.posix import (
    _DIR_FLAGS,
    _current_umask,
    _fsync_dir,
    _get_sha256,
    _lock,
    _remove_unless_held,
    _same_file,
    _set_sha256,
    _syncfs,
    _write_all,
)

log = get_logger("genvault.storage")

TMP_DIR = ".genvault-tmp"
_CREATE_TRIES = 8
"""Fresh temp names tried when a peer's cleanup removed ours before we held its lock."""
MAX_UNSYNCED = 256
"""Files written with ``durable=False`` whose descriptors may wait for :meth:`LocalStorage.sync`;
beyond it a write is made durable at once (the descriptors are bounded, not the batches)."""
WRITE_BUFFER = 256 * 1024
"""The buffer a source with ``readinto1`` (a download) fills and each write empties: a
body read from the socket lands in it directly. Larger writes cost this kernel more per
byte, not less (bench/PROFILE.md finding A: 1 MiB bimodal, 256 KiB steady)."""
_MAX_KNOWN_FOLDERS = 4096
"""Folders whose checked identity is remembered (``LocalStorage._target``)."""


@dataclass(frozen=True, slots=True)
class _Unsynced:
    """A file renamed into place but not yet flushed: its open descriptor, and the
    folders that gained an entry for it (its own, and the parents of new folders)."""

    fd: int
    folders: tuple[str, ...]


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


class LocalStorage:
    """Archive into a folder; see the module docstring for the write protocol."""

    def __init__(self, root: Path) -> None:
        # Resolved once, so the containment check compares real paths with real paths.
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        self._tmp = self.root / TMP_DIR
        self._file_mode = 0o666 & ~_current_umask()
        self._root_str = str(self.root)
        self._known: dict[str, tuple[int, int]] = {}
        """Folder path (as joined from the key) -> (st_dev, st_ino) it had when it was
        checked to lie inside the root; see :meth:`_target`."""
        self._unsynced: dict[str, list[_Unsynced]] = {}
        self._unsynced_count = 0
        self._unsynced_lock = threading.Lock()
        # Temp names: unique per process without a urandom read per file; the token
        # tells apart processes with the same pid (containers) sharing the folder.
        self._tmp_token = secrets.token_hex(4)
        self._tmp_serial = itertools.count()

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

    def _target(self, key: str) -> tuple[str, str]:
        """(final path, its folder) for writing ``key``: :meth:`_path`'s checks, paid once
        per folder.

        A folder seen before is trusted while it is still the same directory (one
        ``stat``, following links, compared by device and inode): the key has passed
        ``check_key`` (no ``..``, not absolute), so its file lies in that folder, which
        was checked to be inside the root, and ``os.replace`` never follows a link
        at the file's own name. Anything else (a new folder, one replaced or turned
        into a link since) takes the full check, which resolves every component.
        """
        check_key(key)
        if key.split("/", 1)[0] == TMP_DIR:
            raise StorageError(f"invalid storage key {key!r}: {TMP_DIR} is reserved")
        parent, _, name = key.rpartition("/")
        folder = f"{self._root_str}/{parent}" if parent else self._root_str
        known = self._known.get(folder)
        if known is not None:
            try:
                st = os.stat(folder)
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == known:
                return f"{folder}/{name}", folder
            self._known.pop(folder, None)
        final = self._path(key)
        return str(final), str(final.parent)

    def _remember(self, folder: str) -> None:
        """Trust ``folder`` (a resolved path that passed :meth:`_path`) from now on."""
        try:
            st = os.stat(folder, follow_symlinks=False)
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            if len(self._known) >= _MAX_KNOWN_FOLDERS:
                self._known.clear()
            self._known[folder] = (st.st_dev, st.st_ino)

    def _make_parents(self, folder: Path, *, durable: bool = True) -> list[str]:
        """Create missing folders (mkdir -p); returns the folders that gained an entry.

        ``durable``: each new entry's parent is fsynced here (durable mkdir -p), as
        before; otherwise the caller flushes the returned folders later.
        """
        missing: list[Path] = []
        current = folder
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        changed: list[str] = []
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            if durable:
                _fsync_dir(path.parent)
            else:
                changed.append(str(path.parent))
        return changed

    def _open_tmp(self, *, create: bool) -> int | None:
        """A descriptor of ``.genvault-tmp`` (None when absent and not ``create``).

        Opened with ``O_NOFOLLOW``: a symlink there raises StorageError instead of
        being followed, so no write and no cleanup ever happens in the link's target.
        """
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(self._tmp, flags)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            raise _tmp_refused(self._tmp, exc) from exc
        self._make_parents(self._tmp)
        try:
            return os.open(self._tmp, flags)
        except OSError as exc:
            raise _tmp_refused(self._tmp, exc) from exc

    def _locked_temp(self, tmp_fd: int, prefix: str) -> tuple[int, str]:
        """Create a temp file in the folder ``tmp_fd`` and hold its lock: (fd, name).

        The lock is taken right after the file is created; a peer's cleanup can only
        have slipped in between if it removed the file, which the inode check sees,
        and then another name is tried.
        """
        for _ in range(_CREATE_TRIES):
            name = f"{prefix}{os.getpid()}-{self._tmp_token}-{next(self._tmp_serial)}.part"
            fd = os.open(
                name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=tmp_fd
            )
            try:
                if not _lock(fd, fcntl.LOCK_EX) or _same_file(tmp_fd, name, fd):
                    return fd, name
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed by a peer's cleanup before we held it: try again
        raise StorageError(f"could not keep a temp file in {self._tmp}: removed as created")

    # ------------------------------------------------------------------ protocol

    def put(
        self,
        key: str,
        source: BinaryIO,
        *,
        size_hint: int | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Stream ``source`` into ``key`` atomically; content type and metadata are not kept.

        Only the sha256 survives (as an xattr): a folder has nowhere atomic to
        put the rest, and the database holds it anyway. Each chunk is written as
        the source hands it out (``readinto1`` a reused buffer, else ``read1``), never
        gathered first. ``durable=False``: the fsyncs wait for :meth:`sync` (module
        docstring).
        """
        final, folder = self._target(key)
        if not durable and self._unsynced_count >= MAX_UNSYNCED:
            durable = True  # enough descriptors wait already: this one is flushed now
        with _storage_errors(f"preparing {self._tmp}"):
            tmp_fd = self._open_tmp(create=True)
            assert tmp_fd is not None
        keep_fd = False
        try:
            with _storage_errors(f"preparing {self._tmp}"):
                fd, tmp_name = self._locked_temp(tmp_fd, "put-")
            # The descriptor (and with it the lock) stays open until the file has its
            # final name: a peer's cleanup never sees an unlocked temp file of ours.
            try:
                reader = HashingReader(source)
                with _storage_errors(f"writing {key}"):
                    os.fchmod(fd, self._file_mode)
                if hasattr(source, "readinto1"):
                    buffer = memoryview(bytearray(WRITE_BUFFER))
                    while n := reader.readinto1(buffer):
                        with _storage_errors(f"writing {key}"):
                            _write_all(fd, buffer[:n])
                else:
                    while chunk := reader.read1(CHUNK_SIZE):
                        with _storage_errors(f"writing {key}"):
                            _write_all(fd, chunk)
                with _storage_errors(f"writing {key}"):
                    _set_sha256(fd, reader.sha256)
                    if durable:
                        os.fsync(fd)
                crash_point("local.before_rename")
                with _storage_errors(f"moving {key} into place"):
                    folders = [folder]
                    if folder not in self._known:
                        folders += self._make_parents(Path(folder), durable=durable)
                        self._remember(folder)
                    os.replace(tmp_name, final, src_dir_fd=tmp_fd)
                    if durable:
                        _fsync_dir(folder)
                    else:
                        self._defer(key, _Unsynced(fd, tuple(folders)))
                        keep_fd = True
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name, dir_fd=tmp_fd)
                raise
            finally:
                if not keep_fd:
                    os.close(fd)
        finally:
            os.close(tmp_fd)
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Store a small in-memory object with the same atomic write as :meth:`put`."""
        return self.put(
            key,
            io.BytesIO(data),
            size_hint=len(data),
            content_type=content_type,
            metadata=metadata,
            durable=durable,
        )

    def _defer(self, key: str, entry: _Unsynced) -> None:
        with self._unsynced_lock:
            self._unsynced.setdefault(key, []).append(entry)
            self._unsynced_count += 1

    def sync(self, keys: Iterable[str] | None = None) -> None:
        """Flush the files written with ``durable=False`` under ``keys`` (all when None)
        and their folders' new entries; StorageError if any may not be on disk.

        ``syncfs(2)`` first, so the writeback and the journal commit happen once for
        the batch; then an fsync of each file (reports that file's write errors) and
        of each folder that gained an entry, once each. The descriptors are closed
        whatever happens: a file whose flush failed is not trusted again, its caller
        records it as not stored and writes it anew.
        """
        with self._unsynced_lock:
            if keys is None:
                entries = [e for batch in self._unsynced.values() for e in batch]
                self._unsynced.clear()
            else:
                entries = [e for k in keys for e in self._unsynced.pop(k, ())]
            self._unsynced_count -= len(entries)
        if not entries:
            return
        try:
            with _storage_errors(f"flushing {len(entries)} file(s) to {self.root}"):
                self._syncfs()
                for entry in entries:
                    os.fsync(entry.fd)
                for folder in dict.fromkeys(f for e in entries for f in e.folders):
                    _fsync_dir(folder)
        finally:
            for entry in entries:
                with contextlib.suppress(OSError):
                    os.close(entry.fd)

    def _syncfs(self) -> None:
        """``syncfs(2)`` of the archive's filesystem, where libc has it (else the
        fsyncs that follow do all the work, one file at a time)."""
        if _syncfs is None:
            return
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            if _syncfs(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)

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
        """Delete temp files of interrupted writes that no live writer holds; returns how many.

        A temp file whose lock another process holds is a write in flight (a replica
        sharing this folder) and is left alone, whatever its age; one whose writer
        died has lost its lock and goes. ``older_than_seconds`` (``storage.
        stale_upload_seconds``) spares younger files too. A symlinked
        ``.genvault-tmp`` is refused with a StorageError: it is never followed.
        """
        cutoff = time.time() - older_than_seconds
        removed = held = 0
        with _storage_errors(f"cleaning {self._tmp}"):
            tmp_fd = self._open_tmp(create=False)
            if tmp_fd is None:
                return 0
            try:
                with os.scandir(tmp_fd) as entries:
                    names = [e.name for e in entries]
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
                        if older_than_seconds > 0 and st.st_mtime > cutoff:
                            continue
                        if stat.S_ISDIR(st.st_mode):
                            shutil.rmtree(name, dir_fd=tmp_fd)
                        elif stat.S_ISREG(st.st_mode):
                            if not _remove_unless_held(tmp_fd, name):
                                held += 1
                                continue
                        else:  # a symlink, a FIFO...: removed itself, never followed
                            os.unlink(name, dir_fd=tmp_fd)
                    except FileNotFoundError:
                        continue  # its writer renamed it into place meanwhile
                    removed += 1
            finally:
                os.close(tmp_fd)
        if held:
            log.info("storage.cleanup_skipped_live", folder=str(self._tmp), files=held)
        return removed

    def check(self) -> None:
        """Write, fsync and delete a probe file in the temp folder (readiness, and the
        storage breaker's probe). Held under its lock, so a peer's cleanup leaves it be."""
        with _storage_errors(f"archive folder {self.root} is not writable"):
            tmp_fd = self._open_tmp(create=True)
            assert tmp_fd is not None
            try:
                fd, name = self._locked_temp(tmp_fd, "probe-")
                try:
                    os.write(fd, b"genvault")
                    os.fsync(fd)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=tmp_fd)
                    os.close(fd)
            finally:
                os.close(tmp_fd)


def _tmp_refused(path: Path, exc: OSError) -> StorageError:
    # O_NOFOLLOW on a symlink: ELOOP, or ENOTDIR when O_DIRECTORY is checked first (Linux).
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
        return StorageError(
            f"{path} is a symlink: genvault keeps its temp files only in a real folder "
            "inside the archive, and never follows a link there (remove the link)"
        )
    if exc.errno == errno.ENOTDIR:
        return StorageError(f"{path} is not a folder")
    return StorageError(f"opening {path}: {exc.strerror or exc}")
