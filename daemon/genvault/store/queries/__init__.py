"""The store's queries, one module per concern, mixed into :class:`genvault.store.Store`.

The write path the jobs depend on (sync, poll, the lease queue) lives beside this
package in :mod:`genvault.store`. The read-side and maintenance queries that serve
people live here, each in its own mixin so a reader finds "how does search work"
in one file:

* :mod:`.search`   full-text search over prompts and models (FTS5 / tsvector);
* :mod:`.activity` recent archives and failures (status page, ``status``);
* :mod:`.metrics`  the gauges ``/metrics`` reads at scrape time;
* :mod:`.streams`  completeness per account and history stream (the reconciliation);
* :mod:`.operator` ``verify``, ``export``, ``retry``, ``backfill`` and the dry run.

All SQL in genvault is in :mod:`genvault.store` (this package included): nowhere else.
"""
