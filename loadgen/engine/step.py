"""One step: warm-up, then measurement windows until stable, with the server's view beside it.

perf_analyzer's method, with two differences users ask for: an unstable step is
returned (flagged), never dropped, and the server's ``/stats`` are snapshotted at
every window boundary so the stored delta covers exactly the measured windows.

A server that goes away mid-step (its ``/stats`` call fails as unavailable) cuts the step
short: the window it went away in is dropped (only its errors are kept, they show the
outage), the windows before it make the step, which is returned marked ``interrupted``
for the sweep to decide. A model unloaded mid-step (its
statistics unreadable for a window) leaves no trustworthy delta: it is discarded and flagged,
as a reload is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from loadgen.batches import BATCHES_PER_WINDOW
from loadgen.config import MeasurementSettings
from loadgen.engine.precision import Measured, batch_durations, still_warming, stop_rules_met
from loadgen.engine.recorder import OpenWindow, Window
from loadgen.errors import ServerUnavailable, UnknownModel
from loadgen.histogram import LatencyHistogram
from loadgen.results import (
    STABILITY_WINDOWS,
    ModelStats,
    StatsSnapshot,
    StepResult,
    WindowResult,
    WorkerRow,
    spread_pct,
    top_reasons,
)
from loadgen.scrape.metrics import MetricsScraper
from loadgen.tallies import SequenceTally, StreamTally, ValidationTally


class StepListener:
    """Callbacks while a sweep runs (console progress, live exporter); each must be quick.

    ``window_done`` gets the window's summary and the raw :class:`Window` (counts,
    errors, latency histogram) so a listener can keep running totals without
    touching the hot path. The base class does nothing: override what you need.
    """

    def step_started(self, index: int, level: float) -> None:
        return None

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        return None

    def step_done(self, step: StepResult) -> None:
        return None

    def server_lost(self, reason: str, wait_s: float) -> None:
        """The server went away mid-step; the sweep waits ``wait_s`` for it (0: the run ends)."""
        return None


class Listeners(StepListener):
    """Fans each callback out to several listeners, in order."""

    def __init__(self, *listeners: StepListener | None) -> None:
        self.listeners = [listener for listener in listeners if listener is not None]

    def step_started(self, index: int, level: float) -> None:
        for listener in self.listeners:
            listener.step_started(index, level)

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        for listener in self.listeners:
            listener.window_done(index, number, result, window)

    def step_done(self, step: StepResult) -> None:
        for listener in self.listeners:
            listener.step_done(step)

    def server_lost(self, reason: str, wait_s: float) -> None:
        for listener in self.listeners:
            listener.server_lost(reason, wait_s)


def is_stable(windows: Sequence[WindowResult], percentage: float) -> bool:
    """The last 3 windows' throughput and mean latency each lie within ``percentage`` of their mean."""
    if len(windows) < STABILITY_WINDOWS:
        return False
    last = windows[-STABILITY_WINDOWS:]
    for values in ([w.throughput for w in last], [w.mean_latency_us for w in last]):
        if any(not v > 0 for v in values) or not spread_pct(values) <= percentage:
            return False
    return True


StatsSource = Callable[[], Awaitable[StatsSnapshot]]


async def _snapshot(stats: StatsSource | None) -> StatsSnapshot | None:
    """The server's counters now; None without a source or while the model is not loaded.
    ServerUnavailable (the server went away) propagates."""
    if stats is None:
        return None
    try:
        return await stats()
    except UnknownModel:  # unloaded (a reload in progress): this boundary has no counters
        return None


class LoadGenerator(Protocol):
    """What a step needs of a load: closed (:class:`ClosedLoop`), open (:class:`OpenLoop`), or
    either spread over workers, processes or Ray actors (:class:`~loadgen.engine.pooled.PooledLoad`)."""

    level: float
    concurrency: int

    def start(self) -> None: ...

    def mark(self) -> None:
        """End a batch of the current window (:class:`~loadgen.batches.Batches`)."""
        ...

    async def cut(self) -> Window:
        """Start a new window; returns the one that ends (the warm-up's, at the first cut)."""
        ...

    async def stop(self) -> int: ...


