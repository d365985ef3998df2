"""A server that stops answering, for real: the embedded Triton paused with SIGSTOP.

A request left unanswered fails at ``--request-timeout`` on every transport (and the transport
serves the next request once the server is back); a closed-loop window in which slots got no
answer counts them, and the step stores, tables, reports and warns about it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from analysis.finding_kinds import Kind
from analysis.findings import quality_findings
from analysis.frames import steps_frame
from analysis.tables import latency_table
from loadgen.commands.sweep import warn_unanswered
from loadgen.config import MeasurementSettings
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.recorder import Window
from loadgen.engine.step import StepListener, measure_step
from loadgen.results import RunInfo, RunStatus, StepResult, WindowResult
from loadgen.runner import SweepOutcome
from loadgen.server import EmbeddedServer
from loadgen.storage import RunStore
from loadgen.transports import make_transport
from loadgen.transports.base import InferRequestSpec, InputTensor

REQUEST = InferRequestSpec(
    "identity", (InputTensor("INPUT0", "FP32", (1, 16), np.ones((1, 16), np.float32).tobytes()),)
)


def _pid(server: EmbeddedServer) -> int:
    assert server.pid is not None
    return server.pid


@contextmanager
def paused(server: EmbeddedServer) -> Iterator[None]:
    os.kill(_pid(server), signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(_pid(server), signal.SIGCONT)


@pytest.mark.parametrize(("protocol", "client"), [("grpc", "h2"), ("grpc", "aio"), ("http", "h2")])
def test_an_unanswered_request_fails_at_the_deadline(
    triton: EmbeddedServer, protocol: str, client: str
) -> None:
    url = triton.http_url if protocol == "http" else triton.grpc_url

    async def main() -> None:
        transport = make_transport(protocol, url, grpc_implementation=client, request_timeout_s=0.5)
        try:
            call = transport.prepare(REQUEST)
            send = transport.sender(0)
            assert await send(call) is None
            with paused(triton):
                started = time.monotonic()
                reason = await asyncio.wait_for(send(call), timeout=10)
                waited = time.monotonic() - started
            assert reason is not None and reason.startswith("DEADLINE_EXCEEDED"), reason
            assert 0.45 <= waited < 3.0
            for _ in range(3):  # the server is back: the same slot is served again
                assert await asyncio.wait_for(send(call), timeout=10) is None
        finally:
            await transport.close()

    asyncio.run(main())


def test_a_window_counts_the_slots_that_got_no_answer(triton: EmbeddedServer) -> None:
    async def main() -> list[Window]:
        transport = make_transport("grpc", triton.grpc_url)
        load = ClosedLoop(transport, [transport.prepare(REQUEST)], 3)
        load.start()
        try:
            await asyncio.sleep(0.3)
            await load.cut()  # warm-up
            await asyncio.sleep(0.3)
            windows = [await load.cut()]  # served
            with paused(triton):
                await asyncio.sleep(0.2)
                windows.append(await load.cut())  # the pause began in this one
                await asyncio.sleep(0.5)
                windows.append(await load.cut())  # wholly paused
            await asyncio.sleep(0.5)
            windows.append(await load.cut())  # served again
            return windows
        finally:
            await load.stop()
            await transport.close()

    served, _, stalled, resumed = asyncio.run(main())
    assert served.requests > 0 and served.stalled == 0
    assert stalled.requests == 0 and stalled.stalled == 3
    assert resumed.requests > 0 and resumed.stalled == 0


class PauseForAWindow(StepListener):
    """Stops the server after the first window and lets it go after the third: window 3 gets
    no answer at all (the step's last three windows are 2, 3 and 4)."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        if number == 1:
            os.kill(_pid(self.server), signal.SIGSTOP)
        elif number == 3:
            os.kill(_pid(self.server), signal.SIGCONT)


def test_a_step_with_unanswered_slots_is_stored_and_flagged(
    triton: EmbeddedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # measure_step without /stats: a stopped server could not answer the snapshots between windows
    measurement = MeasurementSettings(measurement_interval_ms=500, warmup_ms=300, max_windows=4)

    async def main() -> StepResult:
        transport = make_transport("grpc", triton.grpc_url)
        load = ClosedLoop(transport, [transport.prepare(REQUEST)], 2)
        try:
            return await measure_step(0, load, measurement, batch_size=1, listener=PauseForAWindow(triton))
        finally:
            os.kill(_pid(triton), signal.SIGCONT)
            await transport.close()

    step = asyncio.run(main())
    assert step.unanswered_slots == 2 and not step.stable
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        info = RunInfo(
            settings={},
            model="identity",
            model_version="",
            scenario="concurrency",
            server_url=triton.grpc_url,
            model_config={},
            model_metadata={},
            server_metadata={},
            host={},
            started_at=step.started_at,
        )
        run_id = store.create_run(info)
        store.add_step(run_id, step)
        (stored,) = store.steps(run_id)
    assert stored.unanswered_slots == 2
    frame = steps_frame([stored])
    assert list(latency_table(frame, scenario="concurrency")["Unanswered slots"]) == [2]
    (finding,) = [f for f in quality_findings(frame) if f.kind is Kind.UNANSWERED]
    assert "up to 2 of 2 slots got no answer during a whole window" in finding.text
    warn_unanswered([SweepOutcome("identity", run_id, RunStatus.COMPLETED, [step])])
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"loadgen: warning: run {run_id}, concurrency 2: up to 2 of 2 slots")
