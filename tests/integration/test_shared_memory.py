"""``--shared-memory system`` against the real server: the same answers as inputs sent in the
request, and no region left behind (in /dev/shm or in the server's list) whether the sweep
ends, fails or is interrupted."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.errors import ConfigError
from loadgen.runner import prepare
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer
from loadgen.shared_memory import leftover_regions, shared_inputs
from loadgen.storage import StepRecord
from loadgen.transports import make_transport
from loadgen.transports.base import InferRequestSpec, OutputTensor
from tests.cli import loadgen_here, start_loadgen, wait_for_steps
from tests.sweeps import swept

QUICK = ["-p", "700", "--warmup", "150", "-r", "3", "--no-metrics", "-q"]


Answers = list[dict[str, OutputTensor]]


async def _answers(url: str, protocol: str, requests: list[InferRequestSpec]) -> Answers:
    transport = make_transport(protocol, url)
    send = transport.capture_sender(0)
    answers = []
    try:
        for request in requests:
            error, response = await send(transport.prepare(request))
            assert error is None, error
            answers.append(transport.parse_outputs(response))
    finally:
        await transport.close()
    return answers


async def _plain_and_shared(
    triton: EmbeddedServer, protocol: Literal["grpc", "http"]
) -> tuple[Answers, Answers, list[str]]:
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    settings = SweepSettings(model="resnet", levels=(1,), url=url, protocol=protocol, validate=True)
    api = ServerAPI(url, protocol)
    try:
        _, requests, _, _ = await prepare(settings, api)
        plain = await _answers(url, protocol, requests)
        async with shared_inputs(api, requests) as placed:
            assert all(t.shared_memory is not None for spec in placed for t in spec.inputs)
            held = await api.system_memory_regions()
            shared = await _answers(url, protocol, placed)
        return plain, shared, held
    finally:
        await api.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_inputs_in_shared_memory_give_the_same_answers(
    triton: EmbeddedServer, protocol: Literal["grpc", "http"]
) -> None:
    plain, shared, held = asyncio.run(_plain_and_shared(triton, protocol))
    assert len(plain) > 1 and shared == plain  # resnet's 1000 scores, byte for byte, per request
    assert len(held) == 1 and held[0].startswith("loadgen-")  # registered while in use
    assert leftover_regions() == []
    assert asyncio.run(_regions(triton)) == []


async def _regions(triton: EmbeddedServer) -> list[str]:
    api = ServerAPI(triton.grpc_url)
    try:
        return await api.system_memory_regions()
    finally:
        await api.close()


def test_no_region_is_left_after_a_sweep_that_ends_fails_or_is_interrupted(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    settings = SweepSettings(
        model="identity",
        levels=(2,),
        url=triton.grpc_url,
        metrics_url="",
        shared_memory="system",
        validate=True,
        measurement=MeasurementSettings(measurement_interval_ms=700, warmup_ms=150, max_windows=1),
    )
    (step,) = swept(settings, db)
    assert (
        step.error_count == 0 and step.validated_count == step.request_count > 0 and step.mismatch_count == 0
    )
    assert leftover_regions() == [] and asyncio.run(_regions(triton)) == []

    failing = tmp_path / "raise.json"
    failing.write_text(json.dumps({"data": [{"CODE": [-1]}]}))  # error_code raises on every request
    result = loadgen_here(
        "sweep", "-m", "error_code", "--input-data", str(failing), "--shared-memory", "system",
        "-u", triton.grpc_url, "--concurrency", "1", *QUICK, "--db", db,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert leftover_regions() == [] and asyncio.run(_regions(triton)) == []

    interrupted = f"sqlite:///{tmp_path}/interrupted.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "--shared-memory", "system", "-u", triton.grpc_url,
        "--concurrency", "1,2,4,8", *QUICK, "--db", interrupted,
    )  # fmt: skip
    wait_for_steps(interrupted, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert leftover_regions() == [] and asyncio.run(_regions(triton)) == []


def test_a_region_the_server_cannot_map_is_one_line(triton: EmbeddedServer) -> None:
    async def refused() -> str:
        api = ServerAPI(triton.grpc_url)
        try:
            with pytest.raises(ConfigError) as error:
                await api.register_system_memory("loadgen-nowhere", "/loadgen-nowhere", 64)
            return str(error.value)
        finally:
            await api.close()

    said = asyncio.run(refused())
    assert "refused the system shared-memory region 'loadgen-nowhere'" in said and "\n" not in said
    assert "needs the server on this machine" in said


def test_no_region_is_left_in_dev_shm_when_the_server_is_killed(
    small_triton: EmbeddedServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/runs.db"
    proc = start_loadgen(
        "sweep", "-m", "identity", "--shared-memory", "system", "-u", small_triton.grpc_url,
        "--concurrency", "1,2,4,8", *QUICK, "--db", db,
    )  # fmt: skip
    wait_for_steps(db, 1, proc)
    small_triton.kill()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "server lost mid-run" in err and "Traceback" not in err
    assert leftover_regions() == []


def test_outputs_go_to_a_region_per_slot_and_a_place_too_small_fails_each_request(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    """identity answers 16 FP32 (64 bytes) per request: places of 64 bytes hold them (and
    --validate reads each answer back from its slot's region), 32 do not."""
    regions: list[list[str]] = []

    async def held_during(settings: SweepSettings) -> list[StepRecord]:
        api = ServerAPI(triton.grpc_url)
        try:
            steps = await asyncio.to_thread(swept, settings, f"sqlite:///{tmp_path}/runs-{len(regions)}.db")
            regions.append(await api.system_memory_regions())
            return steps
        finally:
            await api.close()

    base = SweepSettings(
        model="identity",
        levels=(1, 4),
        url=triton.grpc_url,
        metrics_url="",
        shared_memory="system",
        output_shared_memory_size=64,
        validate=True,
        measurement=MeasurementSettings(measurement_interval_ms=700, warmup_ms=150, max_windows=1),
    )
    steps = asyncio.run(held_during(base))
    assert all(step.error_count == 0 and step.request_count > 0 for step in steps), [s.errors for s in steps]
    assert all(step.validated_count == step.request_count and step.mismatch_count == 0 for step in steps)
    (small,) = asyncio.run(held_during(replace(base, levels=(2,), output_shared_memory_size=32)))
    assert small.request_count == 0 and small.error_count > 0
    (reason,) = small.errors
    assert "for output 'OUTPUT0' (32 bytes) should be at least 64 bytes" in reason, (
        reason
    )  # the server wrote there
    assert regions == [[], []] and leftover_regions() == []  # after each sweep: none left


def test_open_loop_senders_each_write_outputs_to_their_own_region(
    triton: EmbeddedServer, tmp_path: Path
) -> None:
    settings = SweepSettings(
        model="identity",
        levels=(200.0,),
        scenario="request_rate",
        max_in_flight=16,
        url=triton.grpc_url,
        metrics_url="",
        shared_memory="system",
        output_shared_memory_size=64,
        validate=True,
        measurement=MeasurementSettings(measurement_interval_ms=700, warmup_ms=150, max_windows=1),
    )
    (step,) = swept(settings, f"sqlite:///{tmp_path}/runs.db")
    assert step.error_count == 0 and step.request_count > 0 and step.refused_count == 0
    assert step.validated_count == step.request_count and step.mismatch_count == 0
    assert leftover_regions() == []
