"""Plans: named jobs (models, load, thresholds, schedule, baseline) in one YAML file.

``reader`` reads the YAML with lines, ``parse`` validates it into the ``model`` types
(every sweep option by its key, through the one settings constructor), ``fields`` the
keys only a plan has, ``baselines`` picks what a run is compared with, ``run`` runs a
job. Each job's runs are stored with the labels ``plan=<name>`` and ``job=<job>``.
"""

from loadgen.plans.baselines import check_baseline_runs, resolve_baseline
from loadgen.plans.fields import cron_fields
from loadgen.plans.model import RESERVED_LABELS, Baseline, Job, Plan
from loadgen.plans.parse import PLAN_ONLY, load_plan, parse_plan
from loadgen.plans.reader import PlanError, Problem
from loadgen.plans.run import JobResult, Outcome, run_job

__all__ = [
    "PLAN_ONLY",
    "RESERVED_LABELS",
    "Baseline",
    "Job",
    "JobResult",
    "Outcome",
    "Plan",
    "PlanError",
    "Problem",
    "check_baseline_runs",
    "cron_fields",
    "load_plan",
    "parse_plan",
    "resolve_baseline",
    "run_job",
]
