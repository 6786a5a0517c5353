"""The HTTP server's counters as Prometheus families, for ``/metrics`` and the textfile.

:class:`~genvault.server.ApiServer` counts what its rooms accept and refuse in a
plain dict (``intake.accepted``, ``webhook.refused.bad_token``, ``intake.ids_new``,
``http.refused.busy``...), with no prometheus_client type in the server;
:func:`genvault.metrics.exposition` hands that dict here at each scrape. A module
of its own because the naming scheme of those keys is the server's, while the
rest of :mod:`genvault.metrics` is about jobs and the database.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.metrics_core import CounterMetricFamily, Metric


def server_families(counters: Mapping[str, int]) -> list[Metric]:
    """The HTTP server's counters (``intake.accepted``, ``webhook.refused.bad_token``,
    ``intake.ids_new``, ``http.refused.busy``...) as two counter families.

    Requests: ``<endpoint>.<outcome>[.<reason>]``; ids: ``<endpoint>.ids[_<result>]``.
    """
    requests = CounterMetricFamily(
        "genvault_http_requests",
        "Requests to the intake and webhook endpoints by outcome (accepted, refused) "
        "and refusal reason.",
        labels=["endpoint", "outcome", "reason"],
    )
    ids = CounterMetricFamily(
        "genvault_registered_ids",
        "Task ids handed over by intake (new, known) and webhooks (received).",
        labels=["endpoint", "result"],
    )
    for key, value in sorted(counters.items()):
        endpoint, _, rest = key.partition(".")
        if rest == "ids" or rest.startswith("ids_"):
            ids.add_metric([endpoint, rest.removeprefix("ids").lstrip("_") or "received"], value)
            continue
        outcome, _, reason = rest.partition(".")
        requests.add_metric([endpoint, outcome or "unknown", reason], value)
    return [requests, ids]


__all__ = ["server_families"]
