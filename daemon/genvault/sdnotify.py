"""systemd's notification protocol (``sd_notify``), stdlib only.

Why: with ``Type=notify`` systemd considers ``genvault run`` started only when it
says ``READY=1`` (after migrations, the scheduler and the HTTP server are up), so
units ordered after it and ``systemctl start`` wait for a daemon that really
works. With ``WatchdogSec=`` systemd kills and restarts a daemon that stops
sending ``WATCHDOG=1``: a hung main loop is caught without an external probe.

Why not the ``systemd-python`` / ``sdnotify`` packages: the protocol is one
datagram of ``KEY=VALUE`` lines on the AF_UNIX socket named in ``$NOTIFY_SOCKET``
(a path, or an abstract name written with a leading ``@``), and a C extension
would make the container image and the wheel harder to build for no gain.

Outside systemd (a terminal, Kubernetes, the tests) ``$NOTIFY_SOCKET`` is unset
and every call is a no-op. A notification that cannot be delivered is logged
once and never raised: losing the supervisor's socket must not stop archiving.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from genvault.logs import get_logger

log = get_logger("genvault.sdnotify")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(value: str | None) -> str | None:
    """The address to send to: a filesystem path, or ``\\0name`` for ``@name``.

    None when notifications are off: the variable is unset or empty, or names a
    transport this module does not speak (``vsock:``, used by VMs, not services).
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled
    advises, so one late wake-up never trips the watchdog; None when there is no watchdog.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for: a child
    that inherited the environment must not ping on its parent's behalf.
    """
    raw = environ.get(WATCHDOG_USEC, "").strip()
    if not raw.isdigit() or int(raw) == 0:
        return None
    owner = environ.get(WATCHDOG_PID, "").strip()
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(raw) / 1_000_000 / 2


class Notifier:
    """Sends notifications to the service manager that started this process, if any.

    Thread-safe enough for its use: one datagram per call, ``sendto`` is atomic.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.socket_name = env.get(NOTIFY_SOCKET)
        self.address = socket_address(self.socket_name)
        self.watchdog_interval = watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None
        self._last_ping = float("-inf")
        self._failing = False

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (``$NOTIFY_SOCKET`` names a socket)."""
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE`` strings) as one datagram; True when delivered.

        False, without raising, when notifications are off or the socket refuses:
        a supervisor that went away is its problem, not a reason to stop archiving.
        """
        if self.address is None or not fields:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._failing:  # once per failure streak, not once a second
                log.warning("sdnotify.failed", socket=self.socket_name, error=str(exc))
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (systemd's ``Type=notify`` waits for this)."""
        fields = ["READY=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        ok = self.notify(*fields)
        if ok:
            self._last_ping = time.monotonic()  # READY counts as a sign of life
        return ok

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown began, so systemd does not mistake the drain for a hang."""
        fields = ["STOPPING=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """``STATUS=…``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self, now: float | None = None) -> bool:
        """``WATCHDOG=1`` if a watchdog is armed and half its timeout passed since the last
        ping; call it as often as convenient (the daemon's loop wakes every second)."""
        if self.watchdog_interval is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_ping = now
        return sent

    def wake_interval(self, default: float = 1.0) -> float:
        """How long a loop that calls :meth:`watchdog` may sleep: ``default``, or less when
        the watchdog is so short that sleeping that long could miss a ping."""
        if self.watchdog_interval is None:
            return default
        return min(default, self.watchdog_interval / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    """A STATUS value: the protocol separates fields by newlines."""
    return " ".join(text.split())
