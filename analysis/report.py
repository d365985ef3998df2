"""One self-contained HTML report of one or more stored runs.

The page must open anywhere, offline, years later: Plotly's JavaScript is inlined once,
figures are Plotly divs, nothing is fetched (no CDN, no MathJax). The page itself is a
Jinja template (``templates/report.html.j2``); Python only prepares the values.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline
from markupsafe import Markup

from analysis.breakdown_plots import composing_figure, tail_figure
from analysis.finding_kinds import Finding
from analysis.findings import Slo, run_findings
from analysis.frames import RunData, latency_components
from analysis.model_breakdown import model_table
from analysis.plots import (
    batching_figure,
    has_server_metrics,
    latency_breakdown_figure,
    latency_distribution_figure,
    run_label,
    server_metrics_figure,
    throughput_latency_figure,
)
from analysis.side_by_side import runs_side_by_side
from analysis.stream_plots import STREAM_FIGURES, streamed
from analysis.tables import latency_table
from analysis.tail import overhead_table, tail_frame, tail_table
from analysis.tune_plots import pareto_figure
from analysis.tune_result import TuneResult, config_pbtxt, summary_rows
from loadgen import __version__

ImageFormat = Literal["png", "svg"]
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"scale": 2}}


class ImageExportError(RuntimeError):
    """Figures cannot be written as images here (no image engine); the HTML is unaffected."""


@dataclass(frozen=True, eq=False)
class NamedFigure:
    name: str
    """File stem for image export, e.g. ``run12-breakdown``."""
    title: str
    figure: go.Figure


@dataclass(frozen=True, eq=False)
class Report:
    html: str
    figures: tuple[NamedFigure, ...]
    findings: Mapping[int, tuple[Finding, ...]]
    """Run id -> its findings, as shown in the report."""


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _plotly_js() -> Markup:
    js = plotly.offline.get_plotlyjs()
    if "</script" in js.lower():  # would end the inline <script> early
        raise RuntimeError("this plotly.js cannot be inlined in a <script> element")
    return Markup(js)


def _figure_html(fig: go.Figure, div_id: str) -> Markup:
    html = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_height=f"{fig.layout.height or 450}px",
    )
    return Markup(html)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:#.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def _table_html(steps: pd.DataFrame, scenario: str) -> Markup:
    return _html(latency_table(steps, scenario=scenario))


def _html(table: pd.DataFrame) -> Markup:
    shown = table.astype(object).map(_cell) if not table.empty else table
    return Markup(shown.to_html(index=False, border=0, classes="latency", escape=True))


def _duration(data: RunData) -> str:
    run = data.run
    if run.ended_at is None:
        return "-"
    return f"{(run.ended_at - run.started_at).total_seconds():.0f} s"


def _metadata(data: RunData) -> list[tuple[str, str]]:
    run, settings = data.run, data.run.settings
    measurement = settings.get("measurement", {})
    max_windows = measurement.get("max_windows", measurement.get("max_trials", "?"))  # older runs: max_trials
    config = run.model_config
    instances = ", ".join(
        f"{group.get('count', 1)} x {group.get('kind', '?')}" for group in config.get("instance_group", [])
    )
    batching = "dynamic" if "dynamic_batching" in config else "none"
    host = run.host
    rows = [
        ("model", f"{run.model} (version {run.model_version or 'default'})"),
        ("status", str(run.status) + (f": {run.error}" if run.error else "")),
        ("server", f"{run.server_url}, Triton {run.server_metadata.get('version', '?')}"),
        (
            "model config",
            f"backend {config.get('backend') or config.get('platform') or '?'}, max batch "
            f"{config.get('max_batch_size', '?')}, instances {instances or '?'}, batching {batching}",
        ),
        ("started (UTC)", run.started_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("duration", _duration(data)),
        (
            "load",
            f"{run.scenario}, levels {', '.join(map(str, settings.get('levels', [])))}, "
            f"batch size {settings.get('batch_size', '?')}, {settings.get('input_data', '?')} inputs",
        ),
        (
            "measurement",
            f"windows of {measurement.get('measurement_interval_ms', '?')} ms after "
            f"{measurement.get('warmup_ms', '?')} ms warm-up, stable within "
            f"{measurement.get('stability_percentage', '?')}%, at most {max_windows} "
            f"windows; metrics every {measurement.get('metrics_interval_ms', '?')} ms "
            f"from {settings.get('metrics_url') or 'nowhere'}",
        ),
        (
            "host",
            f"{host.get('hostname', '?')}: {host.get('platform', '?')}, {host.get('cpu_count', '?')} CPUs, "
            f"Python {host.get('python', '?')}, loadgen {host.get('loadgen', '?')}",
        ),
    ]
    if run.labels:
        rows.append(("labels", ", ".join(f"{k}={v}" for k, v in sorted(run.labels.items()))))
    return rows


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _run_figures(data: RunData) -> tuple[list[tuple[str, str, go.Figure]], list[str]]:
    """(key, title, figure) of the figures this run has data for, and notes for those it lacks."""
    figures: list[tuple[str, str, go.Figure]] = []
    notes: list[str] = []
    if data.steps.empty:
        return figures, notes
    if latency_components(data.steps).notna().all(axis=1).any():
        figures.append(("breakdown", "Latency breakdown", latency_breakdown_figure(data)))
    else:
        notes.append("no latency breakdown: the server's statistics were not available for any step")
    if not data.composing.empty:
        figures.append(("models", "Time per composing model", composing_figure(data)))
    if not data.traces.empty:
        figures.append(("tail", "What the slowest requests waited for", tail_figure(data)))
    if not data.batches.empty:
        figures.append(("batching", "Batching", batching_figure(data)))
    if has_server_metrics(data):
        figures.append(("server-metrics", "Server metrics", server_metrics_figure(data)))
    else:
        notes.append("no server metrics: none were scraped (--no-metrics, or the endpoint was unreachable)")
    figures.append(("distribution", "Latency distribution", latency_distribution_figure(data)))
    return figures, notes


def _side_by_side(runs: Sequence[RunData]) -> Markup | None:
    """Several runs of one scenario: their tables as one, with each run's ratio to the first."""
    if len(runs) < 2 or len({data.run.scenario for data in runs}) > 1:
        return None
    tables = [latency_table(data.steps, scenario=data.run.scenario) for data in runs]
    return _html(runs_side_by_side([data.run for data in runs], tables))


