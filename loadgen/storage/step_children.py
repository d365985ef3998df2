"""The rows a step has several of (composing models' stats, traces, intervals) and their mapping
to results: the counterpart of :mod:`loadgen.storage.records` for the child tables."""

from __future__ import annotations

import dataclasses
from typing import Any

from loadgen.intervals import StepInterval
from loadgen.results import BatchStat, DurationStat, ModelStats
from loadgen.storage.models import ComposingStatRow, StepIntervalRow, TraceSampleRow
from loadgen.storage.records import nan_to_none, none_to_nan
from loadgen.tracing import TraceSample

_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)
"""``ModelStats``' ``{count, ns}`` fields, each two columns of ``composing_stats``."""


def composing_row(step_id: int, model: str, stats: ModelStats) -> dict[str, Any]:
    """A composing model's step delta as a ``composing_stats`` row."""
    row: dict[str, Any] = {
        "step_id": step_id,
        "model": model,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "batch_stats": [
            {
                "batch_size": b.batch_size,
                "compute_input": [b.compute_input.count, b.compute_input.ns],
                "compute_infer": [b.compute_infer.count, b.compute_infer.ns],
                "compute_output": [b.compute_output.count, b.compute_output.ns],
            }
            for b in stats.batch_stats
        ],
    }
    for name in _DURATIONS:
        duration: DurationStat = getattr(stats, name)
        row[f"{name}_count"], row[f"{name}_ns"] = duration.count, duration.ns
    return row


def composing_stats(row: ComposingStatRow) -> ModelStats:
    """A ``composing_stats`` row read back."""
    durations = {
        name: DurationStat(getattr(row, f"{name}_count"), getattr(row, f"{name}_ns")) for name in _DURATIONS
    }
    batches = tuple(
        BatchStat(
            int(b["batch_size"]),
            DurationStat(*b["compute_input"]),
            DurationStat(*b["compute_infer"]),
            DurationStat(*b["compute_output"]),
        )
        for b in row.batch_stats
    )
    return ModelStats(
        inference_count=row.inference_count,
        execution_count=row.execution_count,
        batch_stats=batches,
        **durations,
    )


_TRACE_TIMES = (
    "client_us",
    "server_us",
    "queue_us",
    "compute_us",
    "compute_input_us",
    "compute_infer_us",
    "compute_output_us",
    "outside_us",
)


def trace_row(step_id: int, sample: TraceSample) -> dict[str, Any]:
    """A joined trace as a ``trace_samples`` row (NaN times as NULL)."""
    row: dict[str, Any] = {
        "step_id": step_id,
        "trace_id": sample.trace_id,
        "parent_id": sample.parent_id,
        "model": sample.model,
        "request_id": sample.request_id,
    }
    row.update({name: nan_to_none(getattr(sample, name)) for name in _TRACE_TIMES})
    return row


def trace_sample(row: TraceSampleRow) -> TraceSample:
    return TraceSample(
        trace_id=row.trace_id,
        parent_id=row.parent_id,
        model=row.model,
        request_id=row.request_id,
        **{name: none_to_nan(getattr(row, name)) for name in _TRACE_TIMES},
    )


def interval_row(step_id: int, interval: StepInterval) -> dict[str, Any]:
    return {**dataclasses.asdict(interval), "step_id": step_id, "estimate": nan_to_none(interval.estimate)}


def step_interval(row: StepIntervalRow) -> StepInterval:
    names = [f.name for f in dataclasses.fields(StepInterval)]
    found = {name: getattr(row, name) for name in names}
    return StepInterval(**{**found, "estimate": none_to_nan(found["estimate"])})
