"""``--streaming`` over HTTP (Triton's generate_stream, server-sent events) against the real server:
token_stream's pacing as the gRPC stream measures it, streams with no response and streams that
fail midway. One closed-loop slot each (token_stream: tests/integration/test_streaming.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord

D0_MS, TOKEN_MS, TOKENS = 50.0, 10.0, 8
"""token_stream's config (model_repository/token_stream/config.pbtxt)."""
GENERATION_MS = D0_MS + (TOKENS - 1) * TOKEN_MS
MEASURE = MeasurementSettings(
    measurement_interval_ms=700, warmup_ms=150, max_windows=3, stability_percentage=25
)
QUICK = MeasurementSettings(measurement_interval_ms=1000, warmup_ms=200, max_windows=1)
"""Counting, not timing: one window."""


def _data(tmp_path: Path, name: str, entries: list[dict[str, list[object]]]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"data": entries}))
    return path


def _one_step(
    triton: EmbeddedServer,
    tmp_path: Path,
    model: str,
    data: Path,
    *,
    protocol: Literal["grpc", "http"] = "http",
    measurement: MeasurementSettings = MEASURE,
) -> StepRecord:
    settings = SweepSettings(
        model=model,
        levels=(1,),
        protocol=protocol,
        url=triton.http_url if protocol == "http" else triton.grpc_url,
        grpc_client="aio",  # gRPC's own library: the reference
        metrics_url="",
        input_data=str(data),
        streaming=True,
        measurement=measurement,
    )
    with RunStore(f"sqlite:///{tmp_path}/{model}-{protocol}.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.status is RunStatus.COMPLETED, outcome.error
        (step,) = store.steps(outcome.run_id)
        return step


def test_server_sent_events_time_a_stream_as_the_grpc_stream_does(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    prompts = _data(tmp_path, "prompts", [{"PROMPT": [word]} for word in ("hello", "streams", "of tokens")])
    sse = _one_step(triton, tmp_path, "token_stream", prompts)
    stream = sse.stream()
    assert stream is not None and sse.error_count == 0 and sse.request_count > 0
    assert stream.counts.min_us == stream.counts.max_us == TOKENS  # exactly n responses each
    assert sse.response_count == TOKENS * sse.request_count
    assert sse.responses_per_request == TOKENS
    assert sse.first_response_p50_us == pytest.approx(D0_MS * 1000, rel=0.10)
    assert sse.inter_response_p50_us == pytest.approx(TOKEN_MS * 1000, rel=0.10)
    assert sse.lat_p50_us == pytest.approx(GENERATION_MS * 1000, rel=0.10)  # the end of the body
    grpc = _one_step(triton, tmp_path, "token_stream", prompts, protocol="grpc")
    for field in ("first_response_p50_us", "inter_response_p50_us"):
        assert getattr(sse, field) == pytest.approx(getattr(grpc, field), rel=0.10), field
    assert grpc.responses_per_request == TOKENS


def test_empty_streams_and_streams_that_fail_midway_are_counted_over_http(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    empty_data = _data(tmp_path, "empty", [{"COUNT": [0]}])
    empty = _one_step(triton, tmp_path, "stream_sometimes_empty", empty_data, measurement=QUICK)
    stream = empty.stream()
    assert stream is not None and empty.error_count == 0 and empty.request_count > 0
    assert stream.counts.count == empty.request_count and stream.counts.max_us == 0  # ended, no response
    assert empty.response_count == 0 and empty.responses_per_request == 0
    # one slot cycles through the entries in order: every other request fails after 2 responses
    failing_data = _data(tmp_path, "failing", [{"FAIL_AFTER": [-1]}, {"FAIL_AFTER": [2]}])
    failing = _one_step(triton, tmp_path, "stream_fails_midway", failing_data, measurement=QUICK)
    stream = failing.stream()
    assert stream is not None and failing.request_count > 0
    assert failing.errors == {"INTERNAL: failed after 2 responses": failing.error_count}
    assert failing.error_count == pytest.approx(failing.request_count, abs=2)
    assert stream.counts.min_us == stream.counts.max_us == 8  # the failed ones are errors, not streams
