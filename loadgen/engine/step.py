"""One step: warm-up, then measurement windows until stable, with the server's view beside it.

perf_analyzer's method, with two differences users ask for: an unstable step is
returned (flagged), never dropped, and the server's ``/stats`` are snapshotted at
every window boundary so the stored delta covers exactly the measured windows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from loadgen.config import MeasurementSettings
from loadgen.engine.closed_loop import ClosedLoop
from loadgen.engine.recorder import Window
from loadgen.histogram import LatencyHistogram
from loadgen.results import ModelStats, StepResult, WindowResult
from loadgen.scrape.metrics import MetricsScraper

STABILITY_WINDOWS = 3


class StepListener(Protocol):
    """Progress callbacks (the console implements them); must be quick."""

    def step_started(self, index: int, level: int) -> None: ...

    def window_done(self, index: int, trial: int, window: WindowResult) -> None: ...

    def step_done(self, step: StepResult) -> None: ...


def is_stable(windows: Sequence[WindowResult], percentage: float) -> bool:
    """The last 3 windows' throughput and mean latency each lie within ``percentage`` of their mean."""
    if len(windows) < STABILITY_WINDOWS:
        return False
    last = windows[-STABILITY_WINDOWS:]
    for values in ([w.throughput for w in last], [w.mean_latency_us for w in last]):
        if any(v <= 0 or math.isnan(v) for v in values):
            return False
        mean = sum(values) / len(values)
        if any(abs(v - mean) > mean * percentage / 100.0 for v in values):
            return False
    return True


StatsSource = Callable[[], Awaitable[ModelStats]]


async def measure_step(
    index: int,
    load: ClosedLoop,
    settings: MeasurementSettings,
    *,
    batch_size: int,
    stats: StatsSource | None = None,
    scraper: MetricsScraper | None = None,
    listener: StepListener | None = None,
) -> StepResult:
    """Run ``load`` through warm-up and windows; returns the measured step.

    Errors from ``stats`` (the server went away) propagate: the caller decides the run's fate.
    """
    started_at = datetime.now(UTC)
    if listener:
        listener.step_started(index, load.concurrency)
    if scraper:
        scraper.drain()
        scraper.start()
    load.start()
    try:
        await asyncio.sleep(settings.warmup_ms / 1000.0)
        windows: list[WindowResult] = []
        histograms: list[LatencyHistogram] = []
        errors: list[dict[str, int]] = []
        snapshots: list[ModelStats | None] = [await stats() if stats else None]
        interval = settings.measurement_interval_ms / 1000.0
        cut = time.perf_counter()
        load.swap(Window())
        while True:
            await asyncio.sleep(max(0.0, cut + interval - time.perf_counter()))
            now = time.perf_counter()
            window = load.swap(Window())
            duration, cut = now - cut, now
            snapshots.append(await stats() if stats else None)
            result = window.result(duration, batch_size)
            windows.append(result)
            histograms.append(window.histogram)
            errors.append(window.errors)
            if listener:
                listener.window_done(index, len(windows), result)
            stable = is_stable(windows, settings.stability_percentage)
            if stable or len(windows) >= settings.max_trials:
                break
    finally:
        await load.stop()
        if scraper:
            await scraper.stop()

    kept = slice(-min(STABILITY_WINDOWS, len(windows)), None)
    used = windows[kept]
    merged_errors: dict[str, int] = {}
    for window_errors in errors[kept]:
        for reason, count in window_errors.items():
            merged_errors[reason] = merged_errors.get(reason, 0) + count
    server, reset = _server_delta(snapshots[-len(used) - 1], snapshots[-1])
    return StepResult(
        index=index,
        concurrency=load.concurrency,
        started_at=started_at,
        duration_s=sum(w.duration_s for w in used),
        request_count=sum(w.request_count for w in used),
        inference_count=sum(w.inference_count for w in used),
        histogram=LatencyHistogram.merged(histograms[kept]),
        errors=merged_errors,
        stable=stable,
        trials=len(windows),
        windows=windows,
        server_stats=server,
        server_stats_reset=reset,
        metrics=scraper.drain() if scraper else [],
    )


def _server_delta(first: ModelStats | None, last: ModelStats | None) -> tuple[ModelStats | None, bool]:
    if first is None or last is None:
        return None, False
    delta = last - first
    if delta.went_down():
        return None, True
    return delta, False
