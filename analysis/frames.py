"""Stored runs as pandas DataFrames: one row per step, for tables, plots and notebooks.

Long-form frames (batch statistics, metric samples) carry ``step_index`` and
``concurrency`` so that plots and findings can group by step without joins.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loadgen.histogram import LatencyHistogram
from loadgen.intervals import StepInterval
from loadgen.results import DurationStat, ModelStats, WorkerRow
from loadgen.storage import RunRecord, RunStore, StepRecord
from loadgen.tallies import StreamTally
from loadgen.tracing import TraceSample

_SKIP = {
    "histogram_bytes",
    "service_histogram_bytes",
    "send_lag_histogram_bytes",
    "first_response_histogram_bytes",
    "inter_response_histogram_bytes",
    "responses_histogram_bytes",
    "sequence_start_histogram_bytes",
    "sequence_middle_histogram_bytes",
    "sequence_end_histogram_bytes",
    "spacing_histogram_bytes",
    "windows",
    "errors",
}

BATCH_COLUMNS = (
    "step_index",
    "concurrency",
    "batch_size",
    "execution_count",
    "compute_input_count",
    "compute_input_ns",
    "compute_infer_count",
    "compute_infer_ns",
    "compute_output_count",
    "compute_output_ns",
)
METRIC_COLUMNS = ("step_index", "concurrency", "timestamp", "name", "labels", "value")
COMPONENTS = ("client", "queue", "compute_input", "compute_infer", "compute_output")
"""Parts of a request's mean latency, in the order they are stacked (client first)."""


COMPOSING_COLUMNS = (
    "step_index",
    "concurrency",
    "request_rate",
    "model",
    "inference_count",
    "execution_count",
    "success_count",
    "server_ns",
    "queue_us",
    "compute_input_us",
    "compute_infer_us",
    "compute_output_us",
    "compute_us",
    "request_us",
    "share",
)
"""One row per (step, composing model); ``*_us`` are per-request averages (``compute_us`` the three
compute parts'), ``server_ns`` the total time in the model, ``share`` its part of all composing
models' time at that step (0..1)."""


def _avg_us(stat: DurationStat) -> float:
    return stat.ns / stat.count / 1000.0 if stat.count else float("nan")


def composing_frame(
    steps: Sequence[StepRecord], stats: Mapping[int, Mapping[str, ModelStats]]
) -> pd.DataFrame:
    """``stats`` (step id -> model -> delta, as ``RunStore.composing_stats``) as one long frame."""
    rows = []
    for step in steps:
        models = stats.get(step.id, {})
        total = sum(s.success.ns for s in models.values())
        for name, s in models.items():
            compute = (_avg_us(s.compute_input), _avg_us(s.compute_infer), _avg_us(s.compute_output))
            rows.append(
                (
                    step.step_index,
                    step.concurrency,
                    step.request_rate,
                    name,
                    s.inference_count,
                    s.execution_count,
                    s.success.count,
                    s.success.ns,
                    _avg_us(s.queue),
                    *compute,
                    sum(compute),
                    _avg_us(s.success),
                    s.success.ns / total if total > 0 else float("nan"),
                )
            )
    return pd.DataFrame(rows, columns=list(COMPOSING_COLUMNS)).astype(
        {"request_rate": "float64", "share": "float64", "request_us": "float64", "queue_us": "float64"}
    )


TRACE_COLUMNS = (
    "step_index",
    "concurrency",
    "request_rate",
    *(f.name for f in dataclasses.fields(TraceSample)),
)


def traces_frame(steps: Sequence[StepRecord], samples: Mapping[int, Sequence[TraceSample]]) -> pd.DataFrame:
    """``--trace-rate``: one row per joined trace (``RunStore.trace_samples``), with its step;
    ``parent_id`` NaN for the requests loadgen sent, set for those an ensemble or BLS model made."""
    return _with_steps(steps, samples, TRACE_COLUMNS).astype(
        {"parent_id": "float64", "request_rate": "float64"}
    )


def _with_steps(
    steps: Sequence[StepRecord], rows: Mapping[int, Sequence[Any]], columns: Sequence[str]
) -> pd.DataFrame:
    """Each step's dataclass rows (step id -> rows) as one frame, each row after its step's load."""
    data = [
        (step.step_index, step.concurrency, step.request_rate, *dataclasses.astuple(row))
        for step in steps
        for row in rows.get(step.id, ())
    ]
    return pd.DataFrame(data, columns=list(columns))


WORKER_COLUMNS = (
    "step_index",
    "concurrency",
    "request_rate",
    *(f.name for f in dataclasses.fields(WorkerRow)),
)


def workers_frame(steps: Sequence[StepRecord], rows: Mapping[int, Sequence[WorkerRow]]) -> pd.DataFrame:
    """``rows`` (step id -> its workers, as ``RunStore.step_workers``) as one frame, with each step."""
    frame = _with_steps(steps, rows, WORKER_COLUMNS)
    return frame.astype({"request_rate": "float64", "clock_uncertainty_us": "float64"})


def load_level(step: Mapping[Hashable, Any]) -> tuple[str, float]:
    """A step's load as (label, value): ``c=4`` for concurrency, ``50 req/s`` for an open-loop rate."""
    rate = step.get("request_rate")
    if rate is not None and not math.isnan(rate):
        return f"{rate:g} req/s", float(rate)
    return f"c={int(step['concurrency'])}", float(step["concurrency"])


