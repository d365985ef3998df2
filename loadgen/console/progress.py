"""Live progress of a sweep on the terminal (rich), fed by the engine's listener callbacks.

Each finished step prints a row that stays on screen (a 1..256 sweep is minutes of work, and
its early steps are worth reading while the rest run); below the rows one live line shows the
current step, the sweep's progress and an estimate of the time left.
"""

from __future__ import annotations

import math
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from analysis.findings import throughput_falls
from loadgen.config import SweepSettings
from loadgen.config.scenarios import ScenarioWords, words
from loadgen.engine.recorder import Window
from loadgen.engine.step import StepListener
from loadgen.results import STABILITY_WINDOWS, StepResult, WindowResult

STEP_OVERHEAD_S = 0.5
"""Per step beside warm-up and windows: the server's statistics read before and after."""


def _ms(us: float) -> str:
    return "-" if math.isnan(us) else f"{us / 1000:.2f} ms"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def step_row(step: StepResult, said: ScenarioWords, before: StepResult | None = None) -> str:
    """One finished step, as the row that stays on screen: load, throughput, p50/p99, and what to
    doubt about it."""
    level = said.shown(said.of(step.concurrency, step.request_rate))
    h = step.histogram
    latency = f"p50 {_ms(h.percentile_us(50))}  p99 {_ms(h.percentile_us(99))}" if h.count else "no answers"
    if step.stream is not None and h.count:  # what a stream's reader waits for: the first response
        first, gaps = step.stream.first, step.stream.gaps
        per_s = step.stream.responses / step.duration_s if step.duration_s > 0 else 0.0
        latency = (
            f"first p50 {_ms(first.percentile_us(50))}  gap p50 {_ms(gaps.percentile_us(50))}  "
            f"{per_s:,.1f} responses/s"
        )
    flags = [] if step.stable else [f"unstable after {step.window_count} windows"]
    if step.error_count:
        flags.append(f"{step.error_count:,} errors")
    if step.unanswered_slots:
        flags.append(f"{step.unanswered_slots} slots unanswered")
    if step.behind_schedule:
        flags.append("sender behind schedule")
    if (
        before is not None
        and step.interrupted is None
        and throughput_falls(before.throughput, step.throughput)
    ):
        drop = 1 - step.throughput / before.throughput
        flags.append(
            f"throughput {drop:.0%} below {said.shown(said.of(before.concurrency, before.request_rate))}"
        )
    if step.interrupted:
        flags = ["interrupted: the server went away"]
    return f"{level:>16}  {step.throughput:>12,.1f} infer/s  {latency}" + (
        f"  ({'; '.join(flags)})" if flags else ""
    )


class StepEstimate:
    """Time left in a sweep: steps take about as long as the finished ones did; before the first
    ends, a step is its warm-up and the fewest windows the stability rule needs."""

    def __init__(self, settings: SweepSettings) -> None:
        m = settings.measurement
        measured_ms = m.warmup_ms + STABILITY_WINDOWS * m.measurement_interval_ms
        self.nominal_s = measured_ms / 1000 + STEP_OVERHEAD_S
        self.durations: list[float] = []

    def left_s(self, steps_after_current: int, current_elapsed_s: float) -> float:
        per_step = sum(self.durations) / len(self.durations) if self.durations else self.nominal_s
        return max(per_step - current_elapsed_s, 0.0) + per_step * steps_after_current


class SweepProgress(StepListener):
    """Finished steps as rows that stay; one live line for the current step and the time left."""

    def __init__(self, settings: SweepSettings, console: Console | None = None) -> None:
        self.levels = settings.levels
        self.search = settings.search
        self.words = words(settings.scenario)
        self.estimate = StepEstimate(settings)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,  # the rows above say what happened; the live line goes at the end
            # rich redraws from a thread of its own ten times a second, each time holding the
            # interpreter for a millisecond or two: an open loop's sends would leave that late
            # (p99 235 us at 16,000 req/s, measured). It is redrawn when a window or step ends.
            auto_refresh=settings.scenario != "request_rate",
        )
        self._task: TaskID | None = None
        self._index = 0
        self._step_start = time.monotonic()
        self._last: StepResult | None = None

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        total = None if self.search else len(self.levels)
        self._task = self._progress.add_task("sweep", total=total, status="starting", eta="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def _update(self, **fields: object) -> None:
        if self._task is not None:
            self._progress.update(self._task, eta=self._eta(), **fields)  # type: ignore[arg-type]
            if not self._progress.live.auto_refresh:
                self._progress.refresh()

    def _eta(self) -> str:
        if self.search:  # a search's probes are not known ahead
            return ""
        after = max(len(self.levels) - self._index - 1, 0)
        left = self.estimate.left_s(after, time.monotonic() - self._step_start)
        return f"ETA ~{_duration(left)}"

    def step_started(self, index: int, level: float) -> None:
        self._index, self._step_start = index, time.monotonic()
        self._update(completed=index, description=self.words.shown(level), status="warming up")

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        latency = "-" if math.isnan(result.mean_latency_us) else f"{result.mean_latency_us / 1000:.2f} ms"
        errors = f", {result.error_count} errors" if result.error_count else ""
        self._update(
            status=f"window {number}: {result.throughput:,.0f} infer/s, avg {latency}{errors}",
            completed=index,
        )

    def step_done(self, step: StepResult) -> None:
        self.estimate.durations.append(time.monotonic() - self._step_start)
        before = self._last if self._last is not None and self._rises(self._last, step) else None
        self._progress.console.print(step_row(step, self.words, before), highlight=False, markup=False)
        self._last = step
        self._index = step.index + 1
        self._step_start = time.monotonic()
        self._update(completed=step.index + 1, status="")

    def _rises(self, before: StepResult, after: StepResult) -> bool:
        level = self.words.of
        return level(after.concurrency, after.request_rate) > level(before.concurrency, before.request_rate)

    def server_lost(self, reason: str, wait_s: float) -> None:
        self._progress.console.print(lost_line(reason, wait_s), highlight=False, markup=False)
        self._update(status=f"waiting up to {wait_s:g} s for the server" if wait_s > 0 else "server lost")


def lost_line(reason: str, wait_s: float) -> str:
    then = f"waiting up to {wait_s:g} s for it (--retry-unavailable)" if wait_s > 0 else "the run ends"
    return f"the server went away mid-step ({reason}): {then}"


class StepLines(StepListener):
    """One line per finished step: with several models at once, bars would interleave."""

    def __init__(self, model: str, console: Console, scenario: str = "concurrency") -> None:
        self.model, self.console, self.words = model, console, words(scenario)
        self._last: StepResult | None = None

    def step_done(self, step: StepResult) -> None:
        row = step_row(step, self.words, self._last).strip()
        self.console.print(f"{self.model}: {row}", highlight=False, markup=False)
        self._last = step

    def server_lost(self, reason: str, wait_s: float) -> None:
        self.console.print(f"{self.model}: {lost_line(reason, wait_s)}", highlight=False, markup=False)
