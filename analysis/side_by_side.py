"""Several runs' benchmark tables side by side, one row per load level, with each run's ratio to
the first: the ResNeXt101 guide's FP32 and FP16 tables read as one (or any two configurations:
a plan's matrix, two backends, two servers).

A ratio is the later run's value over the first's at the same level: throughput 1.9 (x) reads
"1.9 times the first's", latency 0.5 (x) "half the first's". A level one run lacks is left empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from analysis.tables import AVG_LATENCY, THROUGHPUT
from loadgen.config.scenarios import words
from loadgen.errors import ConfigError
from loadgen.storage import RunRecord

_PERCENTILE = re.compile(r"p[\d.]+ latency \(ms\)")
RATIO_SUFFIX = " (x)"


def run_names(runs: Sequence[RunRecord]) -> list[str]:
    """Runs of one plan matrix named by their combination (``model=rnxt batch_size=8``; a matrix of
    one key by its value), else by model where every model differs (rnxt vs rnxt_fp16), else by id."""
    jobs = [run.labels.get("job", "") for run in runs]
    if all(run.labels.get("matrix") and job.endswith("]") for run, job in zip(runs, jobs, strict=True)):
        cells = [job[job.find("[") + 1 : -1] for job in jobs]
        if all("," not in cell for cell in cells):  # one key: its value says it all
            cells = [cell.partition("=")[2] for cell in cells]
        if len(set(cells)) == len(cells):
            return [cell.replace(",", " ") for cell in cells]
    models = [run.model for run in runs]
    return models if len(set(models)) == len(models) else [f"run {run.id}" for run in runs]


def _kept(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c in (THROUGHPUT, AVG_LATENCY) or _PERCENTILE.fullmatch(str(c))]


def side_by_side(tables: Sequence[tuple[str, pd.DataFrame]], level: str) -> pd.DataFrame:
    """``tables``: (name, benchmark table) per run, the first the one the others are read against."""
    if len(tables) < 2:
        raise ValueError("side by side needs two tables or more")
    if len({name for name, _ in tables}) != len(tables):
        raise ConfigError("each run is shown once: a run is named twice")
    joined: pd.DataFrame | None = None
    for name, table in tables:
        if level not in table.columns:
            raise ConfigError(f"{name} is measured by another load than {level}: not side by side")
        part = table.set_index(level)[_kept(table)].add_prefix(f"{name}: ")
        joined = part if joined is None else joined.join(part, how="outer")
    assert joined is not None
    base_name, base = tables[0]
    tail = [c for c in _kept(base) if _PERCENTILE.fullmatch(c)][-1:]  # the highest percentile
    for name, _ in tables[1:]:
        for column in (THROUGHPUT, *tail):
            short = column.split(" (")[0]
            joined[f"{short} {name} / {base_name}{RATIO_SUFFIX}"] = (
                joined[f"{name}: {column}"] / joined[f"{base_name}: {column}"]
            )
    return joined.sort_index().reset_index()


def runs_side_by_side(runs: Sequence[RunRecord], tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Each run's benchmark table (in the runs' order), named by :func:`run_names`, side by side."""
    if len({run.scenario for run in runs}) > 1:
        raise ConfigError("the runs are measured by concurrency and by request rate: not side by side")
    level = words(runs[0].scenario).column
    return side_by_side(list(zip(run_names(runs), tables, strict=True)), level)
