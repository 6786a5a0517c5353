"""Settings: TOML + GENVAULT_* overrides, and errors that name the offending key in one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genvault.config import (
    Settings,
    load_settings,
    resolve_secrets,
    world_readable_secret_files,
)
from genvault.errors import ConfigError

FULL_TOML = """\
[database]
url = "postgresql://genvault@db.internal/genvault"

[storage]
url = "s3://genvault-archive/prod"
endpoint_url = "https://minio.internal:9000"
region = "eu-west-1"
multipart_threshold_mb = 16
multipart_chunk_mb = 16

[network]
allow_private = false
connect_timeout = 5.0
read_timeout = 30.0
api_retries = 3

[archive]
concurrency = 16
batch_size = 128
references = true
thumbnails = false

[sync]
overlap_seconds = 1800
backfill_days = 30

[poll]
backoff_seconds = [5, 15, 60]
give_up_hours = 24

[schedule]
sync_seconds = 600
poll_seconds = 20

[logging]
level = "debug"
format = "json"

[[accounts]]
name = "main"
provider = "geminigen"
api_key_env = "GEMINIGEN_MAIN_KEY"
items_per_page = 50
media_base = "https://cdn.geminigen.ai/"

[[accounts]]
name = "backup"
provider = "geminigen"
api_key_file = "/run/secrets/geminigen_backup"
enabled = false
"""

MAIN_ACCOUNT = """\
[[accounts]]
name = "main"
provider = "geminigen"
api_key_env = "GEMINIGEN_MAIN_KEY"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "genvault.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(_write(tmp_path, text), environ=env or {})


def _config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, env)
    _assert_one_line(info.value)
    return info.value


def _assert_one_line(exc: ConfigError) -> None:
    text = str(exc)
    assert text
    assert "\n" not in text and "\r" not in text
    assert exc.key in text


# --------------------------------------------------------------------------- loading


def test_full_valid_toml_loads(tmp_path: Path) -> None:
    s = _load(tmp_path, FULL_TOML)
    assert s.database.url == "postgresql+psycopg://genvault@db.internal/genvault"
    assert s.storage.url == "s3://genvault-archive/prod"
    assert s.storage.endpoint_url == "https://minio.internal:9000"
    assert s.storage.multipart_threshold_mb == 16
    assert s.network.connect_timeout == 5.0
    assert s.network.api_retries == 3
    assert s.archive.concurrency == 16
    assert s.archive.references is True
    assert s.archive.thumbnails is False
    assert s.sync.backfill_days == 30
    assert s.poll.backoff_seconds == (5.0, 15.0, 60.0)
    assert s.schedule.sync_seconds == 600
    assert s.logging.level == "debug"
    assert [a.name for a in s.accounts] == ["main", "backup"]
    main = s.account("main")
    assert main.provider == "geminigen"
    assert main.api_key_env == "GEMINIGEN_MAIN_KEY"
    assert main.options == {"items_per_page": 50, "media_base": "https://cdn.geminigen.ai/"}
    backup = s.account("backup")
    assert backup.api_key_file == Path("/run/secrets/geminigen_backup")
    assert backup.enabled is False


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    s = _load(tmp_path, "")
    assert s.database.url == "sqlite:///genvault.db"
    assert s.archive.concurrency == 8
    assert s.accounts == ()


def test_config_path_from_env(tmp_path: Path) -> None:
    path = _write(tmp_path, "[archive]\nconcurrency = 3\n")
    s = load_settings(environ={"GENVAULT_CONFIG": str(path)})
    assert s.archive.concurrency == 3


def test_env_overrides_database_url(tmp_path: Path) -> None:
    s = _load(tmp_path, FULL_TOML, {"GENVAULT_DATABASE__URL": "sqlite:////var/lib/gv.db"})
    assert s.database.url == "sqlite:////var/lib/gv.db"


def test_env_value_is_parsed_as_toml(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        FULL_TOML,
        {"GENVAULT_ARCHIVE__CONCURRENCY": "4", "GENVAULT_ARCHIVE__REFERENCES": "false"},
    )
    assert s.archive.concurrency == 4
    assert isinstance(s.archive.concurrency, int)
    assert s.archive.references is False


def test_env_creates_a_missing_section(tmp_path: Path) -> None:
    s = _load(tmp_path, "", {"GENVAULT_ARCHIVE__CONCURRENCY": "4"})
    assert s.archive.concurrency == 4


