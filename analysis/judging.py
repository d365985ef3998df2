"""One matched pair of steps judged: the thresholds, each run's noise, the verdict and its reasons.

:mod:`analysis.compare` matches the steps of two runs and says what differs between the runs;
this module judges each matched pair (see that module for the rules).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.significance import ChangeInterval, change_interval
from analysis.step_intervals import NOT_STORED, latency_bounds, throughput_bounds
from loadgen.intervals import StepInterval
from loadgen.results import REPORTED_PERCENTILES, STABILITY_WINDOWS, spread_pct
from loadgen.storage import StepRecord
from loadgen.tallies import StreamTally

NO_STREAM_NOISE = "windows keep no stream data: judged by the thresholds alone"
"""Said beside a first-response change: its noise cannot be read from the stored windows."""


class Verdict(enum.StrEnum):
    PASS = "pass"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    WITHIN_NOISE = "within noise"
    """A step only: a threshold was crossed, but by less than the runs' own noise (no run verdict)."""
    NOT_SIGNIFICANT = "no significant change"
    """A step only: a threshold was crossed, but the change's interval holds 0 (no run verdict)."""


@dataclass(frozen=True)
class Thresholds:
    """How much worse a step may get before it is a regression (percent of the base run)."""

    max_throughput_drop_pct: float = 5.0
    max_latency_rise_pct: float = 10.0
    percentile: float = 99.0
    """The latency percentile that gates, read from the histograms."""
    noise_aware: bool = True
    """A change that is not significant (its interval holds 0; steps stored without intervals:
    within the runs' window-to-window noise) is neither a regression nor an improvement;
    False (``compare --strict``): the thresholds alone judge."""
    confidence: float = 0.95
    """The chance that two identical runs get no false verdict, over all the checks made."""

    def __post_init__(self) -> None:
        for name in ("max_throughput_drop_pct", "max_latency_rise_pct"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a percentage >= 0, got {value}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be within (0, 100], got {self.percentile:g}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be within [0.5, 1), got {self.confidence:g}")


def change_pct(base: float, new: float) -> float:
    """Relative change in percent; +/-inf from a zero base, NaN when either side is undefined."""
    if math.isnan(base) or math.isnan(new):
        return math.nan
    if base == new:
        return 0.0
    if base == 0:
        return math.copysign(math.inf, new)
    return (new - base) / abs(base) * 100.0


@dataclass(frozen=True)
class LatencyDelta:
    percentile: float
    base_us: float
    new_us: float

    @property
    def change_pct(self) -> float:
        return change_pct(self.base_us, self.new_us)


@dataclass(frozen=True)
class Noise:
    """One run's noise at one step, percent: how far one of the windows its numbers come from
    strayed from their mean; NaN where unknown (fewer than 2 windows, a window with no answer)."""

    throughput_pct: float = math.nan
    latency_pct: float = math.nan
    """Of the windows' mean latency: the windows keep no percentiles."""

    @classmethod
    def of(cls, step: StepRecord) -> Noise:
        measured = step.windows[step.warmup_windows or 0 :]  # not those found still warming up
        windows = measured[-STABILITY_WINDOWS:]  # those the window rule's numbers come from
        return cls(
            spread_pct([w.throughput for w in windows]), spread_pct([w.mean_latency_us for w in windows])
        )


def combined_noise(base_pct: float, new_pct: float) -> float:
    """Two runs' independent noises together (root of the sum of squares); NaN if either is unknown."""
    if math.isnan(base_pct) or math.isnan(new_pct):
        return math.nan
    return math.hypot(base_pct, new_pct)


@dataclass(frozen=True)
class StreamDelta:
    """``--streaming`` steps: time to the first response and responses per second, both runs."""

    first_response: tuple[LatencyDelta, ...]
    """The reported percentiles and the gating one, ascending, from the first-response histograms."""
    base_responses_per_s: float
    new_responses_per_s: float
    base_responses_per_request: float
    new_responses_per_request: float

    @property
    def responses_change_pct(self) -> float:
        return change_pct(self.base_responses_per_s, self.new_responses_per_s)

    def first(self, percentile: float) -> LatencyDelta:
        return next(d for d in self.first_response if d.percentile == percentile)


@dataclass(frozen=True)
class StepComparison:
    """One matched level: both steps' throughput and latency percentiles, and the verdict."""

    level: float
    base_index: int
    new_index: int
    base_throughput: float
    new_throughput: float
    latencies: tuple[LatencyDelta, ...]
    """The reported percentiles (50, 90, 95, 99) and the gating one, ascending."""
    verdict: Verdict
    reasons: tuple[str, ...]
    """Why the step regressed or improved, e.g. ``throughput -12.3% (max drop 5%)``; a threshold
    crossed within the noise says so: ``throughput -6.0% (max drop 5%; noise ±8.1%)``."""
    base_noise: Noise = Noise()
    new_noise: Noise = Noise()
    stream: StreamDelta | None = None
    """Both steps streamed (``--streaming``): first responses and responses/s; None otherwise."""
    throughput_change: ChangeInterval | None = None
    """The throughput change's interval (None: a step stored without intervals)."""
    latency_change: ChangeInterval | None = None
    """The gating percentile's change interval (None: none stored, or too few requests)."""

    @property
    def method(self) -> str:
        """How the step was judged: by intervals, by the windows' noise, or by the thresholds."""
        if self.throughput_change is not None and self.latency_change is not None:
            return "intervals"
        return "noise" if math.isfinite(self.throughput_noise_pct) else "thresholds"

    @property
    def throughput_change_pct(self) -> float:
        return change_pct(self.base_throughput, self.new_throughput)

    @property
    def throughput_noise_pct(self) -> float:
        """Both runs' throughput noise combined: a smaller change is not measurable."""
        return combined_noise(self.base_noise.throughput_pct, self.new_noise.throughput_pct)

    @property
    def latency_noise_pct(self) -> float:
        """Both runs' latency noise combined (of the windows' mean latency)."""
        return combined_noise(self.base_noise.latency_pct, self.new_noise.latency_pct)

    @property
    def within_noise(self) -> bool:
        return self.verdict is Verdict.WITHIN_NOISE

    def latency(self, percentile: float) -> LatencyDelta:
        return next(d for d in self.latencies if d.percentile == percentile)


@dataclass(frozen=True)
class Check:
    """One number a step is judged on: its change against one threshold."""

    reason: str
    """What changed and by how much, e.g. ``throughput -12.3%``."""
    change: float
    limit: float
    rise_is_worse: bool
    noise: float = math.nan
    note: str = ""
    """Said with the threshold, e.g. why the noise is unknown."""
    interval: ChangeInterval | None = None
    """The change's interval: where known, it decides instead of the noise."""
    unformed: str = ""
    """Why the steps, which stored intervals, have none for this change (too few requests): it
    cannot be shown significant, so it is not judged, and the reason says so."""


def gate_checks(
    throughput: float,
    latency: float,
    thresholds: Thresholds,
    intervals: tuple[ChangeInterval | None, ChangeInterval | None],
    *,
    noise: tuple[float, float] = (math.nan, math.nan),
    unformed: tuple[str, str] = ("", ""),
) -> list[Check]:
    """The two checks every matched step is judged on: the throughput change (percent) against
    the allowed drop, and the gating percentile's against the allowed rise."""
    p = thresholds.percentile
    return [
        Check(
            f"throughput {throughput:+.1f}%",
            throughput,
            thresholds.max_throughput_drop_pct,
            False,
            noise[0],
            interval=intervals[0],
            unformed=unformed[0],
        ),
        Check(
            f"p{p:g} latency {latency:+.1f}%",
            latency,
            thresholds.max_latency_rise_pct,
            True,
            noise[1],
            interval=intervals[1],
            unformed=unformed[1],
        ),
    ]


def judge(checks: Sequence[Check], noise_aware: bool = True) -> tuple[Verdict, tuple[str, ...]]:
    """Each threshold crossed is a reason; one crossed by no more than the noise (NaN: unknown,
    never within) is noted with it and judges nothing: only noise crossings make ``within noise``."""
    worse: list[str] = []
    better: list[str] = []
    noisy: list[str] = []
    unsure: list[str] = []
    for check in checks:
        change = check.change if check.rise_is_worse else -check.change  # > 0: worse
        if abs(change) <= check.limit or math.isnan(change):
            continue
        limit = f"max {'rise' if check.rise_is_worse else 'drop'} {check.limit:g}%" if change > 0 else ""
        limit = "; ".join(part for part in (limit, check.note) if part)
        interval = check.interval
        if noise_aware and interval is not None:
            said = f"{interval.confidence * 100:.4g}% interval {interval.text()}"
            said = f"{limit}; {said}" if limit else said
            if interval.significant:
                (worse if change > 0 else better).append(f"{check.reason} ({said})")
            else:
                unsure.append(f"{check.reason} ({said} holds 0)")
        elif noise_aware and check.unformed:
            unsure.append(f"{check.reason} ({limit + '; ' if limit else ''}{check.unformed}: not judged)")
        elif noise_aware and abs(check.change) <= check.noise:  # False for a NaN noise, an infinite change
            noisy.append(f"{check.reason} ({limit + '; ' if limit else ''}noise ±{check.noise:.1f}%)")
        else:
            (worse if change > 0 else better).append(f"{check.reason} ({limit})" if limit else check.reason)
    if worse:
        return Verdict.REGRESSION, (*worse, *unsure, *noisy)
    if better:
        return Verdict.IMPROVEMENT, (*better, *unsure, *noisy)
    if unsure:
        return Verdict.NOT_SIGNIFICANT, (*unsure, *noisy)
    return (Verdict.WITHIN_NOISE, tuple(noisy)) if noisy else (Verdict.PASS, ())


def _per_s(step: StepRecord, stream: StreamTally) -> float:
    return stream.responses / step.duration_s if step.duration_s > 0 else math.nan


def _per_request(stream: StreamTally) -> float:
    return stream.responses / stream.counts.count if stream.counts.count else math.nan


def stream_delta(base: StepRecord, new: StepRecord, percentiles: Sequence[float]) -> StreamDelta | None:
    """Both steps' stream measures; None unless both were streamed."""
    base_stream, new_stream = base.stream(), new.stream()
    if base_stream is None or new_stream is None:
        return None
    return StreamDelta(
        first_response=tuple(
            LatencyDelta(p, base_stream.first.percentile_us(p), new_stream.first.percentile_us(p))
            for p in percentiles
        ),
        base_responses_per_s=_per_s(base, base_stream),
        new_responses_per_s=_per_s(new, new_stream),
        base_responses_per_request=_per_request(base_stream),
        new_responses_per_request=_per_request(new_stream),
    )


def compare_step(
    base: StepRecord,
    new: StepRecord,
    level: float,
    thresholds: Thresholds,
    intervals: tuple[Sequence[StepInterval], Sequence[StepInterval]] = ((), ()),
    check_confidence: float | None = None,
) -> StepComparison:
    """One matched pair of steps; percentiles come from their histograms, noise from their windows.

    Streamed steps are also judged on their first response (the gating percentile, against the
    latency threshold, by the thresholds alone: the windows keep no stream data) and their
    responses/s (against the throughput threshold, with the windows' throughput noise)."""
    percentiles = sorted({*REPORTED_PERCENTILES, thresholds.percentile})
    base_hist, new_hist = base.histogram(), new.histogram()
    latencies = tuple(
        LatencyDelta(p, base_hist.percentile_us(p), new_hist.percentile_us(p)) for p in percentiles
    )
    p, drop, rise = thresholds.percentile, thresholds.max_throughput_drop_pct, thresholds.max_latency_rise_pct
    gate = next(d for d in latencies if d.percentile == p)
    base_noise, new_noise = Noise.of(base), Noise.of(new)
    throughput_noise = combined_noise(base_noise.throughput_pct, new_noise.throughput_pct)
    throughput = change_pct(base.throughput, new.throughput)
    level_each = thresholds.confidence if check_confidence is None else check_confidence
    rate_change = change_interval(
        throughput_bounds(base.throughput, intervals[0], level_each),
        throughput_bounds(new.throughput, intervals[1], level_each),
        level_each,
    )
    gate_bounds = (
        latency_bounds(base_hist, intervals[0], p, level_each),
        latency_bounds(new_hist, intervals[1], p, level_each),
    )
    latency_change = change_interval(*gate_bounds, level_each)
    stored = bool(intervals[0]) and bool(intervals[1])  # else: runs from before intervals
    few = next((b.why for b in gate_bounds if b.why and b.why != NOT_STORED), "")
    checks = gate_checks(
        throughput,
        gate.change_pct,
        thresholds,
        (rate_change, latency_change),
        noise=(throughput_noise, combined_noise(base_noise.latency_pct, new_noise.latency_pct)),
        unformed=(
            "too few batches for an interval" if stored and rate_change is None else "",
            f"{few} for a p{p:g} interval" if stored and few else "",
        ),
    )
    stream = stream_delta(base, new, percentiles)
    if stream is not None:
        first, responses = stream.first(p).change_pct, stream.responses_change_pct
        checks += [
            Check(f"first response p{p:g} {first:+.1f}%", first, rise, True, note=NO_STREAM_NOISE),
            # responses/s move with the requests/s: the windows' throughput noise is theirs too
            Check(f"responses/s {responses:+.1f}%", responses, drop, False, throughput_noise),
        ]
    verdict, reasons = judge(checks, thresholds.noise_aware)
    return StepComparison(
        level=level,
        base_index=base.step_index,
        new_index=new.step_index,
        base_throughput=base.throughput,
        new_throughput=new.throughput,
        latencies=latencies,
        verdict=verdict,
        reasons=reasons,
        base_noise=base_noise,
        new_noise=new_noise,
        stream=stream,
        throughput_change=rate_change,
        latency_change=latency_change,
    )
