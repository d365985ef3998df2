"""Result types: what a step and a run produce, before and after storage.

Plain dataclasses; the latency distribution is always a :class:`LatencyHistogram`,
and every latency summary is read from it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loadgen.histogram import LatencyHistogram
from loadgen.intervals import StepInterval
from loadgen.tallies import SequenceTally, StreamTally, ValidationTally

REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
KEPT_REASONS = 20
"""Distinct error reasons a step keeps; the rest are counted under :data:`OTHER_REASONS`."""
OTHER_REASONS = "(other reasons)"


def top_reasons(errors: Mapping[str, int], keep: int = KEPT_REASONS) -> dict[str, int]:
    """The ``keep`` most frequent reasons, the others' count under :data:`OTHER_REASONS`: a step
    whose requests fail in many ways stores a bounded record with the same total."""
    if len(errors) <= keep:
        return dict(errors)
    ranked = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:keep])
    rest = sum(count for _, count in ranked[keep:])
    kept[OTHER_REASONS] = kept.get(OTHER_REASONS, 0) + rest
    return kept


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


STABILITY_WINDOWS = 3
"""A step's numbers come from its last 3 windows, which the stability rule compares."""


def spread_pct(values: Sequence[float]) -> float:
    """The largest deviation of a value from their mean, percent of the mean: what the stability
    rule bounds, and a step's own noise; NaN for fewer than 2 values or any undefined."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    mean = sum(values) / len(values)
    if mean <= 0:
        return math.nan
    return max(abs(v - mean) for v in values) / mean * 100.0


@dataclass(frozen=True)
class DurationStat:
    """Triton's ``{count, ns}`` pair: cumulative count and nanoseconds."""

    count: int = 0
    ns: int = 0

    @property
    def avg_us(self) -> float:
        """NaN without a count: a step where every request failed has no queue time, not 0."""
        return self.ns / self.count / 1000.0 if self.count else math.nan


@dataclass(frozen=True)
class BatchStat:
    """One entry of ``batch_stats``: executions of one batch size."""

    batch_size: int
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat

    @property
    def execution_count(self) -> int:
        return self.compute_infer.count


@dataclass(frozen=True)
class ModelStats:
    """A snapshot of ``/v2/models/<m>/stats`` for one model version, or the delta of two."""

    inference_count: int
    execution_count: int
    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    cache_hit: DurationStat
    cache_miss: DurationStat
    batch_stats: tuple[BatchStat, ...] = ()

    def _combine(self, other: ModelStats, sign: int) -> ModelStats:
        def op(a: DurationStat, b: DurationStat) -> DurationStat:
            return DurationStat(a.count + sign * b.count, a.ns + sign * b.ns)

        zero = DurationStat()
        mine = {b.batch_size: b for b in self.batch_stats}
        theirs = {b.batch_size: b for b in other.batch_stats}
        batches = []
        for size in sorted(mine.keys() | theirs.keys()):
            a = mine.get(size, BatchStat(size, zero, zero, zero))
            b = theirs.get(size, BatchStat(size, zero, zero, zero))
            combined = BatchStat(
                size,
                op(a.compute_input, b.compute_input),
                op(a.compute_infer, b.compute_infer),
                op(a.compute_output, b.compute_output),
            )
            if combined.execution_count or combined.compute_input.count or combined.compute_output.count:
                batches.append(combined)
        return ModelStats(
            inference_count=self.inference_count + sign * other.inference_count,
            execution_count=self.execution_count + sign * other.execution_count,
            success=op(self.success, other.success),
            fail=op(self.fail, other.fail),
            queue=op(self.queue, other.queue),
            compute_input=op(self.compute_input, other.compute_input),
            compute_infer=op(self.compute_infer, other.compute_infer),
            compute_output=op(self.compute_output, other.compute_output),
            cache_hit=op(self.cache_hit, other.cache_hit),
            cache_miss=op(self.cache_miss, other.cache_miss),
            batch_stats=tuple(batches),
        )

    def __add__(self, other: ModelStats) -> ModelStats:
        return self._combine(other, 1)

    def __sub__(self, earlier: ModelStats) -> ModelStats:
        """The delta between two snapshots (later - earlier)."""
        return self._combine(earlier, -1)

    def is_consistent(self) -> bool:
        """Executions and inferences agree with ``batch_stats`` (no execution half-recorded)."""
        if not self.batch_stats:
            return True
        executions = sum(b.execution_count for b in self.batch_stats)
        inferences = sum(b.execution_count * b.batch_size for b in self.batch_stats)
        return executions == self.execution_count and inferences == self.inference_count

    def went_down(self) -> bool:
        """True if any counter of this delta is negative: the model was reloaded meanwhile."""
        counters = [self.inference_count, self.execution_count]
        for stat in (
            self.success,
            self.fail,
            self.queue,
            self.compute_input,
            self.compute_infer,
            self.compute_output,
            self.cache_hit,
            self.cache_miss,
        ):
            counters += [stat.count, stat.ns]
        for b in self.batch_stats:
            counters += [b.compute_input.count, b.compute_infer.count, b.compute_output.count]
        return any(c < 0 for c in counters)


