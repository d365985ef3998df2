"""The options that say how each step is measured: its windows and warm-up, perf_analyzer's
window rule or ``--stop-when`` (intervals narrow enough), and their confidence. Part of
:data:`loadgen.config.options.OPTIONS`."""

from __future__ import annotations

from loadgen.config import values
from loadgen.config.option import MEASURE, Option

MEASURE_OPTIONS: tuple[Option, ...] = (
    Option(
        "repeats",
        ("--repeats",),
        "run the whole sweep N times, each run stored and tied by a group: `loadgen table group:ID` shows "
        "each level's mean across the runs with its interval, compare and report take group:ID "
        "(default 1)",
        values.whole,
        metavar="N",
        group=MEASURE,
    ),
    Option(
        "measurement_interval_ms",
        ("-p", "--measurement-interval"),
        "measurement window: 5s, 500ms, 1.5m (default 5s; a plain number is ms, as perf_analyzer)",
        values.duration_ms,
        metavar="TIME",
        group=MEASURE,
    ),
    Option(
        "warmup_ms",
        ("--warmup",),
        "warm-up per step (default 1s; a plain number is ms)",
        values.duration_ms,
        metavar="TIME",
        group=MEASURE,
    ),
    Option(
        "stability_percentage",
        ("-s", "--stability-percentage"),
        "max deviation of the last 3 windows from their mean, %% (default 10)",
        values.number,
        metavar="PCT",
        group=MEASURE,
    ),
    Option(
        "max_windows",
        ("-r", "--max-windows", "--max-trials"),
        "measurement windows per step at most, stable or not (perf_analyzer's max trials; default 10)",
        values.whole,
        metavar="N",
        group=MEASURE,
    ),
    Option(
        "stop_when",
        ("--stop-when",),
        "end a step when its intervals are this narrow instead of by the window rule: p99:2%% (p99's "
        "interval within +-2%%), throughput:1%%, mlperf:p99[:5%%] (MLPerf's early-stopping estimate); "
        "several, comma-separated, must all hold (default: the window rule)",
        values.stop_rules,
        metavar="RULE",
        group=MEASURE,
    ),
    Option(
        "min_step_requests",
        ("--min-step-requests",),
        "with --stop-when: answered requests a step needs at least (default 1000)",
        values.whole,
        metavar="N",
        group=MEASURE,
    ),
    Option(
        "min_step_ms",
        ("--min-step-time",),
        "with --stop-when: the least a step measures (default 0: one window)",
        values.duration_ms,
        metavar="TIME",
        group=MEASURE,
    ),
    Option(
        "confidence",
        ("--confidence",),
        "confidence level of the intervals each step stores and --stop-when reads (default 95%%)",
        values.fraction,
        metavar="PCT",
        group=MEASURE,
    ),
    Option(
        "detect_warmup",
        ("--detect-warmup",),
        "after --warmup, count the first windows whose latencies still trend (Kendall's test on "
        "their batches) as warm-up too (default off)",
        values.boolean,
        switch=True,
        group=MEASURE,
    ),
)
