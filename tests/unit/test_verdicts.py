"""Honest verdicts (issue 20): a change beyond a threshold is a regression only when the
intervals both runs stored say it is real. Runs are built from seeded draws with the step's own
machinery (windows cut in batches, the intervals a step stores), then compared as stored."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from analysis import Thresholds, Verdict, load_comparison
from analysis.frames import steps_frame
from analysis.groups import across_runs_table, compare_groups, group_run_ids, welch_change
from analysis.judging import Check, judge
from analysis.significance import ChangeInterval, change_interval, per_check
from analysis.step_intervals import Bounds
from analysis.tables import benchmark_table, latency_table
from loadgen.batches import BATCHES_PER_WINDOW
from loadgen.config import MeasurementSettings, SweepSettings
from loadgen.engine.precision import Measured
from loadgen.engine.recorder import Window
from loadgen.errors import ConfigError
from loadgen.histogram import LatencyHistogram
from loadgen.results import RunInfo, RunStatus, StepResult
from loadgen.storage import RunRecord, RunStore, StepRecord

T0 = datetime(2026, 12, 7, tzinfo=UTC)


def _step(rng: np.random.Generator, per_batch: int, slower: float = 1.0) -> StepResult:
    """Three 1 s windows of ``per_batch`` requests per batch, lognormal (median 2 ms) x ``slower``."""
    windows = []
    for _ in range(3):
        window = Window()
        for _ in range(BATCHES_PER_WINDOW):
            for value in rng.lognormal(np.log(2000.0), 0.4, per_batch) * slower:
                window.record(int(value * 1000))
            window.mark()
        windows.append(window)
    durations = [[1.0 / BATCHES_PER_WINDOW] * BATCHES_PER_WINDOW] * 3
    histogram = LatencyHistogram.merged(w.histogram for w in windows)
    count = histogram.count
    return StepResult(
        index=0,
        concurrency=1,
        started_at=T0,
        duration_s=3.0,
        request_count=count,
        inference_count=count,
        histogram=histogram,
        window_count=3,
        windows=[w.result(1.0, 1) for w in windows],
        intervals=Measured(windows, durations).intervals(MeasurementSettings(), 1),
    )


def _run(store: RunStore, step: StepResult, group: str | None = None) -> int:
    info = RunInfo(
        settings=SweepSettings(model="m", levels=(1,)).to_dict(),
        model="m",
        model_version="1",
        scenario="concurrency",
        server_url="localhost:8001",
        model_config={},
        model_metadata={},
        server_metadata={},
        host={},
        started_at=T0,
        labels={} if group is None else {"repeats": group},
    )
    run_id = store.create_run(info)
    store.add_step(run_id, step)
    store.finish_run(run_id, RunStatus.COMPLETED)
    return run_id


@pytest.fixture
def store() -> RunStore:
    return RunStore("sqlite://")


def test_identical_runs_rarely_get_a_false_verdict_where_the_threshold_alone_often_does(
    store: RunStore,
) -> None:
    """100 A/A pairs of 900 requests: p99 moves by more than 10% often by chance alone."""
    rng = np.random.default_rng(27)
    strict = honest = 0
    for _ in range(100):
        base, new = _run(store, _step(rng, 30)), _run(store, _step(rng, 30))
        strict += (
            load_comparison(store, base, new, Thresholds(noise_aware=False)).verdict is Verdict.REGRESSION
        )
        judged = load_comparison(store, base, new)
        honest += judged.verdict is Verdict.REGRESSION
        assert all(step.method == "intervals" for step in judged.steps)
    assert strict >= 6, strict  # the threshold alone: over 5% of identical pairs "regress" (10 here)
    assert honest <= 3, honest  # at most 2.5% expected (one side of a 95% interval)


def test_a_real_slowdown_is_a_regression_and_says_how_it_was_decided(store: RunStore) -> None:
    rng = np.random.default_rng(28)
    base, new = _run(store, _step(rng, 1000)), _run(store, _step(rng, 1000, slower=1.2))
    comparison = load_comparison(store, base, new)
    (step,) = comparison.steps
    assert comparison.verdict is Verdict.REGRESSION and step.method == "intervals"
    assert step.latency_change is not None and step.latency_change.low_pct > 10
    assert "p99 latency +" in step.reasons[0] and "interval [+" in step.reasons[0]
    assert "MOVER" in comparison.method and "2 checks each at 97.5%" in comparison.method
    assert comparison.to_dict()["steps"][0]["change_interval_pct"]["latency"][0] > 10


def test_a_rise_beyond_the_threshold_that_is_not_significant_says_so(store: RunStore) -> None:
    rng = np.random.default_rng(29)
    found = []
    for _ in range(40):  # a few hundred requests: p99 is wide; find pairs crossing 10% by chance
        base, new = _run(store, _step(rng, 30)), _run(store, _step(rng, 30))
        comparison = load_comparison(store, base, new)
        step = comparison.steps[0]
        if step.verdict is Verdict.NOT_SIGNIFICANT and step.latency(99).change_pct > 0:
            found.append(comparison)
    assert found, "some identical pairs cross the threshold"
    reason = found[0].steps[0].reasons[0]
    assert "holds 0" in reason and "max rise 10%" in reason, reason
    assert found[0].verdict is Verdict.PASS  # the run's verdict ignores it; exit code 0


def test_a_p99_without_an_interval_is_not_judged_and_says_why(store: RunStore) -> None:
    rng = np.random.default_rng(31)
    base, new = _run(store, _step(rng, 5)), _run(store, _step(rng, 5, slower=1.5))  # 150 requests
    comparison = load_comparison(store, base, new)
    (step,) = comparison.steps
    reason = next(r for r in step.reasons if r.startswith("p99"))
    assert "too few requests for a p99 interval: not judged" in reason, step.reasons
    assert "cannot be shown significant" in comparison.method
    assert load_comparison(store, base, new, Thresholds(noise_aware=False)).verdict is Verdict.REGRESSION


def test_the_change_interval_keeps_each_sides_asymmetry() -> None:
    base, new = Bounds(100.0, 95.0, 110.0), Bounds(120.0, 115.0, 140.0)
    interval = change_interval(base, new, 0.95)
    assert interval is not None
    assert interval.low_pct == pytest.approx(20 - np.hypot(5, 10))
    assert interval.high_pct == pytest.approx(20 + np.hypot(20, 5))
    assert change_interval(Bounds(100.0, None, None, "too few requests"), new, 0.95) is None
    assert per_check(0.95, 8) == pytest.approx(0.99375)
    unsure = ChangeInterval(-1.0, 30.0, 0.95)
    verdict, reasons = judge([Check("p99 latency +14.0%", 14.0, 10.0, True, interval=unsure)])
    assert verdict is Verdict.NOT_SIGNIFICANT and reasons[0].endswith("[-1.0%, +30.0%] holds 0)")
    assert (
        judge([Check("p99 latency +14.0%", 14.0, 10.0, True, interval=unsure)], False)[0]
        is Verdict.REGRESSION
    )


def test_groups_of_repeated_runs_are_compared_on_their_means(store: RunStore) -> None:
    """Four runs a side; the runs differ from each other (a run-to-run factor within +-3%)."""
    rng = np.random.default_rng(30)

    def group(slower: float, label: str) -> list[tuple[RunRecord, list[StepRecord]]]:
        runs = []
        for _ in range(4):
            run_id = _run(store, _step(rng, 300, slower * rng.uniform(0.97, 1.03)), label)
            runs.append((store.get_run(run_id), store.steps(run_id)))
        return runs

    base, same, slow = group(1.0, "a"), group(1.0, "b"), group(1.15, "c")
    assert compare_groups(store, base, same, Thresholds()).verdict is Verdict.PASS
    found = compare_groups(store, base, slow, Thresholds())
    assert found.verdict is Verdict.REGRESSION and found.runs == (4, 4)
    assert "Welch" in found.method and found.new.title == "group c"
    assert group_run_ids(store, "group:c") == [run.id for run, _ in slow]
    one = compare_groups(store, base[:1], slow, Thresholds())  # one run a side borrows the other's spread
    assert one.steps[0].latency_change is not None
    with pytest.raises(ConfigError, match="no runs in group 'zz'"):
        group_run_ids(store, "group:zz")
    table = across_runs_table(slow, (50.0, 99.0), 0.95, level_column="Concurrency")
    assert table["Runs"].tolist() == [4] and " [" in table["p99 latency (ms)"][0]
    exact = welch_change([1.0, 1.0], [1.1, 1.1], 0.95)  # every run alike: the change is exact
    assert exact is not None and exact.low_pct == pytest.approx(10.0) == exact.high_pct
    assert welch_change([1.0], [1.1], 0.95) is None  # a run a side: no spread to read


def test_windows_found_warming_up_are_stored_and_shown(store: RunStore) -> None:
    step = dataclasses.replace(_step(np.random.default_rng(32), 10), warmup_windows=2)
    (stored,) = store.steps(_run(store, step))
    assert stored.warmup_windows == 2
    assert benchmark_table([stored], scenario="concurrency")["Warm-up windows"].tolist() == [2]
    assert latency_table(steps_frame([stored]), scenario="concurrency")["Warm-up windows"].tolist() == [2]
