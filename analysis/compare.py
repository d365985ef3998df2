"""Two runs compared step by step: did throughput drop or tail latency rise beyond a threshold?

Steps are matched by load level (concurrency, or request rate for request-rate runs).
Latency percentiles are read from the stored histograms, so any percentile can gate.
A step regresses when its throughput dropped by more than ``max_throughput_drop_pct``
or its gating percentile rose by more than ``max_latency_rise_pct``; it improves when
it does not regress and moved beyond a threshold the good way. The run's verdict is
regression if any step regressed, else improvement if any step improved, else pass.
"""

from __future__ import annotations

import enum
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loadgen.config.scenarios import words
from loadgen.results import REPORTED_PERCENTILES, RunStatus
from loadgen.storage import RunRecord, RunStore, StepRecord

LevelName = Literal["concurrency", "request_rate"]


class CompareError(ValueError):
    """The two runs cannot be compared (different models, no common level, no steps)."""


class Verdict(enum.StrEnum):
    PASS = "pass"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"


@dataclass(frozen=True)
class Thresholds:
    """How much worse a step may get before it is a regression (percent of the base run)."""

    max_throughput_drop_pct: float = 5.0
    max_latency_rise_pct: float = 10.0
    percentile: float = 99.0
    """The latency percentile that gates, read from the histograms."""

    def __post_init__(self) -> None:
        for name in ("max_throughput_drop_pct", "max_latency_rise_pct"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a percentage >= 0, got {value}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be within (0, 100], got {self.percentile:g}")


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
    """Why the step regressed or improved, e.g. ``throughput -12.3% (max drop 5%)``."""

    @property
    def throughput_change_pct(self) -> float:
        return change_pct(self.base_throughput, self.new_throughput)

    def latency(self, percentile: float) -> LatencyDelta:
        return next(d for d in self.latencies if d.percentile == percentile)


@dataclass(frozen=True)
class RunSide:
    """What the comparison shows of one run."""

    id: int
    model: str
    status: RunStatus
    error: str | None
    step_count: int

    @property
    def complete(self) -> bool:
        return self.status is RunStatus.COMPLETED


@dataclass(frozen=True)
class Comparison:
    base: RunSide
    new: RunSide
    level_name: LevelName
    thresholds: Thresholds
    steps: tuple[StepComparison, ...]
    only_in_base: tuple[float, ...]
    only_in_new: tuple[float, ...]
    warnings: tuple[str, ...]
    """Runs not completed, levels without a match, different models compared with force."""

    @property
    def verdict(self) -> Verdict:
        verdicts = {s.verdict for s in self.steps}
        for verdict in (Verdict.REGRESSION, Verdict.IMPROVEMENT):
            if verdict in verdicts:
                return verdict
        return Verdict.PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; non-finite numbers (no base, no successful request) become null."""

        def num(value: float) -> float | None:
            return value if math.isfinite(value) else None

        def level(value: float) -> float | int:
            return int(value) if self.level_name == "concurrency" else value

        def side(run: RunSide) -> dict[str, Any]:
            return {
                "run_id": run.id,
                "model": run.model,
                "status": str(run.status),
                "complete": run.complete,
                "error": run.error,
                "step_count": run.step_count,
            }

        return {
            "verdict": str(self.verdict),
            "base": side(self.base),
            "new": side(self.new),
            "level": self.level_name,
            "thresholds": {
                "max_throughput_drop_pct": self.thresholds.max_throughput_drop_pct,
                "max_latency_rise_pct": self.thresholds.max_latency_rise_pct,
                "percentile": self.thresholds.percentile,
            },
            "steps": [
                {
                    "level": level(s.level),
                    "base_step_index": s.base_index,
                    "new_step_index": s.new_index,
                    "verdict": str(s.verdict),
                    "reasons": list(s.reasons),
                    "throughput": {
                        "base": s.base_throughput,
                        "new": s.new_throughput,
                        "change_pct": num(s.throughput_change_pct),
                    },
                    "latency": {
                        f"p{d.percentile:g}": {
                            "base_us": num(d.base_us),
                            "new_us": num(d.new_us),
                            "change_pct": num(d.change_pct),
                        }
                        for d in s.latencies
                    },
                }
                for s in self.steps
            ],
            "only_in_base": [level(v) for v in self.only_in_base],
            "only_in_new": [level(v) for v in self.only_in_new],
            "warnings": list(self.warnings),
        }


def _level(step: StepRecord, rate: bool) -> float:
    if rate and step.request_rate is not None:
        return round(step.request_rate, 6)
    return float(step.concurrency)


def _judge(
    throughput_change: float, latency_change: float, thresholds: Thresholds
) -> tuple[Verdict, tuple[str, ...]]:
    drop, rise, p = thresholds.max_throughput_drop_pct, thresholds.max_latency_rise_pct, thresholds.percentile
    worse = []
    if throughput_change < -drop:
        worse.append(f"throughput {throughput_change:+.1f}% (max drop {drop:g}%)")
    if latency_change > rise:
        worse.append(f"p{p:g} latency {latency_change:+.1f}% (max rise {rise:g}%)")
    if worse:
        return Verdict.REGRESSION, tuple(worse)
    better = []
    if throughput_change > drop:
        better.append(f"throughput {throughput_change:+.1f}%")
    if latency_change < -rise:
        better.append(f"p{p:g} latency {latency_change:+.1f}%")
    return (Verdict.IMPROVEMENT, tuple(better)) if better else (Verdict.PASS, ())


def compare_step(base: StepRecord, new: StepRecord, level: float, thresholds: Thresholds) -> StepComparison:
    """One matched pair of steps; percentiles come from their histograms."""
    percentiles = sorted({*REPORTED_PERCENTILES, thresholds.percentile})
    base_hist, new_hist = base.histogram(), new.histogram()
    latencies = tuple(
        LatencyDelta(p, base_hist.percentile_us(p), new_hist.percentile_us(p)) for p in percentiles
    )
    gate = next(d for d in latencies if d.percentile == thresholds.percentile)
    verdict, reasons = _judge(change_pct(base.throughput, new.throughput), gate.change_pct, thresholds)
    return StepComparison(
        level=level,
        base_index=base.step_index,
        new_index=new.step_index,
        base_throughput=base.throughput,
        new_throughput=new.throughput,
        latencies=latencies,
        verdict=verdict,
        reasons=reasons,
    )


def _side(run: RunRecord, steps: Sequence[StepRecord]) -> RunSide:
    return RunSide(run.id, run.model, run.status, run.error, len(steps))


def _status_text(run: RunSide) -> str:
    return str(run.status) + (f": {run.error}" if run.error else "")


def _levels_text(levels: Sequence[float]) -> str:
    return ", ".join(f"{level:g}" for level in levels) or "none"


def compare_runs(
    base_run: RunRecord,
    base_steps: Sequence[StepRecord],
    new_run: RunRecord,
    new_steps: Sequence[StepRecord],
    thresholds: Thresholds = Thresholds(),
    *,
    force: bool = False,
) -> Comparison:
    """Compare ``new_run`` against ``base_run``; :class:`CompareError` if they cannot be compared.

    Runs still running, failed or interrupted are compared with the steps they have and
    named in ``warnings``. Runs of different models need ``force``.
    """
    base, new = _side(base_run, base_steps), _side(new_run, new_steps)
    for side in (base, new):
        if not side.step_count:
            raise CompareError(f"run {side.id} has no steps to compare ({_status_text(side)})")
    if base.model != new.model and not force:
        raise CompareError(
            f"run {base.id} is of model {base.model!r} and run {new.id} of {new.model!r}: "
            "pass --force to compare them anyway"
        )
    rate = base_run.scenario == "request_rate"
    if base_run.scenario != new_run.scenario:
        kinds = words(base_run.scenario).levels, words(new_run.scenario).levels
        raise CompareError(f"run {base.id} measured {kinds[0]} and run {new.id} {kinds[1]}: nothing to match")
    # a step cut short by a lost server is no measurement of its level: never judged
    base_by_level = {_level(s, rate): s for s in base_steps if s.interrupted is None}
    new_by_level = {_level(s, rate): s for s in new_steps if s.interrupted is None}
    common = sorted(base_by_level.keys() & new_by_level.keys())
    if not common:
        raise CompareError(
            f"runs {base.id} and {new.id} have no load level in common "
            f"(run {base.id}: {_levels_text(sorted(base_by_level))}; "
            f"run {new.id}: {_levels_text(sorted(new_by_level))})"
        )
    only_in_base = tuple(sorted(base_by_level.keys() - new_by_level.keys()))
    only_in_new = tuple(sorted(new_by_level.keys() - base_by_level.keys()))
    warnings = [
        f"run {side.id} is {_status_text(side)}: compared with its {side.step_count} finished step(s)"
        for side in (base, new)
        if not side.complete
    ]
    if base.model != new.model:
        warnings.append(
            f"different models compared: {base.model} (run {base.id}), {new.model} (run {new.id})"
        )
    for run_id, levels in ((base.id, only_in_base), (new.id, only_in_new)):
        if levels:
            warnings.append(f"levels only in run {run_id}, not compared: {_levels_text(levels)}")
    for run_id, steps in ((base.id, base_steps), (new.id, new_steps)):
        cut = [_level(s, rate) for s in steps if s.interrupted is not None]
        if cut:
            warnings.append(
                f"steps of run {run_id} cut short by a lost server, not compared: {_levels_text(cut)}"
            )
    return Comparison(
        base=base,
        new=new,
        level_name="request_rate" if rate else "concurrency",  # the run's scenario
        thresholds=thresholds,
        steps=tuple(compare_step(base_by_level[lv], new_by_level[lv], lv, thresholds) for lv in common),
        only_in_base=only_in_base,
        only_in_new=only_in_new,
        warnings=tuple(warnings),
    )


def load_comparison(
    store: RunStore,
    base_id: int,
    new_id: int,
    thresholds: Thresholds = Thresholds(),
    *,
    force: bool = False,
) -> Comparison:
    """Read both runs from ``store`` and compare them (``RunNotFound`` for an unknown id)."""
    base_run, new_run = store.get_run(base_id), store.get_run(new_id)
    return compare_runs(base_run, store.steps(base_id), new_run, store.steps(new_id), thresholds, force=force)


def junit_xml(comparison: Comparison) -> ET.Element:
    """JUnit XML for CI: one testcase per matched level, a ``<failure>`` for each regressed one.

    Levels measured by one run only are skipped testcases; warnings go to ``<system-err>``.
    """
    c = comparison
    failures = sum(s.verdict is Verdict.REGRESSION for s in c.steps)
    skipped = len(c.only_in_base) + len(c.only_in_new)
    counts = {"tests": str(len(c.steps) + skipped), "failures": str(failures), "errors": "0"}
    name = f"{c.new.model}: run {c.new.id} vs base run {c.base.id}"
    suites = ET.Element("testsuites", {"name": "loadgen compare", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": name, "skipped": str(skipped), **counts})
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", str(c.verdict)),
        ("base_run", str(c.base.id)),
        ("new_run", str(c.new.id)),
        ("base_status", str(c.base.status)),
        ("new_status", str(c.new.status)),
        ("max_throughput_drop_pct", f"{c.thresholds.max_throughput_drop_pct:g}"),
        ("max_latency_rise_pct", f"{c.thresholds.max_latency_rise_pct:g}"),
        ("percentile", f"{c.thresholds.percentile:g}"),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    classname = f"loadgen.compare.{c.new.model}"
    p = c.thresholds.percentile
    for step in c.steps:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{c.level_name} {step.level:g}")
        gate = step.latency(p)
        summary = (
            f"throughput {step.base_throughput:.1f} -> {step.new_throughput:.1f} infer/s "
            f"({step.throughput_change_pct:+.1f}%), p{p:g} latency {gate.base_us / 1000:.3f} -> "
            f"{gate.new_us / 1000:.3f} ms ({gate.change_pct:+.1f}%)"
        )
        if step.verdict is Verdict.REGRESSION:
            failure = ET.SubElement(case, "failure", message="; ".join(step.reasons), type="regression")
            failure.text = summary
        else:
            ET.SubElement(case, "system-out").text = f"{step.verdict}: {summary}"
    for run_id, levels in ((c.base.id, c.only_in_base), (c.new.id, c.only_in_new)):
        for level in levels:
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"{c.level_name} {level:g}")
            ET.SubElement(case, "skipped", message=f"measured by run {run_id} only")
    if c.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(c.warnings)
    ET.indent(suites)
    return suites


def write_junit(comparison: Comparison, path: Path | str) -> None:
    ET.ElementTree(junit_xml(comparison)).write(path, encoding="utf-8", xml_declaration=True)
