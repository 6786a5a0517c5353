"""The read-only status page the daemon serves at ``/`` (no JavaScript, no build step).

* :mod:`.endpoints`  ``GET /`` and ``GET /files/{id}``: access first, then the page
  or the file, with the page's security headers;
* :mod:`.auth`  who may see it: the server token (bearer, a one-time ``?token=``
  that becomes a cookie, or that cookie), or nobody-but-loopback without a token;
* :mod:`.page`  what the page shows, rendered by the Jinja2 templates in
  ``templates/`` (markup and stylesheet) from the status document and recent activity;
* :mod:`.files` archived images streamed from storage for the thumbnail grid.

:mod:`genvault.server` routes requests here; nothing in this package opens a
socket or issues SQL (the queries live in :mod:`genvault.store.queries.activity`).
"""
