"""Tables on the terminal (rich) for runs and steps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from loadgen.storage import RunRecord


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "[bold red]NO[/]"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def print_latency_table(run: RunRecord, table: pd.DataFrame, console: Console) -> None:
    title = f"run {run.id}: {run.model} ({run.scenario}) on {run.server_url} - {run.status}" + (
        f": {run.error}" if run.error else ""
    )
    out = Table(title=title, title_justify="left")
    for column in table.columns:
        out.add_column(column, justify="right")
    errors = list(table.columns).index("Errors") if "Errors" in table.columns else -1
    for row in table.itertuples(index=False):
        cells = [_cell(v) for v in row]
        if errors >= 0 and isinstance(row[errors], int | np.integer) and row[errors] > 0:
            cells[errors] = f"[bold red]{row[errors]:,}[/]"  # the reasons follow the table
        out.add_row(*cells)
    console.print(out)
    if table.empty:
        console.print("(no finished steps)")


def print_failures(lines: Sequence[str], console: Console) -> None:
    """Why requests failed, under a run's table (lines from ``analysis.failure_lines``)."""
    if not lines:
        return
    console.print("[bold red]failed requests[/] (count, share of the step's requests, reason):")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def print_runs(runs: Sequence[RunRecord], console: Console) -> None:
    out = Table(title_justify="left")
    for column in (
        "Run",
        "Model",
        "Scenario",
        "Levels",
        "Steps",
        "Status",
        "Started (UTC)",
        "Duration",
        "Note",
    ):
        out.add_column(column)
    for run in runs:
        levels = run.settings.get("levels", [])
        shown = ",".join(map(str, levels[:6])) + ("..." if len(levels) > 6 else "")
        duration = f"{(run.ended_at - run.started_at).total_seconds():.0f} s" if run.ended_at else "-"
        out.add_row(
            str(run.id),
            run.model,
            run.scenario,
            shown,
            str(run.step_count),
            str(run.status),
            run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            duration,
            run.error or "",
        )
    console.print(out if runs else "no runs stored yet")
