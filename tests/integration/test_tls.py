"""PostgreSQL over TLS as production configures it: DATABASE_URL with sslmode=verify-full and
sslrootcert, with a CA and a server certificate (for the name `localhost` only) made here.

The embedded PostgreSQL is built without OpenSSL (with ssl=on it refuses to start: "SSL is
not supported by this build"), so its TLS end is played by a TLS terminator in front of it
that speaks PostgreSQL's own negotiation (SSLRequest, then the handshake), as a TLS proxy in
front of a managed database does. What is under test is the client's side, which is what the
settings control: that it encrypts, checks the chain against the given CA and checks the
host name. The terminator records each connection's outcome: an observer independent of the
client.

Kafka over TLS is not tested against a broker: Tansu 0.6.0 (the embedded broker) accepts
--cert and --key but not both at once, and never wraps its connections in TLS.
tests/unit/test_transport_settings.py tests the translation of the settings into aiokafka's
arguments instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared import db
from shared.settings import CommonSettings
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND == "containers", reason="stands in front of the embedded PostgreSQL's socket"
)

SERVER_NAME = "localhost"  # the only name in the server's certificate
SSL_REQUEST = 80877103  # the code of PostgreSQL's SSLRequest and GSSENCRequest messages
GSSENC_REQUEST = 80877104


@dataclass(frozen=True)
class Certificates:
    ca: Path
    other_ca: Path  # a CA that signed nothing the server holds
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _new_ca(directory: Path, name: str) -> Path:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def issue_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate it signs for SERVER_NAME, and an unrelated second CA."""
    ca = _new_ca(directory, "ca")
    other_ca = _new_ca(directory, "other-ca")
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{SERVER_NAME}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-subj", f"/CN={SERVER_NAME}", "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return Certificates(ca, other_ca, directory / "server.pem", directory / "server.key")


@dataclass
class TlsTerminator:
    """PostgreSQL's TLS negotiation in front of a server's Unix socket. `sessions` holds one
    entry per client connection: the TLS version, "plain", or "handshake failed"."""

    upstream_socket: Path
    context: ssl.SSLContext
    sessions: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await self._negotiate(reader, writer)
        except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            self.sessions.append("handshake failed")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream_socket))
        up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """Answer the client's requests for encryption; return the first bytes to pass on."""
        while True:
            first = await reader.readexactly(8)
            length, code = struct.unpack("!ii", first)
            if length == 8 and code == GSSENC_REQUEST:
                writer.write(b"N")  # no GSSAPI encryption: the client asks for TLS next
                continue
            if length == 8 and code == SSL_REQUEST:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.context)
                tls: Any = writer.get_extra_info("ssl_object")
                self.sessions.append(tls.version())
                return b""
            self.sessions.append("plain")
            return first


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def terminator(postgres: Any, certificates: Certificates) -> AsyncIterator[TlsTerminator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    socket = postgres.server.get_postmaster_info().socket_path
    running = TlsTerminator(socket, context)
    await running.start()
    yield running
    await running.stop()


def settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, host: str, port: int, query: str
) -> CommonSettings:
    """Settings read the way a service reads them: DATABASE_URL from the environment."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@{host}:{port}/postgres?{query}")
    return CommonSettings()


async def select_one(settings: CommonSettings) -> int:
    pool = await db.create_pool(settings.database_url, "tls", max_size=1)
    try:
        one: int = await pool.fetchval("SELECT 1")
        return one
    finally:
        await pool.close()


async def test_verify_full_with_the_servers_ca_connects_encrypted(
    terminator: TlsTerminator, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = f"sslmode=verify-full&sslrootcert={certificates.ca}"
    verified = settings_from_environment(monkeypatch, SERVER_NAME, terminator.port, query)
    assert await select_one(verified) == 1
    assert terminator.sessions == ["TLSv1.3"]
    # The terminator tells an unencrypted connection apart: the check above can fail.
    plain = settings_from_environment(monkeypatch, SERVER_NAME, terminator.port, "sslmode=disable")
    assert await select_one(plain) == 1
    assert terminator.sessions == ["TLSv1.3", "plain"]


async def test_verify_full_refuses_a_server_certificate_from_another_ca(
    terminator: TlsTerminator, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = f"sslmode=verify-full&sslrootcert={certificates.other_ca}"
    wrong_ca = settings_from_environment(monkeypatch, SERVER_NAME, terminator.port, query)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        await select_one(wrong_ca)
    # Refused, not retried in the clear (sslmode=prefer would have been).
    assert "plain" not in terminator.sessions


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(
    terminator: TlsTerminator, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 is the very server, but its certificate names only `localhost`.
    full = f"sslmode=verify-full&sslrootcert={certificates.ca}"
    by_address = settings_from_environment(monkeypatch, "127.0.0.1", terminator.port, full)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await select_one(by_address)
    # verify-ca checks the chain but not the name, and connects: the refusal above is the
    # host name check and nothing else.
    chain_only = f"sslmode=verify-ca&sslrootcert={certificates.ca}"
    by_chain = settings_from_environment(monkeypatch, "127.0.0.1", terminator.port, chain_only)
    assert await select_one(by_chain) == 1
    assert "plain" not in terminator.sessions
