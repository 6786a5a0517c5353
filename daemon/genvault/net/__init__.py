"""Everything that speaks to the network: provider APIs, media downloads, their protection.

* :mod:`genvault.net.throttle`: per-account request budget and circuit breaker.
"""
