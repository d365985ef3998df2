"""Open-loop request rates against the real server: schedules kept, no coordinated omission."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loadgen.config import Distribution, MeasurementSettings, Scenario, SweepSettings
from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.recorder import OpenWindow
from loadgen.engine.schedules import Schedule
from loadgen.inputs import build_requests
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from loadgen.transports import make_transport
from tests.cli import loadgen_here, one_line_error

FAST = MeasurementSettings(measurement_interval_ms=700, warmup_ms=200, max_windows=4)


def _sweep(
    triton: EmbeddedServer,
    store: RunStore,
    model: str,
    levels: tuple[float, ...],
    *,
    scenario: Scenario,
    distribution: Distribution = "constant",
) -> list[StepRecord]:
    settings = SweepSettings(
        model=model,
        levels=levels,
        url=triton.grpc_url,
        metrics_url="",
        scenario=scenario,
        measurement=FAST,
        distribution=distribution,
    )
    outcome = asyncio.run(execute_sweep(settings, store))
    assert outcome.status is RunStatus.COMPLETED
    return store.steps(outcome.run_id)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(f"sqlite:///{tmp_path / 'runs.db'}")


def test_rates_are_met_and_the_sender_measures_itself(triton: EmbeddedServer, store: RunStore) -> None:
    (step,) = _sweep(triton, store, "identity", (300.0,), scenario="request_rate", distribution="poisson")
    assert step.request_rate == 300.0
    assert step.send_rate == pytest.approx(300.0, rel=0.05)  # Poisson: ~2700 sends in 3 s
    assert step.throughput == pytest.approx(300.0, rel=0.05)
    assert step.refused_count == 0 and step.behind_schedule is False
    assert step.send_lag_p50_us is not None and step.send_lag_p50_us < 1000
    service, response = step.service_histogram(), step.histogram()
    assert service is not None and service.count == response.count == step.request_count
    # response time (from the intended send) is never shorter than service time (from the actual send)
    assert response.percentile_us(50) >= service.percentile_us(50)


def test_backlog_shows_in_open_loop_but_not_closed_loop(triton: EmbeddedServer, store: RunStore) -> None:
    # fixed_latency serves ~99 requests/s: 130/s builds a backlog that grows all step long
    (open_step,) = _sweep(triton, store, "fixed_latency", (130.0,), scenario="request_rate")
    (closed_step,) = _sweep(triton, store, "fixed_latency", (1,), scenario="concurrency")
    assert open_step.throughput == pytest.approx(closed_step.throughput, rel=0.10)  # same throughput...
    assert open_step.lat_p99_us is not None and closed_step.lat_p99_us is not None
    assert open_step.lat_p99_us > 20 * closed_step.lat_p99_us  # ...but the open loop sees the queue
    assert closed_step.lat_p99_us < 30_000
    assert not open_step.stable  # latency keeps growing: never stable, stored anyway
    assert open_step.in_flight_at_end is not None and open_step.in_flight_at_end > 20


def test_rate_cli_and_its_usage_errors(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    both = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--concurrency",
        "1",
        "--request-rate",
        "10",
        "--db",
        db,
    )
    assert both.returncode == 2 and "give only one of --concurrency, --request-rate" in one_line_error(both)
    zero = loadgen_here(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--request-rate", "0..10", "--db", db
    )
    assert zero.returncode == 2 and "bad range" in one_line_error(zero)
    missing = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--request-intervals",
        str(tmp_path / "nope.txt"),
        "--db",
        db,
    )
    assert missing.returncode == 2 and "cannot read request intervals" in one_line_error(missing)

    intervals = tmp_path / "intervals.txt"
    intervals.write_text("5000\n15000\n")  # 100 requests/s on average
    replay = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--metrics-url",
        triton.metrics_url,
        "--request-intervals",
        str(intervals),
        "-p",
        "1000",
        "--warmup",
        "200",
        "-r",
        "4",
        "--db",
        db,
        "-q",
    )
    assert replay.returncode == 0, replay.stderr
    # the console table of an open-loop run shows the rate and what the sender achieved, not "concurrency 0"
    header = replay.stdout
    for column in ("Request rate", "Sent (req/s)", "Send lag p99", "Refused", "On schedule"):
        assert column.split()[0] in header, header
    assert "Concurrent" not in header
    with RunStore(db) as store:
        (run,) = store.list_runs()
        assert run.scenario == "request_rate"
        (step,) = store.steps(run.id)
        assert step.request_rate == pytest.approx(100.0)
        assert step.send_rate == pytest.approx(100.0, rel=0.05)


def test_ramp_rises_over_the_step(triton: EmbeddedServer, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    bad = loadgen_here("sweep", "-m", "identity", "-u", triton.grpc_url, "--ramp", "100:400", "--db", db)
    assert bad.returncode == 2 and "bad --ramp '100:400'" in one_line_error(bad)
    result = loadgen_here(
        "sweep",
        "-m",
        "identity",
        "-u",
        triton.grpc_url,
        "--no-metrics",
        "--ramp",
        "100:400:2",
        "-p",
        "1000",
        "--warmup",
        "0",
        "-r",
        "3",
        "--db",
        db,
        "-q",
    )
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
        rates = [w.throughput for w in step.windows]
        assert step.request_rate == 400.0
        assert rates[0] == pytest.approx(175, rel=0.1)  # mean of 100..250 over the first second
        assert rates[1] == pytest.approx(325, rel=0.1)
        assert rates[2] == pytest.approx(400, rel=0.05)


def test_both_pacings_on_both_event_loops_keep_the_schedule(
    triton: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (timerfd on uvloop, when installed) and the portable pair (spin on asyncio)."""
    db = f"sqlite:///{tmp_path}/p.db"
    quick = ("-p", "500", "--warmup", "100", "-r", "3", "-s", "100", "--no-metrics", "-q", "--db", db)
    for pacing, loop in (("auto", ""), ("spin", "asyncio")):
        monkeypatch.setenv("LOADGEN_EVENT_LOOP", loop)
        result = loadgen_here(
            "sweep",
            "-m",
            "identity",
            "-u",
            triton.grpc_url,
            "--request-rate",
            "200",
            "--pacing",
            pacing,
            *quick,
        )
        assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        steps = [store.steps(run.id)[0] for run in store.list_runs()]
    assert len(steps) == 2
    for step in steps:
        assert not step.behind_schedule and step.error_count == 0, step
        assert step.sent_count is not None and step.sent_count / step.duration_s == pytest.approx(
            200, rel=0.05
        )
        lag = step.send_lag_histogram()
        assert lag is not None and lag.percentile_us(50) < 5_000  # ms-precise asyncio timers would show

    monkeypatch.setenv("LOADGEN_EVENT_LOOP", "tokio")
    bad = loadgen_here("sweep", "-m", "identity", "-u", triton.grpc_url, "--request-rate", "200", *quick)
    assert (
        bad.returncode == 2
        and "LOADGEN_EVENT_LOOP='tokio': must be auto, asyncio, uvloop" in one_line_error(bad)
    )
    monkeypatch.delenv("LOADGEN_EVENT_LOOP")
    closed = loadgen_here(
        "sweep", "-m", "identity", "-u", triton.grpc_url, "--concurrency", "1", "--pacing", "spin"
    )
    assert closed.returncode == 2 and "--pacing applies to open-loop loads only" in one_line_error(closed)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_plain_sends_are_written_when_decided_not_in_a_task_each(
    triton: EmbeddedServer, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot's first send connects in a task; every later one is written by ``send_due`` itself
    and finished by its answer's callback, stamped, recorded and drained like the others."""
    tasks: list[int] = []
    one = OpenLoop._one

    async def counted(self: OpenLoop, *args: Any) -> None:
        tasks.append(1)
        await one(self, *args)

    monkeypatch.setattr(OpenLoop, "_one", counted)

    async def main() -> tuple[OpenWindow, int, int]:
        url = triton.http_url if protocol == "http" else triton.grpc_url
        api, transport = ServerAPI(url, protocol), make_transport(protocol, url)
        metadata, config = await api.model_metadata("identity"), await api.model_config("identity")
        await api.close()
        specs = build_requests(metadata, config, batch_size=1, input_data="random", seed=0)
        requests = [transport.prepare(spec) for spec in specs]
        load = OpenLoop(transport, requests, Schedule(rate=400.0))
        load.start()
        load.swap(OpenWindow())
        await asyncio.sleep(1.0)
        window = await load.cut()
        await load.stop()
        await transport.close()
        return window, load._created, load.in_flight

    window, slots, in_flight = asyncio.run(main())
    assert window.sent == pytest.approx(400, rel=0.1) and window.requests >= window.sent - slots
    assert not window.errors and window.refused == 0
    assert window.lag.count == window.sent  # every send stamped once, written at once or not
    assert 1 <= len(tasks) <= slots < window.sent / 4  # only a slot's first send needed a task
    assert in_flight == 0  # stop() waited for the written sends too
