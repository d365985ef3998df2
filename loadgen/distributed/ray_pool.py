"""``--ray ADDRESS``: a sweep's workers as Ray actors spread over a cluster's nodes.

Each actor runs the same :class:`~loadgen.engine.worker_engine.WorkerEngine` as a local
worker process, on its own event loop; the pipe messages of local workers (start, cut,
stop, exit) are actor calls. One actor per CPU bundle of a placement group (SPREAD), so
the load spreads over nodes. Windows come back pickled (histograms encoded) and are
merged exactly by the driver, which keeps the step's method, ``/stats``, metrics and
storage as for one process.

A worker that dies, fails, or misses a call's deadline fails the step with its node named
(:class:`~loadgen.errors.WorkerFailed`): never a smaller, silently averaged step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from loadgen import __version__
from loadgen.distributed.connect import connect, disconnect, import_ray
from loadgen.engine.clocks import ClockOffset, measure_offset
from loadgen.engine.recorder import Window
from loadgen.engine.worker_engine import Share, WorkerEngine, WorkerSetup, setup_part
from loadgen.errors import ConfigError, WorkerFailed

PLACEMENT_TIMEOUT_S = 60.0
"""How long the cluster may take to find a CPU for every worker."""
START_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 10.0
"""A cut, start or clock call answers in milliseconds; one that takes this long fails the step."""
STOP_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 3.0
ORIGIN_LEAD_NS = 200_000_000
"""An open-loop schedule starts this long after the driver gives it: every actor has it by then."""


class RemoteWorker:
    """The actor (``ray.remote`` is applied at start: Ray stays an optional import)."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.engine: WorkerEngine | None = None

    async def ready(self) -> tuple[str, str, int, str]:
        """Builds the worker on the actor's event loop; where it runs and its loadgen version."""
        import ray

        self.engine = WorkerEngine(self.setup)
        context = ray.get_runtime_context()
        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return ip, context.get_node_id(), os.getpid(), __version__

    async def clock(self) -> int:
        return time.time_ns()

    async def start(self, share: Share) -> None:
        assert self.engine is not None
        self.engine.start(share)

    async def mark(self) -> None:
        if self.engine is not None:
            self.engine.mark()

    async def cut(self) -> Window:
        assert self.engine is not None
        return await self.engine.cut()

    async def stop(self) -> int:
        assert self.engine is not None
        return await self.engine.stop()

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()


