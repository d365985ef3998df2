"""Streamed runs (``--streaming``) in the report, compare and findings, from runs written by hand
to a tmp SQLite store: the first-response and gap figures draw the histograms' percentiles,
a slower first response is a regression, and the finding says where requests start to queue."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

from analysis import Thresholds, Verdict, load_comparison
from analysis.finding_kinds import RANK, Finding, Kind, Severity
from analysis.findings import run_findings
from analysis.frames import RunData, read_run_data
from analysis.plots import log_ticks
from analysis.report import build_report
from analysis.stream_plots import (
    STREAM_FIGURES,
    first_response_figure,
    first_response_throughput_figure,
    inter_response_figure,
    stream_points,
)
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult, WindowResult
from loadgen.storage import RunStore
from loadgen.tallies import StreamTally

T0 = datetime(2024, 11, 28, 12, 0, 0, tzinfo=UTC)
DURATION_S = 4.0
REQUESTS = 200
FINAL_US = [float(v) for v in np.random.default_rng(3).lognormal(11.7, 0.2, REQUESTS)]
"""Time to the final response (~120 ms): the same in every run, so only the stream changes."""
STEADY = (-0.01, 0.0, 0.01)


@dataclasses.dataclass(frozen=True)
class Level:
    concurrency: int
    first_ms: float
    """Median time to first response: each request's is spread from 0.8 to 1.2 times it."""
    gap_ms: float = 10.0
    responses: int = 8
    short: int = 0
    """Requests answered one response short (of ``REQUESTS``)."""
    windows: Sequence[float] = STEADY


QUEUEING = (Level(1, 50.0), Level(2, 55.0), Level(4, 90.0, 12.0), Level(8, 200.0, 15.0))
"""An LLM-like server: the first response waits from concurrency 4 (1.8x the lone request's)."""


def tally(level: Level, first_scale: float = 1.0) -> StreamTally:
    stream = StreamTally()
    for i in range(REQUESTS):
        first_ns = round(level.first_ms * first_scale * (0.8 + 0.4 * i / (REQUESTS - 1)) * 1e6)
        gap_ns = round(level.gap_ms * 1e6 * (0.9 + 0.2 * ((7 * i) % REQUESTS) / REQUESTS))
        count = level.responses - (i < level.short)
        stream.record(0, [first_ns + n * gap_ns for n in range(count)])
    return stream


def step_result(index: int, level: Level, first_scale: float, streamed: bool) -> StepResult:
    hist = LatencyHistogram()
    hist.record_many_us(FINAL_US)
    windows = [
        WindowResult(1.0, round(50 * (1 + d)), round(50 * (1 + d)), 0, 120_000.0 * (1 + d))
        for d in level.windows
    ]
    return StepResult(
        index=index,
        concurrency=level.concurrency,
        started_at=T0 + timedelta(seconds=5 * index),
        duration_s=DURATION_S,
        request_count=REQUESTS,
        inference_count=REQUESTS,
        histogram=hist,
        window_count=len(windows),
        windows=windows,
        stream=tally(level, first_scale) if streamed else None,
    )


def add_run(
    store: RunStore,
    levels: Sequence[Level] = QUEUEING,
    *,
    first_scale: float = 1.0,
    streamed: bool = True,
    model: str = "token_stream",
) -> int:
    info = RunInfo(
        settings={"streaming": streamed, "measurement": {"measurement_interval_ms": 1000}},
        model=model,
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config={"model_transaction_policy": {"decoupled": streamed}},
        model_metadata={},
        server_metadata={},
        host={},
        started_at=T0,
    )
    run_id = store.create_run(info)
    for i, level in enumerate(levels):
        store.add_step(run_id, step_result(i, level, first_scale, streamed))
    store.finish_run(run_id, RunStatus.COMPLETED)
    return run_id


def with_streams(data: RunData, tallies: Mapping[int, StreamTally]) -> RunData:
    """``data`` with each step's decoded stream measures, as the report reads them."""
    if any(f.name == "streams" for f in dataclasses.fields(data)):
        keep: dict[str, Any] = {"streams": tallies}
        return dataclasses.replace(data, **keep)
    object.__setattr__(data, "streams", tallies)  # until RunData keeps them itself
    return data


def read(store: RunStore, run_id: int, *, tallies: bool = True) -> RunData:
    decoded = {s.step_index: t for s in store.steps(run_id) if (t := s.stream()) is not None}
    return with_streams(read_run_data(store, run_id), decoded if tallies else {})


