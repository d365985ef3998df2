"""A group of runs (``--repeats N``: the same sweep run N times) read as one: each step's numbers
across the runs with their interval, and two groups compared (issue 20).

**Across-run intervals.** Each run gives one value per level (its throughput, its percentile);
the group's estimate is their mean, with Student's t interval over the runs (AIPerf reports
multi-run results the same way). Unlike one run's intervals, these hold the run-to-run
variation too: a server that warms differently, a neighbour on the machine.

**Two groups compared.** The change of the means gets Welch's t interval (unequal variances,
Welch-Satterthwaite degrees of freedom), at the same Bonferroni level as two runs compared. A
side of one run borrows the other side's spread: it has none of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.compare import Comparison, Thresholds, compare_runs, step_level
from analysis.judging import LatencyDelta, change_pct, gate_checks, judge
from analysis.significance import ChangeInterval, per_check
from loadgen.errors import ConfigError
from loadgen.intervals import t_half_width
from loadgen.storage import RunRecord, RunStore, StepRecord

GROUP_PREFIX = "group:"
GROUP_LABELS = ("repeats", "group")
"""The labels that tie runs together: ``--repeats`` and several models measured at once."""

Run = tuple[RunRecord, list[StepRecord]]


def is_group(ref: str) -> bool:
    return ref.startswith(GROUP_PREFIX)


def group_run_ids(store: RunStore, ref: str) -> list[int]:
    """The runs of ``group:ID`` (a ``repeats`` or ``group`` label), oldest first."""
    wanted = ref.removeprefix(GROUP_PREFIX)
    found = [
        run.id for run in store.list_runs() if any(run.labels.get(label) == wanted for label in GROUP_LABELS)
    ]
    if not found:
        raise ConfigError(f"no runs in group {wanted!r} in {store.url} (see the labels in `loadgen runs`)")
    return sorted(found)


def run_ids_of(store: RunStore, refs: Sequence[str]) -> list[int]:
    """Run ids and ``group:ID`` references as the run ids they name, in order."""
    return [i for ref in refs for i in (group_run_ids(store, ref) if is_group(ref) else [int(ref)])]


def load_group(store: RunStore, ref: str) -> list[Run]:
    """``group:ID``'s runs, or the one run of a plain id, each with its steps."""
    ids = group_run_ids(store, ref) if is_group(ref) else [int(ref)]
    return [(store.get_run(run_id), store.steps(run_id)) for run_id in ids]


def one_model(runs: Sequence[Run]) -> None:
    """Refuse a group of several models or scenarios: its levels cannot be read as one."""
    models = sorted({run.model for run, _ in runs})
    if len(models) > 1 or len({run.scenario for run, _ in runs}) > 1:
        what = f"models ({', '.join(models)})" if len(models) > 1 else "scenarios"
        ids = f"{runs[0][0].id}..{runs[-1][0].id}"
        raise ConfigError(f"the group of runs {ids} holds several {what}: give its runs one by one")


def runs_of_model(store: RunStore, ref: str, model: str) -> list[Run]:
    """:func:`load_group`, only the runs of ``model`` (a group may hold several models at once)."""
    return [(run, steps) for run, steps in load_group(store, ref) if run.model == model]


def per_level(runs: Sequence[Run], percentiles: Sequence[float]) -> dict[float, dict[str, list[float]]]:
    """Level -> measure (``throughput``, ``p99``, ...) -> one value per run that measured it."""
    found: dict[float, dict[str, list[float]]] = {}
    for run, steps in runs:
        for step in steps:
            if step.interrupted is not None:
                continue
            values = found.setdefault(step_level(step, run.scenario == "request_rate"), {})
            values.setdefault("throughput", []).append(step.throughput)
            histogram = step.histogram()
            for p in percentiles:
                values.setdefault(f"p{p:g}", []).append(
                    histogram.percentile_us(p) if histogram.count else math.nan
                )
    return dict(sorted(found.items()))


