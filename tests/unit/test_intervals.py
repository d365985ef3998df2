"""Percentile intervals against distributions whose percentiles are known (issue 20): seeded draws,
counted the way a user would judge them, by how often the interval holds the true value."""

from __future__ import annotations

import math
import pickle

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal, stats

from loadgen.batches import Batches
from loadgen.histogram import LatencyHistogram
from loadgen.intervals import (
    corrected_interval,
    early_stopping_estimate,
    inflation,
    percentile_interval,
    rank_bounds,
    rate_interval,
)

MU, SIGMA = math.log(2000.0), 0.5
"""Lognormal latencies, median 2 ms, in microseconds."""


def _true_us(percentile: float) -> float:
    return math.exp(MU + SIGMA * stats.norm.ppf(percentile / 100.0))


def _histogram(values_us: npt.NDArray[np.float64]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    histogram.record_many_us(values_us)
    return histogram


@pytest.mark.parametrize("percentile", [50.0, 99.0])
def test_intervals_of_independent_latencies_hold_the_true_percentile_95_times_in_100(
    percentile: float,
) -> None:
    rng = np.random.default_rng(20)
    truth = _true_us(percentile)
    held = 0
    for _ in range(1000):
        interval = percentile_interval(_histogram(rng.lognormal(MU, SIGMA, 2000)), percentile)
        assert interval is not None and interval.low_us <= interval.high_us
        held += interval.low_us <= truth <= interval.high_us
    assert 920 <= held <= 980, held


def test_too_few_requests_for_a_percentile_give_no_interval() -> None:
    assert rank_bounds(500, 0.999, 0.95) is None  # p99.9 of 500: the top rank cannot reach past it
    assert rank_bounds(5000, 0.999, 0.95) is not None
    few = _histogram(np.full(100, 1000.0))
    assert percentile_interval(few, 99.9) is None and percentile_interval(few, 50) is not None


def _batched(parts: list[npt.NDArray[np.float64]]) -> tuple[LatencyHistogram, Batches]:
    """One window's histogram, marked after each part as the step marks it."""
    whole, batches = LatencyHistogram(recent=True), Batches()
    for part in parts:
        whole.record_many_us(part)
        batches.mark(whole)
    return whole, batches


def _correlated(rng: np.random.Generator, n: int, phi: float) -> npt.NDArray[np.float64]:
    """Lognormal latencies whose logs follow an AR(1) process: slow spells, as under load."""
    noise = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
    z = np.asarray(signal.lfilter([1.0], [1.0, -phi], noise), dtype=np.float64)
    latencies: npt.NDArray[np.float64] = np.exp(MU + SIGMA * z)
    return latencies


def test_correlated_latencies_need_the_correction_and_get_it() -> None:
    """AR(1) with phi = 0.9: the plain interval is far too narrow; batch means widen it back."""
    rng = np.random.default_rng(21)
    truth = _true_us(99.0)
    plain = corrected = 0
    draws = 300
    for _ in range(draws):
        values = _correlated(rng, 20_000, 0.9)
        whole, batches = _batched(np.split(values, 20))
        naive = percentile_interval(whole, 99.0)
        fixed = corrected_interval(whole, batches, 99.0)
        assert naive is not None and fixed is not None and fixed.n_eff < whole.count
        plain += naive.low_us <= truth <= naive.high_us
        corrected += fixed.low_us <= truth <= fixed.high_us
    assert plain / draws < 0.8, plain  # what ignoring the correlation costs
    assert corrected / draws >= 0.9, corrected


def test_independent_batches_are_not_inflated() -> None:
    rng = np.random.default_rng(22)
    sizes = [1000] * 40
    above = rng.binomial(1000, 0.01, size=40).tolist()
    assert inflation(above, sizes) == pytest.approx(1.0, abs=0.5)
    clumped = [0] * 36 + [100] * 4  # every slow request in 4 batches of 40
    assert inflation(clumped, sizes) > 20
    with pytest.raises(ValueError, match="10 batches or more"):
        inflation([1, 2], [10, 10])


def test_batches_merge_across_workers_and_survive_a_pipe() -> None:
    rng = np.random.default_rng(23)
    parts = [rng.lognormal(MU, SIGMA, 500) for _ in range(10)]
    whole, one = _batched(parts)
    _, other = _batched(parts)
    both = pickle.loads(pickle.dumps(one)).merge(other)  # what a worker sends: no dense counters
    assert len(pickle.dumps(one)) < 200_000
    assert both.sizes() == [1000] * 10
    threshold = whole.percentile_us(90)
    assert both.above(threshold) == [2 * n for n in one.above(threshold)]
    assert sum(one.above(threshold)) == pytest.approx(500, abs=60)


def test_mlperf_early_stopping_needs_459_requests_for_p99_and_is_conservative() -> None:
    """The reference value h_min(t=0, p99) = 459 (mlcommons/inference early_stopping.cc)."""
    assert early_stopping_estimate(_histogram(np.arange(1.0, 459.0)), 99.0) is None
    assert early_stopping_estimate(_histogram(np.arange(1.0, 460.0)), 99.0) == 459.0  # t = 0: the max
    rng = np.random.default_rng(24)
    values = rng.lognormal(MU, SIGMA, 20_000)
    estimate = early_stopping_estimate(_histogram(values), 99.0)
    assert estimate is not None and _true_us(99.0) < estimate < _true_us(99.6)


def test_the_throughput_interval_holds_the_true_rate_95_times_in_100() -> None:
    rng = np.random.default_rng(25)
    held = 0
    for _ in range(1000):
        durations = rng.uniform(0.09, 0.11, 30)
        sizes = rng.poisson(100.0 * durations)  # 100 requests/s
        found = rate_interval(sizes.tolist(), durations.tolist(), scale=2)
        assert found is not None
        held += found[1] <= 200.0 <= found[2]
    assert 920 <= held <= 980, held
    assert rate_interval([5] * 9, [0.1] * 9) is None  # too few batches
    late = rate_interval([10] * 29 + [0], [0.1] * 29 + [1e-4])  # a mark that ran late: a sliver
    assert late is not None and late[2] - late[1] < 0.05 * late[0]  # weighs by its length, not 1/30
