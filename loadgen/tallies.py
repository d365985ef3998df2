"""The tallies a window keeps beside its latency histogram, each merging exactly across windows,
workers and hosts (:class:`Mergeable`): a stream's per-request measures, a sequence model's
latencies by place in the sequence, and the checks of ``--validate``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from loadgen.histogram import LatencyHistogram


class Mergeable:
    """A tally of windows that merges exactly: parts of a step (windows, workers) add up to it."""

    def merge(self, other: Self) -> Self:
        raise NotImplementedError

    @classmethod
    def merged(cls, parts: Iterable[Self | None]) -> Self | None:
        """The sum of the parts given (None when none is)."""
        present = [p for p in parts if p is not None]
        if not present:
            return None
        total = cls()
        for part in present:
            total.merge(part)
        return total


@dataclass
class StreamTally(Mergeable):
    """A streaming window's or step's per-request measures, each a histogram that merges exactly
    across windows, workers and hosts. A response counts when it carries outputs: Triton's empty
    final response only ends the stream (its time is the request's end, in the main histogram)."""

    first: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Time to the first response (from the send; open loop: from the intended send)."""
    gaps: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Every gap between two consecutive responses of one request."""
    counts: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Responses per request, recorded as that many microseconds (exact up to 2048, then 3
    significant digits): the one histogram type for every distribution."""
    spacing: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Per request with 2 or more responses: (last - first) / (responses - 1), the time per
    response after the first; its inverse is the request's output rate (responses/s), so the
    rate's p50 is 1 / spacing's p50 and the slowest 1 % of requests run at 1 / spacing's p99."""
    responses: int = 0
    tokens: int = 0
    """What the responses carried: one token each, or with ``--token-output`` the elements of the
    named output (tokens/s for a model that sends several tokens per response)."""

    def record(self, start_ns: int, arrivals: Sequence[int], tokens: int | None = None) -> None:
        """One finished request sent at ``start_ns`` whose responses arrived at ``arrivals``
        carrying ``tokens`` (None: one per response)."""
        count = len(arrivals)
        self.responses += count
        self.tokens += count if tokens is None else tokens
        self.counts.record_ns(count * 1000)
        if count:
            self.first.record_ns(arrivals[0] - start_ns)
            if count > 1:
                self.spacing.record_ns((arrivals[-1] - arrivals[0]) // (count - 1))
            record, before = self.gaps.record_ns, arrivals[0]
            for at in arrivals[1:]:
                record(at - before)
                before = at

    def merge(self, other: StreamTally) -> StreamTally:
        self.first.merge(other.first)
        self.gaps.merge(other.gaps)
        self.counts.merge(other.counts)
        self.spacing.merge(other.spacing)
        self.responses += other.responses
        self.tokens += other.tokens
        return self


@dataclass
class SequenceTally(Mergeable):
    """A sequence model's window or step: its requests' latencies by their place in the sequence
    (a start meets cold state, an end may flush it), and the sequences that ended."""

    start: LatencyHistogram = field(default_factory=LatencyHistogram)
    middle: LatencyHistogram = field(default_factory=LatencyHistogram)
    end: LatencyHistogram = field(default_factory=LatencyHistogram)
    """A one-request sequence counts as a start."""
    ended: int = 0
    """Sequences whose last request was answered."""

    def merge(self, other: SequenceTally) -> SequenceTally:
        self.start.merge(other.start)
        self.middle.merge(other.middle)
        self.end.merge(other.end)
        self.ended += other.ended
        return self


@dataclass
class ValidationTally(Mergeable):
    """Checked answers of one window or step; mergeable."""

    checked: int = 0
    mismatched: int = 0
    """Answers with any output outside the tolerance (or of the wrong shape/type)."""
    swapped: int = 0
    """Mismatched answers that equal the reference of another request."""
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    outputs: dict[str, int] = field(default_factory=dict)
    """Output name -> mismatches."""
    example: str | None = None
    """The first mismatch, described for a human."""

    def merge(self, other: ValidationTally) -> ValidationTally:
        self.checked += other.checked
        self.mismatched += other.mismatched
        self.swapped += other.swapped
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)
        self.max_rel_diff = max(self.max_rel_diff, other.max_rel_diff)
        for name, count in other.outputs.items():
            self.outputs[name] = self.outputs.get(name, 0) + count
        self.example = self.example or other.example
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "mismatched": self.mismatched,
            "swapped": self.swapped,
            "max_abs_diff": _finite(self.max_abs_diff),
            "max_rel_diff": _finite(self.max_rel_diff),
            "outputs": dict(self.outputs),
            "example": self.example,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationTally:
        return cls(
            checked=int(data.get("checked", 0)),
            mismatched=int(data.get("mismatched", 0)),
            swapped=int(data.get("swapped", 0)),
            max_abs_diff=_infinite(data.get("max_abs_diff", 0.0)),
            max_rel_diff=_infinite(data.get("max_rel_diff", 0.0)),
            outputs={str(k): int(v) for k, v in (data.get("outputs") or {}).items()},
            example=data.get("example"),
        )


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else "inf"  # JSON has no infinity


def _infinite(value: Any) -> float:
    return math.inf if value == "inf" else float(value)