def steps_frame(steps: list[StepRecord]) -> pd.DataFrame:
    """One row per step with every stored column (latencies in microseconds)."""
    rows = []
    for step in steps:
        row = {k: v for k, v in dataclasses.asdict(step).items() if k not in _SKIP}
        row["errors"] = dict(step.errors)
        rows.append(row)
    columns = [f.name for f in dataclasses.fields(StepRecord) if f.name not in _SKIP] + ["errors"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(
        {c: "float64" for c in columns if c.startswith(("lat_", "server_")) and c.endswith("_us")}
    )


def load_run(db_url: str, run_id: int) -> tuple[RunRecord, pd.DataFrame]:
    """A stored run and its steps frame."""
    with RunStore(db_url) as store:
        run = store.get_run(run_id)
        return run, steps_frame(store.steps(run_id))


def _batch_frame(store: RunStore, steps: list[StepRecord]) -> pd.DataFrame:
    rows = [
        (
            step.step_index,
            step.concurrency,
            b.batch_size,
            b.execution_count,
            b.compute_input.count,
            b.compute_input.ns,
            b.compute_infer.count,
            b.compute_infer.ns,
            b.compute_output.count,
            b.compute_output.ns,
        )
        for step in steps
        for b in store.batch_stats(step.id)
    ]
    return pd.DataFrame(rows, columns=list(BATCH_COLUMNS)).astype("int64")


def _label_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _metrics_frame(store: RunStore, run_id: int, steps: list[StepRecord]) -> pd.DataFrame:
    by_id = {step.id: step for step in steps}
    samples = store.metric_samples(run_id=run_id)
    rows: list[dict[str, object]] = []
    for s in samples:
        step = by_id[s.step_id]
        row: dict[str, object] = {f"label_{k}": v for k, v in s.labels.items()}
        row.update(
            step_index=step.step_index,
            concurrency=step.concurrency,
            timestamp=s.timestamp,
            name=s.name,
            labels=_label_string(s.labels),
            value=s.value,
        )
        rows.append(row)
    label_columns = sorted({key for row in rows for key in row if key.startswith("label_")})
    frame = pd.DataFrame(rows, columns=[*METRIC_COLUMNS, *label_columns])
    return frame.astype(
        {"step_index": "int64", "concurrency": "int64", "timestamp": "float64", "value": "float64"}
    )


def batch_stats_frame(store: RunStore, run_id: int) -> pd.DataFrame:
    """One row per (step, executed batch size): the server's ``batch_stats`` delta of the step.

    ``compute_*_ns`` are total nanoseconds over ``compute_*_count`` executions.
    """
    return _batch_frame(store, store.steps(run_id))


def metrics_frame(store: RunStore, run_id: int) -> pd.DataFrame:
    """One row per scraped Prometheus sample, ordered by step then time.

    ``labels`` is the sample's label set as ``k=v,...`` (sorted keys); each label key
    also has its own ``label_<key>`` column (``label_model``, ``label_gpu_uuid``...),
    NaN where a sample lacks it.
    """
    return _metrics_frame(store, run_id, store.steps(run_id))


def latency_components(steps: pd.DataFrame) -> pd.DataFrame:
    """Mean latency split into client-side time, server queue and compute input/infer/output (us).

    Client-side time is the mean latency minus the server's parts, clamped at 0 (perf_analyzer's
    "Network+Server Send/Recv" and the client's own overhead). Rows without server statistics
    are all NaN: their split is unknown. Indexed like ``steps``.
    """
    server = {name: steps[f"server_{name}_us"] for name in COMPONENTS[1:]}
    known = pd.concat(server.values(), axis=1).notna().all(axis=1) & steps["lat_avg_us"].notna()
    total = sum(server.values())
    parts = {"client": np.maximum(steps["lat_avg_us"] - total, 0.0), **server}
    frame = pd.DataFrame(parts, index=steps.index, columns=list(COMPONENTS)).astype("float64")
    return frame.where(known)


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything a report needs about one stored run, read once."""

    run: RunRecord
    steps: pd.DataFrame
    """:func:`steps_frame` of the run."""
    batches: pd.DataFrame
    """:func:`batch_stats_frame` of the run."""
    metrics: pd.DataFrame
    """:func:`metrics_frame` of the run."""
    histograms: Mapping[int, LatencyHistogram]
    """Each step's full latency histogram, by step index."""
    streams: Mapping[int, StreamTally] = field(default_factory=dict)
    """``--streaming``: each step's decoded stream measures, by step index (none for unary runs)."""
    composing: pd.DataFrame = field(default_factory=pd.DataFrame)
    """An ensemble or BLS model: :func:`composing_frame` (else empty)."""
    traces: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``--trace-rate``: :func:`traces_frame` (else empty)."""
    workers: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``--workers``/``--ray``: :func:`workers_frame` (else empty)."""
    intervals: Mapping[int, Sequence[StepInterval]] = field(default_factory=dict)
    """Each step's stored confidence intervals, by step index (none for runs stored before them)."""


def read_run_data(store: RunStore, run_id: int) -> RunData:
    """:class:`RunData` from an open store (several runs, one connection)."""
    run = store.get_run(run_id)
    steps = store.steps(run_id)
    by_id = {step.id: step.step_index for step in steps}
    return RunData(
        run=run,
        steps=steps_frame(steps),
        batches=_batch_frame(store, steps),
        metrics=_metrics_frame(store, run_id, steps),
        histograms={step.step_index: step.histogram() for step in steps},
        streams={step.step_index: tally for step in steps if (tally := step.stream()) is not None},
        composing=composing_frame(steps, store.composing_stats(run_id)),
        traces=traces_frame(steps, store.trace_samples(run_id)),
        workers=workers_frame(steps, store.step_workers(run_id)),
        intervals={by_id[step_id]: rows for step_id, rows in store.step_intervals(run_id).items()},
    )


def load_run_data(db_url: str, run_id: int) -> RunData:
    """:class:`RunData` of one stored run (RunNotFound if there is none)."""
    with RunStore(db_url) as store:
        return read_run_data(store, run_id)
