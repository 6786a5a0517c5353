"""The read-only status page the daemon serves at ``/`` (no JavaScript, no build step).

* :mod:`.auth`  who may see it: the server token (bearer, a one-time ``?token=``
  that becomes a cookie, or that cookie), or nobody-but-loopback without a token;
* :mod:`.page`  the HTML, rendered from the status document and recent activity;
* :mod:`.files` archived images streamed from storage for the thumbnail grid.

:mod:`genvault.server` routes requests here; nothing in this package opens a
socket or issues SQL (the queries live in :mod:`genvault.store.queries.activity`).
"""
