"""The report's figures of streamed runs (``--streaming``): time to first response and the gaps
between responses against load, and time to first response against output throughput (the
TTFT vs tokens/s curve of an LLM server).

A streamed step's ``histogram`` and ``lat_*`` hold the time to its final response; these
figures read its first-response and inter-response histograms (``RunData.streams``), or, for
data read without them, the p50 and p99 the steps frame stores.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go

from analysis.frames import RunData, load_level
from analysis.percentile_style import PERCENTILE_COLORS, percentile_trace
from analysis.plots import (
    RUN_COLORS,
    log_ticks,
    new_figure,
    run_label,
)
from loadgen.tallies import StreamTally

FIRST_PERCENTILES = ("p50", "p90", "p99")
GAP_PERCENTILES = ("p50", "p99")
POINT_COLUMNS = (
    "step_index",
    "level",
    "load",
    "responses_per_s",
    *(f"first_{p}" for p in FIRST_PERCENTILES),
    *(f"gap_{p}" for p in GAP_PERCENTILES),
)


def streamed(data: RunData) -> bool:
    """The run measured streams: its settings say ``streaming``, or its steps counted responses."""
    steps = data.steps
    return bool(data.run.settings.get("streaming")) or (
        "response_count" in steps and bool(steps["response_count"].notna().any())
    )


def stream_tallies(data: RunData) -> Mapping[int, StreamTally]:
    """Each streamed step's decoded measures by step index (``RunData.streams``); empty where the
    data was read without them (the figures then draw the stored p50 and p99 only)."""
    return data.streams


def _stored_ms(row: Mapping[Hashable, Any], column: str) -> float:
    value = row.get(column)
    return math.nan if value is None or pd.isna(value) else float(value) / 1000.0


def stream_points(data: RunData) -> pd.DataFrame:
    """One row per streamed step, by load: its level (label and value), responses/s, and its first
    response's p50/p90/p99 and gaps' p50/p99 in ms (``first_p50``, ``gap_p99``...)."""
    tallies = stream_tallies(data)
    rows = []
    for row in data.steps.to_dict("records"):
        count = row.get("response_count")
        if count is None or pd.isna(count):
            continue
        label, load = load_level(row)
        duration = float(row["duration_s"])
        point: dict[str, Any] = {
            "step_index": int(row["step_index"]),
            "level": label,
            "load": load,
            "responses_per_s": float(count) / duration if duration > 0 else math.nan,
        }
        tally = tallies.get(int(row["step_index"]))
        for prefix, stored, pcts in (
            ("first", "first_response", FIRST_PERCENTILES),
            ("gap", "inter_response", GAP_PERCENTILES),
        ):
            for pct in pcts:
                if tally is not None:
                    hist = tally.first if prefix == "first" else tally.gaps
                    point[f"{prefix}_{pct}"] = hist.percentile_us(float(pct[1:])) / 1000.0
                else:  # read without the histograms: the stored p50 and p99 (no p90)
                    point[f"{prefix}_{pct}"] = _stored_ms(row, f"{stored}_{pct}_us")
        rows.append(point)
    points = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    return points.sort_values(["load", "step_index"], kind="stable").reset_index(drop=True)


def _array(values: pd.Series) -> npt.NDArray[np.float64]:
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _percentile_lines(
    fig: go.Figure,
    runs: Sequence[RunData],
    *,
    x: str,
    prefix: str,
    percentiles: Sequence[str],
    what: str,
    x_hover: str,
    labelled: str | None = None,
) -> list[npt.NDArray[np.float64]]:
    """A line per run and percentile, styled as :func:`analysis.plots.throughput_latency_figure`
    (one run: a colour and a dash per percentile; several: a colour per run, a dash per percentile);
    ``labelled``: the percentile whose points are labelled with their load. Returns the x values."""
    single = len(runs) == 1
    xs = []
    for n, data in enumerate(runs):
        points = stream_points(data)
        name = run_label(data)
        xs.append(_array(points[x]))
        for pct in percentiles:
            y = _array(points[f"{prefix}_{pct}"])
            if np.isnan(y).all():  # read without the histograms: no p90
                continue
            color = PERCENTILE_COLORS[pct] if single else RUN_COLORS[n % len(RUN_COLORS)]
            fig.add_trace(
                percentile_trace(
                    x=xs[-1],
                    y=y,
                    pct=pct,
                    color=color,
                    levels=points["level"].tolist(),
                    labelled=pct == labelled,
                    name=name,
                    run=data.run.id,
                    what=what,
                    hover=x_hover,
                )
            )
    fig.update_layout(legend={"groupclick": "toggleitem"})
    return xs


def _load_axis(fig: go.Figure, runs: Sequence[RunData], xs: Sequence[npt.NDArray[np.float64]]) -> None:
    """The load on a log axis (levels usually double) with plain 1-2-5 ticks."""
    scenarios = {data.run.scenario for data in runs}
    title = (
        "request rate (req/s, log)"
        if scenarios == {"request_rate"}
        else "concurrent requests (log)"
        if scenarios == {"concurrency"}
        else "load level (log)"
    )
    fig.update_xaxes(type="log", title_text=title, exponentformat="none")
    values = np.concatenate(xs) if xs else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        ticks, labels = log_ticks(float(values.min()), float(values.max()))
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=labels)


def first_response_figure(runs: Sequence[RunData]) -> go.Figure:
    """Time to first response (p50, p90, p99) against load: where requests start to queue
    before the server answers them at all."""
    fig = new_figure("Time to first response vs load")
    xs = _percentile_lines(
        fig,
        runs,
        x="load",
        prefix="first",
        percentiles=FIRST_PERCENTILES,
        what="first response",
        x_hover="load %{x:g}",
    )
    _load_axis(fig, runs, xs)
    fig.update_yaxes(title_text="time to first response (ms)", rangemode="tozero")
    return fig


def inter_response_figure(runs: Sequence[RunData]) -> go.Figure:
    """The gap between two responses of a request (p50, p99) against load: how the server's
    pace per stream holds as more streams share it."""
    fig = new_figure("Inter-response gap vs load")
    xs = _percentile_lines(
        fig,
        runs,
        x="load",
        prefix="gap",
        percentiles=GAP_PERCENTILES,
        what="gap",
        x_hover="load %{x:g}",
    )
    _load_axis(fig, runs, xs)
    fig.update_yaxes(title_text="gap between responses (ms)", rangemode="tozero")
    return fig


def first_response_throughput_figure(runs: Sequence[RunData]) -> go.Figure:
    """Time to first response (p50, p99) against responses per second, points labelled by load
    (on p99): what a faster stream output costs in waiting for the first response."""
    fig = new_figure("Time to first response vs output throughput")
    _percentile_lines(
        fig,
        runs,
        x="responses_per_s",
        prefix="first",
        percentiles=("p50", "p99"),
        what="first response",
        x_hover="%{x:.1f} responses/s",
        labelled="p99",
    )
    fig.update_xaxes(title_text="output throughput (responses/s)", rangemode="tozero")
    fig.update_yaxes(title_text="time to first response (ms)", rangemode="tozero")
    return fig


STREAM_FIGURES = (
    ("first-response", "Time to first response vs load", first_response_figure),
    ("inter-response", "Inter-response gap vs load", inter_response_figure),
    (
        "first-response-throughput",
        "Time to first response vs output throughput",
        first_response_throughput_figure,
    ),
)
"""(file-name key, title, figure) of each streamed-run figure, in the report's order."""
