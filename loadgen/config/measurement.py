"""How one step is measured: perf_analyzer's window rule by default, or ``--stop-when``:
a step ends when the confidence intervals it stores are as narrow as asked (issue 20)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from loadgen.errors import ConfigError, SettingProblem, check, raise_problems

LATENCY, THROUGHPUT, EARLY_STOPPING = "latency", "throughput", "early_stopping"
"""What a stop rule (and a stored interval) is about."""
_RULE = re.compile(
    r"^(?:(?P<mlperf>mlperf):)?(?:p(?P<p>[0-9.]+)|(?P<tp>throughput))(?::(?P<pct>[0-9.]+)%?)?$"
)
STOP_FORMS = "pNN:X% (a percentile's interval within +-X%), throughput:X%, or mlperf:pNN[:X%]"


@dataclass(frozen=True)
class StopRule:
    """One ``--stop-when`` term: how precise a measure must be before the step may end."""

    measure: str
    """:data:`LATENCY`, :data:`THROUGHPUT` or :data:`EARLY_STOPPING` (MLPerf's estimate)."""
    percentile: float | None = None
    within_pct: float | None = None
    """Latency and throughput: the interval's farther end, percent of the estimate. MLPerf: how far
    its conservative estimate may lie above the percentile (None: as soon as there is one)."""

    def __post_init__(self) -> None:
        if self.measure not in (LATENCY, THROUGHPUT, EARLY_STOPPING):
            raise ConfigError(f"unknown stop measure {self.measure!r}")
        if self.measure != THROUGHPUT and not (self.percentile is not None and 0 < self.percentile < 100):
            raise ConfigError(f"{self}: the percentile must be within (0, 100)")
        if self.within_pct is None and self.measure != EARLY_STOPPING:
            raise ConfigError(f"{self} needs a width: {STOP_FORMS}")
        if self.within_pct is not None and not (0 < self.within_pct < 100 and math.isfinite(self.within_pct)):
            raise ConfigError(f"{self}: the width must be within (0, 100)%")

    @classmethod
    def parse(cls, text: str) -> StopRule:
        found = _RULE.match(text.strip().lower())
        if found is None:
            raise ConfigError(f"{text!r} is not {STOP_FORMS}")
        try:
            percentile = None if found["p"] is None else float(found["p"])
            within = None if found["pct"] is None else float(found["pct"])
        except ValueError:
            raise ConfigError(f"{text!r} is not {STOP_FORMS}") from None
        if found["mlperf"] and found["tp"]:
            raise ConfigError(f"{text!r}: MLPerf's early stopping bounds a percentile, not throughput")
        measure = EARLY_STOPPING if found["mlperf"] else THROUGHPUT if found["tp"] else LATENCY
        return cls(measure, percentile, within)

    def __str__(self) -> str:
        what = "throughput" if self.measure == THROUGHPUT else f"p{self.percentile:g}"
        prefix = "mlperf:" if self.measure == EARLY_STOPPING else ""
        return prefix + what + ("" if self.within_pct is None else f":{self.within_pct:g}%")


@dataclass(frozen=True)
class MeasurementSettings:
    """How one step is measured (perf_analyzer's method, names and defaults where it has them)."""

    measurement_interval_ms: int = 5000
    """Length of one measurement window (perf_analyzer's "trial")."""
    warmup_ms: int = 1000
    """Load applied before the first window; not measured."""
    stability_percentage: float = 10.0
    """The last 3 windows' throughput and mean latency must lie within this % of their mean."""
    max_windows: int = 10
    """Windows measured at most before the step is stored as unstable (perf_analyzer's max trials)."""
    metrics_interval_ms: int = 1000
    """Period of Prometheus scrapes of the server's metrics endpoint during a step."""
    confidence: float = 0.95
    """The confidence level of the intervals every step stores and ``--stop-when`` reads."""
    stop_when: tuple[StopRule, ...] = ()
    """``--stop-when``: a step ends when all of these are met (instead of the window rule)."""
    min_step_requests: int = 1000
    """``--stop-when``: requests a step answers at least before it may end."""
    min_step_ms: int = 0
    """``--stop-when``: the least a step measures (0: one window; the window rule needs three)."""
    detect_warmup: bool = False
    """Windows at a step's start whose latencies still trend are warm-up, not measured."""

    def __post_init__(self) -> None:
        raise_problems(self.problems())

    def problems(self) -> list[SettingProblem]:
        return check(
            (
                self.measurement_interval_ms >= 50,
                "measurement_interval_ms",
                f"{{measurement_interval_ms}} must be at least 50 ms, got {self.measurement_interval_ms}",
            ),
            (self.warmup_ms >= 0, "warmup_ms", f"{{warmup_ms}} must be >= 0 ms, got {self.warmup_ms}"),
            (
                0 < self.stability_percentage <= 100,
                "stability_percentage",
                f"{{stability_percentage}} must be within (0, 100], got {self.stability_percentage:g}",
            ),
            (self.max_windows >= 1, "max_windows", f"{{max_windows}} must be >= 1, got {self.max_windows}"),
            (
                0.5 <= self.confidence < 1.0,
                "confidence",
                f"{{confidence}} must be within [50%, 100%), got {self.confidence * 100:g}%",
            ),
            (
                self.min_step_requests >= 0,
                "min_step_requests",
                f"{{min_step_requests}} must be >= 0, got {self.min_step_requests}",
            ),
            (
                self.min_step_ms >= 0,
                "min_step_ms",
                f"{{min_step_ms}} must be >= 0 ms, got {self.min_step_ms}",
            ),
            (
                self.metrics_interval_ms >= 50,
                "metrics_interval_ms",
                f"{{metrics_interval_ms}} must be at least 50 ms, got {self.metrics_interval_ms}",
            ),
        )
