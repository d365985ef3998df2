"""What a step knows about its own precision: the intervals it stores, whether ``--stop-when``
is met, and whether its first windows were still warming up (issue 20).

All of it reads the windows' batches (:class:`~loadgen.batches.Batches`, cut by time
:data:`~loadgen.batches.BATCHES_PER_WINDOW` times a window), never the requests themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loadgen.batches import Batches
from loadgen.config.measurement import EARLY_STOPPING, LATENCY, THROUGHPUT, MeasurementSettings, StopRule
from loadgen.engine.recorder import Window
from loadgen.histogram import LatencyHistogram, bucket_low_us
from loadgen.intervals import (
    StepInterval,
    early_stopping_estimate,
    percentile_interval,
    percentile_n_eff,
    rate_interval,
)

INTERVAL_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
"""The percentiles every step stores an interval for (p99.9 says when it cannot have one)."""
EARLY_STOPPING_PERCENTILES = (90.0, 99.0)
"""MLPerf's: single-stream reports p90, server and multistream p99."""
MLPERF_CONFIDENCE = 0.99
"""MLPerf LoadGen's early-stopping confidence."""
TREND_P = 0.05
"""A window whose batch latencies trend at this significance is still warming up."""


def batch_durations(opened: float, marks: Sequence[float], closed: float, batches: int) -> list[float]:
    """Each batch's length, seconds, from the step's mark times; evenly split when a pool's
    worker ended a different number of batches (a mark overtaken by the cut)."""
    edges = [opened, *marks, closed]
    if len(edges) - 1 == batches:
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]
    return [(closed - opened) / batches] * batches if batches else []


class Measured:
    """The windows a step measures from, with their batches joined in order."""

    def __init__(self, windows: Sequence[Window], durations: Sequence[Sequence[float]]) -> None:
        self.histogram = LatencyHistogram.merged(w.histogram for w in windows)
        self.batches = Batches.joined([w.batches for w in windows])
        self.durations = [d for window in durations for d in window]
        self.duration_s = sum(self.durations)

    def latency(self, percentile: float, confidence: float) -> StepInterval:
        estimate = self.histogram.percentile_us(percentile)
        n_eff = percentile_n_eff(self.histogram, self.batches, percentile)
        interval = percentile_interval(self.histogram, percentile, confidence=confidence, n_eff=n_eff)
        return StepInterval(
            LATENCY,
            percentile,
            estimate,
            None if interval is None else interval.low_us,
            None if interval is None else interval.high_us,
            confidence,
            n_eff,
        )

    def throughput(self, confidence: float, batch_size: int) -> StepInterval | None:
        sizes = self.batches.sizes()
        if len(sizes) != len(self.durations):
            return None
        found = rate_interval(sizes, self.durations, confidence=confidence, scale=batch_size)
        if found is None:
            return None
        estimate, low, high, error = found
        return StepInterval(THROUGHPUT, None, estimate, low, high, confidence, float(len(sizes)), error)

    def early_stopping(self, percentile: float) -> StepInterval:
        bound = early_stopping_estimate(self.histogram, percentile, confidence=MLPERF_CONFIDENCE)
        estimate = self.histogram.percentile_us(percentile)
        return StepInterval(EARLY_STOPPING, percentile, estimate, None, bound, MLPERF_CONFIDENCE)

    def meets(self, rule: StopRule, settings: MeasurementSettings, batch_size: int) -> bool:
        if rule.measure == THROUGHPUT:
            found = self.throughput(settings.confidence, batch_size)
            return found is not None and found.half_width_pct <= (rule.within_pct or 0.0)
        assert rule.percentile is not None
        if rule.measure == LATENCY:
            return self.latency(rule.percentile, settings.confidence).half_width_pct <= (
                rule.within_pct or 0.0
            )
        found = self.early_stopping(rule.percentile)
        if found.high is None:
            return False
        return rule.within_pct is None or found.high <= found.estimate * (1 + rule.within_pct / 100.0)

    def intervals(self, settings: MeasurementSettings, batch_size: int) -> list[StepInterval]:
        """What the step stores: every reported percentile's interval, the throughput's, and
        MLPerf's early-stopping estimates."""
        if self.histogram.count == 0:
            return []
        asked = {r.percentile for r in settings.stop_when if r.percentile is not None}
        rows = [self.latency(p, settings.confidence) for p in sorted({*INTERVAL_PERCENTILES, *asked})]
        rate = self.throughput(settings.confidence, batch_size)
        if rate is not None:
            rows.append(rate)
        early = {r.percentile for r in settings.stop_when if r.measure == EARLY_STOPPING and r.percentile}
        rows += [self.early_stopping(p) for p in sorted({*EARLY_STOPPING_PERCENTILES, *early})]
        return rows


def stop_rules_met(
    measured: Measured, settings: MeasurementSettings, batch_size: int, *, interval_s: float
) -> bool:
    """``--stop-when``: long enough, enough requests, and every rule's precision reached."""
    least_s = settings.min_step_ms / 1000.0 if settings.min_step_ms else interval_s
    if measured.duration_s < least_s * 0.999 or measured.histogram.count < settings.min_step_requests:
        return False
    return all(measured.meets(rule, settings, batch_size) for rule in settings.stop_when)


def still_warming(window: Window) -> bool:
    """The window's batch latencies (their means) trend up or down: Kendall's tau, ``TREND_P``."""
    means = [
        float(np.dot(bucket_low_us(buckets), counts) / counts.sum())
        for buckets, counts in zip(window.batches.buckets, window.batches.counts, strict=True)
        if counts.sum() > 0
    ]
    if len(means) < 5 or len(set(means)) < 2:
        return False
    from scipy import stats  # only with --detect-warmup (a 0.4 s import)

    return bool(stats.kendalltau(range(len(means)), means).pvalue < TREND_P)
