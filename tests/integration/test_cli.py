"""The ``loadgen`` command as a user runs it: exit codes, one-line errors, data kept on faults."""

from __future__ import annotations

import csv
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from analysis import PERF_ANALYZER_COLUMNS
from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer
from loadgen.server.install import default_model_repository
from loadgen.storage import RunStore
from tests.cli import free_port, loadgen, loadgen_here, one_line_error, start_loadgen, wait_for_steps
from tests.repository import LISTED

QUICK = ["-p", "500", "--warmup", "200", "-r", "4"]


@pytest.mark.parametrize("bad", ["256..1", "0..4", "abc", ""])
def test_malformed_range_is_a_usage_error_before_anything_starts(bad: str, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    result = loadgen_here(
        "sweep", "-m", "identity", "--concurrency", bad, "-u", "127.0.0.1:1", "--db", f"sqlite:///{db}"
    )
    assert result.returncode == 2
    assert "bad range" in one_line_error(result) or "empty range" in one_line_error(result)
    assert not db.exists()


def test_db_can_be_a_plain_file_path_and_an_empty_one_is_a_usage_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    missing = loadgen_here("runs", "--db", str(plain))  # a read-only command never creates a database
    assert missing.returncode == 2 and f"no runs database at {plain}" in one_line_error(missing)
    for command in (
        ["show", "1"],
        ["table", "1"],
        ["compare", "1", "2"],
        ["report", "--latest", "-o", "r.html"],
    ):
        refused = loadgen_here(*command, "--db", str(plain))
        assert refused.returncode == 2 and "no runs database" in one_line_error(refused), command
    assert not plain.exists()
    assert loadgen_here("db", "upgrade", "--db", str(plain)).returncode == 0  # a plain path is a SQLite file
    listing = loadgen_here("runs", "--db", str(plain))
    assert listing.returncode == 0 and "no runs stored yet" in listing.stdout.lower()
    empty = loadgen_here("runs", "--db", "")
    assert empty.returncode == 2 and "empty --db" in one_line_error(empty)


def test_unreachable_server_exits_2_without_traceback(tmp_path: Path) -> None:
    result = loadgen_here(
        "sweep", "-m", "identity", "-u", f"127.0.0.1:{free_port()}", "--db", f"sqlite:///{tmp_path}/r.db"
    )
    assert result.returncode == 2
    assert "cannot reach Triton" in one_line_error(result)


def test_unknown_model_names_the_models_the_server_has(triton: EmbeddedServer, tmp_path: Path) -> None:
    result = loadgen_here("sweep", "-m", "nope", "-u", triton.grpc_url, "--db", f"sqlite:///{tmp_path}/r.db")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "'nope'" in line
    assert LISTED in line


def test_a_model_name_typo_gets_a_did_you_mean(triton: EmbeddedServer, tmp_path: Path) -> None:
    result = loadgen_here(
        "sweep", "-m", "identiy", "-u", triton.grpc_url, "--db", f"sqlite:///{tmp_path}/r.db"
    )
    assert result.returncode == 2
    assert "did you mean 'identity'?" in one_line_error(result)
    assert not (tmp_path / "r.db").exists() or not RunStore(f"sqlite:///{tmp_path}/r.db").list_runs()


def test_a_decoupled_model_is_one_line_before_any_load(triton: EmbeddedServer, tmp_path: Path) -> None:
    """Triton refuses unary calls to a streaming model: every request would fail."""
    result = loadgen_here(
        "sweep", "-m", "token_stream", "-u", triton.grpc_url, "--db", f"sqlite:///{tmp_path}/r.db"
    )
    assert result.returncode == 2
    assert "model 'token_stream' is decoupled" in one_line_error(result)
    assert not RunStore(f"sqlite:///{tmp_path}/r.db").list_runs()


@pytest.mark.parametrize(
    ("protocol", "port", "said"),
    [
        ("grpc", "http", "answers HTTP/1.1, as Triton's HTTP port does: add -i http, or give the gRPC port"),
        ("http", "grpc", "answers HTTP/2, as Triton's gRPC port does: drop -i http"),
    ],
)
def test_the_other_apis_port_says_which_port_to_use(
    triton: EmbeddedServer, tmp_path: Path, protocol: str, port: str, said: str
) -> None:
    """gRPC's own words were "Socket closed; if the server uses TLS, add --ssl", aiohttp's the raw
    bytes of an HTTP/2 frame."""
    url = f"127.0.0.1:{triton.ports.http if port == 'http' else triton.ports.grpc}"
    result = loadgen_here(
        "sweep", "-m", "identity", "-i", protocol, "-u", url, "--db", f"sqlite:///{tmp_path}/r.db"
    )
    assert result.returncode == 2
    line = one_line_error(result)
    assert said in line and "--ssl" not in line and "\\x00" not in line, line


def test_grpc_takes_an_http_scheme_url(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    for client in ("h2", "aio"):
        url = f"http://{triton.grpc_url}"
        result = loadgen_here(
            "sweep", "-m", "identity", "--grpc-client", client, "-u", url, *QUICK, "--db", db
        )
        assert result.returncode == 0, result.stderr
    assert [run.status for run in RunStore(db).list_runs()] == [RunStatus.COMPLETED] * 2


def test_sweep_show_runs_and_csv(triton: EmbeddedServer, tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path}/r.db", tmp_path / "out.csv"
    result = loadgen(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--metrics-url",
        triton.metrics_url,
        "--concurrency",
        "1,4",
        *QUICK,
        "--db",
        db,
        "--csv",
        str(out),
        "--label",
        "team=perf",
    )
    assert result.returncode == 0, result.stderr
    assert "Concurrent requests" in result.stdout and "p99 latency (ms)" in result.stdout
    # where the run went and what to run next, on stderr (stdout keeps the tables)
    assert f"loadgen: stored run 1 (identity) in {db}" in result.stderr, result.stderr
    assert f"loadgen: next: loadgen report 1 -o report.html --db '{db}'" in result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0].keys())[: len(PERF_ANALYZER_COLUMNS)] == list(PERF_ANALYZER_COLUMNS)
    assert [int(r["Concurrency"]) for r in rows] == [1, 4]
    assert all(float(r["Inferences/Second"]) > 0 for r in rows)
    assert all(int(r["p50 latency"]) <= int(r["p99 latency"]) for r in rows)

    listing = loadgen_here("runs", "--db", db)
    assert listing.returncode == 0 and "identity" in listing.stdout and "completed" in listing.stdout
    shown = loadgen_here("show", "1", "--db", db)
    assert shown.returncode == 0 and "run 1: identity" in shown.stdout
    with RunStore(db) as store:
        assert store.get_run(1).labels == {"team": "perf"}
    missing = loadgen_here("show", "99", "--db", db)
    assert missing.returncode == 2 and "no run 99" in one_line_error(missing)