def _style(trace: go.Scatter) -> tuple[str, str]:
    return str(trace.line.color), str(trace.line.dash)


def _y(trace: go.Scatter) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(trace.y, dtype=float)


# -- figures --------------------------------------------------------------------------------------


def test_first_response_vs_load_draws_the_histograms_p50_p90_p99(store: RunStore) -> None:
    run_id = add_run(store)
    data = read(store, run_id)
    fig = first_response_figure([data])
    assert fig.layout.title.text == "Time to first response vs load"
    assert [t.name for t in fig.data] == ["p50 first response", "p90 first response", "p99 first response"]
    assert len({_style(t) for t in fig.data}) == 3  # a colour and a dash per percentile
    firsts = [stream.first for s in store.steps(run_id) if (stream := s.stream()) is not None]
    for trace, pct in zip(fig.data, (50, 90, 99), strict=True):
        np.testing.assert_array_equal(np.asarray(trace.x, dtype=float), [1, 2, 4, 8])
        expected = [first.percentile_us(pct) / 1000 for first in firsts]
        np.testing.assert_allclose(_y(trace), expected)
    p50, p90, p99 = (_y(t) for t in fig.data)
    assert (p50 < p90).all() and (p90 < p99).all()
    np.testing.assert_allclose(p50, [50, 55, 90, 200], rtol=0.01)  # the medians built in
    # the load on a log axis with plain ticks (levels double)
    x = fig.layout.xaxis
    assert x.type == "log" and x.title.text == "concurrent requests (log)"
    assert list(x.ticktext) == log_ticks(1.0, 8.0)[1] and {"1", "2", "4", "8"} <= set(x.ticktext)
    assert all(re.fullmatch(r"[\d,.]+", t) for t in x.ticktext)


def test_the_stored_p50_and_p99_are_drawn_when_the_histograms_were_not_read(store: RunStore) -> None:
    data = read(store, add_run(store), tallies=False)
    fig = first_response_figure([data])
    assert [t.name for t in fig.data] == ["p50 first response", "p99 first response"]  # no p90 stored
    np.testing.assert_allclose(_y(fig.data[0]), data.steps["first_response_p50_us"] / 1000)
    np.testing.assert_allclose(_y(fig.data[1]), data.steps["first_response_p99_us"] / 1000)


def test_inter_response_gap_vs_load(store: RunStore) -> None:
    data = read(store, add_run(store))
    fig = inter_response_figure([data])
    assert fig.layout.title.text == "Inter-response gap vs load"
    assert [t.name for t in fig.data] == ["p50 gap", "p99 gap"]
    assert len({_style(t) for t in fig.data}) == 2
    np.testing.assert_allclose(_y(fig.data[0]), [10, 10, 12, 15], rtol=0.02)
    np.testing.assert_allclose(_y(fig.data[0]), data.steps["inter_response_p50_us"] / 1000)
    np.testing.assert_allclose(_y(fig.data[1]), data.steps["inter_response_p99_us"] / 1000)
    assert (_y(fig.data[0]) < _y(fig.data[1])).all()


def test_first_response_vs_output_throughput_is_labelled_with_the_load(store: RunStore) -> None:
    data = read(store, add_run(store))
    fig = first_response_throughput_figure([data])
    assert fig.layout.title.text == "Time to first response vs output throughput"
    assert fig.layout.xaxis.title.text == "output throughput (responses/s)"
    assert [t.name for t in fig.data] == ["p50 first response", "p99 first response"]
    per_s = (data.steps["response_count"] / data.steps["duration_s"]).to_numpy(dtype=float)
    np.testing.assert_allclose(per_s, REQUESTS * 8 / DURATION_S)
    for trace in fig.data:
        np.testing.assert_allclose(np.asarray(trace.x, dtype=float), per_s)
    p50, p99 = fig.data
    assert "text" not in p50.mode and "text" in p99.mode  # the load labels sit on p99
    assert list(p99.text) == ["c=1", "c=2", "c=4", "c=8"]
    assert p99.textfont.color == p99.line.color
    np.testing.assert_allclose(_y(p99), data.steps["first_response_p99_us"] / 1000)


