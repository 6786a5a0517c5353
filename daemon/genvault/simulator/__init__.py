"""Loopback HTTP simulators of the provider APIs genvault archives from.

No real provider is reachable from tests, CI or the demo, so each provider API is
served by a real HTTP server on 127.0.0.1 with deterministic data, a fake CDN and
fault injection (see :mod:`genvault.simulator.server`). ``SIMULATORS`` maps a provider
name to its factory; every factory has the same keyword signature
(``api_key``, ``seed``, ``count``, ``port`` and provider-specific knobs) so the CLI
demo and ``python -m genvault.simulator`` can start any of them the same way.
"""

from __future__ import annotations

from genvault.simulator.base import ExpectedFile, ProviderSim, Simulator, SimulatorFactory
from genvault.simulator.clock import SimClock
from genvault.simulator.faults import Faults
from genvault.simulator.media import MediaSpec
from genvault.simulator.messages import Headers, Request, Response
from genvault.simulator.server import SimServer

SIMULATORS: dict[str, str] = {
    "crowdcomputed": "genvault.simulator.crowdcomputed:create",
    "geminigen": "genvault.simulator.geminigen:create",
    "akool": "genvault.simulator.akool:create",
    "tengrai": "genvault.simulator.tengrai:create",
    "quickrouter": "genvault.simulator.quickrouter:create",
}
"""Provider name -> ``module:factory``, imported on first use (one line per provider)."""


def simulator_factory(name: str) -> SimulatorFactory:
    """The factory of the named provider's simulator."""
    import importlib

    module, _, attr = SIMULATORS[name].partition(":")
    factory: SimulatorFactory = getattr(importlib.import_module(module), attr)
    return factory


__all__ = [
    "SIMULATORS",
    "ExpectedFile",
    "Faults",
    "Headers",
    "MediaSpec",
    "ProviderSim",
    "Request",
    "Response",
    "SimClock",
    "SimServer",
    "Simulator",
    "SimulatorFactory",
    "simulator_factory",
]
