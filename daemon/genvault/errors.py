"""Every exception genvault raises on purpose, in one tree.

The split that matters is *transient* versus *permanent*: a transient error
means "the same call may succeed later" (the job schedules a retry with
backoff), a permanent one means "retrying the same call is pointless" (the
item is marked failed with the reason, or lost once its deadline passed).
Jobs catch these classes, never strings.

    GenvaultError
    ├── ConfigError                     bad config; the CLI exits 2 with one line
    ├── AlreadyRunningError             another process holds this SQLite database (exit 5)
    ├── UnsafeURLError                  SSRF guard refused a URL (permanent)
    ├── WebhookRejectedError            a callback failed its signature/shape check (4xx)
    ├── ProviderError                   talking to a provider's API
    │   ├── TransientProviderError      5xx, timeouts, resets, slow bodies
    │   │   ├── RateLimitedError        429; carries retry_after seconds
    │   │   ├── DeadlineExceededError   one request outlived api_deadline_seconds
    │   │   └── CircuitOpenError        the provider is down: refused without a request
    │   └── PermanentProviderError      the same request will fail again
    │       ├── AuthError               401/403, the provider's "bad key" codes
    │       ├── NotFoundError           404 / "task not found"
    │       ├── BusinessError           HTTP 200 carrying an error code
    │       └── MalformedResponseError  HTML instead of JSON, truncated JSON,
    │                                   wrong types; also raised by parsers
    ├── DownloadError                   fetching one media file
    │   ├── TransientDownloadError      truncated stream, size mismatch, 5xx
    │   ├── MediaGoneError              403/404/410: the URL no longer serves
    │   └── PermanentDownloadError      too large, not media, unsafe URL
    └── StorageError                    writing to the archive failed (transient)
"""

from __future__ import annotations

from datetime import datetime


class GenvaultError(Exception):
    """Base of every error genvault raises deliberately."""


class AlreadyRunningError(GenvaultError):
    """Another genvault process holds this SQLite database; replicas need PostgreSQL."""


class ConfigError(GenvaultError):
    """Configuration is invalid; the message names the key at fault."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config error: {key}: {problem}")


class UnsafeURLError(GenvaultError):
    """A URL was refused by the network policy (scheme, private address, allowlist)."""


class WebhookRejectedError(GenvaultError):
    """A provider callback was refused: bad signature, undecryptable or unreadable body."""


# --------------------------------------------------------------------------- provider API


class ProviderError(GenvaultError):
    """A provider API call failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TransientProviderError(ProviderError):
    """Retry later: server errors, timeouts, connection resets."""


class RateLimitedError(TransientProviderError):
    """HTTP 429 (or a provider's own rate-limit code)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=429)


class DeadlineExceededError(TransientProviderError):
    """One request took longer than ``network.api_deadline_seconds`` in all.

    httpx's read timeout bounds each read, so a server that drips a byte at a
    time never trips it; this bounds the whole answer instead.
    """


class CircuitOpenError(TransientProviderError):
    """The account's circuit breaker is open: the call was refused before any request.

    Transient, because the provider is expected back; jobs treat it as "skip this
    account until ``retry_at``" rather than as a failure of the item at hand.
    """

    def __init__(
        self, message: str, *, retry_at: datetime | None, retry_after: float | None
    ) -> None:
        self.retry_at = retry_at
        """Wall-clock time (UTC) of the next trial call; None while a trial is in flight."""
        self.retry_after = retry_after
        """Seconds until that trial, as far as this process knows."""
        super().__init__(message)


class PermanentProviderError(ProviderError):
    """The same request will fail again; do not retry it as is."""


class AuthError(PermanentProviderError):
    """The API key was refused."""


class NotFoundError(PermanentProviderError):
    """The provider does not know this id (any more)."""


class BusinessError(PermanentProviderError):
    """HTTP 200 with an error code in the body (Akool ``code != 1000``, ``code: "Failed"``)."""

    def __init__(self, message: str, *, code: object = None) -> None:
        self.code = code
        super().__init__(message, status_code=200)


class MalformedResponseError(PermanentProviderError):
    """The body is not what the API documents: HTML, truncated JSON, wrong types."""


# --------------------------------------------------------------------------- media download


class DownloadError(GenvaultError):
    """Fetching one media file failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TransientDownloadError(DownloadError):
    """Truncated body, length mismatch, 5xx, timeout: try again later."""


class MediaGoneError(DownloadError):
    """403/404/410: the URL stopped serving; refresh it from the provider or give up."""


class PermanentDownloadError(DownloadError):
    """Retrying cannot help: unsafe URL, over the size cap, an error page instead of media."""


# --------------------------------------------------------------------------- storage


class StorageError(GenvaultError):
    """The archive backend refused or failed a write; treated as transient."""


class SyncError(StorageError):
    """``Storage.sync`` found writes that failed, and names their keys.

    The keys asked for that are not in :attr:`keys` are durable: a caller may record
    those and retry only these (S3's deferred uploads fail one by one; a folder's
    flush, which cannot tell, raises a plain :class:`StorageError` for the batch).
    """

    def __init__(self, message: str, *, keys: frozenset[str]) -> None:
        super().__init__(message)
        self.keys = keys
