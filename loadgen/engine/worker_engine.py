"""One worker's share of a step's load, on its own event loop: what a worker process
(``--workers``) and a Ray actor (``--ray``) both run, so a remote worker is the local one.

A worker is set up once per sweep (:class:`WorkerSetup`: the server, the requests, built
once) and then given one :data:`Share` per step; the coordinator cuts its windows and
merges them. Nothing is exchanged while a window runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.engine.cancelling import canceller_for
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.recorder import Window
from loadgen.engine.schedules import Schedule
from loadgen.engine.sequences import OpenSequences, SequencePlan, Sequences, end_sequences
from loadgen.tls import TlsSettings
from loadgen.transports import make_transport
from loadgen.transports.base import InferRequestSpec
from loadgen.validation import Reference, Validator, tolerances_from


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs once: how to reach the server and what to send."""

    protocol: str
    url: str
    requests: tuple[InferRequestSpec, ...]
    headers: dict[str, str] | None = None
    tls: TlsSettings | None = None
    references: tuple[Reference, ...] | None = None
    """``--validate``: the expected answers (taken once by the coordinator)."""
    tolerances: dict[str, tuple[float, float]] | None = None
    grpc_client: str = "h2"
    request_timeout_s: float = REQUEST_TIMEOUT_S
    streaming: bool = False
    token_output: str = ""
    cancel: tuple[int | None, int | None, float] = (None, None, 100.0)
    """``--cancel-after-ms``, ``--cancel-after-responses``, ``--cancel-share``."""
    sequence_plan: SequencePlan | None = None
    """A sequence model: the worker's own part of the plan (:meth:`SequencePlan.part`)."""
    max_connections: int | None = None
    """``--max-connections``: this worker's part of them."""


@dataclass(frozen=True)
class ClosedShare:
    concurrency: int

    def describe(self) -> str:
        return f"{self.concurrency} in flight"


@dataclass(frozen=True)
class OpenShare:
    schedule: Schedule
    stride: int
    offset: int
    origin_ns: int
    """When the shared schedule starts: on the monotonic clock (one host's workers share it),
    or, with ``wall_clock``, on this worker's own wall clock (the coordinator's instant
    corrected by the worker's measured offset: monotonic clocks of two hosts do not compare)."""
    max_in_flight: int
    wall_clock: bool = False
    pacing: str = "auto"

    def local_origin_ns(self) -> int:
        """The shared start on this host's monotonic clock, which the open loop paces by."""
        if not self.wall_clock:
            return self.origin_ns
        return time.perf_counter_ns() + (self.origin_ns - time.time_ns())

    def describe(self) -> str:
        return f"1 send in {self.stride}, from #{self.offset}" if self.stride > 1 else "every send"


Share = ClosedShare | OpenShare


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers differing by at most one (larger first)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def setup_part(setup: WorkerSetup, index: int, count: int) -> WorkerSetup:
    """Worker ``index``'s setup of ``count``: a sequence model's ids and open sequences split."""
    plan = setup.sequence_plan
    if plan is None:
        return setup
    active = max(1, split_evenly(plan.active, count)[index])
    return replace(setup, sequence_plan=plan.part(index, count, active))


class WorkerEngine:
    """A worker's transport, requests and validator, built once; a load per step."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.transport = make_transport(
            setup.protocol,
            setup.url,
            setup.headers,
            setup.tls,
            grpc_implementation=setup.grpc_client,
            request_timeout_s=setup.request_timeout_s,
            streaming=setup.streaming,
            token_output=setup.token_output,
            max_connections=setup.max_connections,
        )
        self.prepared = [self.transport.prepare(spec) for spec in setup.requests]
        plan = setup.sequence_plan
        self.sequences = (
            None
            if plan is None
            else Sequences(plan, [self.transport.prepare_sequence(spec) for spec in setup.requests])
        )
        self.validator = (
            Validator(
                setup.references,
                tolerances_from(setup.tolerances or {}),
                streams=setup.streaming,
                names=None if self.sequences is None else self.sequences.name,
            )
            if setup.references is not None
            else None
        )
        self.load: ClosedLoop | OpenLoop | None = None

    def start(self, share: Share) -> None:
        setup = self.setup
        if isinstance(share, ClosedShare):
            self.load = (
                ClosedLoop(
                    self.transport,
                    self.prepared,
                    share.concurrency,
                    validator=self.validator,
                    streaming=setup.streaming,
                    canceller=canceller_for(*setup.cancel),
                    sequences=self.sequences,
                )
                if share.concurrency
                else None
            )
        else:
            self.load = OpenLoop(
                self.transport,
                self.prepared,
                share.schedule,
                max_in_flight=share.max_in_flight,
                pacing=share.pacing,
                validator=self.validator,
                stride=share.stride,
                offset=share.offset,
                origin_ns=share.local_origin_ns(),
                streaming=setup.streaming,
                canceller=canceller_for(*setup.cancel),
                sequences=OpenSequences(self.sequences) if self.sequences else None,
            )
        if self.load is not None:
            self.load.start()

    async def cut(self) -> Window:
        return await self.load.cut() if self.load is not None else Window()

    def mark(self) -> None:
        if self.load is not None:
            self.load.mark()

    async def stop(self) -> int:
        """Ends the step's load; the requests still in flight when it ended."""
        in_flight = await self.load.stop() if self.load is not None else 0
        self.load = None
        return in_flight

    async def close(self) -> None:
        if self.load is not None:
            await self.load.stop()
        if self.sequences is not None:
            await end_sequences(self.transport, self.sequences)
        await self.transport.close()
