"""The rooms of the daemon's HTTP server, assembled by :mod:`genvault.server`.

* :mod:`.intake`  ``POST /v1/tasks`` and ``POST /webhooks/{account}``: ids handed over;
* :mod:`.probes`  ``/healthz``, ``/readyz`` and ``/metrics``;
* :mod:`.transport`  waitress configured from ``[server]``, with the request deadline
  and JSON refusals it lacks;
* :mod:`.request`  one request as a handler sees it, and its answer;
* :mod:`.credentials`  reading an offered token and comparing it in constant time
  (the one copy, for the intake, webhooks, ``/metrics`` and the status page);
* :mod:`.counters`  the server's acceptance and refusal counters as Prometheus families.

:mod:`genvault.server` owns the listening socket, the routes, the counters and the
refusal log; the status page and its files are :mod:`genvault.web`.
"""
