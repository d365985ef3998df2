"""``loadgen export grafana``: the shipped Grafana dashboards and provisioning, ready to use.

The command only parses its arguments; :mod:`loadgen.provisioning` writes the files
(dashboards plus datasources pointing at this runs database and Prometheus).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from loadgen.commands import arguments
from loadgen.errors import EXIT_OK
from loadgen.provisioning import PASSWORD_ENV, SQLITE_PLUGIN, export_grafana
from loadgen.storage import DEFAULT_DB_URL


def register(sub: Any) -> None:
    """Add the ``export`` sub-command (``export grafana``) to the ``loadgen`` parser."""
    parser = sub.add_parser("export", help="write files for other tools (Grafana dashboards)")
    targets = parser.add_subparsers(dest="export_target", required=True, metavar="TARGET")
    grafana = targets.add_parser(
        "grafana",
        help="Grafana dashboards + provisioning (Prometheus and the runs database as datasources)",
        description="Writes DIR/dashboards/*.json and "
        "DIR/provisioning/{datasources,dashboards}/loadgen.yaml. "
        "Start Grafana with GF_PATHS_PROVISIONING=DIR/provisioning (and, for SQLite, the "
        f"{SQLITE_PLUGIN} plugin installed; for PostgreSQL, {PASSWORD_ENV} set to the user's "
        "password), or import the JSON files by hand.",
    )
    grafana.add_argument(
        "--db",
        default=DEFAULT_DB_URL,
        help=f"the runs database, a SQLite or PostgreSQL URL (default {DEFAULT_DB_URL})",
    )
    grafana.add_argument(
        "-o",
        "--output",
        type=arguments.output_folder,
        default=Path("grafana"),
        metavar="DIR",
        help="folder to write (default ./grafana)",
    )
    grafana.add_argument(
        "--prometheus-url",
        type=arguments.http_url,
        default="http://localhost:9090",
        help="the Prometheus that scrapes Triton and loadgen (default http://localhost:9090)",
    )
    grafana.set_defaults(handler=cmd_export_grafana)


def cmd_export_grafana(args: argparse.Namespace) -> int:
    """The ``export grafana`` handler: usage errors raise ConfigError (one line, exit 2)."""
    written = export_grafana(args.output, args.db, args.prometheus_url)
    print(f"wrote {len(written)} files to {args.output.resolve()}", file=sys.stderr)
    return EXIT_OK
