"""``loadgen plan check|run``: validate a plan, or run its jobs once and gate on their verdicts.

``plan run`` exits 0 when every job passed (or improved, or had no baseline yet), 1 on a
regression or a run that failed midway (naming the jobs), 2 for an invalid plan or a job
that could not run at all (server unreachable, unknown model) or be compared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, run_async, stdout_console
from loadgen.config import SweepSettings
from loadgen.config.scenarios import words
from loadgen.errors import EXIT_OK, EXIT_REGRESSION, ConfigError
from loadgen.plans import Job, JobResult, Plan, PlanError, Problem, check_baseline_runs, load_plan, run_job
from loadgen.storage import RunStore
from loadgen.tls import INSECURE_WARNING


def register(sub: Any) -> None:
    """Add ``plan check`` and ``plan run`` to the CLI's sub-parsers."""
    plan = sub.add_parser(
        "plan",
        help="check or run a YAML plan of jobs (models, load, thresholds, baselines, schedules)",
        description="A plan names jobs; `plan run` runs each once, compares it with its baseline "
        "and exits 1 on a regression. See plans/nightly.yaml.",
    )
    actions = plan.add_subparsers(dest="plan_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a plan: every problem with its line; runs nothing")
    check.add_argument("plan", type=arguments.existing_file, help="the plan's YAML file")
    check.set_defaults(handler=cmd_plan_check)
    run = actions.add_parser(
        "run", help="run the plan's jobs in order, compare each with its baseline, print the verdicts"
    )
    run.add_argument("plan", type=arguments.existing_file, help="the plan's YAML file")
    run.add_argument(
        "--job",
        action="append",
        type=arguments.text,
        default=[],
        metavar="NAME",
        help="run only this job (repeatable)",
    )
    run.add_argument(
        "--json",
        type=arguments.output_file,
        default=None,
        metavar="FILE",
        help="also write the verdicts as JSON",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    add_db_option(run)
    run.set_defaults(handler=cmd_plan_run)


def report_problems(path: Path, problems: Sequence[Problem]) -> ConfigError:
    """Print each problem (``file:line: message``) and return the one-line error to raise."""
    for problem in problems:
        print(problem, file=sys.stderr)
    return ConfigError(f"{path}: {len(problems)} problem(s) in the plan; nothing was run")


def read_plan(path: Path) -> Plan:
    """The validated plan; every problem is printed before the ConfigError that ends the command."""
    try:
        return load_plan(path)
    except PlanError as exc:
        raise report_problems(path, exc.problems) from None


def warn_insecure(jobs: Sequence[Job]) -> None:
    """One warning per job that turns TLS verification off: it is on unless asked, and said so when not."""
    said = INSECURE_WARNING.format(ssl_insecure="ssl_insecure")
    for job in jobs:
        if any(sweep.tls is not None and sweep.tls.insecure for sweep in job.sweeps):
            print(f"loadgen: warning: job {job.name}: {said}", file=sys.stderr)


def _load(sweep: SweepSettings) -> str:
    said = words(sweep.scenario)
    load = f"{said.level} {','.join(f'{level:g}' for level in sweep.levels)}{said.unit}"
    return f"{sweep.model} at {sweep.url} ({sweep.protocol}), {load}, batch {sweep.batch_size}"


def _describe(job: Job) -> str:
    t = job.thresholds
    together = " + ".join(_load(sweep) for sweep in job.sweeps)
    if len(job.sweeps) > 1:
        together += " (at the same time)"
    return (
        f"{job.name}: {together}; baseline {job.baseline}; max throughput drop "
        f"{t.max_throughput_drop_pct:g}%, max p{t.percentile:g} rise {t.max_latency_rise_pct:g}%; "
        + (f"cron {job.cron!r}" if job.cron else "no cron")
    )


def cmd_plan_check(args: argparse.Namespace) -> int:
    """Validate the plan and summarise its jobs; exit 2 listing every problem."""
    plan = read_plan(args.plan)
    print(f"{args.plan}: plan {plan.name!r} is valid, {len(plan.jobs)} job(s)")
    for job in plan.jobs:
        print(f"  {_describe(job)}")
    return EXIT_OK


async def _run_jobs(plan: Plan, jobs: Sequence[Job], store: RunStore, quiet: bool) -> list[JobResult]:
    err = Console(stderr=True)
    results = []
    for job in jobs:
        if not quiet:
            models = ", ".join(f"{s.model} at {s.url}" for s in job.sweeps)
            err.print(f"job [bold]{job.name}[/]: {models}", highlight=False)
        results += await run_job(plan, job, store, console=None if quiet else err)
    return results


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.1f}%"


