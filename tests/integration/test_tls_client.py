"""The HTTP clients verify TLS with the system's trust store, loaded on the first https
connection only (``genvault.net.client._GuardedPool``): a run that opens none, like a
nothing-to-do ``run --once`` on plain-HTTP endpoints, does not pay for loading it.

A real TLS server on loopback with a self-signed certificate for ``localhost``:
refused when that certificate is not trusted, accepted when the system trust store
(``SSL_CERT_FILE``, which ``ssl.create_default_context`` reads) holds it.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from genvault.config import NetworkSettings
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over tls"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/", cert
    finally:
        server.shutdown()
        server.server_close()


def _pool(client: httpx.Client) -> httpcore.ConnectionPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.ConnectionPool)
    return pool


def test_an_untrusted_certificate_is_refused(tls_server: tuple[str, Path]) -> None:
    url, _cert = tls_server
    with (
        build_client(NetworkSettings(), NetworkPolicy(allow_private=True)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(url)


def test_the_system_trust_store_is_loaded_on_the_first_https_connection(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by ssl's default verify paths
    with build_client(NetworkSettings(), NetworkPolicy(allow_private=True)) as client:
        assert _pool(client)._ssl_context is None  # nothing loaded yet
        response = client.get(url)
        assert response.status_code == 200 and response.content == b"hello over tls"
        context = _pool(client)._ssl_context
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert client.get(url).status_code == 200
        assert _pool(client)._ssl_context is context  # one context for the pool


def test_the_wrong_host_name_is_refused(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    wrong = url.replace("localhost", "127.0.0.1")  # the certificate names localhost only
    with (
        build_client(NetworkSettings(), NetworkPolicy(allow_private=True)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(wrong)
