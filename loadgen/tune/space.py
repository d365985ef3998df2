"""The configurations a tune may try: instance counts x max batch sizes x dynamic-batching delays.

Each axis is ordered (the order a hill-climb steps along); an axis not given holds the served
config's own value, so ``--instances 1..4`` alone varies only the instance count.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from loadgen.config.values import duration_us
from loadgen.errors import ConfigError

OFF = "off"
SEARCHES = ("grid", "quick")
"""``--search``: every candidate, or a hill-climb over the same space (loadgen.tune.search)."""


@dataclass(frozen=True, order=True)
class Candidate:
    instances: int
    max_batch_size: int
    queue_delay_us: int | None
    """Dynamic batching's delay; None: no dynamic batching."""

    @property
    def key(self) -> str:
        """How the candidate is named everywhere: labels, tables, JSON, resuming."""
        delay = OFF if self.queue_delay_us is None else f"{self.queue_delay_us}us"
        return f"instances={self.instances} max_batch_size={self.max_batch_size} queue_delay={delay}"


def parse_delays(text: str) -> tuple[int | None, ...]:
    """``off,0,100,500us``: microseconds (a bare number too), ``off`` for no dynamic batching."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("give delays such as off,0,100us,1ms")
    delays = [None if item == OFF else duration_us(item) for item in items]
    return tuple(sorted(set(delays), key=lambda d: -1 if d is None else d))


@dataclass(frozen=True)
class TuneSpace:
    instances: tuple[int, ...]
    max_batch_sizes: tuple[int, ...]
    queue_delays_us: tuple[int | None, ...]

    @classmethod
    def around(
        cls,
        served: Candidate,
        instances: tuple[int, ...] | None = None,
        max_batch_sizes: tuple[int, ...] | None = None,
        delays: tuple[int | None, ...] | None = None,
    ) -> TuneSpace:
        """The axes given, the served config's value for the others."""
        if served.max_batch_size == 0 and (max_batch_sizes or delays):
            raise ConfigError(
                "the model does not batch (max_batch_size 0: its first dimension is not a batch): "
                "only --instances can be tuned"
            )
        space = cls(
            instances or (served.instances,),
            max_batch_sizes or (served.max_batch_size,),
            delays or (served.queue_delay_us,),
        )
        if len(space.candidates()) == 1:
            raise ConfigError(
                "nothing to tune: give --instances, --max-batch-size or --queue-delay 2 values or more"
            )
        return space

    def candidates(self) -> list[Candidate]:
        """The grid, instance counts outermost, delays innermost (each ascending)."""
        return [Candidate(*point) for point in itertools.product(*self._axes())]

    def _axes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int | None, ...]]:
        return self.instances, self.max_batch_sizes, self.queue_delays_us

    def _index(self, candidate: Candidate) -> tuple[int, int, int]:
        return (
            self.instances.index(candidate.instances),
            self.max_batch_sizes.index(candidate.max_batch_size),
            self.queue_delays_us.index(candidate.queue_delay_us),
        )

    def neighbours(self, candidate: Candidate) -> Iterator[Candidate]:
        """One step along one axis, either way: where a hill-climb may go next."""
        where = self._index(candidate)
        axes = self._axes()
        for axis, values in enumerate(axes):
            for step in (-1, 1):
                moved = where[axis] + step
                if 0 <= moved < len(values):
                    point = [axes[i][where[i]] for i in range(3)]
                    point[axis] = values[moved]
                    yield Candidate(*point)  # type: ignore[arg-type]

    def start(self) -> Candidate:
        """Where a hill-climb begins: the fewest instances, the smallest batch, no or the shortest delay."""
        return Candidate(self.instances[0], self.max_batch_sizes[0], self.queue_delays_us[0])

    def longer_delays(self, candidate: Candidate) -> list[Candidate]:
        """The same instances and batch size with longer delays: a longer wait only adds latency,
        so once a delay misses the SLO at every load these are not tried."""
        position = self.queue_delays_us.index(candidate.queue_delay_us)
        return [
            Candidate(candidate.instances, candidate.max_batch_size, d)
            for d in self.queue_delays_us[position + 1 :]
        ]
