"""loadgen's own Prometheus metrics while a sweep runs (``loadgen sweep --exporter-port 9108``).

Nothing here runs per request: the engine hands each finished measurement window
to a sweep's :class:`ExporterFeed` (a :class:`StepListener` from :meth:`SweepExporter.feed`),
which adds the window's counts and merges its latency histogram into its model's running
totals under the exporter's lock. One custom
collector turns those totals into metric families when Prometheus scrapes, on
prometheus-client's own server thread, from a private registry.

Warm-up is not counted (the engine records it nowhere), so the counters cover
exactly the measured windows, the same requests the runs database holds.
A streamed sweep (``--streaming``) also serves its responses' timing: :data:`STREAM_METRIC_NAMES`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from loadgen.config import SweepSettings
from loadgen.engine.recorder import Window
from loadgen.engine.step import StepListener
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, StepResult, WindowResult
from loadgen.tallies import StreamTally

DEFAULT_EXPORTER_PORT = 9108
"""The port the docs, docker-compose and Prometheus config use (9108 is free in Prometheus's port list)."""

DEFAULT_EXPORTER_ADDR = "127.0.0.1"
"""Loopback only: the metrics name models, versions and runs, so serving them to the network is a choice
(``--exporter-addr 0.0.0.0`` for a Prometheus in another container or host)."""

LATENCY_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Latency bucket bounds in seconds: 50 us (a local identity model) to 60 s (the histogram's top)."""

METRIC_NAMES = (
    "loadgen_requests_total",
    "loadgen_inferences_total",
    "loadgen_request_failures_total",
    "loadgen_inference_failures_total",
    "loadgen_request_latency_seconds",
    "loadgen_in_flight_requests",
    "loadgen_target_concurrency",
    "loadgen_target_request_rate",
    "loadgen_step_index",
    "loadgen_run_info",
)
"""Every metric the exporter serves (sample names without ``_bucket``/``_sum``/``_count``/``_created``)."""

STREAM_METRIC_NAMES = (
    "loadgen_first_response_seconds",
    "loadgen_inter_response_seconds",
    "loadgen_responses_total",
)
"""Served besides :data:`METRIC_NAMES` for the models of streamed sweeps (``--streaming``) only."""

MAX_REASON_LABEL = 40


def reason_label(reason: str) -> str:
    """A short, stable failure label: the code before the first ":" (``UNAVAILABLE``, ``CONNECTION``).

    The full messages stay in the runs database; a label must not carry per-request
    text, or every distinct message would become its own time series.
    """
    head = reason.split(":", 1)[0].strip()
    return head[:MAX_REASON_LABEL] or "unknown"


@dataclass
class _Totals:
    """Everything the exporter serves, guarded by the exporter's lock."""

    requests: int = 0
    inferences: int = 0
    failed_requests: dict[str, int] = field(default_factory=dict)
    failed_inferences: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    in_flight: float = 0.0
    target_concurrency: float = 0.0
    target_rate: float = 0.0
    step_index: int = -1
    version: str = ""
    stream: StreamTally | None = None
    """Streamed sweeps: time to first response, gaps between responses, responses (no ``counts``)."""

    def snapshot(self) -> _Totals:
        stream = self.stream
        if stream is not None:
            stream = StreamTally(
                first=stream.first.copy(), gaps=stream.gaps.copy(), responses=stream.responses
            )
        return _Totals(
            self.requests,
            self.inferences,
            dict(self.failed_requests),
            dict(self.failed_inferences),
            self.latency.copy(),
            self.in_flight,
            self.target_concurrency,
            self.target_rate,
            self.step_index,
            self.version,
            stream,
        )


def cumulative_buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Prometheus ``le`` buckets (seconds, cumulative, ending with ``+Inf``) from a latency histogram.

    A histogram bucket counts toward a bound when its lowest value is within it, so the
    split is exact to the histogram's resolution (0.1%). Values below zero count in
    every bucket, values above 60 s only in ``+Inf``.
    """
    bounds_us = [bound * 1e6 for bound in LATENCY_BUCKETS_S]
    counts = [0] * len(bounds_us)
    position = 0
    for low, _high, count in histogram.iter_buckets():
        while position < len(bounds_us) and low > bounds_us[position]:
            position += 1
        if position == len(bounds_us):
            break
        counts[position] += count
    buckets: list[tuple[str, float]] = []
    running = histogram.underflow
    for bound, count in zip(LATENCY_BUCKETS_S, counts, strict=True):
        running += count
        buckets.append((format(bound, "g"), float(running)))
    buckets.append(("+Inf", float(histogram.count)))
    return buckets


class SweepExporter:
    """Serves sweeps' progress as Prometheus metrics, one series per model.

    Each sweep gets a :meth:`feed` (a :class:`StepListener`); several models measured at
    once feed their own series. Use as a context manager, or call :meth:`start` and
    :meth:`close`. A taken port or an address this machine does not have is a
    :class:`ConfigError` (one line, exit 2), raised before any load is sent.
    """

    def __init__(self, port: int, addr: str | None = None) -> None:
        if not 0 < port < 65536:
            raise ConfigError(f"--exporter-port must be within 1..65535, got {port}")
        self.port = port
        self.addr = DEFAULT_EXPORTER_ADDR if addr is None else addr
        self.lock = threading.Lock()
        self.series: dict[str, _Totals] = {}
        """Totals per model: they continue across runs (a scheduler measures a model again and again)."""
        self.run: dict[str, str] = {}
        """The run being measured (the last one created): ``loadgen_run_info``."""
        self.registry = CollectorRegistry()
        self.registry.register(_SweepCollector(self))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- serving ---------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.addr, registry=self.registry)
        except OSError as exc:  # a taken port, or an address not on this machine (gaierror included)
            raise ConfigError(
                f"cannot serve metrics on port {self.port} of {self.addr} "
                f"(--exporter-port, --exporter-addr): {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def feed(self, settings: SweepSettings) -> ExporterFeed:
        """A sweep of ``settings`` starts: its model's series continue where they were (counters
        stay monotonic across a scheduler's runs) and its targets start afresh. The run info
        keeps naming the previous run until this sweep's run is created."""
        with self.lock:
            totals = self.series.setdefault(settings.model, _Totals(version=settings.model_version))
            totals.step_index, totals.in_flight = -1, 0.0
            totals.target_concurrency = totals.target_rate = 0.0
            if settings.streaming and totals.stream is None:  # served from the start, at zero
                totals.stream = StreamTally()
        return ExporterFeed(self, settings, totals)

    def snapshot(self) -> tuple[list[tuple[str, _Totals]], dict[str, str]]:
        """A consistent copy of every model's totals and of the run info, taken under the lock."""
        with self.lock:
            series = [(model, totals.snapshot()) for model, totals in sorted(self.series.items())]
            return series, dict(self.run)


class ExporterFeed(StepListener):
    """One sweep's windows into its model's series (fed at window cuts, never per request)."""

    def __init__(self, exporter: SweepExporter, settings: SweepSettings, totals: _Totals) -> None:
        self.exporter, self.totals = exporter, totals
        self.model, self.scenario, self.batch_size = settings.model, settings.scenario, settings.batch_size

    def run_created(self, run_id: int, info: RunInfo) -> None:
        """The run is recorded: its id (and the resolved model version) label what follows."""
        with self.exporter.lock:
            self.totals.version = info.model_version
            self.exporter.run = {
                "run_id": str(run_id),
                "model": self.model,
                "version": info.model_version,
                "scenario": self.scenario,
            }

    def step_started(self, index: int, level: float) -> None:
        with self.exporter.lock:
            totals = self.totals
            totals.step_index = index
            if self.scenario == "concurrency":
                totals.target_concurrency = totals.in_flight = level
            else:
                totals.target_rate = level

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        with self.exporter.lock:
            totals = self.totals
            totals.requests += result.request_count
            totals.inferences += result.inference_count
            for reason, count in window.errors.items():
                label = reason_label(reason)
                totals.failed_requests[label] = totals.failed_requests.get(label, 0) + count
                totals.failed_inferences[label] = (
                    totals.failed_inferences.get(label, 0) + count * self.batch_size
                )
            totals.latency.merge(window.histogram)
            if window.stream is not None:
                if totals.stream is None:
                    totals.stream = StreamTally()
                totals.stream.first.merge(window.stream.first)
                totals.stream.gaps.merge(window.stream.gaps)
                totals.stream.responses += window.stream.responses
            if self.scenario != "concurrency" and result.duration_s > 0:
                # Little's law (in flight = completion rate x time in system): open loop has no fixed count
                mean_s = result.mean_latency_us / 1e6
                rate = result.request_count / result.duration_s
                totals.in_flight = 0.0 if math.isnan(mean_s) else rate * mean_s

    def step_done(self, step: StepResult) -> None:
        with self.exporter.lock:
            self.totals.in_flight = 0.0


class _SweepCollector(Collector):
    """Builds the metric families from one snapshot per scrape (bucket sums outside the lock)."""

    def __init__(self, exporter: SweepExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        series, run = self.exporter.snapshot()
        names = ["model", "version"]

        def counter(name: str, doc: str, value: Callable[[_Totals], float]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            for model, totals in series:
                family.add_metric([model, totals.version], value(totals))
            return family

        def gauge(name: str, doc: str, value: Callable[[_Totals], float]) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            for model, totals in series:
                family.add_metric([model, totals.version], value(totals))
            return family

        def by_reason(
            name: str, doc: str, values: Callable[[_Totals], dict[str, int]]
        ) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=[*names, "reason"])
            for model, totals in series:
                for reason, count in sorted(values(totals).items()):
                    family.add_metric([model, totals.version, reason], count)
            return family

        yield counter(
            "loadgen_requests", "Requests completed successfully in measured windows.", lambda t: t.requests
        )
        yield counter(
            "loadgen_inferences",
            "Inferences completed successfully (a request of batch size B counts B).",
            lambda t: t.inferences,
        )
        yield by_reason(
            "loadgen_request_failures", "Requests that failed, by status.", lambda t: t.failed_requests
        )
        yield by_reason(
            "loadgen_inference_failures", "Inferences that failed, by status.", lambda t: t.failed_inferences
        )
        latency = HistogramMetricFamily(
            "loadgen_request_latency_seconds",
            "Client-side request latency (open loop: from the intended send time).",
            labels=names,
        )
        for model, totals in series:
            latency.add_metric(
                [model, totals.version], cumulative_buckets(totals.latency), totals.latency.sum_us / 1e6
            )
        yield latency
        yield from _stream_families(series, names)
        yield gauge(
            "loadgen_in_flight_requests",
            "Requests in flight: the step's concurrency (closed loop) or completion rate x latency (open).",
            lambda t: t.in_flight,
        )
        yield gauge(
            "loadgen_target_concurrency",
            "The current step's concurrency (closed loop).",
            lambda t: t.target_concurrency,
        )
        yield gauge(
            "loadgen_target_request_rate",
            "The current step's target rate in requests/s (open loop).",
            lambda t: t.target_rate,
        )
        yield gauge(
            "loadgen_step_index", "Index of the current step (-1 before the first).", lambda t: t.step_index
        )
        if run:
            info = InfoMetricFamily("loadgen_run", "The run being measured (id in the runs database).")
            info.add_metric([], run)
            yield info


def _stream_families(series: list[tuple[str, _Totals]], names: list[str]) -> Iterator[Metric]:
    """The responses' timing of the models measured with ``--streaming`` (nothing without one)."""
    streamed = [(model, totals, totals.stream) for model, totals in series if totals.stream is not None]
    if not streamed:
        return
    parts: tuple[tuple[str, str, Callable[[StreamTally], LatencyHistogram]], ...] = (
        (
            "loadgen_first_response_seconds",
            "Streams: time to the first response (open loop: from the intended send).",
            lambda s: s.first,
        ),
        (
            "loadgen_inter_response_seconds",
            "Streams: time between two responses of a request.",
            lambda s: s.gaps,
        ),
    )
    for name, doc, part in parts:
        family = HistogramMetricFamily(name, doc, labels=names)
        for model, totals, stream in streamed:
            histogram = part(stream)
            family.add_metric([model, totals.version], cumulative_buckets(histogram), histogram.sum_us / 1e6)
        yield family
    responses = CounterMetricFamily(
        "loadgen_responses", "Streams: responses that carried outputs, in measured windows.", labels=names
    )
    for model, totals, stream in streamed:
        responses.add_metric([model, totals.version], stream.responses)
    yield responses
