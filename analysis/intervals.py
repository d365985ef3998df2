"""Confidence intervals for a percentile read from a latency histogram, without assuming a
distribution (issue 20, first part: the statistics; wiring into steps, tables and compare follows).

**Method: order statistics with binomial ranks.** Of ``n`` independent latencies, the number
``B`` at or below the true ``p``-quantile is Binomial(n, p). So the ``l``-th and ``u``-th
smallest latencies bracket the quantile with probability ``P(l <= B <= u - 1)``; taking
``l = F^-1(a/2)`` and ``u = F^-1(1 - a/2) + 1`` (``F`` the binomial CDF) gives at least
``1 - a``. This is the distribution-free interval of Hahn & Meeker, *Statistical Intervals*
(2nd ed., Wiley 2017, section 5.2), the rule MLPerf LoadGen's early stopping also rests on.
It needs only ranks, so a histogram serves: a rank's value is read as its bucket's low edge for
the lower bound and its high edge for the upper one, so the bucket width can only widen the
interval. Where ``l`` would be below 1 or ``u`` above ``n`` (too few requests for that
percentile: a p99.9 of 500 requests) there is no interval, and the callers say so.

**Correlated latencies.** Successive latencies of a load test are not independent: a slow
spell (a garbage collection, a batch that waited) slows many requests in a row, and the
interval above is then too narrow. The sample size is replaced by an effective one,
``n_eff = n / f``, where ``f`` is how much the exceedance indicator (a latency above the
percentile's estimate) varies between consecutive batches of requests beyond what independent
requests would give: the batch-means method (Law, *Simulation Modeling and Analysis*, 5th ed.,
2015, section 9.5.3; Fishman, *Discrete-Event Simulation*, 2001, chapter 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from loadgen.histogram import LatencyHistogram

METHOD = "binomial order statistics (Hahn & Meeker 2017, 5.2), n corrected by batch means"


@dataclass(frozen=True)
class Interval:
    """A percentile's confidence interval, microseconds."""

    low_us: float
    high_us: float
    confidence: float
    n_eff: float
    """The sample size the ranks were drawn for (the requests, or fewer when correlated)."""


def rank_bounds(n: int, quantile: float, confidence: float) -> tuple[int, int] | None:
    """The 1-based ranks ``(l, u)`` of the order statistics bracketing ``quantile`` of ``n``
    independent samples with at least ``confidence``; None when ``n`` is too small."""
    if n < 1 or not 0.0 < quantile < 1.0 or not 0.0 < confidence < 1.0:
        return None
    alpha = 1.0 - confidence
    low = int(stats.binom.ppf(alpha / 2, n, quantile))
    high = int(stats.binom.ppf(1.0 - alpha / 2, n, quantile)) + 1
    if low < 1 or high > n:
        return None
    return low, high


def percentile_interval(
    histogram: LatencyHistogram, percentile: float, *, confidence: float = 0.95, n_eff: float | None = None
) -> Interval | None:
    """The ``percentile``'s interval from ``histogram``; ``n_eff`` (from :func:`effective_size`)
    when the latencies were correlated. None when too few requests for one."""
    n = histogram.count
    size = n if n_eff is None else max(1, min(n, math.floor(n_eff)))
    ranks = rank_bounds(size, percentile / 100.0, confidence)
    if ranks is None:
        return None
    low, high = ranks
    # ranks of the smaller effective sample, as fractions of the real one
    low_value, _ = histogram.bucket_of_rank(max(1, math.floor(low * n / size)))
    _, high_value = histogram.bucket_of_rank(min(n, math.ceil(high * n / size)))
    return Interval(low_value, high_value, confidence, float(size))


def inflation(exceedances: Sequence[int], sizes: Sequence[int]) -> float:
    """How much more the share of slow requests varies between consecutive batches than it
    would for independent requests (1: not at all). ``exceedances[i]`` of batch ``i``'s
    ``sizes[i]`` requests were above the percentile's estimate. Needs 10 batches or more."""
    k = np.asarray(exceedances, dtype=np.float64)
    m = np.asarray(sizes, dtype=np.float64)
    keep = m > 0
    k, m = k[keep], m[keep]
    if len(m) < 10:
        raise ValueError(f"batch means need 10 batches or more, got {len(m)}")
    share = k.sum() / m.sum()
    if share <= 0.0 or share >= 1.0:
        return 1.0
    # each batch's share, weighted by its size: sum m_i (k_i/m_i - share)^2 / (B - 1) estimates
    # share (1 - share) for independent requests; more means correlation
    spread = float(np.sum(m * (k / m - share) ** 2) / (len(m) - 1))
    return float(max(1.0, spread / (share * (1.0 - share))))


def effective_size(count: int, exceedances: Sequence[int], sizes: Sequence[int]) -> float:
    """``count`` requests' effective sample size for a percentile, from its batches' exceedances."""
    return count / inflation(exceedances, sizes)


def batch_exceedances(
    batches: Sequence[LatencyHistogram], threshold_us: float
) -> tuple[list[int], list[int]]:
    """Per batch (consecutive requests, in order), how many lie above ``threshold_us`` and how many
    there are: what :func:`inflation` reads. A value in the threshold's own bucket counts as below."""
    above, sizes = [], []
    for batch in batches:
        sizes.append(batch.count)
        above.append(
            batch.overflow + sum(count for low, _, count in batch.iter_buckets() if low > threshold_us)
        )
    return above, sizes


def corrected_interval(
    batches: Sequence[LatencyHistogram], percentile: float, *, confidence: float = 0.95
) -> Interval | None:
    """The percentile's interval over consecutive ``batches`` of one step's requests (10 or more),
    its sample size corrected for their correlation."""
    whole = LatencyHistogram.merged(batches)
    if whole.count == 0:
        return None
    estimate = whole.percentile_us(percentile)
    above, sizes = batch_exceedances(batches, estimate)
    n_eff = effective_size(whole.count, above, sizes)
    return percentile_interval(whole, percentile, confidence=confidence, n_eff=n_eff)
