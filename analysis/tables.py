"""The tables users compare against: NVIDIA's ResNeXt101 benchmark table and perf_analyzer's CSV."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from analysis.model_breakdown import composing_csv_frames
from loadgen.config.scenarios import SCENARIOS
from loadgen.storage import StepRecord
from loadgen.tallies import SequenceTally, StreamTally

LEVEL = SCENARIOS["concurrency"].column
RATE_LEVEL = SCENARIOS["request_rate"].column
THROUGHPUT = "Throughput (infer/s)"
AVG_LATENCY = "Avg latency (ms)"
DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
TableFormat = Literal["markdown", "csv", "html"]
TABLE_FORMATS: tuple[TableFormat, ...] = get_args(TableFormat)


def latency_table(steps: pd.DataFrame, *, scenario: str) -> pd.DataFrame:
    """Level | Throughput | Avg | p50 | p90 | p95 | p99 (ms), plus server queue and compute infer (ms).

    ``scenario`` is the run's (``run.scenario``): a request-rate run adds the open-loop columns."""
    ms = 1.0 / 1000.0
    table = pd.DataFrame(
        {
            LEVEL: steps["concurrency"],
            "Throughput (infer/s)": steps["throughput"],
            "Avg latency (ms)": steps["lat_avg_us"] * ms,
            "p50 latency (ms)": steps["lat_p50_us"] * ms,
            "p90 latency (ms)": steps["lat_p90_us"] * ms,
            "p95 latency (ms)": steps["lat_p95_us"] * ms,
            "p99 latency (ms)": steps["lat_p99_us"] * ms,
            "Server queue (ms)": steps["server_queue_us"] * ms,
            "Compute infer (ms)": steps["server_compute_infer_us"] * ms,
            "Errors": steps["error_count"],
            "Stable": steps["stable"],
        }
    )
    if scenario == "request_rate":
        table = pd.concat([table.drop(columns=[LEVEL]), open_loop_table(steps)], axis=1)
        table = table[[RATE_LEVEL, *[c for c in table.columns if c != RATE_LEVEL]]]
    if "response_count" in steps and steps["response_count"].notna().any():
        at = list(table.columns).index("Throughput (infer/s)") + 1
        stream = stream_table(steps)
        if (stream["Tokens/s"].fillna(0) == stream["Responses/s"].fillna(0)).all():
            stream = stream.drop(columns=["Tokens/s"])  # one token per response: the same column
        # a stream's server times cover only the call that starts it; p90/p95 make it too wide
        table = table.drop(
            columns=["p90 latency (ms)", "p95 latency (ms)", "Server queue (ms)", "Compute infer (ms)"]
        )
        table = pd.concat([table.iloc[:, :at], stream, table.iloc[:, at:]], axis=1)
    if "sequence_count" in steps and steps["sequence_count"].notna().any():
        at = list(table.columns).index("Throughput (infer/s)") + 1
        table = pd.concat([table.iloc[:, :at], sequence_table(steps), table.iloc[:, at:]], axis=1)
    if "cancelled_count" in steps and (steps["cancelled_count"].fillna(0) > 0).any():
        table["Cancelled"] = steps["cancelled_count"].astype("Int64")  # on purpose: not errors
    if "validated_count" in steps and steps["validated_count"].notna().any():
        table = pd.concat([table, validation_table(steps)], axis=1)
    if "unanswered_slots" in steps and (steps["unanswered_slots"].fillna(0) > 0).any():
        # only when it happened: the step held fewer requests in flight than its concurrency says
        table["Unanswered slots"] = steps["unanswered_slots"].astype("Int64")
    if "warmup_windows" in steps and (steps["warmup_windows"].fillna(0) > 0).any():
        # only when found (--detect-warmup): windows at the step's start left out of its numbers
        table["Warm-up windows"] = steps["warmup_windows"].astype("Int64")
    if "interrupted" in steps and steps["interrupted"].notna().any():
        # only when it happened: the server went away during the step (--retry-unavailable)
        table["Interrupted"] = steps["interrupted"].notna().map({True: "cut short", False: ""})
    return table


def stream_table(steps: pd.DataFrame) -> pd.DataFrame:
    """``--streaming`` columns: responses per second, time to the first response and between
    responses (the latency columns then hold the time to the final response)."""
    ms = 1.0 / 1000.0
    return pd.DataFrame(
        {
            "Responses/s": steps["response_count"].astype("float64") / steps["duration_s"],
            "Tokens/s": steps["token_count"].astype("float64") / steps["duration_s"],
            "First response p50 (ms)": steps["first_response_p50_us"].astype("float64") * ms,
            "First response p99 (ms)": steps["first_response_p99_us"].astype("float64") * ms,
            "Inter-response p50 (ms)": steps["inter_response_p50_us"].astype("float64") * ms,
            "Inter-response p99 (ms)": steps["inter_response_p99_us"].astype("float64") * ms,
            "Responses per request": steps["responses_per_request"].astype("float64"),
            "Request output p50 (responses/s)": steps["request_output_rate_p50"].astype("float64"),
        }
    )


