"""The tune report's figure: every configuration's steps as throughput against latency, the
Pareto front over them, and the SLO's limit, so the best configuration's margin is visible."""

from __future__ import annotations

import plotly.graph_objects as go

from analysis.plots import RUN_COLORS, new_figure
from analysis.tune_result import TuneResult


def pareto_figure(result: TuneResult) -> go.Figure:
    percentile = f"p{result.percentile:g}"
    fig = new_figure(f"{result.model}: throughput vs {percentile} latency, one series per configuration")
    for i, config in enumerate(result.configs):
        points = sorted(config.points, key=lambda p: p.level)
        fig.add_trace(
            go.Scatter(
                x=[p.latency_ms for p in points],
                y=[p.throughput for p in points],
                mode="lines+markers",
                name=config.config,
                text=[f"load {p.level:g}, run {p.run_id}" for p in points],
                marker={"color": RUN_COLORS[i % len(RUN_COLORS)]},
                hovertemplate="%{text}<br>%{x:.2f} ms, %{y:.1f}/s<extra>%{fullData.name}</extra>",
            )
        )
    front = result.pareto
    fig.add_trace(
        go.Scatter(
            x=[p.latency_ms for p in front],
            y=[p.throughput for p in front],
            mode="lines",
            name="Pareto front",
            line={"color": "black", "dash": "dot", "shape": "hv"},
        )
    )
    if result.slo is not None:
        fig.add_vline(
            x=result.slo.limit_us / 1000,
            line={"color": "#c62828", "dash": "dash"},
            annotation_text=f"SLO {result.slo}",
        )
    fig.update_xaxes(title_text=f"{percentile} latency (ms)", type="log")
    fig.update_yaxes(title_text="throughput (infer/s)", rangemode="tozero")
    return fig
