"""Which HTTP server holds under hostile clients: the probes of issue "Hold under
storage outages, lying servers and hostile clients", item 10, against each candidate.

``python -m bench.server_probes [--python PY] [--seconds S] [NAME ...]``

Every candidate runs as a child process serving ``GET /healthz`` the way the daemon
does (the answer is computed on a worker thread, as genvault's handlers are
synchronous), with the limits it offers set as genvault would set them: 64 KB of
request head, a 10 s head deadline where there is one, 1,000 connections. The
attack (:mod:`tests.fixtures.hostile_clients`): 200 slowloris connections (a header
trickled one byte a second, reopened when dropped) and 50 connections each sending
99 headers of 64 KB, for ``--seconds``; meanwhile ``/healthz`` is timed every 0.25 s
on a fresh connection and the child's RSS is sampled.

``genvault`` is the daemon's own :class:`~genvault.server.ApiServer` from the tree
on ``PYTHONPATH``: today's main measures the ``http.server`` it replaces. The other
candidates need their package in ``--python``'s environment (a scratch venv with
``pip install waitress cheroot uvicorn hypercorn``); one that is missing is skipped.
Not part of ``python -m bench``: it compares servers, not genvault runs, and CI
installs only the one chosen.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Final

from tests.fixtures.hostile_clients import ProbeReport, run_probes

HEAD_LIMIT: Final = 64 * 1024
HEAD_DEADLINE: Final = 10
CONNECTIONS: Final = 1000

_APP_WSGI: Final = """
def app(environ, start_response):
    body = b'{"status":"ok"}\\n'
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

_APP_ASGI: Final = """
import asyncio
from concurrent.futures import ThreadPoolExecutor
POOL = ThreadPoolExecutor(8)
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = await asyncio.get_running_loop().run_in_executor(POOL, lambda: b'{"status":"ok"}\\n')
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

CANDIDATES: Final[dict[str, str]] = {
    "genvault": """
import sys, tempfile
from genvault.config import DatabaseSettings, ServerSettings, Settings, StorageSettings
from genvault.logs import configure
configure(level="info", fmt="json")  # as ``genvault run`` logs (stderr)
from genvault.runtime import Runtime
from genvault.server import ApiServer
tmp = tempfile.mkdtemp(prefix="gv-probe-")
settings = Settings(
    database=DatabaseSettings(url=f"sqlite:///{tmp}/gv.db"),
    storage=StorageSettings(url=f"file://{tmp}/archive"),
    server=ServerSettings(listen="127.0.0.1:0"),
)
rt = Runtime.build(settings, {})
server = ApiServer(rt, settings.server)
print("PORT", server.start().rsplit(":", 1)[1], flush=True)
sys.stdin.read()
""",
    "waitress-defaults": _APP_WSGI
    + """
from waitress.server import create_server
server = create_server(app, host="127.0.0.1", port=0)
print("PORT", server.effective_port, flush=True)
server.run()
""",
    "waitress": _APP_WSGI
    + f"""
from waitress.server import create_server
server = create_server(app, host="127.0.0.1", port=0, threads=8,
    connection_limit={CONNECTIONS}, max_request_header_size={HEAD_LIMIT},
    channel_timeout={HEAD_DEADLINE}, asyncore_use_poll=True)
print("PORT", server.effective_port, flush=True)
server.run()
""",
    "cheroot": _APP_WSGI
    + f"""
from cheroot import wsgi
server = wsgi.Server(("127.0.0.1", 0), app, numthreads=16, timeout={HEAD_DEADLINE})
server.max_request_header_size = {HEAD_LIMIT}
server.prepare()
print("PORT", server.bind_addr[1], flush=True)
server.serve()
""",
    "uvicorn": _APP_ASGI
    + f"""
import socket, uvicorn
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
print("PORT", sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning",
    limit_concurrency={CONNECTIONS}, h11_max_incomplete_event_size={HEAD_LIMIT})
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
""",
    "hypercorn": _APP_ASGI
    + f"""
import socket
from hypercorn.asyncio import serve
from hypercorn.config import Config
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
print("PORT", sock.getsockname()[1], flush=True)
config = Config()
config.bind = [f"fd://{{sock.fileno()}}"]
config.keep_alive_timeout = {HEAD_DEADLINE}
config.h11_max_incomplete_size = {HEAD_LIMIT}
config.backlog = 1024
config.errorlog = None
asyncio.run(serve(app, config))
""",
}
"""Child scripts: each prints ``PORT n`` once it listens and serves until killed."""


@dataclass
class Outcome:
    name: str
    report: ProbeReport | None
    error: str = ""


def probe(name: str, python: str, seconds: float, slow: int, oversized: int) -> Outcome:
    """Start candidate ``name`` under ``python`` (genvault: this interpreter, which has its
    dependencies), attack it, stop it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [
                sys.executable if name == "genvault" else python,
                "-c",
                textwrap.dedent(CANDIDATES[name]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,  # a file, not a pipe: a full pipe would stall a logging child
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line.startswith("PORT "):
                child.kill()
                child.wait(timeout=10)
                errors.seek(0)
                return Outcome(name, None, (errors.read().strip().splitlines() or ["?"])[-1])
            port = int(line.split()[1])
            report = run_probes(
                "127.0.0.1", port, child.pid, slow=slow, oversized=oversized, seconds=seconds
            )
            return Outcome(name, report)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=10)


def render(outcome: Outcome) -> str:
    if outcome.report is None:
        return f"{outcome.name:18} skipped: {outcome.error}"
    r = outcome.report
    drops = sorted(r.slow_drop_after)
    first_drop = f"{drops[0]:.1f}s" if drops else "never"
    verdict = (
        "PASS"
        if not r.healthz_failures and r.healthz_max < 1.0 and r.rss_growth < 50 * 1024**2
        else "FAIL"
    )
    return f"{outcome.name:18} {verdict}  {r.summary()}; first slow drop {first_drop}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_probes", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *CANDIDATES], metavar="NAME")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the others")
    parser.add_argument("--seconds", type=float, default=20.0, help="attack length")
    parser.add_argument("--slow", type=int, default=200, help="slow connections")
    parser.add_argument("--oversized", type=int, default=50, help="oversized-header connections")
    args = parser.parse_args(argv)
    for name in args.names or list(CANDIDATES):
        outcome = probe(name, args.python, args.seconds, args.slow, args.oversized)
        print(render(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
