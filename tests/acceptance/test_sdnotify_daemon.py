"""``genvault run`` under a stand-in service manager: READY, watchdog pings, STOPPING, exit 0.

This is what ``Type=notify`` + ``WatchdogSec=`` in deploy/systemd/genvault.service rely
on. The test binds the notification socket itself and starts the real CLI as a
subprocess with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set, as systemd does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from genvault.simulator import geminigen
from tests.acceptance.helpers import GENVAULT, local_config, sim_account

KEY = "gg-sdnotify-key-5d21c9"


def _next(sock: socket.socket, proc: subprocess.Popen[str], deadline: float) -> str:
    """The next datagram, failing (with the daemon's stderr) if it exits or time runs out."""
    while True:
        sock.settimeout(0.5)
        try:
            return sock.recv(4096).decode()
        except TimeoutError:
            exited = proc.poll() is not None
            if exited or time.monotonic() > deadline:
                proc.kill()
                _out, err = proc.communicate()
                why = f"daemon exited {proc.returncode}" if exited else "no notification in time"
                raise AssertionError(f"{why}; stderr:\n{err[-3000:]}") from None


def test_daemon_reports_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    sim = geminigen.create(api_key=KEY, seed=7, count=2, processing_count=0, failed_count=0)
    with sim, tempfile.TemporaryDirectory(prefix="gv-sd-") as sockdir:
        cfg = local_config(tmp_path, [sim_account(sim, "GG")])
        path = str(Path(sockdir) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            proc = subprocess.Popen(
                [*GENVAULT, "--config", str(cfg), "run"],
                env={**os.environ, "GG": KEY, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                first = _next(sock, proc, time.monotonic() + 60)
                assert first.splitlines()[0] == "READY=1", first
                assert any(f.startswith("STATUS=") for f in first.splitlines())
                # WATCHDOG_USEC=0.6 s: pings every 0.3 s; three in a row prove it keeps going.
                for _ in range(3):
                    assert _next(sock, proc, time.monotonic() + 5) == "WATCHDOG=1"
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 30
                while (msg := _next(sock, proc, deadline)) == "WATCHDOG=1":
                    pass  # a ping may have been in flight when the signal arrived
                assert msg.splitlines()[0] == "STOPPING=1", msg
                _out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            assert proc.returncode == 0, err[-3000:]
            assert "daemon.stopped" in err
