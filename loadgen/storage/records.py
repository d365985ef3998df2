"""Stored runs as plain data: the records reads return, and the mapping between results and ORM rows.

Kept apart from ``RunStore`` (sessions and queries) so what a run looks like once stored,
frozen dataclasses detached from any session with NaN kept as NULL, is defined in one place.

Names in the database and in code are the same, with these exceptions (no migration renames
a column; the code took the word the rest of loadgen uses):

==========================  ===============================  ==========================================
database                    code                             why
==========================  ===============================  ==========================================
``steps.trials``            ``StepRecord.window_count``      perf_analyzer's word; CSV column ``Trials``
``runs.settings`` JSON      ``measurement.max_windows``      older runs say ``max_trials``
``steps.lat_pNN_us``        ``latency_summary()`` keys       one column per reported percentile
==========================  ===============================  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loadgen.histogram import LatencyHistogram
from loadgen.results import RunStatus, StepResult, WindowResult
from loadgen.storage.models import RunRow, StepRow
from loadgen.tallies import SequenceTally, StreamTally


@dataclass(frozen=True)
class RunRecord:
    id: int
    model: str
    model_version: str
    scenario: str
    status: RunStatus
    error: str | None
    server_url: str
    started_at: datetime
    ended_at: datetime | None
    settings: dict[str, Any]
    model_config: dict[str, Any]
    model_metadata: dict[str, Any]
    server_metadata: dict[str, Any]
    host: dict[str, Any]
    labels: dict[str, str]
    step_count: int


@dataclass(frozen=True)
class StepRecord:
    """A stored step. Latencies are microseconds, None where undefined (no successful request)."""

    id: int
    run_id: int
    step_index: int
    concurrency: int
    request_rate: float | None
    started_at: datetime
    duration_s: float
    request_count: int
    inference_count: int
    throughput: float
    error_count: int
    errors: dict[str, int]
    lat_avg_us: float | None
    lat_std_us: float | None
    lat_min_us: float | None
    lat_max_us: float | None
    lat_p50_us: float | None
    lat_p90_us: float | None
    lat_p95_us: float | None
    lat_p99_us: float | None
    histogram_bytes: bytes
    stable: bool
    window_count: int
    """Windows measured, stable or not (column ``trials``)."""
    windows: tuple[WindowResult, ...]
    server_inference_count: int | None
    server_execution_count: int | None
    server_success_count: int | None
    server_fail_count: int | None
    server_queue_us: float | None
    server_compute_input_us: float | None
    server_compute_infer_us: float | None
    server_compute_output_us: float | None
    server_request_us: float | None
    server_stats_reset: bool
    send_rate: float | None = None
    sent_count: int | None = None
    scheduled_count: int | None = None
    refused_count: int | None = None
    in_flight_at_end: int | None = None
    behind_schedule: bool | None = None
    service_p50_us: float | None = None
    service_p99_us: float | None = None
    send_lag_p50_us: float | None = None
    send_lag_p99_us: float | None = None
    send_lag_max_us: float | None = None
    service_histogram_bytes: bytes | None = None
    send_lag_histogram_bytes: bytes | None = None
    validated_count: int | None = None
    """``--validate`` only: answers checked, and of those outside the tolerance / swapped."""
    mismatch_count: int | None = None
    swapped_count: int | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    validation: dict[str, Any] | None = None
    unanswered_slots: int | None = None
    """Closed loop: slots that got no answer during a whole measured window (the server held
    fewer requests than the concurrency); None for steps stored before schema 0004."""
    metrics_failed_scrapes: int | None = None
    """Metric scrapes that failed during the step (a gap in its samples); None: none attempted."""
    interrupted: str | None = None
    """Why the step was cut short (``--retry-unavailable``: the server went away); None: it ran."""
    response_count: int | None = None
    token_count: int | None = None
    cancelled_count: int | None = None
    """``--cancel-after-*`` only: requests cancelled on purpose, counted apart."""
    """``--streaming`` only (None otherwise): responses that carried outputs, and their timing."""
    first_response_p50_us: float | None = None
    first_response_p99_us: float | None = None
    inter_response_p50_us: float | None = None
    inter_response_p99_us: float | None = None
    responses_per_request: float | None = None
    request_output_rate_p50: float | None = None
    first_response_histogram_bytes: bytes | None = None
    inter_response_histogram_bytes: bytes | None = None
    responses_histogram_bytes: bytes | None = None
    spacing_histogram_bytes: bytes | None = None
    untraced_throughput: float | None = None
    """``--trace-rate`` only (0009): one more window's throughput with tracing off."""
    warmup_windows: int | None = None
    """``--detect-warmup`` (0011): the windows at the step's start found still warming up."""
    sequence_count: int | None = None
    """A sequence model only (None otherwise): sequences ended, latencies by place in them."""
    sequence_start_p50_us: float | None = None
    sequence_start_p99_us: float | None = None
    sequence_middle_p50_us: float | None = None
    sequence_middle_p99_us: float | None = None
    sequence_end_p50_us: float | None = None
    sequence_end_p99_us: float | None = None
    sequence_start_histogram_bytes: bytes | None = None
    sequence_middle_histogram_bytes: bytes | None = None
    sequence_end_histogram_bytes: bytes | None = None

    def sequences(self) -> SequenceTally | None:
        """A sequence model's step measures (decoded on each call); None for other models."""
        if self.sequence_count is None or self.sequence_start_histogram_bytes is None:
            return None
        return SequenceTally(
            start=LatencyHistogram.decode(self.sequence_start_histogram_bytes),
            middle=LatencyHistogram.decode(self.sequence_middle_histogram_bytes or b""),
            end=LatencyHistogram.decode(self.sequence_end_histogram_bytes or b""),
            ended=self.sequence_count,
        )

    def stream(self) -> StreamTally | None:
        """A streamed step's measures (decoded on each call); None for a unary step."""
        if self.response_count is None or self.first_response_histogram_bytes is None:
            return None
        return StreamTally(
            first=LatencyHistogram.decode(self.first_response_histogram_bytes),
            gaps=LatencyHistogram.decode(self.inter_response_histogram_bytes or b""),
            counts=LatencyHistogram.decode(self.responses_histogram_bytes or b""),
            spacing=LatencyHistogram.decode(self.spacing_histogram_bytes)
            if self.spacing_histogram_bytes
            else LatencyHistogram(),
            responses=self.response_count,
            tokens=self.token_count if self.token_count is not None else self.response_count,
        )

    def histogram(self) -> LatencyHistogram:
        """The step's full latency distribution (decoded on each call): for open-loop steps,
        response time measured from the intended send."""
        return LatencyHistogram.decode(self.histogram_bytes)

    def service_histogram(self) -> LatencyHistogram | None:
        """Open loop: service time (from the actual send); None for closed-loop steps."""
        data = self.service_histogram_bytes
        return LatencyHistogram.decode(data) if data is not None else None

    def send_lag_histogram(self) -> LatencyHistogram | None:
        data = self.send_lag_histogram_bytes
        return LatencyHistogram.decode(data) if data is not None else None