def test_several_streamed_runs_colour_by_run_and_dash_by_percentile(store: RunStore) -> None:
    runs = [read(store, add_run(store)), read(store, add_run(store, first_scale=1.5, model="other"))]
    for make in (first_response_figure, inter_response_figure, first_response_throughput_figure):
        fig = make(runs)
        groups: dict[str, list[go.Scatter]] = {}
        for trace in fig.data:
            groups.setdefault(str(trace.legendgroup), []).append(trace)
        assert len(groups) == 2
        assert [len({str(t.line.color) for t in traces}) for traces in groups.values()] == [1, 1]
        assert len({_style(t) for t in fig.data}) == len(fig.data)  # no two lines look the same
        titles = [traces[0].legendgrouptitle.text for traces in groups.values()]
        assert "token_stream" in titles[0] and "other" in titles[1]
    slower = first_response_figure(runs).data[3]  # the second run's p50
    np.testing.assert_allclose(_y(slower), 1.5 * np.array([50, 55, 90, 200]), rtol=0.01)


def test_stream_points_follow_the_load_not_the_storage_order(store: RunStore) -> None:
    levels = (Level(4, 90.0), Level(1, 50.0), Level(2, 55.0))
    points = stream_points(read(store, add_run(store, levels)))
    assert points["level"].tolist() == ["c=1", "c=2", "c=4"]
    assert points["step_index"].tolist() == [1, 2, 0]


# -- the report -----------------------------------------------------------------------------------


def test_the_report_of_a_streamed_run_has_its_figures_and_stream_columns(store: RunStore) -> None:
    streamed = read(store, add_run(store))
    unary = read(store, add_run(store, streamed=False, model="identity"))
    report = build_report([streamed])
    names = [f.name for f in report.figures]
    run = streamed.run.id
    for key, title, _ in STREAM_FIGURES:
        assert f"runs{run}-{key}" in names
        assert title in report.html
    for header in ("Responses/s", "First response p50 (ms)", "Inter-response p99 (ms)"):
        assert f"<th>{header}</th>" in report.html
    # a unary run has none of them, and a report of both draws only the streamed run's streams
    alone = build_report([unary])
    assert not any(key in f.name for f in alone.figures for key, _, _ in STREAM_FIGURES)
    assert "Responses/s" not in alone.html
    both = build_report([streamed, unary])
    streams = [f.figure for f in both.figures if f.name.startswith(f"runs{run}-first-response")]
    assert len(streams) == 2
    assert {str(t.legendgroup) for fig in streams for t in fig.data} == {str(run)}
    assert "requests queue before their first response" in both.html  # in the comparison's table


# -- compare --------------------------------------------------------------------------------------


def test_a_slower_first_response_is_a_regression_said_to_be_judged_by_thresholds(store: RunStore) -> None:
    base, slower = add_run(store), add_run(store, first_scale=1.3)
    result = load_comparison(store, base, slower)
    assert result.verdict is Verdict.REGRESSION
    for step in result.steps:  # the final response and the throughput did not move
        assert step.verdict is Verdict.REGRESSION
        assert step.stream is not None
        rise = step.stream.first(99).change_pct
        assert rise == pytest.approx(30.0, abs=0.3)  # to the histograms' resolution
        assert step.reasons == (
            f"first response p99 {rise:+.1f}% (max rise 10%; windows keep no stream data: "
            "judged by the thresholds alone)",
        )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    stream = data["steps"][0]["stream"]
    assert set(stream["first_response"]) == {"p50", "p90", "p95", "p99"}
    assert stream["first_response"]["p50"]["base_us"] == pytest.approx(50_000, rel=0.01)
    assert stream["first_response"]["p50"]["new_us"] == pytest.approx(65_000, rel=0.01)
    assert stream["responses_per_s"] == {"base": 400.0, "new": 400.0, "change_pct": 0.0}
    assert stream["responses_per_request"] == {"base": 8.0, "new": 8.0}
    # the gating percentile is the one asked for
    p50 = load_comparison(store, base, slower, Thresholds(percentile=50.0))
    assert re.match(r"first response p50 \+30\.\d% \(max rise 10%;", p50.steps[0].reasons[0])
    # a faster first response is an improvement, said the same way
    faster = load_comparison(store, slower, base)
    assert faster.verdict is Verdict.IMPROVEMENT
    (reason,) = faster.steps[0].reasons
    assert re.fullmatch(
        r"first response p99 -23\.\d% \(windows keep no stream data: judged by the thresholds alone\)", reason
    )


def test_a_first_response_within_the_threshold_passes(store: RunStore) -> None:
    result = load_comparison(store, add_run(store), add_run(store, first_scale=1.05))
    assert result.verdict is Verdict.PASS
    assert [s.reasons for s in result.steps] == [()] * 4
    assert result.warnings == ()
    assert load_comparison(store, 1, 2, Thresholds(max_latency_rise_pct=4.0)).verdict is Verdict.REGRESSION


