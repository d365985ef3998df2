"""``loadgen tune``: a model's instance count and batching searched live, under an SLO.

Every sweep option measures each candidate (its levels, windows, inputs); ``--slo`` is the sweep's
``--latency-limit`` (each candidate's sweep stops at its first step over it). The candidates are
loaded one by one through Triton's repository API and the original config is put back at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, run_async
from loadgen.commands.sweep import (
    add_embedded_options,
    add_sweep_options,
    embedded,
    on_server,
    settings_from_args,
)
from loadgen.config import spell_flag
from loadgen.errors import EXIT_OK, ConfigError
from loadgen.storage import DEFAULT_DB_URL

if TYPE_CHECKING:
    from loadgen.config import SweepSettings
    from loadgen.storage import RunStore
    from loadgen.tune.tuning import Attempt, TuneSettings

LEFT_OUT = ("search", "repeats", "latency_limit")
"""The sweep's options a tune does not take: its ``--search`` is the tune's, ``--slo`` its limit."""

EXAMPLES = """examples:
  loadgen tune -m rnxt --slo p99=50ms --instances 1..4:1 --max-batch-size 1,8,32 --queue-delay off,100,500us
  loadgen tune -m rnxt --slo p99=50ms --instances 1..4:1 --max-batch-size 1,8,32 --search quick
  loadgen tune -m fixed_latency --embedded --instances 1..4:1 --concurrency 1..8 --slo p99=100ms
  loadgen tune ... --resume TUNE_ID          after an interruption: the finished configurations are kept

