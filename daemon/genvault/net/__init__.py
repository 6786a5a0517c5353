"""Everything that speaks HTTP to the outside, so httpx stays behind one package.

* :mod:`~genvault.net.policy`: which hosts and addresses a request may reach, and
  which origin an account's credentials may go to;
* :mod:`~genvault.net.client`: the one client factory, on a transport that vets
  every connection (each redirect hop included) with the policy;
* :mod:`~genvault.net.api`: :class:`~genvault.net.api.ApiClient`, JSON calls to a
  provider API with bounded bodies, a deadline and retries;
* :mod:`~genvault.net.media`: streaming one media file, verified while it flows;
* :mod:`~genvault.net.throttle`: an account's request budget and circuit breaker;
* :mod:`~genvault.net.errors`: httpx's failures as genvault's errors, and errors as
  safe one-line text.
"""
