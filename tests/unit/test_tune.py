"""The tune's parts that need no server: its space, the overrides it sends, how it searches and how
a result is read (issue 21). The live parts are in tests/integration/test_deploy_tune.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from analysis.tune_result import ConfigResult, StepPoint, TuneResult, config_pbtxt
from loadgen.config import LatencyLimit
from loadgen.errors import ConfigError
from loadgen.tune.overrides import mismatch, override, served_candidate
from loadgen.tune.search import Evaluate, Tried, grid, hill_climb
from loadgen.tune.space import Candidate, TuneSpace, parse_delays

SERVED: dict[str, Any] = {  # as Triton's gRPC JSON answers: int64 as strings
    "name": "m",
    "max_batch_size": 8,
    "instance_group": [{"name": "m_0", "count": 1, "kind": "KIND_CPU"}],
    "dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": "100"},
    "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": ["16"]}],
    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": ["16"]}],
    "backend": "python",
}


def test_delays_and_the_space_around_the_served_config() -> None:
    assert parse_delays("500us,off,0,0.1ms") == (None, 0, 100, 500)
    with pytest.raises(ConfigError, match="microseconds"):
        parse_delays("1.5us")
    served = served_candidate(SERVED)
    assert served == Candidate(1, 8, 100)
    space = TuneSpace.around(served, instances=(1, 2))
    assert space.candidates() == [Candidate(1, 8, 100), Candidate(2, 8, 100)]
    with pytest.raises(ConfigError, match="nothing to tune"):
        TuneSpace.around(served, instances=(1,))
    with pytest.raises(ConfigError, match="does not batch"):
        TuneSpace.around(Candidate(1, 0, None), max_batch_sizes=(1, 8))


def test_an_override_edits_the_original_and_drops_what_would_contradict_it() -> None:
    small = override(SERVED, Candidate(3, 4, 0))
    assert small["instance_group"] == [{"name": "m_0", "count": 3, "kind": "KIND_CPU"}]
    assert small["max_batch_size"] == 4
    assert small["dynamic_batching"] == {"preferred_batch_size": [4], "max_queue_delay_microseconds": 0}
    assert "dynamic_batching" not in override(SERVED, Candidate(1, 8, None))
    assert SERVED["dynamic_batching"]["preferred_batch_size"] == [4, 8]  # the original is untouched
    assert mismatch(small, Candidate(3, 4, 0)) is None
    assert mismatch(SERVED, Candidate(3, 4, 0)) == (
        "Triton serves instances=1 max_batch_size=8 queue_delay=100us "
        "instead of instances=3 max_batch_size=4 queue_delay=0us"
    )
    two_groups = {**SERVED, "instance_group": [{"count": 1}, {"count": 2}]}
    with pytest.raises(ConfigError, match="2 instance groups"):
        override(two_groups, Candidate(1, 8, None))


def _evaluate(scores: Mapping[Candidate, float | None], order: list[Candidate]) -> Evaluate:
    """Scores by candidate (None: missed the SLO at every load), in the order asked for."""

    async def evaluate(candidate: Candidate) -> Tried:
        order.append(candidate)
        score = scores[candidate]
        point = None if score is None else StepPoint(candidate.key, 1, 1.0, score, 1.0, True)
        return Tried(point, missed_slo=score is None)

    return evaluate


def test_the_grid_skips_longer_delays_once_a_delay_misses_the_slo() -> None:
    space = TuneSpace((1, 2), (8,), (None, 0, 100, 500))
    scores: dict[Candidate, float | None] = {c: 10.0 * c.instances for c in space.candidates()}
    scores[Candidate(1, 8, 100)] = None  # missed: 500us is not tried for 1 instance
    order: list[Candidate] = []
    skipped: list[tuple[Candidate, str]] = []
    asyncio.run(grid(space, _evaluate(scores, order), lambda c, why: skipped.append((c, why))))
    assert Candidate(1, 8, 500) not in order and len(order) == 7
    assert skipped == [(Candidate(1, 8, 500), "queue_delay=100us already missed the SLO at every load")]


def test_the_hill_climb_moves_to_better_neighbours_and_stops_at_a_peak() -> None:
    space = TuneSpace((1, 2, 3, 4), (1, 8, 32), (None,))
    peak = Candidate(3, 8, None)
    scores: dict[Candidate, float | None] = {
        c: 100.0 - 10 * (abs(c.instances - 3) + abs(space.max_batch_sizes.index(c.max_batch_size) - 1))
        for c in space.candidates()
    }
    scores[Candidate(1, 32, None)] = None
    order: list[Candidate] = []
    assert asyncio.run(hill_climb(space, _evaluate(scores, order))) == peak
    assert order[0] == Candidate(1, 1, None)
    assert len(order) == len(set(order)) < len(space.candidates())  # nothing twice, not the whole grid
    assert Candidate(4, 32, None) not in order  # beyond the peak's neighbours


def _result(points: dict[str, list[tuple[float, float]]], slo_ms: float) -> TuneResult:
    limit = LatencyLimit(99.0, slo_ms * 1000)
    configs = tuple(
        ConfigResult(
            name,
            i,
            "completed",
            tuple(StepPoint(name, i, lvl, tput, ms, ms <= slo_ms) for lvl, (tput, ms) in enumerate(pts, 1)),
            {**SERVED, "name": name},
        )
        for i, (name, pts) in enumerate(points.items(), 1)
    )
    return TuneResult("t", "m", limit, configs)


def test_the_best_meets_the_slo_and_the_front_keeps_only_undominated_steps() -> None:
    result = _result({"a": [(100, 5), (190, 12), (250, 40)], "b": [(120, 4), (180, 9), (260, 60)]}, 20)
    assert result.winner is not None
    config, step = result.winner
    assert config.config == "a" and step.throughput == 190
    front = [(p.config, p.throughput) for p in result.pareto]
    assert front == [("b", 120), ("b", 180), ("a", 190), ("a", 250), ("b", 260)]
    assert _result({"a": [(100, 50)]}, 20).winner is None


def test_the_best_configs_text_parses_back_to_the_served_config() -> None:
    text = config_pbtxt(SERVED)
    parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert parsed == json_format.ParseDict(SERVED, model_config_pb2.ModelConfig())
    assert 'backend: "python"' in text and "max_queue_delay_microseconds: 100" in text
