from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from loadgen.config.ranges import parse_rates
from loadgen.config.values import read_intervals
from loadgen.engine.schedules import Schedule, intended_offsets_ns
from loadgen.errors import ConfigError


def _gaps(schedule: Schedule, count: int) -> npt.NDArray[np.float64]:
    return np.diff(intended_offsets_ns(schedule, count + 1)).astype(np.float64)


def test_constant_schedule_is_exact() -> None:
    gaps = _gaps(Schedule(rate=250.0), 10_000)
    assert set(gaps.tolist()) == {4_000_000.0}


def test_poisson_schedule_has_exponential_mean_and_variance() -> None:
    gaps = _gaps(Schedule(rate=500.0, distribution="poisson", seed=3), 200_000)
    mean = 1e9 / 500.0
    assert gaps.mean() == pytest.approx(mean, rel=0.01)
    assert gaps.var() == pytest.approx(mean**2, rel=0.03)  # exponential: variance = mean^2
    # arrivals per second are Poisson: variance equals mean
    times = np.cumsum(gaps) / 1e9
    counts = np.bincount(times.astype(int))[:-1]
    assert counts.var() == pytest.approx(counts.mean(), rel=0.1)


def test_poisson_schedule_is_seeded() -> None:
    a = intended_offsets_ns(Schedule(rate=100.0, distribution="poisson", seed=1), 100)
    b = intended_offsets_ns(Schedule(rate=100.0, distribution="poisson", seed=1), 100)
    c = intended_offsets_ns(Schedule(rate=100.0, distribution="poisson", seed=2), 100)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_linear_ramp_goes_from_start_to_end_rate() -> None:
    schedule = Schedule(rate=100.0, ramp_to=1000.0, ramp_s=2.0)
    offsets = intended_offsets_ns(schedule, 6000) / 1e9
    first_second = np.sum(offsets < 1.0)
    assert 100 < first_second < 1000
    late = np.diff(offsets[offsets > 3.0])
    assert late.mean() == pytest.approx(1 / 1000.0, rel=0.01)


def test_replayed_intervals_loop(tmp_path: Path) -> None:
    path = tmp_path / "intervals.txt"
    path.write_text("# microseconds\n1000\n3000\n\n2000\n")
    intervals = read_intervals(str(path))
    assert intervals == (1000.0, 3000.0, 2000.0)
    schedule = Schedule(intervals_us=intervals)
    assert schedule.label_rate == pytest.approx(500.0)
    assert _gaps(schedule, 6).tolist()[:5] == [3e6, 2e6, 1e6, 3e6, 2e6]


@pytest.mark.parametrize("content", ["", "abc\n", "-5\n", "0\n0\n"])
def test_bad_interval_files_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ConfigError):
        read_intervals(str(path))


def test_missing_interval_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_intervals(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0.0}, {"rate": 10.0, "distribution": "pareto"}, {"rate": 1.0, "ramp_to": 5.0}]
)
def test_bad_schedules_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_rate_ranges_accept_decimals() -> None:
    assert parse_rates("100..400:100") == (100.0, 200.0, 300.0, 400.0)
    assert parse_rates("0.5..2") == (0.5, 1.0, 2.0)
    assert parse_rates("0.1..0.3:0.1") == (0.1, 0.2, 0.3)
    with pytest.raises(ConfigError):
        parse_rates("0..10")


def test_ramp_arrivals_follow_the_rate_exactly() -> None:
    offsets = intended_offsets_ns(Schedule(rate=100.0, ramp_to=800.0, ramp_s=3.0), 5000) / 1e9
    per_second = np.bincount(offsets.astype(int))[:4]
    # expected arrivals: integral of the rate over each second (100 -> 800 over 3 s, then 800)
    assert per_second.tolist() == pytest.approx([216.7, 450.0, 683.3, 800.0], abs=1.5)


def test_poisson_ramp_keeps_the_mean_rate() -> None:
    offsets = (
        intended_offsets_ns(
            Schedule(rate=100.0, ramp_to=800.0, ramp_s=3.0, distribution="poisson", seed=5), 40_000
        )
        / 1e9
    )
    late = offsets[(offsets > 5) & (offsets < 45)]
    assert len(late) / 40 == pytest.approx(800, rel=0.03)
