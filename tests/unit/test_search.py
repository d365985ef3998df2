import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from loadgen.config import LatencyLimit, SweepSettings, parse_latency_limit
from loadgen.engine.search import SearchResult, search
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import StepResult


def _step(latency_us: float) -> StepResult:
    histogram = LatencyHistogram()
    histogram.record_many_us(np.full(100, latency_us))
    return StepResult(
        index=0,
        concurrency=1,
        started_at=datetime.now(UTC),
        duration_s=1.0,
        request_count=100,
        inference_count=100,
        histogram=histogram,
    )


def _run(levels: tuple[float, ...], capacity: float, *, integer: bool) -> tuple[SearchResult, list[float]]:
    """A server whose latency is 10 ms x load: the limit of 50 ms is met up to load ``capacity``."""
    probed: list[float] = []

    async def probe(level: float) -> StepResult:
        probed.append(level)
        return _step(10_000 * level * 5 / capacity)

    result = asyncio.run(search(levels, LatencyLimit(99, 50_000), probe, integer=integer))
    return result, probed


def test_brackets_then_bisects_to_one() -> None:
    result, probed = _run((1, 2, 4, 8, 16, 32), capacity=11, integer=True)
    assert (result.best, result.first_miss) == (11, 12)
    assert probed[:5] == [1, 2, 4, 8, 16]  # bracketing stops at the first miss
    assert len(probed) <= 5 + 3  # then log2(16 - 8) bisection steps


def test_rates_bisect_to_the_precision() -> None:
    result, _ = _run((100.0, 200.0, 400.0), capacity=333.0, integer=False)
    assert result.best is not None and result.first_miss is not None
    assert result.best <= 333.0 < result.first_miss
    assert (result.first_miss - result.best) / result.first_miss <= 0.02


def test_lowest_load_missing_and_whole_range_meeting() -> None:
    none, probed = _run((4, 8), capacity=2, integer=True)
    assert none.best is None and none.first_miss == 4 and probed == [4]
    everything, _ = _run((1, 2), capacity=100, integer=True)
    assert everything.best == 2 and everything.first_miss is None


def test_latency_limits_parse() -> None:
    assert parse_latency_limit("p99=50ms") == LatencyLimit(99, 50_000)
    assert parse_latency_limit("p99.9=800us") == LatencyLimit(99.9, 800)
    assert parse_latency_limit("0.2s") == LatencyLimit(99, 200_000)
    assert parse_latency_limit("20") == LatencyLimit(99, 20_000)
    for bad in ("p99=", "fast", "p101=5ms", "p99=0ms"):
        with pytest.raises(ConfigError):
            parse_latency_limit(bad)
    with pytest.raises(ConfigError, match="search needs latency_limit"):
        SweepSettings(model="m", levels=(1,), search=True)
