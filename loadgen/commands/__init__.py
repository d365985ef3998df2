"""Sub-commands beyond the core ones; each module's ``register(sub)`` adds its parsers."""

from __future__ import annotations

import argparse

from loadgen.storage import DEFAULT_DB_URL


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The ``--db`` option every command that reads or writes runs shares."""
    parser.add_argument(
        "--db",
        default=DEFAULT_DB_URL,
        help=f"runs database: a SQLAlchemy URL or a SQLite file path (default {DEFAULT_DB_URL})",
    )