def test_server_killed_mid_sweep_fails_the_run_and_keeps_finished_steps(
    small_triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    proc = start_loadgen(
        "sweep",
        "-m",
        "identity",
        "-u",
        small_triton.grpc_url,
        "--metrics-url",
        small_triton.metrics_url,
        "--concurrency",
        "1,2,4,8,16,32",
        *QUICK,
        "--db",
        db,
        "-q",
    )
    run_id = wait_for_steps(db, 1, proc)
    small_triton.kill()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"run {run_id} failed" in stderr
    with RunStore(db) as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        assert run.error and "server lost" in run.error
        assert 1 <= run.step_count < 6
        *finished, cut = store.steps(run_id)  # the step it died in is kept, marked
        assert all(s.throughput > 0 and s.interrupted is None for s in finished)
        assert cut.interrupted is not None


def test_ctrl_c_marks_the_run_interrupted_and_exits_130(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    proc = start_loadgen(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--metrics-url",
        triton.metrics_url,
        "--concurrency",
        "1,2,4,8,16",
        *QUICK,
        "--db",
        db,
    )
    run_id = wait_for_steps(db, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    with RunStore(db) as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.INTERRUPTED
        assert run.step_count >= 1


def test_embedded_flag_starts_and_stops_its_own_server(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    repo = tmp_path / "repo"  # one model: the whole demo repository takes seconds more to load
    repo.mkdir()
    (repo / "identity").symlink_to(default_model_repository() / "identity")
    result = loadgen(
        "sweep", "-m", "identity", "--concurrency", "1,2", *QUICK, "--embedded",
        "--model-repository", str(repo), "--db", db, "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.status is RunStatus.COMPLETED and run.step_count == 2
        assert run.server_url.startswith("127.0.0.1:")
    # no tritonserver left behind from this run
    leftovers = subprocess.run(
        ["pgrep", "-f", f"grpc-port={run.server_url.split(':')[1]}"], capture_output=True, check=False
    )
    assert leftovers.returncode == 1


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    from loadgen.storage.migrate import head_revision

    db = f"sqlite:///{tmp_path}/fresh.db"
    up = loadgen_here("db", "upgrade", "--db", db)
    assert up.returncode == 0 and f"empty -> {head_revision()}" in up.stdout
    current = loadgen_here("db", "current", "--db", db)
    assert current.returncode == 0 and f"schema {head_revision()}" in current.stdout


def test_not_a_loadgen_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table invoices (id integer)")
    conn.close()
    result = loadgen_here("runs", "--db", f"sqlite:///{path}")
    assert result.returncode == 2
    assert "not a loadgen database" in one_line_error(result)
    with sqlite3.connect(path) as conn:  # untouched
        assert conn.execute("select name from sqlite_master").fetchall() == [("invoices",)]
    conn.close()


def test_serve_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = loadgen(
            "serve",
            "--grpc-port",
            str(port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            timeout=60,
        )
    assert result.returncode == 2
    assert str(port) in one_line_error(result) and "in use" in one_line_error(result)


def test_version() -> None:
    result = loadgen_here("--version")
    assert result.returncode == 0 and result.stdout.startswith("loadgen 0.")


def test_a_stale_database_is_upgraded_with_its_runs_kept(triton: EmbeddedServer, tmp_path: Path) -> None:
    from alembic import command

    from loadgen.storage.migrate import alembic_config, current_revision, head_revision

    db = f"sqlite:///{tmp_path}/old.db"
    first = loadgen(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--no-metrics",
        "--concurrency",
        "1",
        *QUICK,
        "--db",
        db,
        "-q",
    )
    assert first.returncode == 0, first.stderr
    command.downgrade(alembic_config(db), "0001")  # as a database written by loadgen before open loop
    assert current_revision(db) == "0001"
    listing = loadgen("runs", "--db", db)  # its own process: the warning is logged to its stderr
    assert listing.returncode == 0, listing.stderr
    assert f"upgrading database {db} from schema revision 0001 to {head_revision()}" in listing.stderr
    assert "identity" in listing.stdout and "completed" in listing.stdout
    assert current_revision(db) == head_revision()