@dataclass(frozen=True)
class MetricSampleRecord:
    step_id: int
    timestamp: float
    """Unix time of the scrape, seconds."""
    name: str
    labels: dict[str, str]
    value: float


_LATENCY_KEYS = ("avg", "std", "min", "max", "p50", "p90", "p95", "p99")
_STREAM_BLOBS = (
    "first_response_histogram",
    "inter_response_histogram",
    "responses_histogram",
    "spacing_histogram",
)
_SEQUENCE_PLACES = ("start", "middle", "end")
_BLOBS = {
    "histogram_bytes",
    "service_histogram_bytes",
    "send_lag_histogram_bytes",
    "windows",
    *(f"{name}_bytes" for name in _STREAM_BLOBS),
    *(f"sequence_{place}_histogram_bytes" for place in _SEQUENCE_PLACES),
}
_STEP_FIELDS = tuple(f for f in StepRecord.__dataclass_fields__ if f not in _BLOBS)


def nan_to_none(value: float) -> float | None:
    """NaN as NULL: neither JSON nor every database keeps a NaN."""
    return None if math.isnan(value) else value


def none_to_nan(value: float | None) -> float:
    """The inverse of :func:`nan_to_none`, on reading."""
    return math.nan if value is None else value


def step_row(run_id: int, step: StepResult) -> StepRow:
    """A measured step as a new row of run ``run_id`` (batch stats and metric samples apart)."""
    latency = step.latency_summary()
    row = StepRow(
        run_id=run_id,
        step_index=step.index,
        concurrency=step.concurrency,
        request_rate=step.request_rate,
        started_at=step.started_at,
        duration_s=step.duration_s,
        request_count=step.request_count,
        inference_count=step.inference_count,
        throughput=step.throughput,
        error_count=step.error_count,
        errors=dict(step.errors),
        histogram=step.histogram.encode(),
        stable=step.stable,
        window_count=step.window_count,
        windows=[
            {
                "duration_s": w.duration_s,
                "request_count": w.request_count,
                "inference_count": w.inference_count,
                "error_count": w.error_count,
                "mean_latency_us": nan_to_none(w.mean_latency_us),  # NaN is not JSON
            }
            for w in step.windows
        ],
        server_stats_reset=step.server_stats_reset,
        **{f"lat_{key}_us": nan_to_none(latency[key]) for key in _LATENCY_KEYS},
    )
    stats = step.server_stats
    if stats is not None:
        row.server_inference_count = stats.inference_count
        row.server_execution_count = stats.execution_count
        row.server_success_count = stats.success.count
        row.server_fail_count = stats.fail.count
        row.server_queue_us = nan_to_none(stats.queue.avg_us)
        row.server_compute_input_us = nan_to_none(stats.compute_input.avg_us)
        row.server_compute_infer_us = nan_to_none(stats.compute_infer.avg_us)
        row.server_compute_output_us = nan_to_none(stats.compute_output.avg_us)
        row.server_request_us = nan_to_none(stats.success.avg_us)
    if step.request_rate is not None and step.service_histogram is not None and step.send_lag_histogram:
        service, lag = step.service_histogram, step.send_lag_histogram
        row.send_rate = step.send_rate
        row.sent_count = step.sent_count
        row.scheduled_count = step.scheduled_count
        row.refused_count = step.refused_count
        row.in_flight_at_end = step.in_flight_at_end
        row.behind_schedule = step.behind_schedule
        row.service_p50_us = nan_to_none(service.percentile_us(50))
        row.service_p99_us = nan_to_none(service.percentile_us(99))
        row.send_lag_p50_us = nan_to_none(lag.percentile_us(50))
        row.send_lag_p99_us = nan_to_none(lag.percentile_us(99))
        row.send_lag_max_us = nan_to_none(lag.max_us) if lag.count else None
        row.service_histogram = service.encode()
        row.send_lag_histogram = lag.encode()
    if step.request_rate is None:
        row.unanswered_slots = step.unanswered_slots
    row.metrics_failed_scrapes = step.metrics_failed_scrapes
    row.interrupted = step.interrupted
    if step.stream is not None or step.cancelled_count:
        row.cancelled_count = step.cancelled_count
    if step.stream is not None:
        stream = step.stream
        requests = stream.counts.count
        row.response_count = stream.responses
        row.token_count = stream.tokens
        row.responses_per_request = stream.responses / requests if requests else None
        row.first_response_p50_us = nan_to_none(stream.first.percentile_us(50))
        row.first_response_p99_us = nan_to_none(stream.first.percentile_us(99))
        row.inter_response_p50_us = nan_to_none(stream.gaps.percentile_us(50))
        row.inter_response_p99_us = nan_to_none(stream.gaps.percentile_us(99))
        row.first_response_histogram = stream.first.encode()
        row.inter_response_histogram = stream.gaps.encode()
        row.responses_histogram = stream.counts.encode()
        row.spacing_histogram = stream.spacing.encode()
        spacing_p50_us = stream.spacing.percentile_us(50) if stream.spacing.count else math.nan
        row.request_output_rate_p50 = nan_to_none(1e6 / spacing_p50_us if spacing_p50_us > 0 else math.nan)
    if step.untraced_throughput is not None:
        row.untraced_throughput = step.untraced_throughput
    row.warmup_windows = step.warmup_windows
    if step.sequences is not None:
        row.sequence_count = step.sequences.ended
        for place in _SEQUENCE_PLACES:
            histogram: LatencyHistogram = getattr(step.sequences, place)
            setattr(row, f"sequence_{place}_p50_us", nan_to_none(histogram.percentile_us(50)))
            setattr(row, f"sequence_{place}_p99_us", nan_to_none(histogram.percentile_us(99)))
            setattr(row, f"sequence_{place}_histogram", histogram.encode())
    if step.validation is not None:
        tally = step.validation
        row.validated_count = tally.checked
        row.mismatch_count = tally.mismatched
        row.swapped_count = tally.swapped
        row.max_abs_diff = tally.max_abs_diff
        row.max_rel_diff = tally.max_rel_diff
        row.validation = tally.to_dict()
    return row


