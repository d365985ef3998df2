"""Figures of where the time goes beyond one model's averages: a composite model's time stacked by
composing model, and the slowest requests' time by where they spent it."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from analysis.frames import RunData, load_level
from analysis.model_breakdown import models_of
from analysis.plots import new_figure, run_label
from analysis.tail import PARTS, tail_frame

MODEL_COLORS = qualitative.Safe
OUTSIDE_COLOR = "#9aa5b1"


def composing_figure(data: RunData) -> go.Figure:
    """Mean latency per step stacked by composing model, each split into its queue and compute, and
    what is left: the client, the network and the composite model's own work between its steps."""
    fig = new_figure(f"Time per composing model: {run_label(data)}")
    frame, steps = data.composing, data.steps.sort_values("step_index")
    levels = [load_level(row)[0] for row in steps.to_dict("records")]
    inside = np.zeros(len(steps))
    for i, model in enumerate(models_of(frame)):
        rows = frame[frame["model"] == model].set_index("step_index").reindex(steps["step_index"])
        compute = rows["compute_us"]
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        for part, values, opacity in (("queue", rows["queue_us"], 0.45), ("compute", compute, 1.0)):
            ms = values.to_numpy(dtype=np.float64) / 1000.0
            fig.add_trace(
                go.Bar(
                    x=levels,
                    y=ms,
                    name=f"{model}: {part}",
                    marker={"color": color, "opacity": opacity},
                    hovertemplate=f"%{{x}}<br>{model} {part} %{{y:.3f}} ms<extra></extra>",
                )
            )
        inside += np.nan_to_num(rows["request_us"].to_numpy(dtype=np.float64))
    outside = np.maximum(steps["lat_avg_us"].to_numpy(dtype=np.float64) - inside, 0.0) / 1000.0
    fig.add_trace(
        go.Bar(
            x=levels,
            y=outside,
            name="outside the composing models",
            marker_color=OUTSIDE_COLOR,
            hovertemplate="%{x}<br>outside the composing models %{y:.3f} ms<extra></extra>",
        )
    )
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_xaxes(title_text="load level", type="category")
    fig.update_yaxes(title_text="mean latency (ms)")
    return fig


PART_STYLE = {  # label, colour: stacked from the bottom
    "queue": ("server queue", "#ef553b"),
    "compute": ("compute", "#636efa"),
    "server_other": ("rest of the server", "#ffa15a"),
    "outside": ("outside the server", OUTSIDE_COLOR),
}


def tail_figure(data: RunData) -> go.Figure:
    """Per step, the median request beside the slowest 1% and 0.1% (from Triton's traces): the mean
    time of each group split into queue, compute, the rest of the server and outside the server."""
    fig = new_figure(f"What the slowest requests waited for: {run_label(data)}")
    tail = tail_frame(data.traces, data.steps)
    x = [tail["load"].tolist(), tail["group"].tolist()]
    for part in PARTS:
        label, color = PART_STYLE[part]
        fig.add_trace(
            go.Bar(
                x=x,
                y=tail[f"{part}_us"].to_numpy(dtype=np.float64) / 1000.0,
                name=label,
                marker_color=color,
                hovertemplate=f"%{{x}}<br>{label} %{{y:.3f}} ms<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_xaxes(title_text="load level, requests")
    fig.update_yaxes(title_text="mean latency of the group (ms)")
    return fig
