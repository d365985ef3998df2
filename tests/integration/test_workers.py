"""``--workers N`` against the real server: the merged result is the single-process result's twin."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from tests.cli import loadgen, loadgen_here

FAST = MeasurementSettings(measurement_interval_ms=700, warmup_ms=200, max_windows=4)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(f"sqlite:///{tmp_path / 'runs.db'}")


def test_fixed_latency_theory_holds_with_several_workers(triton: EmbeddedServer, store: RunStore) -> None:
    service_s = 0.010
    settings = SweepSettings(
        model="fixed_latency",
        levels=(1, 3, 8),
        url=triton.grpc_url,
        metrics_url="",
        measurement=FAST,
        workers=3,
    )
    outcome = asyncio.run(execute_sweep(settings, store))
    assert outcome.status is RunStatus.COMPLETED, outcome.error
    for step in store.steps(outcome.run_id):
        assert step.error_count == 0
        # one stored histogram holding every worker's requests
        assert step.histogram().count == step.request_count > 0
        assert step.server_success_count == pytest.approx(step.request_count, rel=0.05, abs=10)
        # margins that hold on a busy 2-core machine: a wrong count or a lost request is off by far more
        assert 0.85 / service_s <= step.throughput <= 1.005 / service_s, step
        assert step.lat_avg_us is not None
        assert step.throughput * step.lat_avg_us / 1e6 == pytest.approx(step.concurrency, rel=0.05)
        if step.concurrency > 1:  # the concurrency is split 1+1+1 / 3+3+2 but the server queue is one
            assert step.lat_avg_us / 1e6 == pytest.approx(step.concurrency * service_s, rel=0.15)


def test_an_open_loop_schedule_is_shared_not_repeated(triton: EmbeddedServer, store: RunStore) -> None:
    settings = SweepSettings(
        model="identity",
        levels=(400.0,),
        url=triton.grpc_url,
        metrics_url="",
        scenario="request_rate",
        distribution="poisson",
        measurement=FAST,
        workers=2,
    )
    outcome = asyncio.run(execute_sweep(settings, store))
    assert outcome.status is RunStatus.COMPLETED, outcome.error
    (step,) = store.steps(outcome.run_id)
    # two workers each send every other send of one schedule: together the target rate, not twice it
    assert step.send_rate == pytest.approx(400.0, rel=0.05)
    assert step.throughput == pytest.approx(400.0, rel=0.05)
    assert step.scheduled_count is not None and step.sent_count == pytest.approx(step.scheduled_count, abs=4)
    assert step.behind_schedule is False
    assert step.server_success_count == pytest.approx(step.request_count, rel=0.05, abs=10)
    lag, service = step.send_lag_histogram(), step.service_histogram()
    assert lag is not None and service is not None
    assert service.count == step.request_count and lag.count == step.sent_count


def test_validation_and_the_cli_with_workers(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    result = loadgen(
        "sweep",
        "-m",
        "drifting",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1,8",
        "--validate",
        "--workers",
        "2",
        *("-p", "600", "--warmup", "300", "-r", "3", "--no-metrics", "-q", "--db", db),
    )
    assert result.returncode == 3, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.settings["workers"] == 2
        alone, busy = store.steps(run.id)
    # concurrency 1 over 2 workers: one worker idle, its empty windows merge in harmlessly
    assert alone.validated_count == alone.request_count > 0 and alone.mismatch_count == 0
    assert busy.validated_count == busy.request_count > 0
    assert busy.mismatch_count and busy.swapped_count


def test_bad_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    result = loadgen_here("sweep", "-m", "identity", "--workers", "0", "--db", f"sqlite:///{tmp_path}/r.db")
    assert result.returncode == 2
    assert "--workers must be within 1..256" in result.stderr
