"""A step's load spread over a pool of workers (local processes or Ray actors), measured like
a local load: shares are fixed before the step, windows are merged exactly at each cut.

* closed loop: worker i keeps its share of the C slots in flight (C split as evenly as
  possible);
* open loop: every worker computes the *whole* schedule from one shared start instant and
  sends every N-th request, so the union of their sends is exactly the single-process
  schedule, whatever its distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from loadgen.engine.clocks import ClockOffset
from loadgen.engine.recorder import OpenWindow, Window, merge_windows
from loadgen.engine.schedules import Schedule
from loadgen.engine.worker_engine import ClosedShare, OpenShare, Share, split_evenly
from loadgen.histogram import LatencyHistogram
from loadgen.results import WorkerRow


class Pool(Protocol):
    """Workers started once for a sweep: :class:`~loadgen.engine.workers.WorkerPool` (processes)
    or :class:`~loadgen.distributed.ray_pool.RayPool` (Ray actors)."""

    count: int
    nodes: list[str]
    """Where each worker runs, as messages and the per-worker rows name it."""
    clocks: list[ClockOffset | None]
    """Each worker's clock offset, measured by :meth:`measure_clocks` (None: the coordinator's own)."""

    async def start(self) -> None: ...

    async def measure_clocks(self) -> None: ...

    def origins(self) -> list[tuple[int, bool]]:
        """Each worker's start instant of a shared schedule, a moment from now: (ns, on its wall clock)."""
        ...

    def start_load(self, shares: Sequence[Share]) -> None: ...

    def mark(self) -> None:
        """Every worker ends a batch of its current window (no answer awaited)."""
        ...

    async def cut(self) -> list[Window]: ...

    async def stop_load(self) -> int: ...

    async def close(self) -> None: ...


class PooledLoad:
    """One step's load spread over a :class:`Pool`."""

    def __init__(self, pool: Pool, shares: Sequence[Share], *, level: float, concurrency: int) -> None:
        self.pool = pool
        self.shares = list(shares)
        self.level = level
        self.concurrency = concurrency
        self._parts: dict[int, list[Window]] = {}
        """Each merged window's parts, by the merged window's id: what the per-worker rows add up."""

    @classmethod
    def closed(cls, pool: Pool, concurrency: int) -> PooledLoad:
        shares = [ClosedShare(c) for c in split_evenly(concurrency, pool.count)]
        return cls(pool, shares, level=concurrency, concurrency=concurrency)

    @classmethod
    def open(cls, pool: Pool, schedule: Schedule, max_in_flight: int, pacing: str = "auto") -> PooledLoad:
        cap = max(1, math.ceil(max_in_flight / pool.count))
        shares = [
            OpenShare(schedule, pool.count, i, origin, cap, wall_clock=wall, pacing=pacing)
            for i, (origin, wall) in enumerate(pool.origins())
        ]
        return cls(pool, shares, level=schedule.label_rate, concurrency=0)

    def start(self) -> None:
        self.pool.start_load(self.shares)

    def mark(self) -> None:
        self.pool.mark()

    async def cut(self) -> Window:
        parts = await self.pool.cut()
        merged = merge_windows(parts)
        self._parts[id(merged)] = parts
        return merged

    async def stop(self) -> int:
        return await self.pool.stop_load()

    def worker_rows(self, kept: Sequence[Window]) -> list[WorkerRow]:
        """Each worker's part of the ``kept`` (merged) windows, where it ran and its clock."""
        parts = [self._parts[id(window)] for window in kept]
        rows = []
        for index in range(self.pool.count):
            mine = [cut[index] for cut in parts]
            lags = [w.lag for w in mine if isinstance(w, OpenWindow)]
            lag = LatencyHistogram.merged(lags) if lags else None
            clock = self.pool.clocks[index]
            rows.append(
                WorkerRow(
                    worker=index,
                    node=self.pool.nodes[index],
                    share=self.shares[index].describe(),
                    requests=sum(w.requests for w in mine),
                    errors=sum(sum(w.errors.values()) for w in mine),
                    send_lag_p99_us=None if lag is None or lag.count == 0 else lag.percentile_us(99),
                    clock_offset_us=None if clock is None else clock.offset_ns / 1000,
                    clock_uncertainty_us=None if clock is None else clock.uncertainty_ns / 1000,
                )
            )
        return rows
