"""Two runs compared step by step: did throughput drop or tail latency rise beyond a threshold?

Steps are matched by load level (concurrency, or request rate for request-rate runs).
Latency percentiles are read from the stored histograms, so any percentile can gate.
A step regresses when its throughput dropped by more than ``max_throughput_drop_pct``
or its gating percentile rose by more than ``max_latency_rise_pct``; it improves when
it does not regress and moved beyond a threshold the good way. The run's verdict is
regression if any step regressed, else improvement if any step improved, else pass.

A change beyond a threshold is judged only when it is **significant**: each step stores
confidence intervals (issue 20), and the change's interval formed from both runs' intervals
(:mod:`analysis.significance`, Bonferroni over the comparison's checks) must leave out 0;
otherwise the step is ``no significant change`` and the run's verdict ignores it. Groups of
``--repeats`` runs are compared on their runs' means (:mod:`analysis.groups`).

Steps stored without intervals (older runs), or whose gating percentile had too few requests for
one, fall back to the runs' noise. Each run's own noise is read from what it stored: the windows
a step's numbers come from (the last 3 measurement windows) spread around their mean, and the
largest deviation of one window, in percent of the mean, is that run's noise at that step (for
throughput, and for latency from the windows' mean latency: windows keep no percentiles; a tail
is noisier than the mean, so this errs toward reporting a change). The two runs' noises combine
as the root of the sum of their squares. A change beyond a threshold but within that combined
noise is no measurable change: the step is ``within noise``, neither a regression nor an
improvement, and the run's verdict ignores it (``Thresholds.noise_aware=False`` judges by the
thresholds alone). A step with fewer than 2 stored windows has no known noise and is judged as
before.

Streamed runs (``--streaming``) are also judged on each step's time to the first response (the
gating percentile, against the latency threshold) and responses per second (against the throughput
threshold). Windows keep no stream data, so a first-response change is judged by the thresholds
alone, and its reason says so; responses/s take the windows' throughput noise (they move with the
requests/s; a varying number of responses per request makes them noisier still, so this too errs
toward reporting a change). Judging one matched pair is :mod:`analysis.judging`.

Settings that change what is measured (protocol, batch size, input data, the measurement's
windows, the server's model config, ...) are listed when they differ between the runs:
``Comparison.setting_differences``, and a warning each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from analysis.differences import SettingDifference, setting_differences
from analysis.judging import (
    LatencyDelta,
    Noise,
    StepComparison,
    StreamDelta,
    Thresholds,
    Verdict,
    change_pct,
    combined_noise,
    compare_step,
)
from analysis.significance import GROUP_METHOD, METHOD, per_check
from loadgen.config.scenarios import words
from loadgen.intervals import StepInterval
from loadgen.results import RunStatus
from loadgen.storage import RunRecord, RunStore, StepRecord

__all__ = [  # judging one pair lives in analysis.judging; its names are this module's as well
    "CompareError",
    "Comparison",
    "LatencyDelta",
    "Noise",
    "RunSide",
    "StepComparison",
    "StreamDelta",
    "Thresholds",
    "Verdict",
    "change_pct",
    "combined_noise",
    "compare_runs",
    "compare_step",
    "load_comparison",
]

LevelName = Literal["concurrency", "request_rate"]
DEFAULT_THRESHOLDS = Thresholds()


class CompareError(ValueError):
    """The two runs cannot be compared (different models, no common level, no steps)."""


@dataclass(frozen=True)
class RunSide:
    """What the comparison shows of one run."""

    id: int
    model: str
    status: RunStatus
    error: str | None
    step_count: int
    group: str | None = None
    """Compared as a group of runs (``--repeats``): its id; this run is its first."""

    @property
    def title(self) -> str:
        return f"run {self.id}" if self.group is None else f"group {self.group}"

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
    """Runs not completed, different models compared with force, settings that differ (one line
    each, as :meth:`SettingDifference.message`), levels without a match, noise unknown."""
    setting_differences: tuple[SettingDifference, ...] = field(default=())
    """Settings that change what is measured and differ between the runs, in the order checked."""
    check_confidence: float = 0.95
    """The level each interval check was made at (Bonferroni over the checks)."""
    runs: tuple[int, int] = (1, 1)
    """Runs on each side: more than one, groups compared on their runs' means (analysis.groups)."""

    @property
    def within_noise(self) -> tuple[StepComparison, ...]:
        """Steps that crossed a threshold by less than the runs' noise, or not significantly: not
        judged."""
        return tuple(s for s in self.steps if s.verdict in (Verdict.WITHIN_NOISE, Verdict.NOT_SIGNIFICANT))

    @property
    def method(self) -> str:
        """How the verdict was decided, in one line."""
        if not self.thresholds.noise_aware:
            return "by the thresholds alone (--strict)"
        said = []
        if any(s.method == "intervals" for s in self.steps):
            checks = round((1 - self.thresholds.confidence) / (1 - self.check_confidence))
            how = (
                METHOD if self.runs == (1, 1) else f"{GROUP_METHOD} ({self.runs[0]} and {self.runs[1]} runs)"
            )
            said.append(
                f"a change beyond a threshold counts only if significant: {how}; Bonferroni: "
                f"{self.thresholds.confidence:.0%} for the run, {checks} checks each at "
                f"{self.check_confidence * 100:.4g}%"
            )
        fallback = [s for s in self.steps if s.method != "intervals"]
        if any(s.throughput_change is not None for s in fallback):
            said.append(
                f"a change without an interval (too few requests for a p{self.thresholds.percentile:g} "
                "interval) cannot be shown significant: not judged"
            )
        if any(s.throughput_change is None for s in fallback):
            said.append(
                "steps stored without intervals: a change within the runs' window-to-window noise is "
                "not judged"
            )
        return "; ".join(said)

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
                "group": run.group,
            }

        def noise(base: float, new: float) -> dict[str, float | None]:
            return {"base": num(base), "new": num(new), "combined": num(combined_noise(base, new))}

        def latencies(deltas: Sequence[LatencyDelta]) -> dict[str, dict[str, float | None]]:
            return {
                f"p{d.percentile:g}": {
                    "base_us": num(d.base_us),
                    "new_us": num(d.new_us),
                    "change_pct": num(d.change_pct),
                }
                for d in deltas
            }

        def step(s: StepComparison) -> dict[str, Any]:
            found: dict[str, Any] = {
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
                "latency": latencies(s.latencies),
                "noise_pct": {
                    "throughput": noise(s.base_noise.throughput_pct, s.new_noise.throughput_pct),
                    "latency": noise(s.base_noise.latency_pct, s.new_noise.latency_pct),
                },
                "method": s.method,
                "change_interval_pct": {
                    name: None if i is None else [i.low_pct, i.high_pct]
                    for name, i in (("throughput", s.throughput_change), ("latency", s.latency_change))
                },
            }
            if s.stream is not None:  # both steps streamed: the latency above is to the final response
                stream = s.stream
                found["stream"] = {
                    "first_response": latencies(stream.first_response),
                    "responses_per_s": {
                        "base": num(stream.base_responses_per_s),
                        "new": num(stream.new_responses_per_s),
                        "change_pct": num(stream.responses_change_pct),
                    },
                    "responses_per_request": {
                        "base": num(stream.base_responses_per_request),
                        "new": num(stream.new_responses_per_request),
                    },
                }
            return found

        return {
            "verdict": str(self.verdict),
            "method": self.method,
            "base": side(self.base),
            "new": side(self.new),
            "level": self.level_name,
            "thresholds": {
                "max_throughput_drop_pct": self.thresholds.max_throughput_drop_pct,
                "max_latency_rise_pct": self.thresholds.max_latency_rise_pct,
                "percentile": self.thresholds.percentile,
            },
            "noise_aware": self.thresholds.noise_aware,
            "setting_differences": [
                {"setting": d.setting, "base": d.base, "new": d.new} for d in self.setting_differences
            ],
            "steps": [step(s) for s in self.steps],
            "only_in_base": [level(v) for v in self.only_in_base],
            "only_in_new": [level(v) for v in self.only_in_new],
            "warnings": list(self.warnings),
        }


