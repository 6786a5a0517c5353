"""Start-up housekeeping must not stop a run: an S3 server without ListMultipartUploads.

s3rver (a disk-backed S3 server people use locally) answers ``501 NotImplemented``
to ListMultipartUploads. genvault aborts stale multipart uploads at every start;
when the server cannot list them, the run logs it and goes on archiving.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from genvault.config import Settings
from genvault.runtime import Runtime
from tests.fixtures.loopback import LoopbackServer

NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented"
    b"</Message></Error>"
)


class _NoMultipartListing(BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request like s3rver answers ``GET ?uploads``."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(501)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(NOT_IMPLEMENTED)))
        self.end_headers()
        self.wfile.write(NOT_IMPLEMENTED)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_cleanup_that_the_server_cannot_do_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = LoopbackServer(_NoMultipartListing)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'gv.db'}"},
            "storage": {"url": "s3://bucket/archive", "endpoint_url": server.url},
            "server": {"enabled": False},
        }
    )
    rt = Runtime.build(settings, {})
    try:
        with capture_logs() as logs:
            assert rt.clean_storage() == 0
    finally:
        rt.close()
    assert _NoMultipartListing.requests >= 1  # it did ask
    [failed] = [e for e in logs if e["event"] == "storage.cleanup_failed"]
    assert "NotImplemented" in failed["error"]
