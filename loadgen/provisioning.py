"""Grafana provisioning for a runs database: the shipped dashboards plus datasources that point at it.

The dashboards are generated once, at development time, by ``dashboards/build.py``
and ship inside the package (``loadgen.grafana``); :func:`export_grafana` copies them and
writes provisioning files whose datasources point at *this* runs database and
Prometheus, so a Grafana started with ``GF_PATHS_PROVISIONING=DIR/provisioning``
shows them at once. The provisioning text is defined here, once, for the export
(``loadgen export grafana``) and for the copies committed in ``dashboards/``
(``docker/docker-compose.yml`` mounts one); a module of its own, so ``dashboards/build.py``
does not import a CLI command.

The history dashboard comes in one variant per runs database: SQLite (Grafana plugin
``frser-sqlite-datasource``, reading the file) and PostgreSQL (Grafana's built-in
``grafana-postgresql-datasource``). A PostgreSQL password is never written: the
provisioning reads it from ``$LOADGEN_PG_PASSWORD`` in Grafana's environment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from loadgen.errors import ConfigError

SQLITE_PLUGIN = "frser-sqlite-datasource"
POSTGRES_PLUGIN = "grafana-postgresql-datasource"
HISTORY_FILES = {"sqlite": "loadgen-history.json", "postgresql": "loadgen-history-postgres.json"}
"""The history dashboard per runs database (SQLAlchemy backend name -> file)."""
DASHBOARD_FILES = ("triton-server.json", "loadgen-live.json", HISTORY_FILES["sqlite"])
"""What an export for a SQLite runs database writes; for PostgreSQL the last one is
``HISTORY_FILES["postgresql"]``."""
PROMETHEUS_UID = "loadgen-prometheus"
RUNS_UID = "loadgen-runs"
PASSWORD_ENV = "LOADGEN_PG_PASSWORD"
"""Grafana's environment variable that the PostgreSQL datasource's password is read from."""
POSTGRES_PROVISIONING = "provisioning-postgres"
"""The committed provisioning for a PostgreSQL runs database (``provisioning`` is SQLite's)."""

# Where docker/docker-compose.yml puts things (inside the Grafana container).
DOCKER_PROMETHEUS_URL = "http://prometheus:9090"
DOCKER_DB_PATH = "/data/loadgen.db"
DOCKER_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/loadgen"
DOCKER_POSTGRES_URL = "postgresql+psycopg://loadgen@postgres:5432/loadgen"
"""The example behind dashboards/provisioning-postgres: a server named ``postgres`` beside Grafana."""
SCRAPE_INTERVAL = "5s"
"""Prometheus's scrape interval that Grafana assumes ($__rate_interval); docker/prometheus.yml uses it."""


def _yaml_str(value: str) -> str:
    # a JSON string is a valid YAML double-quoted scalar: no YAML library needed at run time
    return json.dumps(value)


@dataclass(frozen=True)
class SqliteRuns:
    """A SQLite runs database, as Grafana's frser-sqlite-datasource reads it: a file."""

    path: str

    backend: ClassVar[str] = "sqlite"

    def datasource(self) -> str:
        return f"""\
    type: {SQLITE_PLUGIN}
    access: proxy
    jsonData:
      path: {_yaml_str(self.path)}
"""


@dataclass(frozen=True)
class PostgresRuns:
    """A PostgreSQL runs database, as Grafana's built-in datasource reaches it (no password here)."""

    host: str
    """``host:port``, or the folder of a Unix socket."""
    database: str
    user: str
    sslmode: str
    """One of Grafana's: disable, require, verify-ca, verify-full."""

    backend: ClassVar[str] = "postgresql"

    def datasource(self) -> str:
        return f"""\
    type: {POSTGRES_PLUGIN}
    access: proxy
    url: {_yaml_str(self.host)}
    user: {_yaml_str(self.user)}
    jsonData:
      database: {_yaml_str(self.database)}
      sslmode: {_yaml_str(self.sslmode)}
    secureJsonData:
      # never written to this file: Grafana substitutes its environment variable when it starts
      password: ${PASSWORD_ENV}
"""


RunsDatabase = SqliteRuns | PostgresRuns


def provisioning_files(prometheus_url: str, runs: RunsDatabase, dashboards_dir: str) -> dict[str, str]:
    """Grafana provisioning (relative path -> YAML text): two datasources and one dashboard folder."""
    plugin = SQLITE_PLUGIN if isinstance(runs, SqliteRuns) else POSTGRES_PLUGIN
    datasources = f"""\
# loadgen's Grafana datasources (`loadgen export grafana`; docker/ mounts the SQLite copy in dashboards/):
# Prometheus (Triton's and loadgen's live metrics) and the runs database (plugin {plugin}).
apiVersion: 1
datasources:
  - name: Prometheus
    uid: {PROMETHEUS_UID}
    type: prometheus
    access: proxy
    url: {_yaml_str(prometheus_url)}
    isDefault: true
    jsonData:
      timeInterval: {SCRAPE_INTERVAL}
  - name: loadgen runs
    uid: {RUNS_UID}
{runs.datasource()}"""
    dashboards = f"""\
# loadgen's Grafana dashboards, in a folder of their own (`loadgen export grafana`).
apiVersion: 1
providers:
  - name: loadgen
    folder: loadgen
    type: file
    disableDeletion: false
    allowUiUpdates: true
    options:
      path: {_yaml_str(dashboards_dir)}
"""
    return {
        "provisioning/datasources/loadgen.yaml": datasources,
        "provisioning/dashboards/loadgen.yaml": dashboards,
    }


def dashboard_json(name: str) -> dict[str, Any]:
    """One shipped dashboard (``DASHBOARD_FILES``) as a dict."""
    data: dict[str, Any] = json.loads(resources.files("loadgen.grafana").joinpath(name).read_text("utf-8"))
    return data


_GRAFANA_SSLMODES = ("disable", "require", "verify-ca", "verify-full")


def runs_database(db_url: str) -> RunsDatabase:
    """Where Grafana finds the runs database at ``db_url``: a SQLite file or a PostgreSQL server.

    Other databases are refused (the history dashboard's SQL exists in those two dialects), as is
    what Grafana cannot reach: an in-memory SQLite, a PostgreSQL URL without host, user or database.
    """
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"bad --db {db_url!r}: {exc}") from None
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError(f"--db {shown!r}: an in-memory SQLite database; give sqlite:///PATH")
        return SqliteRuns(str(Path(url.database).expanduser().resolve()))
    if backend == "postgresql":
        return _postgres_runs(url, shown)
    raise ConfigError(
        f"--db {shown!r}: the history dashboard reads SQLite (Grafana plugin {SQLITE_PLUGIN}) or "
        f"PostgreSQL ({POSTGRES_PLUGIN}); give sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE"
    )