def print_verdicts(plan: Plan, results: Sequence[JobResult], console: Console) -> None:
    """One row per job and model: run, baseline, the worst step's changes, the verdict and why."""
    table = Table(title=f"plan {plan.name}: {len(results)} run(s)", title_justify="left")
    for header in ("Job", "Model", "Run", "Baseline", "Worst throughput", "Worst latency", "Verdict", "Note"):
        table.add_column(header, justify="right" if header in ("Run", "Baseline") else "left")
    style = {"regression": "bold red", "failed": "bold red", "error": "bold red", "improvement": "green"}
    for r in results:
        throughput = latency = "-"
        if r.comparison is not None and r.comparison.steps:
            p = r.comparison.thresholds.percentile
            steps = r.comparison.steps
            throughput = _pct(min(s.throughput_change_pct for s in steps))
            latency = f"p{p:g} " + _pct(max(s.latency(p).change_pct for s in steps))
        table.add_row(
            r.job,
            r.model,
            "-" if r.run_id is None else str(r.run_id),
            "-" if r.baseline_id is None else str(r.baseline_id),
            throughput,
            latency,
            r.outcome,
            r.note,
            style=style.get(r.outcome, ""),
        )
    console.print(table)


def print_matrices(db: str, jobs: Sequence[Job], results: Sequence[JobResult]) -> None:
    """Each matrix job's new runs side by side, with each one's ratio to the first."""
    from analysis.tables import DEFAULT_PERCENTILES
    from loadgen.commands.tables import side_by_side_text

    matrix_of = {job.name: job.matrix for job in jobs if job.matrix is not None}
    runs: dict[str, list[str]] = {}
    for r in results:  # a failed cell's run is left out: the verdicts table already says why
        if r.run_id is not None and r.outcome != "failed" and (matrix := matrix_of.get(r.job)):
            runs.setdefault(matrix, []).append(str(r.run_id))
    for matrix, ids in runs.items():
        if len(ids) > 1:
            try:
                table = side_by_side_text(db, ids, DEFAULT_PERCENTILES, None)
            except ConfigError as exc:  # never at the cost of the verdicts and the exit code
                print(f"loadgen: warning: matrix {matrix} not side by side: {exc}", file=sys.stderr)
                continue
            print(f"\nmatrix {matrix}: its runs side by side, ratios to the first")
            print(table, end="")
            print(f"loadgen: next: loadgen report {' '.join(ids)} -o {matrix}.html", file=sys.stderr)


def _names(results: Sequence[JobResult]) -> str:
    return ", ".join(f"{r.job} ({r.model})" for r in results)


def cmd_plan_run(args: argparse.Namespace) -> int:
    """Run the plan's jobs once; exit 1 naming the regressed jobs."""
    plan = read_plan(args.plan)
    jobs = plan.select(args.job)
    warn_insecure(jobs)
    with RunStore(args.db) as store:
        problems = check_baseline_runs(plan, jobs, store)
        if problems:
            raise report_problems(args.plan, problems)
        results: list[JobResult] = run_async(_run_jobs(plan, jobs, store, args.quiet))
    print_verdicts(plan, results, stdout_console())
    if args.json is not None:
        try:
            args.json.write_text(
                json.dumps([r.to_dict() for r in results], indent=2) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise ConfigError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        print(f"wrote {args.json}", file=sys.stderr)
    print_matrices(args.db, jobs, results)
    for r in results:
        for warning in r.comparison.warnings if r.comparison else ():
            print(f"loadgen: warning: job {r.job} ({r.model}): {warning}", file=sys.stderr)
    regressed = [r for r in results if r.outcome == "regression"]
    failed = [r for r in results if r.outcome == "failed"]
    if regressed:
        print(f"loadgen: regression in job(s) {_names(regressed)}", file=sys.stderr)
    if failed:
        print(f"loadgen: run failed in job(s) {_names(failed)}", file=sys.stderr)
    errors = [r for r in results if r.outcome == "error"]
    if errors:
        raise ConfigError("; ".join(f"job {r.job} ({r.model}): {r.note}" for r in errors))
    return EXIT_REGRESSION if regressed or failed else EXIT_OK
