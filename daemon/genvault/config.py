"""Settings: a TOML file, overridden by ``GENVAULT_*`` environment variables, validated.

Why not pydantic-settings: accounts are a list addressed by *name*
(``GENVAULT_ACCOUNTS__MAIN__BASE_URL``), which its list handling cannot express,
and every error must name the offending key in one line. So the file is read
with :mod:`tomllib`, env overrides are merged into the dict, and plain pydantic
models validate the result; :class:`~genvault.errors.ConfigError` carries the
dotted key.

Env overrides: ``GENVAULT_<SECTION>__<KEY>=value`` (e.g. ``GENVAULT_DATABASE__URL``)
and ``GENVAULT_ACCOUNTS__<NAME>__<KEY>`` for one account. Values are parsed as
TOML values when they parse (``true``, ``8``, ``["a","b"]``), else taken as strings.

Secrets never live in these models: an account names where its key is
(``api_key_env`` or ``api_key_file``) and :func:`resolve_secrets` reads them
into a separate mapping that is never logged or stored.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from genvault.errors import ConfigError

ENV_PREFIX = "GENVAULT_"
CONFIG_ENV = "GENVAULT_CONFIG"
DEFAULT_KEY_TEMPLATE = (
    "{provider}/{account}/{created:%Y/%m/%d}/{external_id}/{position:02d}-{role}.{ext}"
)
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///genvault.db"
    """``sqlite:///path.db`` (embedded, one process) or ``postgresql+psycopg://…`` (replicas)."""

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith("postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v


class StorageSettings(_Section):
    url: str = "file://./genvault-archive"
    """``file:///abs/path``, ``file://./relative`` or ``s3://bucket/prefix``."""
    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, R2, Ceph…); None = AWS."""
    region: str | None = None
    key_template: str = DEFAULT_KEY_TEMPLATE
    multipart_threshold_mb: int = Field(default=8, ge=5, le=5120)
    multipart_chunk_mb: int = Field(default=8, ge=5, le=5120)
    stale_upload_seconds: float | None = Field(default=None, ge=0)
    """At start, remove unfinished writes older than this: temp files of ``file://``,
    open multipart uploads of ``s3://`` (a crashed run's leftovers). None: every temp
    file of a local folder that no live process holds (each writer holds a lock on its
    own, so replicas sharing the folder keep theirs), uploads older than an hour on S3."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError("must start with file:// or s3://")
        if v.startswith("s3://") and not v.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError("s3:// URL needs a bucket name")
        return v


class NetworkSettings(_Section):
    allow_private: bool = False
    """Allow loopback/private targets. Only for the simulators; never in production."""
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_asset_bytes: int = Field(default=10 * 1024**3, gt=0)
    max_json_bytes: int = Field(default=32 * 1024**2, gt=0)
    api_retries: int = Field(default=4, ge=0, le=20)
    """Retries of one API request on transient errors, with capped exponential backoff."""
    backoff_cap_seconds: float = Field(default=60.0, gt=0)
    api_deadline_seconds: float = Field(default=300.0, gt=0)
    """Whole-request limit of one API call: a body dripped a byte at a time never
    trips the read timeout, so the total time is bounded too."""
    low_speed_bps: int = Field(default=1024, ge=0)
    """A media download slower than this (bytes/s, averaged over ``low_speed_seconds``)
    is abandoned and retried; 0 turns the check off."""
    low_speed_seconds: float = Field(default=60.0, gt=0)
    media_resume_attempts: int = Field(default=3, ge=0, le=100)
    """Range-resumes of one download after a broken connection, within one attempt."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failed API calls (after their retries) that open a provider's circuit."""
    breaker_cooldown_seconds: float = Field(default=300.0, gt=0)
    """How long an open circuit refuses calls before one trial call is let through."""
    budget_max_interval_seconds: float = Field(default=30.0, gt=0)
    """The slowest pace a 429 can push a provider's request budget to."""
    budget_recover_after: int = Field(default=10, ge=1)
    """Successful calls in a row that halve the pause a 429 imposed."""


class ArchiveSettings(_Section):
    concurrency: int = Field(default=8, ge=1, le=256)
    batch_size: int = Field(default=64, ge=1, le=10_000)
    lease_seconds: int = Field(default=900, ge=10)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=30.0, ge=0)
    references: bool = False
    """Also archive the inputs (reference images) a provider lists."""
    thumbnails: bool = True


class SyncSettings(_Section):
    overlap_seconds: int = Field(default=3600, ge=0)
    """Re-read this much history before the stored cursor: items change status while we page."""
    backfill_days: int | None = Field(default=None, ge=1)
    """Limit full walks to items this many days old (None: as far as the provider keeps)."""
    full_walk_hours: float = Field(default=24, gt=0)
    """Walk every stream in full this often (and always after an incomplete walk): it
    compares the whole listing with the ledger, archives what is missing and records
    what the provider deleted. Between, walks stop at the watermark."""
    max_pages_per_pass: int = Field(default=1000, ge=1)
    """Listing requests per stream per pass; a walk that reaches it resumes next pass."""


