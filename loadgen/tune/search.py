"""Which candidates a tune measures, in what order: the full grid, or a quick hill-climb.

Both stop going where the SLO was already missed: the grid skips longer dynamic-batching delays
once a delay misses the SLO at every load (waiting longer only adds latency); the hill-climb only
moves to a neighbour that did better, so it never passes one that missed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from analysis.tune_result import StepPoint, rank
from loadgen.tune.space import Candidate, TuneSpace


@dataclass(frozen=True)
class Tried:
    """A measured candidate: its best step under the SLO (None: none met it, or Triton refused it)."""

    best: StepPoint | None
    missed_slo: bool
    """Measured, and no step met the SLO."""


Evaluate = Callable[[Candidate], Awaitable[Tried]]
Skip = Callable[[Candidate, str], None]


async def grid(space: TuneSpace, evaluate: Evaluate, skip: Skip) -> None:
    skipped: dict[Candidate, str] = {}
    for candidate in space.candidates():
        if candidate in skipped:
            skip(candidate, skipped[candidate])
            continue
        tried = await evaluate(candidate)
        if tried.missed_slo and candidate.queue_delay_us is not None:
            why = f"queue_delay={candidate.queue_delay_us}us already missed the SLO at every load"
            skipped.update(dict.fromkeys(space.longer_delays(candidate), why))


async def hill_climb(space: TuneSpace, evaluate: Evaluate) -> Candidate:
    """From the smallest configuration, measure its unmeasured neighbours and move to the best of
    them while it beats where the climb stands; a local best ends the climb (and is returned)."""
    current = space.start()
    seen = {current: await evaluate(current)}
    while True:
        for neighbour in space.neighbours(current):
            if neighbour not in seen:
                seen[neighbour] = await evaluate(neighbour)
        best = max(space.neighbours(current), key=lambda c: rank(seen[c].best))
        if rank(seen[best].best) <= rank(seen[current].best):
            return current
        current = best