@dataclass(frozen=True)
class StatsSnapshot:
    """``/stats`` of the measured model and of the models it composes (an ensemble's steps, the
    models a BLS model calls), taken together at one window boundary."""

    model: ModelStats
    composing: Mapping[str, ModelStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One Prometheus sample scraped from the server's metrics endpoint."""

    timestamp: float
    """Unix time of the scrape, seconds."""
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class WindowResult:
    """One measurement window of a step (perf_analyzer calls it a trial)."""

    duration_s: float
    request_count: int
    inference_count: int
    error_count: int
    mean_latency_us: float

    @property
    def throughput(self) -> float:
        return self.inference_count / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class WorkerRow:
    """One worker's part of a step (``--workers``, ``--ray``): where it ran and what it did in
    the measured windows. The step's numbers are the exact merge of all of them."""

    worker: int
    node: str
    share: str
    """What it was given: ``"8 in flight"``, ``"1 send in 4, from #2"``."""
    requests: int
    errors: int
    send_lag_p99_us: float | None = None
    """Open loop: how late its sends left, 99th percentile."""
    clock_offset_us: float | None = None
    """``--ray``: its clock minus the coordinator's, measured before the step (None: same host)."""
    clock_uncertainty_us: float | None = None


def clock_too_uncertain(uncertainty_us: float, rate: float) -> bool:
    """An open-loop step's workers may send out of the schedule's order when their start
    instants are uncertain by more than half the mean gap between sends."""
    return rate > 0 and uncertainty_us > 0.5e6 / rate


@dataclass
class StepResult:
    """One load level, measured: the unit the engine emits and storage commits."""

    index: int
    concurrency: int
    started_at: datetime
    duration_s: float
    """Length of the windows the result is made of (the last 3, or all if fewer)."""
    request_count: int
    inference_count: int
    histogram: LatencyHistogram
    errors: dict[str, int] = field(default_factory=dict)
    stable: bool = True
    window_count: int = 0
    """Windows measured (``windows`` keeps those the step's numbers come from)."""
    windows: list[WindowResult] = field(default_factory=list)
    server_stats: ModelStats | None = None
    """The ``/stats`` delta over the measured windows; None if unavailable or reset."""
    server_stats_reset: bool = False
    """The server's counters went down during the step (model reloaded): delta discarded."""
    composing_stats: dict[str, ModelStats] = field(default_factory=dict)
    """An ensemble or BLS model: each composing model's ``/stats`` delta over the same windows
    (a model whose counters went down meanwhile is left out)."""
    metrics: list[MetricSample] = field(default_factory=list)
    request_rate: float | None = None
    """Open loop: the target rate (requests/s); None for closed-loop steps."""
    service_histogram: LatencyHistogram | None = None
    """Open loop: done - sent (``histogram`` holds done - intended)."""
    send_lag_histogram: LatencyHistogram | None = None
    """Open loop: sent - intended, the sender's own lateness."""
    sent_count: int = 0
    scheduled_count: int = 0
    """Open loop: sends the schedule had due during the measured windows."""
    refused_count: int = 0
    """Open loop: requests not sent because the in-flight cap was reached."""
    in_flight_at_end: int = 0
    validation: ValidationTally | None = None
    """``--validate``: the answers checked in the measured windows."""
    unanswered_slots: int = 0
    """Closed loop: the most slots that got no answer during a whole measured window. Above 0,
    the server held fewer requests in flight than the step's concurrency claims."""
    metrics_failed_scrapes: int | None = None
    """Scrapes of the metrics endpoint that failed during the step (None: no scraping)."""
    interrupted: str | None = None
    """Why the step was cut short (the server went away mid-step); None: it ran to its end."""
    stream: StreamTally | None = None
    """``--streaming``: time to first response, gaps between responses, responses per request
    (``histogram`` holds the time to the final response); None for unary steps."""
    cancelled_count: int = 0
    """``--cancel-after-*``: requests cancelled on purpose in the measured windows (neither in
    ``request_count`` nor in ``errors``)."""
    sequences: SequenceTally | None = None
    """A sequence model: latencies of start, middle and end requests apart, sequences ended."""
    traces: Sequence[Any] = ()
    """``--trace-rate``: the sampled requests' traces joined to the client's times
    (:class:`~loadgen.tracing.TraceSample`), children of ensembles and BLS models included."""
    untraced_throughput: float | None = None
    """``--trace-rate``: throughput of one more window of the same load with tracing off, measured
    right after the step's: what tracing costs."""
    workers: Sequence[WorkerRow] = ()
    """``--workers``/``--ray``: each worker's part (none for a step run in one process)."""
    warmup_windows: int = 0
    """``--detect-warmup``: the windows at the step's start found still warming up (not measured)."""
    intervals: Sequence[StepInterval] = ()
    """Each reported percentile's and the throughput's confidence interval, MLPerf's estimates."""

    @property
    def send_rate(self) -> float:
        """Open loop: requests actually sent per second."""
        return self.sent_count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def behind_schedule(self) -> bool:
        """Open loop: the sends missed the schedule by more than 2% (the client could not keep up).

        Compared with what the schedule had due in the measured windows, not with the nominal
        rate, so that a Poisson schedule's own variation is not taken for a slow client.
        """
        return self.request_rate is not None and (
            self.sent_count < 0.98 * self.scheduled_count or self.refused_count > 0
        )

    @property
    def throughput(self) -> float:
        """Inferences per second (a request of batch size B counts B)."""
        return self.inference_count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def latency_summary(self) -> dict[str, float]:
        """avg/std/min/max and the reported percentiles, microseconds."""
        h = self.histogram
        empty = h.count == 0
        summary = {
            "avg": h.mean_us,
            "std": h.std_us,
            "min": math.nan if empty else h.min_us,
            "max": math.nan if empty else h.max_us,
        }
        for p in REPORTED_PERCENTILES:
            summary[f"p{p:g}"] = h.percentile_us(p)
        return summary


@dataclass(frozen=True)
class RunInfo:
    """What a run records when it starts: the settings and what the server said."""

    settings: dict[str, Any]
    model: str
    model_version: str
    scenario: str
    server_url: str
    model_config: dict[str, Any]
    model_metadata: dict[str, Any]
    server_metadata: dict[str, Any]
    host: dict[str, Any]
    started_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    composing_models: tuple[str, ...] = ()
    """An ensemble's or BLS model's composing models, whose ``/stats`` each step keeps too."""