def _postgres_runs(url: URL, shown: str) -> PostgresRuns:
    host, user, database = url.host or _query_value(url, "host"), url.username, url.database
    if not (host and user and database):
        parts = {"host": host, "user": user, "database": database}
        raise ConfigError(
            f"--db {shown!r}: Grafana needs the {' and the '.join(k for k, v in parts.items() if not v)}: "
            "postgresql+psycopg://USER@HOST[:PORT]/DATABASE"
        )
    sslmode = _query_value(url, "sslmode") or "disable"
    if sslmode in ("allow", "prefer"):  # libpq's fallbacks; Grafana has no such mode
        sslmode = "disable"
    if sslmode not in _GRAFANA_SSLMODES:
        raise ConfigError(
            f"--db {shown!r}: sslmode={sslmode!r}, Grafana knows {', '.join(_GRAFANA_SSLMODES)}"
        )
    address = host if host.startswith("/") else f"{host}:{url.port or 5432}"  # a socket folder, or TCP
    return PostgresRuns(address, database, user, sslmode)


def _query_value(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    return value if isinstance(value, str) or value is None else value[-1]


def export_grafana(output: Path, db_url: str, prometheus_url: str) -> list[Path]:
    """Write the dashboards and provisioning under ``output``; returns the files written."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"-o {output}: not a directory")
    output = output.resolve()
    runs = runs_database(db_url)
    names = (*DASHBOARD_FILES[:-1], HISTORY_FILES[runs.backend])
    dashboards_dir = output / "dashboards"
    written = []
    dashboards_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = dashboards_dir / name
        target.write_text(json.dumps(dashboard_json(name), indent=2) + "\n", encoding="utf-8")
        written.append(target)
    for relative, text in provisioning_files(prometheus_url, runs, str(dashboards_dir)).items():
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    if isinstance(runs, SqliteRuns) and not Path(runs.path).exists():
        print(
            f"loadgen: note: {runs.path} does not exist yet; the history dashboard fills once it does",
            file=sys.stderr,
        )
    if isinstance(runs, PostgresRuns):
        print(
            f"loadgen: note: the password is not written; start Grafana with {PASSWORD_ENV} set to "
            f"{runs.user}'s password",
            file=sys.stderr,
        )
    return written
