"""``loadgen workers``: what a sweep's load would be spread over: this host's cores, or with
``--ray ADDRESS`` a Ray cluster's nodes, CPUs and clock offsets."""

from __future__ import annotations

import argparse
import os
from typing import Any

from loadgen.commands import arguments
from loadgen.commands.shared import run_async, stdout_console
from loadgen.errors import EXIT_OK


def register(sub: Any) -> None:
    workers = sub.add_parser(
        "workers",
        help="the cores (or, with --ray, the Ray cluster's nodes, CPUs and clock offsets) a sweep's "
        "workers would use",
    )
    workers.add_argument(
        "--ray",
        type=arguments.text,
        default=None,
        metavar="ADDRESS",
        help="a Ray cluster: auto (the one `ray start` started here), HOST:PORT or ray://HOST:10001 "
        "(default: this host only)",
    )
    workers.set_defaults(handler=cmd_workers)


def cmd_workers(args: argparse.Namespace) -> int:
    from rich.table import Table

    from loadgen.engine.workers import RATE_PER_WORKER, SLOTS_PER_WORKER

    console = stdout_console()
    rule = f"one per {SLOTS_PER_WORKER} in flight or {RATE_PER_WORKER:g} req/s of the heaviest level"
    if args.ray is None:
        cores = os.cpu_count() or 1
        console.print(
            f"this host: {cores} cores; --workers defaults to {rule}, at most {max(1, cores // 2)} "
            "(half the cores); --ray ADDRESS spreads them over a Ray cluster",
            highlight=False,
        )
        return EXIT_OK
    from loadgen.distributed.survey import survey

    nodes = run_async(survey(args.ray))
    table = Table("Node", "Address", "CPUs", "Free CPUs", "Clock offset (ms)")
    for node in nodes:
        clock = (
            "no answer"
            if node.clock is None
            else f"{node.clock.offset_ns / 1e6:+.3f} ± {node.clock.uncertainty_ns / 1e6:.3f}"
        )
        free = "?" if node.free_cpus is None else f"{node.free_cpus:g}"
        table.add_row(node.node_id[:8], node.address, f"{node.cpus:g}", free, clock)
    console.print(table)
    total = sum(node.cpus for node in nodes)
    known = [node.free_cpus for node in nodes if node.free_cpus is not None]
    free_said = f"{sum(known):g} free" if len(known) == len(nodes) else "free CPUs unknown"
    console.print(
        f"{len(nodes)} node(s), {total:g} CPUs ({free_said}): a --ray sweep places one worker per CPU "
        f"(--workers N; default {rule}), spread over the nodes",
        highlight=False,
    )
    return EXIT_OK
