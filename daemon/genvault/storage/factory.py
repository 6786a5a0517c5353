"""Pick and build the storage backend named by ``storage.url``.

Everything about storage config is checked here, at start-up, so that a typo
in the URL or the key template stops the daemon with one ConfigError line
instead of failing every archive attempt later.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from genvault.config import StorageSettings
from genvault.errors import ConfigError, StorageError
from genvault.storage.base import Storage
from genvault.storage.keys import check_key, validate_template

MiB = 1024 * 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _local_root(url: str) -> Path:
    """``file:///abs`` or ``file://localhost/abs`` (absolute), ``file://./rel`` (from the CWD)."""
    rest = url.removeprefix("file://")
    if "?" in rest or "#" in rest:
        raise ConfigError("storage.url", "file:// URLs take no query or fragment")
    rest = rest.removeprefix("localhost")
    if rest.startswith("/"):
        return Path(unquote(rest))
    if rest == "." or rest.startswith("./"):
        return Path.cwd() / unquote(rest)
    raise ConfigError("storage.url", "use file:///absolute/path or file://./relative/path")


def _s3_location(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    if "?" in rest or "#" in rest:
        raise ConfigError("storage.url", "s3:// URLs take no query or fragment")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError("storage.url", f"{bucket!r} is not a valid S3 bucket name")
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except StorageError:
            raise ConfigError("storage.url", f"invalid key prefix {prefix!r}") from None
    return bucket, prefix


def open_storage(settings: StorageSettings) -> Storage:
    """The backend for ``settings.url``, after validating the key template."""
    validate_template(settings.key_template)
    url = settings.url
    if url.startswith("file://"):
        from genvault.storage.local import LocalStorage

        return LocalStorage(_local_root(url))
    if url.startswith("s3://"):
        from genvault.storage.s3 import S3Storage

        bucket, prefix = _s3_location(url)
        return S3Storage(
            bucket,
            prefix,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            multipart_threshold=settings.multipart_threshold_mb * MiB,
            multipart_chunk=settings.multipart_chunk_mb * MiB,
        )
    raise ConfigError("storage.url", "must start with file:// or s3://")
