"""The one latency histogram type: HdrHistogram's bucket layout in a numpy array.

Every latency loadgen measures lands in a :class:`LatencyHistogram`. Workers and
windows fill their own and merge them exactly (counts add); percentiles are read
from the merged counts, never averaged; the database stores the encoded counts.

Layout: values are integer microseconds, 1 us .. 60 s, 3 significant digits
(2048 sub-buckets per power of two, 17,408 counters), the same indexing as
HdrHistogram, so the relative error of any value read back is <= 0.1%.
Values below 0 or above the highest trackable value are counted in
``underflow``/``overflow``: never silently dropped.

Recording a value counts its bucket in a small dict (a few hundred ns, in Python); the dict
is added to the counters when they are read. An open loop's sender records between sends, so
no recording may cost more than the send lag it is measured against: binning a buffer of 512
values with numpy took 34 us alone and 60-160 us on a busy core, and most sends that left over
60 us late were behind one (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

_SUB_BUCKET_COUNT = 1 << math.ceil(math.log2(2 * 10**SIGNIFICANT_DIGITS))  # 2048
_SUB_BUCKET_HALF_MAG = int(math.log2(_SUB_BUCKET_COUNT)) - 1  # 10
_SUB_BUCKET_HALF = _SUB_BUCKET_COUNT // 2  # 1024
_SUB_BUCKET_MASK = _SUB_BUCKET_COUNT - 1


def _bucket_count(highest: int) -> int:
    smallest_untrackable = _SUB_BUCKET_COUNT
    count = 1
    while smallest_untrackable <= highest:
        smallest_untrackable <<= 1
        count += 1
    return count


_BUCKETS = _bucket_count(HIGHEST_US)
COUNTS_LEN = (_BUCKETS + 1) * _SUB_BUCKET_HALF  # 17,408
_MAGIC = b"LGH1"
_HEADER = struct.Struct("<4sIIIqqqqdd")  # magic, len, lowest, highest, count, under, over, n, min, max
# sums are stored after the header as two doubles (sum, sum of squares)
_SUMS = struct.Struct("<dd")


def counts_index(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """HdrHistogram's counts index of each value (values must lie in 0..HIGHEST_US)."""
    # frexp gives the exact bit length for integers below 2**53
    _, bit_length = np.frexp((values | _SUB_BUCKET_MASK).astype(np.float64))
    bucket = bit_length.astype(np.int64) - (_SUB_BUCKET_HALF_MAG + 1)
    sub_bucket = values >> bucket
    result: npt.NDArray[np.int64] = ((bucket + 1) << _SUB_BUCKET_HALF_MAG) + (sub_bucket - _SUB_BUCKET_HALF)
    return result


def _index_bounds() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Lowest and highest value that maps to each counts index."""
    idx = np.arange(COUNTS_LEN, dtype=np.int64)
    bucket = (idx >> _SUB_BUCKET_HALF_MAG) - 1
    sub_bucket = (idx & (_SUB_BUCKET_HALF - 1)) + _SUB_BUCKET_HALF
    first = bucket < 0
    bucket = np.where(first, 0, bucket)
    sub_bucket = np.where(first, sub_bucket - _SUB_BUCKET_HALF, sub_bucket)
    low = sub_bucket << bucket
    high = low + (np.int64(1) << bucket) - 1
    return low, high


_LOW, _HIGH = _index_bounds()


Sparse = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""Buckets (counts indices, ascending and distinct) and their counts."""

_PIECES = 8
"""Flushed pieces a histogram keeps for :meth:`LatencyHistogram.take_recent` before it compacts
them into one (so each compaction, and each take, handles a bounded number of entries)."""


def _compact(pieces: Sequence[Sparse]) -> Sparse:
    """Several sparse pieces as one: each bucket once, its counts summed."""
    if len(pieces) == 1:
        return pieces[0]
    buckets = np.concatenate([b for b, _ in pieces])
    counts = np.concatenate([c for _, c in pieces])
    order = np.argsort(buckets, kind="stable")
    buckets, counts = buckets[order], counts[order]
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    return buckets[starts], np.add.reduceat(counts, starts)


