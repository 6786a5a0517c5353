"""``genvault doctor``'s checks against every simulator, configured right and wrong.

In process: :func:`genvault.doctor.diagnose` over real loopback HTTP, through the same
clients, policy and adapters as a sync. Each wrong configuration must come back as a
failing (or warning) finding that names the config key, and where doctor can find a
value that works, the line to set.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genvault.config import AccountSettings, NetworkSettings, Settings
from genvault.doctor import DoctorReport, Level, Limits, diagnose
from genvault.doctor.findings import AccountReport, Finding
from genvault.doctor.media_urls import relative_source
from genvault.doctor.session import MAX_REQUESTS
from genvault.errors import ConfigError
from genvault.simulator import SIMULATORS, simulator_factory
from genvault.simulator.base import Simulator

ENV = "DOCTOR_TEST_KEY"
PROVIDERS = sorted(SIMULATORS)
AKOOL_KEY = "doctor-akool-key-0123456"  # 24 bytes, like Akool's (the AES key of webhooks)


def _key(provider: str) -> str:
    return AKOOL_KEY if provider == "akool" else f"doctor-{provider}-key-5f1e"


@pytest.fixture
def start() -> Iterator[Callable[..., Simulator]]:
    """Start a simulator of a provider with knobs; all stop after the test."""
    started: list[Simulator] = []

    def _start(provider: str, **knobs: Any) -> Simulator:
        sim = simulator_factory(provider)(api_key=_key(provider), seed=3, **knobs)
        sim.start()
        started.append(sim)
        return sim

    yield _start
    for sim in started:
        sim.stop()


def doctor(
    sim: Simulator,
    *,
    key: str | None = None,
    allow_private: bool = True,
    limits: Limits | None = None,
    now: Callable[[], datetime] | None = None,
    **account: Any,
) -> AccountReport:
    """Doctor one account on ``sim`` (its own URL and options unless ``account`` says)."""
    fields: dict[str, Any] = {
        "name": "main",
        "provider": sim.name,
        "api_key_env": ENV,
        "base_url": sim.api_base,
        **sim.account_options,
        **account,
    }
    settings = Settings(
        network=NetworkSettings(allow_private=allow_private),
        accounts=(AccountSettings(**fields),),
    )
    environ = {ENV: key if key is not None else sim.api_key}
    report = diagnose(settings, environ=environ, limits=limits, now=now)
    assert len(report.accounts) == 1
    return report.accounts[0]


def by_check(report: AccountReport) -> dict[str, Finding]:
    """The last finding of each check (most checks make one)."""
    return {f.check: f for f in report.findings}


def levels(report: AccountReport) -> dict[str, str]:
    return {f.check: f.level.value for f in report.findings}


def dump(report: AccountReport) -> str:
    return json.dumps(report.as_dict())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- configured right


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_right_config_passes_every_check(provider: str, start: Callable[..., Simulator]) -> None:
    sim = start(provider)
    report = doctor(sim)
    assert report.ok, dump(report)
    assert not report.warnings, dump(report)
    checks = levels(report)
    assert checks["base_url"] == checks["auth"] == "ok"
    assert checks["clock"] == checks["rate_limit"] == "ok"
    if provider in ("akool", "quickrouter"):  # no listing: a status call instead
        assert checks["status_call"] == "ok"
        assert "not found" in by_check(report)["status_call"].message
        assert checks["listing"] == "skip"
    else:
        for check in ("paging", "page_cap", "order", "detail", "media"):
            assert checks[check] == "ok", (check, dump(report))
        assert report.facts["order"] == "newest_first"
    assert report.requests <= MAX_REQUESTS
    assert sim.api_key not in dump(report)  # never printed, not even masked in a header
    assert "<key>" in report.facts["auth_header"]


def test_the_header_style_is_named(start: Callable[..., Simulator]) -> None:
    sim = start("crowdcomputed")
    report = doctor(sim)
    assert report.facts["auth_header"] == "token: <key>"
    assert "`token: <key>`" in by_check(report)["auth"].message


# --------------------------------------------------------------------------- wrong key, wrong URL


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_key_fails_auth_naming_the_key(
    provider: str, start: Callable[..., Simulator]
) -> None:
    sim = start(provider)
    wrong = "wrong-key-" + "x" * 14
    report = doctor(sim, key=wrong)
    assert not report.ok
    auth = by_check(report)["auth"]
    assert auth.level is Level.FAIL
    assert auth.key == "accounts[main].api_key_env"
    assert ENV in auth.message
    assert by_check(report)["base_url"].level is Level.OK  # it answered: the URL is right
    assert wrong not in dump(report)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_port_nothing_listens_on_fails_base_url(
    provider: str, start: Callable[..., Simulator]
) -> None:
    sim = start(provider)
    url = sim.api_base.replace(f":{sim.server.port}", f":{free_port()}")
    report = doctor(sim, base_url=url)
    base = by_check(report)["base_url"]
    assert base.level is Level.FAIL
    assert base.key == "accounts[main].base_url"
    assert "does not answer" in base.message
    assert "auth" not in levels(report)  # nothing else could be checked


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_path_that_404s_fails_base_url(provider: str, start: Callable[..., Simulator]) -> None:
    sim = start(provider)
    report = doctor(sim, base_url=sim.api_base + "/wrong-prefix")
    base = by_check(report)["base_url"]
    assert base.level is Level.FAIL, dump(report)
    assert base.key == "accounts[main].base_url"
    assert "not found" in base.message
    # a non-default base URL that is wrong: the documented default is offered
    assert base.suggest is not None and base.suggest.startswith("accounts[main].base_url = ")


def test_a_private_address_without_allow_private_names_the_setting(
    start: Callable[..., Simulator],
) -> None:
    sim = start("geminigen")
    report = doctor(sim, allow_private=False)
    base = by_check(report)["base_url"]
    assert base.level is Level.FAIL
    assert base.suggest == "network.allow_private = true"


def test_a_missing_key_is_a_config_finding(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai")
    report = doctor(sim, api_key_env="DOCTOR_NOT_SET_ANYWHERE")
    config = by_check(report)["config"]
    assert config.level is Level.FAIL
    assert config.key == "accounts[main].api_key_env"
    assert report.requests == 0


def test_an_unknown_account_name_is_a_config_error(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai")
    settings = Settings(
        network=NetworkSettings(allow_private=True),
        accounts=(AccountSettings(name="a", provider="tengrai", api_key_env=ENV),),
    )
    with pytest.raises(ConfigError):
        diagnose(settings, ["nope"], environ={ENV: sim.api_key})


# --------------------------------------------------------------------------- auth style


def test_akool_bearer_instead_of_x_api_key_is_corrected(start: Callable[..., Simulator]) -> None:
    sim = start("akool")
    report = doctor(sim, auth_style="bearer")
    auth = by_check(report)["auth"]
    assert auth.level is Level.FAIL
    assert auth.suggest == 'accounts[main].auth_style = "x-api-key"'
    assert "Authorization: Bearer <key>" in auth.message
    assert by_check(report)["status_call"].level is Level.OK  # probed on with the fix


def test_crowdcomputed_authorization_refused_suggests_token(
    start: Callable[..., Simulator],
) -> None:
    sim = start("crowdcomputed", accept_authorization=False)
    report = doctor(sim, auth_style="authorization")
    auth = by_check(report)["auth"]
    assert auth.level is Level.FAIL
    assert auth.suggest == 'accounts[main].auth_style = "token"'
    assert by_check(report)["paging"].level is Level.OK


# --------------------------------------------------------------------------- paging and caps


def test_crowdcomputed_camel_only_server_suggests_camel(start: Callable[..., Simulator]) -> None:
    sim = start("crowdcomputed", accept_paging="camel")
    report = doctor(sim, paging_params="snake")
    paging = by_check(report)["paging"]
    assert paging.level is Level.FAIL, dump(report)
    assert paging.suggest == 'accounts[main].paging_params = "camel"'
    assert paging.key == "accounts[main].paging_params"
    assert report.facts["paging"] == "paging_params = camel"
    # the other checks ran with the spelling that works
    assert by_check(report)["page_cap"].level is Level.OK
    assert by_check(report)["order"].level is Level.OK


def test_crowdcomputed_snake_config_on_a_snake_server_passes(
    start: Callable[..., Simulator],
) -> None:
    sim = start("crowdcomputed", accept_paging="snake")
    report = doctor(sim, paging_params="snake")
    assert by_check(report)["paging"].level is Level.OK
    assert report.ok


def test_tengrai_ignoring_offset_fails_paging(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai", ignore_offset=True)
    report = doctor(sim)
    paging = by_check(report)["paging"]
    assert paging.level is Level.FAIL
    assert "offset 1" in paging.message
    assert paging.suggest is None  # Tengr.ai has no alternative spelling to offer


def test_crowdcomputed_page_cap_is_reported_with_its_size(
    start: Callable[..., Simulator],
) -> None:
    sim = start("crowdcomputed", max_page_size=3)
    report = doctor(sim, page_size=50)
    cap = by_check(report)["page_cap"]
    assert cap.level is Level.WARN
    assert report.facts["page_cap"] == 3
    assert cap.suggest == "accounts[main].page_size = 3"
    assert report.ok  # walks adapt to a cap: a warning, not a failure


def test_geminigen_page_cap_is_reported_with_its_size(start: Callable[..., Simulator]) -> None:
    sim = start("geminigen", max_items_per_page=5)
    report = doctor(sim)
    cap = by_check(report)["page_cap"]
    assert cap.level is Level.WARN
    assert "caps pages at 5" in cap.message
    assert cap.suggest == "accounts[main].items_per_page = 5"


def test_tengrai_oldest_first_is_a_warning(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai", list_order="oldest_first")
    report = doctor(sim)
    assert report.facts["order"] == "oldest_first"
    assert by_check(report)["order"].level is Level.WARN


# --------------------------------------------------------------------------- detail and media


def test_geminigen_detail_with_more_files_than_auto_reads(
    start: Callable[..., Simulator],
) -> None:
    sim = start("geminigen", detail_only_count=25, processing_count=0, failed_count=0)
    right = doctor(sim)
    assert by_check(right)["detail"].level is Level.OK
    assert "more file(s)" in by_check(right)["detail"].message
    wrong = doctor(sim, fetch_detail="auto")
    detail = by_check(wrong)["detail"]
    assert detail.level is Level.FAIL, dump(wrong)
    assert detail.suggest == 'accounts[main].fetch_detail = "always"'


def test_crowdcomputed_relative_urls_are_resolved_and_probed(
    start: Callable[..., Simulator],
) -> None:
    sim = start("crowdcomputed", relative_every=1)
    right = doctor(sim)
    urls = by_check(right)["media_urls"]
    assert "relative" in urls.message and "media_base" in urls.message
    assert by_check(right)["media"].level is Level.OK
    assert right.facts["relative_urls"] is True
    wrong = doctor(sim, media_base=sim.server.url("/elsewhere/"))
    media = by_check(wrong)["media"]
    assert media.level is Level.FAIL
    assert media.key == "accounts[main].media_base"
    assert "HTTP 404" in media.message


def test_a_media_host_outside_the_allowlist_is_named(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai")
    # The API host is allowed; the CDN answers on the same host under another name.
    api = sim.api_base.replace("127.0.0.1", "localhost")
    report = doctor(sim, base_url=api, allowed_hosts=["localhost"])
    media = by_check(report)["media"]
    assert media.level is Level.FAIL, dump(report)
    assert media.key == "accounts[main].allowed_hosts"
    assert media.suggest == 'accounts[main].allowed_hosts = ["localhost", "127.0.0.1"]'


def test_relative_source_finds_what_a_url_was_resolved_from() -> None:
    raw = {"outputs": [{"urls": ["dev/images/a.jpg", "https://cdn.example/b.jpg"]}]}
    assert relative_source(raw, "https://data.example/dev/images/a.jpg") == "dev/images/a.jpg"
    assert relative_source(raw, "https://cdn.example/b.jpg") is None


# --------------------------------------------------------------------------- headers and limits


def test_clock_skew_from_the_date_header(start: Callable[..., Simulator]) -> None:
    sim = start("akool")
    late = doctor(sim, now=lambda: datetime.now(UTC) - timedelta(minutes=10))
    clock = by_check(late)["clock"]
    assert clock.level is Level.FAIL
    assert "ahead of this machine's" in clock.message
    assert 590 <= late.facts["clock_skew_seconds"] <= 610
    early = doctor(sim, now=lambda: datetime.now(UTC) + timedelta(seconds=90))
    assert by_check(early)["clock"].level is Level.WARN
    assert "behind" in by_check(early)["clock"].message


def test_rate_limit_headers_seen_are_reported(start: Callable[..., Simulator]) -> None:
    sim = start("quickrouter")
    sim.faults.update(rate_limit_next=1, retry_after="1")
    report = doctor(sim)
    rate = by_check(report)["rate_limit"]
    assert rate.level is Level.WARN
    assert "retry-after: 1" in rate.message
    assert report.facts["rate_limit_headers"] == {"retry-after": "1"}
    assert by_check(report)["status_call"].level is Level.OK  # the retry got through


def test_requests_are_bounded(start: Callable[..., Simulator]) -> None:
    sim = start("geminigen")
    report = doctor(sim, limits=Limits(max_requests=3))
    assert report.requests <= 3
    assert by_check(report)["limits"].level is Level.SKIP
    assert report.ok  # out of budget is no failure of the account


def test_only_enabled_accounts_by_default(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai")
    accounts = tuple(
        AccountSettings(
            name=name, provider="tengrai", api_key_env=ENV, base_url=sim.api_base, enabled=on
        )
        for name, on in (("on", True), ("off", False))
    )
    settings = Settings(network=NetworkSettings(allow_private=True), accounts=accounts)
    report: DoctorReport = diagnose(settings, environ={ENV: sim.api_key})
    assert [a.account for a in report.accounts] == ["on"]
    named = diagnose(settings, ["off", "off"], environ={ENV: sim.api_key})
    assert [a.account for a in named.accounts] == ["off"]


def test_the_time_limit_ends_the_probes(start: Callable[..., Simulator]) -> None:
    sim = start("tengrai")
    sim.faults.update(latency_s=0.4)
    report = doctor(sim, limits=Limits(timeout=1.0))
    assert by_check(report)["limits"].level is Level.SKIP
    assert "time limit" in by_check(report)["limits"].message
    assert report.seconds < 3.0
    assert report.requests <= 4


# --------------------------------------------------------------------------- options, generically


def test_alternatives_and_the_size_option_come_from_the_options_model() -> None:
    from genvault.doctor.options import alternatives, size_option, toml_value
    from genvault.net.api import ApiClient
    from genvault.net.client import build_client
    from genvault.net.policy import NetworkPolicy
    from genvault.providers.base import ProviderOptions
    from genvault.providers.crowdcomputed import CrowdComputed, CrowdComputedOptions
    from genvault.providers.tengrai import TengrAI, TengrAIOptions

    crowd = CrowdComputedOptions(paging_params="both")
    assert alternatives(crowd, "paging") == [("paging_params", "snake"), ("paging_params", "camel")]
    assert [v for _, v in alternatives(crowd, "auth")] == ["authorization", "both"]
    policy = NetworkPolicy()
    http = build_client(NetworkSettings(), policy)
    try:

        def adapter(cls: Any) -> Callable[[ProviderOptions], Any]:
            def make(options: ProviderOptions) -> Any:
                api = ApiClient(http, "https://api.example", {}, NetworkSettings(), policy)
                return cls(api, options, "main")

            return make

        assert size_option(crowd, adapter(CrowdComputed)) == "page_size"
        assert size_option(TengrAIOptions(), adapter(TengrAI)) == "page_limit"
    finally:
        http.close()
    assert toml_value(True) == "true"
    assert toml_value(["a", "b"]) == '["a", "b"]'
    assert toml_value("camel") == '"camel"'
