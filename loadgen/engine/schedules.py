"""Open-loop send schedules: when each request is *intended* to leave, decided in advance.

A schedule yields inter-arrival gaps in nanoseconds, in numpy chunks, so the sender
never waits on a random-number call and two runs with the same seed send on the
same timeline. Latency is measured from these intended times, so a server stall
shows up in the percentiles instead of silently slowing the sender (coordinated
omission).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loadgen.config import Distribution
from loadgen.errors import ConfigError

CHUNK = 4096


@dataclass(frozen=True)
class Schedule:
    """Gaps between intended sends: constant or Poisson at ``rate``, a linear ramp, or a replay."""

    rate: float = 0.0
    """Requests per second (for a ramp: the start rate)."""
    distribution: Distribution = "constant"
    seed: int = 0
    ramp_to: float | None = None
    """End rate of a linear ramp over ``ramp_s`` seconds (the rate then stays there)."""
    ramp_s: float = 0.0
    intervals_us: tuple[float, ...] = ()
    """Replayed gaps (microseconds), looped; overrides rate and distribution."""

    def __post_init__(self) -> None:
        if not self.intervals_us and self.rate <= 0:
            raise ConfigError("a request rate must be > 0")
        if self.distribution not in ("constant", "poisson"):
            raise ConfigError(f"--distribution must be constant or poisson, got {self.distribution!r}")
        if self.ramp_to is not None and (self.ramp_to <= 0 or self.ramp_s <= 0):
            raise ConfigError("a ramp needs an end rate > 0 and a duration > 0")
        if self.intervals_us and any(i < 0 for i in self.intervals_us):
            raise ConfigError("request intervals must be >= 0 microseconds")

    @property
    def label_rate(self) -> float:
        """The rate a step is labelled with (mean rate of a replay)."""
        if self.intervals_us:
            mean = sum(self.intervals_us) / len(self.intervals_us)
            return 1e6 / mean if mean > 0 else float("inf")
        return self.rate if self.ramp_to is None else self.ramp_to

    def gaps_ns(self) -> Iterator[npt.NDArray[np.int64]]:
        """Endless chunks of gaps in nanoseconds."""
        if self.intervals_us:
            replay = np.rint(np.asarray(self.intervals_us) * 1000).astype(np.int64)
            reps = max(1, CHUNK // len(replay))
            chunk = np.tile(replay, reps)
            while True:
                yield chunk
        # Arrivals are placed by time-rescaling: the k-th arrival is at N^-1(u_k), where N(t) is
        # the expected number of arrivals by t and u_k is k (constant) or a unit-rate Poisson
        # process (Poisson). Exact for a linear ramp, and the same code for a flat rate.
        rng = np.random.default_rng(self.seed)
        position, previous_ns = 0.0, 0
        while True:
            poisson = self.distribution == "poisson"
            steps = rng.exponential(1.0, CHUNK) if poisson else np.ones(CHUNK)
            positions = position + np.cumsum(steps)
            position = float(positions[-1])
            times_ns = np.rint(self._time_of(positions) * 1e9).astype(np.int64)
            chunk = np.diff(times_ns, prepend=previous_ns)
            previous_ns = int(times_ns[-1])
            yield chunk

    def _time_of(self, arrivals: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Seconds by which ``arrivals`` requests are expected (the inverse of N(t))."""
        r0 = self.rate
        if self.ramp_to is None or self.ramp_to == r0:
            flat: npt.NDArray[np.float64] = arrivals / r0
            return flat
        r1, span = self.ramp_to, self.ramp_s
        during = (r0 + r1) / 2 * span  # arrivals expected while the rate ramps
        a = (r1 - r0) / (2 * span)  # N(t) = r0 t + a t^2 for t <= span
        ramping = (-r0 + np.sqrt(np.maximum(r0 * r0 + 4 * a * arrivals, 0.0))) / (2 * a)
        times: npt.NDArray[np.float64] = np.where(
            arrivals <= during, ramping, span + (arrivals - during) / r1
        )
        return times


def intended_offsets_ns(schedule: Schedule, count: int) -> npt.NDArray[np.int64]:
    """The first ``count`` intended send times relative to the start (for tests and plots)."""
    parts: list[npt.NDArray[np.int64]] = []
    total = 0
    for chunk in schedule.gaps_ns():
        parts.append(chunk)
        total += len(chunk)
        if total >= count:
            break
    gaps = np.concatenate(parts)[:count]
    offsets: npt.NDArray[np.int64] = np.cumsum(gaps)
    return offsets
