"""Figures of where the time goes beyond one model's averages: a composite model's time stacked by
composing model."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from analysis.frames import RunData, load_level
from analysis.model_breakdown import models_of
from analysis.plots import new_figure, run_label

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
        compute = rows["compute_input_us"] + rows["compute_infer_us"] + rows["compute_output_us"]
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
