"""The history dashboard's PostgreSQL variant: the same panels and queries as the SQLite one, in
PostgreSQL's dialect, and what ``export grafana`` makes of a PostgreSQL URL (no server needed here;
tests/integration/test_postgres.py runs every query against a real one)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadgen.errors import ConfigError
from loadgen.provisioning import (
    HISTORY_FILES,
    PASSWORD_ENV,
    POSTGRES_PLUGIN,
    POSTGRES_PROVISIONING,
    RUNS_UID,
    SQLITE_PLUGIN,
    PostgresRuns,
    dashboard_json,
    runs_database,
)

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
SQLITE = dashboard_json(HISTORY_FILES["sqlite"])
POSTGRES = dashboard_json(HISTORY_FILES["postgresql"])


def _to_sqlite(sql: str) -> str:
    """PostgreSQL's spelling of the two dialect-specific expressions, turned into SQLite's."""
    sql = sql.replace(
        "CAST(FLOOR(EXTRACT(EPOCH FROM r.started_at)) AS BIGINT)",
        "CAST(strftime('%s', r.started_at) AS INTEGER)",
    )
    return re.sub(r"r\.labels->>'(\w+)'", r"json_extract(r.labels, '$.\1')", sql)


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_the_package_ships_the_committed_postgres_dashboard() -> None:
    assert json.loads((DASHBOARDS / HISTORY_FILES["postgresql"]).read_text("utf-8")) == POSTGRES
    assert POSTGRES["uid"] != SQLITE["uid"] and POSTGRES["title"] != SQLITE["title"]


def test_same_panels_and_queries_as_the_sqlite_dashboard_in_postgres_dialect() -> None:
    sqlite_panels, postgres_panels = _panels(SQLITE), _panels(POSTGRES)
    assert [(p["id"], p["title"], p["gridPos"]) for p in postgres_panels] == [
        (p["id"], p["title"], p["gridPos"]) for p in sqlite_panels
    ]
    for lite, pg in zip(sqlite_panels, postgres_panels, strict=True):
        assert lite["datasource"] == {"type": SQLITE_PLUGIN, "uid": "${runs}"}
        assert pg["datasource"] == {"type": POSTGRES_PLUGIN, "uid": "${runs}"}
        for lite_target, pg_target in zip(lite["targets"], pg["targets"], strict=True):
            assert pg_target["datasource"] == pg["datasource"] and pg_target["rawQuery"] is True
            assert pg_target["format"] == lite_target["queryType"].replace(" ", "_")
            sql = pg_target["rawSql"]
            assert "strftime" not in sql and "json_extract" not in sql
            assert _to_sqlite(sql) == lite_target["rawQueryText"]
    lite_vars, pg_vars = SQLITE["templating"]["list"], POSTGRES["templating"]["list"]
    assert [v["name"] for v in pg_vars] == [v["name"] for v in lite_vars] == ["runs", "model", "plan", "job"]
    assert pg_vars[0]["query"] == POSTGRES_PLUGIN
    for lite_var, pg_var in zip(lite_vars[1:], pg_vars[1:], strict=True):
        assert pg_var["datasource"]["type"] == POSTGRES_PLUGIN
        assert _to_sqlite(pg_var["query"]) == lite_var["query"]


def test_the_committed_postgres_provisioning_keeps_the_password_out() -> None:
    datasources = yaml.safe_load(
        (DASHBOARDS / POSTGRES_PROVISIONING / "datasources/loadgen.yaml").read_text()
    )
    (runs,) = [d for d in datasources["datasources"] if d["uid"] == RUNS_UID]
    assert runs["type"] == POSTGRES_PLUGIN and runs["url"] == "postgres:5432" and runs["user"] == "loadgen"
    assert runs["jsonData"]["database"] == "loadgen"
    assert runs["secureJsonData"] == {"password": f"${PASSWORD_ENV}"}
    assert yaml.safe_load((DASHBOARDS / POSTGRES_PROVISIONING / "dashboards/loadgen.yaml").read_text())


@pytest.mark.parametrize(
    ("url", "address", "sslmode"),
    [
        ("postgresql+psycopg://u:secret@db.example/runs", "db.example:5432", "disable"),
        ("postgresql://u@10.0.0.1:6543/runs?sslmode=require", "10.0.0.1:6543", "require"),
        ("postgresql+psycopg2://u@h/runs?sslmode=prefer", "h:5432", "disable"),  # libpq's fallback: no TLS
        ("postgresql+psycopg://u@/runs?host=/var/run/postgresql", "/var/run/postgresql", "disable"),
    ],
)
def test_a_postgres_url_becomes_grafana_settings(url: str, address: str, sslmode: str) -> None:
    assert runs_database(url) == PostgresRuns(address, "runs", "u", sslmode)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://h/runs", "needs the user"),
        ("postgresql+psycopg://u:secret@/runs", "needs the host"),
        ("postgresql+psycopg://u@h", "needs the database"),
        ("postgresql+psycopg://u:secret@h/runs?sslmode=verify", "sslmode='verify'"),
    ],
)
def test_a_postgres_url_grafana_cannot_use_is_refused_without_its_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        runs_database(url)
    assert says in str(error.value) and "secret" not in str(error.value)
