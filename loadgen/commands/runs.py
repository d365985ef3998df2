"""``loadgen runs`` and ``loadgen show``: the stored runs, and the table of one."""

from __future__ import annotations

import argparse
from typing import Any

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, print_run, require_database, stdout_console
from loadgen.errors import EXIT_OK


def register(sub: Any) -> None:
    """Add ``runs`` and ``show`` to the CLI's sub-parsers."""
    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("-m", "--model", type=arguments.text, default=None, help="only runs of this model")
    runs.add_argument("-n", "--limit", type=arguments.count, default=50)
    add_db_option(runs)
    runs.set_defaults(handler=cmd_runs)

    show = sub.add_parser("show", help="the stored table of one run")
    show.add_argument("run_id", type=int)
    show.add_argument(
        "--csv", type=arguments.output_file, default=None, help="also write perf_analyzer's CSV"
    )
    add_db_option(show)
    show.set_defaults(handler=cmd_show)


def cmd_runs(args: argparse.Namespace) -> int:
    from loadgen.console.tables import print_runs
    from loadgen.storage import RunStore

    require_database(args.db)
    with RunStore(args.db) as store:
        print_runs(store.list_runs(model=args.model, limit=args.limit), stdout_console())
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    require_database(args.db)
    print_run(args.db, args.run_id, args.csv)
    return EXIT_OK
