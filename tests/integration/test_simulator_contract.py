"""What every provider simulator must do, and its adapter against it, over every provider.

One conformance suite parametrized over the simulator registry (rclone's ``fstests``,
APScheduler's data-store suite): :data:`genvault.simulator.SIMULATORS` is the list, and
it must name the same providers as :data:`genvault.providers.registry.PROVIDERS`, so a
sixth provider is covered by registering it. The wire details of each API (its error
bodies, paging quirks, status transitions) stay in ``test_<name>_sim.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from genvault.config import NetworkSettings
from genvault.errors import (
    AuthError,
    MalformedResponseError,
    RateLimitedError,
    TransientProviderError,
)
from genvault.net.api import ApiClient
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.providers.base import Provider
from genvault.providers.registry import PROVIDERS, provider_class
from genvault.records import GenerationRecord, Page
from genvault.simulator import SIMULATORS, Simulator, simulator_factory
from tests.fixtures.sims import SimStarter
from tests.integration.sim_checks import assert_files_served

NAMES = sorted(SIMULATORS)
SEED = 7
COUNT = 6
PROCESSING_S = 2.0  # every simulator's in-flight tasks finish this long after start


def test_every_provider_has_a_simulator() -> None:
    assert sorted(PROVIDERS) == NAMES


ANCHOR = datetime(2025, 6, 1, 12, tzinfo=UTC)  # Akool's ids carry their creation second

SEEDED: dict[str, Callable[[Any], tuple[object, object]]] = {
    "akool": lambda s: (s.task_ids, (s.client_id, s.token)),
    "crowdcomputed": lambda s: ([t["taskId"] for t in s.generations], None),
    "geminigen": lambda s: ([g["uuid"] for g in s.generations], None),
    "quickrouter": lambda s: (s.task_ids, s.failures),
    "tengrai": lambda s: ([g["id"] for g in s.generations], None),
}
"""What a seed fixes in each simulator besides its files: ``(the id of every
generation, failed ones too; what else it derives from the seed)``. A sixth
simulator needs its line (the determinism test fails with a KeyError without)."""


def _create(name: str, seed: int = SEED, **knobs: Any) -> Simulator:
    sim: Simulator = simulator_factory(name)(
        seed=seed, count=COUNT, processing_seconds=PROCESSING_S, **knobs
    )
    return sim


@pytest.fixture(params=NAMES)
def sim(request: pytest.FixtureRequest, start_sim: SimStarter) -> Simulator:
    return start_sim(_create, name=request.param)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


@pytest.fixture
def adapter(sim: Simulator) -> Iterator[Callable[..., Provider]]:
    """``adapter(key=...)``: the provider's adapter on the simulator, no retries, no sleeps."""
    settings = NetworkSettings(api_retries=0)
    policy = NetworkPolicy(allow_private=True)
    http = build_client(settings, policy)
    cls = provider_class(sim.name)
    opts = cls.Options.model_validate(sim.account_options)

    def make(key: str | None = None) -> Provider:
        key = sim.api_key if key is None else key
        api = ApiClient(
            http=http,
            base_url=sim.api_base,
            auth_headers=cls.auth_headers(key, opts),
            settings=settings,
            policy=policy,
            sleep=lambda _s: None,
        )
        return cls(api, opts, "main", api_key=key)

    yield make
    http.close()


def _one_call(sim: Simulator, prov: Provider) -> GenerationRecord | Page:
    """One API request the adapter makes: the first history page, or one status read."""
    if prov.has_history:
        return prov.fetch_page(prov.streams()[0], prov.paging.first)
    return prov.fetch(sim.expected_media()[0].generation_id)


def test_registered_under_its_name(sim: Simulator) -> None:
    assert sim.name in SIMULATORS and provider_class(sim.name).name == sim.name
    assert isinstance(simulator_factory(sim.name)(seed=SEED, count=1), type(sim))


def test_starts_on_an_ephemeral_loopback_port(sim: Simulator, client: httpx.Client) -> None:
    url = urlsplit(sim.base_url)
    assert url.hostname == "127.0.0.1" and url.port
    assert sim.api_base.startswith(sim.base_url)
    other = _create(sim.name)
    try:
        other.start()
        assert urlsplit(other.base_url).port not in (None, url.port)  # side by side
    finally:
        other.stop()
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        client.get(sim.base_url + "/")
    sim.stop()  # idempotent


