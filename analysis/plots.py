"""The report's figures, one function per figure, each returning a Plotly ``go.Figure``.

Figures follow NVIDIA's ResNeXt101 benchmark ("Latency vs Throughput", "Performance
analysis") and add what only loadgen stores: executed batch sizes, the server's
metrics over time and each step's full latency distribution. Numbers go in as numpy
arrays so that Plotly writes them as compact binary, not as JSON lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from analysis.frames import COMPONENTS, RunData, latency_components, load_level
from analysis.percentile_style import PERCENTILE_COLORS, PERCENTILES, percentile_trace
from analysis.step_intervals import error_bars
from loadgen.histogram import LatencyHistogram

RUN_COLORS = qualitative.Plotly
COMPONENT_STYLE = {  # label, colour: client first, as stacked from the bottom
    "client": ("client-side (outside the server)", "#9aa5b1"),
    "queue": ("server queue", "#ef553b"),
    "compute_input": ("compute input", "#ffa15a"),
    "compute_infer": ("compute infer", "#636efa"),
    "compute_output": ("compute output", "#00cc96"),
}
MAX_CURVE_POINTS = 160
"""Latency-distribution points per step: enough for a smooth curve, small in the HTML."""

# A small template instead of Plotly's default one, which each figure would carry (~7 kB).
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": RUN_COLORS,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "hovermode": "closest",
        "xaxis": {"gridcolor": "#e5e5e5", "linecolor": "#888", "zeroline": False, "automargin": True},
        "yaxis": {"gridcolor": "#e5e5e5", "linecolor": "#888", "zeroline": False, "automargin": True},
        "legend": {"bgcolor": "rgba(255,255,255,0.6)"},
    }
)


def new_figure(title: str, height: int = 420) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, title={"text": title, "x": 0.01}, height=height)
    return fig


def _ms(values: pd.Series) -> npt.NDArray[np.float64]:
    return values.to_numpy(dtype=np.float64, na_value=np.nan) / 1000.0


def _levels(steps: pd.DataFrame) -> list[str]:
    return [load_level(row)[0] for row in steps.to_dict("records")]


def _load_values(steps: pd.DataFrame) -> list[float]:
    return [load_level(row)[1] for row in steps.to_dict("records")]


def run_label(data: RunData) -> str:
    """How a run is named in legends: id, model, and its labels if any."""
    run = data.run
    labels = " ".join(f"{k}={v}" for k, v in sorted(run.labels.items()))
    return f"run {run.id} {run.model}" + (f" [{labels}]" if labels else "")


def throughput_latency_figure(runs: Sequence[RunData]) -> go.Figure:
    """Latency (p50, p90, p99) against throughput, points labelled by load level (on p99).

    One run: a colour and a dash per percentile. Several runs: a colour per run, a dash (and
    marker) per percentile; the legend groups each run's percentiles under its name.
    """
    fig = new_figure("Latency vs throughput")
    single = len(runs) == 1
    for n, data in enumerate(runs):
        values = _load_values(data.steps)
        steps = data.steps.iloc[sorted(range(len(values)), key=values.__getitem__)]
        run_color = RUN_COLORS[n % len(RUN_COLORS)]
        name = run_label(data)
        for pct in PERCENTILES:
            color = PERCENTILE_COLORS[pct] if single else run_color
            labelled = pct == "p99"
            fig.add_trace(
                percentile_trace(
                    x=steps["throughput"].to_numpy(dtype=np.float64),
                    y=_ms(steps[f"lat_{pct}_us"]),
                    pct=pct,
                    color=color,
                    levels=_levels(steps),
                    labelled=labelled,
                    name=name,
                    run=data.run.id,
                    what="latency",
                    hover="%{x:.1f} infer/s",
                    **error_bars(data, steps, float(pct[1:]), labelled),
                )
            )
    fig.update_layout(legend={"groupclick": "toggleitem"})
    fig.update_xaxes(title_text="throughput (infer/s)", rangemode="tozero")
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero")
    return fig


def latency_breakdown_figure(data: RunData) -> go.Figure:
    """Mean latency per step stacked by where the time goes (client side, queue, compute)."""
    fig = new_figure(f"Latency breakdown: {run_label(data)}")
    parts = latency_components(data.steps)
    levels = _levels(data.steps)
    for component in COMPONENTS:
        label, color = COMPONENT_STYLE[component]
        fig.add_trace(
            go.Bar(
                x=levels,
                y=parts[component].to_numpy(dtype=np.float64) / 1000.0,
                name=label,
                marker_color=color,
                hovertemplate=f"%{{x}}<br>{label} %{{y:.3f}} ms<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", legend={"traceorder": "reversed"})
    fig.update_xaxes(title_text="load level", type="category")
    fig.update_yaxes(title_text="mean latency (ms)")
    return fig


BATCHING_GAP = 0.12
"""Gap between the batching panels (share of the width): it holds the heatmap's colorbar."""
COLORBAR_OFFSET = 0.01


