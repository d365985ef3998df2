"""The database schema as SQLAlchemy models, and how loadgen connects to a database.

The tables are created and changed only by the alembic revisions in
``loadgen.migrations``; these models must match what those revisions build
(a test compares them). Constraint names come from the naming convention so
that later revisions can refer to them, SQLite's batch mode included.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_DB_URL = "sqlite:///loadgen.db"


def db_url(value: str) -> str:
    """``--db`` as a SQLAlchemy URL: a bare file path (no ``://``) means a SQLite file there.

    Raises ValueError with a one-line reason when ``value`` is neither.
    """
    if "://" not in value:
        if not value.strip():
            raise ValueError("empty --db: give a file path or a SQLAlchemy URL such as sqlite:///runs.db")
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    try:
        make_url(value)
    except ArgumentError:
        raise ValueError(f"--db {value!r} is not a SQLAlchemy URL (e.g. sqlite:///runs.db)") from None
    return value


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, whatever the backend keeps (SQLite keeps no zone).

    A naive datetime is taken as local time, as Python's ``astimezone`` does.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        float: Double(),
        int: BigInteger(),
        bool: Boolean(),
        bytes: LargeBinary(),
        dict[str, Any]: JSON(),
        dict[str, Any] | None: JSON(),
        list[dict[str, Any]]: JSON(),
    }


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(255), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    scenario: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    server_url: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    settings: Mapped[dict[str, Any]]
    model_config: Mapped[dict[str, Any]]
    model_metadata: Mapped[dict[str, Any]]
    server_metadata: Mapped[dict[str, Any]]
    host: Mapped[dict[str, Any]]
    labels: Mapped[dict[str, Any]]


class StepRow(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "step_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step_index: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    request_rate: Mapped[float | None]
    started_at: Mapped[datetime]
    duration_s: Mapped[float]
    request_count: Mapped[int]
    inference_count: Mapped[int]
    throughput: Mapped[float]
    """Inferences per second."""
    error_count: Mapped[int]
    errors: Mapped[dict[str, Any]]
    """Error message -> count."""
    # Latencies in microseconds, read from the histogram; NULL where undefined (no requests).
    lat_avg_us: Mapped[float | None]
    lat_std_us: Mapped[float | None]
    lat_min_us: Mapped[float | None]
    lat_max_us: Mapped[float | None]
    lat_p50_us: Mapped[float | None]
    lat_p90_us: Mapped[float | None]
    lat_p95_us: Mapped[float | None]
    lat_p99_us: Mapped[float | None]
    histogram: Mapped[bytes]
    """``LatencyHistogram.encode()``: the source of truth for any other percentile."""
    stable: Mapped[bool]
    window_count: Mapped[int] = mapped_column("trials", Integer)
    """Windows measured (the column keeps perf_analyzer's word, "trials")."""
    windows: Mapped[list[dict[str, Any]]]
    # The server's /stats delta over the step; NULL when unavailable or reset.
    server_inference_count: Mapped[int | None]
    server_execution_count: Mapped[int | None]
    server_success_count: Mapped[int | None]
    server_fail_count: Mapped[int | None]
    server_queue_us: Mapped[float | None]
    """Average per request, as are the other ``server_*_us`` columns."""
    server_compute_input_us: Mapped[float | None]
    server_compute_infer_us: Mapped[float | None]
    server_compute_output_us: Mapped[float | None]
    server_request_us: Mapped[float | None]
    """Average of the successful requests, as the server measured them."""
    server_stats_reset: Mapped[bool]
    # Open-loop steps only (NULL for closed loop): ``histogram`` then holds response time
    # (from the intended send), these the service time (from the actual send) and the
    # sender's own lag, with what it achieved against the target ``request_rate``.
    send_rate: Mapped[float | None]
    sent_count: Mapped[int | None]
    scheduled_count: Mapped[int | None]
    refused_count: Mapped[int | None]
    in_flight_at_end: Mapped[int | None]
    behind_schedule: Mapped[bool | None]
    service_p50_us: Mapped[float | None]
    service_p99_us: Mapped[float | None]
    send_lag_p50_us: Mapped[float | None]
    send_lag_p99_us: Mapped[float | None]
    send_lag_max_us: Mapped[float | None]
    service_histogram: Mapped[bytes | None]
    send_lag_histogram: Mapped[bytes | None]
    # ``--validate`` steps only (NULL otherwise): answers checked against their reference.
    validated_count: Mapped[int | None]
    mismatch_count: Mapped[int | None]
    """Answers with an output outside the tolerance."""
    swapped_count: Mapped[int | None]
    """Mismatched answers equal to another request's reference (swapped or stale)."""
    max_abs_diff: Mapped[float | None]
    max_rel_diff: Mapped[float | None]
    validation: Mapped[dict[str, Any] | None]
    """``ValidationTally.to_dict()``: mismatches per output and the first example."""
    unanswered_slots: Mapped[int | None]
    """Closed loop: the most slots left unanswered for a whole measured window (NULL: before 0004)."""
    metrics_failed_scrapes: Mapped[int | None]
    """Scrapes of the metrics endpoint that failed during the step: a gap in its samples (NULL:
    before 0005 or no scraping)."""
    interrupted: Mapped[str | None] = mapped_column(Text)
    """Why the step was cut short and stored as such (the server went away); NULL: it ran to its end."""
    # ``--streaming`` steps only (NULL otherwise; 0006): ``histogram`` then holds the time to each
    # request's final response, these its responses (those that carry outputs).
    response_count: Mapped[int | None]
    token_count: Mapped[int | None]
    """Tokens the responses carried (``--token-output``; else one per response)."""
    cancelled_count: Mapped[int | None]
    """``--cancel-after-*``: requests cancelled on purpose (neither answered nor failed)."""
    first_response_p50_us: Mapped[float | None]
    first_response_p99_us: Mapped[float | None]
    inter_response_p50_us: Mapped[float | None]
    inter_response_p99_us: Mapped[float | None]
    responses_per_request: Mapped[float | None]
    """Mean responses per finished request."""
    request_output_rate_p50: Mapped[float | None]
    """The median request's own output rate, responses/s after its first (1 / spacing p50)."""
    first_response_histogram: Mapped[bytes | None]
    inter_response_histogram: Mapped[bytes | None]
    responses_histogram: Mapped[bytes | None]
    spacing_histogram: Mapped[bytes | None]
    """Per request: the time per response after the first (``StreamTally.spacing``)."""
    # sequence models only (NULL otherwise; 0007): latencies by place in the sequence
    sequence_count: Mapped[int | None]
    """Sequences whose last request was answered in the measured windows."""
    sequence_start_p50_us: Mapped[float | None]
    sequence_start_p99_us: Mapped[float | None]
    sequence_middle_p50_us: Mapped[float | None]
    sequence_middle_p99_us: Mapped[float | None]
    sequence_end_p50_us: Mapped[float | None]
    sequence_end_p99_us: Mapped[float | None]
    sequence_start_histogram: Mapped[bytes | None]
    sequence_middle_histogram: Mapped[bytes | None]
    sequence_end_histogram: Mapped[bytes | None]
    untraced_throughput: Mapped[float | None]
    """``--trace-rate`` only (0009): throughput of one more window of the same load, tracing off."""
    warmup_windows: Mapped[int | None]
    """Windows found still warming up at the step's start (``--detect-warmup``; 0011, NULL before)."""
    """Responses per request, each recorded as that many microseconds (``StreamTally.counts``)."""


class BatchStatRow(Base):
    __tablename__ = "batch_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    batch_size: Mapped[int] = mapped_column(Integer)
    execution_count: Mapped[int]
    compute_input_count: Mapped[int]
    compute_input_ns: Mapped[int]
    compute_infer_count: Mapped[int]
    compute_infer_ns: Mapped[int]
    compute_output_count: Mapped[int]
    compute_output_ns: Mapped[int]


class ComposingStatRow(Base):
    """An ensemble's or BLS model's composing model: its ``/stats`` delta over the step (0008).

    Raw ``{count, ns}`` pairs rather than averages, so that steps and models add up exactly."""

    __tablename__ = "composing_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(255))
    inference_count: Mapped[int]
    execution_count: Mapped[int]
    success_count: Mapped[int]
    success_ns: Mapped[int]
    fail_count: Mapped[int]
    fail_ns: Mapped[int]
    queue_count: Mapped[int]
    queue_ns: Mapped[int]
    compute_input_count: Mapped[int]
    compute_input_ns: Mapped[int]
    compute_infer_count: Mapped[int]
    compute_infer_ns: Mapped[int]
    compute_output_count: Mapped[int]
    compute_output_ns: Mapped[int]
    cache_hit_count: Mapped[int]
    cache_hit_ns: Mapped[int]
    cache_miss_count: Mapped[int]
    cache_miss_ns: Mapped[int]
    batch_stats: Mapped[list[dict[str, Any]]]
    """``[{batch_size, compute_input: [count, ns], compute_infer: [...], compute_output: [...]}]``."""


class TraceSampleRow(Base):
    """``--trace-rate``: one sampled request's trace joined to the client's time of it, or a request
    an ensemble or BLS model made for it (``parent_id`` its trace), in microseconds (0009)."""

    __tablename__ = "trace_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    trace_id: Mapped[int]
    parent_id: Mapped[int | None]
    model: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(64))
    client_us: Mapped[float | None]
    """NULL for a child: the client never saw it."""
    server_us: Mapped[float | None]
    queue_us: Mapped[float | None]
    compute_us: Mapped[float | None]
    compute_input_us: Mapped[float | None]
    compute_infer_us: Mapped[float | None]
    compute_output_us: Mapped[float | None]
    outside_us: Mapped[float | None]


class StepWorkerRow(Base):
    """``--workers``/``--ray``: one worker's part of a step (:class:`~loadgen.results.WorkerRow`:
    the same field names), its node and clock offset (0010)."""

    __tablename__ = "step_workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    worker: Mapped[int]
    node: Mapped[str] = mapped_column(String(255))
    share: Mapped[str] = mapped_column(String(255))
    requests: Mapped[int]
    errors: Mapped[int]
    send_lag_p99_us: Mapped[float | None]
    clock_offset_us: Mapped[float | None]
    clock_uncertainty_us: Mapped[float | None]


class StepIntervalRow(Base):
    """A step's confidence interval (:class:`~loadgen.intervals.StepInterval`: the same field
    names): each reported percentile's, the throughput's, MLPerf's early-stopping estimates (0011)."""

    __tablename__ = "step_intervals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    measure: Mapped[str] = mapped_column(String(32))
    percentile: Mapped[float | None]
    estimate: Mapped[float | None]
    low: Mapped[float | None]
    high: Mapped[float | None]
    confidence: Mapped[float]
    n_eff: Mapped[float | None]
    std_error: Mapped[float | None]


class MetricSampleRow(Base):
    __tablename__ = "metric_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(Integer, ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    ts: Mapped[float]
    """Unix time of the scrape, seconds."""
    name: Mapped[str] = mapped_column(String(255), index=True)
    labels: Mapped[dict[str, Any]]
    value: Mapped[float | None]
    """NULL stands for NaN, which not every backend stores (SQLite turns it into NULL anyway)."""


WAL_SWITCH_WAIT_S = 30.0
"""How long opening waits for the switch to WAL while another connection holds the new file."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets a report read while a run writes; SQLite enforces foreign keys (and so
    # ON DELETE CASCADE) only when asked, per connection.
    cursor = dbapi_connection.cursor()
    try:
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """SQLite answers "database is locked" at once, without its busy wait, when two connections
    switch a new file to WAL together (two sweeps started on a new database): try again."""
    deadline = time.monotonic() + WAL_SWITCH_WAIT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with the pragmas loadgen relies on when it is SQLite."""
    engine = create_engine(url)
    if make_url(url).get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
