"""PostgreSQL as the runs database, on a real server (the ``postgres`` fixture, never a mock).

A real sweep against the embedded Triton is stored in PostgreSQL through a password-protected
TCP login, read back by ``loadgen runs`` / ``table``, every SQL statement of the PostgreSQL
history dashboard runs against it, and ``loadgen export grafana`` writes a datasource that
reaches it. Set LOADGEN_REQUIRE_POSTGRES=1 to fail instead of skipping without PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from alembic import command
from sqlalchemy import make_url

from loadgen.cli import main
from loadgen.provisioning import (
    DASHBOARD_FILES,
    HISTORY_FILES,
    PASSWORD_ENV,
    POSTGRES_PLUGIN,
    PROMETHEUS_UID,
    RUNS_UID,
    dashboard_json,
)
from loadgen.results import RunStatus
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, check_schema, current_revision, head_revision
from loadgen.storage.migrate import alembic_config
from tests.cli import loadgen, loadgen_here, open_at_once
from tests.integration.postgres import PASSWORD, USER, PostgresServer

HISTORY = HISTORY_FILES["postgresql"]


@dataclass(frozen=True)
class Stored:
    """The module's one sweep, stored in PostgreSQL."""

    url: str
    run_id: int
    output: str
    """The sweep's stdout and stderr."""


@pytest.fixture(scope="module")
def stored(triton: EmbeddedServer, postgres: PostgresServer) -> Stored:
    """A short sweep (concurrency 1, 2; 0.6 s windows) labelled plan=ops, job=nightly, into a new database."""
    url = postgres.create_database("sweeps")
    sweep = loadgen(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--metrics-url", triton.metrics_url,
        "--concurrency", "1,2", "-p", "600", "--warmup", "200", "-r", "3",
        "--label", "plan=ops", "--label", "job=nightly", "--db", url,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    with RunStore(url, auto_upgrade=False) as store:
        (run,) = store.list_runs()
    return Stored(url=url, run_id=run.id, output=sweep.stdout + sweep.stderr)


def _connect(url: str) -> psycopg.Connection[Any]:
    """A plain libpq connection, as Grafana makes one: the SQL runs as written, no ORM."""
    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))


def _sql_targets() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["rawSql"])
        for panel in dashboard_json(HISTORY)["panels"]
        for target in panel.get("targets", [])
        if "rawSql" in target
    ]


def _sql(sql: str, *, to_ms: int | None = None) -> str:
    """Grafana's substitutions: the variables (``sqlstring``: quoted, comma-separated) and the time range."""
    if to_ms is None:
        to_ms = int(time.time() * 1000) + 3_600_000
    return (
        sql.replace("${model:sqlstring}", "'identity'")
        .replace("${plan:sqlstring}", "'ops'")
        .replace("${job:sqlstring}", "'nightly'")
        .replace("$__from", "0")
        .replace("$__to", str(to_ms))
    )


def test_a_sweep_is_stored_in_postgres_at_the_current_schema(stored: Stored) -> None:
    assert current_revision(stored.url) == head_revision()
    check_schema(stored.url)
    assert PASSWORD not in stored.output
    with RunStore(stored.url, auto_upgrade=False) as store:
        run = store.get_run(stored.run_id)
        steps = store.steps(stored.run_id)
        samples = store.metric_samples(run_id=stored.run_id)
        batches = store.batch_stats(steps[0].id)
    assert run.status is RunStatus.COMPLETED and run.model == "identity" and run.step_count == 2
    assert run.labels == {"plan": "ops", "job": "nightly"}
    assert run.started_at.tzinfo is not None and abs(datetime.now(UTC) - run.started_at) < timedelta(
        minutes=10
    )
    assert [s.concurrency for s in steps] == [1, 2]
    for step in steps:
        assert step.error_count == 0 and step.request_count > 0 and step.windows
        assert step.histogram().count == step.request_count  # the blob comes back byte for byte
        assert (
            step.lat_p50_us is not None and step.lat_p99_us is not None and step.lat_p99_us >= step.lat_p50_us
        )
        assert step.server_inference_count is not None and step.server_inference_count > 0
    assert samples and any(s.name == "nv_inference_count" for s in samples)
    assert batches and all(b.batch_size >= 1 and b.execution_count > 0 for b in batches)


