"""The live exporter without a server: metric names, histogram buckets, gauges, serving, a taken port."""

from __future__ import annotations

import math
import socket
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.config import SweepSettings
from loadgen.engine.recorder import Window
from loadgen.errors import ConfigError
from loadgen.exporter import (
    LATENCY_BUCKETS_S,
    METRIC_NAMES,
    STREAM_METRIC_NAMES,
    ExporterFeed,
    SweepExporter,
    cumulative_buckets,
    reason_label,
)
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, StepResult

README = Path(__file__).resolve().parents[2] / "README.md"


def _settings(scenario: str = "concurrency", batch_size: int = 1) -> SweepSettings:
    return SweepSettings(model="identity", levels=(1.0, 2.0), scenario=scenario, batch_size=batch_size)  # type: ignore[arg-type]


def _window(latencies_us: list[int], errors: dict[str, int] | None = None) -> Window:
    window = Window()
    for latency in latencies_us:
        window.record(latency * 1000)
    for reason, count in (errors or {}).items():
        for _ in range(count):
            window.error(reason)
    return window


def _info(run_id: int = 7) -> RunInfo:
    return RunInfo(
        settings={},
        model="identity",
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        started_at=datetime.now(UTC),
    )


def _exporter(settings: SweepSettings) -> tuple[SweepExporter, ExporterFeed]:
    exporter = SweepExporter(_free_port())
    return exporter, exporter.feed(settings)


def _feed(feed: ExporterFeed, index: int, window: Window, duration_s: float = 1.0) -> None:
    feed.window_done(index, 1, window.result(duration_s, feed.batch_size), window)