def _tune_section(tune: TuneResult, place: Callable[[str, str, go.Figure], Markup]) -> dict[str, Any]:
    """``report --tune``: the configurations, best first, the front and the best one's config."""
    winner = tune.winner
    return {
        "id": tune.tune_id,
        "slo": str(tune.slo) if tune.slo else None,
        "table": _html(pd.DataFrame(summary_rows(tune))),
        "figure": place(f"tune-{tune.tune_id}", "Tune: throughput vs latency", pareto_figure(tune)),
        "best": None if winner is None else winner[0].config,
        "config": None if winner is None else config_pbtxt(winner[0].model_config),
    }


def build_report(
    runs: Sequence[RunData], *, slo: Slo | None = None, tune: TuneResult | None = None
) -> Report:
    """The report of ``runs`` (in that order): overlay where runs compare, a section per run."""
    if not runs:
        raise ValueError("a report needs at least one run")
    named: list[NamedFigure] = []

    def place(name: str, title: str, fig: go.Figure) -> Markup:
        named.append(NamedFigure(name, title, fig))
        return _figure_html(fig, f"fig-{len(named)}")

    with_steps = [data for data in runs if not data.steps.empty]
    overlay = None
    if with_steps:
        ids = "-".join(str(data.run.id) for data in with_steps)
        overlay = place(
            f"runs{ids}-throughput-latency", "Latency vs throughput", throughput_latency_figure(with_steps)
        )
    streams = [data for data in with_steps if streamed(data)]
    stream_overlays = []
    if streams:  # --streaming: first responses and gaps, the streamed runs together
        ids = "-".join(str(data.run.id) for data in streams)
        stream_overlays = [
            place(f"runs{ids}-{key}", title, make(streams)) for key, title, make in STREAM_FIGURES
        ]
    tune_section = None if tune is None else _tune_section(tune, place)
    side = _side_by_side(with_steps)
    findings: dict[int, tuple[Finding, ...]] = {}
    sections = []
    for data in runs:
        run = data.run
        findings[run.id] = tuple(
            run_findings(
                run, data.steps, slo, composing=data.composing, traces=data.traces, workers=data.workers
            )
        )
        figures, notes = _run_figures(data)
        sections.append(
            {
                "id": run.id,
                "label": run_label(data),
                "status": str(run.status),
                "step_count": run.step_count,
                "metadata": _metadata(data),
                "findings": findings[run.id],
                "table": _table_html(data.steps, data.run.scenario) if not data.steps.empty else None,
                "models_table": None
                if data.composing.empty
                else _html(model_table(data.composing, data.steps)),
                "tail_table": None
                if data.traces.empty
                else _html(tail_table(tail_frame(data.traces, data.steps))),
                "overhead_table": None
                if data.traces.empty
                else _html(overhead_table(data.steps, data.traces)),
                "figures": [
                    {"title": title, "html": place(f"run{run.id}-{key}", title, fig)}
                    for key, title, fig in figures
                ],
                "notes": notes,
                "model_config": _json(run.model_config),
                "settings": _json(run.settings),
                "server_metadata": _json(run.server_metadata),
            }
        )
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            title="loadgen report: " + ", ".join(f"run {data.run.id} ({data.run.model})" for data in runs),
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            version=__version__,
            slo=str(slo) if slo else None,
            plotly_js=_plotly_js(),
            overlay=overlay,
            stream_overlays=stream_overlays,
            compare=len(runs) > 1,
            runs=sections,
            tune=tune_section,
            side_by_side=side,
        )
    )
    return Report(html=html, figures=tuple(named), findings=findings)


def write_report(report: Report, path: Path | str) -> Path:
    """Write the HTML (UTF-8); returns the path written."""
    target = Path(path)
    target.write_text(report.html, encoding="utf-8")
    return target


def image_engine_available() -> bool:
    return importlib.util.find_spec("kaleido") is not None


def export_images(report: Report, directory: Path | str, fmt: ImageFormat = "png") -> list[Path]:
    """Each figure as ``<directory>/<name>.<fmt>`` through Plotly's image engine (kaleido).

    Raises :class:`ImageExportError` when no engine is installed or it cannot start.
    """
    if not image_engine_available():
        raise ImageExportError(
            "cannot write images: no image engine is installed (pip install kaleido; "
            "it drives a local Chrome or Chromium)"
        )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{named.name}.{fmt}" for named in report.figures]
    figures = [named.figure for named in report.figures]
    try:
        if hasattr(pio, "write_images"):  # plotly >= 6.1: one browser session for all figures
            pio.write_images(figures, paths, format=fmt, width=1200)
        else:
            for fig, path in zip(figures, paths, strict=True):
                fig.write_image(path, format=fmt, width=1200)
    except (RuntimeError, ValueError, OSError) as exc:  # kaleido's own errors: no browser, ...
        raise ImageExportError(f"cannot write images with kaleido: {exc}") from exc
    return paths