def test_runs_and_table_read_it_back(
    stored: Stored, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = loadgen_here("runs", "--db", stored.url)
    assert listing.returncode == 0, listing.stderr
    assert "identity" in listing.stdout and "completed" in listing.stdout
    assert str(stored.run_id) in listing.stdout
    # the password from libpq's environment instead of the URL, as the README suggests
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    table = loadgen_here(
        "table", str(stored.run_id), "--format", "csv", "--db", postgres.url("sweeps", password=False)
    )
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [int(r["Concurrent requests"]) for r in rows] == [1, 2]
    assert all(float(r["Throughput (infer/s)"]) > 0 for r in rows)


def test_every_history_query_returns_rows_from_the_postgres_database(stored: Stored) -> None:
    targets = _sql_targets()
    assert len(targets) == 4
    with _connect(stored.url) as conn:
        for title, sql in targets:
            rows = conn.execute(_sql(sql)).fetchall()
            assert rows, title
            if title == "Latest run":
                assert [(row[0], row[2]) for row in rows] == [(stored.run_id, 1), (stored.run_id, 2)]
            if title in ("Peak throughput per run", "p99 latency at peak throughput"):
                ((epoch, model, value),) = rows
                assert abs(epoch - time.time()) < 600 and model == "identity" and value > 0
            if title == "Runs":
                ((run, *_, plan, job, steps, peak),) = rows
                assert (run, plan, job, steps) == (stored.run_id, "ops", "nightly", 2) and peak > 0
            # the time range is applied: a range that ended an hour ago holds no run
            if title != "Latest run":
                assert conn.execute(_sql(sql, to_ms=int(time.time() * 1000) - 3_600_000)).fetchall() == []
        variables = dashboard_json(HISTORY)["templating"]["list"]
        found = {
            v["name"]: [row[0] for row in conn.execute(v["query"])] for v in variables if v["type"] == "query"
        }
    assert found == {"model": ["identity"], "plan": ["ops"], "job": ["nightly"]}


def test_export_grafana_writes_a_postgres_datasource_that_reaches_the_database(
    stored: Stored, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grafana"
    code = main(
        ["export", "grafana", "--db", stored.url, "-o", str(out), "--prometheus-url", "http://prom:9090"]
    )
    assert code == 0
    names = (*DASHBOARD_FILES[:-1], HISTORY)
    assert sorted(p.name for p in (out / "dashboards").iterdir()) == sorted(names)
    for name in names:
        assert yaml.safe_load((out / "dashboards" / name).read_text("utf-8")) == dashboard_json(name)
    datasources = yaml.safe_load((out / "provisioning/datasources/loadgen.yaml").read_text("utf-8"))
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    assert by_uid[PROMETHEUS_UID]["url"] == "http://prom:9090"
    runs = by_uid[RUNS_UID]
    url = make_url(stored.url)
    assert runs["type"] == POSTGRES_PLUGIN
    assert runs["url"] == f"127.0.0.1:{url.port}" and runs["user"] == USER
    assert runs["jsonData"] == {"database": "sweeps", "sslmode": "disable"}
    assert runs["secureJsonData"] == {"password": f"${PASSWORD_ENV}"}  # Grafana fills it from its environment
    providers = yaml.safe_load((out / "provisioning/dashboards/loadgen.yaml").read_text("utf-8"))
    assert providers["providers"][0]["options"]["path"] == str((out / "dashboards").resolve())
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) == 5 and not [p for p in written if PASSWORD in p.read_text("utf-8")]
    assert PASSWORD_ENV in capsys.readouterr().err
    # what Grafana will do with it: log in with those settings and the password from the environment
    host, port = runs["url"].rsplit(":", 1)
    with psycopg.connect(
        host=host,
        port=int(port),
        dbname=runs["jsonData"]["database"],
        user=runs["user"],
        password=PASSWORD,
        sslmode=runs["jsonData"]["sslmode"],
    ) as conn:
        (latest,) = [sql for title, sql in _sql_targets() if title == "Latest run"]
        assert len(conn.execute(_sql(latest)).fetchall()) == 2


def test_an_older_postgres_database_is_upgraded_and_keeps_its_runs(postgres: PostgresServer) -> None:
    url = postgres.create_database("old")
    command.upgrade(alembic_config(url), "0001")
    assert current_revision(url) == "0001"
    with psycopg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    ) as conn:
        conn.execute(
            "INSERT INTO runs (model, model_version, scenario, status, server_url, started_at, settings, "
            "model_config, model_metadata, server_metadata, host, labels) VALUES ('identity', '1', "
            "'concurrency', 'completed', 'localhost:8001', now(), '{}', '{}', '{}', '{}', '{}', "
            '\'{"plan": "old"}\')'
        )
    upgraded = loadgen_here("db", "upgrade", "--db", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"0001 -> {head_revision()}" in upgraded.stdout and PASSWORD not in upgraded.stdout
    with RunStore(url, auto_upgrade=False) as store:
        (run,) = store.list_runs()
    assert run.labels == {"plan": "old"} and run.step_count == 0


def test_loadgens_opening_a_new_postgres_database_at_once_all_find_one_schema(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database("together")
    results = open_at_once(url)
    assert [r.returncode for r in results] == [0] * len(results), [r.stderr for r in results]
    assert current_revision(url) == head_revision()


def test_a_wrong_password_is_a_one_line_error(postgres: PostgresServer) -> None:
    url = make_url(postgres.url("postgres")).set(password="not-" + PASSWORD)
    result = loadgen_here("runs", "--db", url.render_as_string(hide_password=False))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("loadgen: error: runs database ") and "\n" not in err
    assert "password authentication failed" in err and PASSWORD not in err
