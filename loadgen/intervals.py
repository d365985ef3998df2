"""Confidence intervals for a percentile read from a latency histogram, without assuming a
distribution (issue 20): every step stores one per reported percentile and one for its throughput, the
stopping rule (``--stop-when``) reads them while a step runs, and ``compare`` judges with them.

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
from typing import Any

import numpy as np

from loadgen.batches import Batches
from loadgen.histogram import LatencyHistogram


def _stats() -> Any:
    """scipy.stats, imported when first needed: it takes 0.4 s, and every command imports this
    module (through the result types) while only a measured step or an analysis needs it."""
    from scipy import stats

    return stats


def preload() -> None:
    """Import scipy.stats now: a sweep calls this before its load starts, so that the import
    never holds up the event loop (and every request in flight) at the end of the first step."""
    _stats()


MIN_BATCHES = 10
"""Fewer batches tell too little about their spread (batch means want 10 to 30)."""


@dataclass(frozen=True)
class StepInterval:
    """One interval a step stores: a latency percentile's (microseconds), the throughput's
    (inferences/s), or MLPerf's early-stopping estimate of a percentile (an upper bound only)."""

    measure: str
    """``latency``, ``throughput`` or ``early_stopping`` (:mod:`loadgen.config.measurement`)."""
    percentile: float | None
    estimate: float
    low: float | None
    """None (with ``high``): too few requests for an interval at this confidence."""
    high: float | None
    confidence: float
    n_eff: float | None = None
    """Latency: the effective sample size (None: too few batches to correct, the requests used).
    Throughput: the batches."""
    std_error: float | None = None
    """Throughput: the batch means' standard error (an interval at another level reads it)."""

    @property
    def half_width_pct(self) -> float:
        """The interval's farther end from the estimate, percent of it (inf: no interval)."""
        if self.low is None or self.high is None or not self.estimate > 0:
            return math.inf
        return max(self.estimate - self.low, self.high - self.estimate) / self.estimate * 100.0


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
    low = int(_stats().binom.ppf(alpha / 2, n, quantile))
    high = int(_stats().binom.ppf(1.0 - alpha / 2, n, quantile)) + 1
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
    if len(m) < MIN_BATCHES:
        raise ValueError(f"batch means need {MIN_BATCHES} batches or more, got {len(m)}")
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


def percentile_n_eff(whole: LatencyHistogram, batches: Batches, percentile: float) -> float | None:
    """The effective sample size of ``whole`` for ``percentile``, from its consecutive ``batches``;
    None when they are too few to tell (fewer than 10 with requests): the interval is then
    formed uncorrected and says so."""
    sizes = batches.sizes()
    if sum(1 for size in sizes if size > 0) < MIN_BATCHES or whole.count == 0:
        return None
    return effective_size(whole.count, batches.above(whole.percentile_us(percentile)), sizes)


def corrected_interval(
    whole: LatencyHistogram, batches: Batches, percentile: float, *, confidence: float = 0.95
) -> Interval | None:
    """The percentile's interval over one step's requests (``whole``, in ``batches``), its sample
    size corrected for their correlation."""
    n_eff = percentile_n_eff(whole, batches, percentile)
    return percentile_interval(whole, percentile, confidence=confidence, n_eff=n_eff)


def rate_interval(
    sizes: Sequence[int], durations_s: Sequence[float], *, confidence: float = 0.95, scale: float = 1.0
) -> tuple[float, float, float, float] | None:
    """Throughput and its interval from consecutive batches (``sizes[i]`` requests answered in
    ``durations_s[i]``): batch means of the rate, as a ratio estimator, with Student's t (Law 2015,
    9.5.3); ``scale`` (the batch size) turns requests into inferences. (estimate, low, high,
    standard error) per second; None for fewer than :data:`MIN_BATCHES` batches."""
    pairs = [(n, d) for n, d in zip(sizes, durations_s, strict=True) if d > 0]
    if len(pairs) < MIN_BATCHES:
        return None
    counts = np.array([n for n, _ in pairs], dtype=np.float64)
    lengths = np.array([d for _, d in pairs], dtype=np.float64)
    rate = counts.sum() / lengths.sum()
    # the ratio estimator's standard error: a short batch (a mark that ran late) weighs little
    spread = float(np.sum((counts - rate * lengths) ** 2) / (len(pairs) - 1))
    error = math.sqrt(spread / len(pairs)) / float(lengths.mean()) * scale
    estimate = rate * scale
    half = t_half_width(error, len(pairs) - 1, confidence)
    return estimate, max(0.0, estimate - half), estimate + half, error


def t_half_width(std_error: float, dof: float, confidence: float) -> float:
    """Half the width of Student's t interval at ``confidence``."""
    return float(_stats().t.ppf(0.5 + confidence / 2, dof)) * std_error


def early_stopping_estimate(
    histogram: LatencyHistogram, percentile: float, *, confidence: float = 0.99
) -> float | None:
    """MLPerf LoadGen's early-stopping estimate of a percentile: the latency that, with
    ``confidence``, the true percentile does not exceed. With ``t`` requests slower than it, the
    largest ``t`` for which ``t`` or fewer slow requests would be that unlikely (at most
    ``1 - confidence``) were the percentile any higher (BetaRegularized(p, h, 1 + t) <= 1 - c in
    mlcommons/inference ``loadgen/early_stopping.cc``; 459 requests at least for p99). None when
    there are too few requests."""
    n = histogram.count
    over = 1.0 - percentile / 100.0
    if n == 0 or not 0.0 < over < 1.0:
        return None
    slow = int(_stats().binom.ppf(1.0 - confidence, n, over))
    if _stats().binom.cdf(slow, n, over) > 1.0 - confidence:
        slow -= 1
    if slow < 0:
        return None
    return histogram.bucket_of_rank(n - slow)[1]
