"""Analysis of stored runs: DataFrames, tables, comparisons, findings, plots and reports."""

from analysis.compare import (
    CompareError,
    Comparison,
    StepComparison,
    Thresholds,
    Verdict,
    compare_runs,
    load_comparison,
)
from analysis.differences import SettingDifference
from analysis.failures import StepFailures, failure_lines, step_failures
from analysis.finding_kinds import Finding
from analysis.findings import run_findings
from analysis.frames import RunData, batch_stats_frame, load_run, load_run_data, metrics_frame, steps_frame
from analysis.hgrm import SpectrumRow, format_hgrm, percentile_spectrum, write_hgrm
from analysis.junit import junit_xml, write_junit
from analysis.report import Report, build_report, write_report
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
    "SettingDifference",
    "DEFAULT_PERCENTILES",
    "PERF_ANALYZER_COLUMNS",
    "CompareError",
    "Comparison",
    "Finding",
    "Report",
    "RunData",
    "SpectrumRow",
    "StepFailures",
    "StepComparison",
    "Thresholds",
    "Verdict",
    "batch_stats_frame",
    "benchmark_table",
    "build_report",
    "compare_runs",
    "format_hgrm",
    "failure_lines",
    "format_table",
    "junit_xml",
    "latency_table",
    "load_comparison",
    "load_run",
    "load_run_data",
    "metrics_frame",
    "percentile_spectrum",
    "perf_analyzer_frame",
    "run_findings",
    "step_failures",
    "steps_frame",
    "write_hgrm",
    "write_junit",
    "write_perf_analyzer_csv",
    "write_report",
]