def batching_figure(data: RunData) -> go.Figure:
    """Dynamic batching at work: executed batch sizes per step, and inferences per execution."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=BATCHING_GAP,
        subplot_titles=("share of executions by batch size", "inferences per execution"),
    )
    fig.update_layout(
        template=TEMPLATE, title={"text": f"Batching: {run_label(data)}", "x": 0.01}, height=420
    )
    steps, batches = data.steps, data.batches
    levels = _levels(steps)
    if not batches.empty:
        largest = int(batches["batch_size"].max())
        share = np.full((largest, len(steps)), np.nan)
        counts = np.zeros((largest, len(steps)), dtype=np.int64)
        position = {int(s): i for i, s in enumerate(steps["step_index"])}
        for row in batches.to_dict("records"):
            counts[int(row["batch_size"]) - 1, position[int(row["step_index"])]] = int(row["execution_count"])
        totals = counts.sum(axis=0)
        share[:, totals > 0] = 100.0 * counts[:, totals > 0] / totals[totals > 0]
        share[counts == 0] = np.nan
        fig.add_trace(
            go.Heatmap(
                x=levels,
                y=np.arange(1, largest + 1),
                z=share,
                customdata=counts,
                colorscale="Blues",
                zmin=0,
                zmax=100,
                # in the gap right of the heatmap; the bars' y axis is on their right (below)
                colorbar={
                    "title": {"text": "%", "side": "top"},
                    "x": fig.layout.xaxis.domain[1] + COLORBAR_OFFSET,
                    "xanchor": "left",
                    "thickness": 14,
                    "len": 0.9,
                },
                hovertemplate="%{x}, batch %{y}: %{z:.1f}% of executions (%{customdata})<extra></extra>",
            ),
            row=1,
            col=1,
        )
    executions = steps["server_execution_count"].to_numpy(dtype=np.float64, na_value=np.nan)
    inferences = steps["server_inference_count"].to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_execution = np.where(executions > 0, inferences / executions, np.nan)
    fig.add_trace(
        go.Bar(
            x=levels,
            y=per_execution,
            marker_color=RUN_COLORS[0],
            showlegend=False,
            hovertemplate="%{x}: %{y:.2f} inferences per execution<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="load level", type="category")
    fig.update_yaxes(title_text="batch size", row=1, col=1)
    # on the right side: its title and ticks must not meet the heatmap's colorbar in the gap
    fig.update_yaxes(title_text="average batch size", rangemode="tozero", side="right", row=1, col=2)
    return fig


# (panel title, metric name, scale, per-GPU lines)
METRIC_PANELS = (
    ("GPU utilization (%)", "nv_gpu_utilization", 100.0, True),
    ("GPU memory used (GiB)", "nv_gpu_memory_used_bytes", 1 / 2**30, True),
    ("GPU power (W)", "nv_gpu_power_usage", 1.0, True),
    ("CPU utilization (%)", "nv_cpu_utilization", 100.0, False),
    ("CPU memory used (GiB)", "nv_cpu_memory_used_bytes", 1 / 2**30, False),
    ("pending requests", "nv_inference_pending_request_count", 1.0, False),
)


def _panel_series(data: RunData, metric: str, per_gpu: bool) -> dict[str, pd.Series]:
    """name -> value by timestamp. Pending requests: the run's model only, summed over versions."""
    frame = data.metrics[data.metrics["name"] == metric]
    if metric == "nv_inference_pending_request_count" and "label_model" in frame:
        frame = frame[frame["label_model"] == data.run.model]
    if frame.empty:
        return {}
    if per_gpu and "label_gpu_uuid" in frame:
        return {
            f"GPU {str(uuid)[:12]}": group.groupby("timestamp")["value"].sum()
            for uuid, group in frame.groupby("label_gpu_uuid", dropna=False)
        }
    return {metric: frame.groupby("timestamp")["value"].sum()}