def test_env_overrides_one_account_by_name(tmp_path: Path) -> None:
    s = _load(
        tmp_path, FULL_TOML, {"GENVAULT_ACCOUNTS__MAIN__BASE_URL": "https://proxy.internal/v1"}
    )
    assert s.account("main").base_url == "https://proxy.internal/v1"
    assert s.account("backup").base_url is None


def test_env_naming_an_unknown_account_is_an_error(tmp_path: Path) -> None:
    err = _config_error(tmp_path, FULL_TOML, {"GENVAULT_ACCOUNTS__NOPE__BASE_URL": "x"})
    assert err.key == "GENVAULT_ACCOUNTS__NOPE__BASE_URL"


def test_unrelated_env_vars_are_ignored(tmp_path: Path) -> None:
    s = _load(tmp_path, "", {"HOME": "/root", "GENVAULTISH": "1", "GENVAULT_NOSECTION": "1"})
    assert s == Settings()


# --------------------------------------------------------------------------- errors name the key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param("colour = 'blue'\n", "colour", id="unknown-top-level-key"),
        pytest.param("[archive]\nconcurency = 4\n", "archive.concurency", id="unknown-in-archive"),
        pytest.param('[archive]\nconcurrency = "many"\n', "archive.concurrency", id="wrong-type"),
        pytest.param("[archive]\nconcurrency = 0\n", "archive.concurrency", id="out-of-range"),
        pytest.param('[storage]\nurl = "ftp://host/x"\n', "storage.url", id="bad-storage-scheme"),
        pytest.param('[storage]\nurl = "s3:///prefix"\n', "storage.url", id="s3-no-bucket"),
        pytest.param('[database]\nurl = "mysql://x"\n', "database.url", id="bad-db-dialect"),
        pytest.param('[logging]\nlevel = "loud"\n', "logging.level", id="bad-literal"),
        pytest.param(
            MAIN_ACCOUNT.replace("geminigen", "midjourney"),
            "accounts[main].provider",
            id="unknown-provider",
        ),
        pytest.param(MAIN_ACCOUNT + MAIN_ACCOUNT, "accounts[1].name", id="duplicate-account"),
        pytest.param(
            MAIN_ACCOUNT.replace('api_key_env = "GEMINIGEN_MAIN_KEY"\n', ""),
            "accounts[main].api_key_env",
            id="missing-key-source",
        ),
        pytest.param(
            MAIN_ACCOUNT + 'api_key_file = "/run/secrets/k"\n',
            "accounts[main].api_key_env",
            id="both-key-sources",
        ),
        pytest.param(MAIN_ACCOUNT + "bogus = 1\n", "accounts[main].bogus", id="unknown-option"),
        pytest.param(
            MAIN_ACCOUNT + "items_per_page = 0\n",
            "accounts[main].items_per_page",
            id="bad-option-value",
        ),
        pytest.param(
            MAIN_ACCOUNT.replace('"main"', '"../etc"'), "accounts[../etc].name", id="bad-name"
        ),
        pytest.param(
            '[[accounts]]\nprovider = "geminigen"\napi_key_env = "K"\n',
            "accounts[0].name",
            id="account-without-name",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    err = _config_error(tmp_path, text)
    assert err.key == key
    assert str(err).startswith(f"config error: {key}: ")


def test_unknown_key_message(tmp_path: Path) -> None:
    err = _config_error(tmp_path, "colour = 'blue'\n")
    assert err.problem == "unknown key"


def test_unknown_provider_lists_known_ones(tmp_path: Path) -> None:
    err = _config_error(tmp_path, MAIN_ACCOUNT.replace("geminigen", "midjourney"))
    assert "midjourney" in err.problem
    assert "geminigen" in err.problem


def test_env_override_error_names_the_key(tmp_path: Path) -> None:
    err = _config_error(tmp_path, "", {"GENVAULT_ARCHIVE__CONCURRENCY": "many"})
    assert err.key == "archive.concurrency"


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[archive\nconcurrency = 4\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == str(path)
    assert "not valid TOML" in info.value.problem
    _assert_one_line(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == "--config"
    assert str(path) in info.value.problem
    _assert_one_line(info.value)


def test_account_lookup_by_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, FULL_TOML).account("nope")
    assert info.value.key == "accounts"


# --------------------------------------------------------------------------- secrets


def test_resolve_secrets_from_env(tmp_path: Path) -> None:
    s = _load(tmp_path, MAIN_ACCOUNT)
    secrets = resolve_secrets(s, {"GEMINIGEN_MAIN_KEY": "  sk-live-abc123  \n"})
    assert list(secrets) == ["main"]
    assert secrets["main"].get_secret_value() == "sk-live-abc123"
    assert "sk-live-abc123" not in repr(secrets)


@pytest.mark.parametrize("env", [{}, {"GEMINIGEN_MAIN_KEY": ""}, {"GEMINIGEN_MAIN_KEY": "  "}])
def test_resolve_secrets_env_unset(tmp_path: Path, env: dict[str, str]) -> None:
    s = _load(tmp_path, MAIN_ACCOUNT)
    with pytest.raises(ConfigError) as info:
        resolve_secrets(s, env)
    assert info.value.key == "accounts[main].api_key_env"
    assert "GEMINIGEN_MAIN_KEY" in info.value.problem
    _assert_one_line(info.value)


def _file_account(path: Path) -> str:
    return f'[[accounts]]\nname = "main"\nprovider = "geminigen"\napi_key_file = "{path}"\n'


def test_resolve_secrets_from_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-file-xyz\n")
    secrets = resolve_secrets(_load(tmp_path, _file_account(key)), {})
    assert secrets["main"].get_secret_value() == "sk-file-xyz"


def test_resolve_secrets_empty_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("  \n")
    with pytest.raises(ConfigError) as info:
        resolve_secrets(_load(tmp_path, _file_account(key)), {})
    assert info.value.key == "accounts[main].api_key_file"
    assert "empty" in info.value.problem
    _assert_one_line(info.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_resolve_secrets_unreadable_file(tmp_path: Path, kind: str) -> None:
    # Tests may run as root, where chmod 000 does not stop reads: use paths
    # that cannot be read by anyone instead.
    key = tmp_path / "key"
    if kind == "directory":
        key.mkdir()
    with pytest.raises(ConfigError) as info:
        resolve_secrets(_load(tmp_path, _file_account(key)), {})
    assert info.value.key == "accounts[main].api_key_file"
    assert info.value.problem.startswith("cannot read")
    _assert_one_line(info.value)


def test_resolve_secrets_skips_disabled_accounts(tmp_path: Path) -> None:
    s = _load(tmp_path, FULL_TOML)  # backup's file does not exist, but it is disabled
    secrets = resolve_secrets(s, {"GEMINIGEN_MAIN_KEY": "k-main"})
    assert set(secrets) == {"main"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_readable_secret_files(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    tight = tmp_path / "tight"
    for f in (loose, tight):
        f.write_text("k")
    loose.chmod(0o644)
    tight.chmod(0o600)
    text = (
        _file_account(loose)
        + '[[accounts]]\nname = "other"\nprovider = "geminigen"\n'
        + f'api_key_file = "{tight}"\n'
        + '[[accounts]]\nname = "envkey"\nprovider = "geminigen"\napi_key_env = "K"\n'
    )
    assert world_readable_secret_files(_load(tmp_path, text)) == [loose]
    loose.chmod(0o600)
    assert world_readable_secret_files(_load(tmp_path, text)) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_readable_server_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 32)
    token.chmod(0o640)
    text = f'[server]\ntoken_file = "{token}"\n'
    assert world_readable_secret_files(_load(tmp_path, text)) == [token]
    token.chmod(0o600)
    assert world_readable_secret_files(_load(tmp_path, text)) == []


def test_account_role_and_kind_names_are_the_records_enums() -> None:
    """Config names roles and kinds without importing records; they must not drift."""
    from typing import get_args

    from genvault.config import AccountSettings, MediaRoleName
    from genvault.records import MediaKind, MediaRole

    assert set(get_args(MediaRoleName)) == {r.value for r in MediaRole}
    kinds = AccountSettings.model_fields["kinds"].annotation
    literal = get_args(get_args(kinds)[0])[0]
    assert set(get_args(literal)) == {k.value for k in MediaKind}


def test_account_roles_kinds_and_backfill_days_are_checked(tmp_path: Path) -> None:
    from genvault.errors import ConfigError

    base = '[[accounts]]\nname = "a"\nprovider = "geminigen"\napi_key_env = "K"\n'
    for line, key in (
        ('roles = ["results"]', "roles"),
        ('kinds = ["picture"]', "kinds"),
        ("backfill_days = 0", "backfill_days"),
    ):
        path = tmp_path / "c.toml"
        path.write_text(base + line + "\n")
        with pytest.raises(ConfigError) as err:
            load_settings(path, environ={"K": "x"})
        assert key in str(err.value)
