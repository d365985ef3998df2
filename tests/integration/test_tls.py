"""TLS against the real embedded Triton, through the ``loadgen`` command as a user runs it.

gRPC uses Triton's own TLS (``--grpc-use-ssl``, ``--grpc-use-ssl-mutual``). Triton's HTTP
endpoint has no TLS in this build, so HTTPS goes through a TLS-terminating TCP forwarder in
front of Triton's plain HTTP port: the bytes reach the real server, only TLS ends early.
Certificates are made fresh for the session (``tests/pki.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from loadgen.errors import ServerUnavailable
from loadgen.results import RunStatus
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer, ServerPorts, grpc_tls_args, server_installed
from loadgen.storage import RunStore
from loadgen.tls import TlsSettings
from tests.cli import loadgen_here, one_line_error
from tests.integration.conftest import discard
from tests.integration.test_cli import QUICK
from tests.pki import Pki, make_pki

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "identity"
server_test = pytest.mark.server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_server(tmp: Path, pki: Pki, *, mutual: bool) -> EmbeddedServer:
    if not server_installed():
        if os.environ.get("LOADGEN_REQUIRE_SERVER"):
            pytest.fail("embedded Triton not installed: pip install 'loadgen[server]'")
        pytest.skip("embedded Triton not installed: pip install 'loadgen[server]'")
    repository = tmp / "models"  # identity only: a server starts in a second or two
    shutil.copytree(MODEL_DIR, repository / "identity", ignore=shutil.ignore_patterns("__pycache__"))
    extra = grpc_tls_args(pki.server_cert, pki.server_key, pki.ca if mutual else None)
    server = EmbeddedServer(
        repository,
        ServerPorts.free(),
        log_file=tmp / "tritonserver.log",
        extra_args=extra,
        startup_timeout_s=90,
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def tls_triton(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EmbeddedServer]:
    """gRPC over TLS (server certificate only); HTTP stays plain."""
    server = _tls_server(tmp_path_factory.mktemp("tls-triton"), pki, mutual=False)
    try:
        yield server
    finally:
        discard(server)


@pytest.fixture(scope="module")
def mutual_triton(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EmbeddedServer]:
    """gRPC over mutual TLS: clients must show a certificate signed by the test CA."""
    server = _tls_server(tmp_path_factory.mktemp("mutual-triton"), pki, mutual=True)
    try:
        yield server
    finally:
        discard(server)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class TlsForwarder:
    """HTTPS on a free loopback port, forwarded byte for byte to a plain TCP port (Triton's HTTP)."""

    def __init__(self, target_port: int, pki: Pki, *, require_client_cert: bool = False) -> None:
        self.target_port = target_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.load_verify_locations(pki.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda loop, context: None)  # failed handshakes are the point
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def __enter__(self) -> TlsForwarder:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _grpc_url(server: EmbeddedServer) -> str:
    return f"localhost:{server.ports.grpc}"  # the certificate's DNS name, as a user would give it


def _sweep(server: EmbeddedServer, db: Path, *args: str) -> list[str]:
    return [
        "sweep",
        "-m",
        "identity",
        "--concurrency",
        "2",
        "--metrics-url",
        server.metrics_url,  # Triton's metrics port has no TLS: scraped over plain HTTP
        "-q",
        "--db",
        f"sqlite:///{db}",
        *QUICK,
        *args,
    ]


def _completed_run(db: Path) -> dict[str, Any]:
    with RunStore(f"sqlite:///{db}") as store:
        (run,) = store.list_runs()
        assert run.status is RunStatus.COMPLETED
        (step,) = store.steps(run.id)
        assert step.throughput > 0 and step.error_count == 0
        assert store.metric_samples(run_id=run.id)
        return store.get_run(run.id).settings


def _no_runs(db: Path) -> None:
    if db.exists():
        with RunStore(f"sqlite:///{db}") as store:
            assert store.list_runs() == []


@server_test
def test_grpc_sweep_over_tls(tls_triton: EmbeddedServer, pki: Pki, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    result = loadgen_here(
        *_sweep(tls_triton, db, "-u", _grpc_url(tls_triton), "--ssl", "--ssl-ca", str(pki.ca))
    )
    assert result.returncode == 0, result.stderr
    settings = _completed_run(db)
    assert settings["tls"] == {"ca_file": str(pki.ca), "cert_file": None, "key_file": None, "insecure": False}
    assert "BEGIN" not in json.dumps(settings)  # paths only, never certificates or keys


@server_test
def test_mutual_tls_works_with_a_client_certificate(
    mutual_triton: EmbeddedServer, pki: Pki, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    cert = ["--ssl-cert", str(pki.client_cert), "--ssl-key", str(pki.client_key)]
    result = loadgen_here(
        *_sweep(mutual_triton, db, "-u", _grpc_url(mutual_triton), "--ssl-ca", str(pki.ca), *cert)
    )
    assert result.returncode == 0, result.stderr
    settings = _completed_run(db)
    assert settings["tls"]["key_file"] == str(pki.client_key)
    assert pki.client_key.read_text().strip() not in json.dumps(settings)


@server_test
def test_mutual_tls_without_a_client_certificate_fails_clearly(
    mutual_triton: EmbeddedServer, pki: Pki, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    url = _grpc_url(mutual_triton)
    result = loadgen_here(*_sweep(mutual_triton, db, "-u", url, "--ssl", "--ssl-ca", str(pki.ca)))
    assert result.returncode == 2
    line = one_line_error(result)
    assert url in line and "client certificate" in line
    _no_runs(db)


@server_test
def test_https_sweep_through_a_tls_forwarder(tls_triton: EmbeddedServer, pki: Pki, tmp_path: Path) -> None:
    """Mutual TLS on the forwarder too: the client certificate is shown over HTTPS as well."""
    db = tmp_path / "runs.db"
    cert = ["--ssl-cert", str(pki.client_cert), "--ssl-key", str(pki.client_key)]
    with TlsForwarder(tls_triton.ports.http, pki, require_client_cert=True) as forwarder:
        url = f"https://localhost:{forwarder.port}"  # https:// means TLS: no --ssl needed
        result = loadgen_here(
            *_sweep(tls_triton, db, "-i", "http", "-u", url, "--ssl-ca", str(pki.ca), *cert)
        )
        assert result.returncode == 0, result.stderr
        assert forwarder.connections >= 3  # control plane and both in-flight slots went through TLS
    settings = _completed_run(db)
    assert settings["url"] == url and settings["protocol"] == "http"


@server_test
def test_ssl_insecure_skips_verification_over_https(tls_triton: EmbeddedServer, pki: Pki) -> None:
    async def probe(tls: TlsSettings | None, url: str) -> None:
        api = ServerAPI(url, "http", tls=tls)
        try:
            await api.check_ready()
        finally:
            await api.close()

    with TlsForwarder(tls_triton.ports.http, pki) as forwarder:
        url = f"https://127.0.0.1:{forwarder.port}"
        with pytest.raises(ServerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(probe(None, url))  # the system's roots do not know the test CA
        asyncio.run(probe(TlsSettings(insecure=True), url))
        assert forwarder.connections == 1  # a failed handshake never reaches the forwarding


@server_test
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_untrusted_server_certificate_is_a_one_line_error(
    protocol: str, tls_triton: EmbeddedServer, pki: Pki, tmp_path: Path
) -> None:
    db = tmp_path / "runs.db"
    with TlsForwarder(tls_triton.ports.http, pki) as forwarder:
        if protocol == "grpc":
            url, args = _grpc_url(tls_triton), ["--ssl", "--ssl-ca", str(pki.other_ca)]
        else:
            url, args = f"https://localhost:{forwarder.port}", ["-i", "http"]  # the system's roots
        result = loadgen_here(*_sweep(tls_triton, db, "-u", url, *args))
    assert result.returncode == 2
    line = one_line_error(result)
    assert f"TLS handshake with Triton at {url} failed" in line
    assert "CERTIFICATE_VERIFY_FAILED" in line
    _no_runs(db)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ssl-ca", "{tmp}/missing.pem"], "--ssl-ca {tmp}/missing.pem: cannot read it (No such file"),
        (["--ssl", "--ssl-cert", "{tmp}/x.pem"], "--ssl-cert and --ssl-key go together"),
        (["--ssl-ca", "{tmp}"], "--ssl-ca {tmp}: cannot read it"),
        (["--ssl-ca", "{tmp}/not-pem.txt"], "--ssl-ca {tmp}/not-pem.txt: not a PEM certificate file"),
        (["--ssl-insecure"], "--ssl-insecure is for HTTPS only"),
        (["-i", "http", "-u", "http://127.0.0.1:1", "--ssl"], "is plain HTTP but TLS was asked for"),
        (["-u", "https://127.0.0.1:1"], "for gRPC over TLS give host:port and --ssl"),
        (["--ssl", "--embedded"], "the embedded server speaks plain HTTP and gRPC"),
    ],
)
def test_bad_tls_options_are_one_line_errors_before_anything_starts(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "not-pem.txt").write_text("hello\n")
    db = tmp_path / "runs.db"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "-u" not in args:
        args += ["-u", "127.0.0.1:1"]
    result = loadgen_here("sweep", "-m", "identity", "--db", f"sqlite:///{db}", *args)
    assert result.returncode == 2
    assert message.replace("{tmp}", str(tmp_path)) in one_line_error(result)
    assert not db.exists()  # refused before the database, the server or any load


def test_serve_takes_tls_files_and_refuses_bad_ones_in_one_line(pki: Pki, tmp_path: Path) -> None:
    assert grpc_tls_args(pki.server_cert, pki.server_key) == [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={pki.server_cert}",
        f"--grpc-server-key={pki.server_key}",
    ]
    alone = loadgen_here("serve", "--grpc-tls-cert", str(pki.server_cert))
    assert alone.returncode == 2 and "needs both --grpc-tls-cert and --grpc-tls-key" in one_line_error(alone)
    missing = tmp_path / "nope.pem"
    gone = loadgen_here("serve", "--grpc-tls-cert", str(pki.server_cert), "--grpc-tls-key", str(missing))
    error = one_line_error(gone)  # refused while the command line is read
    assert gone.returncode == 2 and f"--grpc-tls-key: no such file: {str(missing)!r}" in error
