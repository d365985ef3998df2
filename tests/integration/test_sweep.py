"""Sweeps against the real embedded Triton: what the core issue's "done" list demands."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.engine.sweep import run_sweep
from loadgen.inputs import build_requests
from loadgen.results import RunStatus, StepResult
from loadgen.runner import execute_sweep
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from loadgen.transports import make_transport
from loadgen.transports.base import InputTensor

FAST = MeasurementSettings(measurement_interval_ms=700, warmup_ms=200, max_windows=4)


def _settings(
    triton: EmbeddedServer, model: str, levels: tuple[int, ...], measurement: MeasurementSettings = FAST
) -> SweepSettings:
    return SweepSettings(
        model=model,
        levels=levels,
        url=triton.grpc_url,
        metrics_url=triton.metrics_url,
        measurement=measurement,
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(f"sqlite:///{tmp_path / 'runs.db'}")


def test_identity_sweep_stores_consistent_steps(triton: EmbeddedServer, store: RunStore) -> None:
    outcome = asyncio.run(execute_sweep(_settings(triton, "identity", (1, 4)), store))
    assert outcome.status is RunStatus.COMPLETED
    run = store.get_run(outcome.run_id)
    assert run.status is RunStatus.COMPLETED and run.ended_at is not None
    assert run.server_metadata["version"]
    assert run.model_config["max_batch_size"] == 64
    steps = store.steps(outcome.run_id)
    assert [s.concurrency for s in steps] == [1, 4]
    for stored, measured in zip(steps, outcome.steps, strict=True):
        assert stored.throughput > 0
        assert stored.error_count == 0
        assert stored.lat_min_us is not None and stored.lat_max_us is not None
        assert stored.lat_p50_us <= stored.lat_p90_us <= stored.lat_p95_us <= stored.lat_p99_us  # type: ignore[operator]
        assert stored.lat_p99_us <= stored.lat_max_us  # type: ignore[operator]
        assert stored.server_queue_us and stored.server_queue_us > 0
        assert stored.server_compute_infer_us and stored.server_compute_infer_us > 0
        assert stored.server_compute_input_us and stored.server_compute_input_us > 0
        assert stored.server_compute_output_us and stored.server_compute_output_us > 0
        # the stored histogram is the measured one: percentiles are read back, not recomputed
        assert stored.histogram() == measured.histogram
        assert stored.histogram().count == stored.request_count
        # batch_stats executions add up to the /stats execution delta of the step
        batches = store.batch_stats(stored.id)
        assert batches
        assert sum(b.execution_count for b in batches) == stored.server_execution_count
        assert sum(b.execution_count * b.batch_size for b in batches) == stored.server_inference_count
        # the server saw (about) what the client measured over the same windows
        assert stored.server_success_count == pytest.approx(stored.request_count, rel=0.1, abs=20)
    samples = store.metric_samples(step_id=steps[0].id)
    names = {s.name for s in samples}
    assert {"nv_inference_count", "nv_inference_request_success"} <= names
    assert all(s.labels.get("model") for s in samples if s.name == "nv_inference_count")


def test_fixed_latency_obeys_queueing_theory(triton: EmbeddedServer, store: RunStore) -> None:
    service_s = 0.010  # SERVICE_TIME_MS in model_repository/fixed_latency/config.pbtxt
    outcome = asyncio.run(execute_sweep(_settings(triton, "fixed_latency", (1, 2, 4, 8)), store))
    assert outcome.status is RunStatus.COMPLETED
    steps = store.steps(outcome.run_id)
    assert steps[0].lat_p50_us is not None and steps[0].lat_p50_us >= service_s * 1e6
    # margins that hold on a busy 2-core machine: a wrong count or a lost request is off by far more
    for step in steps:
        assert 0.85 * (1 / service_s) <= step.throughput <= 1.005 * (1 / service_s), step
        # Little's law: throughput x mean latency = requests in flight
        assert step.lat_avg_us is not None
        assert step.throughput * step.lat_avg_us / 1e6 == pytest.approx(step.concurrency, rel=0.05)
        if step.concurrency > 1:  # the server queue holds the others: latency ~ C x S
            assert step.lat_avg_us / 1e6 == pytest.approx(step.concurrency * service_s, rel=0.15)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_failed_requests_are_counted_with_the_server_message(triton: EmbeddedServer, protocol: str) -> None:
    url = triton.http_url if protocol == "http" else triton.grpc_url
    settings = replace(
        _settings(triton, "identity", (2,), measurement=replace(FAST, max_windows=3)),
        url=url,
        protocol=protocol,  # type: ignore[arg-type]
    )

    async def sweep() -> list[StepResult]:
        api = ServerAPI(url, protocol)
        transport = make_transport(protocol, url)
        try:
            metadata = await api.model_metadata("identity")
            config = await api.model_config("identity")
            (request,) = build_requests(metadata, config, batch_size=1, input_data="zero", seed=0)
            bad = replace(request, inputs=(InputTensor("INPUT0", "FP32", (1, 15), bytes(60)),))
            return await run_sweep(settings, [bad], transport, api, lambda step: None)
        finally:
            await transport.close()
            await api.close()

    (step,) = asyncio.run(sweep())
    assert step.request_count == 0
    assert step.error_count > 10
    ((reason, count),) = step.errors.items()
    # one spelling on both protocols: gRPC's code (HTTP 400 read back), no request id
    assert reason.startswith("INVALID_ARGUMENT: unexpected shape for input 'INPUT0'"), reason
    assert count == step.error_count
    assert not step.stable  # no successful request: never stable, but stored
