"""``loadgen table``: a stored run as the benchmark table or one step's ``.hgrm``; ``loadgen compare``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, require_database
from loadgen.config.scenarios import words
from loadgen.errors import EXIT_OK, EXIT_REGRESSION, ConfigError
from loadgen.results import RunStatus
from loadgen.storage import RunRecord, RunStore, StepRecord

if TYPE_CHECKING:  # analysis imports pandas: loaded only by the commands that use it
    import pandas as pd

    from analysis.compare import Comparison
    from analysis.significance import ChangeInterval

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
    """Add the ``table`` and ``compare`` sub-commands to the CLI's sub-parsers."""
    table = sub.add_parser(
        "table",
        help="a stored run as the ResNeXt-style table (Markdown, CSV, HTML), or one step's .hgrm",
        description="Concurrency | Throughput | Avg | p50 | p90 | p95 | p99 latency of a stored run; "
        "percentiles are read from the stored histograms.",
    )
    table.add_argument("run_id", type=int)
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

    compare = sub.add_parser(
        "compare",
        help="compare two stored runs step by step; exit 1 on a regression beyond the runs' noise",
        description="Matches steps by concurrency (or request rate). A step regresses when its throughput "
        "dropped or its latency percentile rose by more than the thresholds, and by more than the runs' "
        "own noise: each run's noise at a step is how far its measurement windows strayed from their "
        "mean (throughput, and mean latency for the percentile), the two runs' combined as the root of "
        "the sum of squares. A change beyond a threshold but within that noise is marked 'within "
        "noise': it is no regression (exit 0) and no improvement. A step without 2 stored windows has "
        "no known noise: the thresholds alone judge it. Settings that differ between the runs and "
        "change what is measured (protocol, batch size, input data, measurement windows, workers, "
        "model version, the server's model config...) are warned about before the table. "
        "Exit 0 pass or improvement, 1 regression, 2 usage error or runs that cannot be compared.",
    )
    compare.add_argument("base_run", type=int, help="the reference run")
    compare.add_argument("new_run", type=int, help="the run under test")
    compare.add_argument(
        "--max-throughput-drop", default="5%", metavar="PCT", help="allowed throughput drop (default 5%%)"
    )
    compare.add_argument(
        "--max-latency-rise", default="10%", metavar="PCT", help="allowed latency rise (default 10%%)"
    )
    compare.add_argument(
        "--percentile", default="99", metavar="P", help="latency percentile that gates (default 99)"
    )
    compare.add_argument(
        "--confidence",
        default="95%",
        metavar="PCT",
        help="a change beyond a threshold is a regression only if significant at this level, over all "
        "the checks made (default 95%%: identical runs get a false verdict at most 5%% of the time)",
    )
    compare.add_argument("--json", action="store_true", help="print JSON instead of the table")
    compare.add_argument(
        "--junit", type=arguments.output_file, default=None, metavar="FILE", help="also write JUnit XML"
    )
    compare.add_argument("--force", action="store_true", help="compare runs of different models")
    compare.add_argument(
        "--strict",
        action="store_true",
        help="judge by the thresholds alone: a change within the runs' noise regresses (or improves) too",
    )
    add_db_option(compare)
    compare.set_defaults(handler=cmd_compare)


def _load(db: str, run_id: int) -> tuple[RunRecord, list[StepRecord]]:
    require_database(db)
    with RunStore(db) as store:
        return store.get_run(run_id), store.steps(run_id)


def _status_text(run: RunRecord) -> str:
    return str(run.status) + (f": {run.error}" if run.error else "")


def _warn(message: str) -> None:
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
    run, steps = _load(args.db, args.run_id)
    if not steps:
        raise ConfigError(f"run {run.id} has no steps ({_status_text(run)})")
    if run.status is not RunStatus.COMPLETED:
        _warn(f"run {run.id} is {_status_text(run)}: showing its {len(steps)} finished step(s)")
    if args.hgrm is not None:
        text = _hgrm(run, steps, args.hgrm)
    elif args.models:
        text = format_table(_models(args.db, run), args.format or "markdown")
    elif args.tail:
        text = format_table(_tail(args.db, run), args.format or "markdown")
    elif args.workers:
        text = format_table(_workers(args.db, run), args.format or "markdown")
    else:
        from analysis.failures import failure_lines, step_failures

        failures = step_failures(map(vars, steps), run.scenario)
        if failures:  # the table counts them (Errors); why they failed goes beside it, on stderr
            _warn(f"{len(failures)} step(s) of run {run.id} had failed requests:")
            print("\n".join(failure_lines(failures)), file=sys.stderr)
        table = benchmark_table(steps, percentiles, scenario=run.scenario)
        if args.ci:
            table = _with_intervals(args.db, run, steps, table, percentiles, confidence, args.format)
        text = format_table(table, args.format or "markdown")
    _write(text, args.output)
    return EXIT_OK


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
    from analysis.tables import THROUGHPUT

    with RunStore(db) as store:
        intervals = store.step_intervals(run.id)
    if not intervals:
        _warn(f"run {run.id} was stored without intervals (before loadgen stored them): none to show")
    if fmt == "csv":
        return pd.concat([table, interval_columns(steps, intervals, percentiles, confidence)], axis=1)
    return with_intervals(
        table,
        steps,
        intervals,
        percentiles,
        confidence,
        throughput_column=THROUGHPUT,
        percentile_column="p{p:g} latency (ms)",
    )