class RayPool:
    """``count`` actors for a whole sweep, placed once (a placement group and its actors take a
    second or more), measured for clock offsets before each step."""

    def __init__(self, count: int, setup: WorkerSetup, address: str) -> None:
        if count < 1:
            raise ValueError("a Ray pool has at least 1 worker")
        self.count = count
        self.setup = setup
        self.address = address
        self.token = f"loadgen-{uuid.uuid4().hex[:8]}"
        """Names the actors ``<token>-<index>`` in the ``loadgen`` namespace."""
        self.nodes = [f"ray worker {index}" for index in range(count)]
        self.clocks: list[ClockOffset | None] = [None] * count
        self._actors: list[Any] = []
        self._group: Any = None
        self._owns = False
        self._starting: list[Any] = []
        """The last start calls: their failures show at the next cut."""
        self._marks: list[Any] = []
        """The marks since the last cut, which waits for them."""
        self._lost: WorkerFailed | None = None
        """The first failure: the step ends with it, without waiting on a worker again."""
        self._lost_workers: set[int] = set()
        """Workers that failed a call: closing does not wait for them."""

    async def start(self) -> None:
        self._owns = connect(self.address)
        ray = import_ray()
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._group = placement_group([{"CPU": 1}] * self.count, strategy="SPREAD", name=self.token)
        try:
            await asyncio.wait_for(self._group.ready(), PLACEMENT_TIMEOUT_S)
        except TimeoutError:
            total = ray.cluster_resources().get("CPU", 0)
            free = ray.available_resources().get("CPU", 0)
            raise ConfigError(
                f"--ray: the cluster found no CPU for each of {self.count} workers within "
                f"{PLACEMENT_TIMEOUT_S:g} s (it has {total:g} CPUs, {free:g} free): give fewer --workers "
                "or add nodes"
            ) from None
        actor = ray.remote(num_cpus=1, max_restarts=0)(RemoteWorker)
        self._actors = [
            actor.options(
                name=f"{self.token}-{index}",
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._group, placement_group_bundle_index=index
                ),
            ).remote(setup_part(self.setup, index, self.count))
            for index in range(self.count)
        ]
        where = await self._all("start", [a.ready.remote() for a in self._actors], START_TIMEOUT_S)
        self.nodes = [f"{ip} node {node[:8]} pid {pid}" for ip, node, pid, _ in where]
        for index, (*_, version) in enumerate(where):
            if version != __version__:
                raise WorkerFailed(
                    f"worker {index} on {self.nodes[index]} runs loadgen {version}, this driver "
                    f"{__version__}: install the same loadgen on every node"
                )

    async def _all(self, call: str, refs: Sequence[Any], timeout_s: float) -> list[Any]:
        """Every worker's answer to ``call``; a failure or a missed deadline names its worker."""
        return list(await asyncio.gather(*(self._one(i, call, ref, timeout_s) for i, ref in enumerate(refs))))

    async def _one(self, index: int, call: str, ref: Any, timeout_s: float) -> Any:
        ray = import_ray()
        where = f"worker {index} on {self.nodes[index]}"
        try:
            return await asyncio.wait_for(ref, timeout_s)
        except TimeoutError:
            lost = WorkerFailed(f"{where} missed the {call} deadline ({timeout_s:g} s)")
        except ray.exceptions.RayActorError as exc:
            lost = WorkerFailed(f"{where} died during {call}: {_why(exc)}")
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            lost = WorkerFailed(f"{where} failed in {call}: {type(cause).__name__}: {cause}")
        except ray.exceptions.RayError as exc:  # out of memory, an object lost with its node, ...
            lost = WorkerFailed(f"{where} failed in {call}: {type(exc).__name__}: {_why(exc)}")
        self._lost_workers.add(index)
        if self._lost is None:
            self._lost = lost
        raise lost

    async def measure_clocks(self) -> None:
        """Each actor's offset (:mod:`loadgen.engine.clocks`), before each step: clocks drift."""

        async def offset(index: int, actor: Any) -> ClockOffset:
            return await measure_offset(
                lambda: self._one(index, "clock", actor.clock.remote(), CALL_TIMEOUT_S)
            )

        self.clocks = list(await asyncio.gather(*(offset(i, a) for i, a in enumerate(self._actors))))

    def origins(self) -> list[tuple[int, bool]]:
        start = time.time_ns() + ORIGIN_LEAD_NS
        return [(start + (clock.offset_ns if clock else 0), True) for clock in self.clocks]

    def start_load(self, shares: Sequence[Share]) -> None:
        pairs = zip(self._actors, shares, strict=True)
        self._starting = [actor.start.remote(share) for actor, share in pairs]

    def mark(self) -> None:
        """Not awaited here; the next cut waits for them first (an async actor may run calls out of
        order, and a batch must end in the window it belongs to)."""
        if self._lost is None:
            self._marks += [actor.mark.remote() for actor in self._actors]

    async def cut(self) -> list[Window]:
        if self._starting:
            starting, self._starting = self._starting, []
            await self._all("start", starting, CALL_TIMEOUT_S)
        if self._marks:  # part of the cut; each mark call added one per actor, in their order
            marks, count = self._marks, len(self._actors)
            self._marks = []
            await asyncio.gather(
                *(self._one(i % count, "cut", ref, CALL_TIMEOUT_S) for i, ref in enumerate(marks))
            )
        windows: list[Window] = await self._all("cut", [a.cut.remote() for a in self._actors], CALL_TIMEOUT_S)
        return windows

    async def stop_load(self) -> int:
        self._starting, self._marks = [], []
        if self._lost is not None:  # the step fails with that; the actors are killed at close
            return 0
        task = asyncio.current_task()
        try:
            return sum(await self._all("stop", [a.stop.remote() for a in self._actors], STOP_TIMEOUT_S))
        except WorkerFailed:
            if task is not None and task.cancelling():
                return 0  # Ctrl-C: the run is interrupted, not failed; close() kills the actors
            raise

    async def close(self) -> None:
        """Ends every actor and gives their CPUs back, however the sweep ended (Ctrl-C included)."""
        if not self._actors and self._group is None:
            disconnect(self._owns)
            return
        ray = import_ray()
        try:
            if self._actors:  # let each end its sequences and close its connections, briefly
                closing = [
                    asyncio.ensure_future(a.close.remote())
                    for index, a in enumerate(self._actors)
                    if index not in self._lost_workers
                ]
                if closing:
                    await asyncio.wait(closing, timeout=CLOSE_TIMEOUT_S)
                for task in closing:
                    if not task.done():
                        task.cancel()
                    elif not task.cancelled():
                        task.exception()  # seen: a dead actor's failure is not news here
        finally:
            for actor in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            if self._group is not None:
                from ray.util.placement_group import remove_placement_group

                with contextlib.suppress(Exception):
                    remove_placement_group(self._group)
            self._actors, self._group = [], None
            disconnect(self._owns)


_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): .+")


def _why(exc: BaseException) -> str:
    """A dead actor's cause: the last ``SomeError: ...`` line of Ray's long story, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED.match(line)]
    why = raised[-1] if raised else lines[0] if lines else type(exc).__name__
    return _ANSI.sub("", why)[:300]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