Ranges take --concurrency's syntax: 1..4 is 1, 2, 4; 1..4:1 is every count.
Triton must run with --model-control-mode=explicit (loadgen serve --model-control explicit)."""


def register(sub: Any) -> None:
    """Add ``tune`` to the CLI's sub-parsers."""
    from loadgen.config.ranges import parse_levels
    from loadgen.tune.space import SEARCHES, parse_delays

    tune = sub.add_parser(
        "tune",
        help="find the instance count and batching that serve the most under an SLO, live",
        usage="%(prog)s -m MODEL --slo pNN=X [--instances RANGE] [--max-batch-size LIST] "
        "[--queue-delay LIST] [options]",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=30),
    )
    space = tune.add_argument_group("what to tune (an axis not given keeps the served value)")
    space.add_argument(
        "--slo",
        dest="latency_limit",
        default=None,
        metavar="pNN=X",
        help="e.g. p99=50ms: the best configuration serves the most with this percentile at or under "
        "X (default: none, the most throughput wins)",
    )
    space.add_argument(
        "--instances", type=arguments.parsed(parse_levels), metavar="RANGE", help="instance counts"
    )
    space.add_argument(
        "--max-batch-size",
        type=arguments.parsed(parse_levels),
        metavar="LIST",
        help="max batch sizes, e.g. 1,8,32",
    )
    space.add_argument(
        "--queue-delay",
        type=arguments.parsed(parse_delays),
        metavar="LIST",
        help="dynamic batching delays, e.g. off,0,100,500us (off: no dynamic batching; a bare number "
        "is microseconds)",
    )
    space.add_argument(
        "--search",
        dest="strategy",
        choices=SEARCHES,
        default="grid",
        help="grid: every configuration; quick: hill-climb from the smallest (default grid)",
    )
    space.add_argument(
        "--resume",
        type=arguments.text,
        default=None,
        metavar="TUNE_ID",
        help="go on with this tune: configurations it finished are read back, not measured again",
    )
    add_sweep_options(tune, leave_out=LEFT_OUT)
    add_embedded_options(
        tune.add_argument_group("embedded server"),
        "start the embedded server (explicit model control, only this model loaded) for the tune",
    )
    out = tune.add_argument_group("output")
    out.add_argument(
        "--json",
        type=arguments.output_file,
        default=None,
        metavar="FILE",
        help="also write the result as JSON (default: none)",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    add_db_option(out)
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from loadgen.storage import RunStore
    from loadgen.tune.tuning import TuneSettings

    sweeps = settings_from_args(args, lambda key: "--slo" if key == "latency_limit" else spell_flag(key))
    if len(sweeps) != 1:
        raise ConfigError("a tune takes one model (-m once)")
    if sweeps[0].search or sweeps[0].repeats != 1:
        raise ConfigError("a tune measures each configuration once at its levels: drop search and repeats")
    if args.model_repository is not None and not args.embedded:
        raise ConfigError("--model-repository goes with --embedded (the server at -u has its own)")
    err = Console(stderr=True)
    tune = TuneSettings(
        sweeps[0],
        instances=args.instances,
        max_batch_sizes=args.max_batch_size,
        queue_delays=args.queue_delay,
        search=args.strategy,
        resume=args.resume is not None,
    )
    if args.resume is not None:
        _check_resume(args.db, args.resume, tune.sweep)
        tune = dataclasses.replace(tune, tune_id=args.resume)
    with contextlib.ExitStack() as stack:
        if args.embedded:
            explicit = ("--model-control-mode=explicit", f"--load-model={tune.sweep.model}")
            server = stack.enter_context(embedded(args, err, explicit))
            tune = dataclasses.replace(tune, sweep=on_server([tune.sweep], server)[0])
        store = stack.enter_context(RunStore(args.db))
        attempts = _run(tune, store, None if args.quiet else err, args)
    for attempt in attempts:
        if attempt.why:
            said = f"{attempt.candidate.key}: {attempt.kind}: {attempt.why}"
            print(f"loadgen: tune {tune.tune_id}: {said}", file=sys.stderr)
    if not any(attempt.run_id is not None for attempt in attempts):
        raise ConfigError(f"tune {tune.tune_id}: no configuration could be measured (see above)")
    return print_tune(args.db, tune.tune_id, args.json)


def _check_resume(db: str, tune_id: str, sweep: SweepSettings) -> None:
    """A tune to resume must have runs in this database (a typo must not start a new tune), of the
    same model under the same SLO (its finished configurations must mean what they say)."""
    from analysis.tune_result import tune_runs, tune_slo
    from loadgen.commands.shared import require_database
    from loadgen.storage import RunStore

    try:
        require_database(db)
    except ConfigError as exc:
        raise ConfigError(f"--resume {tune_id!r}: {exc}") from None
    with RunStore(db) as store:
        first = tune_runs(store, tune_id)[0]
    if first.model != sweep.model:
        raise ConfigError(f"--resume {tune_id!r}: that tune measured {first.model!r}, not {sweep.model!r}")
    if tune_slo(first) != sweep.latency_limit:
        was = tune_slo(first) or "no SLO"
        raise ConfigError(f"--resume {tune_id!r}: that tune ran under {was}: give the same --slo")


def _run(
    tune: TuneSettings, store: RunStore, console: Console | None, args: argparse.Namespace
) -> list[Attempt]:
    from loadgen.tune.tuning import run_tune

    try:
        return run_async(run_tune(tune, store, console=console))
    except KeyboardInterrupt:
        db = "" if args.db == DEFAULT_DB_URL else " --db ..."
        print(
            f"loadgen: tune {tune.tune_id} interrupted: go on with the same command and "
            f"--resume {tune.tune_id}{db}",
            file=sys.stderr,
        )
        raise


def print_tune(db: str, tune_id: str, json_path: Any) -> int:
    """The result: every configuration, the best under the SLO and its config.pbtxt, the front."""
    import pandas as pd

    from analysis.tables import format_table
    from analysis.tune_result import config_pbtxt, front_rows, load_tune, result_dict, summary_rows
    from loadgen.storage import RunStore

    with RunStore(db) as store:
        result = load_tune(store, tune_id)
    print(f"tune {tune_id} of {result.model}" + (f", SLO {result.slo}" if result.slo else ""))
    print(format_table(pd.DataFrame(summary_rows(result))), end="")
    print(f"\nPareto front: the steps no other beats on both throughput and p{result.percentile:g}")
    print(format_table(pd.DataFrame(front_rows(result))), end="")
    winner = result.winner
    if winner is None:
        print("no configuration met the SLO" if result.slo else "no configuration was measured")
    else:
        config, step = winner
        print(
            f"\nbest: {config.config}: {step.throughput:.1f} infer/s at load {step.level:g}, "
            f"p{result.percentile:g} {step.latency_ms:.2f} ms (run {config.run_id}); its config.pbtxt:\n"
        )
        print(config_pbtxt(config.model_config), end="")
    if json_path is not None:
        json_path.write_text(json.dumps(result_dict(result), indent=2) + "\n")
    print(f"loadgen: next: loadgen report --tune {tune_id} -o tune.html", file=sys.stderr)
    return EXIT_OK