def _pct(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.1f}%"


def _ms(value_us: float) -> str:
    return "-" if math.isnan(value_us) else f"{value_us / 1000:.3f}"


def _spread(interval: ChangeInterval | None, noise: float) -> str:
    """The change's interval where the steps stored intervals, else both runs' noise."""
    if interval is not None:
        return interval.text()
    return "-" if math.isnan(noise) else f"±{noise:.1f}%"


def print_comparison(c: Comparison, console: Console) -> None:
    """The comparison as a rich table, one row per matched level, and the verdict.

    Beside each change, its confidence interval (steps stored without intervals: both runs' noise
    combined, "-": unknown); a step that crossed a threshold without a significant change says
    ``no significant change`` (``within noise``)."""
    from analysis.compare import Verdict

    p = c.thresholds.percentile
    others = [d.percentile for d in c.steps[0].latencies if d.percentile != p] if c.steps else []
    title = (
        f"run {c.new.id} ({c.new.model}, {c.new.status}) vs base run {c.base.id} "
        f"({c.base.model}, {c.base.status}): max throughput drop {c.thresholds.max_throughput_drop_pct:g}%, "
        f"max p{p:g} rise {c.thresholds.max_latency_rise_pct:g}%"
        + ("" if c.thresholds.noise_aware else " (strict: noise not considered)")
    )
    out = Table(title=title, title_justify="left")
    level = words(c.level_name).title
    spread = "CI / noise"
    headers = [level, "Base infer/s", "New infer/s", "Change", spread]
    headers += [f"Base p{p:g} (ms)", f"New p{p:g} (ms)", "Change", spread]
    headers += [f"p{o:g} change" for o in others] + ["Verdict"]
    for header in headers:
        out.add_column(header, justify="left" if header == "Verdict" else "right")
    style = {
        Verdict.REGRESSION: "bold red",
        Verdict.IMPROVEMENT: "green",
        Verdict.WITHIN_NOISE: "yellow",
        Verdict.NOT_SIGNIFICANT: "yellow",
        Verdict.PASS: "",
    }
    for step in c.steps:
        gate = step.latency(p)
        verdict = str(step.verdict) + (f" ({'; '.join(step.reasons)})" if step.reasons else "")
        out.add_row(
            f"{step.level:g}",
            f"{step.base_throughput:,.1f}",
            f"{step.new_throughput:,.1f}",
            _pct(step.throughput_change_pct),
            _spread(step.throughput_change, step.throughput_noise_pct),
            _ms(gate.base_us),
            _ms(gate.new_us),
            _pct(gate.change_pct),
            _spread(step.latency_change, step.latency_noise_pct),
            *(_pct(step.latency(o).change_pct) for o in others),
            verdict,
            style=style[step.verdict],
        )
    console.print(out)
    regressed = sum(s.verdict is Verdict.REGRESSION for s in c.steps)
    noisy = sum(s.verdict is Verdict.WITHIN_NOISE for s in c.steps)
    unsure = sum(s.verdict is Verdict.NOT_SIGNIFICANT for s in c.steps)
    console.print(
        f"verdict: [{style[c.verdict] or 'bold'}]{c.verdict}[/] "
        f"({regressed} of {len(c.steps)} matched step(s) regressed"
        + (f"; {unsure} crossed a threshold without a significant change, not judged" if unsure else "")
        + (f"; {noisy} changed within the runs' noise, not judged" if noisy else "")
        + ")",
        highlight=False,
    )
    console.print(f"decided: {c.method}", highlight=False)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two runs; exit 1 when the new run regressed (beyond the runs' noise, unless ``--strict``).

    Warnings (runs not completed, settings that differ, levels without a match) go to stderr
    before the table."""
    from analysis.compare import CompareError, Thresholds, Verdict, load_comparison
    from analysis.junit import write_junit

    percentile = parse_percentiles(args.percentile)
    if len(percentile) != 1 or percentile[0] == 0:
        raise ConfigError(f"bad --percentile {args.percentile!r}: expected one number within (0, 100]")
    thresholds = Thresholds(
        max_throughput_drop_pct=parse_percent("--max-throughput-drop", args.max_throughput_drop),
        max_latency_rise_pct=parse_percent("--max-latency-rise", args.max_latency_rise),
        percentile=percentile[0],
        noise_aware=not args.strict,
        confidence=parse_confidence(args.confidence),
    )
    require_database(args.db)
    with RunStore(args.db) as store:
        try:
            comparison = load_comparison(store, args.base_run, args.new_run, thresholds, force=args.force)
        except CompareError as exc:
            raise ConfigError(str(exc)) from None
    for warning in comparison.warnings:
        _warn(warning)
    if args.junit is not None:
        try:
            write_junit(comparison, args.junit)
        except OSError as exc:
            raise ConfigError(f"cannot write {args.junit}: {exc.strerror or exc}") from None
        print(f"wrote {args.junit}", file=sys.stderr)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print_comparison(comparison, Console() if sys.stdout.isatty() else Console(width=250))
    return EXIT_REGRESSION if comparison.verdict is Verdict.REGRESSION else EXIT_OK
