"""Builds the long-lived parts from settings: store, storage, HTTP clients, provider adapters.

The jobs take a :class:`Runtime` and nothing global, so a test can build one
against simulators, a throwaway database and a moto bucket, and the CLI, the
scheduler and the demo all share the same assembly code.
"""

from __future__ import annotations

import secrets as _secrets
import socket
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial

from pydantic import SecretStr

from genvault.config import AccountSettings, ArchiveSettings, Settings
from genvault.errors import StorageError
from genvault.instance import holds_process_lock
from genvault.logs import get_logger, register_secret
from genvault.metrics import ProcessMetrics, UnreadMetrics
from genvault.net.api import ApiClient
from genvault.net.client import HttpClient, build_client
from genvault.net.media import DownloadLimits
from genvault.net.policy import NetworkPolicy
from genvault.net.throttle import ProviderGuard
from genvault.notify import Messenger, messenger_for
from genvault.providers.base import Provider
from genvault.providers.registry import provider_class, validate_options
from genvault.records import DeadlineSource, MediaRole
from genvault.storage import Storage, open_storage
from genvault.storage.guard import StorageGuard
from genvault.store import WORKER_LOCK_TAG, Store

log = get_logger("genvault.runtime")

DEFAULT_RETENTION = timedelta(days=30)


def new_worker_id() -> str:
    """Random per process, so two pods with the same name never share leases.

    It ends in :data:`~genvault.store.WORKER_LOCK_TAG`: this worker's leases die with
    it (its PostgreSQL worker lock, or the SQLite process lock), so they are freed as
    soon as it is gone rather than when they expire.
    """
    return f"{socket.gethostname()[:40]}-{_secrets.token_hex(6)}{WORKER_LOCK_TAG}"


def account_policy(policy: NetworkPolicy, acc: AccountSettings) -> NetworkPolicy:
    """``policy`` with the account's host allowlist (``allowed_hosts``), if it has one."""
    if acc.allowed_hosts is None:
        return policy
    return replace(policy, allowed_hosts=frozenset(acc.allowed_hosts))


def account_roles(acc: AccountSettings, archive: ArchiveSettings) -> frozenset[str]:
    """The roles of an account's files to archive: its ``roles``, else the ``[archive]``
    defaults (results always; thumbnails and references as set)."""
    return frozenset(acc.roles) if acc.roles is not None else default_roles(archive)


def default_roles(archive: ArchiveSettings) -> frozenset[str]:
    """The roles archived unless an account names its own: results, last frames and
    upscales always; thumbnails and references as ``[archive]`` says."""
    roles = {MediaRole.RESULT, MediaRole.LAST_FRAME, MediaRole.UPSCALE}
    if archive.thumbnails:
        roles.add(MediaRole.THUMBNAIL)
    if archive.references:
        roles.add(MediaRole.REFERENCE)
    return frozenset(r.value for r in roles)


@dataclass
class AccountRuntime:
    settings: AccountSettings
    provider: Provider
    policy: NetworkPolicy
    """The network policy plus this account's host allowlist, if it has one."""
    guard: ProviderGuard
    """The account's request budget and circuit breaker: its API client asks it before
    every call; the jobs read and store it (:mod:`genvault.jobs.health`)."""

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def retention(self) -> timedelta:
        return self.provider.retention or DEFAULT_RETENTION

    def archive_roles(self, archive: ArchiveSettings) -> frozenset[str]:
        """The roles of this account's files to archive: its ``roles``, else the
        ``[archive]`` defaults (results always; thumbnails and references as set)."""
        return account_roles(self.settings, archive)

    @property
    def archive_kinds(self) -> frozenset[str] | None:
        """The media kinds to archive (None: every kind)."""
        kinds = self.settings.kinds
        return frozenset(kinds) if kinds is not None else None

    def wants(self, role: str, kind: str, archive: ArchiveSettings) -> bool:
        """Whether this account archives a file of ``role`` and ``kind``."""
        kinds = self.archive_kinds
        return role in self.archive_roles(archive) and (kinds is None or kind in kinds)

    @property
    def retention_source(self) -> DeadlineSource:
        """Where :attr:`retention` comes from: the provider's documented rule, its
        assumption, or genvault's own default when the provider states none."""
        if self.provider.retention is None:
            return DeadlineSource.DEFAULT
        return self.provider.retention_source