def _samples(exporter: SweepExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(exporter.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(exporter: SweepExporter, name: str, **labels: str) -> float:
    return _pick(_samples(exporter), name, **labels)


def _pick(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    wanted = {"model": "identity", "version": "1", **labels}
    for (sample, sample_labels), value in samples.items():
        if sample == name and dict(sample_labels) == wanted:
            return value
    raise AssertionError(f"no sample {name}{wanted}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metric_names_are_the_documented_ones() -> None:
    exporter, feed = _exporter(_settings())
    feed.run_created(7, _info())
    feed.step_started(0, 1)
    _feed(feed, 0, _window([100, 200], {"UNAVAILABLE: Socket closed": 1}))
    served = set()
    for family in text_string_to_metric_families(generate_latest(exporter.registry).decode()):
        for sample in family.samples:
            name = sample.name
            for suffix in ("_bucket", "_count", "_sum", "_created"):
                if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
                    name = name.removesuffix(suffix)
            served.add(name)
    assert served == set(METRIC_NAMES)
    readme = README.read_text(encoding="utf-8")
    assert [name for name in METRIC_NAMES if f"`{name}`" not in readme] == []


def test_latency_buckets_are_cumulative_seconds_read_from_the_histogram() -> None:
    values_us = [30, 70, 70, 400, 900, 3_000, 40_000, 2_000_000, 61_000_000]
    histogram = LatencyHistogram()
    histogram.record_many_us(values_us)
    buckets = cumulative_buckets(histogram)
    assert [le for le, _ in buckets] == [format(b, "g") for b in LATENCY_BUCKETS_S] + ["+Inf"]
    for (le, count), bound in zip(buckets, LATENCY_BUCKETS_S, strict=False):
        assert count == sum(v <= bound * 1e6 for v in values_us), le
    assert buckets[-1] == ("+Inf", len(values_us))  # 61 s is beyond the histogram: only in +Inf
    assert LATENCY_BUCKETS_S[0] == 50e-6 and LATENCY_BUCKETS_S[-1] == 60.0


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("UNAVAILABLE: Exceeds maximum queue size", "UNAVAILABLE"),
        ("CONNECTION: cannot connect to 127.0.0.1:8001: Connection refused", "CONNECTION"),
        ("INVALID_ARGUMENT: unexpected shape for input 'INPUT0'", "INVALID_ARGUMENT"),
        ("HTTP 502: bad gateway", "HTTP 502"),
        ("", "unknown"),
        ("x" * 300, "x" * 40),
    ],
)
def test_failure_reasons_become_short_stable_labels(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def test_counters_gauges_and_run_info_follow_the_sweep() -> None:
    exporter, feed = _exporter(_settings(batch_size=4))
    assert _value(exporter, "loadgen_step_index", version="") == -1
    assert not any(name == "loadgen_run_info" for name, _ in _samples(exporter))  # no run yet
    feed.run_created(7, _info())
    feed.step_started(0, 8)
    assert _value(exporter, "loadgen_in_flight_requests") == 8
    assert _value(exporter, "loadgen_target_concurrency") == 8
    _feed(feed, 0, _window([100] * 10, {"UNAVAILABLE: a": 2, "UNAVAILABLE: b": 1, "HTTP 503: c": 1}))
    _feed(feed, 0, _window([300] * 5))
    assert _value(exporter, "loadgen_requests_total") == 15
    assert _value(exporter, "loadgen_inferences_total") == 60
    assert _value(exporter, "loadgen_request_failures_total", reason="UNAVAILABLE") == 3
    assert _value(exporter, "loadgen_request_failures_total", reason="HTTP 503") == 1
    assert _value(exporter, "loadgen_inference_failures_total", reason="UNAVAILABLE") == 12
    assert _value(exporter, "loadgen_request_latency_seconds_count") == 15
    assert math.isclose(_value(exporter, "loadgen_request_latency_seconds_sum"), 0.0025)
    assert _value(exporter, "loadgen_request_latency_seconds_bucket", le="0.0001") == 10
    assert _value(exporter, "loadgen_request_latency_seconds_bucket", le="0.0005") == 15
    info = {"model": "identity", "version": "1", "run_id": "7", "scenario": "concurrency"}
    assert _value(exporter, "loadgen_run_info", **info) == 1
    feed.step_done(StepResult(0, 8, datetime.now(UTC), 1.0, 15, 60, LatencyHistogram()))
    assert _value(exporter, "loadgen_in_flight_requests") == 0
    feed.step_started(1, 16)
    assert _value(exporter, "loadgen_step_index") == 1
    assert _value(exporter, "loadgen_target_concurrency") == 16


def test_open_loop_in_flight_is_littles_law() -> None:
    exporter, feed = _exporter(_settings(scenario="request_rate"))
    feed.run_created(1, _info())
    feed.step_started(0, 200.0)
    assert _value(exporter, "loadgen_target_request_rate") == 200
    assert _value(exporter, "loadgen_target_concurrency") == 0
    _feed(feed, 0, _window([5_000] * 100), duration_s=0.5)  # 200 completions/s x 5 ms
    assert math.isclose(_value(exporter, "loadgen_in_flight_requests"), 1.0)


def test_scrapes_while_windows_arrive_see_consistent_totals() -> None:
    exporter, feed = _exporter(_settings())
    feed.run_created(1, _info())
    seen: list[tuple[float, float]] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            samples = _samples(exporter)  # one scrape
            seen.append(
                (
                    _pick(samples, "loadgen_requests_total"),
                    _pick(samples, "loadgen_request_latency_seconds_count"),
                )
            )

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for _ in range(300):
            _feed(feed, 0, _window([100, 200, 300]))
    finally:
        done.set()
        thread.join()
    assert seen and all(requests == count for requests, count in seen)
    assert _value(exporter, "loadgen_requests_total") == 900


def test_serves_http_until_closed() -> None:
    port = _free_port()
    with SweepExporter(port, addr="127.0.0.1") as exporter:
        exporter.feed(_settings()).run_created(3, _info())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'loadgen_run_info{model="identity",run_id="3",scenario="concurrency",version="1"} 1.0' in body
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_taken_port_is_a_one_line_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = SweepExporter(port)
        with pytest.raises(ConfigError) as caught:
            exporter.start()
    message = str(caught.value)
    assert f"port {port}" in message and "--exporter-port" in message and "\n" not in message
    with pytest.raises(ConfigError, match="1..65535"):
        SweepExporter(70000)


def test_a_scheduler_exporter_keeps_one_series_per_model_across_runs() -> None:
    exporter = SweepExporter(_free_port())
    identity = _settings()
    other = SweepSettings(model="fixed_latency", levels=(1.0,), model_version="1")
    for settings, latencies in ((identity, [100, 200]), (other, [10_000]), (identity, [300])):
        feed = exporter.feed(settings)
        feed.run_created(7, _info())
        feed.step_started(0, 1)
        _feed(feed, 0, _window(latencies))
    samples = _samples(exporter)
    assert _pick(samples, "loadgen_requests_total") == 3  # identity: 2 + 1, counters continue
    assert _pick(samples, "loadgen_requests_total", model="fixed_latency") == 1
    assert sum(1 for name, _ in samples if name == "loadgen_run_info") == 1  # only the run being measured


def test_models_measured_at_the_same_time_feed_their_own_series() -> None:
    exporter = SweepExporter(_free_port())
    identity = exporter.feed(_settings())
    fixed = exporter.feed(SweepSettings(model="fixed_latency", levels=(2.0,), batch_size=2))
    identity.step_started(0, 1)
    fixed.step_started(0, 2)
    for _ in range(3):  # windows of the two sweeps interleave
        _feed(identity, 0, _window([100]))
        _feed(fixed, 0, _window([10_000, 10_000]))
    samples = _samples(exporter)
    assert _pick(samples, "loadgen_requests_total", version="") == 3
    assert _pick(samples, "loadgen_requests_total", model="fixed_latency", version="") == 6
    assert _pick(samples, "loadgen_inferences_total", model="fixed_latency", version="") == 12
    assert _pick(samples, "loadgen_target_concurrency", model="fixed_latency", version="") == 2
    assert _pick(samples, "loadgen_target_concurrency", version="") == 1


# -- streamed sweeps: first response, gaps between responses, responses ---------------------------


def _stream_window(first_us: list[int], gap_us: int, responses: int) -> Window:
    """A window of streamed requests: each answers ``responses`` times, the first after its
    ``first_us``, the others ``gap_us`` apart."""
    window = Window()
    for first in first_us:
        arrivals = [(first + n * gap_us) * 1000 for n in range(responses)]
        window.record_stream(0, arrivals[-1], arrivals)
    return window


def _served(exporter: SweepExporter) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(generate_latest(exporter.registry).decode()):
        for sample in family.samples:
            name = sample.name
            for suffix in ("_bucket", "_count", "_sum", "_created"):
                name = name.removesuffix(suffix) if name.endswith(suffix) else name
            names.add(name)
    return names


def test_a_streamed_sweep_serves_first_response_gaps_and_responses() -> None:
    settings = SweepSettings(model="identity", levels=(1.0,), streaming=True)
    exporter, feed = _exporter(settings)
    # served from the start, at zero: a dashboard's rate() has a first point
    assert _value(exporter, "loadgen_responses_total", version="") == 0
    assert _value(exporter, "loadgen_first_response_seconds_count", version="") == 0
    feed.run_created(7, _info())
    feed.step_started(0, 2)
    _feed(feed, 0, _stream_window([40_000, 60_000], gap_us=10_000, responses=8))
    _feed(feed, 0, _stream_window([300_000], gap_us=20_000, responses=3))
    assert _value(exporter, "loadgen_requests_total") == 3
    assert _value(exporter, "loadgen_responses_total") == 19
    first = "loadgen_first_response_seconds"
    assert _value(exporter, f"{first}_count") == 3
    assert math.isclose(_value(exporter, f"{first}_sum"), 0.4, rel_tol=1e-3)
    assert _value(exporter, f"{first}_bucket", le="0.025") == 0
    assert _value(exporter, f"{first}_bucket", le="0.05") == 1
    assert _value(exporter, f"{first}_bucket", le="0.1") == 2
    assert _value(exporter, f"{first}_bucket", le="0.25") == 2
    assert _value(exporter, f"{first}_bucket", le="0.5") == 3
    gaps = "loadgen_inter_response_seconds"
    assert _value(exporter, f"{gaps}_count") == 2 * 7 + 2
    assert math.isclose(_value(exporter, f"{gaps}_sum"), 14 * 0.01 + 2 * 0.02, rel_tol=1e-3)
    assert _value(exporter, f"{gaps}_bucket", le="0.01") == 14
    assert _value(exporter, f"{gaps}_bucket", le="0.025") == 16
    # the same buckets as the request latency's: one dashboard query shape for all three
    les = [
        le
        for (name, labels), _ in _samples(exporter).items()
        if name == f"{first}_bucket"
        for k, le in labels
        if k == "le"
    ]
    assert les == [format(b, "g") for b in LATENCY_BUCKETS_S] + ["+Inf"]
    assert set(STREAM_METRIC_NAMES) <= _served(exporter)
    # the request latency stays the time to the final response
    assert _value(exporter, "loadgen_request_latency_seconds_count") == 3
    assert math.isclose(
        _value(exporter, "loadgen_request_latency_seconds_sum"), 0.11 + 0.13 + 0.34, rel_tol=1e-3
    )


def test_a_unary_sweep_serves_no_stream_metrics() -> None:
    exporter, feed = _exporter(_settings())
    feed.run_created(7, _info())
    feed.step_started(0, 1)
    _feed(feed, 0, _window([100, 200]))
    assert _served(exporter) & set(STREAM_METRIC_NAMES) == set()


def test_only_the_streamed_model_gets_stream_series() -> None:
    exporter = SweepExporter(_free_port())
    unary = exporter.feed(_settings())
    streamed = exporter.feed(SweepSettings(model="token_stream", levels=(1.0,), streaming=True))
    _feed(unary, 0, _window([100]))
    _feed(streamed, 0, _stream_window([50_000], gap_us=10_000, responses=4))
    samples = _samples(exporter)
    assert _pick(samples, "loadgen_responses_total", model="token_stream", version="") == 4
    with pytest.raises(AssertionError, match="no sample"):
        _pick(samples, "loadgen_responses_total", version="")