def step_record(row: StepRow) -> StepRecord:
    """A stored step as a record, detached from its session."""
    windows = tuple(
        WindowResult(**{**w, "mean_latency_us": none_to_nan(w["mean_latency_us"])}) for w in row.windows
    )
    fields = {name: getattr(row, name) for name in _STEP_FIELDS}
    return StepRecord(
        **fields,
        histogram_bytes=row.histogram,
        service_histogram_bytes=row.service_histogram,
        send_lag_histogram_bytes=row.send_lag_histogram,
        windows=windows,
        **{f"{name}_bytes": getattr(row, name) for name in _STREAM_BLOBS},
        **{
            f"sequence_{p}_histogram_bytes": getattr(row, f"sequence_{p}_histogram") for p in _SEQUENCE_PLACES
        },
    )


def run_record(row: RunRow, step_count: int) -> RunRecord:
    """A stored run as a record, detached from its session."""
    return RunRecord(
        id=row.id,
        model=row.model,
        model_version=row.model_version,
        scenario=row.scenario,
        status=RunStatus(row.status),
        error=row.error,
        server_url=row.server_url,
        started_at=row.started_at,
        ended_at=row.ended_at,
        settings=row.settings,
        model_config=row.model_config,
        model_metadata=row.model_metadata,
        server_metadata=row.server_metadata,
        host=row.host,
        labels=row.labels,
        step_count=step_count,
    )
