"""What several commands share: the ``--db`` option, the event loop, the stdout console, a run's table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console

from loadgen import event_loop
from loadgen.errors import ConfigError
from loadgen.storage import DEFAULT_DB_URL, SQLITE_BUSY_TIMEOUT_S

if TYPE_CHECKING:
    import pandas as pd

    from loadgen.storage import RunRecord

T = TypeVar("T")


def add_db_option(parser: argparse._ActionsContainer) -> None:
    """The ``--db`` option every command that reads or writes runs shares."""
    parser.add_argument(
        "--db",
        default=DEFAULT_DB_URL,
        metavar="URL|FILE",
        help=f"runs database: a SQLAlchemy URL or a SQLite file path (default {DEFAULT_DB_URL}); a SQLite "
        f"write waits up to {SQLITE_BUSY_TIMEOUT_S:g} s for another writer ('sqlite:///FILE?timeout=SECONDS' "
        "changes it)",
    )


def require_database(db: str) -> None:
    """For the commands that only read runs: a SQLite file that does not exist is an error, not
    an empty database created where a typo pointed (``runs``, ``show``, ``table``, ``report``...)."""
    from sqlalchemy import make_url

    url = make_url(db)
    path = url.database
    if url.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).exists():
        raise ConfigError(
            f"no runs database at {path}: nothing is stored there yet "
            "(a sweep creates it; --db names another)"
        )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with SIGTERM treated like Ctrl-C (the main task is cancelled)."""

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        return event_loop.run(main(), coro)
    except asyncio.CancelledError as exc:
        raise KeyboardInterrupt from exc


def stdout_console() -> Console:
    """Tables are wide: when stdout is a file or pipe, do not wrap them at 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=220)


CONSOLE_FINDINGS = 4
"""Findings shown under a run's table; the report lists them all."""


def print_findings(
    run: RunRecord,
    frame: pd.DataFrame,
    console: Console,
    composing: pd.DataFrame | None = None,
    traces: pd.DataFrame | None = None,
    workers: pd.DataFrame | None = None,
) -> None:
    """The run's most telling findings, ranked, under its table: failures are listed above it and
    the end of a sweep says what to do about unstable steps, so those are left to the report."""
    from analysis.finding_kinds import Kind, ranked
    from analysis.findings import detail_findings, step_findings

    said_elsewhere = {Kind.ERRORS, Kind.UNSTABLE, Kind.UNANSWERED}
    found = ranked(
        step_findings(frame, config=run.model_config)
        + detail_findings(run, frame, composing, traces, workers)
    )
    found = [f for f in found if f.kind not in said_elsewhere]
    if not found:
        return
    console.print("[bold]findings[/] (most telling first):")
    for finding in found[:CONSOLE_FINDINGS]:
        console.print(f"- {finding.text}", highlight=False, markup=False, soft_wrap=True)
    if len(found) > CONSOLE_FINDINGS:
        console.print(f"  ({len(found) - CONSOLE_FINDINGS} more in the report)", highlight=False)


def print_run(store_url: str, run_id: int, csv_path: Path | None) -> None:
    """The stored table of one run on stdout, and perf_analyzer's CSV when asked for."""
    from analysis import failure_lines, latency_table, load_run_data, step_failures, write_perf_analyzer_csv
    from loadgen.console.tables import print_failures, print_latency_table

    data = load_run_data(store_url, run_id)
    run, frame = data.run, data.steps
    console = stdout_console()
    print_latency_table(run, latency_table(frame, scenario=run.scenario), console)
    print_failures(failure_lines(step_failures(frame.to_dict("records"), run.scenario)), console)
    print_findings(run, frame, console, data.composing, data.traces, data.workers)
    if csv_path is not None:
        from loadgen.composing import ensemble_versions

        versions = ensemble_versions(run.model_config)
        for path in write_perf_analyzer_csv(
            frame, csv_path, data.composing, scenario=run.scenario, versions=versions
        ):
            print(f"wrote {path}", file=sys.stderr)