class PollSettings(_Section):
    backoff_seconds: tuple[float, ...] = (5, 10, 30, 60, 120, 300)
    give_up_hours: float = Field(default=48, gt=0)
    batch_size: int = Field(default=100, ge=1)


class ScheduleSettings(_Section):
    sync_seconds: float = Field(default=900, gt=0)
    poll_seconds: float = Field(default=15, gt=0)
    archive_seconds: float = Field(default=10, gt=0)
    jitter_seconds: float = Field(default=5, ge=0)
    shutdown_grace_seconds: float = Field(default=30, ge=0)


class ServerSettings(_Section):
    """The daemon's HTTP endpoint (waitress): intake, webhooks, health, metrics, the page.

    The token is named here, never held: like account keys, it is read by
    :func:`resolve_server_token` into a value that is never logged or stored.
    """

    enabled: bool = True
    """Serve HTTP while ``genvault run`` runs (``run --once`` never serves)."""
    listen: str = "127.0.0.1:8787"
    """``host:port`` (``[::1]:8787`` for IPv6). Loopback by default: expose it on purpose."""
    token_env: str | None = None
    """Environment variable holding the bearer token for intake and token webhooks."""
    token_file: Path | None = None
    """File holding that token (e.g. a mounted secret); set this or ``token_env``."""
    max_body_bytes: int = Field(default=1024**2, ge=1024, le=64 * 1024**2)
    """Larger request bodies are refused with 413 before a byte of them is read."""
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """A request must arrive whole (request line, headers, body) within this many
    seconds of its first byte, or it gets 408 and the connection is closed: a client
    sending a byte a second cannot hold a connection. Idle keep-alive connections,
    and responses the client stopped reading, are closed after as long."""
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, le=1024**2)
    """Request line and headers together; a larger head gets 431 once this much arrived."""
    max_connections: int = Field(default=500, ge=16, le=10_000)
    """Connections open at once; more wait in the listen backlog until one closes."""
    ready_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """``/readyz`` answers from one check for this long: it needs no token, and a check
    writes and fsyncs a probe file and queries the database (0: check every time)."""
    metrics_token_env: str | None = None
    """Environment variable holding a bearer token for ``GET /metrics`` (unset: open, like
    the probes). A token of its own: a scraper's config should not hold the one that
    opens the intake and the page."""
    metrics_token_file: Path | None = None
    """File holding that token; set this or ``metrics_token_env``."""
    threads: int = Field(default=8, ge=1, le=64)
    """Requests handled at once (database reads, the page, files). A connection takes a
    thread only once its request has arrived whole, so slow clients never hold one."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        split_listen(v)
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``, brackets of an IPv6 host removed."""
        return split_listen(self.listen)


def split_listen(value: str) -> tuple[str, int]:
    """Parse ``host:port``; ValueError (worded for a config message) when it is not one."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be host:port, e.g. 127.0.0.1:8787 or [::1]:8787")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("put an IPv6 address in brackets: [::1]:8787")
    port = int(port_text)
    if not host or port > 65535:
        raise ValueError("must be host:port with a port from 0 to 65535")
    return host, port


class MetricsSettings(_Section):
    """What ``/metrics`` and ``run --once --metrics-file`` report (gauges read at scrape time)."""

    at_risk_hours: float = Field(default=24, gt=0)
    """A pending file whose deadline falls within this many hours counts in
    ``genvault_assets_at_risk`` (overdue ones included): the alert's lead time."""


