"""Whether a change between two runs' steps is real: the confidence interval of the change,
formed from each run's own intervals (issue 20).

**Method.** Each step stores its percentiles' and throughput's intervals
(:mod:`loadgen.intervals`). The change ``new - base`` gets the interval of a difference of two
independent estimates from their own intervals, the MOVER method (Zou & Donner, *Statistics
in Medicine* 27, 2008; Newcombe 1998), which keeps each side's asymmetry:

    low  = d - sqrt((new - new_low)^2 + (base_high - base)^2)
    high = d + sqrt((new_high - new)^2 + (base - base_low)^2)

read in percent of the base. A change is **significant** when that interval leaves out 0. A run
comparison makes two such checks per matched step (throughput and the gating percentile; a
stream's first response and responses/s have no stored interval and are judged by the thresholds
and the windows' noise, as before), so each is made
at the Bonferroni level ``1 - (1 - confidence) / checks``: the chance that identical runs get any
false verdict stays at or under ``1 - confidence``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.step_intervals import Bounds

METHOD = "MOVER interval of the change from both runs' intervals"
GROUP_METHOD = "Welch's t interval of the change of the runs' means"


@dataclass(frozen=True)
class ChangeInterval:
    """The change's interval, percent of the base, at ``confidence``."""

    low_pct: float
    high_pct: float
    confidence: float

    @property
    def significant(self) -> bool:
        return self.low_pct > 0.0 or self.high_pct < 0.0

    def text(self) -> str:
        return f"[{self.low_pct:+.1f}%, {self.high_pct:+.1f}%]"


def change_interval(base: Bounds, new: Bounds, confidence: float) -> ChangeInterval | None:
    """The interval of ``new - base`` in percent of ``base``; None unless both have an interval."""
    if base.low is None or base.high is None or new.low is None or new.high is None:
        return None
    if not (base.estimate > 0 and math.isfinite(base.estimate) and math.isfinite(new.estimate)):
        return None
    change = new.estimate - base.estimate
    low = change - math.hypot(new.estimate - new.low, base.high - base.estimate)
    high = change + math.hypot(new.high - new.estimate, base.estimate - base.low)
    return ChangeInterval(low / base.estimate * 100.0, high / base.estimate * 100.0, confidence)


def per_check(confidence: float, checks: int) -> float:
    """The level each of ``checks`` checks is made at for ``confidence`` over all (Bonferroni)."""
    return 1.0 - (1.0 - confidence) / max(1, checks)
