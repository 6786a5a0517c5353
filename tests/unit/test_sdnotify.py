"""sd_notify over a real AF_UNIX datagram socket that the test binds, as systemd would.

The daemon end to end (``genvault run`` under a fake service manager) is in
tests/acceptance/test_sdnotify_daemon.py.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from genvault.sdnotify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket on a filesystem path, and the NOTIFY_SOCKET value naming it.

    Under /tmp, not tmp_path: a unix socket path must fit in 108 bytes.
    """
    with tempfile.TemporaryDirectory(prefix="gv-sd-") as d:
        path = str(Path(d) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield sock, path
        finally:
            sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def _nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)
    return False


def test_addresses() -> None:
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == "\0abstract/name"
    assert socket_address("vsock:2:1234") is None  # not spoken: notifications off


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_its_pid() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 2.0
    assert watchdog_interval({**mine, "WATCHDOG_PID": "1"}, pid=os.getpid()) is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    n = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.watchdog_interval is None  # no socket, no watchdog to feed
    assert not n.ready()
    assert not n.watchdog()
    assert not n.stopping()
    assert n.wake_interval(1.0) == 1.0
    n.close()


def test_ready_status_stopping_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="archiving 2 account(s)")
    assert _recv(sock) == "READY=1\nSTATUS=archiving 2 account(s)"
    assert n.status("line one\nline two")  # a newline would start a bogus field
    assert _recv(sock) == "STATUS=line one line two"
    assert n.stopping()
    assert _recv(sock) == "STOPPING=1"
    n.close()


def test_abstract_socket_name() -> None:
    name = f"genvault-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert _recv(sock) == "READY=1"
        n.close()
    finally:
        sock.close()


def test_watchdog_pings_at_most_every_half_timeout(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.watchdog_interval == 1.0
    assert n.wake_interval(1.0) == 0.5  # the loop wakes often enough to never miss one
    assert n.watchdog(now=100.0)
    assert not n.watchdog(now=100.5)  # too soon: nothing sent
    assert n.watchdog(now=101.0)
    assert _recv(sock) == "WATCHDOG=1"
    assert _recv(sock) == "WATCHDOG=1"
    assert _nothing_pending(sock)
    n.close()


def test_a_vanished_socket_is_reported_not_raised(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    sock.close()
    os.unlink(path)
    assert not n.ready()
    assert not n.watchdog()
    n.close()
