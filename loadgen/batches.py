"""A window's latencies in consecutive batches, for intervals that allow for correlation.

Successive latencies of a load test are correlated (a slow spell slows many requests in a row),
so a percentile's confidence interval needs to know how much the share of slow requests moves
from one stretch of time to the next: the batch-means method (see :mod:`loadgen.intervals`).
The step cuts each window into :data:`BATCHES_PER_WINDOW` batches by time; a batch is the
difference of the window's histogram counters between two marks, kept sparse (a few hundred
non-zero buckets rather than 17,408 counters). Marking merges the few sparse pieces the histogram
kept since the last mark (:meth:`~loadgen.histogram.LatencyHistogram.take_recent`), never the
whole counters, and costs nothing per request.
Workers' batches merge exactly, batch ``i`` with batch ``i``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from loadgen.histogram import LatencyHistogram, bucket_low_us

BATCHES_PER_WINDOW = 10
"""Batches a window is cut into: 3 windows give 30 batches, enough for batch means (10 or more)."""


class Batches:
    """Consecutive batches of requests: each batch's non-zero buckets and their counts."""

    __slots__ = ("buckets", "counts")

    def __init__(self) -> None:
        self.buckets: list[npt.NDArray[np.int64]] = []
        self.counts: list[npt.NDArray[np.int64]] = []

    def mark(self, histogram: LatencyHistogram, *, last: bool = False) -> None:
        """End a batch: what ``histogram`` (the window's) gained since the last mark; ``last``: the
        window's end."""
        buckets, counts = histogram.take_recent(last=last)
        self.buckets.append(buckets)
        self.counts.append(counts)

    def __len__(self) -> int:
        return len(self.counts)

    def merge(self, other: Batches) -> Batches:
        """Add another worker's batches over the same window, batch ``i`` into batch ``i`` (a bucket
        may then appear twice in a batch: every reader sums)."""
        for i, (buckets, counts) in enumerate(zip(other.buckets, other.counts, strict=True)):
            if i < len(self.counts):
                self.buckets[i] = np.concatenate((self.buckets[i], buckets))
                self.counts[i] = np.concatenate((self.counts[i], counts))
            else:
                self.buckets.append(buckets)
                self.counts.append(counts)
        return self

    def extend(self, later: Batches) -> Batches:
        """Append the batches of a later window."""
        self.buckets.extend(later.buckets)
        self.counts.extend(later.counts)
        return self

    @classmethod
    def joined(cls, windows: list[Batches]) -> Batches:
        """Several consecutive windows' batches, in order."""
        joined = cls()
        for batches in windows:
            joined.extend(batches)
        return joined

    def sizes(self) -> list[int]:
        """Requests per batch."""
        return [int(counts.sum()) for counts in self.counts]

    def above(self, threshold_us: float) -> list[int]:
        """Per batch, the requests in buckets wholly above ``threshold_us`` (a value in the
        threshold's own bucket counts as below, as a percentile read from a bucket is its top)."""
        return [
            int(counts[bucket_low_us(buckets) > threshold_us].sum())
            for buckets, counts in zip(self.buckets, self.counts, strict=True)
        ]