def sequence_table(steps: pd.DataFrame) -> pd.DataFrame:
    """A sequence model's columns: sequences ended per second, and the p99 of the requests that
    start, continue and end a sequence (a start meets cold state)."""
    ended = steps["sequence_count"].astype("float64")
    columns = {
        "Sequences/s": ended / steps["duration_s"],
        "Requests per sequence": steps["request_count"] / ended.where(ended > 0),
    }
    for place in ("start", "middle", "end"):
        columns[f"{place.title()} p99 (ms)"] = steps[f"sequence_{place}_p99_us"].astype("float64") / 1000.0
    return pd.DataFrame(columns)


OPEN_LOOP_FIELDS = (
    "request_rate",
    "send_rate",
    "service_p99_us",
    "send_lag_p99_us",
    "refused_count",
    "behind_schedule",
)
"""The stored step fields :func:`open_loop_table` reads."""


def open_loop_table(steps: pd.DataFrame) -> pd.DataFrame:
    """Open-loop columns: the target rate, what the sender achieved and how late it was."""
    ms = 1.0 / 1000.0
    return pd.DataFrame(
        {
            RATE_LEVEL: steps["request_rate"].astype("float64"),
            "Sent (req/s)": steps["send_rate"].astype("float64"),
            "Service p99 (ms)": steps["service_p99_us"].astype("float64") * ms,
            "Send lag p99 (ms)": steps["send_lag_p99_us"].astype("float64") * ms,
            "Refused": steps["refused_count"].astype("Int64"),
            "On schedule": ~steps["behind_schedule"].astype("boolean"),
        }
    )


def validation_table(steps: pd.DataFrame) -> pd.DataFrame:
    """``--validate`` columns: answers checked, mismatched, swapped, worst relative difference."""
    return pd.DataFrame(
        {
            "Checked": steps["validated_count"].astype("Int64"),
            "Mismatches": steps["mismatch_count"].astype("Int64"),
            "Swapped": steps["swapped_count"].astype("Int64"),
            "Max rel diff": steps["max_rel_diff"].astype("float64"),
        }
    )


PERF_ANALYZER_COLUMNS = (
    "Concurrency",
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
)


OPEN_LOOP_CSV = {  # perf_analyzer's CSV has no such columns: ours, after its own, microseconds
    "Sent Rate": "send_rate",
    "Service p99": "service_p99_us",
    "Send Lag p50": "send_lag_p50_us",
    "Send Lag p99": "send_lag_p99_us",
    "Send Lag Max": "send_lag_max_us",
    "Refused": "refused_count",
    "On Schedule": "behind_schedule",
}


