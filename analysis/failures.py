"""Why a run's requests failed: each failing step's error rate and its top reasons, as the lines a
user reads under the run's table (after a sweep, in ``show``, beside ``table``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadgen.config.scenarios import words
from loadgen.results import OTHER_REASONS

SHOWN_REASONS = 3


@dataclass(frozen=True)
class StepFailures:
    """One step's failed requests: how many of those sent, and the reasons by count."""

    level: str
    failed: int
    sent: int
    reasons: tuple[tuple[str, int], ...]
    """Most frequent first; ``(other reasons)`` (beyond what a step keeps) last."""

    @property
    def share(self) -> float:
        return self.failed / self.sent if self.sent else 0.0


def _ranked(errors: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    named = sorted(
        ((r, int(c)) for r, c in errors.items() if r != OTHER_REASONS), key=lambda rc: (-rc[1], rc[0])
    )
    other = [(OTHER_REASONS, int(errors[OTHER_REASONS]))] if OTHER_REASONS in errors else []
    return tuple(named + other)


def step_failures(steps: Iterable[Mapping[Any, Any]], scenario: str) -> list[StepFailures]:
    """The steps with failed requests, in load order. ``steps``: rows of a steps frame
    (``to_dict("records")``) or stored steps as mappings (``vars(record)``)."""
    said = words(scenario)
    found = []
    for row in steps:
        failed = int(row["error_count"])
        if failed <= 0:
            continue
        rate = row.get("request_rate")
        if not isinstance(rate, int | float) or math.isnan(rate):
            rate = None
        level = said.of(int(row["concurrency"]), rate)
        errors = row.get("errors") or {}
        found.append(
            StepFailures(said.describe(level), failed, failed + int(row["request_count"]), _ranked(errors))
        )
    return found


def failure_lines(failures: Sequence[StepFailures], shown: int = SHOWN_REASONS) -> list[str]:
    """``concurrency 8: 1,234 of 5,678 requests failed (21.7%)`` and its top reasons, each with
    its count and its share of the requests sent."""
    lines = []
    for step in failures:
        if step.failed == step.sent:  # its numbers describe failures, not a served load
            lines.append(f"{step.level}: every one of its {step.sent:,} requests failed")
        else:
            lines.append(f"{step.level}: {step.failed:,} of {step.sent:,} requests failed ({step.share:.1%})")
        width = len(f"{step.failed:,}")
        for reason, count in step.reasons[:shown]:
            lines.append(f"  {count:>{width},} ({count / step.sent:6.1%})  {reason}")
        if len(step.reasons) > shown:
            rest = sum(count for _, count in step.reasons[shown:])
            others = len(step.reasons) - shown
            lines.append(f"  {rest:>{width},} ({rest / step.sent:6.1%})  in {others} other reason(s)")
    return lines
