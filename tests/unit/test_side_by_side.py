"""Runs side by side (issue 21): the ResNeXt guide's FP32 and FP16 tables read as one, with ratios."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from analysis.side_by_side import run_names, side_by_side
from analysis.tables import LEVEL, format_table
from loadgen.errors import ConfigError
from loadgen.results import RunStatus
from loadgen.storage import RunRecord


def _table(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            LEVEL: [r[0] for r in rows],
            "Throughput (infer/s)": [r[1] for r in rows],
            "Avg latency (ms)": [r[2] * 0.8 for r in rows],
            "p50 latency (ms)": [r[2] * 0.7 for r in rows],
            "p99 latency (ms)": [r[2] for r in rows],
            "Errors": [0 for _ in rows],
        }
    )


def test_each_level_is_one_row_with_the_ratios_to_the_first() -> None:
    fp32 = _table([(1, 100.0, 10.0), (2, 180.0, 11.0), (4, 200.0, 20.0)])
    fp16 = _table([(1, 190.0, 5.0), (2, 360.0, 5.5)])  # stopped before 4
    table = side_by_side([("fp32", fp32), ("fp16", fp16)], LEVEL)
    assert list(table.columns) == [
        LEVEL,
        *(f"fp32: {c}" for c in fp32.columns[1:5]),
        *(f"fp16: {c}" for c in fp16.columns[1:5]),
        "Throughput fp16 / fp32 (x)",
        "p99 latency fp16 / fp32 (x)",
    ]
    assert list(table[LEVEL]) == [1, 2, 4]
    assert table["Throughput fp16 / fp32 (x)"].tolist()[:2] == [1.9, 2.0]
    assert table["p99 latency fp16 / fp32 (x)"].tolist()[:2] == [0.5, 0.5]
    assert math.isnan(table["Throughput fp16 / fp32 (x)"].iloc[2])
    markdown = format_table(table)
    assert "| 1 | 100.0 | 8.00 | 7.00 | 10.00 | 190.0 | 4.00 | 3.50 | 5.00 | 1.90 | 0.50 |" in markdown
    assert "| 4 | 200.0 | 16.00 | 14.00 | 20.00 | - | - | - | - | - | - |" in markdown


def test_side_by_side_refuses_what_cannot_line_up() -> None:
    with pytest.raises(ConfigError, match="named twice"):
        side_by_side([("a", _table([(1, 1.0, 1.0)])), ("a", _table([(1, 1.0, 1.0)]))], LEVEL)
    rate = _table([(1, 1.0, 1.0)]).rename(columns={LEVEL: "Request rate (req/s)"})
    with pytest.raises(ConfigError, match="b is measured by another load than"):
        side_by_side([("a", _table([(1, 1.0, 1.0)])), ("b", rate)], LEVEL)


def _run(run_id: int, model: str, labels: dict[str, str]) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(
        run_id,
        model,
        "",
        "concurrency",
        RunStatus.COMPLETED,
        None,
        "h:1",
        now,
        now,
        {},
        {},
        {},
        {},
        {},
        labels,
        1,
    )


def test_runs_are_named_by_their_matrix_cell_then_model_then_id() -> None:
    cells = [
        _run(1, "m", {"matrix": "p", "job": "p[model=m,batch_size=1]"}),
        _run(2, "m", {"matrix": "p", "job": "p[model=m,batch_size=8]"}),
    ]
    assert run_names(cells) == ["model=m batch_size=1", "model=m batch_size=8"]
    one_key = [
        _run(1, "a", {"matrix": "p", "job": "p[model=a]"}),
        _run(2, "b", {"matrix": "p", "job": "p[model=b]"}),
    ]
    assert run_names(one_key) == ["a", "b"]
    assert run_names([_run(1, "rnxt", {}), _run(2, "rnxt_fp16", {})]) == ["rnxt", "rnxt_fp16"]
    assert run_names([_run(1, "m", {}), _run(2, "m", {})]) == ["run 1", "run 2"]
