"""``loadgen db upgrade|current``: the runs database's schema (alembic), never printing a password."""

from __future__ import annotations

import argparse
from typing import Any

from loadgen.commands.shared import add_db_option
from loadgen.errors import EXIT_OK


def register(sub: Any) -> None:
    """Add ``db upgrade`` and ``db current`` to the CLI's sub-parsers."""
    db = sub.add_parser("db", help="database schema (alembic)")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="upgrade the schema to this loadgen's revision")
    add_db_option(up)
    up.set_defaults(handler=cmd_db)
    current = actions.add_parser("current", help="print the schema revision")
    add_db_option(current)
    current.set_defaults(handler=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    from sqlalchemy import make_url

    from loadgen.storage import migrate

    shown = make_url(args.db).render_as_string(hide_password=True)
    if args.db_command == "upgrade":
        before = migrate.current_revision(args.db)
        migrate.upgrade(args.db)
        print(f"{shown}: schema {before or 'empty'} -> {migrate.current_revision(args.db)}")
    else:
        print(
            f"{shown}: schema {migrate.current_revision(args.db) or 'empty'} "
            f"(this loadgen needs {migrate.head_revision()})"
        )
    return EXIT_OK
