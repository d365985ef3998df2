"""Analysis of stored runs: DataFrames and tables (reports and comparisons build on these)."""

from analysis.frames import load_run, steps_frame
from analysis.tables import PERF_ANALYZER_COLUMNS, latency_table, perf_analyzer_frame, write_perf_analyzer_csv

__all__ = [
    "PERF_ANALYZER_COLUMNS",
    "latency_table",
    "load_run",
    "perf_analyzer_frame",
    "steps_frame",
    "write_perf_analyzer_csv",
]
