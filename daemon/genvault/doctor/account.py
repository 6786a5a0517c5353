"""The account-level checks: the config as production reads it, then whether
``base_url`` answers and the key is accepted (and in which header style).

These come first and gate the rest: with no provider, options or key there is
nothing to probe, and with an API that does not answer (or refuses the key in every
style the adapter's options allow) the listing and media checks would only repeat
the failure. When the key is refused, each other ``auth`` alternative of the options
(:func:`~genvault.doctor.options.alternatives`) is tried, and the one the server
takes is both suggested and used for the checks that follow.
"""

from __future__ import annotations

from genvault.config import read_secret
from genvault.doctor.findings import Level
from genvault.doctor.options import (
    AUTH_WORD,
    alternatives,
    size_option,
    toml_value,
    valid_alternatives,
)
from genvault.doctor.policy_refusal import report_refusal
from genvault.doctor.session import PROBE_SIZE, ProbeSession
from genvault.doctor.status_call import ask_status
from genvault.errors import (
    AuthError,
    BusinessError,
    ConfigError,
    MalformedResponseError,
    NotFoundError,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.logs import register_secret
from genvault.net.errors import short_error
from genvault.providers.base import ProviderOptions
from genvault.providers.registry import PROVIDERS, provider_class, validate_options


def configure(session: ProbeSession) -> bool:
    """Provider, options and key as production reads them; False (and a finding) if not."""
    acc, where, report = session.acc, session.where, session.report
    if acc.provider not in PROVIDERS:
        report.add(
            "config",
            Level.FAIL,
            f"unknown provider {acc.provider!r}; known: {', '.join(sorted(PROVIDERS))}",
            key=f"{where}.provider",
        )
        return False
    session.cls = provider_class(acc.provider)
    session.base_url = acc.base_url or session.cls.default_base_url
    report.base_url = session.base_url
    try:
        session.options = validate_options(acc, where)
        secret = read_secret(
            f"{where}.",
            "api_key_env",
            acc.api_key_env,
            "api_key_file",
            acc.api_key_file,
            session.environ,
        )
    except ConfigError as exc:
        report.add("config", Level.FAIL, exc.problem, key=exc.key)
        return False
    if secret is None:
        report.add(
            "config",
            Level.FAIL,
            "no API key: set api_key_env or api_key_file",
            key=f"{where}.api_key_env",
        )
        return False
    session.key = secret.get_secret_value()
    register_secret(session.key)
    session.api_http = session.client()
    session.log.attach(session.api_http)
    session.media_http = session.client()
    if session.cls.has_history:
        session.size_field = size_option(session.options, session.offline)
    return True


def _contact(session: ProbeSession, options: ProviderOptions) -> ProviderError | None:
    """The first call with ``options``: None when the API answered with the key taken.

    With a listing, that is the first page of the first history stream (kept as
    ``session.first`` for the listing checks); without, the status call.
    """
    session.spend()
    if not session.cls.has_history:
        return ask_status(session, session.provider(options))
    provider = session.provider(options, size=PROBE_SIZE)
    stream = provider.streams()[0]
    try:
        page = provider.fetch_page(stream, provider.paging.first)
    except BusinessError as exc:  # the API answered, but not for this stream
        session.first = (stream, None, exc)
        return None
    except ProviderError as exc:
        return exc
    session.first = (stream, page, None)
    return None


def check_reach(session: ProbeSession) -> bool:
    """base_url and auth; True when the rest can be probed."""
    report = session.report
    error = _contact(session, session.options)
    style = session.style(session.options)
    if error is None:
        report.add("base_url", Level.OK, f"{session.base_url} answers")
        report.add("auth", Level.OK, f"the key is accepted, sent as `{style}`")
        report.facts["auth_header"] = style
        return True
    if isinstance(error, AuthError):
        report.add(
            "base_url",
            Level.OK,
            f"{session.base_url} answers (it checks the key: the API is there)",
        )
        return _other_auth(session, error, style)
    _base_url_failure(session, error)
    return False


def _other_auth(session: ProbeSession, error: AuthError, style: str) -> bool:
    """Try the key in every other header style; True (and the fix) if one is taken."""
    words, key = session.key_source()
    options = session.options
    for option, value, alt in valid_alternatives(options, alternatives(options, AUTH_WORD)):
        if _contact(session, alt) is None:
            alt_style = session.style(alt)
            current = getattr(options, option)
            session.add_fix(
                "auth",
                Level.FAIL,
                f"the API refuses the key sent as `{style}` ({option} = "
                f"{toml_value(current)}) but accepts it as `{alt_style}`",
                option,
                value,
            )
            session.report.facts["auth_header"] = alt_style
            session.options = alt
            return True
    tried = " (every auth style was tried)" if alternatives(options, AUTH_WORD) else ""
    session.report.add(
        "auth",
        Level.FAIL,
        f"the API refuses the key from {words}, sent as `{style}`{tried}: "
        f"{short_error(error)}; check the key (and that it belongs to this provider)",
        key=key,
    )
    return False


def _base_url_failure(session: ProbeSession, error: ProviderError) -> None:
    """Say why the first call failed for another reason than the key, and what to set."""
    report, base_url, name = session.report, session.base_url, session.cls.name
    default = session.cls.default_base_url
    configured = session.acc.base_url
    hint = (
        session.line("base_url", default)
        if configured and configured.rstrip("/") != default.rstrip("/")
        else None
    )
    key = f"{session.where}.base_url"
    text = short_error(error)
    if isinstance(error, RateLimitedError):
        report.add("base_url", Level.OK, f"{base_url} answers")
        report.add(
            "auth",
            Level.WARN,
            f"rate limited before the key could be checked ({text}): run doctor again later",
        )
        return
    if isinstance(error, TransientProviderError):
        status = error.status_code
        if status is not None and status >= 500:
            message = f"{base_url} answers HTTP {status}: the provider (or a gateway) "
            message += f"is in trouble, or this is not its API: {text}"
        else:
            message = f"{base_url} does not answer: {text}"
        report.add("base_url", Level.FAIL, message, key=key, suggest=hint)
        return
    if "refused by the network policy" in str(error):
        report_refusal(session, "base_url", str(error), base_url)
        return
    if isinstance(error, NotFoundError):
        message = (
            f"{base_url} answers, but not as the {name} API: the endpoint is "
            f"not found there ({text}); base_url must be the API root"
        )
        if hint is None:
            message += f", e.g. {default}"
    elif isinstance(error, MalformedResponseError):
        message = f"{base_url} answers, but not with the {name} API's JSON: {text}"
    elif isinstance(error, PermanentProviderError):
        message = f"{base_url} refuses the request: {text}"
    else:
        message = f"{base_url}: {text}"
    report.add("base_url", Level.FAIL, message, key=key, suggest=hint)


__all__ = ["check_reach", "configure"]
