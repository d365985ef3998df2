"""Live progress of a sweep on the terminal (rich), fed by the engine's listener callbacks."""

from __future__ import annotations

import math
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from loadgen.config.scenarios import words
from loadgen.engine.recorder import Window
from loadgen.engine.step import StepListener
from loadgen.results import StepResult, WindowResult


class SweepProgress(StepListener):
    """One bar over the sweep's steps; the text shows the current step's last window."""

    def __init__(
        self, levels: tuple[float, ...], console: Console | None = None, scenario: str = "concurrency"
    ) -> None:
        self.levels = levels
        self.words = words(scenario)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._step_start = time.monotonic()

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        self._task = self._progress.add_task("sweep", total=len(self.levels), status="starting")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def _update(self, **fields: object) -> None:
        if self._task is not None:
            self._progress.update(self._task, **fields)  # type: ignore[arg-type]

    def step_started(self, index: int, level: float) -> None:
        self._step_start = time.monotonic()
        self._update(completed=index, description=self.words.shown(level), status="warming up")

    def window_done(self, index: int, number: int, result: WindowResult, window: Window) -> None:
        latency = "-" if math.isnan(result.mean_latency_us) else f"{result.mean_latency_us / 1000:.2f} ms"
        errors = f", {result.error_count} errors" if result.error_count else ""
        self._update(
            status=f"window {number}: {result.throughput:,.0f} infer/s, avg {latency}{errors}",
            completed=index,
        )

    def step_done(self, step: StepResult) -> None:
        flag = "" if step.stable else " (unstable)"
        if step.unanswered_slots:
            flag += f" ({step.unanswered_slots} slots unanswered)"
        if step.interrupted:
            flag = " (interrupted: the server went away)"
        self._update(completed=step.index + 1, status=f"done: {step.throughput:,.0f} infer/s{flag}")

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

    def step_done(self, step: StepResult) -> None:
        level = self.words.shown(self.words.of(step.concurrency, step.request_rate))
        flag = "" if step.stable else " (unstable)"
        if step.interrupted:
            flag = " (interrupted: the server went away)"
        self.console.print(f"{self.model}: {level}: {step.throughput:,.1f} infer/s{flag}", highlight=False)

    def server_lost(self, reason: str, wait_s: float) -> None:
        self.console.print(f"{self.model}: {lost_line(reason, wait_s)}", highlight=False, markup=False)
