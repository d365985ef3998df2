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

from loadgen.config import ConfigError, Distribution

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
        rng = np.random.default_rng(self.seed)
        elapsed_ns = 0
        while True:
            rates = self._rates_at(elapsed_ns + np.arange(CHUNK) * (1e9 / max(self.rate, 1e-9)))
            if self.distribution == "poisson":
                gaps = rng.exponential(1e9 / rates)
            else:
                gaps = 1e9 / rates
            chunk = np.rint(gaps).astype(np.int64)
            elapsed_ns += int(chunk.sum())
            yield chunk

    def _rates_at(self, t_ns: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.ramp_to is None:
            return np.full(t_ns.shape, self.rate)
        frac = np.clip(t_ns / (self.ramp_s * 1e9), 0.0, 1.0)
        rates: npt.NDArray[np.float64] = self.rate + (self.ramp_to - self.rate) * frac
        return rates


def read_intervals(path: str) -> tuple[float, ...]:
    """perf_analyzer's ``--request-intervals`` file: one gap in microseconds per line."""
    try:
        with open(path) as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise ConfigError(f"cannot read request intervals {path!r}: {exc.strerror}") from exc
    values: list[float] = []
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        try:
            values.append(float(line))
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a number of microseconds: {line!r}") from None
    if not values or sum(values) <= 0:
        raise ConfigError(f"{path}: no positive intervals")
    if any(v < 0 for v in values):
        raise ConfigError(f"{path}: intervals must be >= 0 microseconds")
    return tuple(values)


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
