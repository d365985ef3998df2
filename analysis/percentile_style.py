"""How every percentile figure draws a percentile: its colour, dash and marker, and one line of a run
(the latency-vs-throughput figure and the stream figures share it)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

PERCENTILES = ("p50", "p90", "p99")
PERCENTILE_DASH = {"p50": "dot", "p90": "dash", "p99": "solid"}
"""Line dash of each percentile: with several runs, colour says the run and dash the percentile."""
PERCENTILE_COLORS = {"p50": "#1f77b4", "p90": "#ff7f0e", "p99": "#d62728"}
"""Line colour of each percentile when a single run is plotted (its dash is kept as well)."""
PERCENTILE_SYMBOL = {"p50": "circle", "p90": "square", "p99": "diamond"}


def percentile_trace(
    *,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    pct: str,
    color: str,
    levels: list[str],
    labelled: bool,
    name: str,
    run: int,
    what: str,
    hover: str,
    error_y: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    error_x: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> go.Scatter:
    """One percentile's line of one run, in the style every percentile figure shares: a dash and a
    marker per percentile, the points of the ``labelled`` line tagged with their load level, the
    legend grouped by run. ``error_y``/``error_x``: each point's interval as (below, above) the
    value, drawn as error bars (NaN: none)."""
    bars = {
        f"error_{axis}": {
            "type": "data",
            "array": above,
            "arrayminus": below,
            "color": color,
            "thickness": 1,
            "width": 3,
        }
        for axis, pair in (("y", error_y), ("x", error_x))
        if pair is not None
        for below, above in [pair]
    }
    return go.Scatter(
        **bars,
        x=x,
        y=y,
        mode="lines+markers+text" if labelled else "lines+markers",
        text=levels,
        textposition="top left",
        textfont={"size": 10, "color": color},
        line={"color": color, "dash": PERCENTILE_DASH[pct], "width": 2.5 if labelled else 2},
        marker={"size": 7 if labelled else 6, "symbol": PERCENTILE_SYMBOL[pct]},
        name=f"{pct} {what}",
        legendgroup=str(run),
        legendgrouptitle_text=name,
        hovertemplate=f"{name}<br>%{{text}}<br>{hover}<br>{pct} {what} %{{y:.2f}} ms<extra></extra>",
    )
