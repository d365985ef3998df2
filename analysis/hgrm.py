"""A step's full percentile spectrum in HdrHistogram's ``.hgrm`` text form.

The text is what HdrHistogram's ``outputPercentileDistribution`` writes (and wrk2
prints), so the usual tools (HdrHistogram's online plotter, hdr-plot) read it:
percentile levels that halve their distance to 100% every 5 ticks, values in
milliseconds. Values are read from the stored histogram exactly as
``LatencyHistogram.percentile_us`` reads them: the highest value of the bucket,
clamped to the exact min and max, so the 100% row and ``Max`` are the true maximum
(HdrHistogram prints the bucket's highest equivalent value instead), and Mean and
StdDeviation are the exact ones, not computed from bucket midpoints. Out-of-range
values count at the exact min or max: TotalCount is every request. Otherwise the
text is HdrHistogram's (Java) to the character, its half-up rounding included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from loadgen.histogram import COUNTS_LEN, SIGNIFICANT_DIGITS, LatencyHistogram

TICKS_PER_HALF_DISTANCE = 5
MS_PER_US = 1000.0
"""The value unit scaling ratio: stored microseconds are written as milliseconds."""

_SUB_BUCKETS = 1 << math.ceil(math.log2(2 * 10**SIGNIFICANT_DIGITS))
_BUCKETS = COUNTS_LEN // (_SUB_BUCKETS // 2) - 1


@dataclass(frozen=True)
class SpectrumRow:
    """One line of the spectrum: at ``percentile`` (0..1), ``total_count`` requests took <= ``value_us``."""

    value_us: float
    percentile: float
    total_count: int


def _values_and_counts(hist: LatencyHistogram) -> Iterator[tuple[float, int]]:
    lo, hi = hist.min_us, hist.max_us
    if hist.underflow:
        yield lo, hist.underflow
    for _, high, count in hist.iter_buckets():
        yield min(max(float(high), lo), hi), count
    if hist.overflow:
        yield hi, hist.overflow


def _next_level(level: float, ticks_per_half_distance: int) -> float:
    # HdrHistogram's PercentileIterator: fixed-size ticks within each half distance to 100%
    half_distances = int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
    return level + 100.0 / (ticks_per_half_distance << half_distances)


def percentile_spectrum(
    hist: LatencyHistogram, ticks_per_half_distance: int = TICKS_PER_HALF_DISTANCE
) -> list[SpectrumRow]:
    """The rows HdrHistogram's percentile iterator yields, ending with the 100% row (empty if no data)."""
    if ticks_per_half_distance < 1:
        raise ValueError("ticks_per_half_distance must be >= 1")
    total = hist.count
    rows: list[SpectrumRow] = []
    if total == 0:
        return rows
    level, seen, value = 0.0, 0, math.nan
    for value, count in _values_and_counts(hist):
        seen += count
        if seen == total:  # the last bucket: one row at the current level, then the 100% row
            rows.append(SpectrumRow(value, level / 100.0, seen))
            break
        while 100.0 * seen / total >= level:
            rows.append(SpectrumRow(value, level / 100.0, seen))
            following = _next_level(level, ticks_per_half_distance)
            if following <= level:  # ticks below float resolution: nothing more to show
                break
            level = following
    rows.append(SpectrumRow(value, 1.0, total))
    return rows


def _fixed(value: float, decimals: int, width: int) -> str:
    # Java's %.Nf rounds the shortest decimal form half-up; Python's rounds the binary value half-even
    rounded = Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return format(rounded, "f").rjust(width)


def format_hgrm(hist: LatencyHistogram, ticks_per_half_distance: int = TICKS_PER_HALF_DISTANCE) -> str:
    """The ``.hgrm`` text of a histogram (microseconds in, milliseconds out, 3 decimals)."""
    digits = SIGNIFICANT_DIGITS
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    rows = percentile_spectrum(hist, ticks_per_half_distance)
    for row in rows:
        value, percentile = _fixed(row.value_us / MS_PER_US, digits, 12), _fixed(row.percentile, 12, 2)
        line = f"{value} {percentile} {row.total_count:10d}"
        if row.percentile != 1.0:
            line += " " + _fixed(1.0 / (1.0 - row.percentile), 2, 14)
        lines.append(line)
    empty = not rows
    mean = 0.0 if empty else hist.mean_us / MS_PER_US
    std = 0.0 if empty else hist.std_us / MS_PER_US
    top = 0.0 if empty else hist.max_us / MS_PER_US
    lines += [
        f"#[Mean    = {_fixed(mean, digits, 12)}, StdDeviation   = {_fixed(std, digits, 12)}]",
        f"#[Max     = {_fixed(top, digits, 12)}, Total count    = {hist.count:12d}]",
        f"#[Buckets = {_BUCKETS:12d}, SubBuckets     = {_SUB_BUCKETS:12d}]",
    ]
    return "\n".join(lines) + "\n"


def write_hgrm(hist: LatencyHistogram, path: Path | str) -> None:
    Path(path).write_text(format_hgrm(hist), encoding="utf-8")
