"""``loadgen table``: a stored run as the benchmark table or one step's ``.hgrm``; ``loadgen compare``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, require_database
from loadgen.config.scenarios import words
from loadgen.errors import EXIT_OK, ConfigError
from loadgen.results import RunStatus
from loadgen.storage import RunRecord, RunStore, StepRecord

if TYPE_CHECKING:  # analysis imports pandas: loaded only by the commands that use it
    import pandas as pd

    from analysis.tables import TableFormat


_PERCENTILES_HELP = "numbers within 0..100 separated by commas, such as 50,99,99.9"


def parse_percentiles(text: str) -> tuple[float, ...]:
    """``50,99,99.9`` (a leading ``p`` is allowed) -> ascending distinct percentiles."""
    values = set()
    for part in text.split(","):
        try:
            value = float(part.strip().lower().removeprefix("p"))
        except ValueError:
            raise ConfigError(f"bad percentiles {text!r}: expected {_PERCENTILES_HELP}") from None
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise ConfigError(f"bad percentiles {text!r}: expected {_PERCENTILES_HELP}")
        values.add(value)
    return tuple(sorted(values))


def parse_percent(option: str, text: str) -> float:
    """``5%`` or ``5`` -> 5.0 (a percentage >= 0)."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError(f"bad {option} {text!r}: expected a percentage >= 0 such as 5% or 5")
    return value


def register(sub: Any) -> None:
    """Add the ``table`` sub-command to the CLI's sub-parsers."""
    table = sub.add_parser(
        "table",
        help="a stored run as the ResNeXt-style table (Markdown, CSV, HTML), or one step's .hgrm",
        description="Concurrency | Throughput | Avg | p50 | p90 | p95 | p99 latency of a stored run; "
        "percentiles are read from the stored histograms.",
    )
    table.add_argument(
        "run_ids",
        type=arguments.run_ref,
        nargs="+",
        metavar="RUN",
        help="a run id, or group:ID: the runs of one --repeats sweep, each level's mean across them "
        "with its interval; several: their tables side by side, each with its ratio to the first "
        "(FP32 vs FP16, a plan's matrix)",
    )
    table.add_argument(
        "--format", choices=("markdown", "csv", "html"), default=None, help="output format (default markdown)"
    )
    table.add_argument(
        "--percentiles",
        default=None,
        metavar="P,P,...",
        help="latency percentiles read from the histograms (default 50,90,95,99)",
    )
    table.add_argument(
        "--hgrm",
        type=int,
        default=None,
        metavar="STEP_INDEX",
        help="instead of the table, the step's full percentile spectrum in HdrHistogram's .hgrm form",
    )
    table.add_argument(
        "--models",
        action="store_true",
        help="instead of the latency table, each composing model's share of the time per step (an "
        "ensemble, or a BLS model swept with --composing-models)",
    )
    table.add_argument(
        "--tail",
        action="store_true",
        help="instead of the latency table, what the median request and the slowest 1%% and 0.1%% spent "
        "their time on, from Triton's traces (a sweep with --trace-rate)",
    )
    table.add_argument(
        "--workers",
        action="store_true",
        help="instead of the latency table, each worker's part of each step: its node, share, requests, "
        "errors, send lag and clock offset (a sweep with --workers or --ray)",
    )
    table.add_argument(
        "--ci",
        action="store_true",
        help="each percentile and the throughput with its confidence interval, p99 = 12.3 [12.1, 12.6] "
        "(CSV: low and high columns after the others; see the README, 'Reading an interval')",
    )
    table.add_argument(
        "--confidence",
        default="95%",
        metavar="PCT",
        help="with --ci: the intervals' confidence level (default 95%%)",
    )
    table.add_argument(
        "-o", "--output", type=arguments.output_file, default=None, help="write to FILE instead of stdout"
    )
    add_db_option(table)
    table.set_defaults(handler=cmd_table)


def _load(db: str, run_id: int) -> tuple[RunRecord, list[StepRecord]]:
    require_database(db)
    with RunStore(db) as store:
        return store.get_run(run_id), store.steps(run_id)


def _status_text(run: RunRecord) -> str:
    return str(run.status) + (f": {run.error}" if run.error else "")