def test_fewer_responses_per_second_is_a_regression_unless_within_the_windows_noise(
    store: RunStore,
) -> None:
    base = add_run(store)
    fewer = add_run(store, [dataclasses.replace(level, responses=6) for level in QUEUEING])
    (first, *_) = load_comparison(store, base, fewer).steps
    assert first.verdict is Verdict.REGRESSION
    assert first.reasons == ("responses/s -25.0% (max drop 5%)",)
    # half the requests one response short: -6.2%, beyond 5% but within two noisy runs' ±8.5%
    noisy = Level(1, 50.0, windows=(-0.06, 0.0, 0.06))
    base, short = add_run(store, [noisy]), add_run(store, [dataclasses.replace(noisy, short=REQUESTS // 2)])
    (step,) = load_comparison(store, base, short).steps
    assert step.verdict is Verdict.WITHIN_NOISE
    assert step.reasons == ("responses/s -6.2% (max drop 5%; noise ±8.5%)",)
    assert step.stream is not None and step.stream.new_responses_per_request == 7.5
    strict = load_comparison(store, base, short, Thresholds(noise_aware=False))
    assert strict.verdict is Verdict.REGRESSION
    assert strict.steps[0].reasons == ("responses/s -6.2% (max drop 5%)",)
    # quiet runs (±1.4% together): the same drop is a regression
    quiet = add_run(store, [Level(1, 50.0)]), add_run(store, [Level(1, 50.0, short=REQUESTS // 2)])
    assert load_comparison(store, *quiet).verdict is Verdict.REGRESSION


def test_a_streamed_run_against_a_unary_one_is_a_warning(store: RunStore) -> None:
    streamed, unary = add_run(store), add_run(store, streamed=False)
    result = load_comparison(store, unary, streamed)
    assert all(step.stream is None for step in result.steps)
    assert result.warnings[-1:] == (
        f"run {streamed} streamed its requests and run {unary} did not: the latency of a stream is the "
        "time to its final response; first responses and responses/s are not compared",
    )
    data = result.to_dict()
    assert "stream" not in data["steps"][0]  # unary steps' JSON is as before


# -- findings -------------------------------------------------------------------------------------


def _first_response(store: RunStore, run_id: int) -> list[Finding]:
    data = read_run_data(store, run_id)
    return [f for f in run_findings(data.run, data.steps) if f.kind is Kind.FIRST_RESPONSE]


def test_the_finding_says_from_which_load_requests_queue_before_their_first_response(
    store: RunStore,
) -> None:
    run_id = add_run(store)
    (finding,) = _first_response(store, run_id)
    steps = read_run_data(store, run_id).steps
    alone, grown = (steps["first_response_p50_us"][i] / 1000 for i in (0, 2))
    assert alone == pytest.approx(50, rel=0.01) and grown == pytest.approx(90, rel=0.01)
    assert finding == Finding(
        Kind.FIRST_RESPONSE,
        Severity.INFO,
        f"requests queue before their first response from concurrency 4: first response p50 "
        f"{grown:.1f} ms vs {alone:.1f} ms alone",
        2,
    )


def test_a_first_response_that_holds_with_load_is_said_too(store: RunStore) -> None:
    flat = (Level(2, 50.0), Level(4, 60.0), Level(8, 70.0))
    (finding,) = _first_response(store, add_run(store, flat))
    assert finding.step_index == 2 and finding.severity is Severity.INFO
    assert re.fullmatch(
        r"time to first response holds with load: first response p50 70\.\d ms at concurrency 8 "
        r"vs 50\.\d ms at concurrency 2 \(within 1\.5x\)",
        finding.text,
    ), finding.text


def test_no_first_response_finding_for_a_unary_run_or_a_single_step(store: RunStore) -> None:
    assert _first_response(store, add_run(store, streamed=False)) == []
    assert _first_response(store, add_run(store, QUEUEING[:1])) == []


def test_the_first_response_finding_ranks_with_what_the_numbers_say() -> None:
    said = RANK.index(Kind.FIRST_RESPONSE)
    assert RANK.index(Kind.KNEE) < RANK.index(Kind.THROUGHPUT_FALLS) < said < RANK.index(Kind.DOMINANT)
    assert said < RANK.index(Kind.UNSTABLE) and said > RANK.index(Kind.ERRORS)
    assert sorted(RANK) == sorted(Kind)