@runtime_checkable
class SplitLoad(Protocol):
    """A load spread over workers, which says what each did in the kept windows."""

    def worker_rows(self, kept: Sequence[Window]) -> list[WorkerRow]: ...


async def measure_step(
    index: int,
    load: LoadGenerator,
    settings: MeasurementSettings,
    *,
    batch_size: int,
    stats: StatsSource | None = None,
    scraper: MetricsScraper | None = None,
    listener: StepListener | None = None,
    request_rate: float | None = None,
    untraced: Callable[[], Awaitable[None]] | None = None,
) -> StepResult:
    """Run ``load`` through warm-up and windows; returns the measured step.

    A server that went away ends the step early, marked ``interrupted`` (see the module
    docstring): the caller decides the run's fate. ``untraced`` (``--trace-rate``) turns tracing
    off for one more window of the same load, whose throughput says what tracing costs.
    """
    started_at = datetime.now(UTC)
    if listener:
        listener.step_started(index, load.level)
    failed_scrapes = scraper.failures if scraper else 0
    if scraper:
        scraper.drain()
        scraper.start()
    load.start()
    in_flight_at_end = 0
    results: list[WindowResult] = []
    windows: list[Window] = []
    durations: list[list[float]] = []
    """Each window's batches' lengths, seconds."""
    settled = 0
    """The first measured window: those before it were still warming up (``--detect-warmup``)."""
    snapshots: list[StatsSnapshot | None] = []
    stable, interrupted = False, None
    lost: Window | None = None
    """The window the server went away in: dropped, but its errors say what the outage did."""
    untraced_throughput = None
    try:
        await asyncio.sleep(settings.warmup_ms / 1000.0)
        snapshots.append(await _snapshot(stats))
        interval = settings.measurement_interval_ms / 1000.0
        cut = time.perf_counter()
        await load.cut()  # the warm-up's window: discarded
        while True:
            marks = await _through_window(load, cut, interval)
            now = time.perf_counter()
            window = lost = await load.cut()
            duration, opened, cut = now - cut, cut, now
            snapshots.append(await _snapshot(stats))
            lost = None
            result = window.result(duration, batch_size)
            results.append(result)
            windows.append(window)
            durations.append(batch_durations(opened, marks, now, len(window.batches)))
            if listener:
                listener.window_done(index, len(results), result, window)
            while settings.detect_warmup and settled < min(len(windows) - 1, settings.max_windows // 2):
                if not still_warming(windows[settled]):
                    break
                settled += 1
            if settings.stop_when:
                stable = stop_rules_met(
                    Measured(windows[settled:], durations[settled:]),
                    settings,
                    batch_size,
                    interval_s=interval,
                )
            else:
                stable = is_stable(results[settled:], settings.stability_percentage)
            if stable or len(results) >= settings.max_windows:
                break
        if untraced is not None:
            untraced_throughput = await _untraced_window(load, untraced, interval, batch_size)
    except ServerUnavailable as exc:  # the window it went away in is dropped with it
        interrupted = str(exc)
    finally:
        in_flight_at_end = await load.stop()
        if scraper:
            await scraper.stop()

    kept = windows[len(windows) - kept_windows(settings, len(windows), settled) :]
    measured = Measured(kept, durations[len(durations) - len(kept) :])
    used = results[len(results) - len(kept) :]
    merged_errors: dict[str, int] = {}
    for window in [*kept, lost] if lost is not None else kept:
        for reason, count in window.errors.items():
            merged_errors[reason] = merged_errors.get(reason, 0) + count
    span = snapshots[-len(kept) - 1 :] if kept else []
    first, last = (span[0], span[-1]) if span else (None, None)
    server, reset = _server_delta(
        None if first is None else first.model, None if last is None else last.model
    )
    if stats is not None and span and any(s is None for s in span):
        server, reset = None, True  # the model was unloaded in between: no trustworthy delta
    composing = _composing_deltas(first, last) if server is not None else {}
    step = StepResult(
        index=index,
        concurrency=load.concurrency,
        started_at=started_at,
        duration_s=sum(w.duration_s for w in used),
        request_count=sum(w.request_count for w in used),
        inference_count=sum(w.inference_count for w in used),
        histogram=measured.histogram,
        errors=top_reasons(merged_errors),
        stable=stable,
        window_count=len(results),
        windows=results,
        server_stats=server,
        server_stats_reset=reset,
        composing_stats=composing,
        metrics=scraper.drain() if scraper else [],
        metrics_failed_scrapes=scraper.failures - failed_scrapes if scraper else None,
        request_rate=request_rate,
        in_flight_at_end=in_flight_at_end,
        validation=ValidationTally.merged(w.validation for w in kept),
        unanswered_slots=max(w.stalled for w in kept) if kept else 0,
        interrupted=interrupted,
        stream=StreamTally.merged(w.stream for w in kept),
        cancelled_count=sum(w.cancelled for w in kept),
        sequences=SequenceTally.merged(w.sequences for w in kept),
        untraced_throughput=untraced_throughput,
        warmup_windows=settled,
        intervals=measured.intervals(settings, batch_size),
    )
    if isinstance(load, SplitLoad):
        step.workers = load.worker_rows(kept)
    open_windows = [w for w in kept if isinstance(w, OpenWindow)]
    if open_windows:
        step.service_histogram = LatencyHistogram.merged(w.service for w in open_windows)
        step.send_lag_histogram = LatencyHistogram.merged(w.lag for w in open_windows)
        step.sent_count = sum(w.sent for w in open_windows)
        step.refused_count = sum(w.refused for w in open_windows)
        step.scheduled_count = sum(w.due for w in open_windows)
    return step


def kept_windows(settings: MeasurementSettings, windows: int, warmup: int) -> int:
    """How many of a step's last windows its numbers come from: all after the warm-up with
    ``--stop-when``, else the last 3 (the window rule's)."""
    measured = max(0, windows - warmup)
    return measured if settings.stop_when else min(STABILITY_WINDOWS, measured)


async def _through_window(load: LoadGenerator, opened: float, interval_s: float) -> list[float]:
    """Wait out one window, ending each of its batches but the last (the cut ends that); the
    marks' times."""
    marks = []
    for k in range(1, BATCHES_PER_WINDOW):
        await asyncio.sleep(max(0.0, opened + interval_s * k / BATCHES_PER_WINDOW - time.perf_counter()))
        load.mark()
        marks.append(time.perf_counter())
    await asyncio.sleep(max(0.0, opened + interval_s - time.perf_counter()))
    return marks


async def _untraced_window(
    load: LoadGenerator, untraced: Callable[[], Awaitable[None]], interval_s: float, batch_size: int
) -> float:
    """Throughput of one more window with tracing off (``untraced`` switches it)."""
    await untraced()
    start = time.perf_counter()
    await load.cut()
    await asyncio.sleep(interval_s)
    window = await load.cut()
    return window.result(time.perf_counter() - start, batch_size).throughput


def _server_delta(first: ModelStats | None, last: ModelStats | None) -> tuple[ModelStats | None, bool]:
    if first is None or last is None:
        return None, False
    delta = last - first
    if delta.went_down():
        return None, True
    return delta, False


def _composing_deltas(first: StatsSnapshot | None, last: StatsSnapshot | None) -> dict[str, ModelStats]:
    """Each composing model's delta; one reloaded meanwhile (a counter went down) is left out."""
    if first is None or last is None:
        return {}
    deltas = {}
    for name, later in last.composing.items():
        earlier = first.composing.get(name)
        if earlier is not None and not (delta := later - earlier).went_down():
            deltas[name] = delta
    return deltas