def warn(message: str) -> None:
    print(f"loadgen: warning: {message}", file=sys.stderr)


def _write(text: str, path: Path | None) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}", file=sys.stderr)


def _hgrm(run: RunRecord, steps: list[StepRecord], index: int) -> str:
    from analysis.hgrm import format_hgrm

    by_index = {s.step_index: s for s in steps}
    said = words(run.scenario)
    if index not in by_index:
        raise ConfigError(
            f"run {run.id} has no step {index}: its steps are "
            + ", ".join(
                f"{s.step_index} ({said.describe(said.of(s.concurrency, s.request_rate))})" for s in steps
            )
        )
    hist = by_index[index].histogram()
    if hist.count == 0:
        raise ConfigError(f"step {index} of run {run.id} has no successful request: no latency spectrum")
    return format_hgrm(hist)


def _models(db: str, run: RunRecord) -> pd.DataFrame:
    from analysis.frames import load_run_data
    from analysis.model_breakdown import model_table

    data = load_run_data(db, run.id)
    if data.composing.empty:
        raise ConfigError(
            f"run {run.id} ({run.model}) has no composing models' statistics: it is neither an ensemble "
            "nor a BLS model swept with --composing-models"
        )
    return model_table(data.composing, data.steps)


def _tail(db: str, run: RunRecord) -> pd.DataFrame:
    from analysis.frames import load_run_data
    from analysis.tail import tail_frame, tail_table

    data = load_run_data(db, run.id)
    if data.traces.empty:
        raise ConfigError(f"run {run.id} has no traces: sweep with --trace-rate N to sample requests")
    tail = tail_frame(data.traces, data.steps)
    if tail.empty:
        raise ConfigError(f"run {run.id}'s traces are too few for a tail: lower --trace-rate N")
    return tail_table(tail)


def _workers(db: str, run: RunRecord) -> pd.DataFrame:
    from analysis.frames import load_run_data
    from analysis.worker_table import worker_table

    data = load_run_data(db, run.id)
    if data.workers.empty:
        raise ConfigError(f"run {run.id} ran in one process: sweep with --workers N or --ray ADDRESS")
    return worker_table(data.workers)


def cmd_table(args: argparse.Namespace) -> int:
    """Print (or write) the run's table, or one step's ``.hgrm`` with ``--hgrm``."""
    from analysis.tables import DEFAULT_PERCENTILES, benchmark_table, format_table

    percentiles = DEFAULT_PERCENTILES if args.percentiles is None else parse_percentiles(args.percentiles)
    views = [
        n
        for n, on in (
            ("--hgrm", args.hgrm is not None),
            ("--models", args.models),
            ("--tail", args.tail),
            ("--workers", args.workers),
        )
        if on
    ]
    if args.ci and views:
        raise ConfigError(f"--ci bounds the latency table's numbers: drop {views[0]}")
    confidence = parse_confidence(args.confidence)
    if len(views) > 1:
        raise ConfigError(f"give one of {' and '.join(views)}: each replaces the latency table")
    if args.hgrm is not None and (args.format is not None or args.percentiles is not None):
        raise ConfigError("--hgrm writes one step's whole spectrum: drop --format and --percentiles")
    if len(args.run_ids) > 1:
        if views or args.ci:
            raise ConfigError(f"{views[0] if views else '--ci'} shows one run: give one run id")
        _write(side_by_side_text(args.db, args.run_ids, percentiles, args.format), args.output)
        return EXIT_OK
    (ref,) = args.run_ids
    if ref.startswith("group:"):
        if views:
            raise ConfigError(f"{views[0]} shows one run: give a run id of the group")
        _write(_group_table(args.db, ref, percentiles, confidence, args.format), args.output)
        return EXIT_OK
    run, steps = _load(args.db, int(ref))
    if not steps:
        raise ConfigError(f"run {run.id} has no steps ({_status_text(run)})")
    if run.status is not RunStatus.COMPLETED:
        warn(f"run {run.id} is {_status_text(run)}: showing its {len(steps)} finished step(s)")
    if args.hgrm is not None:
        text = _hgrm(run, steps, args.hgrm)
    elif args.models:
        text = format_table(_models(args.db, run), _table_format(args.format))
    elif args.tail:
        text = format_table(_tail(args.db, run), _table_format(args.format))
    elif args.workers:
        text = format_table(_workers(args.db, run), _table_format(args.format))
    else:
        from analysis.failures import failure_lines, step_failures

        failures = step_failures(map(vars, steps), run.scenario)
        if failures:  # the table counts them (Errors); why they failed goes beside it, on stderr
            warn(f"{len(failures)} step(s) of run {run.id} had failed requests:")
            print("\n".join(failure_lines(failures)), file=sys.stderr)
        table = benchmark_table(steps, percentiles, scenario=run.scenario)
        if args.ci:
            table = _with_intervals(args.db, run, steps, table, percentiles, confidence, args.format)
        text = format_table(table, _table_format(args.format))
    _write(text, args.output)
    return EXIT_OK


