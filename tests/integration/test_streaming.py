"""``--streaming`` against the real server's decoupled ``token_stream`` (first response after
FIRST_TOKEN_MS, then MAX_TOKENS responses TOKEN_MS apart, at most MAX_ACTIVE generations at once)."""

from __future__ import annotations

import asyncio
import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from analysis.tables import benchmark_table
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.errors import ConfigError
from loadgen.results import RunStatus
from loadgen.runner import execute_sweep
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore, StepRecord
from tests.cli import loadgen_here, one_line_error

D0_MS, TOKEN_MS, TOKENS, ACTIVE = 50.0, 10.0, 8, 4
"""token_stream's config (model_repository/token_stream/config.pbtxt)."""
GENERATION_MS = D0_MS + (TOKENS - 1) * TOKEN_MS
MEASURE = MeasurementSettings(
    measurement_interval_ms=700, warmup_ms=150, max_windows=3, stability_percentage=25
)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """Prompts only: MAX_TOKENS is optional, so the model's default length applies."""
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"data": [{"PROMPT": [word]} for word in ("hello", "streams", "of tokens")]}))
    return path


def _sweep(
    triton: EmbeddedServer, db: str, prompts: Path, levels: tuple[int, ...], workers: int | None = None
) -> list[StepRecord]:
    settings = SweepSettings(
        workers=workers,
        model="token_stream",
        levels=levels,
        url=triton.grpc_url,
        metrics_url="",
        input_data=str(prompts),
        streaming=True,
        measurement=MEASURE,
    )
    with RunStore(db) as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.status is RunStatus.COMPLETED, outcome.error
        return store.steps(outcome.run_id)


def test_a_stream_is_timed_response_by_response_and_queues_like_an_llm_server(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    alone, crowded = _sweep(triton, f"sqlite:///{tmp_path}/runs.db", prompts, (1, 2 * ACTIVE))
    for step in (alone, crowded):
        assert step.error_count == 0 and step.request_count > 0
        stream = step.stream()
        assert stream is not None
        assert stream.counts.min_us == stream.counts.max_us == TOKENS  # exactly n responses each
        assert step.response_count == TOKENS * stream.counts.count
        assert step.responses_per_request == TOKENS
    # one stream at a time: the model's own pacing, first response within 10% of D0
    assert alone.first_response_p50_us == pytest.approx(D0_MS * 1000, rel=0.10)
    assert alone.inter_response_p50_us == pytest.approx(TOKEN_MS * 1000, rel=0.10)
    assert alone.lat_p50_us == pytest.approx(GENERATION_MS * 1000, rel=0.10)  # the final response
    assert alone.request_output_rate_p50 == pytest.approx(1000 / TOKEN_MS, rel=0.10)  # its own pace
    # twice MAX_ACTIVE streams in a closed loop: half of them wait for a whole generation first
    waited = crowded.first_response_p99_us
    assert waited is not None and waited >= (D0_MS + 0.8 * GENERATION_MS) * 1000, waited
    assert crowded.throughput == pytest.approx(ACTIVE / (GENERATION_MS / 1000), rel=0.25)


def test_streams_measured_by_two_workers_merge_exactly(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    (step,) = _sweep(triton, f"sqlite:///{tmp_path}/runs.db", prompts, (ACTIVE,), workers=2)
    stream = step.stream()
    assert stream is not None and step.error_count == 0
    assert stream.counts.count == step.request_count  # every finished request, from both workers
    assert step.response_count == TOKENS * step.request_count
    assert stream.gaps.count == (TOKENS - 1) * step.request_count
    assert step.first_response_p50_us == pytest.approx(D0_MS * 1000, rel=0.10)


def test_the_cli_streams_and_tables_show_it(triton: EmbeddedServer, tmp_path: Path, prompts: Path) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    quick = ["-p", "700ms", "--warmup", "150ms", "-r", "3", "--no-metrics", "-q"]
    unary = loadgen_here("sweep", "-m", "token_stream", "-u", triton.grpc_url, "--db", db, *quick)
    assert unary.returncode == 2
    assert "is decoupled" in one_line_error(unary) and "add --streaming" in one_line_error(unary)
    csv_path = tmp_path / "out.csv"
    streamed = loadgen_here(
        "sweep", "-m", "token_stream", "--streaming", "--input-data", str(prompts), "-u", triton.grpc_url,
        "--db", db, "--csv", str(csv_path), *quick,
    )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    with csv_path.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["Concurrency"] == "1" and int(row["Responses"]) == TOKENS * int(row["Request Count"])
    assert float(row["First response p50"]) == pytest.approx(D0_MS * 1000, rel=0.10)  # perf_analyzer's us
    table = loadgen_here("table", "1", "--format", "csv", "--db", db)
    header = table.stdout.splitlines()[0]
    for column in (
        "Responses/s",
        "First response p50 (ms)",
        "Inter-response p50 (ms)",
        "Responses per request",
    ):
        assert column in header, header


def _data(tmp_path: Path, name: str, entries: list[dict[str, list[int]]]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"data": entries}))
    return path