def test_deterministic_for_a_seed(sim: Simulator) -> None:
    """Same seed, same data (ids, files and what else the seed fixes); another seed,
    other ids and other bytes. The default key is ``sim-<provider>-key``."""
    one, same, other = (_create(sim.name, s, clock_anchor=ANCHOR) for s in (SEED, SEED, SEED + 1))
    try:
        truth = [(f.generation_id, f.url, f.size, f.sha256) for f in one.expected_media()]
        assert truth
        assert [(f.generation_id, f.sha256) for f in same.expected_media()] == [
            (g, h) for g, _, _, h in truth
        ]
        assert [f.sha256 for f in other.expected_media()] != [h for *_, h in truth]
        (ids, derived), seeded = SEEDED[sim.name](one), SEEDED[sim.name]
        assert seeded(same) == (ids, derived)
        assert seeded(other)[0] != ids
        assert len(ids) == COUNT
    finally:
        for s in (one, same, other):
            s.stop()
    # Akool's keys are 24 characters
    assert one.api_key.removesuffix("-0123456789") == f"sim-{sim.name}-key"


def test_wrong_key_is_refused_as_an_auth_error(
    sim: Simulator, adapter: Callable[..., Provider]
) -> None:
    with pytest.raises(AuthError):
        _one_call(sim, adapter(key="not-" + sim.api_key))
    _one_call(sim, adapter())  # the right key passes


def test_every_expected_file_is_served_with_its_size_and_sha256(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.server.clock.advance(PROCESSING_S + 1)  # in-flight tasks have finished
    now = sim.server.clock.now()
    live = [f for f in sim.expected_media() if f.expires_at is None or f.expires_at > now]
    assert live
    served = assert_files_served(client, live)
    assert sim.server.stats.snapshot()["media_bytes"] == served


def test_api_fault_knobs_reach_the_adapter_and_the_stats(
    sim: Simulator, adapter: Callable[..., Provider]
) -> None:
    prov = adapter()
    before = sim.server.stats.snapshot()["requests"]
    sim.faults.update(fail_next=1)
    with pytest.raises(TransientProviderError):
        _one_call(sim, prov)
    _one_call(sim, prov)  # a counter fault counts down and stops
    sim.faults.update(rate_limit_next=1, retry_after="3")
    with pytest.raises(RateLimitedError) as info:
        _one_call(sim, prov)
    assert info.value.retry_after == 3.0
    sim.faults.update(malformed="html")
    with pytest.raises(MalformedResponseError):
        _one_call(sim, prov)
    sim.faults.reset()
    _one_call(sim, prov)
    stats = sim.server.stats.snapshot()
    assert stats["requests"] - before == 5
    assert {"503", "429"} <= set(stats["statuses"])
    assert sum(stats["faults"].values()) >= 3


def test_media_fault_knobs(sim: Simulator, client: httpx.Client) -> None:
    sim.server.clock.advance(PROCESSING_S + 1)
    now = sim.server.clock.now()
    f = next(f for f in sim.expected_media() if f.expires_at is None or f.expires_at > now)
    sim.faults.update(media_status_next=1)
    assert client.get(f.url).status_code == 503
    assert client.get(f.url).status_code == 200  # the counter ran out
    assert sim.server.stats.snapshot()["media_hits"]


@pytest.mark.parametrize("sim", [n for n in NAMES if provider_class(n).has_history], indirect=True)
def test_history_pages_report_what_the_server_sent(
    sim: Simulator, adapter: Callable[..., Provider]
) -> None:
    """A walk to the first short page: ``got`` counts every item (parsed or not), each
    page's ``total`` is the count the walk finds, and it finds every generation with media.
    (Only the simulators of providers with a listing: the others have no pages.)"""
    prov: Any = adapter()
    seen: set[str] = set()
    for stream in prov.streams():
        position, got, totals = prov.paging.first, 0, set()
        while True:
            page = prov.fetch_page(stream, position)
            assert page.position == position
            assert len(page.records) + page.errors == page.got
            got += page.got
            totals.add(page.total)
            seen |= {r.external_id for r in page.records}
            size = page.page_size or prov.paging.size
            if page.got < size:
                break
            position += 1 if prov.paging.kind == "page" else page.got
        assert totals <= {None, got}, (stream, totals, got)
    assert {f.generation_id for f in sim.expected_media()} <= seen
