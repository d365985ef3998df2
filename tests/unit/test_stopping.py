"""``--stop-when`` and ``--detect-warmup`` against synthetic loads whose latencies are drawn from
known distributions: a step measured by its intervals ends when its answer is known, sooner
than the window rule on a steady load and later on one whose tail is wide (issue 20)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from loadgen.config import MeasurementSettings, StopRule
from loadgen.config.measurement import EARLY_STOPPING, LATENCY, THROUGHPUT
from loadgen.engine.recorder import Window
from loadgen.engine.step import measure_step
from loadgen.errors import ConfigError
from loadgen.results import StepResult

Draw = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]
"""``n`` latencies in microseconds for batch ``k`` of the step."""


class Synthetic:
    """A load that answers ``per_batch`` requests per batch, the first of ``draw(rng, batch)``."""

    level = concurrency = 1

    def __init__(self, draw: Callable[[np.random.Generator, int], npt.NDArray[np.float64]], per_batch: int):
        self.draw, self.per_batch = draw, per_batch
        self.rng = np.random.default_rng(26)
        self.window = Window()
        self.batch = 0

    def start(self) -> None:
        pass

    def _fill(self) -> None:
        for value in self.draw(self.rng, self.batch)[: self.per_batch]:
            self.window.record(int(value * 1000))
        self.batch += 1

    def mark(self) -> None:
        self._fill()
        self.window.mark()

    async def cut(self) -> Window:
        self._fill()
        ending, self.window = self.window, Window()
        ending.mark()
        return ending

    async def stop(self) -> int:
        return 0


def _step(draw: Draw, per_batch: int, **measurement: object) -> StepResult:
    settings = MeasurementSettings(measurement_interval_ms=50, warmup_ms=0, max_windows=8, **measurement)  # type: ignore[arg-type]
    return asyncio.run(measure_step(0, Synthetic(draw, per_batch), settings, batch_size=1))  # type: ignore[arg-type]


def _steady(rng: np.random.Generator, batch: int) -> npt.NDArray[np.float64]:
    return rng.lognormal(np.log(2000.0), 0.1, 2000)


def _wide_tail(rng: np.random.Generator, batch: int) -> npt.NDArray[np.float64]:
    """97% near 1 ms, 3% spread evenly over 10 ms .. 1 s: stable means, an imprecise p99."""
    n = 2000
    slow = rng.random(n) < 0.03
    return np.where(slow, rng.uniform(10_000.0, 1_000_000.0, n), rng.lognormal(np.log(1000.0), 0.05, n))


def test_a_steady_step_ends_sooner_by_its_intervals_than_by_the_window_rule() -> None:
    by_windows = _step(_steady, 2000)
    by_interval = _step(_steady, 2000, stop_when=(StopRule.parse("p99:2%"),))
    assert by_windows.stable and by_windows.window_count == 3
    assert by_interval.stable and by_interval.window_count == 1
    (p99,) = [i for i in by_interval.intervals if i.measure == LATENCY and i.percentile == 99.0]
    assert p99.half_width_pct <= 2.0 and p99.low is not None and p99.low <= p99.estimate


def test_a_wide_tailed_step_runs_on_until_its_p99_is_known() -> None:
    by_windows = _step(_wide_tail, 2000)
    by_interval = _step(_wide_tail, 2000, stop_when=(StopRule.parse("p99:2%"),))
    assert by_windows.stable and by_windows.window_count == 3  # its means agree: the tail is not asked
    assert not by_interval.stable and by_interval.window_count == 8  # to --max-windows, flagged
    assert by_interval.request_count > 2.5 * by_windows.request_count  # every window measured, kept


def test_minimum_requests_and_mlperf_early_stopping_by_name() -> None:
    few = _step(_steady, 100, stop_when=(StopRule.parse("mlperf:p99"),), min_step_requests=0)
    assert few.window_count == 1 and few.request_count == 1000  # 459 needed: one window has 1000
    waits = _step(_steady, 100, stop_when=(StopRule.parse("mlperf:p99"),), min_step_requests=2500)
    assert waits.window_count == 3
    (early,) = [i for i in waits.intervals if i.measure == EARLY_STOPPING and i.percentile == 99.0]
    assert early.high is not None and early.high >= early.estimate  # conservative: at or above p99
    both = _step(_steady, 2000, stop_when=(StopRule.parse("throughput:50%"),), min_step_ms=120)
    assert both.window_count == 3  # 120 ms of 50 ms windows


def _warming(rng: np.random.Generator, batch: int) -> npt.NDArray[np.float64]:
    """Latency falls from 4 ms to 1 ms over the first 20 batches (two windows), then holds."""
    level = 1000.0 * (1 + 3 * max(0.0, 1 - batch / 20))
    return rng.lognormal(np.log(level), 0.05, 200)


def test_warm_up_is_detected_by_the_trend_of_the_first_windows() -> None:
    fixed = _step(_warming, 200, stop_when=(StopRule.parse("p50:1%"),))
    detected = _step(_warming, 200, stop_when=(StopRule.parse("p50:1%"),), detect_warmup=True)
    assert fixed.warmup_windows == 0 and fixed.histogram.max_us > 3000  # the warm-up measured
    assert detected.warmup_windows == 2 and detected.histogram.percentile_us(99) < 1200
    steady = _step(_steady, 2000, detect_warmup=True)
    assert steady.warmup_windows == 0 and steady.window_count == 3


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("p99:2%", StopRule(LATENCY, 99.0, 2.0)),
        ("P99.9:0.5", StopRule(LATENCY, 99.9, 0.5)),
        ("throughput:1%", StopRule(THROUGHPUT, None, 1.0)),
        ("mlperf:p90", StopRule(EARLY_STOPPING, 90.0, None)),
        ("mlperf:p99:5%", StopRule(EARLY_STOPPING, 99.0, 5.0)),
    ],
)
def test_stop_rules_parse_and_print_back(text: str, rule: StopRule) -> None:
    assert StopRule.parse(text) == rule
    assert StopRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["p99", "throughput", "p100:2%", "p99:0%", "mlperf:throughput:1%", "x"])
def test_bad_stop_rules_say_what_is_expected(text: str) -> None:
    with pytest.raises(ConfigError):
        StopRule.parse(text)