def perf_analyzer_frame(steps: pd.DataFrame, scenario: str = "concurrency") -> pd.DataFrame:
    """perf_analyzer's ``-f`` CSV columns first (microseconds, its order), then ours.

    An open-loop run's first column is the request rate, as perf_analyzer's ``--request-rate-range``
    CSV has it, and the sender's own columns follow ours (``OPEN_LOOP_CSV``).

    Client Send and Client Recv are 0: requests are serialized once before the run and
    responses are not deserialized. Network+Server Send/Recv is the mean latency minus the
    server's queue and compute times, clamped at 0, as perf_analyzer computes it.
    Rows stay in load order (perf_analyzer sorts by throughput).
    """
    server = (
        steps["server_queue_us"].fillna(0)
        + steps["server_compute_input_us"].fillna(0)
        + steps["server_compute_infer_us"].fillna(0)
        + steps["server_compute_output_us"].fillna(0)
    )
    network = np.maximum(steps["lat_avg_us"] - server, 0.0)
    frame = pd.DataFrame(
        {
            "Concurrency": steps["concurrency"],
            "Inferences/Second": steps["throughput"],
            "Client Send": 0,
            "Network+Server Send/Recv": network,
            "Server Queue": steps["server_queue_us"],
            "Server Compute Input": steps["server_compute_input_us"],
            "Server Compute Infer": steps["server_compute_infer_us"],
            "Server Compute Output": steps["server_compute_output_us"],
            "Client Recv": 0,
            "p50 latency": steps["lat_p50_us"],
            "p90 latency": steps["lat_p90_us"],
            "p95 latency": steps["lat_p95_us"],
            "p99 latency": steps["lat_p99_us"],
            "Avg latency": steps["lat_avg_us"],
            "Std latency": steps["lat_std_us"],
            "Min latency": steps["lat_min_us"],
            "Max latency": steps["lat_max_us"],
            "Request Count": steps["request_count"],
            "Errors": steps["error_count"],
            "Stable": steps["stable"],
            "Trials": steps["window_count"],
            "Duration (s)": steps["duration_s"],
        }
    )
    latency_columns = [
        c for c in frame.columns if c.endswith("latency") or c.startswith(("Server", "Network"))
    ]
    frame[latency_columns] = frame[latency_columns].round().astype("Int64")
    if scenario == "request_rate":
        frame = frame.rename(columns={"Concurrency": "Request Rate"})
        frame["Request Rate"] = steps["request_rate"].astype("float64")
        for column, field in OPEN_LOOP_CSV.items():
            frame[column] = steps[field]
        frame["On Schedule"] = ~frame["On Schedule"].astype("boolean")
        frame["Refused"] = frame["Refused"].astype("Int64")
    if "response_count" in steps and steps["response_count"].notna().any():  # after ours, in us
        stream = {
            "Responses": steps["response_count"].astype("Int64"),
            "Responses/Second": steps["response_count"].astype("float64") / steps["duration_s"],
            "First response p50": steps["first_response_p50_us"],
            "First response p99": steps["first_response_p99_us"],
            "Inter-response p50": steps["inter_response_p50_us"],
            "Inter-response p99": steps["inter_response_p99_us"],
            "Responses per request": steps["responses_per_request"],
            "Cancelled": steps["cancelled_count"].astype("Int64"),
        }
        frame = pd.concat([frame, pd.DataFrame(stream, index=frame.index)], axis=1)
    return frame


def write_perf_analyzer_csv(
    steps: pd.DataFrame,
    path: Path | str,
    composing: pd.DataFrame | None = None,
    *,
    scenario: str = "concurrency",
    versions: Mapping[str, str] | None = None,
) -> list[Path]:
    """perf_analyzer's CSV at ``path``; with ``composing`` (an ensemble's or BLS model's composing
    models) also one file per composing model beside it, as perf_analyzer names them:
    ``<model>_v<version>.<name>`` (``versions``: as the ensemble's steps ask, "-1" for the latest;
    "" for a model named on the command line). Returns the files written."""
    path = Path(path)
    perf_analyzer_frame(steps, scenario).to_csv(path, index=False)
    written = [path]
    if composing is not None and not composing.empty:
        for model, frame in composing_csv_frames(composing, steps, scenario).items():
            extra = path.with_name(f"{model}_v{(versions or {}).get(model, '')}.{path.name}")
            frame.to_csv(extra, index=False)
            written.append(extra)
    return written


def percentile_column(percentile: float) -> str:
    return f"p{percentile:g} latency (ms)"


def benchmark_table(
    steps: Sequence[StepRecord], percentiles: Sequence[float] = DEFAULT_PERCENTILES, *, scenario: str
) -> pd.DataFrame:
    """Level | Throughput (infer/s) | Avg | p.. latency (ms), the ResNeXt101 table of one run
    (by default p50, p90, p95, p99: the median first, then the tail).

    Latencies are read from each step's stored histogram, so any percentile can be asked
    for, not only the four stored as columns. The level is the concurrency, or the request
    rate for a request-rate run (``scenario``: the run's). A step without a successful request has
    NaN latencies. When any step had failed requests, an ``Errors`` column counts them: a table
    copied into a document must not pass a failing step off as a fast one.
    """
    for p in percentiles:
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {p:g}")
    rate = scenario == "request_rate"
    rows = []
    for step in steps:
        hist = step.histogram()
        level = step.request_rate if rate and step.request_rate is not None else step.concurrency
        row: dict[str, float] = {
            RATE_LEVEL if rate else LEVEL: level,
            THROUGHPUT: step.throughput,
            AVG_LATENCY: hist.mean_us / 1000.0,
        }
        row.update({percentile_column(p): hist.percentile_us(p) / 1000.0 for p in percentiles})
        rows.append(row)
    columns = [RATE_LEVEL if rate else LEVEL, THROUGHPUT, AVG_LATENCY] + [
        percentile_column(p) for p in percentiles
    ]
    table = pd.DataFrame(rows, columns=columns)
    streams = [step.stream() for step in steps]
    if any(stream is not None for stream in streams):  # the latency columns: to the final response
        table = pd.concat([table, _stream_columns(steps, streams, percentiles)], axis=1)
    sequences = [step.sequences() for step in steps]
    if any(tally is not None for tally in sequences):
        table = pd.concat([table, _sequence_columns(steps, sequences, percentiles)], axis=1)
    if rate:  # what the sender achieved, as the sweep's own table shows it
        sender = pd.DataFrame({field: [getattr(step, field) for step in steps] for field in OPEN_LOOP_FIELDS})
        table = pd.concat([table, open_loop_table(sender).drop(columns=[RATE_LEVEL])], axis=1)
    if any(step.cancelled_count for step in steps):
        table["Cancelled"] = [step.cancelled_count or 0 for step in steps]
    if any(step.error_count for step in steps):
        table["Errors"] = [step.error_count for step in steps]
    if any(step.warmup_windows for step in steps):  # --detect-warmup found some
        table["Warm-up windows"] = [step.warmup_windows or 0 for step in steps]
    return table