def mean_interval(values: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """Mean and Student's t interval; the interval is NaN for fewer than 2 values."""
    data = _finite(values)
    if len(data) == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan, math.nan
    half = t_half_width(float(data.std(ddof=1)) / math.sqrt(len(data)), len(data) - 1, confidence)
    return mean, mean - half, mean + half


def across_runs_table(
    runs: Sequence[Run], percentiles: Sequence[float], confidence: float, *, level_column: str
) -> pd.DataFrame:
    """Level | Runs | Throughput mean [low, high] | each percentile's mean [low, high] (ms)."""
    rows = []
    for level, values in per_level(runs, percentiles).items():
        row: dict[str, object] = {level_column: level, "Runs": len(values["throughput"])}
        for measure, scale, unit, digits in [("throughput", 1.0, "infer/s", 1)] + [
            (f"p{p:g}", 1e-3, "ms", 2) for p in percentiles
        ]:
            mean, low, high = (v * scale for v in mean_interval(values[measure], confidence))
            shown = f"{mean:,.{digits}f}"
            if math.isfinite(low):
                shown += f" [{low:,.{digits}f}, {high:,.{digits}f}]"
            name = "Throughput" if measure == "throughput" else f"{measure} latency"
            row[f"{name} ({unit})"] = shown
        rows.append(row)
    return pd.DataFrame(rows)


def _finite(values: Sequence[float]) -> npt.NDArray[np.float64]:
    """The runs' values that are numbers (a run without an answer at a level has NaN)."""
    return np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)


def _mean(values: Sequence[float]) -> float:
    finite = _finite(values)
    return float(finite.mean()) if len(finite) else math.nan


def welch_change(base: Sequence[float], new: Sequence[float], confidence: float) -> ChangeInterval | None:
    """The interval of ``mean(new) - mean(base)``, percent of ``mean(base)``; None with fewer than
    3 runs in all."""
    b, n = _finite(base), _finite(new)
    if len(b) == 0 or len(n) == 0 or len(b) + len(n) < 3 or not b.mean() > 0:
        return None
    var_b = b.var(ddof=1) if len(b) > 1 else n.var(ddof=1)
    var_n = n.var(ddof=1) if len(n) > 1 else var_b
    se2 = var_b / len(b) + var_n / len(n)
    change = float(n.mean() - b.mean())
    if se2 <= 0:  # every run gave the same value: the change is what it is
        return ChangeInterval(change / b.mean() * 100, change / b.mean() * 100, confidence)
    dof = se2**2 / ((var_b / len(b)) ** 2 / max(1, len(b) - 1) + (var_n / len(n)) ** 2 / max(1, len(n) - 1))
    half = t_half_width(math.sqrt(se2), dof, confidence)
    return ChangeInterval((change - half) / b.mean() * 100, (change + half) / b.mean() * 100, confidence)


def compare_groups(
    store: RunStore, base: Sequence[Run], new: Sequence[Run], thresholds: Thresholds, *, force: bool = False
) -> Comparison:
    """Two groups compared level by level on the means of their runs (see the module docstring);
    a run each: as two runs are, on their own intervals."""
    for side in (base, new):
        one_model(side)
    first = compare_runs(
        base[0][0],
        base[0][1],
        new[0][0],
        new[0][1],
        thresholds,
        force=force,
        intervals=(store.step_intervals(base[0][0].id), store.step_intervals(new[0][0].id)),
    )
    if len(base) == 1 and len(new) == 1:
        return first
    p = thresholds.percentile
    percentiles = sorted({d.percentile for s in first.steps for d in s.latencies})
    base_values, new_values = per_level(base, percentiles), per_level(new, percentiles)
    each = per_check(thresholds.confidence, 2 * len(first.steps))
    steps = []
    for step in first.steps:
        b, n = base_values.get(step.level), new_values.get(step.level)
        if b is None or n is None:
            continue
        means = {m: (_mean(b[m]), _mean(n[m])) for m in b}
        latencies = tuple(LatencyDelta(q, *means[f"p{q:g}"]) for q in percentiles)
        throughput = change_pct(*means["throughput"])
        gate = change_pct(*means[f"p{p:g}"])
        rate_change = welch_change(b["throughput"], n["throughput"], each)
        latency_change = welch_change(b[f"p{p:g}"], n[f"p{p:g}"], each)
        verdict, reasons = judge(
            gate_checks(throughput, gate, thresholds, (rate_change, latency_change)), thresholds.noise_aware
        )
        steps.append(
            dataclasses.replace(
                step,
                base_throughput=means["throughput"][0],
                new_throughput=means["throughput"][1],
                latencies=latencies,
                verdict=verdict,
                reasons=reasons,
                stream=None,
                throughput_change=rate_change,
                latency_change=latency_change,
            )
        )
    return dataclasses.replace(
        first,
        base=dataclasses.replace(first.base, group=_name(base)),
        new=dataclasses.replace(first.new, group=_name(new)),
        steps=tuple(steps),
        check_confidence=each,
        runs=(len(base), len(new)),
    )


def _name(runs: Sequence[Run]) -> str | None:
    """The group's id, as its runs' labels say (None for a single run)."""
    if len(runs) < 2:
        return None
    labels = runs[0][0].labels
    return next((labels[label] for label in GROUP_LABELS if label in labels), None)
