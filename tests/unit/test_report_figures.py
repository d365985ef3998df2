"""The report's figures and latency tables, built from small runs written by hand to a tmp SQLite store:
percentiles told apart, readable log ticks, a colorbar clear of axis titles, a p50 column."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from rich.console import Console

from analysis.frames import BATCH_COLUMNS, RunData, read_run_data
from analysis.percentile_style import PERCENTILES
from analysis.plots import (
    batching_figure,
    latency_distribution_figure,
    log_ticks,
    throughput_latency_figure,
)
from analysis.report import build_report
from analysis.tables import (
    OPEN_LOOP_CSV,
    PERF_ANALYZER_COLUMNS,
    benchmark_table,
    latency_table,
    perf_analyzer_frame,
)
from loadgen.console.tables import print_latency_table
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult
from loadgen.storage import RunStore

T0 = datetime(2024, 11, 28, 12, 0, 0, tzinfo=UTC)
DURATION_S = 2.0
LEVELS = ((1, 900.0, 1.0), (2, 1500.0, 1.3), (4, 2100.0, 2.2), (8, 2300.0, 4.1))
"""(concurrency, throughput, latency scale) of each step."""


def _step(index: int, concurrency: int, throughput: float, scale: float, rate: float | None) -> StepResult:
    hist = LatencyHistogram()
    rng = np.random.default_rng(index)
    hist.record_many_us([float(v) * scale for v in rng.lognormal(7.0, 0.5, 3000)])  # ~1 ms, a tail
    return StepResult(
        index=index,
        concurrency=concurrency,
        started_at=T0 + timedelta(seconds=3 * index),
        duration_s=DURATION_S,
        request_count=hist.count,
        inference_count=round(throughput * DURATION_S),
        histogram=hist,
        window_count=3,
        request_rate=rate,
    )


def _info(model: str, scenario: str) -> RunInfo:
    return RunInfo(
        settings={"measurement": {"measurement_interval_ms": 1000, "warmup_ms": 0}},
        model=model,
        model_version="1",
        scenario=scenario,
        server_url="localhost:8001",
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        started_at=T0,
    )


def _add_run(
    store: RunStore, model: str, *, slower: float = 1.0, rates: Sequence[float] | None = None
) -> int:
    run_id = store.create_run(_info(model, "concurrency" if rates is None else "request_rate"))
    for i, (concurrency, throughput, scale) in enumerate(LEVELS):
        rate = None if rates is None else rates[i]
        store.add_step(run_id, _step(i, concurrency, throughput / slower, scale * slower, rate))
    store.finish_run(run_id, RunStatus.COMPLETED, None)
    return run_id


@pytest.fixture
def run(store: RunStore) -> RunData:
    return read_run_data(store, _add_run(store, "identity"))


@pytest.fixture
def runs(store: RunStore) -> list[RunData]:
    return [
        read_run_data(store, _add_run(store, m, slower=s)) for m, s in (("identity", 1.0), ("resnet", 2.0))
    ]


def _style(trace: go.Scatter) -> tuple[str, str]:
    return str(trace.line.color), str(trace.line.dash)


# -- latency vs throughput: which line is which percentile ---------------------------------------------


def test_one_run_gives_each_percentile_its_own_colour_and_dash(run: RunData) -> None:
    fig = throughput_latency_figure([run])
    assert PERCENTILES == ("p50", "p90", "p99")
    assert [t.name for t in fig.data] == ["p50 latency", "p90 latency", "p99 latency"]
    colours = {str(t.line.color) for t in fig.data}
    dashes = {str(t.line.dash) for t in fig.data}
    symbols = {str(t.marker.symbol) for t in fig.data}
    assert len(colours) == len(dashes) == len(symbols) == 3
    for trace in fig.data:  # the load labels are coloured like their line
        if trace.text is not None and "text" in trace.mode:
            assert trace.textfont.color == trace.line.color
    # each line is the percentile it says it is
    ms = {p: run.steps[f"lat_{p}_us"].to_numpy() / 1000 for p in PERCENTILES}
    for trace, pct in zip(fig.data, PERCENTILES, strict=True):
        np.testing.assert_allclose(np.asarray(trace.y, dtype=float), ms[pct])
    p50, p90, p99 = (np.asarray(t.y, dtype=float) for t in fig.data)
    assert (p50 < p90).all() and (p90 < p99).all()


def test_several_runs_colour_by_run_and_dash_by_percentile(runs: list[RunData]) -> None:
    fig = throughput_latency_figure(runs)
    assert len(fig.data) == 3 * len(runs)
    by_run: dict[str, list[go.Scatter]] = {}
    for trace in fig.data:
        by_run.setdefault(str(trace.legendgroup), []).append(trace)
    assert len(by_run) == 2
    colours = []
    for traces in by_run.values():
        assert len({str(t.line.color) for t in traces}) == 1  # one colour per run
        assert len({str(t.line.dash) for t in traces}) == 3  # one dash per percentile
        assert [t.name for t in traces] == ["p50 latency", "p90 latency", "p99 latency"]
        colours.append(str(traces[0].line.color))
        # the legend groups a run's lines under its name
        assert {t.legendgrouptitle.text for t in traces} == {traces[0].legendgrouptitle.text}
    assert colours[0] != colours[1]
    titles = [traces[0].legendgrouptitle.text for traces in by_run.values()]
    assert "identity" in titles[0] and "resnet" in titles[1]
    # the same percentile has the same dash in every run: the dash reads the same throughout
    dash_of = {(t.name, str(t.line.dash)) for t in fig.data}
    assert len(dash_of) == 3
    # no two lines of the figure look the same
    assert len({_style(t) for t in fig.data}) == len(fig.data)


# -- log axes ---------------------------------------------------------------------------------------


def _is_125(value: float) -> bool:
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1, 2, 5))


def test_log_ticks_are_1_2_5_per_decade_as_plain_numbers() -> None:
    values, labels = log_ticks(0.05, 30.0)
    assert labels == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50"]
    assert values == [float(label) for label in labels]
    values, labels = log_ticks(3.0, 4200.0)
    assert labels[0] == "2" and labels[-1] == "5,000" and "1,000" in labels
    assert all(_is_125(v) for v in values)
    # less than a decade: every digit, so the axis still has several labels
    values, labels = log_ticks(0.8, 1.3)
    assert labels == ["0.8", "0.9", "1", "1.5"]
    # many decades: the powers of ten only
    values, labels = log_ticks(0.01, 1e6)
    assert labels == ["0.01", "0.1", "1", "10", "100", "1,000", "10,000", "100,000", "1,000,000"]
    with pytest.raises(ValueError, match="0 < low"):
        log_ticks(0.0, 1.0)


def test_every_log_axis_has_readable_ticks(run: RunData) -> None:
    fig = latency_distribution_figure(run)
    log_axes = [
        (name, axis)
        for name in dir(fig.layout)
        if re.fullmatch(r"[xy]axis\d*", name) and (axis := getattr(fig.layout, name)).type == "log"
    ]
    assert {name for name, _ in log_axes} == {"xaxis", "yaxis"}
    for _, axis in log_axes:
        assert axis.tickvals is not None and axis.ticktext is not None
        assert len(axis.tickvals) == len(axis.ticktext) >= 3
        for text in axis.ticktext:  # plain numbers or percentages: no 10^x, no 1e+03
            assert re.fullmatch(r"[\d,.]+%?", text), text
    y = fig.layout.yaxis
    assert y.tickmode == "array" and y.exponentformat == "none"
    assert all(_is_125(v) for v in y.tickvals)
    assert list(y.ticktext) == log_ticks(min(y.tickvals) * 1.0001, max(y.tickvals) * 0.9999)[1]
    # the ticks cover the plotted latencies, one tick at most beyond each end
    drawn = np.concatenate([np.asarray(t.y, dtype=float) for t in fig.data])
    assert min(y.tickvals) <= drawn.min() and max(y.tickvals) >= drawn.max()
    assert sum(v < drawn.min() for v in y.tickvals) <= 1 and sum(v > drawn.max() for v in y.tickvals) <= 1


# -- batching: the colorbar sits in the gap, clear of the bars' axis title --------------------------


def _batches(data: RunData) -> pd.DataFrame:
    rows = [
        (int(s), int(c), size, count, 0, 0, 0, 0, 0, 0)
        for s, c in zip(data.steps["step_index"], data.steps["concurrency"], strict=True)
        for size, count in ((1, 40), (2, 10 * int(c)), (4, 5 * int(c)))
    ]
    return pd.DataFrame(rows, columns=list(BATCH_COLUMNS)).astype("int64")


def test_batching_colorbar_does_not_meet_an_axis_title(run: RunData) -> None:
    data = dataclasses.replace(run, batches=_batches(run))
    fig = batching_figure(data)
    (heatmap,) = [t for t in fig.data if isinstance(t, go.Heatmap)]
    bar = heatmap.colorbar
    left, right = fig.layout.xaxis.domain, fig.layout.xaxis2.domain
    assert left[1] < right[0]
    # anchored by its left edge just right of the heatmap, inside the gap between the panels
    assert bar.xanchor == "left" and left[1] <= bar.x < right[0]
    assert bar.thickness is not None and bar.thickness <= 20
    assert bar.title.text == "%" and bar.title.side == "top"
    # the bars' y axis (ticks and title) is on their right, not in the gap beside the colorbar
    assert fig.layout.yaxis2.side == "right"
    assert fig.layout.yaxis2.title.text == "average batch size"
    assert fig.layout.yaxis.side in (None, "left") and fig.layout.yaxis.title.text == "batch size"


# -- tables: p50 between the mean and p90 -----------------------------------------------------------

LATENCIES = [
    "Avg latency (ms)",
    "p50 latency (ms)",
    "p90 latency (ms)",
    "p95 latency (ms)",
    "p99 latency (ms)",
]


def test_latency_table_has_p50_after_the_mean(run: RunData) -> None:
    table = latency_table(run.steps, scenario="concurrency")
    columns = list(table.columns)
    assert columns[:7] == ["Concurrent requests", "Throughput (infer/s)", *LATENCIES]
    np.testing.assert_allclose(table["p50 latency (ms)"], run.steps["lat_p50_us"] / 1000)
    assert (table["p50 latency (ms)"] <= table["p90 latency (ms)"]).all()


def test_request_rate_latency_table_has_p50_too(store: RunStore) -> None:
    data = read_run_data(store, _add_run(store, "identity", rates=[100.0, 200.0, 400.0, 800.0]))
    columns = list(latency_table(data.steps, scenario="request_rate").columns)
    assert columns[0] == "Request rate (req/s)"
    assert columns[1:7] == ["Throughput (infer/s)", *LATENCIES]


def test_perf_analyzer_csv_layout_is_unchanged(run: RunData) -> None:
    columns = tuple(perf_analyzer_frame(run.steps).columns)
    assert columns[: len(PERF_ANALYZER_COLUMNS)] == PERF_ANALYZER_COLUMNS


def test_console_table_shows_p50(run: RunData) -> None:
    console = Console(record=True, width=240, color_system=None)
    print_latency_table(run.run, latency_table(run.steps, scenario="concurrency"), console)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "p50" in line)
    assert header.index("Avg") < header.index("p50") < header.index("p90") < header.index("p99")


class _Headers(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and "latency" in (dict(attrs).get("class") or ""):
            self.tables.append([])
        self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._in_th and self.tables and data.strip():
            self.tables[-1].append(data.strip())


def test_report_table_has_p50(runs: list[RunData]) -> None:
    report = build_report(runs[:1])
    page = _Headers()
    page.feed(report.html)
    (headers,) = page.tables
    assert headers[:7] == ["Concurrent requests", "Throughput (infer/s)", *LATENCIES]
    # the report's overlay is the figure tested above: one style per percentile
    (overlay,) = [f.figure for f in report.figures if f.name.endswith("throughput-latency")]
    assert len({_style(t) for t in overlay.data}) == 3


def test_open_loop_runs_carry_the_senders_columns_in_the_table_and_the_csv(store: RunStore) -> None:
    """``loadgen table --format csv`` and ``--csv`` of a request-rate run: what the sender achieved."""
    run_id = store.create_run(_info("identity", "request_rate"))
    for i, (rate, sent, refused) in enumerate(((100.0, 200, 0), (400.0, 700, 5))):
        step = _step(i, 1, rate, 1.0, rate)
        lag, service = LatencyHistogram(), LatencyHistogram()
        lag.record_many_us([10.0 * (i + 1)] * 99 + [500.0])
        service.record_many_us([800.0] * 100)
        store.add_step(
            run_id,
            replace(
                step,
                sent_count=sent,
                scheduled_count=round(rate * DURATION_S),
                refused_count=refused,
                send_lag_histogram=lag,
                service_histogram=service,
            ),
        )
    store.finish_run(run_id, RunStatus.COMPLETED, None)
    steps = store.steps(run_id)
    table = benchmark_table(steps, (50.0, 99.0), scenario="request_rate")
    sender = ["Sent (req/s)", "Service p99 (ms)", "Send lag p99 (ms)", "Refused", "On schedule"]
    assert list(table.columns) == [
        "Request rate (req/s)", "Throughput (infer/s)", "Avg latency (ms)",
        "p50 latency (ms)", "p99 latency (ms)", *sender,
    ]  # fmt: skip
    assert table["Sent (req/s)"].tolist() == [100.0, 350.0]
    assert table["Refused"].tolist() == [0, 5] and table["On schedule"].tolist() == [True, False]
    assert table["Send lag p99 (ms)"].tolist() == pytest.approx([0.01, 0.02], rel=0.02)
    csv = perf_analyzer_frame(read_run_data(store, run_id).steps, "request_rate")
    assert csv.columns[0] == "Request Rate" and csv["Request Rate"].tolist() == [100.0, 400.0]
    assert list(csv.columns[-7:]) == list(OPEN_LOOP_CSV)
    assert csv["Sent Rate"].tolist() == [100.0, 350.0] and csv["On Schedule"].tolist() == [True, False]
    assert csv["Send Lag Max"].tolist() == pytest.approx([500.0, 500.0], rel=0.01)
    assert (
        "Concurrency" in perf_analyzer_frame(read_run_data(store, run_id).steps).columns
    )  # closed loop as before