MediaRoleName = Literal["result", "thumbnail", "last_frame", "upscale", "reference"]
"""The values of :class:`genvault.records.MediaRole` (config stays free of records)."""
NotifyEvent = Literal["at_risk", "lost", "stream", "circuit", "storage", "verify"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
"""What can be notified: files at risk, files lost, a stream whose sync fails or stays
incomplete, a provider's circuit open, storage failing, ``verify`` finding damage."""


class NotifySettings(_Section):
    """Messages before a loss, through Apprise (:mod:`genvault.notify`).

    Apprise URLs (``mailto://``, ``slack://``, ``tgram://``, ``ntfy://``, ``json://``,
    and a hundred more) often carry a password or a token, so besides ``urls`` they can
    come from ``urls_env`` or ``urls_file`` (whitespace-separated), read like API keys.
    """

    urls: tuple[str, ...] = ()
    urls_env: str | None = None
    urls_file: Path | None = None
    events: tuple[NotifyEvent, ...] = NOTIFY_EVENTS
    interval_minutes: float = Field(default=15, ge=0)
    """The daemon sends at most one digest per interval (``run --once``: one per run)."""
    repeat_hours: float = Field(default=24, gt=0)
    """A condition that lasts (a circuit open, a stream failing) is said again after this
    quiet period; a file is named once as at risk and once as lost, never again."""


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class AccountSettings(BaseModel):
    """One provider account; provider-specific keys are checked by the provider's Options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    provider: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    base_url: str | None = None
    enabled: bool = True
    allowed_hosts: tuple[str, ...] | None = None
    """If set, this account's API and media may only be fetched from these host names
    (and their subdomains), e.g. ``["api.akool.com", "cloudfront.net"]``."""
    webhook_secret_env: str | None = None
    """Environment variable holding this account's webhook secret, the ``?token=`` of the
    callback URL given to the provider. Its own secret, never the server token: a
    callback URL is handed to a third party and sits in its logs, so what it carries
    must open this account's webhook and nothing else (not the intake, not the page)."""
    roles: tuple[MediaRoleName, ...] | None = None
    """Which of this account's files to archive, by role; unset: results, last frames and
    upscales, plus thumbnails and references as ``[archive] thumbnails``/``references``
    say. Files left out are recorded as skipped (``status`` says why), never fetched."""
    kinds: tuple[Literal["image", "video", "audio", "other"], ...] | None = None
    """Which media kinds to archive (``["video"]``: only videos); unset: every kind."""
    backfill_days: int | None = Field(default=None, ge=1)
    """This account's ``sync.backfill_days``: how far back its first walk reaches."""
    webhook_secret_file: Path | None = None
    """File holding that secret; set this or ``webhook_secret_env``. Token webhooks
    (CrowdComputed, GeminiGen, Tengr.ai) are refused until one is set; for Akool it
    is an extra check beside Akool's own signature."""

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        cleaned = tuple(h.strip().lower().rstrip(".") for h in v)
        for h in cleaned:
            if not h or "/" in h or ":" in h or " " in h:
                raise ValueError(f"{h!r} is not a host name (no scheme, port or path)")
        return cleaned

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _ACCOUNT_NAME.match(v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 63)")
        return v

    @property
    def options(self) -> dict[str, Any]:
        """The provider-specific keys of this account table."""
        return dict(self.model_extra or {})


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    network: NetworkSettings = NetworkSettings()
    archive: ArchiveSettings = ArchiveSettings()
    sync: SyncSettings = SyncSettings()
    poll: PollSettings = PollSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    notify: NotifySettings = NotifySettings()
    logging: LoggingSettings = LoggingSettings()
    accounts: tuple[AccountSettings, ...] = ()

    def account(self, name: str) -> AccountSettings:
        for acc in self.accounts:
            if acc.name == name:
                return acc
        raise ConfigError("accounts", f"no account named {name!r}")


# --------------------------------------------------------------------------- loading


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    accounts_by_name = {
        str(a.get("name", "")).upper(): a for a in data.get("accounts", []) if isinstance(a, dict)
    }
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) < 2 or not all(parts):
            continue
        value = _parse_env_value(raw)
        if parts[0] == "accounts":
            if len(parts) != 3:
                raise ConfigError(var, "use GENVAULT_ACCOUNTS__<NAME>__<KEY>")
            target = accounts_by_name.get(parts[1].upper())
            if target is None:
                raise ConfigError(var, f"no account named {parts[1]!r} in the config file")
            target[parts[2]] = value
            continue
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(var, f"{part!r} is not a table")
            node = child
        node[parts[-1]] = value


