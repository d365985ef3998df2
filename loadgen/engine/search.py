"""SLO search: the highest load whose latency percentile stays under a limit.

Bracketing first (the sweep's own levels, lowest first, until one misses), then
bisection between the last level that met the limit and the first that missed.
Every probe is a full measured step, stored like any other. Concurrency bisects
to 1; rates to ``rate_precision`` (relative).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from loadgen.config import LatencyLimit
from loadgen.results import StepResult

Probe = Callable[[float], Awaitable[StepResult]]


def meets(limit: LatencyLimit, step: StepResult) -> bool:
    """The step's percentile, read from its histogram (any percentile works), is within the limit."""
    if step.request_count == 0:
        return False
    return step.histogram.percentile_us(limit.percentile) <= limit.limit_us


@dataclass
class SearchResult:
    best: float | None
    """Highest level that met the limit; None when even the lowest load missed it."""
    first_miss: float | None
    """Lowest level found to miss the limit (None: the top of the range met it)."""
    probes: list[tuple[float, bool]] = field(default_factory=list)


async def search(
    levels: Sequence[float],
    limit: LatencyLimit,
    probe: Probe,
    *,
    integer: bool,
    rate_precision: float = 0.02,
) -> SearchResult:
    """Probe ``levels`` upward until one misses, then bisect the bracket."""
    result = SearchResult(best=None, first_miss=None)

    async def check(level: float) -> bool:
        met = meets(limit, await probe(level))
        result.probes.append((level, met))
        return met

    for level in sorted(levels):
        if await check(level):
            result.best = level
        else:
            result.first_miss = level
            break
    if result.best is None or result.first_miss is None:
        return result  # nothing met the limit, or the whole range did
    low, high = result.best, result.first_miss
    while _wide(low, high, integer, rate_precision):
        middle = math.floor((low + high) / 2) if integer else (low + high) / 2
        if await check(middle):
            low = middle
        else:
            high = middle
    result.best, result.first_miss = low, high
    return result


def _wide(low: float, high: float, integer: bool, precision: float) -> bool:
    if integer:
        return high - low > 1
    return (high - low) / high > precision
