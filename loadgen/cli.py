"""The ``loadgen`` command: registers the sub-commands and ends every error in one line and an exit code.

Each sub-command lives in ``loadgen/commands/<name>.py``; the exit codes are defined once,
in :mod:`loadgen.errors`: 0 done, 1 a run failed (or a regression), 2 usage or environment,
3 wrong answers (``--validate``), 4 failed requests (``--max-error-rate``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from loadgen import __version__
from loadgen.commands import COMMANDS
from loadgen.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError, LoadgenError

START = """\
start here:
  loadgen sweep --embedded -m identity --concurrency 1..8   measure a bundled model on the CPU server
  loadgen report --latest -o report.html                    the newest run as an HTML report
  loadgen sweep --help                                      every option, grouped, with examples
runs are stored in ./loadgen.db (SQLite) unless --db says otherwise."""


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors as every other error reads: one line, exit 2 (not a usage block)."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="loadgen",
        description="Load generation and performance analysis for NVIDIA Triton.",
        epilog=START,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loadgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"loadgen.commands.{name}").register(sub)
    return parser


def _db_url(value: str) -> str:
    """``--db`` as a URL (a plain path is a SQLite file): a usage error when it is neither."""
    from loadgen.storage import db_url

    try:
        return db_url(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _fail(message: str, code: int) -> NoReturn:
    print(f"loadgen: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import OperationalError

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="loadgen: %(message)s", level=logging.WARNING)
    try:
        if isinstance(getattr(args, "db", None), str):
            args.db = _db_url(args.db)
        code: int = args.handler(args)
        return code
    except KeyboardInterrupt:
        print("loadgen: interrupted; finished steps are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `loadgen runs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except LoadgenError as exc:
        _fail(str(exc), exc.exit_code)
    except OperationalError as exc:  # the runs database is unreachable or refused the login
        _fail("runs database: " + " ".join(str(exc.orig or exc).split()), EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
