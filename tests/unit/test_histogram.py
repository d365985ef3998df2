import math

import numpy as np
import numpy.typing as npt
import pytest

from loadgen.histogram import COUNTS_LEN, HIGHEST_US, LatencyHistogram, counts_index


def _hist(values_us: npt.NDArray[np.float64]) -> LatencyHistogram:
    h = LatencyHistogram()
    h.record_many_us(values_us)
    return h


def test_layout_matches_hdrhistogram_1us_60s_3_digits() -> None:
    assert COUNTS_LEN == 17_408  # 16 buckets x 2048 sub-buckets, HdrHistogram's layout


@pytest.mark.parametrize("p", [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0])
def test_percentiles_within_a_tenth_of_a_percent_of_exact_nearest_rank(p: float) -> None:
    rng = np.random.default_rng(7)
    values = np.rint(rng.lognormal(7, 1.2, 100_000))  # ~0.1 ms .. 100 ms, integer microseconds
    h = _hist(values)
    ordered = np.sort(values)
    rank = max(1, math.ceil(p / 100 * len(values) - 1e-9))
    exact = ordered[rank - 1]
    assert abs(h.percentile_us(p) - exact) <= exact * 0.001 + 1e-9


def test_mean_std_min_max_are_exact() -> None:
    values = np.array([3.2, 10.0, 1000.5, 250_000.25])
    h = _hist(values)
    assert h.mean_us == pytest.approx(values.mean())
    assert h.std_us == pytest.approx(values.std())
    assert (h.min_us, h.max_us) == (3.2, 250_000.25)
    assert h.percentile_us(100) == 250_000.25


def test_merge_is_exact_and_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(6, 1, 5000) for _ in range(4)]
    whole = _hist(np.concatenate(parts))
    merged = LatencyHistogram.merged(_hist(p) for p in parts)
    assert merged == whole
    assert merged.count == 20_000
    assert merged.mean_us == pytest.approx(whole.mean_us)
    for p in (50, 99, 99.9):
        assert merged.percentile_us(p) == whole.percentile_us(p)


def test_record_ns_hot_path_counts_each_value_in_its_bucket() -> None:
    h = LatencyHistogram()
    for i in range(10_000):
        h.record_ns(1_000 * i + 400)
    assert h.count == 10_000
    assert h.min_us == pytest.approx(0.4)
    assert h.max_us == pytest.approx(9_999.4)
    assert abs(h.percentile_us(50) - 4_999.4) <= 5


def test_one_value_at_a_time_lands_where_counts_index_puts_it() -> None:
    """The hot path's bucket arithmetic (pure Python) against the vectorised one, at every
    power of two's edges and out of range on both sides."""
    rng = np.random.default_rng(5)
    edges = [(1 << k) * 1000 + d for k in range(11, 26) for d in (-501, -500, -499, 0, 499, 500)]
    ns = np.concatenate(
        [
            rng.integers(-3_000, 3_000, 2_000),
            rng.lognormal(12, 3, 20_000).astype(np.int64),
            np.array(edges + [HIGHEST_US * 1000 + 499, HIGHEST_US * 1000 + 500, 10**15]),
        ]
    )
    h = LatencyHistogram()
    for value in ns.tolist():
        h.record_ns(value)
    us = (ns + 500) // 1000
    inside = us[(us >= 0) & (us <= HIGHEST_US)]
    assert h.count == len(ns)  # reading brings the counters up to date
    assert np.array_equal(h.counts, np.bincount(counts_index(inside), minlength=len(h.counts)))
    assert (h.underflow, h.overflow) == (int((us < 0).sum()), int((us > HIGHEST_US).sum()))
    assert (h.min_us, h.max_us) == (ns.min() / 1000, ns.max() / 1000)
    assert h.sum_us == pytest.approx(ns.sum() / 1000, rel=1e-12)


def test_out_of_range_values_are_counted_not_dropped() -> None:
    h = _hist(np.array([-5.0, 10.0, HIGHEST_US * 2.0]))
    assert (h.underflow, h.overflow, h.count) == (1, 1, 3)
    assert h.percentile_us(100) == HIGHEST_US * 2.0
    assert h.percentile_us(1) == -5.0


def test_encode_decode_roundtrip_is_small() -> None:
    rng = np.random.default_rng(1)
    h = _hist(rng.lognormal(7, 1, 50_000))
    blob = h.encode()
    back = LatencyHistogram.decode(blob)
    assert back == h
    assert back.mean_us == pytest.approx(h.mean_us)
    assert len(blob) < 40_000
    assert LatencyHistogram.decode(LatencyHistogram().encode()).count == 0


def test_decode_rejects_foreign_bytes() -> None:
    with pytest.raises(ValueError):
        LatencyHistogram.decode(b"nonsense")


def test_empty_histogram_reads_nan() -> None:
    h = LatencyHistogram()
    assert h.count == 0
    assert math.isnan(h.percentile_us(99))
    assert math.isnan(h.mean_us)


def test_bad_percentile_raises() -> None:
    with pytest.raises(ValueError):
        _hist(np.array([1.0])).percentile_us(101)


def test_take_recent_gives_exactly_what_was_recorded_since_the_last_take() -> None:
    """Batches come from these: across many flushes (compacted as they pile up) each take is the
    counters' difference since the previous one, each bucket once; the first take is everything."""
    rng = np.random.default_rng(7)
    h = LatencyHistogram(recent=True)
    seen = np.zeros(COUNTS_LEN, dtype=np.int64)
    for size in (10, 5_000, 0, 20_000, 3):  # 20,000 values: dozens of flushes, several compactions
        for ns in (rng.lognormal(8, 1.5, size) * 1000).astype(np.int64).tolist():
            h.record_ns(ns)
        buckets, counts = h.take_recent()
        gained = h.counts - seen
        assert buckets.tolist() == np.flatnonzero(gained).tolist()  # ascending, each once
        assert counts.tolist() == gained[buckets].tolist()
        assert int(counts.sum()) == size
        seen = h.counts.copy()
    h.record_ns(5_000)
    buckets, counts = h.take_recent(last=True)
    assert counts.tolist() == [1]
    with pytest.raises(ValueError, match="recent=True"):
        h.take_recent()  # let go after the last take
    with pytest.raises(ValueError, match="recent=True"):
        LatencyHistogram().take_recent()
