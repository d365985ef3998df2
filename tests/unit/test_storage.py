"""RunStore and the alembic wiring, on SQLite files in tmp_path."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from analysis.tables import benchmark_table
from loadgen.engine.recorder import Window, merge_windows
from loadgen.engine.sequences import END, MIDDLE, START
from loadgen.errors import RunNotFound, SchemaError
from loadgen.histogram import LatencyHistogram
from loadgen.results import (
    BatchStat,
    DurationStat,
    MetricSample,
    ModelStats,
    RunInfo,
    RunStatus,
    StepResult,
    WindowResult,
)
from loadgen.storage import RunStore, check_schema, current_revision, db_url, head_revision, upgrade
from loadgen.storage.migrate import alembic_config, revisions
from loadgen.storage.models import Base
from tests.cli import open_at_once

T0 = datetime(2024, 11, 28, 12, 0, 0, tzinfo=UTC)


def run_info(model: str = "resnet", started_at: datetime = T0) -> RunInfo:
    return RunInfo(
        settings={"concurrency": [1, 2], "measurement": {"interval_ms": 5000}},
        model=model,
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config={"max_batch_size": 8},
        model_metadata={"inputs": [{"name": "x"}]},
        server_metadata={"version": "2.51.0"},
        host={"cpus": 16},
        started_at=started_at,
        labels={"git": "abc123"},
    )


def stats(batch_sizes: tuple[int, ...] = (1, 4)) -> ModelStats:
    def d(count: int, us: float) -> DurationStat:
        return DurationStat(count, int(count * us * 1000))

    return ModelStats(
        inference_count=900,
        execution_count=300,
        success=d(500, 2000.0),
        fail=d(2, 10.0),
        queue=d(500, 100.0),
        compute_input=d(500, 50.0),
        compute_infer=d(500, 1500.0),
        compute_output=d(500, 20.0),
        cache_hit=DurationStat(),
        cache_miss=DurationStat(),
        batch_stats=tuple(
            BatchStat(b, d(10 * b, 5.0), d(10 * b, 900.0), d(10 * b, 3.0)) for b in batch_sizes
        ),
    )


def step_result(
    index: int, *, latencies_us: list[float] | None = None, with_stats: bool = True
) -> StepResult:
    hist = LatencyHistogram()
    rng = np.random.default_rng(index)
    hist.record_many_us(rng.lognormal(8.0, 0.5, 2000) if latencies_us is None else latencies_us)
    return StepResult(
        index=index,
        concurrency=index + 1,
        started_at=T0 + timedelta(seconds=10 * index),
        duration_s=15.0,
        request_count=hist.count,
        inference_count=2 * hist.count,
        histogram=hist,
        errors={"timeout": 2, "unavailable": 1},
        stable=index == 0,
        window_count=3 + index,
        windows=[WindowResult(5.0, 100, 200, 1, 1234.5), WindowResult(5.0, 0, 0, 0, math.nan)],
        server_stats=stats() if with_stats else None,
        server_stats_reset=not with_stats,
        metrics=[
            MetricSample(1732795200.0 + i, "nv_gpu_utilization", {"gpu_uuid": "GPU-0"}, 0.5 + i / 10)
            for i in range(3)
        ]
        + [MetricSample(1732795200.0, "nv_inference_count", {"model": "resnet", "version": "1"}, math.nan)],
        request_rate=None if index == 0 else 250.0,
    )


def test_round_trip(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    results = [step_result(0), step_result(1, with_stats=False)]
    step_ids = [store.add_step(run_id, r) for r in reversed(results)]  # stored out of order

    run = store.get_run(run_id)
    assert (run.model, run.model_version, run.scenario, run.server_url) == (
        "resnet",
        "1",
        "concurrency",
        "localhost:8001",
    )
    assert run.status is RunStatus.RUNNING and run.ended_at is None and run.error is None
    assert run.started_at == T0 and run.started_at.tzinfo is UTC
    assert run.settings == {"concurrency": [1, 2], "measurement": {"interval_ms": 5000}}
    assert run.model_config == {"max_batch_size": 8}
    assert run.labels == {"git": "abc123"} and run.host == {"cpus": 16}
    assert run.step_count == 2

    steps = store.steps(run_id)
    assert [s.step_index for s in steps] == [0, 1]
    assert [s.id for s in steps] == step_ids[::-1]
    for record, result in zip(steps, results, strict=True):
        assert record.run_id == run_id
        assert record.started_at == result.started_at and record.started_at.tzinfo is UTC
        assert record.concurrency == result.concurrency
        assert record.request_rate == result.request_rate
        assert record.throughput == pytest.approx(result.throughput)
        assert record.errors == {"timeout": 2, "unavailable": 1} and record.error_count == 3
        assert (record.stable, record.window_count) == (result.stable, result.window_count)
        assert record.windows[0] == WindowResult(5.0, 100, 200, 1, 1234.5)
        assert math.isnan(record.windows[1].mean_latency_us)
        summary = result.latency_summary()
        assert record.lat_p99_us == summary["p99"] and record.lat_avg_us == pytest.approx(summary["avg"])
        stored = record.histogram()
        assert stored == result.histogram
        assert store.step_histogram(record.id) == result.histogram
        for p in (50.0, 90.0, 99.0, 99.9, 100.0):
            assert stored.percentile_us(p) == result.histogram.percentile_us(p)

    with_stats, without_stats = steps
    assert with_stats.server_inference_count == 900 and with_stats.server_execution_count == 300
    assert (with_stats.server_success_count, with_stats.server_fail_count) == (500, 2)
    assert with_stats.server_queue_us == pytest.approx(100.0)
    assert with_stats.server_compute_infer_us == pytest.approx(1500.0)
    assert with_stats.server_request_us == pytest.approx(2000.0)
    assert not with_stats.server_stats_reset
    assert without_stats.server_stats_reset
    assert without_stats.server_inference_count is None and without_stats.server_request_us is None

    assert store.batch_stats(with_stats.id) == list(stats().batch_stats)
    assert store.batch_stats(without_stats.id) == []

    samples = store.metric_samples(run_id=run_id)
    assert len(samples) == 8
    assert [s.step_id for s in samples] == [steps[0].id] * 4 + [steps[1].id] * 4
    gpu = store.metric_samples(step_id=with_stats.id, name="nv_gpu_utilization")
    assert [(s.timestamp, s.value) for s in gpu] == [(1732795200.0 + i, 0.5 + i / 10) for i in range(3)]
    assert gpu[0].labels == {"gpu_uuid": "GPU-0"}
    (nan_sample,) = store.metric_samples(step_id=with_stats.id, name="nv_inference_count")
    assert math.isnan(nan_sample.value)
    with pytest.raises(TypeError):
        store.metric_samples()


def test_many_metric_samples(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    step = step_result(0)
    step.metrics = [MetricSample(float(i), f"m{i % 7}", {"i": str(i)}, float(i)) for i in range(5000)]
    step_id = store.add_step(run_id, step)
    assert len(store.metric_samples(step_id=step_id)) == 5000
    assert len(store.metric_samples(run_id=run_id, name="m3")) == len(range(3, 5000, 7))


def test_empty_histogram_latencies_are_none(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    store.add_step(run_id, step_result(0, latencies_us=[]))
    (record,) = store.steps(run_id)
    for name in ("avg", "std", "min", "max", "p50", "p90", "p95", "p99"):
        assert getattr(record, f"lat_{name}_us") is None
    assert record.histogram().count == 0


def test_other_zone_timestamps_are_read_back_as_utc(store: RunStore) -> None:
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    run_id = store.create_run(run_info(started_at=plus_two))
    run = store.get_run(run_id)
    assert run.started_at == T0 and run.started_at.tzinfo is UTC


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED])
def test_finish_run(store: RunStore, status: RunStatus) -> None:
    run_id = store.create_run(run_info())
    error = "server went away" if status is RunStatus.FAILED else None
    before = datetime.now(UTC)
    store.finish_run(run_id, status, error)
    run = store.get_run(run_id)
    assert run.status is status and run.error == error
    assert run.ended_at is not None and run.ended_at.tzinfo is UTC
    assert before <= run.ended_at <= datetime.now(UTC)


def test_finish_run_refuses_running(store: RunStore) -> None:
    with pytest.raises(ValueError):
        store.finish_run(store.create_run(run_info()), RunStatus.RUNNING)


def test_list_runs_newest_first(store: RunStore) -> None:
    old = store.create_run(run_info("resnet", T0))
    new = store.create_run(run_info("resnet", T0 + timedelta(hours=1)))
    other = store.create_run(run_info("bert", T0 + timedelta(minutes=30)))
    store.add_step(new, step_result(0))
    assert [r.id for r in store.list_runs()] == [new, other, old]
    assert [r.id for r in store.list_runs(model="resnet")] == [new, old]
    assert [r.id for r in store.list_runs(limit=1)] == [new]
    assert [r.step_count for r in store.list_runs()] == [1, 0, 0]
    assert store.list_runs(model="nothing") == []


def test_run_not_found(store: RunStore, url: str) -> None:
    with pytest.raises(RunNotFound, match=f"no run 42 in {url}"):
        store.get_run(42)
    with pytest.raises(RunNotFound):
        store.finish_run(42, RunStatus.COMPLETED)
    with pytest.raises(RunNotFound):
        store.add_step(42, step_result(0))
    with pytest.raises(RunNotFound):
        store.steps(42)
    with pytest.raises(RunNotFound):
        store.step_histogram(42)


def test_duplicate_step_index_is_rejected_and_rolled_back(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    store.add_step(run_id, step_result(0))
    with pytest.raises(sa.exc.IntegrityError):
        store.add_step(run_id, step_result(0))
    assert len(store.steps(run_id)) == 1
    assert len(store.metric_samples(run_id=run_id)) == 4


def test_delete_run_cascades(store: RunStore, url: str) -> None:
    keep = store.create_run(run_info())
    store.add_step(keep, step_result(0))
    gone = store.create_run(run_info())
    step_id = store.add_step(gone, step_result(0))
    store.delete_run(gone)
    with pytest.raises(RunNotFound):
        store.get_run(gone)
    assert store.batch_stats(step_id) == [] and store.metric_samples(step_id=step_id) == []
    assert len(store.metric_samples(run_id=keep)) == 4
    assert len(store.batch_stats(store.steps(keep)[0].id)) == 2


def test_sqlite_pragmas(store: RunStore) -> None:
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_empty_database_is_upgraded(url: str, caplog: pytest.LogCaptureFixture) -> None:
    assert current_revision(url) is None
    with caplog.at_level(logging.INFO, logger="loadgen.storage"):
        RunStore(url).close()
    assert current_revision(url) == head_revision()
    assert "creating the loadgen schema" in caplog.text
    check_schema(url)
    RunStore(url, auto_upgrade=False).close()  # at head: fine


def test_empty_database_without_auto_upgrade(url: str) -> None:
    with pytest.raises(SchemaError, match="no loadgen schema.*loadgen db upgrade"):
        RunStore(url, auto_upgrade=False)
    assert current_revision(url) is None


def test_foreign_database_is_refused(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    engine.dispose()
    for attempt in (lambda: RunStore(url), lambda: check_schema(url), lambda: upgrade(url)):
        with pytest.raises(SchemaError, match="is not a loadgen database"):
            attempt()
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == ["customers"]
    engine.dispose()


def test_stale_database(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with RunStore(url) as store:
        run_id = store.create_run(run_info())
    command.downgrade(alembic_config(url), "base")
    head = head_revision()
    stale = (
        f"database {url} is at schema revision base, loadgen needs {head}: "
        f"run `loadgen db upgrade --db {url}`"
    )
    with pytest.raises(SchemaError) as info:
        check_schema(url)
    assert str(info.value) == stale
    with pytest.raises(SchemaError):
        RunStore(url, auto_upgrade=False)
    with caplog.at_level(logging.WARNING, logger="loadgen.storage"):
        store = RunStore(url)
    assert f"upgrading database {url} from schema revision base to {head}" in caplog.text
    with pytest.raises(RunNotFound):  # base dropped the tables: the upgrade built them afresh
        store.get_run(run_id)
    store.close()
    check_schema(url)


def test_newer_database_is_refused(url: str) -> None:
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(SchemaError, match="revision 9999, unknown to this loadgen.*newer loadgen"):
        RunStore(url)
    with pytest.raises(SchemaError, match="9999"):
        upgrade(url)


def test_alembic_cli_head_matches() -> None:
    ini = Path(__file__).resolve().parents[2] / "migrations" / "alembic.ini"
    out = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "heads"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == [head_revision(), "(head)"]


def test_models_match_migrations(url: str) -> None:
    """A new database gets the models' tables at once: what the revisions build must be the same."""
    command.upgrade(alembic_config(url), "head")  # every revision in turn, as an old database gets them
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    engine.dispose()
    assert diff == []


