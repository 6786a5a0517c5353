"""Provider name -> adapter class. Adding a provider = one module + one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from genvault.errors import ConfigError

if TYPE_CHECKING:
    from genvault.config import AccountSettings
    from genvault.providers.base import Provider, ProviderOptions

#: module path of each adapter; imported on first use to keep start-up light
PROVIDERS: dict[str, str] = {
    "crowdcomputed": "genvault.providers.crowdcomputed:CrowdComputed",
    "geminigen": "genvault.providers.geminigen:GeminiGen",
    "akool": "genvault.providers.akool:Akool",
    "tengrai": "genvault.providers.tengrai:TengrAI",
    "quickrouter": "genvault.providers.quickrouter:QuickRouter",
}


def provider_class(name: str) -> type[Provider]:
    import importlib

    module, _, attr = PROVIDERS[name].partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module), attr)
    return cls


def validate_options(account: AccountSettings, where: str) -> ProviderOptions:
    """Validate an account's provider-specific keys; ConfigError names the key."""
    cls = provider_class(account.provider)
    try:
        return cls.Options.model_validate(account.options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "options"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{where}.{key}", msg) from None
