"""perf_analyzer's ``-f`` CSV, fuzzed: any frame of steps written and read back with pandas gives the same
columns, in perf_analyzer's order first, and the same values: latencies within the writer's rounding to
whole microseconds (a step without a successful request: empty cells), counts and flags exactly."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from analysis.tables import PERF_ANALYZER_COLUMNS, perf_analyzer_frame, write_perf_analyzer_csv

LATENCIES = {
    "p50 latency": "lat_p50_us",
    "p90 latency": "lat_p90_us",
    "p95 latency": "lat_p95_us",
    "p99 latency": "lat_p99_us",
    "Avg latency": "lat_avg_us",
    "Std latency": "lat_std_us",
    "Min latency": "lat_min_us",
    "Max latency": "lat_max_us",
    "Server Queue": "server_queue_us",
    "Server Compute Input": "server_compute_input_us",
    "Server Compute Infer": "server_compute_infer_us",
    "Server Compute Output": "server_compute_output_us",
}
EXACT = {
    "Concurrency": "concurrency",
    "Request Count": "request_count",
    "Errors": "error_count",
    "Trials": "window_count",
    "Stable": "stable",
}
SERVER = [c for c in LATENCIES.values() if c.startswith("server_")]

_us = st.none() | st.floats(0, 1e12) | st.sampled_from([0.5, 1.5, 2.5, 1e12 - 0.5])
"""A latency in microseconds (up to 11 days), None where the step has none; halves test the rounding."""
ROW: dict[str, st.SearchStrategy[Any]] = {
    "concurrency": st.integers(0, 10**6),
    "request_rate": st.none() | st.floats(0.001, 1e9),
    "throughput": st.floats(0, 1e9),
    "request_count": st.integers(0, 2**53),
    "error_count": st.integers(0, 2**53),
    "stable": st.booleans(),
    "window_count": st.integers(0, 1000),
    "duration_s": st.floats(0, 1e6),
    **{column: _us for column in LATENCIES.values()},
}
"""A step's stored columns that the CSV reads."""


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Steps as :func:`analysis.frames.steps_frame` gives them: latencies float64, None as NaN."""
    frame = pd.DataFrame(rows, columns=list(ROW))
    return frame.astype({c: "float64" for c in (*LATENCIES.values(), "request_rate")})


def _same(read: pd.Series, expected: npt.NDArray[np.float64], tolerance: float) -> bool:
    got = read.to_numpy(dtype="float64", na_value=np.nan)
    return bool(np.all((np.isnan(got) & np.isnan(expected)) | (np.abs(got - expected) <= tolerance)))


@given(st.lists(st.fixed_dictionaries(ROW), max_size=6))
@example([])  # no steps: the header alone
@example(
    [
        {
            **dict.fromkeys(LATENCIES.values()),
            "concurrency": 1,
            "request_rate": None,
            "throughput": 0.0,
            "request_count": 5,
            "error_count": 5,
            "stable": False,
            "window_count": 1,
            "duration_s": 1.0,
        }
    ]
)
def test_the_perf_analyzer_csv_reads_back_as_written(folder: Path, rows: list[dict[str, Any]]) -> None:
    source = _frame(rows)
    path = folder / "steps.csv"
    write_perf_analyzer_csv(source, path)
    back = pd.read_csv(path)
    assert list(back.columns) == list(perf_analyzer_frame(source).columns)
    assert tuple(back.columns[: len(PERF_ANALYZER_COLUMNS)]) == PERF_ANALYZER_COLUMNS
    assert len(back) == len(source)
    for column, field in LATENCIES.items():
        assert _same(back[column], source[field].to_numpy(), 0.5), column
    server = source[SERVER].fillna(0).sum(axis=1).to_numpy()
    network = np.maximum(source["lat_avg_us"].to_numpy() - server, 0.0)
    assert _same(back["Network+Server Send/Recv"], network, 0.5)
    for column, field in EXACT.items():
        assert back[column].tolist() == source[field].tolist(), column
    assert (back["Client Send"] == 0).all() and (back["Client Recv"] == 0).all()
    for column, field in (("Inferences/Second", "throughput"), ("Duration (s)", "duration_s")):
        assert all(
            math.isclose(a, b, rel_tol=1e-12) for a, b in zip(back[column], source[field], strict=True)
        )
