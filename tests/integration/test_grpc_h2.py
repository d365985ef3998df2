"""The minimal HTTP/2 gRPC transport against the real embedded Triton: sweeps without errors, the
same error reasons as the grpc.aio transport, errors (not a hang) when the server goes away, and
the right output bytes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.sweep import run_sweep
from loadgen.inputs import build_requests
from loadgen.results import StepResult
from loadgen.scrape.server_api import ServerAPI
from loadgen.server import EmbeddedServer, ServerPorts, server_installed
from loadgen.tls import TlsSettings
from loadgen.transports.base import InferRequestSpec, InputTensor
from loadgen.transports.grpc import GrpcTransport
from loadgen.transports.grpc_codec import SLOTS_PER_CHANNEL
from loadgen.transports.grpc_h2 import GrpcH2Transport
from loadgen.transports.reasons import is_connection_failure
from tests.integration.conftest import discard
from tests.pki import make_pki

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "identity"
FAST = MeasurementSettings(measurement_interval_ms=700, warmup_ms=200, max_windows=4)
INPUT = np.arange(16, dtype=np.float32).reshape(1, 16)
GOOD = InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (1, 16), INPUT.tobytes()),))


def _settings(server: EmbeddedServer, levels: tuple[int, ...], **changes: Any) -> SweepSettings:
    return SweepSettings(
        model="identity",
        levels=levels,
        url=server.grpc_url,
        metrics_url="",  # no scraping: only the transport is under test
        measurement=FAST,
        workers=1,  # in this process, with this transport
        **changes,
    )


async def _sweep(
    server: EmbeddedServer,
    levels: tuple[int, ...],
    requests: list[InferRequestSpec] | None = None,
    on_step: Callable[[StepResult, GrpcH2Transport], None] = lambda step, transport: None,
    max_connections: int | None = None,
) -> list[StepResult]:
    api = ServerAPI(server.grpc_url, "grpc")
    transport = GrpcH2Transport(server.grpc_url, max_connections=max_connections)
    try:
        if requests is None:
            metadata = await api.model_metadata("identity")
            config = await api.model_config("identity")
            requests = build_requests(metadata, config, batch_size=1, input_data="random", seed=0)
        settings = _settings(server, levels)
        return await run_sweep(settings, requests, transport, api, lambda step: on_step(step, transport))
    finally:
        await transport.close()
        await api.close()


def test_sweeps_have_no_errors_up_to_several_connections(triton: EmbeddedServer) -> None:
    levels = (1, 8, 300)  # 300 slots: five connections of up to 64 streams each
    connections: dict[int, set[int]] = {}

    def count_connections(step: StepResult, transport: GrpcH2Transport) -> None:
        open_ = {transport.channel(slot).connection for slot in range(step.concurrency)}
        connections[step.concurrency] = {id(c) for c in open_ if c is not None and c.usable}

    steps = asyncio.run(_sweep(triton, levels, on_step=count_connections))
    assert {c: len(ids) for c, ids in connections.items()} == {1: 1, 8: 1, 300: -(-300 // SLOTS_PER_CHANNEL)}
    assert [s.concurrency for s in steps] == list(levels)
    _assert_clean(steps)


def _assert_clean(steps: list[StepResult]) -> None:
    for step in steps:
        assert step.error_count == 0, step.errors
        assert step.request_count > 50 and step.throughput > 0
        assert step.histogram.count == step.request_count
        assert step.server_stats is not None  # the server counted what the client saw
        assert step.server_stats.success.count == pytest.approx(step.request_count, rel=0.1, abs=20)


def test_max_connections_multiplexes_every_slot_over_that_many(triton: EmbeddedServer) -> None:
    """``--max-connections 2``: 300 in flight over two connections, 150 streams each."""
    used: set[int] = set()

    def count_connections(step: StepResult, transport: GrpcH2Transport) -> None:
        open_ = {transport.channel(slot).connection for slot in range(step.concurrency)}
        used.update(id(c) for c in open_ if c is not None and c.usable)

    steps = asyncio.run(_sweep(triton, (300,), on_step=count_connections, max_connections=2))
    assert len(used) == 2
    _assert_clean(steps)


BAD_REQUESTS = [
    InferRequestSpec("no_such_model", GOOD.inputs),
    InferRequestSpec("identity", GOOD.inputs, model_version="99"),
    InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (1, 15), bytes(60)),)),
    InferRequestSpec("identity", (InputTensor("INPUT0", "INT32", (1, 16), bytes(64)),)),
    InferRequestSpec("identity", (InputTensor("NOPE", "FP32", (1, 16), bytes(64)),)),
]


def test_error_reasons_match_the_grpc_aio_transport(triton: EmbeddedServer) -> None:
    async def reasons(transport: GrpcH2Transport | GrpcTransport) -> list[str | None]:
        try:
            send = transport.sender(0)
            return [await send(transport.prepare(spec)) for spec in [GOOD, *BAD_REQUESTS]]
        finally:
            await transport.close()

    h2 = asyncio.run(reasons(GrpcH2Transport(triton.grpc_url)))
    aio = asyncio.run(reasons(GrpcTransport(triton.grpc_url)))
    assert h2 == aio
    assert h2[0] is None
    assert h2[1] is not None and h2[1].startswith("NOT_FOUND: ") and "no_such_model" in h2[1]
    assert all(r is not None and r.startswith(("NOT_FOUND: ", "INVALID_ARGUMENT: ")) for r in h2[1:])


def test_a_sweep_of_bad_requests_counts_the_server_message(triton: EmbeddedServer) -> None:
    bad = BAD_REQUESTS[2]
    (step,) = asyncio.run(_sweep(triton, (4,), [bad]))

    async def aio_reason() -> str | None:
        transport = GrpcTransport(triton.grpc_url)
        try:
            return await transport.sender(0)(transport.prepare(bad))
        finally:
            await transport.close()

    assert step.request_count == 0 and step.error_count > 10
    assert step.errors == {asyncio.run(aio_reason()): step.error_count}


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_server_that_goes_away_gives_errors_not_a_hang(small_triton: EmbeddedServer, how: str) -> None:
    async def run() -> None:
        transport = GrpcH2Transport(small_triton.grpc_url)
        prepared = transport.prepare(GOOD)
        load = ClosedLoop(transport, [prepared], 8)
        try:
            load.start()
            await asyncio.sleep(0.5)
            await load.cut()
            await asyncio.sleep(0.5)
            before = await load.cut()
            assert before.requests > 0 and not before.errors
            await asyncio.get_running_loop().run_in_executor(
                None, small_triton.stop if how == "stop" else small_triton.kill
            )
            await asyncio.sleep(0.5)
            after = await load.cut()
            assert await asyncio.wait_for(load.stop(), 10) == 8
            assert any(is_connection_failure(reason) for reason in after.errors), after.errors
            reason = await asyncio.wait_for(transport.sender(0)(prepared), 10)
            assert reason is not None and reason.startswith("CONNECTION: cannot connect to ")
            assert reason.endswith(": Connection refused"), reason
        finally:
            load.cancel()
            await transport.close()

    asyncio.run(run())


def test_the_response_carries_the_input_back(triton: EmbeddedServer) -> None:
    batch = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    spec = InferRequestSpec("identity", (InputTensor("INPUT0", "FP32", (64, 16), batch.tobytes()),))

    async def run() -> tuple[tuple[str | None, bytes], tuple[str | None, Any], dict[str, Any]]:
        transport = GrpcH2Transport(triton.grpc_url, headers={"X-Loadgen-Test": "yes"})
        try:
            prepared = transport.prepare(spec)
            called = await transport.call(prepared, slot=3)
            captured = await transport.capture_sender(5)(prepared)
            outputs = transport.parse_outputs(captured[1])
            return called, captured, outputs
        finally:
            await transport.close()

    (reason, body), (captured_reason, captured_outputs), outputs = asyncio.run(run())
    assert reason is None and captured_reason is None
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    assert captured_outputs == outputs  # --validate reads the outputs in the capture sender
    response = service_pb2.ModelInferResponse.FromString(body[5:])
    assert response.model_name == "identity"
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", "FP32", [64, 16])
    assert response.raw_output_contents[0] == batch.tobytes()
    assert outputs["OUTPUT0"].data == batch.tobytes() and outputs["OUTPUT0"].shape == (64, 16)


def test_a_request_larger_than_the_windows_and_frames(triton: EmbeddedServer) -> None:
    """resnet's 602 kB input: split into frames and paced by the server's flow-control windows."""
    image = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    spec = InferRequestSpec("resnet", (InputTensor("INPUT__0", "FP32", (1, 3, 224, 224), image.tobytes()),))

    async def run() -> list[tuple[str | None, bytes]]:
        transport = GrpcH2Transport(triton.grpc_url)
        try:
            prepared = transport.prepare(spec)
            # two at once, before the server's SETTINGS raise the 64 KiB default windows
            return list(await asyncio.gather(transport.call(prepared), transport.call(prepared)))
        finally:
            await transport.close()

    for reason, body in asyncio.run(run()):
        assert reason is None, reason
        (output,) = service_pb2.ModelInferResponse.FromString(body[5:]).outputs
        assert list(output.shape) == [1, 1000]


@pytest.mark.server
def test_tls_with_alpn_h2(tmp_path: Path) -> None:
    """Triton's own gRPC TLS: the same client with ``ssl=``, HTTP/2 agreed through ALPN."""
    if not server_installed():
        if os.environ.get("LOADGEN_REQUIRE_SERVER"):
            pytest.fail("embedded Triton not installed: pip install 'loadgen[server]'")
        pytest.skip("embedded Triton not installed: pip install 'loadgen[server]'")
    pki = make_pki(tmp_path / "pki")
    models = tmp_path / "models"  # identity only: starts in a second or two
    shutil.copytree(MODEL_DIR, models / "identity", ignore=shutil.ignore_patterns("__pycache__"))
    tls_args = [f"--grpc-server-cert={pki.server_cert}", f"--grpc-server-key={pki.server_key}"]
    server = EmbeddedServer(
        models,
        ServerPorts.free(),
        log_file=tmp_path / "tritonserver.log",
        extra_args=["--grpc-use-ssl=true", *tls_args, f"--grpc-root-cert={pki.ca}"],
        startup_timeout_s=90,
    )

    async def run() -> tuple[tuple[str | None, bytes], str | None]:
        secure = GrpcH2Transport(server.grpc_url, ssl=TlsSettings(ca_file=str(pki.ca)).ssl_context())
        plain = GrpcH2Transport(server.grpc_url)
        try:
            answer = await secure.call(secure.prepare(GOOD))
            refused = await asyncio.wait_for(plain.sender(0)(plain.prepare(GOOD)), 10)
            return answer, refused
        finally:
            await secure.close()
            await plain.close()

    server.start()
    try:
        (reason, body), refused = asyncio.run(run())
    finally:
        discard(server)
    assert reason is None
    assert service_pb2.ModelInferResponse.FromString(body[5:]).raw_output_contents[0] == INPUT.tobytes()
    assert refused is not None and refused.startswith("CONNECTION: ")
