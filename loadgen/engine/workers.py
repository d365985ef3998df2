"""Several worker processes for one step (``--workers N``): each runs its share of the load
on its own event loop, and the step merges their windows exactly.

Python runs one event loop per core at best; a load that needs more client CPU than one
core gives is spread over processes (``spawn``: no state inherited from the parent). The
coordinator keeps everything else (the step's method, ``/stats``, metrics, storage) and
talks to the workers over pipes with a handful of messages per window:

* closed loop: worker i keeps its share of the C slots in flight (C split as evenly as
  possible);
* open loop: every worker computes the *whole* schedule from a shared origin (the
  monotonic clock is system-wide) and sends every N-th request, so the union of their
  sends is exactly the single-process schedule, whatever its distribution;
* a window cut is one ``cut`` message: each worker swaps its window and sends it back
  (histograms travel encoded), and the coordinator merges them with
  :func:`~loadgen.engine.recorder.merge_windows`: the merged window is identical in form
  to a single-process one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from loadgen.config import REQUEST_TIMEOUT_S
from loadgen.engine.cancelling import canceller_for
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.open_loop import OpenLoop
from loadgen.engine.recorder import Window, merge_windows
from loadgen.engine.schedules import Schedule
from loadgen.engine.sequences import OpenSequences, SequencePlan, Sequences, end_sequences
from loadgen.tls import TlsSettings
from loadgen.transports import make_transport
from loadgen.transports.base import InferRequestSpec
from loadgen.validation import Reference, Validator, tolerances_from

START_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 10.0
SLOTS_PER_WORKER = 32
"""Closed loop: one more worker (when cores allow) for every this many in-flight requests."""
RATE_PER_WORKER = 2000.0
"""Open loop: one more worker (when cores allow) for every this many requests per second."""


def default_workers(levels: Sequence[float], open_loop: bool, cpu_count: int | None = None) -> int:
    """Workers for a sweep when ``--workers`` is not given: as many as the heaviest level needs,
    at most half the cores (the server or other work usually shares the machine), at least 1."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    top = max(levels) if levels else 1.0
    needed = math.ceil(top / (RATE_PER_WORKER if open_loop else SLOTS_PER_WORKER))
    return max(1, min(cores // 2, needed))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers differing by at most one (larger first)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class WorkerFailed(RuntimeError):
    """A worker process reported an error or died."""


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


@dataclass(frozen=True)
class ClosedShare:
    concurrency: int


@dataclass(frozen=True)
class OpenShare:
    schedule: Schedule
    stride: int
    offset: int
    origin_ns: int
    max_in_flight: int


Share = ClosedShare | OpenShare


# -- the worker process ----------------------------------------------------------------------------
def worker_main(conn: Connection, setup: WorkerSetup) -> None:
    """Entry point of a worker process: serve commands until ``exit`` or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    try:
        asyncio.run(_serve(conn, setup))
    except Exception as exc:  # report, then exit: the coordinator fails the run with this
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


async def _serve(conn: Connection, setup: WorkerSetup) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def readable() -> None:
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("exit",))

    loop.add_reader(conn.fileno(), readable)
    transport = make_transport(
        setup.protocol,
        setup.url,
        setup.headers,
        setup.tls,
        grpc_implementation=setup.grpc_client,
        request_timeout_s=setup.request_timeout_s,
        streaming=setup.streaming,
        token_output=setup.token_output,
    )
    prepared = [transport.prepare(spec) for spec in setup.requests]
    plan = setup.sequence_plan
    sequences = (
        None
        if plan is None
        else Sequences(plan, [transport.prepare_sequence(spec) for spec in setup.requests])
    )
    validator = (
        Validator(
            setup.references,
            tolerances_from(setup.tolerances or {}),
            streams=setup.streaming,
            names=None if sequences is None else sequences.name,
        )
        if setup.references is not None
        else None
    )
    load: ClosedLoop | OpenLoop | None = None
    conn.send(("ready", os.getpid()))
    try:
        while True:
            command, *args = await inbox.get()
            if command == "start":
                share: Share = args[0]
                if isinstance(share, ClosedShare):
                    load = (
                        ClosedLoop(
                            transport,
                            prepared,
                            share.concurrency,
                            validator=validator,
                            streaming=setup.streaming,
                            canceller=canceller_for(*setup.cancel),
                            sequences=sequences,
                        )
                        if share.concurrency
                        else None
                    )
                else:
                    load = OpenLoop(
                        transport,
                        prepared,
                        share.schedule,
                        max_in_flight=share.max_in_flight,
                        validator=validator,
                        stride=share.stride,
                        offset=share.offset,
                        origin_ns=share.origin_ns,
                        streaming=setup.streaming,
                        canceller=canceller_for(*setup.cancel),
                        sequences=OpenSequences(sequences) if sequences else None,
                    )
                if load is not None:
                    load.start()
            elif command == "cut":
                conn.send(("window", await load.cut() if load is not None else Window()))
            elif command == "stop":
                in_flight = await load.stop() if load is not None else 0
                load = None
                conn.send(("stopped", in_flight))
            elif command == "exit":
                break
    finally:
        if load is not None:
            await load.stop()
        if sequences is not None:
            await end_sequences(transport, sequences)
        await transport.close()


# -- the coordinator side --------------------------------------------------------------------------
class WorkerPool:
    """N worker processes for a whole sweep (started once: a spawn costs a second or more)."""

    def __init__(self, count: int, setup: WorkerSetup) -> None:
        if count < 2:
            raise ValueError("a worker pool has at least 2 workers (1 runs in-process)")
        self.count = count
        self.setup = setup
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []

    def part(self, index: int) -> WorkerSetup:
        """Worker ``index``'s setup: a sequence model's ids and open sequences split between workers."""
        plan = self.setup.sequence_plan
        if plan is None:
            return self.setup
        active = max(1, split_evenly(plan.active, self.count)[index])
        return replace(self.setup, sequence_plan=plan.part(index, self.count, active))

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self.count):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child, self.part(index)),
                name=f"loadgen-worker-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        await asyncio.wait_for(self._gather("ready"), START_TIMEOUT_S)

    async def _recv(self, index: int) -> tuple[Any, ...]:
        conn = self._conns[index]
        loop = asyncio.get_running_loop()
        if not conn.poll():
            ready: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(conn.fileno(), wake)
            try:
                await ready
            finally:
                loop.remove_reader(conn.fileno())
        try:
            message: tuple[Any, ...] = conn.recv()
        except (EOFError, OSError):
            code = self._processes[index].exitcode
            raise WorkerFailed(f"worker {index} died (exit code {code})") from None
        if message[0] == "error":
            raise WorkerFailed(f"worker {index}: {message[1]}")
        return message

    async def _gather(self, expected: str) -> list[Any]:
        replies = await asyncio.gather(*(self._recv(i) for i in range(self.count)))
        for index, reply in enumerate(replies):
            if reply[0] != expected:
                raise WorkerFailed(f"worker {index} answered {reply[0]!r} to {expected!r}")
        return [reply[1] if len(reply) > 1 else None for reply in replies]

    def send_all(self, *message: Any) -> None:
        for conn in self._conns:
            conn.send(message)

    def start_load(self, shares: Sequence[Share]) -> None:
        for conn, share in zip(self._conns, shares, strict=True):
            conn.send(("start", share))

    async def cut(self) -> list[Window]:
        self.send_all("cut")
        windows: list[Window] = await self._gather("window")
        return windows

    async def stop_load(self) -> int:
        self.send_all("stop")
        return sum(await self._gather("stopped"))

    async def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("exit",))
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        for process in self._processes:
            while process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.is_alive():
                process.terminate()
                process.join(1.0)
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._processes.clear()


class PooledLoad:
    """One step's load spread over a :class:`WorkerPool`; measured like a local load."""

    def __init__(self, pool: WorkerPool, shares: Sequence[Share], *, level: float, concurrency: int) -> None:
        self.pool = pool
        self.shares = list(shares)
        self.level = level
        self.concurrency = concurrency

    @classmethod
    def closed(cls, pool: WorkerPool, concurrency: int) -> PooledLoad:
        shares = [ClosedShare(c) for c in split_evenly(concurrency, pool.count)]
        return cls(pool, shares, level=concurrency, concurrency=concurrency)

    @classmethod
    def open(cls, pool: WorkerPool, schedule: Schedule, max_in_flight: int) -> PooledLoad:
        origin = time.perf_counter_ns() + 50_000_000  # every worker's schedule starts at the same instant
        cap = max(1, math.ceil(max_in_flight / pool.count))
        shares = [OpenShare(schedule, pool.count, i, origin, cap) for i in range(pool.count)]
        return cls(pool, shares, level=schedule.label_rate, concurrency=0)

    def start(self) -> None:
        self.pool.start_load(self.shares)

    async def cut(self) -> Window:
        return merge_windows(await self.pool.cut())

    async def stop(self) -> int:
        return await self.pool.stop_load()
