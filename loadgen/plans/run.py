"""Running a plan's job: its models measured together, each run compared with its baseline."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loadgen.errors import ConfigError, ServerUnavailable, UnknownModel
from loadgen.plans.baselines import resolve_baseline
from loadgen.plans.model import Job, Plan
from loadgen.results import RunStatus
from loadgen.storage import RunStore

if TYPE_CHECKING:  # a plan is read (plan check) without the console or the exporter
    from rich.console import Console

    from analysis.compare import Comparison
    from loadgen.exporter import SweepExporter
    from loadgen.runner import SweepOutcome

Outcome = Literal["pass", "improvement", "regression", "failed", "error"]


@dataclass(frozen=True)
class JobResult:
    """One model's run of a job and its verdict against the baseline."""

    plan: str
    job: str
    model: str
    outcome: Outcome
    """``pass`` (also without a baseline yet), ``improvement``, ``regression``, ``failed`` (the run
    failed midway) or ``error`` (it could not start: server unreachable, unknown model; or the
    runs cannot be compared)."""
    run_id: int | None = None
    baseline_id: int | None = None
    note: str = ""
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """The verdict JSON (webhooks, hooks, ``--json``)."""
        return {
            "plan": self.plan,
            "job": self.job,
            "model": self.model,
            "verdict": self.outcome,
            "run_id": self.run_id,
            "baseline_run_id": self.baseline_id,
            "note": self.note,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }


async def run_job(
    plan: Plan,
    job: Job,
    store: RunStore,
    *,
    console: Console | None = None,
    exporter: SweepExporter | None = None,
) -> list[JobResult]:
    """Run the job's models (at the same time, as ``sweep -m a -m b``), store them, and compare
    each with its baseline; one result per model, in the job's order.

    A server that cannot be reached or lacks a model, input data that does not fit, and
    runs that cannot be compared become ``error`` results rather than exceptions, so
    the other jobs still run. Cancellation propagates (the runs are marked interrupted).
    """
    from loadgen.launch import grouped, run_repeats

    try:
        repeats = await run_repeats(grouped(job.sweeps), store, console=console, exporter=exporter)
    except (ServerUnavailable, UnknownModel, ConfigError) as exc:
        return [JobResult(plan.name, job.name, sweep.model, "error", note=str(exc)) for sweep in job.sweeps]
    return [  # the last round decides: a failed one ended the repeats
        _verdict(plan, job, outcome, store, sweep.max_error_rate, repeats.group)
        for outcome, sweep in zip(repeats.rounds[-1], job.sweeps, strict=True)
    ]


def _verdict(
    plan: Plan,
    job: Job,
    outcome: SweepOutcome,
    store: RunStore,
    max_error_rate: float | None,
    group: str | None = None,
) -> JobResult:
    """``group``: ``--repeats`` (``repeats:`` in the job): the runs of this group are compared,
    on their means, with the baseline run's own group (or the baseline run alone)."""
    from analysis.compare import CompareError, Verdict, load_comparison
    from loadgen.launch import failed_requests, wrong_answers

    result = JobResult(plan.name, job.name, outcome.model, "error", run_id=outcome.run_id)
    if outcome.status is not RunStatus.COMPLETED:
        return dataclasses.replace(result, outcome="failed", note=outcome.error or str(outcome.status))
    if (wrong := wrong_answers(outcome)) is not None:  # wrong answers fail the job whatever its speed
        return dataclasses.replace(result, outcome="failed", note=f"validate: {wrong}")
    if (failed := failed_requests(outcome, max_error_rate)) is not None:
        return dataclasses.replace(result, outcome="failed", note=failed)
    candidates = [
        r for r in store.list_runs(model=outcome.model) if group is None or r.labels.get("repeats") != group
    ]
    base_id = resolve_baseline(
        job.baseline,
        candidates,
        plan=plan.name,
        job=job.name,
        model=outcome.model,
        new_run_id=outcome.run_id,
    )
    if base_id is None:
        note = (
            "no baseline yet (first run)"
            if job.baseline.kind == "previous"
            else f"no run with {job.baseline}"
        )
        return dataclasses.replace(result, outcome="pass", note=note)
    try:
        if group is None:
            comparison = load_comparison(store, base_id, outcome.run_id, job.thresholds)
        else:
            from analysis.groups import compare_groups, runs_of_model

            new = runs_of_model(store, f"group:{group}", outcome.model)
            base_group = store.get_run(base_id).labels.get("repeats")
            base = runs_of_model(store, f"group:{base_group}" if base_group else str(base_id), outcome.model)
            comparison = compare_groups(store, base, new, job.thresholds)
    except CompareError as exc:
        return dataclasses.replace(result, baseline_id=base_id, note=str(exc))
    regressed = [
        f"{comparison.level_name} {s.level:g}: {'; '.join(s.reasons)}" for s in comparison.steps if s.reasons
    ]
    verdict: Outcome = "pass"
    if comparison.verdict is Verdict.REGRESSION:
        verdict = "regression"
    elif comparison.verdict is Verdict.IMPROVEMENT:
        verdict = "improvement"
    return dataclasses.replace(
        result,
        outcome=verdict,
        baseline_id=base_id,
        note=" | ".join(regressed),
        comparison=comparison,
    )
