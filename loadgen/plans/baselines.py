"""Which stored run a job's new run is compared with."""

from __future__ import annotations

from collections.abc import Sequence

from loadgen.errors import RunNotFound
from loadgen.plans.model import Baseline, Job, Plan
from loadgen.plans.reader import Problem
from loadgen.results import RunStatus
from loadgen.storage import RunRecord, RunStore


def _usable(run: RunRecord) -> bool:
    return run.status is RunStatus.COMPLETED and run.step_count > 0


def resolve_baseline(
    baseline: Baseline, runs: Sequence[RunRecord], *, plan: str, job: str, model: str, new_run_id: int
) -> int | None:
    """The run id to compare run ``new_run_id`` with, or None when there is none yet.

    ``runs`` are candidates, newest first (``RunStore.list_runs``). ``previous`` and label
    selectors only pick completed runs with steps of the same model, never the new run itself.
    """
    if baseline.kind == "run":
        return baseline.run_id
    for run in runs:
        if run.id == new_run_id or run.model != model or not _usable(run):
            continue
        if baseline.kind == "previous":
            if run.id < new_run_id and run.labels.get("plan") == plan and run.labels.get("job") == job:
                return run.id
        elif all(run.labels.get(key) == value for key, value in baseline.labels):
            return run.id
    return None


def check_baseline_runs(plan: Plan, jobs: Sequence[Job], store: RunStore) -> list[Problem]:
    """Explicit baseline run ids that are not in ``store``: checked before any job runs."""

    problems = []
    for job in jobs:
        if job.baseline.kind == "run" and job.baseline.run_id is not None:
            try:
                store.get_run(job.baseline.run_id)
            except RunNotFound as exc:
                problems.append(
                    Problem(str(plan.path), job.baseline.line, f"job {job.name!r}: baseline {exc}")
                )
    return problems
