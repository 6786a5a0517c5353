"""``/healthz``, ``/readyz`` and ``/metrics``: what probes and scrapers ask of the daemon.

* ``/healthz`` (liveness): the scheduler runs (``is_healthy``); nothing else, so a slow
  database never makes an orchestrator restart a daemon that is working;
* ``/readyz`` (readiness): the database and the archive storage answer. Open to
  anyone, so one check answers every probe for ``server.ready_cache_seconds``: probes
  cannot multiply its work. Which part failed goes to the log, not to the caller;
* ``/metrics``: Prometheus text (:mod:`genvault.metrics`), behind a bearer token of
  its own when ``server.metrics_token_*`` is set (a scrape runs several queries).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from genvault.httpd.credentials import same_secret
from genvault.httpd.request import Desk, Request
from genvault.logs import get_logger

log = get_logger("genvault.server")


class Probes:
    """The probe and scrape endpoints of :class:`genvault.server.ApiServer`.

    ``is_healthy`` answers ``/healthz`` (None: always healthy); ``metrics_token`` guards
    ``/metrics`` (None: open, like the probes); ``clock`` times the readiness cache
    (tests move it instead of sleeping).
    """

    def __init__(
        self,
        desk: Desk,
        *,
        is_healthy: Callable[[], bool] | None = None,
        metrics_token: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desk = desk
        self.is_healthy = is_healthy or (lambda: True)
        self.metrics_token = metrics_token
        self._clock = clock
        self._ready_lock = threading.Lock()
        self._ready: tuple[float, HTTPStatus, dict[str, Any]] | None = None

    def healthz(self, req: Request) -> None:
        """200 while ``is_healthy()`` (the scheduler runs), 503 otherwise or if it raises."""
        try:
            ok = bool(self.is_healthy())
        except Exception:
            ok = False
        if ok:
            req.send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            req.send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unhealthy"})

    def readyz(self, req: Request) -> None:
        """Database and storage reachable. Details go to the log, not to the caller."""
        status, payload = self._readiness()
        req.send_json(status, payload)

    def _readiness(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """The last check's answer while it is younger than ``server.ready_cache_seconds``.

        ``/readyz`` is unauthenticated and each check writes and fsyncs a probe file and
        queries the database, so probes must not be able to multiply that work: one
        check at a time (the lock), and probes that arrive meanwhile take its answer.
        """
        with self._ready_lock:
            cached = self._ready
            if (
                cached is not None
                and self._clock() - cached[0] < self.desk.settings.ready_cache_seconds
            ):
                return cached[1], cached[2]
            parts: dict[str, str] = {}
            for name, check in (
                ("database", self.desk.rt.store.check),
                ("storage", self.desk.rt.storage.check),
            ):
                try:
                    check()
                    parts[name] = "ok"
                except Exception as exc:
                    parts[name] = "failed"
                    log.warning("server.not_ready", part=name, error=type(exc).__name__)
            failed = sorted(k for k, v in parts.items() if v != "ok")
            if failed:
                answer = (
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"status": "unavailable", "failed": failed, **parts},
                )
            else:
                answer = (HTTPStatus.OK, {"status": "ready", **parts})
            self._ready = (self._clock(), *answer)
            return answer

    def metrics(self, req: Request) -> None:
        """``GET /metrics``: Prometheus text format (counters of this process, gauges
        read from the database at scrape time, so every replica reports the same backlog).
        With ``server.metrics_token_*`` set, only for that bearer token: a scrape runs
        several queries, which an open endpoint lets anyone repeat."""
        from genvault.metrics import exposition

        if self.metrics_token is not None and not same_secret(req.bearer(), self.metrics_token):
            raise self.desk.refuse(
                "metrics",
                None,
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token (server.metrics_token_env / _file)",
                "bad_token",
                headers={"WWW-Authenticate": 'Bearer realm="genvault metrics"'},
            )
        body, content_type = exposition(self.desk.rt, self.desk.counters)
        req.send_body(HTTPStatus.OK, content_type, body)