def test_the_revisions_read_without_alembic_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert revisions() == {s.revision: s.down_revision for s in script.walk_revisions()}
    assert head_revision() == script.get_current_head()


def test_a_new_database_is_stamped_as_alembic_stamps_it(url: str) -> None:
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_db_option_takes_a_url_or_a_plain_sqlite_path(tmp_path: Path) -> None:
    assert db_url(str(tmp_path / "runs.db")) == f"sqlite:///{tmp_path / 'runs.db'}"
    assert db_url("sqlite:///x.db") == "sqlite:///x.db"
    assert db_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    for bad, fragment in (("", "empty --db"), ("://x", "is not a SQLAlchemy URL")):
        with pytest.raises(ValueError, match=fragment):
            db_url(bad)


def test_loadgens_opening_a_new_database_at_once_all_find_one_schema(tmp_path: Path) -> None:
    """Two at once, on six new databases in turn: SQLite refuses a second switch to WAL at once."""
    urls = [f"sqlite:///{tmp_path / f'new{n}.db'}" for n in range(6)]
    results = open_at_once(*urls, processes=2)
    assert [r.returncode for r in results] == [0] * len(results), [r.stderr for r in results]
    assert {current_revision(url) for url in urls} == {head_revision()}


def test_a_sequence_steps_places_are_stored_whole_and_tabled(store: RunStore) -> None:
    run_id = store.create_run(run_info())
    window = Window()
    for latency_ms, where, last in ((9, START, False), (2, MIDDLE, False), (3, END, True), (8, START, True)):
        window.record_sequence(latency_ms * 1_000_000, where, last)
    merged = merge_windows([window, window])  # two workers' windows add up
    assert merged.sequences is not None and merged.sequences.ended == 4 and merged.requests == 8
    result = step_result(0)
    result.sequences = merged.sequences
    store.add_step(run_id, result)
    store.add_step(run_id, step_result(1))  # a step of a model without sequences
    with_places, without = store.steps(run_id)
    tally = with_places.sequences()
    assert tally is not None and without.sequences() is None and without.sequence_count is None
    assert (tally.ended, tally.start.count, tally.middle.count, tally.end.count) == (4, 4, 2, 2)
    assert with_places.sequence_start_p99_us == pytest.approx(9000, rel=0.01)
    assert with_places.sequence_end_p50_us == pytest.approx(3000, rel=0.01)
    table = benchmark_table(store.steps(run_id), (50.0, 99.0), scenario="concurrency")
    assert table["Sequences/s"].iloc[0] == pytest.approx(4 / result.duration_s)
    assert table["Requests per sequence"].iloc[0] == pytest.approx(8 / 4)
    assert table["Start p99 (ms)"].iloc[0] == pytest.approx(9.0, rel=0.01) and math.isnan(
        table["End p50 (ms)"].iloc[1]
    )