def _key_of(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    out: list[str] = []
    container: Any = data
    for part in loc:
        if isinstance(part, int):
            name = None
            if isinstance(container, list) and part < len(container):
                item = container[part]
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    name = item["name"]
            out.append(f"[{name or part}]")
            container = (
                container[part] if isinstance(container, list) and part < len(container) else None
            )
        else:
            out.append(("." if out else "") + str(part))
            container = container.get(part) if isinstance(container, dict) else None
    return "".join(out)


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read, override and validate settings; raise ConfigError naming the key on any fault."""
    env = dict(os.environ if environ is None else environ)
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("--config", f"file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    _apply_env(data, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key_of(tuple(err["loc"]), data)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(key or "config", msg) from None
    _check_accounts(settings)
    return settings


def _check_accounts(settings: Settings) -> None:
    from genvault.providers import registry

    seen: set[str] = set()
    for i, acc in enumerate(settings.accounts):
        where = f"accounts[{acc.name}]"
        if acc.name in seen:
            raise ConfigError(f"accounts[{i}].name", f"duplicate account name {acc.name!r}")
        seen.add(acc.name)
        if acc.provider not in registry.PROVIDERS:
            known = ", ".join(sorted(registry.PROVIDERS))
            raise ConfigError(
                f"{where}.provider", f"unknown provider {acc.provider!r} (known: {known})"
            )
        if acc.api_key_env and acc.api_key_file:
            raise ConfigError(f"{where}.api_key_env", "set api_key_env or api_key_file, not both")
        if not acc.api_key_env and not acc.api_key_file:
            raise ConfigError(f"{where}.api_key_env", "missing: set api_key_env or api_key_file")
        if acc.webhook_secret_env and acc.webhook_secret_file:
            raise ConfigError(
                f"{where}.webhook_secret_env",
                "set webhook_secret_env or webhook_secret_file, not both",
            )
        registry.validate_options(acc, where)


def read_secret(
    where: str,
    env_field: str,
    env_name: str | None,
    file_field: str,
    path: Path | None,
    environ: Mapping[str, str],
) -> SecretStr | None:
    """The secret named by an ``*_env`` or ``*_file`` key, or None when neither is set.

    One ladder for every secret (API keys, webhook secrets, the server and metrics
    tokens): a secret that is named but cannot be read is a :class:`ConfigError`
    naming the key, never "no secret", because an operator who named one expects it
    in force, and a typo must stop genvault rather than silently open or close a door.
    """
    if env_name and path is not None:
        raise ConfigError(f"{where}{env_field}", f"set {env_field} or {file_field}, not both")
    if env_name:
        value = environ.get(env_name, "").strip()
        if not value:
            raise ConfigError(f"{where}{env_field}", f"environment variable {env_name} is not set")
        return SecretStr(value)
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}{file_field}", f"cannot read: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}{file_field}", "file is empty")
        return SecretStr(value)
    return None


def resolve_secrets(
    settings: Settings, environ: dict[str, str] | None = None
) -> dict[str, SecretStr]:
    """Read every enabled account's API key; ConfigError names the key when one is missing."""
    env = os.environ if environ is None else environ
    secrets: dict[str, SecretStr] = {}
    for acc in settings.accounts:
        if acc.enabled:
            where = f"accounts[{acc.name}]."
            key = read_secret(
                where, "api_key_env", acc.api_key_env, "api_key_file", acc.api_key_file, env
            )
            assert key is not None  # the model requires one of the two
            secrets[acc.name] = key
    return secrets


def resolve_webhook_secrets(
    settings: Settings, environ: dict[str, str] | None = None
) -> dict[str, SecretStr]:
    """Every enabled account's webhook secret, by account name (accounts without one are
    absent)."""
    env = os.environ if environ is None else environ
    secrets: dict[str, SecretStr] = {}
    for acc in settings.accounts:
        if not acc.enabled:
            continue
        secret = read_secret(
            f"accounts[{acc.name}].",
            "webhook_secret_env",
            acc.webhook_secret_env,
            "webhook_secret_file",
            acc.webhook_secret_file,
            env,
        )
        if secret is not None:
            secrets[acc.name] = secret
    return secrets


def resolve_server_token(
    settings: Settings, environ: dict[str, str] | None = None
) -> SecretStr | None:
    """The HTTP bearer token, or None when none is configured (intake is then disabled)."""
    srv = settings.server
    env = os.environ if environ is None else environ
    return read_secret("server.", "token_env", srv.token_env, "token_file", srv.token_file, env)


def resolve_metrics_token(
    settings: Settings, environ: dict[str, str] | None = None
) -> SecretStr | None:
    """The bearer token ``/metrics`` requires, or None when it is open."""
    srv = settings.server
    env = os.environ if environ is None else environ
    return read_secret(
        "server.",
        "metrics_token_env",
        srv.metrics_token_env,
        "metrics_token_file",
        srv.metrics_token_file,
        env,
    )


def resolve_notify_urls(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """Every Apprise URL: ``notify.urls`` plus those in ``urls_env`` / ``urls_file``."""
    n = settings.notify
    env = os.environ if environ is None else environ
    secret = read_secret("notify.", "urls_env", n.urls_env, "urls_file", n.urls_file, env)
    extra = secret.get_secret_value().split() if secret is not None else []
    return [*n.urls, *extra]


def world_readable_secret_files(settings: Settings) -> list[Path]:
    """Secret files (API keys, webhook secrets, the server and metrics tokens) that other
    users can read; the CLI warns."""
    candidates = [acc.api_key_file for acc in settings.accounts]
    candidates += [acc.webhook_secret_file for acc in settings.accounts]
    candidates += [settings.server.token_file, settings.server.metrics_token_file]
    candidates += [settings.notify.urls_file]
    out = []
    for f in candidates:
        if f is not None and f.exists() and f.stat().st_mode & (stat.S_IROTH | stat.S_IRGRP):
            out.append(f)
    return out
