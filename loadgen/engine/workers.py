"""Several worker processes for one step (``--workers N``): each runs its share of the load
(:class:`~loadgen.engine.worker_engine.WorkerEngine`) on its own event loop, and the step
merges their windows exactly (:mod:`loadgen.engine.pooled`).

Python runs one event loop per core at best; a load that needs more client CPU than one
core gives is spread over processes (``spawn``: no state inherited from the parent). The
coordinator keeps everything else (the step's method, ``/stats``, metrics, storage) and
talks to the workers over pipes with a handful of messages per window (start, cut, stop,
exit); windows travel pickled, histograms encoded. The monotonic clock is system-wide, so
an open-loop schedule starts at one instant on every worker without measuring anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from loadgen import event_loop
from loadgen.config import SweepSettings
from loadgen.engine.clocks import ClockOffset
from loadgen.engine.recorder import Window
from loadgen.engine.worker_engine import Share, WorkerEngine, WorkerSetup, setup_part
from loadgen.errors import WorkerFailed

START_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 10.0
SLOTS_PER_WORKER = 32
"""Closed loop: one more worker (when cores allow) for every this many in-flight requests."""
RATE_PER_WORKER = 2000.0
"""Open loop: one more worker (when cores allow) for every this many requests per second."""


def _needed(levels: Sequence[float], open_loop: bool) -> int:
    top = max(levels) if levels else 1.0
    return max(1, math.ceil(top / (RATE_PER_WORKER if open_loop else SLOTS_PER_WORKER)))


def default_workers(levels: Sequence[float], open_loop: bool, cpu_count: int | None = None) -> int:
    """Workers for a sweep when ``--workers`` is not given: as many as the heaviest level needs,
    at most half the cores (the server or other work usually shares the machine), at least 1."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(cores // 2, _needed(levels, open_loop)))


def workers_for(settings: SweepSettings) -> int:
    """How many workers share each step: ``--workers``, else what the heaviest level needs (local
    processes: at most half the cores; Ray actors: the cluster is asked for that many CPUs)."""
    open_loop = settings.scenario == "request_rate"
    if settings.workers:
        return settings.workers
    if settings.ray:
        return _needed(settings.levels, open_loop)
    return default_workers(settings.levels, open_loop)


def connections_per_worker(settings: SweepSettings, workers: int) -> int | None:
    """Each worker's part of ``--max-connections`` (rounded up: at least one each)."""
    total = settings.max_connections
    return None if total is None else -(-total // workers)


# -- the worker process ----------------------------------------------------------------------------
def worker_main(conn: Connection, setup: WorkerSetup) -> None:
    """Entry point of a worker process: serve commands until ``exit`` or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    try:
        event_loop.run(_serve(conn, setup))
    except Exception as exc:  # report, then exit: the coordinator fails the run with this
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def watch(loop: asyncio.AbstractEventLoop, conn: Connection, callback: Callable[[], None]) -> None:
    """Call ``callback`` when ``conn`` is readable. uvloop's ``add_reader`` makes the descriptor
    non-blocking, and a pipe ``Connection`` sends and receives whole messages only when it blocks
    (a window larger than the pipe's buffer would fail half-sent): it is made blocking again."""
    loop.add_reader(conn.fileno(), callback)
    os.set_blocking(conn.fileno(), True)


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

    watch(loop, conn, readable)
    engine = WorkerEngine(setup)
    gc.freeze()  # as a sweep does (loadgen.engine.heap); the process ends with its load
    conn.send(("ready", os.getpid()))
    try:
        while True:
            command, *args = await inbox.get()
            if command == "start":
                engine.start(args[0])
            elif command == "mark":
                engine.mark()
            elif command == "cut":
                conn.send(("window", await engine.cut()))
            elif command == "stop":
                conn.send(("stopped", await engine.stop()))
            elif command == "exit":
                break
    finally:
        await engine.close()


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
        self.nodes = [f"{socket.gethostname()} worker {index}" for index in range(count)]
        self.clocks: list[ClockOffset | None] = [None] * count
        """One host: its monotonic clock is every worker's, nothing to measure."""

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for index in range(self.count):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child, setup_part(self.setup, index, self.count)),
                name=f"loadgen-worker-{index}",
                daemon=True,
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        pids = await asyncio.wait_for(self._gather("ready"), START_TIMEOUT_S)
        self.nodes = [f"{socket.gethostname()} pid {pid}" for pid in pids]

    async def measure_clocks(self) -> None:
        return None

    def origins(self) -> list[tuple[int, bool]]:
        origin = time.perf_counter_ns() + 50_000_000  # every worker's schedule starts at this instant
        return [(origin, False)] * self.count

    async def _recv(self, index: int) -> tuple[Any, ...]:
        conn = self._conns[index]
        loop = asyncio.get_running_loop()
        if not conn.poll():
            ready: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not ready.done():
                    ready.set_result(None)

            watch(loop, conn, wake)
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
            with contextlib.suppress(OSError):  # a dead worker: its receive says so, naming it
                conn.send(message)

    def start_load(self, shares: Sequence[Share]) -> None:
        for conn, share in zip(self._conns, shares, strict=True):
            conn.send(("start", share))

    def mark(self) -> None:
        self.send_all("mark")

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
