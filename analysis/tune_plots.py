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
    if result.slo is not None:  # a trace, not add_vline: its label lands off a log axis (plotly #4012)
        top = max((p.throughput for c in result.configs for p in c.points), default=1.0)
        fig.add_trace(
            go.Scatter(
                x=[result.slo.limit_us / 1000] * 2,
                y=[0, top],
                mode="lines",
                name=f"SLO {result.slo}",
                line={"color": "#c62828", "dash": "dash"},
            )
        )
    fig.update_xaxes(title_text=f"{percentile} latency (ms)", type="log")
    fig.update_yaxes(title_text="throughput (infer/s)", rangemode="tozero")
    return fig