def bucket_low_us(indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The lowest value (microseconds) of each counts index: what a bucket's values are above."""
    low: npt.NDArray[np.int64] = _LOW[indices]
    return low


@dataclass(frozen=True)
class Percentile:
    percentile: float
    value_us: float
    count: int


class LatencyHistogram:
    """Mergeable latency histogram (microseconds). See the module docstring."""

    __slots__ = (
        "_pending",
        "_recent",
        "_counts",
        "max_us",
        "min_us",
        "overflow",
        "sum_sq_us",
        "sum_us",
        "underflow",
    )

    def __init__(self, *, recent: bool = False) -> None:
        """``recent``: also keep what was recorded since the last :meth:`take_recent` (a window's
        histogram, which the step cuts into batches)."""
        self._counts: npt.NDArray[np.int64] = np.zeros(COUNTS_LEN, dtype=np.int64)
        """Counts per bucket up to the last flush: read :attr:`counts`, which flushes first."""
        self.underflow = 0
        self.overflow = 0
        self.sum_us = 0.0
        self.sum_sq_us = 0.0
        self.min_us = math.inf
        self.max_us = -math.inf
        self._pending: defaultdict[int, int] = defaultdict(int)
        """Counts per bucket recorded since the counters were last brought up to date."""
        self._recent: list[Sparse] | None = [] if recent else None
        """Each flush's buckets and counts since :meth:`take_recent` last ran, compacted as they
        pile up."""

    # -- recording -------------------------------------------------------------------------------
    def record_ns(self, value_ns: int) -> None:
        """Record one latency in nanoseconds (the hot path: its bucket counted in a dict)."""
        us = (value_ns + 500) // 1000
        if 0 <= us < _SUB_BUCKET_COUNT:  # the first 2,048 buckets hold one microsecond each
            self._pending[us] += 1
        elif us < 0:
            self.underflow += 1
        elif us <= HIGHEST_US:  # as counts_index
            shift = us.bit_length() - _SUB_BUCKET_HALF_MAG - 1
            self._pending[((shift + 1) << _SUB_BUCKET_HALF_MAG) + (us >> shift) - _SUB_BUCKET_HALF] += 1
        else:
            self.overflow += 1
        exact = value_ns / 1000
        self.sum_us += exact
        self.sum_sq_us += exact * exact
        if exact < self.min_us:
            self.min_us = exact
        if exact > self.max_us:
            self.max_us = exact

    def record_many_us(self, values_us: Iterable[float] | npt.NDArray[np.float64]) -> None:
        """Record many latencies given in microseconds."""
        self._flush()
        arr = np.asarray(values_us, dtype=np.float64)
        self._add_us(np.rint(arr).astype(np.int64), arr)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        buckets = np.fromiter(pending, np.int64, len(pending))
        counts = np.fromiter(pending.values(), np.int64, len(pending))
        pending.clear()
        order = np.argsort(buckets)
        self._add_counts(buckets[order], counts[order])

    def _add_us(self, us: npt.NDArray[np.int64], exact: npt.NDArray[np.float64]) -> None:
        if us.size == 0:
            return
        under = us < 0
        over = us > HIGHEST_US
        bad = under | over
        if bad.any():
            self.underflow += int(under.sum())
            self.overflow += int(over.sum())
        self.min_us = min(self.min_us, float(exact.min()))
        self.max_us = max(self.max_us, float(exact.max()))
        self.sum_us += float(exact.sum())
        self.sum_sq_us += float(np.square(exact).sum())
        inside = us[~bad] if bad.any() else us
        self._add_counts(*np.unique(counts_index(inside), return_counts=True))

    def _add_counts(self, buckets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        """Add sparse counts (buckets ascending, distinct): only the buckets hit, never all 17,408."""
        self._counts[buckets] += counts
        recent = self._recent
        if recent is not None:
            recent.append((buckets, counts))
            if len(recent) >= _PIECES:
                recent[:] = [_compact(recent)]

    def take_recent(self, *, last: bool = False) -> Sparse:
        """The non-zero buckets (counts indices) and their counts recorded since the last call
        (since the start, at the first), for :class:`~loadgen.batches.Batches`. It runs on the
        sending loop, so its cost follows what was recorded, never the 17,408 counters.
        ``last``: no more calls follow. Needs ``LatencyHistogram(recent=True)``."""
        self._flush()
        recent = self._recent
        if recent is None:
            raise ValueError("this histogram keeps no recent counts: LatencyHistogram(recent=True)")
        self._recent = None if last else []
        if not recent:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return _compact(recent)

    # -- merging ---------------------------------------------------------------------------------
    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other`` into this histogram (exact); returns self."""
        self._flush()
        other._flush()
        self._counts += other._counts
        self.underflow += other.underflow
        self.overflow += other.overflow
        self.sum_us += other.sum_us
        self.sum_sq_us += other.sum_sq_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        return self

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram().merge(self)

    # -- reading ---------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """All recorded values, the out-of-range ones included."""
        self._flush()
        return int(self._counts.sum()) + self.underflow + self.overflow

    @property
    def mean_us(self) -> float:
        n = self.count
        return self.sum_us / n if n else math.nan

    @property
    def std_us(self) -> float:
        n = self.count
        if n == 0:
            return math.nan
        mean = self.sum_us / n
        return math.sqrt(max(self.sum_sq_us / n - mean * mean, 0.0))

    def percentile_us(self, percentile: float) -> float:
        """Nearest-rank percentile: the highest value equivalent to the bucket holding that rank.

        Clamped to the exact min and max, so p100 is the true maximum. Ranks that fall
        among the out-of-range values return the exact min or max.
        """
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {percentile}")
        n = self.count
        if n == 0:
            return math.nan
        return self.bucket_of_rank(max(1, math.ceil(percentile / 100.0 * n - 1e-9)))[1]

    def bucket_of_rank(self, rank: int) -> tuple[float, float]:
        """The (lowest, highest) values, microseconds, of the bucket holding the ``rank``-th
        smallest value (1-based), clamped to the exact min and max; the out-of-range values
        are the min or the max themselves."""
        if rank <= self.underflow:
            return self.min_us, self.min_us
        cumulative = np.cumsum(self.counts)
        in_range = rank - self.underflow
        if in_range > int(cumulative[-1]):
            return self.max_us, self.max_us
        index = int(np.searchsorted(cumulative, in_range))
        low = min(max(float(_LOW[index]), self.min_us), self.max_us)
        return low, float(min(max(float(_HIGH[index]), self.min_us), self.max_us))

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """Counts per bucket (counts index), every recorded value in them (a view: copy it to
        keep it)."""
        self._flush()
        return self._counts

    def percentiles_us(self, percentiles: Sequence[float]) -> dict[float, float]:
        return {p: self.percentile_us(p) for p in percentiles}

    def iter_buckets(self) -> Iterator[tuple[int, int, int]]:
        """(lowest value, highest value, count) of each non-empty bucket, ascending."""
        self._flush()
        for i in np.flatnonzero(self._counts):
            yield int(_LOW[i]), int(_HIGH[i]), int(self._counts[i])

    # -- storage ---------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """Compact bytes: header, exact sums, then the non-zero (index, count) pairs, zlib'd."""
        self._flush()
        nz = np.flatnonzero(self._counts).astype(np.int32)
        body = nz.tobytes() + self._counts[nz].astype(np.int64).tobytes()
        header = _HEADER.pack(
            _MAGIC,
            COUNTS_LEN,
            LOWEST_US,
            HIGHEST_US,
            int(self._counts.sum()),
            self.underflow,
            self.overflow,
            int(nz.size),
            self.min_us,
            self.max_us,
        )
        return header + _SUMS.pack(self.sum_us, self.sum_sq_us) + zlib.compress(body, 6)

    @classmethod
    def decode(cls, data: bytes) -> LatencyHistogram:
        try:
            magic, length, lowest, highest, _, under, over, n, lo, hi = _HEADER.unpack_from(data)
        except struct.error as exc:
            raise ValueError("not an encoded loadgen histogram") from exc
        if magic != _MAGIC or (length, lowest, highest) != (COUNTS_LEN, LOWEST_US, HIGHEST_US):
            raise ValueError("not an encoded loadgen histogram, or one with another layout")
        hist = cls()
        hist.sum_us, hist.sum_sq_us = _SUMS.unpack_from(data, _HEADER.size)
        body = zlib.decompress(data[_HEADER.size + _SUMS.size :])
        idx = np.frombuffer(body[: 4 * n], dtype=np.int32)
        hist._counts[idx] = np.frombuffer(body[4 * n :], dtype=np.int64)
        hist.underflow, hist.overflow, hist.min_us, hist.max_us = under, over, lo, hi
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        self._flush()
        other._flush()
        return (
            bool(np.array_equal(self._counts, other._counts))
            and (self.underflow, self.overflow) == (other.underflow, other.overflow)
            and (self.min_us, self.max_us) == (other.min_us, other.max_us)
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> bytes:
        """Pickled as :meth:`encode` (a few KB instead of 17,408 counters): workers send these."""
        return self.encode()

    def __setstate__(self, state: bytes) -> None:
        decoded = LatencyHistogram.decode(state)
        for name in self.__slots__:
            setattr(self, name, getattr(decoded, name))

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, mean_us={self.mean_us:.1f}, max_us={self.max_us:.1f})"
