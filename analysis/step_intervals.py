"""Stored intervals read back at any confidence and any percentile: the ``--ci`` table, its CSV
columns, the report's error bars and ``compare``'s verdicts all come from here.

A step stores, per reported percentile, the effective sample size its batches gave
(:mod:`loadgen.intervals`); the interval is re-formed from the stored histogram with it, so
another confidence level or percentile costs nothing stored. A percentile without a stored row
borrows the nearest stored one's correction (the correlation of slow spells changes slowly
along the tail). Throughput re-forms from its estimate, standard error and batch count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.frames import RunData
from loadgen.config.measurement import EARLY_STOPPING, LATENCY, THROUGHPUT
from loadgen.histogram import LatencyHistogram
from loadgen.intervals import StepInterval, percentile_interval, t_half_width
from loadgen.storage import StepRecord

NOT_STORED = "no interval stored"
"""A step measured before intervals were stored (or with no answered request)."""
TOO_FEW = "too few requests"


@dataclass(frozen=True)
class Bounds:
    """An interval read back, or why there is none (``low``/``high`` None, ``why`` set)."""

    estimate: float
    low: float | None
    high: float | None
    why: str = ""

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """``12.30 [12.10, 12.60]``, or ``12.30 [too few requests]``."""
        if math.isnan(self.estimate):
            return "-"
        value = f"{self.estimate * scale:,.{digits}f}"
        if self.low is None or self.high is None:
            return f"{value} [{self.why}]"
        return f"{value} [{self.low * scale:,.{digits}f}, {self.high * scale:,.{digits}f}]"


def latency_bounds(
    histogram: LatencyHistogram, stored: Sequence[StepInterval], percentile: float, confidence: float
) -> Bounds:
    """The ``percentile``'s interval at ``confidence`` from the step's histogram and stored rows."""
    estimate = histogram.percentile_us(percentile) if histogram.count else math.nan
    rows = [r for r in stored if r.measure == LATENCY and r.percentile is not None]
    if not rows or histogram.count == 0:
        return Bounds(estimate, None, None, NOT_STORED)
    nearest = min(rows, key=lambda r: abs((r.percentile or 0.0) - percentile))
    interval = percentile_interval(histogram, percentile, confidence=confidence, n_eff=nearest.n_eff)
    if interval is None:
        return Bounds(estimate, None, None, TOO_FEW)
    return Bounds(estimate, interval.low_us, interval.high_us)


def throughput_bounds(throughput: float, stored: Sequence[StepInterval], confidence: float) -> Bounds:
    row = next((r for r in stored if r.measure == THROUGHPUT), None)
    if row is None or row.std_error is None or row.n_eff is None or row.n_eff < 2:
        return Bounds(throughput, None, None, NOT_STORED)
    half = t_half_width(row.std_error, row.n_eff - 1, confidence)
    return Bounds(row.estimate, max(0.0, row.estimate - half), row.estimate + half)


def early_stopping(stored: Sequence[StepInterval], percentile: float) -> float | None:
    """MLPerf's conservative estimate of ``percentile``, microseconds (None: none stored, too few)."""
    row = next((r for r in stored if r.measure == EARLY_STOPPING and r.percentile == percentile), None)
    return None if row is None else row.high


def interval_columns(
    steps: Sequence[StepRecord],
    intervals: Mapping[int, Sequence[StepInterval]],
    percentiles: Sequence[float],
    confidence: float,
) -> pd.DataFrame:
    """The CSV's extra columns: each percentile's low and high (ms), the throughput's, and MLPerf's
    early-stopping p99 (ms); empty where a step has none."""
    rows = []
    for step in steps:
        stored = intervals.get(step.id, ())
        histogram = step.histogram()
        row: dict[str, float | None] = {}
        for p in percentiles:
            bounds = latency_bounds(histogram, stored, p, confidence)
            row[f"p{p:g} low (ms)"] = None if bounds.low is None else bounds.low / 1000
            row[f"p{p:g} high (ms)"] = None if bounds.high is None else bounds.high / 1000
        rate = throughput_bounds(step.throughput, stored, confidence)
        row["Throughput low (infer/s)"], row["Throughput high (infer/s)"] = rate.low, rate.high
        early = early_stopping(stored, 99.0)
        row["p99 early stopping (ms)"] = None if early is None else early / 1000
        rows.append(row)
    return pd.DataFrame(rows).astype("float64")


def with_intervals(
    table: pd.DataFrame,
    steps: Sequence[StepRecord],
    intervals: Mapping[int, Sequence[StepInterval]],
    percentiles: Sequence[float],
    confidence: float,
) -> pd.DataFrame:
    """``table --ci`` for reading: the throughput and percentile cells of a
    :func:`~analysis.tables.benchmark_table` as ``value [low, high]``."""
    from analysis.tables import THROUGHPUT, percentile_column

    shown = table.copy()
    rates: list[str] = []
    columns: dict[float, list[str]] = {p: [] for p in percentiles}
    for step in steps:
        stored = intervals.get(step.id, ())
        histogram = step.histogram()
        rates.append(throughput_bounds(step.throughput, stored, confidence).text(digits=1))
        for p in percentiles:
            columns[p].append(latency_bounds(histogram, stored, p, confidence).text(scale=1 / 1000))
    shown[THROUGHPUT] = rates
    for p, cells in columns.items():
        shown[percentile_column(p)] = cells
    return shown


def error_bars(
    data: RunData, steps: pd.DataFrame, percentile: float, with_throughput: bool
) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """The 95% intervals of each step's ``percentile`` (ms) and, ``with_throughput``, of its
    throughput, as (below, above) the value; nothing for a run stored without intervals."""
    if not data.intervals:
        return {}
    latency: list[tuple[float, float]] = []
    rate: list[tuple[float, float]] = []
    for index, throughput in zip(steps["step_index"], steps["throughput"], strict=True):
        stored = data.intervals.get(int(index), ())
        found = latency_bounds(data.histograms[int(index)], stored, percentile, 0.95)
        latency.append(_around(found.estimate / 1000, found.low, found.high, 1000))
        bounds = throughput_bounds(float(throughput), stored, 0.95)
        rate.append(_around(float(throughput), bounds.low, bounds.high))
    bars = {"error_y": _pairs(latency)}
    if with_throughput:
        bars["error_x"] = _pairs(rate)
    return bars


def _around(value: float, low: float | None, high: float | None, scale: float = 1.0) -> tuple[float, float]:
    if low is None or high is None:
        return math.nan, math.nan
    return max(0.0, value - low / scale), max(0.0, high / scale - value)


def _pairs(values: list[tuple[float, float]]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    below, above = zip(*values, strict=True) if values else ((), ())
    return np.asarray(below, dtype=np.float64), np.asarray(above, dtype=np.float64)
