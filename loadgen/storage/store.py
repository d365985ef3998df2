"""RunStore: writes runs step by step as they are measured, and reads them back as plain data.

Each step is committed on its own, so an interrupted run keeps every step it
finished. Reads return frozen dataclasses detached from any session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from loadgen.errors import RunNotFound
from loadgen.histogram import LatencyHistogram
from loadgen.results import BatchStat, DurationStat, RunInfo, RunStatus, StepResult, WindowResult
from loadgen.storage.migrate import ensure_schema
from loadgen.storage.models import (
    DEFAULT_DB_URL,
    BatchStatRow,
    MetricSampleRow,
    RunRow,
    StepRow,
    make_engine,
)


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
    trials: int
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
_BLOBS = {"histogram_bytes", "service_histogram_bytes", "send_lag_histogram_bytes", "windows"}
_STEP_FIELDS = tuple(f for f in StepRecord.__dataclass_fields__ if f not in _BLOBS)


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _step_row(run_id: int, step: StepResult) -> StepRow:
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
        trials=step.trials,
        windows=[
            {
                "duration_s": w.duration_s,
                "request_count": w.request_count,
                "inference_count": w.inference_count,
                "error_count": w.error_count,
                "mean_latency_us": _nan_to_none(w.mean_latency_us),  # NaN is not JSON
            }
            for w in step.windows
        ],
        server_stats_reset=step.server_stats_reset,
        **{f"lat_{key}_us": _nan_to_none(latency[key]) for key in _LATENCY_KEYS},
    )
    stats = step.server_stats
    if stats is not None:
        row.server_inference_count = stats.inference_count
        row.server_execution_count = stats.execution_count
        row.server_success_count = stats.success.count
        row.server_fail_count = stats.fail.count
        row.server_queue_us = stats.queue.avg_us
        row.server_compute_input_us = stats.compute_input.avg_us
        row.server_compute_infer_us = stats.compute_infer.avg_us
        row.server_compute_output_us = stats.compute_output.avg_us
        row.server_request_us = stats.success.avg_us
    if step.request_rate is not None and step.service_histogram is not None and step.send_lag_histogram:
        service, lag = step.service_histogram, step.send_lag_histogram
        row.send_rate = step.send_rate
        row.sent_count = step.sent_count
        row.scheduled_count = step.scheduled_count
        row.refused_count = step.refused_count
        row.in_flight_at_end = step.in_flight_at_end
        row.behind_schedule = step.behind_schedule
        row.service_p50_us = _nan_to_none(service.percentile_us(50))
        row.service_p99_us = _nan_to_none(service.percentile_us(99))
        row.send_lag_p50_us = _nan_to_none(lag.percentile_us(50))
        row.send_lag_p99_us = _nan_to_none(lag.percentile_us(99))
        row.send_lag_max_us = _nan_to_none(lag.max_us) if lag.count else None
        row.service_histogram = service.encode()
        row.send_lag_histogram = lag.encode()
    if step.request_rate is None:
        row.unanswered_slots = step.unanswered_slots
    if step.validation is not None:
        tally = step.validation
        row.validated_count = tally.checked
        row.mismatch_count = tally.mismatched
        row.swapped_count = tally.swapped
        row.max_abs_diff = tally.max_abs_diff
        row.max_rel_diff = tally.max_rel_diff
        row.validation = tally.to_dict()
    return row


def _step_record(row: StepRow) -> StepRecord:
    windows = tuple(
        WindowResult(**{**w, "mean_latency_us": _none_to_nan(w["mean_latency_us"])}) for w in row.windows
    )
    fields = {name: getattr(row, name) for name in _STEP_FIELDS}
    return StepRecord(
        **fields,
        histogram_bytes=row.histogram,
        service_histogram_bytes=row.service_histogram,
        send_lag_histogram_bytes=row.send_lag_histogram,
        windows=windows,
    )


def _run_record(row: RunRow, step_count: int) -> RunRecord:
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


class RunStore:
    """A loadgen database: any SQLAlchemy URL, SQLite by default.

    Opening it checks the schema revision. An empty database, or one an older
    loadgen wrote, is upgraded when ``auto_upgrade`` (logged); otherwise, or when
    the database is not loadgen's or is newer, :class:`SchemaError` is raised.
    """

    def __init__(self, url: str = DEFAULT_DB_URL, *, auto_upgrade: bool = True) -> None:
        self.url = url
        self._engine = make_engine(url)
        try:
            with self._engine.connect() as conn:
                ensure_schema(conn, auto_upgrade=auto_upgrade)
        except BaseException:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def _not_found(self, run_id: int) -> RunNotFound:
        return RunNotFound(f"no run {run_id} in {self._engine.url.render_as_string(hide_password=True)}")

    def _run_row(self, session: Session, run_id: int) -> RunRow:
        row = session.get(RunRow, run_id)
        if row is None:
            raise self._not_found(run_id)
        return row

    # -- writing ---------------------------------------------------------------------------------
    def create_run(self, info: RunInfo) -> int:
        row = RunRow(
            model=info.model,
            model_version=info.model_version,
            scenario=info.scenario,
            status=RunStatus.RUNNING.value,
            server_url=info.server_url,
            started_at=info.started_at,
            settings=info.settings,
            model_config=info.model_config,
            model_metadata=info.model_metadata,
            server_metadata=info.server_metadata,
            host=info.host,
            labels=info.labels,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id

    def add_step(self, run_id: int, step: StepResult) -> int:
        """Commit one step with its batch stats and metric samples; returns the step id."""
        row = _step_row(run_id, step)
        with self._sessions.begin() as session:
            self._run_row(session, run_id)
            session.add(row)
            session.flush()
            stats = step.server_stats
            if stats is not None and stats.batch_stats:
                session.execute(
                    insert(BatchStatRow),
                    [
                        {
                            "step_id": row.id,
                            "batch_size": b.batch_size,
                            "execution_count": b.execution_count,
                            "compute_input_count": b.compute_input.count,
                            "compute_input_ns": b.compute_input.ns,
                            "compute_infer_count": b.compute_infer.count,
                            "compute_infer_ns": b.compute_infer.ns,
                            "compute_output_count": b.compute_output.count,
                            "compute_output_ns": b.compute_output.ns,
                        }
                        for b in stats.batch_stats
                    ],
                )
            if step.metrics:
                session.execute(
                    insert(MetricSampleRow),
                    [
                        {
                            "step_id": row.id,
                            "ts": m.timestamp,
                            "name": m.name,
                            "labels": m.labels,
                            "value": _nan_to_none(m.value),
                        }
                        for m in step.metrics
                    ],
                )
            return row.id

    def finish_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        if status is RunStatus.RUNNING:
            raise ValueError("a run cannot finish as running")
        with self._sessions.begin() as session:
            row = self._run_row(session, run_id)
            row.status = RunStatus(status).value
            row.error = error
            row.ended_at = datetime.now(UTC)

    def delete_run(self, run_id: int) -> None:
        """Delete a run; its steps, batch stats and samples go with it (ON DELETE CASCADE)."""
        with self._sessions.begin() as session:
            self._run_row(session, run_id)
            session.execute(delete(RunRow).where(RunRow.id == run_id))

    # -- reading ---------------------------------------------------------------------------------
    def _runs(self, session: Session, *where: Any, limit: int | None = None) -> list[RunRecord]:
        step_count = select(func.count(StepRow.id)).where(StepRow.run_id == RunRow.id).scalar_subquery()
        query = (
            select(RunRow, step_count)
            .where(*where)
            .order_by(RunRow.started_at.desc(), RunRow.id.desc())
            .limit(limit)
        )
        return [_run_record(row, count) for row, count in session.execute(query)]

    def list_runs(self, model: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        where = [] if model is None else [RunRow.model == model]
        with self._sessions() as session:
            return self._runs(session, *where, limit=limit)

    def get_run(self, run_id: int) -> RunRecord:
        with self._sessions() as session:
            runs = self._runs(session, RunRow.id == run_id)
        if not runs:
            raise self._not_found(run_id)
        return runs[0]

    def steps(self, run_id: int) -> list[StepRecord]:
        """The run's steps by step index (empty for a run without steps; RunNotFound for no run)."""
        with self._sessions() as session:
            self._run_row(session, run_id)
            query = select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.step_index)
            return [_step_record(row) for row in session.scalars(query)]

    def step_histogram(self, step_id: int) -> LatencyHistogram:
        with self._sessions() as session:
            data = session.scalar(select(StepRow.histogram).where(StepRow.id == step_id))
        if data is None:
            raise RunNotFound(f"no step {step_id} in {self._engine.url.render_as_string(hide_password=True)}")
        return LatencyHistogram.decode(data)

    def batch_stats(self, step_id: int) -> list[BatchStat]:
        """The step's server batch statistics, by batch size."""
        query = select(BatchStatRow).where(BatchStatRow.step_id == step_id).order_by(BatchStatRow.batch_size)
        with self._sessions() as session:
            return [
                BatchStat(
                    r.batch_size,
                    DurationStat(r.compute_input_count, r.compute_input_ns),
                    DurationStat(r.compute_infer_count, r.compute_infer_ns),
                    DurationStat(r.compute_output_count, r.compute_output_ns),
                )
                for r in session.scalars(query)
            ]

    def metric_samples(
        self, *, run_id: int | None = None, step_id: int | None = None, name: str | None = None
    ) -> list[MetricSampleRecord]:
        """Samples of one run or one step (exactly one of the two), optionally of one metric name.

        Ordered by step index, then scrape time.
        """
        if (run_id is None) == (step_id is None):
            raise TypeError("pass exactly one of run_id and step_id")
        sample = MetricSampleRow
        query = select(sample).join(StepRow, StepRow.id == sample.step_id)
        query = query.where(StepRow.id == step_id if run_id is None else StepRow.run_id == run_id)
        query = query.order_by(StepRow.step_index, sample.ts, sample.id)
        if name is not None:
            query = query.where(sample.name == name)
        with self._sessions() as session:
            return [
                MetricSampleRecord(r.step_id, r.ts, r.name, r.labels, _none_to_nan(r.value))
                for r in session.scalars(query)
            ]

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