def step_spans(data: RunData) -> list[tuple[float, float, str]]:
    """(start, end, load label) of each step, Unix seconds: warm-up plus every window measured."""
    measurement = data.run.settings.get("measurement", {})
    warmup_s = float(measurement.get("warmup_ms", 0)) / 1000.0
    interval_s = float(measurement.get("measurement_interval_ms", 0)) / 1000.0
    spans = []
    for row in data.steps.to_dict("records"):
        start = pd.Timestamp(row["started_at"]).timestamp()
        length = warmup_s + int(row["window_count"]) * interval_s if interval_s else float(row["duration_s"])
        spans.append((start, start + length, load_level(row)[0]))
    return spans


def _extra_panels(data: RunData) -> list[tuple[str, dict[str, pd.Series], float]]:
    """A panel per family kept by ``--metrics-family`` (not ``nv_*``), a line per label set; a
    counter (``*_total``, as Prometheus names them) as its rate per second, a gauge as it is."""
    frame = data.metrics[~data.metrics["name"].str.startswith("nv_")]
    panels = []
    for name, family in frame.groupby("name", sort=True):
        series = {}
        for labels, group in family.groupby("labels", sort=True):
            values = group.groupby("timestamp")["value"].sum()
            if str(name).endswith("_total"):
                values = (values.diff() / values.index.to_series().diff()).dropna()
            series[str(labels) or str(name)] = values
        title = f"{name} (per s)" if str(name).endswith("_total") else str(name)
        panels.append((title, series, 1.0))
    return panels


def _panels(data: RunData) -> list[tuple[str, dict[str, pd.Series], float]]:
    known = [
        (title, series, scale)
        for title, metric, scale, per_gpu in METRIC_PANELS
        if (series := _panel_series(data, metric, per_gpu))
    ]
    return known + _extra_panels(data)


def has_server_metrics(data: RunData) -> bool:
    return bool(_panels(data))


def server_metrics_figure(data: RunData) -> go.Figure:
    """The server's own metrics over the run (the panels it exposes, and the families kept by
    ``--metrics-family``), steps shaded and labelled."""
    panels = _panels(data)
    rows = max(len(panels), 1)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06 if rows > 1 else 0.0,
        subplot_titles=[title for title, _, _ in panels] or ["no metric samples"],
    )
    fig.update_layout(
        template=TEMPLATE,
        title={"text": f"Server metrics: {run_label(data)}", "x": 0.01},
        height=110 + 170 * rows,
        showlegend=False,
    )
    spans = step_spans(data)
    starts = [start for start, _, _ in spans] + data.metrics["timestamp"].tolist()
    t0 = min(starts, default=0.0)
    for row, (title, series, scale) in enumerate(panels, start=1):
        for n, (name, values) in enumerate(series.items()):
            fig.add_trace(
                go.Scatter(
                    x=values.index.to_numpy(dtype=np.float64) - t0,
                    y=values.to_numpy(dtype=np.float64) * scale,
                    mode="lines+markers",
                    marker={"size": 4},
                    line={"color": RUN_COLORS[n % len(RUN_COLORS)], "width": 1.5},
                    name=name,
                    hovertemplate=f"{title}<br>t=%{{x:.1f}} s: %{{y:.3g}}<extra>{name}</extra>",
                ),
                row=row,
                col=1,
            )
    # Built as plain dicts and set once: add_vrect/add_annotation copy every shape on each call.
    axes = [("x", "y")] + [(f"x{row}", f"y{row}") for row in range(2, rows + 1)]
    shapes = [
        {
            "type": "rect",
            "xref": xref,
            "yref": f"{yref} domain",
            "x0": start - t0,
            "x1": end - t0,
            "y0": 0,
            "y1": 1,
            "fillcolor": "#636efa" if n % 2 == 0 else "#00cc96",
            "opacity": 0.08,
            "line": {"width": 0},
            "layer": "below",
        }
        for n, (start, end, _) in enumerate(spans)
        for xref, yref in axes
    ]
    labels = [
        {
            "x": (start + end) / 2 - t0,
            "y": 1.0,
            "xref": "x",
            "yref": "y domain",
            "yanchor": "top",
            "text": level,
            "showarrow": False,
            "font": {"size": 10, "color": "#555"},
        }
        for start, end, level in spans
    ]
    fig.update_layout(shapes=shapes, annotations=[*fig.layout.annotations, *labels])
    fig.update_xaxes(title_text="time since the first step (s)", row=rows, col=1)
    return fig


