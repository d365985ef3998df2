"""Secrets never leave loadgen, and what it serves stays on this machine unless told: run as a user runs it.

One real sweep uses every secret at once (a bearer token over gRPC and HTTPS, a client key for
mutual TLS on both, a PostgreSQL password in ``--db``), with the exporter, ``--csv`` and
``--report``; then every byte it left behind is searched for each secret.
"""

from __future__ import annotations

import base64
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import make_url

from loadgen.cli import main
from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer, ServerPorts, grpc_tls_args, server_installed
from loadgen.storage import RunStore
from tests.cli import free_port, start_loadgen, stop_loadgen
from tests.integration.conftest import discard
from tests.integration.postgres import PASSWORD, PostgresServer
from tests.integration.test_tls import TlsForwarder
from tests.pki import Pki, make_pki
from tests.unit.test_security import non_loopback_ipv4, reachable

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "identity"
TOKEN = "SECRET-TOKEN-123"
QUICK = ["-p", "300", "--warmup", "100", "-r", "2"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mutual_triton(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EmbeddedServer]:
    """gRPC over mutual TLS; ``identity`` and its twin ``identity_http`` (measured over HTTPS at once)."""
    if not server_installed():
        pytest.skip("embedded Triton not installed: pip install 'loadgen[server]'")
    tmp = tmp_path_factory.mktemp("secure-triton")
    for name in ("identity", "identity_http"):
        shutil.copytree(MODEL_DIR, tmp / "models" / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp / "models" / "identity_http" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "identity"', 'name: "identity_http"'))
    server = EmbeddedServer(
        tmp / "models",
        ServerPorts.free(),
        log_file=tmp / "tritonserver.log",
        extra_args=grpc_tls_args(pki.server_cert, pki.server_key, pki.ca),
        startup_timeout_s=90,
    )
    server.start()
    try:
        yield server
    finally:
        discard(server)


def _scrape(addr: str, port: int) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://{addr}:{port}/metrics", timeout=2) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, ConnectionError):
        return None


def _postgres_dump(url: str) -> bytes:
    """Every row of every table of the runs database, as text (what a dump would hold)."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    rows: list[str] = []
    with psycopg.connect(plain) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert len(tables) > 3, tables
        for (table,) in tables:
            rows += [row[0] for row in conn.execute(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(rows).encode()


def _key_material(key: Path) -> list[bytes]:
    """The client key's contents: each base64 line of the PEM, the whole body, and its DER bytes."""
    body = [line for line in key.read_bytes().splitlines() if line and not line.startswith(b"-----")]
    return [*body, b"".join(body), base64.b64decode(b"".join(body))]


def _completed(url: str) -> list[dict[str, object]]:
    with RunStore(url, auto_upgrade=False) as store:
        runs = store.list_runs()
        assert sorted(r.model for r in runs) == ["identity", "identity_http"]
        assert all(r.status is RunStatus.COMPLETED for r in runs), [r.status for r in runs]
        return [store.get_run(r.id).settings for r in runs]


def test_no_secret_reaches_the_database_output_csv_report_exporter_or_server_log(
    mutual_triton: EmbeddedServer, pki: Pki, postgres: PostgresServer, tmp_path: Path
) -> None:
    server = mutual_triton
    pg_url = postgres.create_database("secrets")  # the password is in the URL
    sqlite_db = tmp_path / "runs.db"
    other = non_loopback_ipv4()
    with TlsForwarder(server.ports.http, pki, require_client_cert=True) as forwarder:
        sweep = [
            "sweep", "-m", "identity", "-m", f"identity_http:protocol=http,url=https://localhost:{forwarder.port}",
            "-u", f"localhost:{server.ports.grpc}", "--ssl-ca", str(pki.ca),
            "--ssl-cert", str(pki.client_cert), "--ssl-key", str(pki.client_key),
            "-H", f"Authorization: Bearer {TOKEN}", "--metrics-url", server.metrics_url, *QUICK,
        ]  # fmt: skip
        port_pg, port_sqlite = free_port(), free_port()
        # PostgreSQL, the exporter on its default address; SQLite, progress, the exporter on every address
        to_pg = start_loadgen(
            *sweep, "--db", pg_url, "--exporter-port", str(port_pg),
            "--csv", str(tmp_path / "pg.csv"), "--report", str(tmp_path / "pg.html"), "-q",
        )  # fmt: skip
        to_sqlite = start_loadgen(
            *sweep, "--db", f"sqlite:///{sqlite_db}", "--exporter-port", str(port_sqlite),
            "--exporter-addr", "0.0.0.0", "--csv", str(tmp_path / "sqlite.csv"),
            "--report", str(tmp_path / "sqlite.html"),
        )  # fmt: skip
        scrapes: list[bytes] = []
        hidden = exposed = False
        try:
            while to_pg.poll() is None or to_sqlite.poll() is None:
                if (body := _scrape("127.0.0.1", port_pg)) is not None:
                    scrapes.append(body)
                    hidden = hidden or other is None or not reachable(other, port_pg)
                if (body := _scrape(other or "127.0.0.1", port_sqlite)) is not None:
                    scrapes.append(body)
                    exposed = True
                time.sleep(0.1)
            outputs = [part for proc in (to_pg, to_sqlite) for part in proc.communicate(timeout=60)]
        finally:
            for proc in (to_pg, to_sqlite):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    assert to_pg.returncode == 0 and to_sqlite.returncode == 0, outputs
    assert any(b"loadgen_requests_total{" in body for body in scrapes), "no scrape saw a window"
    assert hidden, f"the default exporter answered on {other}"
    assert exposed, f"--exporter-addr 0.0.0.0 did not answer on {other or '127.0.0.1'}"
    for settings in _completed(pg_url) + _completed(f"sqlite:///{sqlite_db}"):
        assert settings["header_names"] == ["Authorization"]  # the header was used, by name only
        assert settings["tls"]["key_file"] == str(pki.client_key)  # type: ignore[index]  # a path may show

    assert server.log_path is not None
    sources = {
        "stdout/stderr": "\n".join(outputs).encode(),
        "exporter scrapes": b"\n".join(scrapes),
        "PostgreSQL rows": _postgres_dump(pg_url),
        "PostgreSQL log": postgres.log.read_bytes(),
        "Triton log": server.log_path.read_bytes(),
    }
    files = [*tmp_path.glob("runs.db*"), *tmp_path.glob("*.csv"), *tmp_path.glob("*.html")]
    assert len(files) >= 5, files  # the SQLite file, a CSV per model per sweep, two reports
    sources |= {path.name: path.read_bytes() for path in files}
    secrets = [
        TOKEN.encode(),
        PASSWORD.encode(),
        quote(PASSWORD, safe="").encode(),
        *_key_material(pki.client_key),
    ]
    leaks = [
        f"{name}: {secret[:24]!r}" for name, data in sources.items() for secret in secrets if secret in data
    ]
    assert not leaks, leaks


def test_a_refused_database_login_never_prints_the_password(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = make_url(postgres.url("postgres")).set(password="WRONG-PASSWORD-42")
    with pytest.raises(SystemExit) as exited:
        main(["runs", "--db", wrong.render_as_string(hide_password=False)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "password authentication failed" in err and "WRONG-PASSWORD-42" not in err, err


def test_the_scheduler_serves_its_metrics_only_where_told(tmp_path: Path) -> None:
    """No server needed: a job due once a year leaves the scheduler idle, its exporter up."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("cron: '0 0 1 1 *'\njobs:\n  yearly: {model: identity, url: '127.0.0.1:1'}\n")
    other = non_loopback_ipv4()
    port = free_port()
    addr = other or "127.0.0.1"
    proc = start_loadgen(
        "schedule", str(plan), "--db", f"sqlite:///{tmp_path / 'runs.db'}",
        "--exporter-port", str(port), "--exporter-addr", addr,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while _scrape(addr, port) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the scheduler's exporter never answered"
            time.sleep(0.1)
        if other is not None:  # told one address: loopback is not it
            assert not reachable("127.0.0.1", port)
    finally:
        _, err = stop_loadgen(proc, signal.SIGTERM)
    assert proc.returncode == 0, err


def test_the_embedded_server_listens_on_loopback_only(triton: EmbeddedServer) -> None:
    """Triton's own default is every interface; the server loadgen starts serves this machine only."""
    other = non_loopback_ipv4()
    for port in (triton.ports.http, triton.ports.grpc, triton.ports.metrics):
        assert reachable("127.0.0.1", port), port
        if other is not None:
            assert not reachable(other, port), f"Triton answers on {other}:{port}"