@dataclass
class Runtime:
    settings: Settings
    store: Store
    storage: Storage
    policy: NetworkPolicy
    accounts: dict[str, AccountRuntime]
    api_http: HttpClient
    media_http: HttpClient
    worker_id: str = field(default_factory=new_worker_id)
    choices_applied: bool = False
    """Set once each account's choice of roles and kinds was applied to the files already
    known (:meth:`apply_archive_choices`; settings are per process)."""
    metrics: ProcessMetrics = field(default_factory=ProcessMetrics)
    """This runtime's Prometheus registry: process counters, and the database gauges
    read at scrape time (registered here, so every scrape sees this runtime's store)."""
    storage_guard: StorageGuard = field(init=False)
    """The storage circuit breaker (:mod:`genvault.storage.guard`): archiving pauses
    while ``storage`` cannot be written."""
    messenger: Messenger = field(init=False)
    """Notifications through Apprise (:mod:`genvault.notify`); disabled without URLs."""

    def __post_init__(self) -> None:
        self.storage_guard = StorageGuard(self.storage)
        self.messenger = messenger_for(self.settings, self.store)
        self.metrics.prepare(self.accounts)
        self.metrics.watch_database(self)

    @classmethod
    def build(
        cls,
        settings: Settings,
        secrets: dict[str, SecretStr],
        *,
        upgrade: bool = True,
        metrics_read: bool = True,
    ) -> Runtime:
        """The runtime of ``settings``; ``metrics_read=False`` when nothing will read its
        metrics (no ``/metrics``, no textfile): :class:`~genvault.metrics.UnreadMetrics`."""
        store = Store(settings.database.url)
        if upgrade:
            store.upgrade()
        worker_id = new_worker_id()
        if store.is_sqlite and holds_process_lock(settings.database.url):
            # The one process on this database starts: any lease in it is a dead run's
            # (a SIGKILL, an OOM kill), and waiting for it to expire could cost a file.
            voided = store.void_other_leases(worker_id)
            if voided:
                log.info("lease.voided", assets=voided, reason="sole process on the database")
        storage = open_storage(settings.storage)
        policy = NetworkPolicy(allow_private=settings.network.allow_private)
        api_http = build_client(settings.network, policy, max_connections=16)
        media_http = build_client(
            settings.network, policy, max_connections=settings.archive.concurrency * 2
        )
        metrics = ProcessMetrics() if metrics_read else UnreadMetrics()
        accounts: dict[str, AccountRuntime] = {}
        for acc in settings.accounts:
            if not acc.enabled:
                continue
            cls_ = provider_class(acc.provider)
            options = validate_options(acc, f"accounts[{acc.name}]")
            key = secrets[acc.name].get_secret_value()
            register_secret(key)
            acc_policy = account_policy(policy, acc)
            api = ApiClient(
                http=api_http,
                base_url=acc.base_url or cls_.default_base_url,
                auth_headers=cls_.auth_headers(key, options),
                settings=settings.network,
                policy=acc_policy,
                account=acc.name,
                on_response=partial(metrics.provider_response, acc.name),
                on_retry=partial(metrics.provider_retry, acc.name),
            )
            accounts[acc.name] = AccountRuntime(
                acc, cls_(api, options, acc.name, api_key=key), acc_policy, api.guard
            )
        return cls(
            settings,
            store,
            storage,
            policy,
            accounts,
            api_http,
            media_http,
            worker_id=worker_id,
            metrics=metrics,
        )

    def clean_storage(self) -> int:
        """Remove a crashed run's unfinished writes (``storage.stale_upload_seconds``).

        Housekeeping only: an S3-compatible server without ListMultipartUploads
        (s3rver answers 501) or a storage hiccup at start-up is logged and the
        run goes on; the leftovers are retried at the next start.
        """
        stale = self.settings.storage.stale_upload_seconds
        try:
            if stale is None:
                return self.storage.cleanup()  # the backend's own default age
            return self.storage.cleanup(older_than_seconds=stale)
        except StorageError as exc:
            log.warning("storage.cleanup_failed", storage=self.storage.url, error=str(exc))
            return 0

    def policy_for(self, account: str) -> NetworkPolicy:
        """The policy an account's media URLs are fetched under (its allowlist applies)."""
        acc = self.accounts.get(account)
        return acc.policy if acc is not None else self.policy

    @property
    def download_limits(self) -> DownloadLimits:
        net = self.settings.network
        return DownloadLimits(
            max_bytes=net.max_asset_bytes,
            low_speed_bps=net.low_speed_bps,
            low_speed_seconds=net.low_speed_seconds,
            resume_attempts=net.media_resume_attempts,
        )

    @property
    def archive_roles(self) -> frozenset[str]:
        """Every role some account archives (what the queue may hold)."""
        roles = default_roles(self.settings.archive)
        for acc in self.accounts.values():
            roles |= acc.archive_roles(self.settings.archive)
        return roles

    def apply_archive_choices(self) -> None:
        """Bring files already known in line with each account's choice of roles and
        kinds (which may have changed since they were recorded): queue what is wanted
        now, skip what no longer is. Once per process, before its first archive pass."""
        for acc in self.accounts.values():
            roles = acc.archive_roles(self.settings.archive)
            queued, skipped = self.store.apply_archive_choice(acc.name, roles, acc.archive_kinds)
            if queued or skipped:
                log.info(
                    "archive.choice_applied",
                    account=acc.name,
                    queued=queued,
                    skipped=skipped,
                    roles=sorted(roles),
                    kinds=sorted(acc.archive_kinds or ()),
                )

    @property
    def poll_horizon(self) -> timedelta:
        return timedelta(hours=self.settings.poll.give_up_hours)

    def close(self) -> None:
        self.api_http.close()
        self.media_http.close()
        # S3: deferred uploads are finished (never dropped) and its threads stopped.
        close_storage = getattr(self.storage, "close", None)
        if close_storage is not None:
            close_storage()
        self.store.dispose()
