"""``loadgen compare``: two stored runs (or ``--repeats`` groups) step by step, and the verdict."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from loadgen.commands import arguments
from loadgen.commands.shared import add_db_option, require_database
from loadgen.commands.tables import parse_confidence, parse_percent, parse_percentiles, warn
from loadgen.config.scenarios import words
from loadgen.errors import EXIT_OK, EXIT_REGRESSION, ConfigError
from loadgen.storage import RunStore

if TYPE_CHECKING:
    from analysis.compare import Comparison
    from analysis.significance import ChangeInterval


def register(sub: Any) -> None:
    """Add the ``compare`` sub-command to the CLI's sub-parsers."""
    compare = sub.add_parser(
        "compare",
        help="compare two stored runs (or groups of runs) step by step; exit 1 on a significant regression",
        description="Matches steps by concurrency (or request rate). A step regresses when its throughput "
        "dropped or its latency percentile rose by more than the thresholds, and the change is "
        "significant: its confidence interval, formed from both runs' stored intervals (or, for groups "
        "of --repeats runs, Welch's t across their runs), leaves out 0, at --confidence over all the "
        "checks made. A change beyond a threshold that is not significant is 'no significant change': "
        "no regression (exit 0) and no improvement. Steps stored without intervals fall back to the "
        "runs' own noise (how far their windows strayed from their mean): a change within it is "
        "'within noise'. The verdict says how it was decided. Settings that differ between the runs and "
        "change what is measured (protocol, batch size, input data, measurement windows, workers, "
        "model version, the server's model config...) are warned about before the table. "
        "Exit 0 pass or improvement, 1 regression, 2 usage error or runs that cannot be compared.",
    )
    compare.add_argument(
        "base_run", type=arguments.run_ref, metavar="BASE", help="the reference run, or group:ID (--repeats)"
    )
    compare.add_argument(
        "new_run", type=arguments.run_ref, metavar="NEW", help="the run under test, or group:ID (--repeats)"
    )
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
        help="judge by the thresholds alone: a change that is not significant (or within the runs' noise) "
        "regresses (or improves) too",
    )
    add_db_option(compare)
    compare.set_defaults(handler=cmd_compare)


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
        f"{c.new.title} ({c.new.model}, {c.new.status}) vs base {c.base.title} "
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
    """Compare two runs or groups; exit 1 when the new one regressed significantly (unless ``--strict``:
    beyond a threshold at all).

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
            if args.base_run.startswith("group:") or args.new_run.startswith("group:"):
                from analysis.groups import compare_groups, load_group

                base, new = load_group(store, args.base_run), load_group(store, args.new_run)
                comparison = compare_groups(store, base, new, thresholds, force=args.force)
            else:
                base_id, new_id = int(args.base_run), int(args.new_run)
                comparison = load_comparison(store, base_id, new_id, thresholds, force=args.force)
        except CompareError as exc:
            raise ConfigError(str(exc)) from None
    for warning in comparison.warnings:
        warn(warning)
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
