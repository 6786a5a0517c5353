"""config/genvault.example.toml documents every key a user can set, and stays valid.

The example is the user's manual for accounts: each provider has one ``[[accounts]]``
block (the GeminiGen one live, the others commented out) listing every key its
adapter's ``Options`` accepts. When an adapter gains an option and the example does
not, these tests fail, so the example never falls behind the code.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from genvault.config import AccountSettings, Settings, load_settings
from genvault.providers import registry

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "genvault.example.toml"
_BLOCK_START = re.compile(r"^(?:# )?\[\[accounts\]\]\s*$")
_KEY_LINE = re.compile(r"^(?:# )?([a-z_]+ = .*)$")


def _account_blocks() -> list[dict[str, Any]]:
    """Each ``[[accounts]]`` block, commented or not, as the keys its lines set.

    A block runs from its ``[[accounts]]`` line to the next one or to a blank line
    followed by a comment that is not a key (the next block's heading). Each key line
    is read as TOML on its own, so a commented alternative (``api_key_file`` beside
    ``api_key_env``) counts as documented.
    """
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if _BLOCK_START.match(line):
            current = {}
            blocks.append(current)
            continue
        if current is None:
            continue
        if line.startswith("[") and not line.startswith("[["):
            current = None
            continue
        match = _KEY_LINE.match(line)
        if match:
            current.update(tomllib.loads(match.group(1)))
    return blocks


def _block_of(provider: str) -> dict[str, Any]:
    found = [b for b in _account_blocks() if b.get("provider") == provider]
    assert len(found) == 1, f"{EXAMPLE.name}: want one [[accounts]] block for {provider}"
    return found[0]


def test_every_provider_has_one_block_and_nothing_else_does() -> None:
    providers = [b.get("provider") for b in _account_blocks()]
    assert sorted(providers) == sorted(registry.PROVIDERS)


@pytest.mark.parametrize("provider", sorted(registry.PROVIDERS))
def test_each_block_lists_every_option_of_its_adapter(provider: str) -> None:
    options = set(registry.provider_class(provider).Options.model_fields)
    missing = options - set(_block_of(provider))
    assert not missing, f"{EXAMPLE.name}: the {provider} block lacks {sorted(missing)}"


def test_the_first_block_explains_every_key_all_accounts_have() -> None:
    first = _account_blocks()[0]
    missing = set(AccountSettings.model_fields) - set(first)
    assert not missing, f"{EXAMPLE.name}: the first [[accounts]] block lacks {sorted(missing)}"


@pytest.mark.parametrize("provider", sorted(registry.PROVIDERS))
def test_each_block_uncommented_is_a_valid_account(provider: str) -> None:
    keys = dict(_block_of(provider))
    # Alternatives documented side by side: a real account sets one of each pair.
    for env_key, file_key in (
        ("api_key_env", "api_key_file"),
        ("webhook_secret_env", "webhook_secret_file"),
    ):
        if env_key in keys:
            keys.pop(file_key, None)
    settings = Settings.model_validate({"accounts": [keys]})
    account = settings.accounts[0]
    assert account.provider == provider
    registry.validate_options(account, f"accounts[{account.name}]")
    assert account.base_url == registry.provider_class(provider).default_base_url


def test_the_example_as_shipped_loads() -> None:
    settings = load_settings(EXAMPLE, environ={"GEMINIGEN_API_KEY": "k"})
    assert [a.provider for a in settings.accounts] == ["geminigen"]