def step_level(step: StepRecord, rate: bool) -> float:
    """The level a step is matched by: its rate in a request-rate run, else its concurrency."""
    if rate and step.request_rate is not None:
        return round(step.request_rate, 6)
    return float(step.concurrency)


def streamed(run: RunRecord, steps: Sequence[StepRecord]) -> bool:
    """The run measured streams (``--streaming``): each request's responses time-stamped."""
    return bool(run.settings.get("streaming")) or any(s.response_count is not None for s in steps)


def _side(run: RunRecord, steps: Sequence[StepRecord]) -> RunSide:
    return RunSide(run.id, run.model, run.status, run.error, len(steps))


def _status_text(run: RunSide) -> str:
    return str(run.status) + (f": {run.error}" if run.error else "")


def _levels_text(levels: Sequence[float]) -> str:
    return ", ".join(f"{level:g}" for level in levels) or "none"


# -- settings that change what is measured --------------------------------------------------------


def compare_runs(
    base_run: RunRecord,
    base_steps: Sequence[StepRecord],
    new_run: RunRecord,
    new_steps: Sequence[StepRecord],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    force: bool = False,
    intervals: tuple[Mapping[int, Sequence[StepInterval]], Mapping[int, Sequence[StepInterval]]] = ({}, {}),
) -> Comparison:
    """Compare ``new_run`` against ``base_run``; :class:`CompareError` if they cannot be compared.

    ``intervals`` (each run's, by step id, as ``RunStore.step_intervals``) decide whether a change
    is significant (:mod:`analysis.significance`); steps without them fall back to the noise.

    Runs still running, failed or interrupted are compared with the steps they have and
    named in ``warnings``. Runs of different models need ``force``. Settings that change what
    is measured and differ are ``setting_differences`` and a warning each.
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
    base_by_level = {step_level(s, rate): s for s in base_steps if s.interrupted is None}
    new_by_level = {step_level(s, rate): s for s in new_steps if s.interrupted is None}
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
    differences = setting_differences(base_run, new_run)
    warnings += [d.message(base.id, new.id) for d in differences]
    streams = streamed(base_run, base_steps), streamed(new_run, new_steps)
    if streams[0] != streams[1]:
        ids = (base.id, new.id) if streams[0] else (new.id, base.id)
        warnings.append(
            f"run {ids[0]} streamed its requests and run {ids[1]} did not: the latency of a stream is "
            "the time to its final response; first responses and responses/s are not compared"
        )
    for run_id, levels in ((base.id, only_in_base), (new.id, only_in_new)):
        if levels:
            warnings.append(f"levels only in run {run_id}, not compared: {_levels_text(levels)}")
    for run_id, steps in ((base.id, base_steps), (new.id, new_steps)):
        cut = [step_level(s, rate) for s in steps if s.interrupted is not None]
        if cut:
            warnings.append(
                f"steps of run {run_id} cut short by a lost server, not compared: {_levels_text(cut)}"
            )
    each = per_check(thresholds.confidence, 2 * len(common))  # throughput and the gate, per step
    compared = tuple(
        compare_step(
            base_by_level[lv],
            new_by_level[lv],
            lv,
            thresholds,
            (intervals[0].get(base_by_level[lv].id, ()), intervals[1].get(new_by_level[lv].id, ())),
            each,
        )
        for lv in common
    )
    judged = (Verdict.REGRESSION, Verdict.IMPROVEMENT)
    blind = [
        s.level
        for s in compared
        if s.verdict in judged and (math.isnan(s.throughput_noise_pct) or math.isnan(s.latency_noise_pct))
    ]
    if blind and thresholds.noise_aware:
        warnings.append(
            f"noise unknown at {words(base_run.scenario).levels} {_levels_text(blind)} (a step with fewer "
            "than 2 measurement windows, or a window without an answer): judged by the thresholds alone"
        )
    return Comparison(
        base=base,
        new=new,
        level_name="request_rate" if rate else "concurrency",  # the run's scenario
        thresholds=thresholds,
        steps=compared,
        only_in_base=only_in_base,
        only_in_new=only_in_new,
        warnings=tuple(warnings),
        setting_differences=differences,
        check_confidence=each,
    )


def load_comparison(
    store: RunStore,
    base_id: int,
    new_id: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    force: bool = False,
) -> Comparison:
    """Read both runs from ``store`` and compare them (``RunNotFound`` for an unknown id)."""
    base_run, new_run = store.get_run(base_id), store.get_run(new_id)
    return compare_runs(
        base_run,
        store.steps(base_id),
        new_run,
        store.steps(new_id),
        thresholds,
        force=force,
        intervals=(store.step_intervals(base_id), store.step_intervals(new_id)),
    )
