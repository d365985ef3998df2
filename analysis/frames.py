"""Stored runs as pandas DataFrames: one row per step, for tables, plots and notebooks."""

from __future__ import annotations

import dataclasses

import pandas as pd

from loadgen.storage import RunRecord, RunStore, StepRecord

_SKIP = {"histogram_bytes", "windows", "errors"}


def steps_frame(steps: list[StepRecord]) -> pd.DataFrame:
    """One row per step with every stored column (latencies in microseconds)."""
    rows = []
    for step in steps:
        row = {k: v for k, v in dataclasses.asdict(step).items() if k not in _SKIP}
        row["errors"] = dict(step.errors)
        rows.append(row)
    columns = [f.name for f in dataclasses.fields(StepRecord) if f.name not in _SKIP] + ["errors"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(
        {c: "float64" for c in columns if c.startswith(("lat_", "server_")) and c.endswith("_us")}
    )


def load_run(db_url: str, run_id: int) -> tuple[RunRecord, pd.DataFrame]:
    """A stored run and its steps frame."""
    with RunStore(db_url) as store:
        run = store.get_run(run_id)
        return run, steps_frame(store.steps(run_id))
