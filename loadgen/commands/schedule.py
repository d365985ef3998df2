"""``loadgen schedule PLAN``: run a plan's jobs on their cron expressions until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from loadgen import event_loop
from loadgen.commands import arguments
from loadgen.commands.plan import read_plan, report_problems, warn_insecure
from loadgen.commands.shared import add_db_option
from loadgen.errors import EXIT_OK, ConfigError
from loadgen.exporter import SweepExporter
from loadgen.plans import Job, Plan, check_baseline_runs
from loadgen.storage import RunStore


def register(sub: Any) -> None:
    """Add the ``schedule`` sub-command to the CLI's sub-parsers."""
    schedule = sub.add_parser(
        "schedule",
        help="run a plan's jobs on their cron expressions (a long-running process)",
        description="One job measures at a time; each run is logged with its verdict. "
        "SIGTERM or SIGINT stops it (a running job is interrupted and marked so) with exit 0. "
        "Cron expressions use local time; 6 fields add a leading seconds field.",
    )
    schedule.add_argument("plan", type=arguments.existing_file, help="the plan's YAML file")
    schedule.add_argument(
        "--job",
        action="append",
        type=arguments.text,
        default=[],
        metavar="NAME",
        help="schedule only this job (repeatable)",
    )
    schedule.add_argument(
        "--webhook",
        default=None,
        metavar="URL",
        help="POST the verdict JSON here when a run regressed (a plan cannot name one)",
    )
    schedule.add_argument(
        "--hook",
        type=arguments.text,
        default=None,
        metavar="COMMAND",
        help="run this shell command after every run, with the verdict JSON on its stdin "
        "(a plan cannot name one)",
    )
    schedule.add_argument(
        "--exporter-port",
        type=arguments.port,
        default=None,
        metavar="PORT",
        help="serve loadgen's Prometheus metrics here while the scheduler runs (e.g. 9108)",
    )
    schedule.add_argument(
        "--exporter-addr",
        default=None,
        metavar="ADDR",
        help="the address --exporter-port listens on (default 127.0.0.1, this machine only; "
        "0.0.0.0 for every interface, e.g. for a Prometheus in another container)",
    )
    add_db_option(schedule)
    schedule.set_defaults(handler=cmd_schedule)


def _logger() -> logging.Logger:
    """Run lines carry a timestamp: this process runs for days and its log is read later."""
    log = logging.getLogger("loadgen.scheduler")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s loadgen: %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


async def _serve(
    plan: Plan,
    jobs: list[Job],
    store: RunStore,
    webhook: str | None,
    hook: str | None,
    exporter: SweepExporter | None = None,
) -> None:
    from loadgen.cron import run_cron_jobs

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_cron_jobs(plan, jobs, store, stop, webhook=webhook, hook=hook, exporter=exporter)


def cmd_schedule(args: argparse.Namespace) -> int:
    """Validate the plan, then run its scheduled jobs until stopped; exit 0 on SIGTERM/SIGINT."""
    from loadgen.cron import redact_url, webhook_problem

    plan = read_plan(args.plan)
    jobs = [job for job in plan.select(args.job) if job.cron]
    if not jobs:
        raise ConfigError(
            f"no job of plan {plan.name!r} to schedule: give the plan or a job a cron expression "
            'such as cron: "0 2 * * *"'
        )
    if args.webhook is not None and (problem := webhook_problem(args.webhook)) is not None:
        raise ConfigError(f"bad --webhook {redact_url(args.webhook)!r}: {problem}")  # it may hold a token
    if args.exporter_addr is not None and args.exporter_port is None:
        raise ConfigError("--exporter-addr goes with --exporter-port")
    warn_insecure(jobs)
    log = _logger()
    with RunStore(args.db) as store:
        problems = check_baseline_runs(plan, jobs, store)
        if problems:
            raise report_problems(args.plan, problems)
        with contextlib.ExitStack() as stack:
            exporter = None
            if args.exporter_port is not None:  # a taken port fails before any job runs
                exporter = stack.enter_context(SweepExporter(args.exporter_port, args.exporter_addr))
            event_loop.run(_serve(plan, jobs, store, args.webhook, args.hook, exporter))
    log.info("stopped")
    return EXIT_OK