def _stream_columns(
    steps: Sequence[StepRecord], streams: Sequence[StreamTally | None], percentiles: Sequence[float]
) -> pd.DataFrame:
    """``--streaming`` steps: responses/s, then the first response's and the gaps' percentiles."""
    nan = float("nan")
    columns: dict[str, list[float]] = {
        "Responses/s": [
            s.responses / step.duration_s if s is not None and step.duration_s > 0 else nan
            for step, s in zip(steps, streams, strict=True)
        ]
    }
    if any(s is not None and s.tokens != s.responses for s in streams):  # --token-output
        columns["Tokens/s"] = [
            s.tokens / step.duration_s if s is not None and step.duration_s > 0 else nan
            for step, s in zip(steps, streams, strict=True)
        ]
    for name, part in (("First response", "first"), ("Inter-response", "gaps")):
        for p in percentiles:
            columns[f"{name} p{p:g} (ms)"] = [
                getattr(s, part).percentile_us(p) / 1000.0 if s is not None else nan for s in streams
            ]
    columns["Responses per request"] = [
        s.responses / s.counts.count if s is not None and s.counts.count else nan for s in streams
    ]
    for p in percentiles:  # a request's own rate: its slowest are the highest spacings
        columns[f"Request output p{100 - p:g} (responses/s)"] = [
            1e6 / s.spacing.percentile_us(p) if s is not None and s.spacing.count else nan for s in streams
        ]
    return pd.DataFrame(columns)


def _sequence_columns(
    steps: Sequence[StepRecord], tallies: Sequence[SequenceTally | None], percentiles: Sequence[float]
) -> pd.DataFrame:
    """A sequence model's steps: sequences ended per second, then each place's percentiles."""
    nan = float("nan")
    columns: dict[str, list[float]] = {
        "Sequences/s": [
            t.ended / step.duration_s if t is not None and step.duration_s > 0 else nan
            for step, t in zip(steps, tallies, strict=True)
        ]
    }
    columns["Requests per sequence"] = [
        (t.start.count + t.middle.count + t.end.count) / t.ended if t is not None and t.ended else nan
        for t in tallies
    ]
    for place in ("start", "middle", "end"):
        for p in percentiles:
            columns[f"{place.title()} p{p:g} (ms)"] = [
                getattr(t, place).percentile_us(p) / 1000.0 if t is not None else nan for t in tallies
            ]
    return pd.DataFrame(columns)


def _cell_formatters(frame: pd.DataFrame) -> dict[str, Callable[[object], str]]:
    def fixed(digits: int) -> Callable[[object], str]:
        def fmt(value: object) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "-"
            return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)

        return fmt

    def digits(column: str) -> int:
        if column.endswith((THROUGHPUT, RATE_LEVEL, "(req/s)")):  # also "run 3: Throughput (infer/s)"
            return 1
        return 2 if column.endswith(("(ms)", "(x)")) else 0

    return {str(c): fixed(digits(str(c))) for c in frame.columns}


def _markdown(frame: pd.DataFrame) -> str:
    formatters = _cell_formatters(frame)
    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "|" + "|".join("---:" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(formatters[c](v) for c, v in zip(frame.columns, row, strict=True)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def format_table(frame: pd.DataFrame, fmt: TableFormat = "markdown") -> str:
    """A table as Markdown (GitHub pipes), CSV (full precision) or an HTML ``<table>``.

    Markdown and HTML round for reading (throughput 0.1, latency 0.01 ms); CSV keeps every digit.
    """
    if fmt == "csv":
        text: str = frame.to_csv(index=False, lineterminator="\n")
        return text
    if fmt == "html":
        html: str = frame.to_html(
            index=False, na_rep="-", formatters=_cell_formatters(frame), border=0, classes="loadgen-table"
        )
        return html + "\n"
    if fmt == "markdown":
        return _markdown(frame)
    raise ValueError(f"unknown table format {fmt!r}: expected one of {', '.join(TABLE_FORMATS)}")
