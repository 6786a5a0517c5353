"""Archive backends. See :mod:`genvault.storage.base` for the protocol."""

from genvault.storage.base import HashingReader, Storage, StoredObject
from genvault.storage.factory import open_storage

__all__ = ["HashingReader", "Storage", "StoredObject", "open_storage"]
