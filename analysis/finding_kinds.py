"""What a finding is: its kind, how serious it is, and the order a reader needs them in.

Apart from :mod:`analysis.findings` so that modules that find things of their own (a composite
model's breakdown, tail attribution) can make findings that ``run_findings`` ranks with the rest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Kind(enum.StrEnum):
    STATUS = "status"
    NO_STEPS = "no_steps"
    KNEE = "knee"
    SLO = "slo"
    ERRORS = "errors"
    UNSTABLE = "unstable"
    STATS_MISSING = "stats_missing"
    DOMINANT = "dominant"
    MISMATCH = "mismatch"
    UNANSWERED = "unanswered"
    INTERRUPTED = "interrupted"
    METRICS_GAP = "metrics_gap"
    THROUGHPUT_FALLS = "throughput_falls"
    FIRST_RESPONSE = "first_response"
    SHARED_MODEL = "shared_model"
    COMPOSING = "composing"
    TAIL = "tail"
    CLOCKS = "clocks"
    BEHIND_SCHEDULE = "behind_schedule"
    LATE_SENDS = "late_sends"


RANK = (
    Kind.STATUS,
    Kind.NO_STEPS,
    Kind.MISMATCH,
    Kind.ERRORS,
    Kind.INTERRUPTED,
    Kind.BEHIND_SCHEDULE,
    Kind.SLO,
    Kind.KNEE,
    Kind.THROUGHPUT_FALLS,
    Kind.FIRST_RESPONSE,
    Kind.SHARED_MODEL,
    Kind.TAIL,
    Kind.COMPOSING,
    Kind.DOMINANT,
    Kind.UNANSWERED,
    Kind.UNSTABLE,
    Kind.CLOCKS,
    Kind.LATE_SENDS,
    Kind.STATS_MISSING,
    Kind.METRICS_GAP,
)
"""The order a reader needs findings in: what makes the numbers wrong, then what the numbers say
(capacity, saturation, the bottleneck), then what makes them less sure."""


@dataclass(frozen=True)
class Finding:
    kind: Kind
    severity: Severity
    text: str
    step_index: int | None = None
    component: str | None = None
    """For :attr:`Kind.DOMINANT`: the dominant part of the latency (one of ``COMPONENTS``)."""


def ranked(found: list[Finding]) -> list[Finding]:
    """By :data:`RANK`, then by step (a stable sort keeps each kind's own order)."""
    return sorted(found, key=lambda f: RANK.index(f.kind))