def percentile_curve(
    hist: LatencyHistogram, max_points: int = MAX_CURVE_POINTS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(percentile in %, latency in ms) read from the histogram's buckets, thinned to ``max_points``.

    Each bucket contributes its highest value at the share of samples up to it, so the curve
    reads like HdrHistogram's percentile distribution. The last bucket sits at 1 - 1/n.
    """
    buckets = np.array(list(hist.iter_buckets()), dtype=np.float64).reshape(-1, 3)
    if buckets.size == 0:
        return np.empty(0), np.empty(0)
    total = buckets[:, 2].sum()
    quantile = np.minimum(np.cumsum(buckets[:, 2]) / total, 1.0 - 1.0 / max(total, 2.0))
    value = np.clip(buckets[:, 1], hist.min_us, hist.max_us) / 1000.0
    if len(quantile) > max_points:  # keep points evenly spread on the log(1 / (1 - q)) axis
        position = -np.log10(1.0 - quantile)
        targets = np.linspace(position[0], position[-1], max_points)
        keep = np.unique(np.append(np.searchsorted(position, targets), len(position) - 1))
        quantile, value = quantile[keep], value[keep]
    return 100.0 * quantile, value


def latency_distribution_figure(data: RunData) -> go.Figure:
    """Each step's latency by percentile on a log(1 / (1 - q)) axis: the tail is visible."""
    fig = new_figure(f"Latency distribution: {run_label(data)}", height=460)
    steps = data.steps
    colors = sample_colorscale("Viridis", list(np.linspace(0.0, 0.9, max(len(steps), 2))))
    drawn: list[npt.NDArray[np.float64]] = []
    for n, row in enumerate(steps.to_dict("records")):
        hist = data.histograms.get(int(row["step_index"]))
        level = load_level(row)[0]
        if hist is None or hist.count == 0:
            continue
        percent, value = percentile_curve(hist)
        drawn.append(value[value > 0])
        fig.add_trace(
            go.Scatter(
                x=1.0 / (1.0 - percent / 100.0),
                y=value,
                customdata=percent,
                mode="lines",
                line={"color": colors[n], "width": 2},
                name=level,
                hovertemplate=f"{level}<br>p%{{customdata:.3f}}: %{{y:.3f}} ms<extra></extra>",
            )
        )
    ticks = [1, 2, 10, 100, 1_000, 10_000, 100_000]
    fig.update_xaxes(
        type="log",
        title_text="percentile",
        tickvals=ticks,
        ticktext=["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"],
    )
    fig.update_yaxes(title_text="latency (ms, log)", type="log", exponentformat="none")
    positive = np.concatenate(drawn) if drawn else np.empty(0)
    if positive.size:  # 1-2-5 ticks as plain numbers (1, 2, 5, 10 ms), not 10^x or bare digits
        values, labels = log_ticks(float(positive.min()), float(positive.max()))
        fig.update_yaxes(tickmode="array", tickvals=values, ticktext=labels)
    return fig


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Ticks for a log axis showing ``low`` to ``high`` (both > 0), labelled as plain numbers.

    1, 2 and 5 of each decade (0.5, 1, 2, 5, 10, 20, ...); every digit when the data spans
    less than a decade (too few ticks otherwise), only the powers of ten beyond four decades.
    Values and labels come from decimal strings: no ``0.30000000000000004``, no ``10^x``.
    """
    if not 0.0 < low <= high or not np.isfinite(high):
        raise ValueError(f"log ticks need 0 < low <= high, got {low!r}, {high!r}")
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    span = np.log10(high / low)
    mantissas: tuple[str, ...] = (
        ("1", "1.5", "2", "3", "4", "5", "6", "7", "8", "9")
        if span < 1.0
        else ("1", "2", "5")
        if span <= 4.0
        else ("1",)
    )
    ticks = [Decimal(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
    # keep the ticks within the data's range, plus the one on either side (the axis pads a little)
    inside = [t for t in ticks if low <= t <= high]
    below = [t for t in ticks if t < low][-1:]
    above = [t for t in ticks if t > high][:1]
    kept = [*below, *inside, *above]
    return [float(t) for t in kept], [f"{t.normalize():,f}" for t in kept]
