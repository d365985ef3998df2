"""RunStore: writes runs step by step as they are measured, and reads them back as plain data.

Each step is committed on its own, so an interrupted run keeps every step it
finished. Reads return frozen dataclasses detached from any session (``records``).
A fault of the database itself (locked past its bound, disk full, read-only, unreachable)
is a one-line :class:`~loadgen.errors.StorageError` that says what was kept and what was not.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from loadgen.errors import RunNotFound, StorageError
from loadgen.histogram import LatencyHistogram
from loadgen.intervals import StepInterval
from loadgen.results import BatchStat, DurationStat, ModelStats, RunInfo, RunStatus, StepResult, WorkerRow
from loadgen.storage.migrate import ensure_schema, open_engine, shown_url, storage_errors
from loadgen.storage.models import (
    DEFAULT_DB_URL,
    BatchStatRow,
    ComposingStatRow,
    MetricSampleRow,
    RunRow,
    StepIntervalRow,
    StepRow,
    StepWorkerRow,
    TraceSampleRow,
)
from loadgen.storage.records import (
    MetricSampleRecord,
    RunRecord,
    StepRecord,
    nan_to_none,
    none_to_nan,
    run_record,
    step_record,
    step_row,
)
from loadgen.storage.step_children import (
    composing_row,
    composing_stats,
    interval_row,
    step_interval,
    trace_row,
    trace_sample,
)
from loadgen.tracing import TraceSample


class RunStore:
    """A loadgen database: any SQLAlchemy URL, SQLite by default.

    Opening it checks the schema revision. An empty database, or one an older
    loadgen wrote, is upgraded when ``auto_upgrade`` (logged); otherwise, or when
    the database is not loadgen's or is newer, :class:`SchemaError` is raised. A fault of the
    database (it cannot be opened, read or written) raises :class:`StorageError`.
    """

    def __init__(self, url: str = DEFAULT_DB_URL, *, auto_upgrade: bool = True) -> None:
        self.url = url
        self._engine = open_engine(url)
        try:
            with storage_errors(url), self._engine.connect() as conn:
                ensure_schema(conn, auto_upgrade=auto_upgrade)
        except BaseException:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._stored: dict[int, int] = {}
        """Steps committed per run by this store: what a failed write says is kept."""
        self._lost: dict[int, StorageError] = {}
        """A run's failed step write, which a failure to finish that run repeats (it says more)."""

    def _not_found(self, run_id: int) -> RunNotFound:
        return RunNotFound(f"no run {run_id} in {shown_url(self.url)}")

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
        with storage_errors(self.url, "; the run was not recorded"), self._sessions.begin() as session:
            session.add(row)
            session.flush()
            run_id: int = row.id
        self._stored[run_id] = 0
        return run_id

    def add_step(self, run_id: int, step: StepResult) -> int:
        """Commit one step with its batch stats and metric samples; returns the step id."""
        kept = self._stored.get(run_id)
        lost = (
            f"; run {run_id} keeps {'its' if kept is None else kept} finished step(s), not the one just ended"
        )
        try:
            step_id = self._add_step(run_id, step, lost)
        except StorageError as exc:
            self._lost[run_id] = exc
            raise
        if kept is not None:
            self._stored[run_id] = kept + 1
        return step_id

    def _add_step(self, run_id: int, step: StepResult, lost: str) -> int:
        row = step_row(run_id, step)
        with storage_errors(self.url, lost), self._sessions.begin() as session:
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
            if step.composing_stats:
                session.execute(
                    insert(ComposingStatRow),
                    [composing_row(row.id, name, stats) for name, stats in step.composing_stats.items()],
                )
            if step.traces:
                session.execute(insert(TraceSampleRow), [trace_row(row.id, t) for t in step.traces])
            if step.intervals:
                session.execute(insert(StepIntervalRow), [interval_row(row.id, i) for i in step.intervals])
            if step.workers:
                session.execute(
                    insert(StepWorkerRow), [{"step_id": row.id, **asdict(w)} for w in step.workers]
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
                            "value": nan_to_none(m.value),
                        }
                        for m in step.metrics
                    ],
                )
            return row.id

    def finish_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        if status is RunStatus.RUNNING:
            raise ValueError("a run cannot finish as running")
        lost = f"; run {run_id} keeps its steps but could not be marked {RunStatus(status).value}"
        try:
            with storage_errors(self.url, lost), self._sessions.begin() as session:
                row = self._run_row(session, run_id)
                row.status = RunStatus(status).value
                row.error = error
                row.ended_at = datetime.now(UTC)
        except StorageError:
            if (first := self._lost.pop(run_id, None)) is not None:  # it says what was lost
                raise first from None
            raise
        self._lost.pop(run_id, None)

    def delete_run(self, run_id: int) -> None:
        """Delete a run; its steps, batch stats and samples go with it (ON DELETE CASCADE)."""
        with storage_errors(self.url), self._sessions.begin() as session:
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
        return [run_record(row, count) for row, count in session.execute(query)]

    def list_runs(self, model: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        where = [] if model is None else [RunRow.model == model]
        with storage_errors(self.url), self._sessions() as session:
            return self._runs(session, *where, limit=limit)

    def get_run(self, run_id: int) -> RunRecord:
        with storage_errors(self.url), self._sessions() as session:
            runs = self._runs(session, RunRow.id == run_id)
        if not runs:
            raise self._not_found(run_id)
        return runs[0]

    def steps(self, run_id: int) -> list[StepRecord]:
        """The run's steps by step index (empty for a run without steps; RunNotFound for no run)."""
        with storage_errors(self.url), self._sessions() as session:
            self._run_row(session, run_id)
            query = select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.step_index)
            return [step_record(row) for row in session.scalars(query)]

    def step_histogram(self, step_id: int) -> LatencyHistogram:
        with storage_errors(self.url), self._sessions() as session:
            data = session.scalar(select(StepRow.histogram).where(StepRow.id == step_id))
        if data is None:
            raise RunNotFound(f"no step {step_id} in {shown_url(self.url)}")
        return LatencyHistogram.decode(data)

    def batch_stats(self, step_id: int) -> list[BatchStat]:
        """The step's server batch statistics, by batch size."""
        query = select(BatchStatRow).where(BatchStatRow.step_id == step_id).order_by(BatchStatRow.batch_size)
        with storage_errors(self.url), self._sessions() as session:
            return [
                BatchStat(
                    r.batch_size,
                    DurationStat(r.compute_input_count, r.compute_input_ns),
                    DurationStat(r.compute_infer_count, r.compute_infer_ns),
                    DurationStat(r.compute_output_count, r.compute_output_ns),
                )
                for r in session.scalars(query)
            ]

    def _per_step(self, run_id: int, table: Any) -> dict[int, list[Any]]:
        """Step id -> the run's rows of ``table`` (a per-step child table), in step and row order."""
        query = (
            select(table)
            .join(StepRow, StepRow.id == table.step_id)
            .where(StepRow.run_id == run_id)
            .order_by(StepRow.step_index, table.id)
        )
        found: dict[int, list[Any]] = {}
        with storage_errors(self.url), self._sessions() as session:
            for row in session.scalars(query):
                found.setdefault(row.step_id, []).append(row)
        return found

    def composing_stats(self, run_id: int) -> dict[int, dict[str, ModelStats]]:
        """Step id -> each composing model's ``/stats`` delta (steps without any are absent)."""
        found = self._per_step(run_id, ComposingStatRow)
        return {step: {row.model: composing_stats(row) for row in rows} for step, rows in found.items()}

    def trace_samples(self, run_id: int) -> dict[int, list[TraceSample]]:
        """Step id -> its joined traces (``--trace-rate``), in trace order; steps without any absent."""
        found = self._per_step(run_id, TraceSampleRow)
        return {step: [trace_sample(row) for row in rows] for step, rows in found.items()}

    def step_workers(self, run_id: int) -> dict[int, list[WorkerRow]]:
        """Step id -> each worker's part (``--workers``, ``--ray``); steps run in one process absent."""
        names = [f.name for f in fields(WorkerRow)]
        found = self._per_step(run_id, StepWorkerRow)
        return {
            step: [WorkerRow(**{name: getattr(row, name) for name in names}) for row in rows]
            for step, rows in found.items()
        }

    def step_intervals(self, run_id: int) -> dict[int, list[StepInterval]]:
        """Step id -> its confidence intervals (steps stored before 0011 absent)."""
        found = self._per_step(run_id, StepIntervalRow)
        return {step: [step_interval(row) for row in rows] for step, rows in found.items()}

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
        with storage_errors(self.url), self._sessions() as session:
            return [
                MetricSampleRecord(r.step_id, r.ts, r.name, r.labels, none_to_nan(r.value))
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
