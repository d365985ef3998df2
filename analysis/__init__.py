"""Analysis of stored runs: DataFrames and tables (reports and comparisons build on these)."""

from analysis.compare import (
    CompareError,
    Comparison,
    StepComparison,
    Thresholds,
    Verdict,
    compare_runs,
    junit_xml,
    load_comparison,
    write_junit,
)
from analysis.frames import load_run, steps_frame
from analysis.hgrm import SpectrumRow, format_hgrm, percentile_spectrum, write_hgrm
from analysis.tables import (
    DEFAULT_PERCENTILES,
    PERF_ANALYZER_COLUMNS,
    benchmark_table,
    format_table,
    latency_table,
    perf_analyzer_frame,
    write_perf_analyzer_csv,
)

__all__ = [
    "DEFAULT_PERCENTILES",
    "PERF_ANALYZER_COLUMNS",
    "CompareError",
    "Comparison",
    "SpectrumRow",
    "StepComparison",
    "Thresholds",
    "Verdict",
    "benchmark_table",
    "compare_runs",
    "format_hgrm",
    "format_table",
    "junit_xml",
    "latency_table",
    "load_comparison",
    "load_run",
    "percentile_spectrum",
    "perf_analyzer_frame",
    "steps_frame",
    "write_hgrm",
    "write_junit",
    "write_perf_analyzer_csv",
]
