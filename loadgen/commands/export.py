"""``loadgen export grafana``: the shipped Grafana dashboards and provisioning, ready to use.

The dashboards are generated once, at development time, by ``dashboards/build.py``
and ship inside the package (``loadgen.grafana``); this command copies them and
writes provisioning files whose datasources point at *this* runs database and
Prometheus, so a Grafana started with ``GF_PATHS_PROVISIONING=DIR/provisioning``
shows them at once. The provisioning text is defined here, once, for the export
and for the copy ``docker/docker-compose.yml`` mounts.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from loadgen.config import ConfigError
from loadgen.storage import DEFAULT_DB_URL

EXIT_OK = 0

DASHBOARD_FILES = ("triton-server.json", "loadgen-live.json", "loadgen-history.json")
PROMETHEUS_UID = "loadgen-prometheus"
RUNS_UID = "loadgen-runs"
SQLITE_PLUGIN = "frser-sqlite-datasource"

# Where docker/docker-compose.yml puts things (inside the Grafana container).
DOCKER_PROMETHEUS_URL = "http://prometheus:9090"
DOCKER_DB_PATH = "/data/loadgen.db"
DOCKER_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/loadgen"
SCRAPE_INTERVAL = "5s"
"""Prometheus's scrape interval that Grafana assumes ($__rate_interval); docker/prometheus.yml uses it."""


def _yaml_str(value: str) -> str:
    # a JSON string is a valid YAML double-quoted scalar: no YAML library needed at run time
    return json.dumps(value)


def provisioning_files(prometheus_url: str, db_path: str, dashboards_dir: str) -> dict[str, str]:
    """Grafana provisioning (relative path -> YAML text): two datasources and one dashboard folder."""
    datasources = f"""\
# loadgen's Grafana datasources (`loadgen export grafana`; docker/ uses dashboards/provisioning):
# Prometheus (Triton's and loadgen's live metrics) and the runs database (plugin {SQLITE_PLUGIN}).
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
    type: {SQLITE_PLUGIN}
    access: proxy
    jsonData:
      path: {_yaml_str(db_path)}
"""
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


def sqlite_path(db_url: str) -> Path:
    """The file behind a SQLite URL; other databases are refused (the history SQL is SQLite's)."""
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"bad --db {db_url!r}: {exc}") from None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise ConfigError(
            f"--db {db_url!r}: the history dashboard reads a SQLite file (Grafana plugin {SQLITE_PLUGIN}); "
            "give sqlite:///PATH"
        )
    return Path(url.database).expanduser().resolve()


def export_grafana(output: Path, db_url: str, prometheus_url: str) -> list[Path]:
    """Write the dashboards and provisioning under ``output``; returns the files written."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"-o {output}: not a directory")
    output = output.resolve()
    db_path = sqlite_path(db_url)
    dashboards_dir = output / "dashboards"
    written = []
    dashboards_dir.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARD_FILES:
        target = dashboards_dir / name
        target.write_text(json.dumps(dashboard_json(name), indent=2) + "\n", encoding="utf-8")
        written.append(target)
    for relative, text in provisioning_files(prometheus_url, str(db_path), str(dashboards_dir)).items():
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    if not db_path.exists():
        print(
            f"loadgen: note: {db_path} does not exist yet; the history dashboard fills once it does",
            file=sys.stderr,
        )
    return written


def register(sub: Any) -> None:
    """Add the ``export`` sub-command (``export grafana``) to the ``loadgen`` parser."""
    parser = sub.add_parser("export", help="write files for other tools (Grafana dashboards)")
    targets = parser.add_subparsers(dest="export_target", required=True, metavar="TARGET")
    grafana = targets.add_parser(
        "grafana",
        help="Grafana dashboards + provisioning (Prometheus and the runs database as datasources)",
        description="Writes DIR/dashboards/*.json and "
        "DIR/provisioning/{datasources,dashboards}/loadgen.yaml. "
        "Start Grafana with GF_PATHS_PROVISIONING=DIR/provisioning and the "
        f"{SQLITE_PLUGIN} plugin installed, or import the JSON files by hand.",
    )
    grafana.add_argument(
        "--db", default=DEFAULT_DB_URL, help=f"the runs database, a SQLite URL (default {DEFAULT_DB_URL})"
    )
    grafana.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("grafana"),
        metavar="DIR",
        help="folder to write (default ./grafana)",
    )
    grafana.add_argument(
        "--prometheus-url",
        default="http://localhost:9090",
        help="the Prometheus that scrapes Triton and loadgen (default http://localhost:9090)",
    )
    grafana.set_defaults(handler=cmd_export_grafana)


def cmd_export_grafana(args: argparse.Namespace) -> int:
    """The ``export grafana`` handler: usage errors raise ConfigError (one line, exit 2)."""
    written = export_grafana(args.output, args.db, args.prometheus_url)
    print(f"wrote {len(written)} files to {args.output.resolve()}", file=sys.stderr)
    return EXIT_OK