def _one_step(
    triton: EmbeddedServer, tmp_path: Path, model: str, data: Path, client: str = "h2"
) -> StepRecord:
    settings = SweepSettings(
        model=model,
        levels=(1,),
        url=triton.grpc_url,
        metrics_url="",
        input_data=str(data),
        streaming=True,
        grpc_client=client,
        measurement=MEASURE,
    )
    with RunStore(f"sqlite:///{tmp_path}/{model}-{client}.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        (step,) = store.steps(outcome.run_id)
        return step


def test_empty_streams_and_streams_that_fail_midway_are_counted_right(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    """One slot cycles through the entries in order, so each kind is half of the requests."""
    empty = _one_step(
        triton, tmp_path, "stream_sometimes_empty", _data(tmp_path, "e", [{"COUNT": [0]}, {"COUNT": [3]}])
    )
    stream = empty.stream()
    assert stream is not None and empty.error_count == 0
    assert stream.counts.min_us == 0 and stream.counts.max_us == 3  # a stream with no response ends
    assert empty.response_count == 3 * stream.first.count  # the streams that had responses
    assert stream.first.count == pytest.approx(stream.counts.count / 2, abs=1)
    failing = _one_step(
        triton,
        tmp_path,
        "stream_fails_midway",
        _data(tmp_path, "f", [{"FAIL_AFTER": [-1]}, {"FAIL_AFTER": [2]}]),
    )
    stream = failing.stream()
    assert stream is not None
    assert failing.errors == {"INTERNAL: failed after 2 responses": failing.error_count}
    assert failing.error_count == pytest.approx(failing.request_count, abs=2)  # every other request
    assert stream.counts.min_us == stream.counts.max_us == 8  # the failed ones are errors, not streams


def test_the_lean_and_the_grpc_library_streams_agree(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    lean, library = (_one_step(triton, tmp_path, "token_stream", prompts, client) for client in ("h2", "aio"))
    for field in ("first_response_p50_us", "inter_response_p50_us", "lat_p50_us"):
        assert getattr(lean, field) == pytest.approx(getattr(library, field), rel=0.05), field
    assert lean.responses_per_request == library.responses_per_request == TOKENS


def test_open_loop_streams_time_the_first_response_from_the_intended_send(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    """Below capacity (4 generations of 120 ms: 33 streams/s) the first response comes after D0;
    above it the backlog shows in the first response, measured from when each was due."""
    settings = SweepSettings(
        model="token_stream",
        levels=(10.0, 60.0),
        scenario="request_rate",
        url=triton.grpc_url,
        metrics_url="",
        input_data=str(prompts),
        streaming=True,
        measurement=MEASURE,
    )
    with RunStore(f"sqlite:///{tmp_path}/runs.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        easy, over = store.steps(outcome.run_id)
    assert easy.error_count == 0 and easy.responses_per_request == TOKENS
    assert easy.first_response_p50_us == pytest.approx(D0_MS * 1000, rel=0.15)
    assert over.first_response_p99_us is not None and over.first_response_p99_us > 500_000
    assert over.service_p99_us is not None  # service time (from the actual send) is kept too


def test_cancelled_streams_are_counted_apart_and_free_the_server(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    """Half the requests cancelled at their 2nd token (~60 ms of a 120 ms generation): counted
    apart, never as errors or answers; the other half answer all 8 tokens."""
    settings = SweepSettings(
        model="token_stream",
        levels=(2,),
        url=triton.grpc_url,
        metrics_url="",
        input_data=str(prompts),
        streaming=True,
        grpc_client="aio",  # the h2 client's cancel (RST_STREAM) runs in the CLI test below
        cancel_after_responses=2,
        cancel_share_pct=50.0,
        measurement=MEASURE,
    )
    with RunStore(f"sqlite:///{tmp_path}/runs.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        (step,) = store.steps(outcome.run_id)
    assert step.error_count == 0 and step.cancelled_count is not None
    assert step.cancelled_count == pytest.approx(step.request_count, abs=2)  # every other request
    assert step.responses_per_request == TOKENS  # those answered streamed to their end
    # a cancelled generation frees its worker: cycles of 60 + 120 ms per pair of requests, not 240
    assert step.request_count + step.cancelled_count >= 0.8 * 2 * step.duration_s / 0.09


def test_a_deadline_before_the_first_response_cancels_every_request(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    result = loadgen_here(
        "sweep", "-m", "token_stream", "--streaming", "--cancel-after-ms", "20ms", "-u", triton.grpc_url,
        "--input-data", str(prompts), "-p", "700ms", "--warmup", "150ms", "-r", "3", "--no-metrics", "-q",
        "--db", db,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with RunStore(db) as store:
        (run,) = store.list_runs()
        (step,) = store.steps(run.id)
    assert step.request_count == 0 and step.error_count == 0
    assert step.cancelled_count is not None and step.cancelled_count >= 0.8 * step.duration_s / 0.02
    usage = loadgen_here(
        "sweep", "-m", "token_stream", "--cancel-after-ms", "20", "-u", triton.grpc_url, "--db", db
    )
    assert usage.returncode == 2 and "cancelling needs --streaming" in one_line_error(usage)


def _validated(
    triton: EmbeddedServer, tmp_path: Path, model: str, prompts: Path, *, http_at_rate: float = 0.0
) -> StepRecord:
    """One validated step: gRPC at concurrency 4, or over HTTP (server-sent events) at a rate."""
    settings = SweepSettings(
        model=model,
        levels=(http_at_rate,) if http_at_rate else (4,),
        scenario="request_rate" if http_at_rate else "concurrency",
        protocol="http" if http_at_rate else "grpc",
        url=triton.http_url if http_at_rate else triton.grpc_url,
        metrics_url="",
        input_data=str(prompts),
        streaming=True,
        validate=True,
        measurement=MEASURE,
    )
    with RunStore(f"sqlite:///{tmp_path}/{model}-{http_at_rate}.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        assert outcome.status is not RunStatus.FAILED, outcome.error
        (step,) = store.steps(outcome.run_id)
        return step


@pytest.mark.parametrize("http_at_rate", [0.0, 25.0], ids=["grpc-closed-loop", "http-open-loop"])
def test_validate_checks_whole_streams_and_catches_tokens_mixed_between_requests(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path, http_at_rate: float
) -> None:
    """token_stream is deterministic; stream_swapping puts another running generation's stem in
    every third token: right alone (the references), wrong under concurrency. Over HTTP the
    events' JSON values are the tensors compared; at 25 streams/s about 3 generate at once."""
    right = _validated(triton, tmp_path, "token_stream", prompts, http_at_rate=http_at_rate)
    assert right.validated_count == right.request_count > 0 and right.mismatch_count == 0
    mixed = _validated(triton, tmp_path, "stream_swapping", prompts, http_at_rate=http_at_rate)
    assert mixed.validated_count == mixed.request_count > 0
    assert mixed.mismatch_count is not None and mixed.mismatch_count >= 0.8 * mixed.request_count
    assert mixed.swapped_count == mixed.mismatch_count  # each carries another request's tokens
    assert mixed.validation is not None and "TOKEN[2]" in mixed.validation["outputs"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_token_output_counts_the_elements_of_a_named_output(
    triton: EmbeddedServer, tmp_path: Path, protocol: Literal["grpc", "http"]
) -> None:
    """identity (not decoupled: one response per request) answers OUTPUT0 of 16 floats: 16 tokens."""
    settings = SweepSettings(
        model="identity",
        levels=(2,),
        url=triton.grpc_url if protocol == "grpc" else triton.http_url,
        protocol=protocol,
        metrics_url="",
        streaming=True,
        token_output="OUTPUT0",
        measurement=MEASURE,
    )
    with RunStore(f"sqlite:///{tmp_path}/runs.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        (step,) = store.steps(outcome.run_id)
        table = benchmark_table(store.steps(outcome.run_id), scenario="concurrency")
    assert step.error_count == 0 and step.request_count > 0
    assert step.response_count == step.request_count and step.token_count == 16 * step.request_count
    assert table["Tokens/s"].iloc[0] == pytest.approx(16 * table["Responses/s"].iloc[0])


def test_expected_outputs_of_the_input_file_check_one_response_streams(
    triton: EmbeddedServer, tmp_path: Path, prompts: Path
) -> None:
    """identity over the stream answers once per request: validation_data is its stream's only
    response (one entry in two expects a wrong value); a decoupled model's are refused."""
    inputs = [[float(i + k) for k in range(16)] for i in range(2)]
    expected = [inputs[0], [*inputs[1][:3], -1.0, *inputs[1][4:]]]
    path = tmp_path / "identity.json"
    path.write_text(
        json.dumps(
            {"data": [{"INPUT0": x} for x in inputs], "validation_data": [{"OUTPUT0": y} for y in expected]}
        )
    )
    settings = SweepSettings(
        model="identity",
        levels=(2,),
        url=triton.grpc_url,
        metrics_url="",
        input_data=str(path),
        streaming=True,
        validate=True,
        measurement=MeasurementSettings(measurement_interval_ms=700, warmup_ms=100, max_windows=1),
    )
    with RunStore(f"sqlite:///{tmp_path}/runs.db") as store:
        outcome = asyncio.run(execute_sweep(settings, store))
        (step,) = store.steps(outcome.run_id)
    assert step.validated_count == step.request_count > 0 and step.swapped_count == 0
    assert step.mismatch_count == pytest.approx(step.request_count / 2, abs=2)
    assert step.validation is not None and "OUTPUT0[0]" in step.validation["outputs"]

    decoupled = json.loads(prompts.read_text())
    decoupled["validation_data"] = [{"TOKEN": ["x"]} for _ in decoupled["data"]]
    prompts.write_text(json.dumps(decoupled))
    refused = replace(settings, model="token_stream", input_data=str(prompts))
    with RunStore(f"sqlite:///{tmp_path}/runs.db") as store, pytest.raises(ConfigError) as error:
        asyncio.run(execute_sweep(refused, store))
    assert "expected outputs are one answer per request, and model 'token_stream' streams" in str(error.value)