def _group_table(
    db: str, ref: str, percentiles: tuple[float, ...], confidence: float, fmt: str | None
) -> str:
    from analysis.groups import across_runs_table, load_group, one_model
    from analysis.tables import format_table

    require_database(db)
    with RunStore(db) as store:
        runs = load_group(store, ref)
    one_model(runs)
    unfinished = [str(run.id) for run, _ in runs if run.status is not RunStatus.COMPLETED]
    if unfinished:
        warn(f"{ref}: run(s) {', '.join(unfinished)} did not complete: their finished steps count")
    print(f"{ref}: runs {', '.join(str(run.id) for run, _ in runs)} of {runs[0][0].model}", file=sys.stderr)
    level = words(runs[0][0].scenario).column
    table = across_runs_table(runs, percentiles, confidence, level_column=level)
    return format_table(table, _table_format(fmt))


def side_by_side_text(db: str, refs: Sequence[str], percentiles: tuple[float, ...], fmt: str | None) -> str:
    """Several runs' tables as one, each run's ratio to the first; runs named as
    :func:`analysis.side_by_side.run_names` names them."""
    from analysis.groups import run_ids_of
    from analysis.side_by_side import run_names, runs_side_by_side
    from analysis.tables import benchmark_table, format_table

    require_database(db)
    with RunStore(db) as store:
        ids = list(dict.fromkeys(run_ids_of(store, refs)))
        runs = [(store.get_run(i), store.steps(i)) for i in ids]
    if len(runs) < 2:
        raise ConfigError(f"{' '.join(refs)} name one run: give two or more to put side by side")
    for run, steps in runs:
        if not steps:
            raise ConfigError(f"run {run.id} has no steps ({_status_text(run)})")
        if run.status is not RunStatus.COMPLETED:
            warn(f"run {run.id} is {_status_text(run)}: showing its {len(steps)} finished step(s)")
    records = [run for run, _ in runs]
    tables = [benchmark_table(steps, percentiles, scenario=run.scenario) for run, steps in runs]
    table = runs_side_by_side(records, tables)
    named = zip(run_names(records), records, strict=True)
    print(", ".join(f"{name}: run {run.id} ({run.model})" for name, run in named), file=sys.stderr)
    return format_table(table, _table_format(fmt))


def _table_format(fmt: str | None) -> TableFormat:
    """``--format`` (argparse has checked it) as format_table takes it; markdown by default."""
    return "csv" if fmt == "csv" else "html" if fmt == "html" else "markdown"


def parse_confidence(text: str) -> float:
    """``95%`` or ``95`` -> 0.95, within [50%, 100%)."""
    value = parse_percent("--confidence", text)
    if not 50.0 <= value < 100.0:
        raise ConfigError(f"--confidence must be within [50%, 100%), got {text!r}")
    return value / 100.0


def _with_intervals(
    db: str,
    run: RunRecord,
    steps: list[StepRecord],
    table: pd.DataFrame,
    percentiles: tuple[float, ...],
    confidence: float,
    fmt: str | None,
) -> pd.DataFrame:
    import pandas as pd

    from analysis.step_intervals import interval_columns, with_intervals

    with RunStore(db) as store:
        intervals = store.step_intervals(run.id)
    if not intervals:
        warn(f"run {run.id} was stored without intervals (before loadgen stored them): none to show")
    if fmt == "csv":
        return pd.concat([table, interval_columns(steps, intervals, percentiles, confidence)], axis=1)
    return with_intervals(table, steps, intervals, percentiles, confidence)
