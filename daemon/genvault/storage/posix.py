"""POSIX file primitives the local folder backend is built on.

What :mod:`genvault.storage.local` needs of the operating system, each with the
edge cases that cost a file when missed: a short ``write``, a folder fsync that makes
a rename durable, the sha256 in an extended attribute (absent on some filesystems),
``syncfs(2)`` through libc (Linux only), ``flock`` where a filesystem has no locks,
and removing a peer's temp file only when no live process holds it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
from collections.abc import Callable
from pathlib import Path

from genvault.logs import get_logger

log = get_logger("genvault.storage")

XATTR_SHA256 = "user.genvault.sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NO_XATTR = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(2)`` (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


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


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    written = os.write(fd, data)
    if written == len(data):
        return
    view = memoryview(data)
    while written < len(view):
        written += os.write(fd, view[written:])


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


_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
_warned_no_locks = False


def _lock(fd: int, operation: int) -> bool:
    """``flock``; False where the filesystem has no locks (some FUSE and SMB mounts).

    There, writing goes on unlocked, as before locks existed, and cleanup cannot tell
    a live write from a dead one: a folder shared by replicas then needs
    ``storage.stale_upload_seconds`` (said once, as a warning).
    """
    global _warned_no_locks
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        if not _warned_no_locks:
            _warned_no_locks = True
            log.warning(
                "storage.no_file_locks",
                error=exc.strerror,
                hint="replicas sharing this folder need storage.stale_upload_seconds",
            )
        return False
    return True


def _same_file(dir_fd: int, name: str, fd: int) -> bool:
    """``name`` in ``dir_fd`` is still the file open as ``fd`` (not removed or replaced)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _remove_unless_held(dir_fd: int, name: str) -> bool:
    """Unlink the temp file ``name`` if no process holds its lock; False if one does.

    The lock is taken (without waiting) before the unlink and kept across it, and the
    name is checked to still be the file locked: a writer that renamed it into place
    meanwhile is not touched.
    """
    # Opened for writing: on NFS, flock is a POSIX write lock, which needs it.
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        return False  # another user's file: whether it is live cannot be told, so it stays
    try:
        try:
            _lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        if not _same_file(dir_fd, name, fd):
            raise FileNotFoundError(name)  # renamed into place meanwhile: nothing to remove
        os.unlink(name, dir_fd=dir_fd)
        return True
    finally:
        os.close(fd)
