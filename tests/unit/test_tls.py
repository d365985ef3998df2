"""TLS settings and their command-line options, and the HTTP transport over TLS on a loopback socket."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from loadgen.cli import build_parser
from loadgen.commands.sweep import settings_from_args
from loadgen.config import SweepSettings
from loadgen.errors import ConfigError
from loadgen.tls import TlsSettings
from loadgen.transports import make_transport
from loadgen.transports.addresses import split_host_port
from loadgen.transports.base import InferRequestSpec, InputTensor
from tests.pki import Pki, make_pki

SPEC = InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (1, 4), bytes(16)),), ("OUTPUT0",))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(*argv: str) -> TlsSettings | None:
    (settings,) = settings_from_args(build_parser().parse_args(["sweep", "-m", "identity", *argv]))
    return settings.tls


def test_no_tls_unless_asked(pki: Pki) -> None:
    assert _tls() is None
    assert _tls("-i", "http", "-u", "http://h:8000") is None
    assert _tls("--ssl") == TlsSettings()
    assert _tls("-i", "http", "-u", "https://h") == TlsSettings()  # https:// means TLS
    assert _tls("--ssl-ca", str(pki.ca)) == TlsSettings(ca_file=str(pki.ca))  # so does any --ssl-* option
    assert _tls("-i", "http", "--ssl-insecure") == TlsSettings(insecure=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ssl-insecure"], "--ssl-insecure is for HTTPS only"),
        (["-u", "https://h:8001"], "for gRPC over TLS give host:port and --ssl"),
        (["-i", "http", "-u", "http://h", "--ssl"], "is plain HTTP but TLS was asked for"),
        (["--embedded", "--ssl"], "the embedded server speaks plain HTTP and gRPC"),
        (["--ssl-ca", "/no/such/ca.pem"], "--ssl-ca /no/such/ca.pem: cannot read it"),
    ],
)
def test_options_that_cannot_work_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _tls(*argv)


def test_settings_keep_paths_never_contents(pki: Pki) -> None:
    args = ["--ssl-ca", str(pki.ca), "--ssl-cert", str(pki.client_cert), "--ssl-key", str(pki.client_key)]
    (settings,) = settings_from_args(build_parser().parse_args(["sweep", "-m", "identity", *args]))
    assert settings.to_dict()["tls"] == {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
        "insecure": False,
    }
    assert "BEGIN" not in repr(settings.to_dict())
    assert SweepSettings(model="m", levels=(1,)).to_dict()["tls"] is None


def test_files_are_checked_on_construction(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ssl_cert and ssl_key go together"):
        TlsSettings(cert_file=str(pki.client_cert))
    with pytest.raises(ConfigError, match="not a PEM certificate file"):
        TlsSettings(ca_file=str(pki.client_key))
    with pytest.raises(ConfigError, match="cannot use them"):
        TlsSettings(cert_file=str(pki.client_cert), key_file=str(pki.server_key))  # not its key
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="unencrypted key"):  # and no password prompt on the terminal
        TlsSettings(cert_file=str(pki.client_cert), key_file=str(encrypted))


def test_contexts_and_credentials(pki: Pki) -> None:
    strict = TlsSettings(ca_file=str(pki.ca)).ssl_context()
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    loose = TlsSettings(insecure=True).ssl_context()
    assert loose.verify_mode is ssl.CERT_NONE and not loose.check_hostname
    assert TlsSettings(ca_file=str(pki.ca)).grpc_credentials() is not None
    with pytest.raises(ConfigError, match="HTTPS only"):
        TlsSettings(insecure=True).grpc_credentials()


def test_https_urls_default_to_port_443() -> None:
    assert split_host_port("https://triton.example.com") == ("triton.example.com", 443)
    assert split_host_port("https://10.1.2.3:8443") == ("10.1.2.3", 8443)
    assert split_host_port("10.1.2.3") == ("10.1.2.3", 8000)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, OSError):
        pass
    finally:
        writer.close()


def test_http_transport_speaks_tls(pki: Pki) -> None:
    """A loopback TLS server that answers 200 (the wire, not Triton; tests/integration has Triton)."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.server_cert, pki.server_key)

    async def main() -> list[str | None]:
        server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        results = []
        for tls in (TlsSettings(ca_file=str(pki.ca)), TlsSettings(ca_file=str(pki.other_ca))):
            transport = make_transport("http", f"https://localhost:{port}", tls=tls)
            request = transport.prepare(SPEC)
            send = transport.sender(0)
            results += [await send(request), await send(request)]
            await transport.close()
        server.close()
        await server.wait_closed()
        return results

    trusted, again, untrusted, _ = asyncio.run(main())
    assert trusted is None and again is None
    assert untrusted is not None and "CERTIFICATE_VERIFY_FAILED" in untrusted
